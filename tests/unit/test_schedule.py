"""Schedules, slots, windows, stagger and due logic — table tests across time zones, DST changes
and month ends — and the tick's idempotency (a duplicated trigger makes one snapshot)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cloudkeep.catalog import snapshot_ids
from cloudkeep.policy import parse_policy
from cloudkeep.runtime import parse_now, plan, tick
from cloudkeep.schedule import Schedule, Window, due_state, slot_snapshot_id, stagger
from cloudkeep.stores.memory import MemoryStore
from test_engine import ScriptedSource

Z = UTC


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=Z) if "+" not in text else datetime.fromisoformat(text)


# (schedule, time zone, now (UTC), expected previous slot (UTC), expected next slot (UTC))
SLOTS = [
    ("0 2 * * *", "UTC", "2026-01-31T02:30", "2026-01-31T02:00", "2026-02-01T02:00"),
    ("0 2 * * *", "UTC", "2026-01-31T02:00", "2026-01-31T02:00", "2026-02-01T02:00"),
    ("0 2 * * *", "UTC", "2026-01-31T01:59", "2026-01-30T02:00", "2026-01-31T02:00"),
    ("0 2 * * *", "Europe/Paris", "2026-01-31T02:30", "2026-01-31T01:00", "2026-02-01T01:00"),
    ("0 2 * * *", "America/New_York", "2026-07-01T12:00", "2026-07-01T06:00", "2026-07-02T06:00"),
    ("0 2 * * *", "Asia/Kolkata", "2026-07-01T00:00", "2026-06-30T20:30", "2026-07-01T20:30"),
    # month ends: the 31st skips short months, Feb 28 vs leap years
    ("0 3 31 * *", "UTC", "2026-04-15T00:00", "2026-03-31T03:00", "2026-05-31T03:00"),
    ("0 0 29 2 *", "UTC", "2027-03-01T00:00", "2024-02-29T00:00", "2028-02-29T00:00"),
    ("0 0 1 * *", "Europe/Berlin", "2026-03-01T00:30", "2026-02-28T23:00", "2026-03-31T22:00"),
    # DST, Europe/Berlin: spring forward 2026-03-29 02:00 → 03:00 (02:30 does not exist)
    ("30 2 * * *", "Europe/Berlin", "2026-03-29T01:45", "2026-03-29T01:30", "2026-03-30T00:30"),
    ("30 2 * * *", "Europe/Berlin", "2026-03-29T01:00", "2026-03-28T01:30", "2026-03-29T01:30"),
    ("0 * * * *", "Europe/Berlin", "2026-03-29T01:30", "2026-03-29T01:00", "2026-03-29T02:00"),
    # fall back 2026-10-25 03:00 → 02:00 (02:30 happens twice, the slot once)
    ("30 2 * * *", "Europe/Berlin", "2026-10-25T03:00", "2026-10-25T00:30", "2026-10-26T01:30"),
    ("30 2 * * *", "Europe/Berlin", "2026-10-25T00:29", "2026-10-24T00:30", "2026-10-25T00:30"),
    ("0 * * * *", "Europe/Berlin", "2026-10-25T01:30", "2026-10-25T00:00", "2026-10-25T02:00"),
    # US: spring forward 2026-03-08 02:00 → 03:00 in New York
    ("30 2 * * *", "America/New_York", "2026-03-08T08:00", "2026-03-08T07:30", "2026-03-09T06:30"),
    # weekly (Sunday 04:00) and weekdays
    ("0 4 * * 0", "UTC", "2026-11-28T12:00", "2026-11-22T04:00", "2026-11-29T04:00"),
    ("0 9 * * 1-5", "UTC", "2026-11-28T12:00", "2026-11-27T09:00", "2026-11-30T09:00"),
    # rates: minutes/hours from the epoch, days at local midnight
    ("rate(15 minutes)", "UTC", "2026-11-28T10:07", "2026-11-28T10:00", "2026-11-28T10:15"),
    ("rate(1 hour)", "Europe/Paris", "2026-11-28T10:07", "2026-11-28T10:00", "2026-11-28T11:00"),
    ("rate(6 hours)", "UTC", "2026-11-28T13:00", "2026-11-28T12:00", "2026-11-28T18:00"),
    ("rate(1 day)", "Europe/Paris", "2026-11-28T10:07", "2026-11-27T23:00", "2026-11-28T23:00"),
    ("rate(1 day)", "Europe/Paris", "2026-03-29T10:00", "2026-03-28T23:00", "2026-03-29T22:00"),
]


@pytest.mark.parametrize(("expr", "tz", "now", "prev", "nxt"), SLOTS)
def test_previous_and_next_slot(expr: str, tz: str, now: str, prev: str, nxt: str) -> None:
    schedule = Schedule.parse(expr, tz)
    assert schedule.previous(utc(now)) == utc(prev)
    assert schedule.next(utc(now)) == utc(nxt)


# (schedule, window, tz, now, latest snapshot time or None, due, slot, next run)
DUE = [
    # no snapshot yet: due at once
    ("0 2 * * *", None, "UTC", "2026-01-31T02:30", None, True, "2026-01-31T02:00", "2026-01-31T02:30"),
    # fresh: the latest snapshot is at/after the slot
    ("0 2 * * *", None, "UTC", "2026-01-31T02:30", "2026-01-31T02:00", False, "2026-01-31T02:00", "2026-02-01T02:00"),
    ("0 2 * * *", None, "UTC", "2026-01-31T02:30", "2026-01-31T02:10", False, "2026-01-31T02:00", "2026-02-01T02:00"),
    # stale: older than the current slot
    ("0 2 * * *", None, "UTC", "2026-01-31T02:30", "2026-01-30T02:00", True, "2026-01-31T02:00", "2026-01-31T02:30"),
    # after a three-day outage only the latest slot is due
    ("0 2 * * *", None, "UTC", "2026-02-03T09:00", "2026-01-31T02:00", True, "2026-02-03T02:00", "2026-02-03T09:00"),
    # window 01:00-05:00 (Paris): outside it nothing is due; next run when it opens
    ("0 * * * *", "01:00-05:00", "Europe/Paris", "2026-01-31T12:30", "2026-01-31T03:00", False, "2026-01-31T12:00", "2026-02-01T00:00"),
    ("0 * * * *", "01:00-05:00", "Europe/Paris", "2026-02-01T00:10", "2026-01-31T03:00", True, "2026-02-01T00:00", "2026-02-01T00:10"),
    ("0 2 * * *", "01:00-05:00", "Europe/Paris", "2026-01-31T06:00", "2026-01-30T01:00", False, "2026-01-31T01:00", "2026-02-01T00:00"),
    # window wrapping midnight (22:00-04:00 UTC)
    ("0 23 * * *", "22:00-04:00", "UTC", "2026-01-31T23:30", "2026-01-30T23:00", True, "2026-01-31T23:00", "2026-01-31T23:30"),
    ("0 23 * * *", "22:00-04:00", "UTC", "2026-02-01T03:59", "2026-01-30T23:00", True, "2026-01-31T23:00", "2026-02-01T03:59"),
    # ...missed the whole window: the stale slot is caught up as soon as the window reopens
    ("0 23 * * *", "22:00-04:00", "UTC", "2026-02-01T04:00", "2026-01-30T23:00", False, "2026-01-31T23:00", "2026-02-01T22:00"),
    ("0 23 * * *", "22:00-04:00", "UTC", "2026-02-01T04:00", "2026-01-31T23:00", False, "2026-01-31T23:00", "2026-02-01T23:00"),
    # DST: a daily 02:30 Berlin job on the spring-forward day is due once, at 03:30 local
    ("30 2 * * *", None, "Europe/Berlin", "2026-03-29T01:31", "2026-03-28T01:30", True, "2026-03-29T01:30", "2026-03-29T01:31"),
    ("30 2 * * *", None, "Europe/Berlin", "2026-03-29T05:00", "2026-03-29T01:30", False, "2026-03-29T01:30", "2026-03-30T00:30"),
    # and on the fall-back day it is due once, not twice
    ("30 2 * * *", None, "Europe/Berlin", "2026-10-25T01:31", "2026-10-25T00:30", False, "2026-10-25T00:30", "2026-10-26T01:30"),
    # month end
    ("0 3 31 * *", None, "UTC", "2026-05-01T00:00", "2026-01-31T03:00", True, "2026-03-31T03:00", "2026-05-01T00:00"),
]


@pytest.mark.parametrize(("expr", "window", "tz", "now", "latest", "due", "slot", "next_run"), DUE)
def test_due_state(expr: str, window: str | None, tz: str, now: str, latest: str | None,
                   due: bool, slot: str, next_run: str) -> None:
    state = due_state(
        Schedule.parse(expr, tz),
        dataset="orders",
        now=utc(now),
        latest=utc(latest) if latest else None,
        window=Window.parse(window) if window else None,
        offset=timedelta(0),
    )
    assert (state.due, state.slot, state.next_run) == (due, utc(slot), utc(next_run))


def test_stagger_is_stable_bounded_and_spread() -> None:
    hourly = Schedule.parse("0 * * * *")
    around = utc("2026-01-01T00:00")
    window = Window.parse("01:00-05:00")
    names = [f"dataset-{i}" for i in range(200)]
    plain = [stagger(n, hourly, None, None, around) for n in names]
    windowed = [stagger(n, hourly, window, None, around) for n in names]
    assert plain == [stagger(n, hourly, None, None, around) for n in names]  # stable
    assert all(timedelta(0) <= s < timedelta(minutes=15) for s in plain)
    assert all(timedelta(0) <= s < timedelta(hours=2) for s in windowed)
    assert len(set(plain)) >= 10 and len(set(windowed)) >= 50  # spread, not one minute
    assert stagger("x", hourly, window, timedelta(minutes=7), around) == timedelta(minutes=7)


def test_a_staggered_dataset_is_due_only_after_its_offset() -> None:
    daily = Schedule.parse("0 2 * * *")
    kw: dict[str, Any] = {"dataset": "orders", "latest": utc("2026-01-30T02:00"), "offset": timedelta(minutes=20)}
    before = due_state(daily, now=utc("2026-01-31T02:10"), **kw)
    after = due_state(daily, now=utc("2026-01-31T02:25"), **kw)
    assert (before.due, before.slot, before.next_run) == (False, utc("2026-01-30T02:00"), utc("2026-01-31T02:20"))
    assert (after.due, after.slot) == (True, utc("2026-01-31T02:00"))


@pytest.mark.parametrize(("text", "error"), [
    ("1:00-05:00", "bad window"), ("01:00-25:00", "bad window"), ("05:00-05:00", "same"),
    ("01:00", "bad window"), ("24:30-01:00", "bad window"),
])
def test_bad_windows(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        Window.parse(text)


def test_windows_wrap_and_span_the_whole_day() -> None:
    assert Window.parse("22:00-04:00").length == timedelta(hours=6)
    assert Window.parse("00:00-24:00").length == timedelta(hours=24)
    assert Window.parse("00:00-24:00").contains(utc("2026-01-01T13:00"), Schedule.parse("rate(1 hour)").tz)


@pytest.mark.parametrize(("expr", "eventbridge", "cloud_scheduler", "ncrontab"), [
    ("0 2 * * *", "cron(0 2 * * ? *)", "0 2 * * *", "0 0 2 * * *"),
    ("0 4 * * 0", "cron(0 4 ? * 1 *)", "0 4 * * 0", "0 0 4 * * 0"),
    ("15 3 * * 1-5", "cron(15 3 ? * 2-6 *)", "15 3 * * 1-5", "0 15 3 * * 1-5"),
    ("0 0 1,15 * *", "cron(0 0 1,15 * ? *)", "0 0 1,15 * *", "0 0 0 1,15 * *"),
    ("0 2 1 * 1", None, "0 2 1 * 1", "0 0 2 1 * 1"),
    ("rate(15 minutes)", "rate(15 minutes)", "*/15 * * * *", "0 */15 * * * *"),
    ("rate(6 hours)", "rate(6 hours)", "0 */6 * * *", "0 0 */6 * * *"),
    ("rate(7 minutes)", "rate(7 minutes)", None, None),
])
def test_rendering_for_each_cloud(expr: str, eventbridge: str | None, cloud_scheduler: str | None,
                                  ncrontab: str | None) -> None:
    rendered = Schedule.parse(expr).render()
    assert (rendered["eventbridge"], rendered["cloud_scheduler"], rendered["azure_ncrontab"]) == (
        eventbridge, cloud_scheduler, ncrontab)


def test_slot_snapshot_ids_are_derived_from_dataset_and_slot() -> None:
    slot = utc("2026-01-31T02:00")
    assert slot_snapshot_id("orders", slot) == slot_snapshot_id("orders", slot)
    assert slot_snapshot_id("orders", slot).startswith("20260131T020000Z-")
    assert slot_snapshot_id("orders", slot) != slot_snapshot_id("carts", slot)
    assert slot_snapshot_id("orders", slot) != slot_snapshot_id("orders", slot + timedelta(days=1))


def test_parse_now() -> None:
    assert parse_now("2026-01-31T02:30:00Z") == utc("2026-01-31T02:30")
    assert parse_now("2026-01-31T03:30:00+01:00") == utc("2026-01-31T02:30")
    assert parse_now("2026-01-31T02:30") == utc("2026-01-31T02:30")
    with pytest.raises(Exception, match="bad --now"):
        parse_now("yesterday")


TICK_POLICY = parse_policy("""
version: 1
timezone: Europe/Paris
stores: {mem: {type: file, path: /unused}}
tiers:
  hourly: {schedule: "0 * * * *", rpo: 90m, retention: {hourly: 24}}
  nightly: {schedule: "0 2 * * *", window: "01:00-05:00", rpo: 26h, retention: {daily: 7}}
