"""A continuously captured dataset's recoverable window, its gaps, and where a moment restores
from.

- The log is complete from ``since`` (the first capture's start: the stream's oldest record)
  up to ``complete_until`` (the last time a capture drained the stream) — per stream; the
  dataset's log is complete from the latest ``since`` to the earliest ``complete_until``. A
  dataset captured only by event-driven handlers without positions counts its newest logged
  change as ``complete_until``.
- A **base** is a committed snapshot whose capture time (``timeline.capture_time``) is at or
  after ``since``: restore replays the log from it.
- A **gap** ends at its recorded end, else at the capture time of the first snapshot taken at or
  after its start (the snapshot closes it); until then it is open.
- A moment ``T`` restores from the newest base captured at or before ``T``, when no gap overlaps
  ``[base, T]`` and ``T <= complete_until``; the window is ``[oldest usable base, complete_until]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .. import catalog
from ..changes import utc
from ..errors import CloudkeepError
from ..policy import Policy
from ..registry import store_for_dataset
from ..stores import Store
from ..timeline import Captured
from .format import format_time
from .gaps import Gap, list_gaps
from .positions import all_streams
from .reader import entries


@dataclass(frozen=True)
class ClosedGap:
    gap: Gap
    end: datetime | None  # effective end (None: open)
    closed_by: str | None

    def as_dict(self) -> dict[str, Any]:
        return self.gap.as_dict(self.closed_by, self.end) | {"open": self.end is None}


@dataclass
class Window:
    dataset: str
    since: datetime | None
    complete_until: datetime | None
    bases: list[Captured]
    gaps: list[ClosedGap] = field(default_factory=list)

    @property
    def start(self) -> datetime | None:
        return self.bases[0].captured_at if self.bases and self.complete_until else None

    @property
    def end(self) -> datetime | None:
        return self.complete_until if self.bases else None

    def as_dict(self) -> dict[str, Any]:
        def t(at: datetime | None) -> str | None:
            return None if at is None else format_time(at)

        return {"dataset": self.dataset, "start": t(self.start), "end": t(self.end),
                "log_since": t(self.since), "log_complete_until": t(self.complete_until),
                "bases": len(self.bases), "gaps": [g.as_dict() for g in self.gaps],
                "open_gaps": sum(1 for g in self.gaps if g.end is None)}

    def locate(self, at: datetime) -> tuple[Captured | None, str | None]:
        """The base to restore ``at`` from, or None with the reason (outside the window, inside a
        gap — saying which)."""
        if self.complete_until is None:
            return None, f"{self.dataset} has no change log yet (run `cloudkeep capture {self.dataset}`)"
        if at > self.complete_until:
            return None, (f"{format_time(at)} is after the end of the recoverable window "
                          f"({format_time(self.complete_until)}, the last capture that caught up; "
                          f"run `cloudkeep capture {self.dataset} --once` first)")
        usable = [b for b in self.bases if b.captured_at <= at]
        if not usable:
            start = self.start
            return None, (f"{format_time(at)} is before the start of the recoverable window "
                          f"({'no base snapshot since the log began' if start is None else format_time(start)})")
        base = usable[-1]
        for closed in self.gaps:
            gap_end = closed.end
            if closed.gap.start <= at and (gap_end is None or gap_end > base.captured_at):
                span = (f"from {format_time(closed.gap.start)} to "
                        + ("the next base snapshot (still open)" if gap_end is None
                           else format_time(gap_end)) + f": {closed.gap.reason}")
                if gap_end is None or at < gap_end:
                    return None, f"{format_time(at)} is inside a gap in the change log ({span})"
                return None, (f"{format_time(at)} follows a gap in the change log ({span}) and no "
                              "base snapshot was taken between the gap and that moment")
        return base, None


def compute(store: Store, dataset: str) -> Window:
    """The dataset's window, from its positions, gaps and committed snapshots."""
    streams = all_streams(store, dataset)
    since_values = [p.since for p in streams if p.since is not None]
    until_values = [p.complete_until for p in streams if p.complete_until is not None]
    since = max(since_values) if since_values else None
    until = min(until_values) if until_values else None
    if not streams or since is None or until is None:
        logged = entries(store, dataset)
        if logged:
            since = since or min(e.first_time for e in logged)
            until = until or max(e.last_time for e in logged)
    snapshots = catalog.committed(store, dataset)
    bases = [s for s in snapshots if since is not None and s.captured_at >= since]
    gaps = []
    for gap in list_gaps(store, dataset):
        end = gap.end
        # an open gap is closed by a snapshot taken once capture had resumed (when it recorded
        # the gap), so that the log is complete from the snapshot on
        after = gap.end or _time(gap.recorded_at) or gap.start
        closer = next((s for s in snapshots if s.captured_at >= after), None)
        closed_by = closer.snapshot_id if closer is not None else None
        if end is None and closer is not None:
            end = closer.captured_at
        gaps.append(ClosedGap(gap, end, closed_by))
    return Window(dataset, since, until, bases, gaps)


def _time(text: str) -> datetime | None:
    try:
        return utc(datetime.fromisoformat(text.replace("Z", "+00:00"))) if text else None
    except (ValueError, OverflowError):
        return None


def summary(policy: Policy, dataset: str, store: Store | None = None) -> dict[str, Any] | None:
    """What ``list``, ``plan`` and ``report`` show of a continuously captured dataset (None for
    one that is not): its recoverable window, gaps and settings; a store error is recorded in
    ``error``, not raised."""
    settings = policy.continuous(dataset)
    if settings is None:
        return None
    out: dict[str, Any] = {
        "flush_interval_seconds": int(settings.flush_interval.total_seconds()),
        "window_seconds": None if settings.window is None else int(settings.window.total_seconds()),
    }
    try:
        store = store if store is not None else store_for_dataset(policy, dataset)
        return compute(store, dataset).as_dict() | out | {"error": None}
    except CloudkeepError as exc:
        return {"dataset": dataset, "start": None, "end": None, "gaps": [], "open_gaps": 0,
                "error": str(exc)} | out


def describe(summary_: dict[str, Any]) -> str:
    """One line for a table: ``window START → END, N gaps (M open)``."""
    if summary_.get("error"):
        return f"continuous: {summary_['error']}"
    start, end = str(summary_.get("start") or ""), str(summary_.get("end") or "")
    span = "no recoverable window yet" if not start else f"recoverable {start[:19]}Z → {end[:19]}Z"
    gaps = summary_.get("gaps") or []
    text = f"continuous: {span}"
    if gaps:
        text += f"; {len(gaps)} gap(s), {summary_.get('open_gaps', 0)} open"
        for gap in gaps:
            text += (f"; gap {gap['start'][:19]} → {(gap['closed_at'] or gap['end'] or 'open')[:19]}"
                     f" ({gap['reason']})")
    return text
