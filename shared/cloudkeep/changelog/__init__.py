"""The change log of continuous capture (issue #21): a dataset's changes between base snapshots.

The interface every producer uses (the ``capture`` command, the event-driven handlers)::

    Change(key, event, time, shard, sequence, line)      one change (cloudkeep.changes)
    ingest(policy, dataset, changes, *, clock=None) -> IngestResult
    record_gap(policy, dataset, *, start, end, reason) -> Gap

Converters from each source's change events to :class:`Change` live beside the change log
(``changelog.dynamodb.from_stream_record``, ...). The stored form is in :mod:`.format`;
``docs/continuous.md`` describes it all.
"""

from __future__ import annotations

from ..changes import EVENTS, Change, pad_sequence
from .gaps import Gap, list_gaps, record_gap
from .ingest import Clock, IngestResult, ingest

__all__ = ["EVENTS", "Change", "Clock", "Gap", "IngestResult", "ingest", "list_gaps",
           "pad_sequence", "record_gap"]
