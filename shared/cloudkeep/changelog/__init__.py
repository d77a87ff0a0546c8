"""The change log of continuous capture (issue #21): a dataset's changes between base snapshots.

The interface every producer uses (the ``capture`` command, the event-driven handlers)::

    Change(key, event, time, shard, sequence, line)      one change (cloudkeep.changes)
    ingest(policy, dataset, changes, *, clock=None) -> IngestResult
    record_gap(policy, dataset, *, start, end, reason) -> Gap
    mark_complete(policy, dataset, stream, until, *, since=None)

An event-driven producer has no read position; it calls :func:`mark_complete` to say up to when
the log of its stream is complete (``until``: e.g. the event time of the batch it just ingested,
all earlier batches having been ingested) and, once, from when (``since``: e.g. when the stream
or its trigger was created). Without it the recoverable window runs from the oldest to the newest
logged change, so a base snapshot taken before the first logged change is not usable.

Converters from each source's change events to :class:`Change` live beside the change log
(``changelog.dynamodb.from_stream_record``, ...). The stored form is in :mod:`.format`;
``docs/continuous.md`` describes it all.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from ..changes import EVENTS, Change, pad_sequence
from ..registry import store_for_dataset
from .gaps import Gap, list_gaps, record_gap
from .ingest import Clock, IngestResult, ingest
from .positions import mark_complete as _mark_complete

if TYPE_CHECKING:
    from ..policy import Policy


def mark_complete(policy: Policy, dataset: str, stream: str, until: datetime, *,
                  since: datetime | None = None) -> None:
    """The log of ``stream`` holds every change up to ``until`` (and from ``since``, when given
    the first time). Only creates objects (a position entry)."""
    policy.dataset(dataset)
    _mark_complete(store_for_dataset(policy, dataset), dataset, stream, until, since=since)


__all__ = ["EVENTS", "Change", "Clock", "Gap", "IngestResult", "ingest", "list_gaps",
           "mark_complete", "pad_sequence", "record_gap"]
