"""Retention: restic's forget as a pure function — table tests over long synthetic histories
(compared with an independent port of restic's algorithm and with hand-derived facts), time
zones and DST, calendar windows, and hypothesis properties. restic's own table is
test_retention_restic.py."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloudkeep.retention import UNLIMITED, Rules, SnapshotInfo, apply
from cloudkeep.spans import Span, parse_span

Z = UTC


def snaps(times: list[datetime]) -> list[SnapshotInfo]:
    return [SnapshotInfo(f"{t:%Y%m%dT%H%M%SZ}-{i:06x}", t) for i, t in enumerate(times)]


def hourly_history(start: datetime, hours: int, *, gaps: float = 0.0, seed: int = 1) -> list[datetime]:
    rng = random.Random(seed)
    return [start + timedelta(hours=h, minutes=rng.randint(0, 50))
            for h in range(hours) if rng.random() >= gaps]


def go_add_date(t: datetime, years: int, months: int, days: int) -> datetime | None:
    """Go's time.AddDate: add to the year, month and day fields, then normalise (Mar 31 minus
    one month is "Feb 31", i.e. Mar 3); None before year 1."""
    y, m, d = t.year + years, t.month + months, t.day + days
    y += (m - 1) // 12
    m = (m - 1) % 12 + 1
    if not 1 <= y <= 9999:
        return None
    return datetime.combine(date(y, m, 1), t.timetz()) + timedelta(days=d - 1)


def restic_reference(items: list[SnapshotInfo], rules: Rules, tz: ZoneInfo, now: datetime) -> set[str]:
    """restic's ApplyPolicy (internal/data/snapshot_policy.go, restic >= 0.16), ported
    independently, line by line: walk the snapshots newest first; each bucket rule keeps a
    snapshot when its bucket value differs from the last value that rule kept, or when it is
    the oldest snapshot, while its count lasts (-1: forever); windows count back from the
    newest snapshot before now, in that snapshot's own (fixed) UTC offset."""
    ordered = sorted(items, key=lambda s: s.time, reverse=True)
    latest = max((s.time for s in ordered if s.time < now), default=None)

    def cutoff(span: Span) -> datetime | None:
        if latest is None:
            return None
        local = latest.astimezone(tz)  # Go: a time in the host's zone (the policy's)
        moved = go_add_date(local.replace(tzinfo=None), -span.years, -span.months, -span.days)
        if moved is None:
            return None
        return datetime.combine(moved.date(), moved.time(), tzinfo=tz).astimezone(Z) - \
            timedelta(seconds=span.seconds)

    def inside(t: datetime, cut: datetime | None) -> bool:
        return cut is None or t > cut

    buckets = [
        [rules.last, lambda t, i: i, None],  # every snapshot is its own bucket
        [rules.hourly, lambda t, i: t.strftime("%Y%m%d%H"), None],
        [rules.daily, lambda t, i: t.strftime("%Y%m%d"), None],
        [rules.weekly, lambda t, i: "{}{:02d}".format(*t.isocalendar()[:2]), None],
        [rules.monthly, lambda t, i: t.strftime("%Y%m"), None],
        [rules.yearly, lambda t, i: t.strftime("%Y"), None],
    ]
    windows = [
        [rules.within_hourly, lambda t: t.strftime("%Y%m%d%H"), None],
        [rules.within_daily, lambda t: t.strftime("%Y%m%d"), None],
        [rules.within_weekly, lambda t: "{}{:02d}".format(*t.isocalendar()[:2]), None],
        [rules.within_monthly, lambda t: t.strftime("%Y%m"), None],
        [rules.within_yearly, lambda t: t.strftime("%Y"), None],
    ]
    keep = set()
    last_index = len(ordered) - 1
    for i, s in enumerate(ordered):
        local = s.time.astimezone(tz)
        if rules.within is not None and inside(s.time, cutoff(rules.within)):
            keep.add(s.id)
        for b in buckets:
            count, fn, last = b
            if count is not None and (count > 0 or count == -1):
                value = fn(local, i)
                if value != last or i == last_index:
                    keep.add(s.id)
                    b[2] = value
                    if count > 0:
                        b[0] = count - 1
        for w in windows:
            span, fn, last = w
            if span is not None and inside(s.time, cutoff(span)):
                value = fn(local)
                if value != last or i == last_index:
                    keep.add(s.id)
                    w[2] = value
    if ordered:
        keep.add(ordered[0].id)  # cloudkeep's safety rule: the newest
    return keep


