"""Event-driven capture on Google Cloud (issue #21): Firestore document events (see
:mod:`.capture_events`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..changes import Change
from ..errors import UsageError
from ..metrics import MetricsSink
from ..policy import Policy
from ..sources.firestore import events as firestore_events
from .capture_events import continuous_datasets, ingest_batch


def capture_firestore_event(policy: Policy, data: bytes | str | dict[str, Any],
                            content_type: str | None, event_time: str, *,
                            sink: MetricsSink | None = None, clock: Any = None,
                            only: Iterable[str] | None = None,
                            message: Any = None) -> dict[str, Any]:
    """One ``google.cloud.firestore.document.v1.written`` event (its data and ``time``) into the
    change log of every continuous dataset that backs up the document. ``message``: the
    ``DocumentEventData`` class (google-events; imported on first use when not given)."""
    try:
        change = firestore_events.to_change(firestore_events.decode(data, content_type, message),
                                            event_time)
    except ValueError as exc:
        raise UsageError(f"bad Firestore document event: {exc}") from None
    captured = {}
    for name in continuous_datasets(policy, f"firestore:{change.database}", only):
        if not policy.dataset(name).source.captures_key(change.path):
            continue
        entry = Change(change.path, change.event, change.time, change.database, change.sequence,
                       change.line)
        captured[name] = ingest_batch(policy, name, [entry], sink, clock).as_dict()
    return {"captured": captured, "document": change.path, "event": change.event}
