"""DynamoDB stream records (GetRecords or a Lambda event) → :class:`~cloudkeep.changes.Change`.

``from_stream_record(record, recorded, *, shard=None)``: see
:func:`cloudkeep.sources.dynamodb.stream.from_stream_record`.
"""

from __future__ import annotations

from ..sources.dynamodb.stream import EVENT_NAMES, StreamRecordError, from_stream_record, record_key

__all__ = ["EVENT_NAMES", "StreamRecordError", "from_stream_record", "record_key"]