TWO_YEARS = snaps(hourly_history(datetime(2024, 1, 1, tzinfo=Z), 2 * 366 * 24, gaps=0.1))
NOW = TWO_YEARS[-1].time + timedelta(minutes=5)

RULE_TABLE = [
    Rules(last=5),
    Rules(hourly=24),
    Rules(daily=7),
    Rules(weekly=4),
    Rules(monthly=12),
    Rules(monthly=30),  # more months than the history has: the oldest snapshot is kept too
    Rules(yearly=5),
    Rules(hourly=24, daily=14, weekly=8, monthly=12, yearly=2),
    Rules(last=3, daily=30, within=timedelta(hours=36)),
    Rules(within=timedelta(days=3)),
    Rules(daily=UNLIMITED),
    Rules(hourly=48, weekly=UNLIMITED, yearly=UNLIMITED),
    Rules(within=parse_span("1y2mo3d3h")),
    Rules(within_daily=parse_span("1mo"), within_weekly=parse_span("6mo"),
          within_monthly=parse_span("1y"), within_yearly=parse_span("100y")),
    Rules(within_hourly=parse_span("2d"), daily=7, within=parse_span("90m")),
]


def test_long_history_matches_restic_for_every_rule_set() -> None:
    for tz_name in ("UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"):
        tz = ZoneInfo(tz_name)
        for rules in RULE_TABLE:
            decision = apply(TWO_YEARS, rules, NOW, tz)
            assert set(decision.keep) == restic_reference(TWO_YEARS, rules, tz, NOW), (tz_name, rules)
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
    # only three months have snapshots: the newest of each (Jan 31 23:00, Feb 28 23:00, Mar 1
    # 23:00) — and, with nine months still to count, the oldest snapshot (restic >= 0.16)
    assert set(monthly.keep) == {by_time[datetime(2026, 1, 31, 23, tzinfo=Z)],
                                 by_time[datetime(2026, 2, 28, 23, tzinfo=Z)], by_time[newest],
                                 by_time[times[0]]}
    assert monthly.reasons[by_time[times[0]]] == ["oldest monthly"]

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
    assert apply([a, b], Rules(daily=1), b.time, "UTC").keep == ["b"]
    assert apply([a, b], Rules(daily=2), b.time, "UTC").reasons["a"] == ["daily"]
    berlin = apply([a, b], Rules(daily=1), b.time, "Europe/Berlin")
    assert berlin.keep == ["b"] and berlin.remove == ["a"]
    # with days left to count, the oldest snapshot is kept although its day has a newer one
    assert apply([a, b], Rules(daily=5), b.time, "Europe/Berlin").reasons["a"] == ["oldest daily"]


def test_dst_fall_back_hour_is_one_hourly_bucket() -> None:
    # 2026-10-25 in Berlin: 02:xx happens twice (00:xx and 01:xx UTC) — one local hour bucket.
    earlier = SnapshotInfo("earlier", datetime(2026, 10, 24, 23, 30, tzinfo=Z))  # 01:30 CEST
    first = SnapshotInfo("first", datetime(2026, 10, 25, 0, 30, tzinfo=Z))  # 02:30 CEST
    second = SnapshotInfo("second", datetime(2026, 10, 25, 1, 30, tzinfo=Z))  # 02:30 CET
    later = SnapshotInfo("later", datetime(2026, 10, 25, 2, 30, tzinfo=Z))  # 03:30 CET
    history = [earlier, first, second, later]
    decision = apply(history, Rules(hourly=10), later.time, "Europe/Berlin")
    assert decision.keep == ["later", "second", "earlier"] and decision.remove == ["first"]
    in_utc = apply(history, Rules(hourly=10), later.time, "UTC")
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
    assert Rules(within_monthly=parse_span("1y2mo")).horizon() == timedelta(days=366 + 62)
    assert Rules(daily=7, yearly=UNLIMITED).horizon() == timedelta(days=366)  # renewed by prune


