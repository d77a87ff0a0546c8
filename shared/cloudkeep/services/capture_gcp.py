"""Event-driven capture on Google Cloud (issue #21): Firestore document events (see
:mod:`.capture_events`)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from ..changes import Change, utc
from ..metrics import MetricsSink
from ..policy import Policy
from ..sources.firestore import events as firestore_events
from .capture_events import continuous_datasets, gap, ingest_batch

log = logging.getLogger(__name__)


def capture_firestore_event(policy: Policy, data: bytes | str | dict[str, Any],
                            content_type: str | None, event_time: str, *,
                            sink: MetricsSink | None = None, clock: Any = None,
                            only: Iterable[str] | None = None,
                            message: Any = None, database: str | None = None) -> dict[str, Any]:
    """One ``google.cloud.firestore.document.v1.written`` event (its data and ``time``) into the
    change log of every continuous dataset that backs up the document. ``message``: the
    ``DocumentEventData`` class (google-events; imported on first use when not given).

    A malformed event is not raised (Eventarc would retry it for days, failing each time): it is
    logged as one error line and recorded as an open gap from its time (else now) in every
    continuous Firestore dataset of ``database`` (the event's ``database`` attribute; every
    continuous Firestore dataset when it is unknown), and the reply has ``error``."""
    try:
        change = firestore_events.to_change(firestore_events.decode(data, content_type, message),
                                            event_time)
    except ValueError as exc:
        return _malformed(policy, f"bad Firestore document event: {exc}", event_time, database,
                          sink, only)
    captured = {}
    for name in continuous_datasets(policy, f"firestore:{change.database}", only):
        if not policy.dataset(name).source.captures_key(change.path):
            continue
        entry = Change(change.path, change.event, change.time, change.database, change.sequence,
                       change.line)
        captured[name] = ingest_batch(policy, name, [entry], sink, clock).as_dict()
    return {"captured": captured, "document": change.path, "event": change.event}


def _malformed(policy: Policy, problem: str, event_time: str, database: str | None,
               sink: MetricsSink | None, only: Iterable[str] | None) -> dict[str, Any]:
    """Record a malformed event as a gap (its change is not in the log) and reply with the
    error."""
    problem = " ".join(problem.split())[:300]
    try:
        start = utc(datetime.fromisoformat(str(event_time).replace("Z", "+00:00")))
    except ValueError:
        start = datetime.now(UTC)
    names = [name for name, ds in policy.datasets.items()
             if policy.continuous(name) is not None
             and (ds.source.event_origin() or "").startswith("firestore:")
             and (database is None or ds.source.event_origin() == f"firestore:{database}")
             and (only is None or name in set(only))]
    log.error("%s; recorded as a change-log gap of %s", problem, ", ".join(sorted(names)) or "no dataset")
    gaps = [gap(policy, name, start, None, problem, sink) for name in sorted(names)]
    return {"captured": {}, "error": problem, "gaps": gaps}
