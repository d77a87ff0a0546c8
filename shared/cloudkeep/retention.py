"""Retention as a pure function, with exactly the semantics of restic's ``forget`` (restic
``internal/data/snapshot_policy.go``, ``ApplyPolicy``; every rule except tags).

``apply(snapshots, rules, now, timezone)`` decides; deleting is a separate step (prune).

The snapshots are walked newest first (a stable sort: snapshots with the same time stay in the
order given). Rules:

- ``last: N`` keeps the N newest snapshots.
- ``hourly`` / ``daily`` / ``weekly`` / ``monthly`` / ``yearly: N`` each keep the newest
  snapshot of each of the N most recent hours / days / ISO weeks / months / years that have a
  snapshot (local time in the policy's time zone). A rule's period is counted when it keeps a
  snapshot, and a rule keeps a snapshot when its period differs from the period of the last
  snapshot that rule kept.
- ``unlimited`` instead of N: no count; every period is kept.
- **The oldest snapshot** is kept by every count rule that still has a count left when the walk
  reaches it, even when its period already has a newer snapshot (restic ≥ 0.16, restic#3624:
  with ``yearly: 10`` and three years of history, the oldest snapshot is kept too, reason
  ``oldest yearly``).
- ``within: D`` keeps every snapshot strictly newer than the *latest* snapshot minus D, where
  the latest snapshot is the newest one taken before ``now`` (a snapshot in the future does not
  move the window). If backups stop, the window stops with them.
- ``within_hourly`` / ``within_daily`` / ``within_weekly`` / ``within_monthly`` /
  ``within_yearly: D``: inside that same kind of window, the newest snapshot of each hour / day /
  ISO week / month / year (no count), and the oldest snapshot when it lies inside the window.
- Durations go back from the latest snapshot with calendar arithmetic (:mod:`cloudkeep.spans`).

Every kept snapshot lists every rule that keeps it (``daily``, ``oldest yearly``, ``within``,
``within_daily``, ...). Safety rules on top, each its own reason: the newest snapshot is always
kept (``newest``); the newest snapshot that passed verification (``newest verified``); a
snapshot under a legal hold (``legal hold: REASON``); a snapshot taken after ``now`` (``newer than
now``); a snapshot without its required verified copies (``only N verified copies of M
required``); and when an input is uncertain (a listing or reading error), nothing is removed at
all (``uncertain input: ...``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from .spans import Span

UNLIMITED = -1
"""A count rule's value for ``unlimited`` (restic's -1)."""

COUNT_RULES = ("last", "hourly", "daily", "weekly", "monthly", "yearly")
WITHIN_RULES = ("within_hourly", "within_daily", "within_weekly", "within_monthly", "within_yearly")
RULES = (*COUNT_RULES, "within", *WITHIN_RULES)
"""Every retention rule, in the order its reasons are listed."""

PERIODS: dict[str, Callable[[datetime], tuple[int, ...]]] = {
    "hourly": lambda t: (t.year, t.month, t.day, t.hour),
    "daily": lambda t: (t.year, t.month, t.day),
    "weekly": lambda t: tuple(t.isocalendar()[:2]),  # ISO year and week, as Go's ISOWeek
    "monthly": lambda t: (t.year, t.month),
    "yearly": lambda t: (t.year,),
}
"""A snapshot's period (its local time's) for each rule that buckets by period."""

_PERIOD_LENGTH = {"hourly": timedelta(hours=1), "daily": timedelta(days=1),
                  "weekly": timedelta(weeks=1), "monthly": timedelta(days=31),
                  "yearly": timedelta(days=366)}
UNLIMITED_HORIZON = timedelta(days=366)
"""How far ahead an ``unlimited`` rule locks a snapshot (Object Lock): prune extends the lock
again for as long as the snapshot is kept."""


@dataclass(frozen=True)
class Rules:
    """One tier's retention: counts (an int, :data:`UNLIMITED`, or None/0 for no rule) and
    windows (a :class:`~cloudkeep.spans.Span`, or None). A timedelta is taken as a span."""

    last: int | None = None
    hourly: int | None = None
    daily: int | None = None
    weekly: int | None = None
    monthly: int | None = None
    yearly: int | None = None
    within: Span | None = None
    within_hourly: Span | None = None
    within_daily: Span | None = None
    within_weekly: Span | None = None
    within_monthly: Span | None = None
    within_yearly: Span | None = None
    min_copies: int = 0

    def __post_init__(self) -> None:
        for name in COUNT_RULES:
            value: Any = getattr(self, name)
            if value == "unlimited":
                object.__setattr__(self, name, UNLIMITED)
            elif value is not None and (type(value) is not int or value < UNLIMITED):
                raise ValueError(f"{name}: a count (0 or more) or unlimited, got {value!r}")
        for name in ("within", *WITHIN_RULES):
            value = getattr(self, name)
            if isinstance(value, timedelta):
                object.__setattr__(self, name, Span.of(value) if value > timedelta(0) else None)
            elif isinstance(value, Span) and value.zero():
                object.__setattr__(self, name, None)

    @classmethod
    def from_policy(cls, retention: object, *, min_copies: int = 0) -> Rules:
        """The rules of a policy's ``retention`` mapping (``cloudkeep.policy.Retention``)."""
        return cls(**{n: getattr(retention, n, None) for n in RULES}, min_copies=min_copies)

    def empty(self) -> bool:
        """True when no rule keeps anything (restic refuses to forget with such a policy)."""
        return not any(getattr(self, n) for n in RULES)

    def describe(self) -> str:
        """The rules as a policy would write them: ``daily: 7, within: 1y2mo``."""
        out = []
        for name in RULES:
            value = getattr(self, name)
            if value:
                out.append(f"{name}: {'unlimited' if value == UNLIMITED else value}")
        return ", ".join(out) or "no rules"

    def horizon(self) -> timedelta:
        """The longest a snapshot can be kept by these rules (for Object Lock retain-until):
        N periods back from the newest snapshot, plus one period; a window's length; an
        ``unlimited`` rule :data:`UNLIMITED_HORIZON` (prune extends kept snapshots' locks)."""
        spans = [timedelta(0)]
        for name, length in _PERIOD_LENGTH.items():
            count = getattr(self, name)
            if count == UNLIMITED:
                spans.append(UNLIMITED_HORIZON)
            elif count:
                spans.append(length * (count + 1))
        if self.last == UNLIMITED:
            spans.append(UNLIMITED_HORIZON)
        for name in ("within", *WITHIN_RULES):
            span = getattr(self, name)
            if span is not None:
                spans.append(min(span.approximate(), timedelta(days=36_600)))
        return max(spans)