def test_the_oldest_snapshot_is_kept_while_a_count_is_left() -> None:
    # the example: yearly: 10 and three years of history keep four snapshots
    times = [datetime(2024, 1, 1, tzinfo=Z) + timedelta(days=d) for d in range(0, 3 * 365, 7)]
    history = snaps(times)
    decision = apply(history, Rules(yearly=10), times[-1], "UTC")
    assert [decision.reasons[i] for i in decision.keep] == [
        ["yearly", "newest"], ["yearly"], ["yearly"], ["oldest yearly"]]
    assert decision.keep[-1] == history[0].id
    # a count used up before the oldest snapshot keeps nothing more
    assert history[0].id in apply(history, Rules(yearly=2), times[-1], "UTC").remove
    # unlimited never runs out: every year, and the oldest
    assert len(apply(history, Rules(yearly=UNLIMITED), times[-1], "UTC").keep) == 4


def test_within_is_strict_and_counts_from_the_latest_snapshot_before_now() -> None:
    t = datetime(2026, 3, 10, 12, tzinfo=Z)
    history = [SnapshotInfo("old", t - timedelta(days=1)), SnapshotInfo("edge", t - timedelta(days=1) + timedelta(seconds=1)),
               SnapshotInfo("latest", t), SnapshotInfo("future", t + timedelta(days=5))]
    decision = apply(history, Rules(within=timedelta(days=1)), t + timedelta(hours=1), "UTC")
    # exactly one day before the latest snapshot before now is outside (restic: After, strict)
    assert decision.remove == ["old"]
    assert decision.reasons["edge"] == ["within"] and decision.reasons["latest"] == ["within"]
    assert decision.reasons["future"] == ["within", "newest", "newer than now"]
    # no snapshot before now: every snapshot is inside every window
    assert apply(history, Rules(within=timedelta(days=1)), t - timedelta(days=30), "UTC").remove == []


def test_calendar_windows_use_gos_date_arithmetic() -> None:
    latest = datetime(2026, 3, 31, 10, tzinfo=Z)
    # 31 March minus one month is "31 February": 3 March (Go normalises, no clamping)
    assert parse_span("1mo").before(latest) == datetime(2026, 3, 3, 10, tzinfo=Z)
    assert parse_span("1y2mo3d3h").before(latest) == datetime(2025, 1, 28, 7, tzinfo=Z)
    assert parse_span("2w").before(latest) == datetime(2026, 3, 17, 10, tzinfo=Z)
    assert parse_span("9999y").before(latest) is None  # before year 1: everything is inside
    # days are calendar days on the policy time zone's wall clock: across the DST change two
    # days back from 10:00 CEST is 10:00 CET, 47 hours earlier (and hours are elapsed time)
    berlin = ZoneInfo("Europe/Berlin")
    summer = datetime(2026, 3, 30, 10, tzinfo=berlin)  # CEST, the day after the change
    assert parse_span("2d").before(summer, berlin) == summer.astimezone(Z) - timedelta(hours=47)
    assert parse_span("48h").before(summer, berlin) == summer.astimezone(Z) - timedelta(hours=48)
    assert parse_span("2d").before(summer) == summer.astimezone(Z) - timedelta(hours=47)
    history = [SnapshotInfo("a", datetime(2026, 3, 3, 10, tzinfo=Z)),
               SnapshotInfo("b", datetime(2026, 3, 3, 10, 0, 1, tzinfo=Z)), SnapshotInfo("c", latest)]
    assert apply(history, Rules(within=parse_span("1mo")), latest + timedelta(hours=1)).remove == ["a"]


def test_within_buckets_keep_the_newest_of_each_period_inside_the_window() -> None:
    times = [datetime(2026, 1, 1, tzinfo=Z) + timedelta(hours=6 * h) for h in range(4 * 40)]
    history = snaps(times)
    by_time = {s.time: s.id for s in history}
    newest = times[-1]  # 2026-02-09 18:00
    decision = apply(history, Rules(within_daily=parse_span("3d")), newest + timedelta(minutes=1))
    # cutoff 2026-02-06 18:00 (strict): the last snapshot of Feb 9, 8 and 7, and of Feb 6 the
    # one after the cutoff is none (18:00 is the cutoff itself): three days
    assert set(decision.keep) == {by_time[datetime(2026, 2, d, 18, tzinfo=Z)] for d in (7, 8, 9)}
    assert decision.reasons[by_time[newest]] == ["within_daily", "newest"]
    # a window reaching past the oldest snapshot keeps it too (restic's oldest rule)
    wide = apply(history, Rules(within_monthly=parse_span("1y")), newest + timedelta(minutes=1))
    assert wide.reasons[history[0].id] == ["oldest within_monthly"]
    assert len(wide.keep) == 3  # Feb, Jan, and the oldest