datasets:
  a: {source: {type: dynamodb, table: aaa, region: us-east-1}, tier: hourly, store: mem, offset: 5m}
  b: {source: {type: dynamodb, table: bbb, region: us-east-1}, tier: nightly, store: mem, offset: 0m}
""")


def _tick(store: MemoryStore, now: str) -> Any:
    return tick(TICK_POLICY, utc(now), store_for=lambda _n: store,
                source_for=lambda _n: ScriptedSource(segments=2, per_segment=20))


def test_a_duplicated_tick_makes_one_snapshot_per_slot() -> None:
    store = MemoryStore()
    first = _tick(store, "2026-01-31T01:10")  # 02:10 Paris: both due
    assert sorted((r.dataset, r.status) for r in first.results) == [("a", "committed"), ("b", "committed")]
    again = _tick(store, "2026-01-31T01:10")  # the same trigger delivered twice
    later = _tick(store, "2026-01-31T01:40")  # a tick later in the same slot
    assert again.results == [] and sorted(again.not_due) == ["a", "b"]
    assert later.results == []
    assert snapshot_ids(store, "a") == [slot_snapshot_id("a", utc("2026-01-31T01:00"))]
    assert snapshot_ids(store, "b") == [slot_snapshot_id("b", utc("2026-01-31T01:00"))]
    manifest = first.results[0].manifest
    assert manifest is not None and manifest.trigger == "schedule"
    assert manifest.slot == utc("2026-01-31T01:00")


def test_a_retried_trigger_racing_a_committed_slot_finds_it() -> None:
    store = MemoryStore()
    _tick(store, "2026-01-31T01:10")
    # Even when asked explicitly, the slot's snapshot is not taken twice.
    from cloudkeep.engine import backup

    again = backup(TICK_POLICY, "a", store=store, source=ScriptedSource(),
                   snapshot_id=slot_snapshot_id("a", utc("2026-01-31T01:00")), trigger="schedule")
    assert again.status == "exists"
    assert len(snapshot_ids(store, "a")) == 1


def test_tick_after_an_outage_runs_only_the_latest_slot_and_respects_windows() -> None:
    store = MemoryStore()
    _tick(store, "2026-01-28T01:10")
    outage_over = _tick(store, "2026-01-31T09:10")  # 10:10 Paris: nightly's window is closed
    assert [(r.dataset, r.status) for r in outage_over.results] == [("a", "committed")]
    assert outage_over.not_due == ["b"]
    assert len(snapshot_ids(store, "a")) == 2  # not one per missed hour
    night = _tick(store, "2026-02-01T00:30")  # 01:30 Paris: window open, slot of 31 Jan 02:00
    assert [(r.dataset, r.status) for r in night.results] == [("a", "committed"), ("b", "committed")]
    assert snapshot_ids(store, "b")[-1] == slot_snapshot_id("b", utc("2026-01-31T01:00"))


def test_one_failing_dataset_does_not_stop_the_tick() -> None:
    store = MemoryStore()
    sources = {"a": ScriptedSource(fail_segment=0), "b": ScriptedSource()}
    result = tick(TICK_POLICY, utc("2026-01-31T01:10"), store_for=lambda _n: store,
                  source_for=sources.__getitem__)
    assert [(r.dataset, r.status) for r in result.results] == [("a", "failed"), ("b", "committed")]
    assert not result.ok
    assert result.as_dict()["datasets"][0]["error"] == "segment 0 broke"


def test_plan_reports_rpo_and_next_run() -> None:
    # Real time here: the snapshot's age is measured from its (real) start.
    store = MemoryStore()
    now0 = datetime.now(Z).replace(microsecond=0)
    _tick(store, now0.isoformat())
    soon = {p.dataset: p for p in plan(TICK_POLICY, now0 + timedelta(minutes=1), store_for=lambda _n: store)}
    assert soon["a"].latest_snapshot == snapshot_ids(store, "a")[-1]
    assert soon["a"].rpo_met is True and soon["a"].next_run > now0
    late = {p.dataset: p for p in plan(TICK_POLICY, now0 + timedelta(hours=3), store_for=lambda _n: store)}
    assert late["a"].due is True and late["a"].rpo_met is False  # 3h old, RPO 90m
    assert late["a"].age is not None and late["a"].age > timedelta(hours=2, minutes=59)
    assert late["b"].rendered["eventbridge"] == "cron(0 2 * * ? *)"
    assert late["b"].rendered["time_zone"] == "Europe/Paris"
    never = plan(TICK_POLICY, now0, store_for=lambda _n: MemoryStore())
    assert [(p.latest_snapshot, p.rpo_met) for p in never] == [(None, False), (None, False)]
