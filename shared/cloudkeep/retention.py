"""Retention as a pure function, with the semantics of restic's ``forget``.

``apply(snapshots, rules, now, timezone)`` decides; deleting is a separate step (prune).

Rules: ``last N`` keeps the N newest snapshots. ``hourly``/``daily``/``weekly``/``monthly``/
``yearly N`` each keep the newest snapshot of each of the N most recent periods (in the policy's
time zone; weeks are ISO weeks) that have a snapshot. ``within D`` keeps every snapshot taken
within D of the newest snapshot (as restic's ``--keep-within``: if backups stop, it stops
nothing from being kept). Every kept snapshot lists every rule that keeps it.

Safety rules on top: the newest snapshot is always kept; the newest snapshot that passed
verification is always kept; a snapshot under a legal hold is kept; a snapshot without its
required verified copies is kept; and when an input is uncertain (a listing or reading error),
nothing is removed at all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

PERIODS: dict[str, Callable[[datetime], tuple[int, ...]]] = {
    "hourly": lambda t: (t.year, t.month, t.day, t.hour),
    "daily": lambda t: (t.year, t.month, t.day),
    "weekly": lambda t: tuple(t.isocalendar()[:2]),
    "monthly": lambda t: (t.year, t.month),
    "yearly": lambda t: (t.year,),
}


@dataclass(frozen=True)
class Rules:
    last: int | None = None
    hourly: int | None = None
    daily: int | None = None
    weekly: int | None = None
    monthly: int | None = None
    yearly: int | None = None
    within: timedelta | None = None
    min_copies: int = 0

    @classmethod
    def from_policy(cls, retention: object, *, min_copies: int = 0) -> Rules:
        names = ("last", "hourly", "daily", "weekly", "monthly", "yearly", "within")
        return cls(**{n: getattr(retention, n, None) for n in names}, min_copies=min_copies)

    def horizon(self) -> timedelta:
        """The longest a snapshot can be kept by these rules (for Object Lock retain-until):
        N periods back from the newest snapshot, plus one period."""
        spans = [
            timedelta(hours=(self.hourly or 0) + 1) if self.hourly else timedelta(0),
            timedelta(days=(self.daily or 0) + 1) if self.daily else timedelta(0),
            timedelta(weeks=(self.weekly or 0) + 1) if self.weekly else timedelta(0),
            timedelta(days=31 * ((self.monthly or 0) + 1)) if self.monthly else timedelta(0),
            timedelta(days=366 * ((self.yearly or 0) + 1)) if self.yearly else timedelta(0),
            self.within or timedelta(0),
        ]
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


def apply(
    snapshots: Sequence[SnapshotInfo],
    rules: Rules,
    now: datetime,
    timezone: str | ZoneInfo = "UTC",
    *,
    uncertain: str | None = None,
) -> Decision:
    """Which snapshots to keep and which to remove, with the reasons for each."""
    tz = timezone if isinstance(timezone, ZoneInfo) else ZoneInfo(timezone)
    ordered = sorted(snapshots, key=lambda s: (s.time, s.id), reverse=True)
    reasons: dict[str, list[str]] = {s.id: [] for s in ordered}
    if uncertain:
        for s in ordered:
            reasons[s.id].append(f"uncertain input: {uncertain}")
        return Decision([s.id for s in ordered], [], reasons)

    if rules.last:
        for s in ordered[: rules.last]:
            reasons[s.id].append("last")
    for name, period_of in PERIODS.items():
        count = getattr(rules, name)
        if not count:
            continue
        seen: set[tuple[int, ...]] = set()
        for s in ordered:
            period = period_of(s.time.astimezone(tz))
            if period in seen:
                continue
            if len(seen) == count:
                break
            seen.add(period)
            reasons[s.id].append(name)
    if rules.within and ordered:
        newest = ordered[0].time
        for s in ordered:
            if newest - s.time <= rules.within:
                reasons[s.id].append("within")

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

    decision = Decision(reasons=reasons)
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