def test_retention_durations() -> None:
    assert parse_span("1y2mo3d3h") == Span(years=1, months=2, days=3, seconds=3 * 3600)
    assert parse_span("2w1d") == Span(days=15) and parse_span("90m") == Span(seconds=5400)
    assert parse_span("3d1y") == Span(years=1, days=3)  # any order, as restic
    assert str(parse_span("1y2mo3d3h")) == "1y2mo3d3h"
    assert parse_span(timedelta(hours=36)) == Span(days=1, seconds=12 * 3600)
    for bad, words in (("", "longer than zero"), ("0d", "longer than zero"), ("1d1d", "given twice"),
                       ("3x", "bad duration"), ("-1d", "bad duration"), ("1month", "bad duration"),
                       ("99999y", "too long"), ("1" * 70 + "d", "too long")):
        with pytest.raises(ValueError, match=words):
            parse_span(bad)


times_strategy = st.lists(
    st.integers(min_value=0, max_value=3 * 365 * 24 * 60).map(
        lambda m: datetime(2024, 1, 1, tzinfo=Z) + timedelta(minutes=m)),
    min_size=1, max_size=60, unique=True,
)
counts = st.none() | st.integers(0, 5) | st.just(UNLIMITED)
spans = st.none() | st.builds(
    Span, years=st.integers(0, 2), months=st.integers(0, 14), days=st.integers(0, 40),
    seconds=st.integers(0, 30) .map(lambda h: h * 3600),
).filter(lambda s: not s.zero())
rules_strategy = st.builds(
    Rules,
    last=counts, hourly=counts, daily=counts, weekly=counts, monthly=counts,
    yearly=st.none() | st.integers(0, 3) | st.just(UNLIMITED),
    within=st.none() | st.integers(1, 30 * 24).map(lambda h: timedelta(hours=h)) | spans,
    within_hourly=spans, within_daily=spans, within_weekly=spans, within_monthly=spans,
    within_yearly=spans,
)
zones = st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Asia/Kathmandu"])
after = st.integers(0, 90 * 24 * 60).map(lambda m: timedelta(minutes=m))  # now, past the newest


@settings(max_examples=300, deadline=None)
@given(times_strategy, rules_strategy, zones, after)
def test_never_removes_the_newest(times: list[datetime], rules: Rules, tz: str, late: timedelta) -> None:
    history = snaps(sorted(times))
    decision = apply(history, rules, history[-1].time + late, tz)
    assert history[-1].id in decision.keep


@settings(max_examples=300, deadline=None)
@given(times_strategy, rules_strategy, zones, after)
def test_applying_twice_removes_nothing_more(times: list[datetime], rules: Rules, tz: str,
                                             late: timedelta) -> None:
    history = snaps(sorted(times))
    now = history[-1].time + late
    first = apply(history, rules, now, tz)
    kept = [s for s in history if s.id in set(first.keep)]
    assert apply(kept, rules, now, tz).remove == []


@settings(max_examples=300, deadline=None)
@given(times_strategy, rules_strategy, zones, st.integers(1, 500 * 24 * 60), after)
def test_a_newer_snapshot_never_resurrects_a_removed_one(
    times: list[datetime], rules: Rules, tz: str, later_minutes: int, late: timedelta
) -> None:
    history = snaps(sorted(times))
    before = apply(history, rules, history[-1].time + late, tz)
    newer = SnapshotInfo("newer", history[-1].time + timedelta(minutes=later_minutes))
    after_it = apply([*history, newer], rules, max(newer.time, history[-1].time + late), tz)
    assert set(before.remove) <= set(after_it.remove)


@settings(max_examples=200, deadline=None)
@given(times_strategy, rules_strategy, zones, after)
def test_every_rule_set_matches_the_independent_port(times: list[datetime], rules: Rules, tz: str,
                                                     late: timedelta) -> None:
    history = snaps(sorted(times))
    now = history[-1].time + late
    assert set(apply(history, rules, now, tz).keep) == restic_reference(history, rules, ZoneInfo(tz), now)
