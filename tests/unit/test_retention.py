"""Retention: restic-style rules as a pure function — table tests over long synthetic histories
(compared with an independent port of restic's algorithm and with hand-derived facts), time
zones and DST, and hypothesis properties."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from cloudkeep.retention import Rules, SnapshotInfo, apply

Z = UTC


def snaps(times: list[datetime]) -> list[SnapshotInfo]:
    return [SnapshotInfo(f"{t:%Y%m%dT%H%M%SZ}-{i:06x}", t) for i, t in enumerate(times)]


def hourly_history(start: datetime, hours: int, *, gaps: float = 0.0, seed: int = 1) -> list[datetime]:
    rng = random.Random(seed)
    return [start + timedelta(hours=h, minutes=rng.randint(0, 50))
            for h in range(hours) if rng.random() >= gaps]


def restic_reference(items: list[SnapshotInfo], rules: Rules, tz: ZoneInfo) -> set[str]:
    """restic's ApplyPolicy (internal/data/snapshot_policy.go), ported independently: walk the
    snapshots newest first; each bucket rule keeps a snapshot when its bucket value differs from
    the last value that rule kept, until its count runs out."""
    ordered = sorted(items, key=lambda s: s.time, reverse=True)
    buckets = [
        (rules.last, lambda t, i: i),  # every snapshot is its own bucket
        (rules.hourly, lambda t, i: t.strftime("%Y%m%d%H")),
        (rules.daily, lambda t, i: t.strftime("%Y%m%d")),
        (rules.weekly, lambda t, i: "{}{:02d}".format(*t.isocalendar()[:2])),
        (rules.monthly, lambda t, i: t.strftime("%Y%m")),
        (rules.yearly, lambda t, i: t.strftime("%Y")),
    ]
    counts = [c or 0 for c, _ in buckets]
    last: list[object] = [None] * len(buckets)
    keep = set()
    for i, s in enumerate(ordered):
        local = s.time.astimezone(tz)
        for b, (_, fn) in enumerate(buckets):
            if counts[b] > 0:
                value = fn(local, i)
                if value != last[b]:
                    keep.add(s.id)
                    last[b] = value
                    counts[b] -= 1
        if rules.within is not None and ordered[0].time - s.time <= rules.within:
            keep.add(s.id)
    if ordered:
        keep.add(ordered[0].id)
    return keep


TWO_YEARS = snaps(hourly_history(datetime(2024, 1, 1, tzinfo=Z), 2 * 366 * 24, gaps=0.1))
NOW = TWO_YEARS[-1].time + timedelta(minutes=5)

RULE_TABLE = [
    Rules(last=5),
    Rules(hourly=24),
    Rules(daily=7),
    Rules(weekly=4),
    Rules(monthly=12),
    Rules(yearly=5),
    Rules(hourly=24, daily=14, weekly=8, monthly=12, yearly=2),
    Rules(last=3, daily=30, within=timedelta(hours=36)),
    Rules(within=timedelta(days=3)),
]


def test_long_history_matches_restic_for_every_rule_set() -> None:
    for tz_name in ("UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"):
        tz = ZoneInfo(tz_name)
        for rules in RULE_TABLE:
            decision = apply(TWO_YEARS, rules, NOW, tz)
            assert set(decision.keep) == restic_reference(TWO_YEARS, rules, tz), (tz_name, rules)
            assert set(decision.keep) | set(decision.remove) == {s.id for s in TWO_YEARS}
            assert not set(decision.keep) & set(decision.remove)


def test_hand_derived_facts_of_a_continuous_hourly_history() -> None:
    times = [datetime(2026, 1, 1, tzinfo=Z) + timedelta(hours=h) for h in range(24 * 60)]
    history = snaps(times)
    by_time = {s.time: s.id for s in history}
    newest = times[-1]  # 2026-03-01 23:00

    daily = apply(history, Rules(daily=7), newest, "UTC")
    # the last snapshot (23:00) of each of the seven most recent days
    assert set(daily.keep) == {by_time[newest - timedelta(days=d)] for d in range(7)}

    hourly = apply(history, Rules(hourly=24), newest, "UTC")
    assert set(hourly.keep) == {by_time[newest - timedelta(hours=h)] for h in range(24)}

    monthly = apply(history, Rules(monthly=12), newest, "UTC")
    # only two months have snapshots: the newest of each (Jan 31 23:00, Mar 1 23:00; Feb 28 23:00)
    assert set(monthly.keep) == {by_time[datetime(2026, 1, 31, 23, tzinfo=Z)],
                                 by_time[datetime(2026, 2, 28, 23, tzinfo=Z)], by_time[newest]}

    weekly = apply(history, Rules(weekly=2), newest, "UTC")
    # 2026-03-01 is a Sunday: ISO week 9 ends there; week 8 ends Sunday 2026-02-22 23:00
    assert set(weekly.keep) == {by_time[newest], by_time[datetime(2026, 2, 22, 23, tzinfo=Z)]}


def test_every_kept_snapshot_lists_every_rule_that_keeps_it() -> None:
    times = [datetime(2026, 1, 1, tzinfo=Z) + timedelta(hours=h) for h in range(72)]
    history = snaps(times)
    decision = apply(history, Rules(last=2, hourly=3, daily=2, within=timedelta(hours=1)), times[-1], "UTC")
    newest = history[-1].id
    assert decision.reasons[newest] == ["last", "hourly", "daily", "within", "newest"]
    assert decision.reasons[history[-2].id] == ["last", "hourly", "within"]
    assert decision.reasons[history[-3].id] == ["hourly"]
    assert decision.reasons[history[-25].id] == ["daily"]  # Jan 2 23:00
    assert decision.reasons[history[0].id] == []


def test_daily_buckets_follow_the_time_zone() -> None:
    # 23:30 UTC on Jan 1 is already Jan 2 in Berlin: the two snapshots share a Berlin day.
    a = SnapshotInfo("a", datetime(2026, 1, 1, 23, 30, tzinfo=Z))
    b = SnapshotInfo("b", datetime(2026, 1, 2, 5, 0, tzinfo=Z))
    assert apply([a, b], Rules(daily=5), b.time, "UTC").keep == ["b", "a"]
    berlin = apply([a, b], Rules(daily=5), b.time, "Europe/Berlin")
    assert berlin.keep == ["b"] and berlin.remove == ["a"]


def test_dst_fall_back_hour_is_one_hourly_bucket() -> None:
    # 2026-10-25 in Berlin: 02:xx happens twice (00:xx and 01:xx UTC) — one local hour bucket.
    first = SnapshotInfo("first", datetime(2026, 10, 25, 0, 30, tzinfo=Z))  # 02:30 CEST
    second = SnapshotInfo("second", datetime(2026, 10, 25, 1, 30, tzinfo=Z))  # 02:30 CET
    later = SnapshotInfo("later", datetime(2026, 10, 25, 2, 30, tzinfo=Z))  # 03:30 CET
    decision = apply([first, second, later], Rules(hourly=10), later.time, "Europe/Berlin")
    assert decision.keep == ["later", "second"] and decision.remove == ["first"]
    in_utc = apply([first, second, later], Rules(hourly=10), later.time, "UTC")
    assert in_utc.remove == []


def test_safety_rules() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=Z)
    history = [
        SnapshotInfo("s1", t0, hold="case 42"),
        SnapshotInfo("s2", t0 + timedelta(days=1), verified=True),
        SnapshotInfo("s3", t0 + timedelta(days=2), copies=2),
        SnapshotInfo("s4", t0 + timedelta(days=3)),
        SnapshotInfo("s5", t0 + timedelta(days=4)),
    ]
    decision = apply(history, Rules(last=1, min_copies=1), t0 + timedelta(days=5), "UTC")
    assert decision.reasons["s5"] == ["last", "newest"]
    assert decision.reasons["s1"] == ["legal hold: case 42"]
    assert decision.reasons["s2"] == ["newest verified"]
    assert decision.reasons["s4"] == ["only 0 verified copies of 1 required"]
    assert decision.remove == ["s3"]  # no rule, not held, has its copies

    uncertain = apply(history, Rules(last=1), t0 + timedelta(days=5), "UTC", uncertain="listing failed")
    assert uncertain.remove == [] and uncertain.reasons["s3"] == ["uncertain input: listing failed"]


def test_horizon_covers_the_longest_rule() -> None:
    assert Rules(daily=7, weekly=4).horizon() == timedelta(weeks=5)
    assert Rules(daily=7, monthly=6).horizon() == timedelta(days=31 * 7)
    assert Rules(hourly=24, within=timedelta(days=3)).horizon() == timedelta(days=3)


times_strategy = st.lists(
    st.integers(min_value=0, max_value=3 * 365 * 24 * 60).map(
        lambda m: datetime(2024, 1, 1, tzinfo=Z) + timedelta(minutes=m)),
    min_size=1, max_size=60, unique=True,
)
rules_strategy = st.builds(
    Rules,
    last=st.none() | st.integers(0, 5), hourly=st.none() | st.integers(0, 5),
    daily=st.none() | st.integers(0, 5), weekly=st.none() | st.integers(0, 5),
    monthly=st.none() | st.integers(0, 5), yearly=st.none() | st.integers(0, 3),
    within=st.none() | st.integers(1, 30 * 24).map(lambda h: timedelta(hours=h)),
)
zones = st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Asia/Kathmandu"])


@settings(max_examples=200, deadline=None)
@given(times_strategy, rules_strategy, zones)
def test_never_removes_the_newest(times: list[datetime], rules: Rules, tz: str) -> None:
    history = snaps(sorted(times))
    decision = apply(history, rules, history[-1].time, tz)
    assert history[-1].id in decision.keep


@settings(max_examples=200, deadline=None)
@given(times_strategy, rules_strategy, zones)
def test_applying_twice_removes_nothing_more(times: list[datetime], rules: Rules, tz: str) -> None:
    history = snaps(sorted(times))
    first = apply(history, rules, history[-1].time, tz)
    kept = [s for s in history if s.id in set(first.keep)]
    assert apply(kept, rules, history[-1].time, tz).remove == []


@settings(max_examples=200, deadline=None)
@given(times_strategy, rules_strategy, zones, st.integers(1, 500 * 24 * 60))
def test_a_newer_snapshot_never_resurrects_a_removed_one(
    times: list[datetime], rules: Rules, tz: str, later_minutes: int
) -> None:
    history = snaps(sorted(times))
    before = apply(history, rules, history[-1].time, tz)
    newer = SnapshotInfo("newer", history[-1].time + timedelta(minutes=later_minutes))
    after = apply([*history, newer], rules, newer.time, tz)
    assert set(before.remove) <= set(after.remove)
