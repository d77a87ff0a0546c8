"""One ``cloudkeep capture`` run: read a source's change stream from the last recorded position,
append its changes to the log, record gaps (with an alert) and the new position.

Every batch is ingested (create-only, exactly-once in effect) *before* the position after it is
recorded, so a crash re-reads at most one batch, which ingest finds already written. ``once``
drains the stream and stops; otherwise the run keeps following the stream, reading again every
``flush_interval``, until ``budget`` runs out (or forever without one).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .. import alerts
from ..capabilities import CapturesChanges, CopiesObjects, able
from ..errors import UsageError
from ..policy import Policy
from ..registry import open_source, store_for_dataset
from ..sources import Source
from ..stores import Store
from . import positions, window
from .format import format_time
from .gaps import ALERT_KIND, record_gap
from .ingest import Clock, _ProcessClock, ingest

log = logging.getLogger(__name__)


@dataclass
class CaptureResult:
    dataset: str
    stream: str
    changes: int = 0
    written: int = 0
    duplicates: int = 0
    segments: int = 0
    bytes: int = 0
    gaps: list[dict[str, Any]] = field(default_factory=list)
    caught_up: datetime | None = None
    lag_seconds: float | None = None
    reads: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "stream": self.stream, "changes": self.changes,
                "written": self.written, "duplicates": self.duplicates,
                "segments": self.segments, "bytes": self.bytes, "gaps": self.gaps,
                "caught_up": None if self.caught_up is None else format_time(self.caught_up),
                "lag_seconds": self.lag_seconds}


def capturing_source(policy: Policy, dataset: str, source: Source | None = None) -> CapturesChanges:
    """The dataset's source as a change stream; a UsageError (exit 2) when the dataset is not
    continuous or its source type cannot be captured by ``cloudkeep capture``."""
    spec = policy.dataset(dataset)
    if policy.continuous(dataset) is None:
        raise UsageError(f"dataset {dataset} is not captured continuously: add `continuous: true` "
                         "to it (or its tier) in the policy")
    source = source or open_source(spec.source)
    stream = able(source, CapturesChanges)
    if stream is None:
        raise UsageError(f"{spec.source.type} sources are captured by their event-driven handler, "
                         "not by `cloudkeep capture` (docs/continuous.md)")
    return stream


def capture(policy: Policy, dataset: str, *, once: bool = False,
            budget: timedelta | None = None, clock: Clock | None = None,
            store: Store | None = None, source: Source | None = None,
            stop: threading.Event | None = None) -> CaptureResult:
    """Capture ``dataset``'s changes (see the module docstring)."""
    source = source or open_source(policy.dataset(dataset).source)
    stream = capturing_source(policy, dataset, source)
    settings = policy.continuous(dataset)
    assert settings is not None
    store = store if store is not None else store_for_dataset(policy, dataset)
    copier = able(source, CopiesObjects)
    if copier is not None:  # the S3 source copies each version's content into the blobs
        copier.attach_store(store, dataset)
    clock = clock or _ProcessClock()
    deadline = None if budget is None else time.monotonic() + budget.total_seconds()
    stream_id = stream.change_stream_id()
    result = CaptureResult(dataset, stream_id)
    stop = stop or threading.Event()
    notifier = alerts.Notifier(alerts.channels_for(policy), alerts.secret_values(policy))
    while True:
        _drain(policy, dataset, stream, stream_id, store, clock, deadline, result, notifier)
        if once or stop.is_set() or (deadline is not None and time.monotonic() >= deadline):
            break
        wait = settings.flush_interval.total_seconds()
        if deadline is not None:
            wait = min(wait, max(0.0, deadline - time.monotonic()))
        if stop.wait(wait):
            break
    if not result.gaps:
        _clear_alert_if_closed(policy, dataset, store, notifier)
    return result


def _drain(policy: Policy, dataset: str, stream: CapturesChanges, stream_id: str, store: Store,
           clock: Clock, deadline: float | None, result: CaptureResult,
           notifier: alerts.Notifier) -> None:
    before = positions.current(store, dataset, stream_id)
    state = before or positions.Position(stream_id, None, None, None)
    result.reads += 1
    for batch in stream.read_changes(state.position, now=clock.now, deadline=deadline):
        for gap in batch.gaps:
            recorded = record_gap(policy, dataset, start=gap.start, end=gap.end, reason=gap.reason,
                                  store=store, notifier=notifier)
            result.gaps.append(recorded.as_dict())
        if batch.changes:
            done = ingest(policy, dataset, batch.changes, clock=clock, store=store)
            result.changes += done.changes
            result.written += done.written
            result.duplicates += done.duplicates
            result.segments += done.segments
            result.bytes += done.bytes
            if done.lag is not None:
                result.lag_seconds = round(done.lag.total_seconds(), 3)
        logged = dict(state.logged or {})
        for change in batch.changes:
            if change.sequence > logged.get(change.shard, ""):
                logged[change.shard] = change.sequence
        since = state.since or batch.since
        until = state.complete_until
        if batch.caught_up is not None:
            until = batch.caught_up if until is None else max(until, batch.caught_up)
            result.caught_up = until
        moved = (batch.position != state.position or until != state.complete_until
                 or since != state.since or logged != (state.logged or {}))
        if moved:
            entry = positions.Position(stream_id, batch.position, since, until, state.number,
                                       logged)
            number = positions.append(store, dataset, entry, clock.now())
            state = positions.Position(stream_id, batch.position, since, until, number, logged)
    if result.caught_up is not None and result.lag_seconds is None:
        result.lag_seconds = 0.0


def _clear_alert_if_closed(policy: Policy, dataset: str, store: Store,
                           notifier: alerts.Notifier) -> None:
    """Close the ``capture_gap`` alert once no gap is open (a base snapshot closed them)."""
    if not any(a.get("kind") == ALERT_KIND for a in alerts.open_alerts(store, dataset)):
        return
    if any(g.end is None for g in window.compute(store, dataset).gaps):
        return
    alerts.update(store, dataset, {ALERT_KIND: None}, notifier, tier=policy.dataset(dataset).tier)