@dataclass(frozen=True)
class SnapshotInfo:
    id: str
    time: datetime  # aware; the capture time (cloudkeep.timeline.capture_time)
    verified: bool = False  # passed its latest verification
    hold: str | None = None  # legal hold reason
    copies: int = 0  # verified copies in other stores


@dataclass
class Decision:
    keep: list[str] = field(default_factory=list)  # newest first
    remove: list[str] = field(default_factory=list)  # newest first
    reasons: dict[str, list[str]] = field(default_factory=dict)
    times: dict[str, datetime] = field(default_factory=dict)  # each snapshot's time, as judged


def latest_before(times: Sequence[datetime], now: datetime) -> datetime | None:
    """restic's *latest* snapshot: the newest time strictly before ``now`` (None: none is)."""
    return max((t for t in times if t < now), default=None)


def _cutoff(span: Span, latest: datetime | None, tz: ZoneInfo) -> datetime | None:
    """The moment a window's snapshots must be strictly newer than (None: every snapshot is
    inside — no snapshot before ``now``, or the span reaches back before year 1)."""
    return None if latest is None else span.before(latest, tz)


def forget(times: Sequence[datetime], rules: Rules, now: datetime, tz: ZoneInfo) -> list[list[str]]:
    """restic's ``ApplyPolicy`` without tags: for ``times`` ordered newest first, the reasons of
    each (empty: no rule keeps it). A pure function of its arguments."""
    total = len(times)
    latest = latest_before(times, now)
    counts: list[list[Any]] = []  # [rule, count left, last period kept]
    for name in COUNT_RULES:
        count = getattr(rules, name)
        if count:
            counts.append([name, count, None])
    windows: list[list[Any]] = []  # [rule, cutoff, last period kept]
    for name in WITHIN_RULES:
        span = getattr(rules, name)
        if span is not None:
            windows.append([name, _cutoff(span, latest, tz), None])
    within = _cutoff(rules.within, latest, tz) if rules.within is not None else None
    out: list[list[str]] = []
    for nr, moment in enumerate(times):
        local = moment.astimezone(tz)
        oldest = nr == total - 1
        why: list[str] = []
        for bucket in counts:
            name, left, last = bucket
            if left == 0:
                continue
            period: Any = nr if name == "last" else PERIODS[name](local)
            if period != last or oldest:
                why.append(f"oldest {name}" if period == last else name)
                bucket[2] = period
                if left > 0:
                    bucket[1] = left - 1
        if rules.within is not None and (within is None or moment > within):
            why.append("within")
        for bucket in windows:
            name, cut, last = bucket
            if cut is not None and not moment > cut:
                continue
            period = PERIODS[name.removeprefix("within_")](local)
            if period != last or oldest:
                why.append(f"oldest {name}" if period == last else name)
                bucket[2] = period
        out.append(why)
    return out


def apply(
    snapshots: Sequence[SnapshotInfo],
    rules: Rules,
    now: datetime,
    timezone: str | ZoneInfo = "UTC",
    *,
    uncertain: str | None = None,
) -> Decision:
    """Which snapshots to keep and which to remove, with the reasons for each (module
    docstring): restic's rules, then cloudkeep's safety rules. ``keep`` and ``remove`` are
    newest first; snapshots with the same time stay in the order given."""
    tz = timezone if isinstance(timezone, ZoneInfo) else ZoneInfo(timezone)
    ordered = sorted(snapshots, key=lambda s: s.time, reverse=True)  # stable, as restic's
    reasons: dict[str, list[str]] = {s.id: [] for s in ordered}
    times = {s.id: s.time for s in ordered}
    if uncertain:
        for s in ordered:
            reasons[s.id].append(f"uncertain input: {uncertain}")
        return Decision([s.id for s in ordered], [], reasons, times)

    for s, why in zip(ordered, forget([s.time for s in ordered], rules, now, tz), strict=True):
        reasons[s.id].extend(why)

    if ordered:
        reasons[ordered[0].id].append("newest")
    verified = next((s for s in ordered if s.verified), None)
    if verified is not None:
        reasons[verified.id].append("newest verified")
    for s in ordered:
        if s.hold:
            reasons[s.id].append(f"legal hold: {s.hold}")
        if s.time > now:
            reasons[s.id].append("newer than now")

    decision = Decision(reasons=reasons, times=times)
    for s in ordered:
        if reasons[s.id]:
            decision.keep.append(s.id)
        elif s.copies < rules.min_copies:
            reasons[s.id].append(
                f"only {s.copies} verified cop{'y' if s.copies == 1 else 'ies'} of {rules.min_copies} required"
            )
            decision.keep.append(s.id)
        else:
            decision.remove.append(s.id)
    return decision
