"""DynamoDB Streams records → :class:`cloudkeep.changes.Change`.

The same ``dynamodb`` shape arrives from GetRecords (the low-level client: binary values as
bytes, ``ApproximateCreationDateTime`` a datetime) and in a Lambda event (binary as base64 text,
the time as epoch seconds); both give the same change. The item line is exactly what a Scan
snapshot writes into parts (``{"Item": ...}``, :func:`.codec.encode_item`), so a replayed change
and a snapshot's item are the same bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from ...changes import Change, pad_sequence, utc
from .codec import encode_item, key_to_wire
from .spec import DynamoDBSourceSpec

EVENT_NAMES = {"INSERT": "insert", "MODIFY": "modify", "REMOVE": "remove"}


class StreamRecordError(ValueError):
    """A record that is not a usable DynamoDB stream record (the message says why)."""


def _time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return utc(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(float(value), UTC)
    if isinstance(value, str):
        try:
            return datetime.fromtimestamp(float(value), UTC)
        except ValueError:
            return utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
    raise StreamRecordError("the record has no ApproximateCreationDateTime")


def record_key(keys: Mapping[str, Any], recorded: Mapping[str, Any]) -> Any:
    """The normalised key (:mod:`cloudkeep.itemkeys`) of a record's ``Keys``."""
    schema = recorded.get("key_schema") or [
        {"AttributeName": name, "KeyType": "HASH"} for name in sorted(keys)]
    key = DynamoDBSourceSpec.item_key({"Item": key_to_wire(dict(keys))}, {"key_schema": schema})
    if key is None:
        raise StreamRecordError("the record's Keys do not name the table's key attributes")
    return key


def from_stream_record(record: Mapping[str, Any], recorded: Mapping[str, Any], *,
                       shard: str | None = None) -> Change:
    """The change one stream record describes. ``recorded`` is the dataset's recorded source (a
    manifest's ``source``, with ``key_schema``; without it the record's ``Keys`` are the key).
    ``shard`` is the stream shard the record was read from; a Lambda event does not say it, so
    it defaults to the record's ``eventSourceARN`` (the stream). A record without the new image
    (a stream of KEYS_ONLY or OLD_IMAGE) raises :class:`StreamRecordError`: the change log needs
    NEW_IMAGE or NEW_AND_OLD_IMAGES."""
    if not isinstance(record, Mapping):
        raise StreamRecordError("a stream record is a JSON object")
    body = record.get("dynamodb")
    if not isinstance(body, Mapping):
        raise StreamRecordError("the record has no 'dynamodb' body")
    event = EVENT_NAMES.get(str(record.get("eventName")))
    if event is None:
        raise StreamRecordError(f"unknown eventName {record.get('eventName')!r}")
    keys = body.get("Keys")
    if not isinstance(keys, Mapping) or not keys:
        raise StreamRecordError("the record has no Keys")
    sequence = body.get("SequenceNumber")
    if sequence is None:
        raise StreamRecordError("the record has no SequenceNumber")
    try:
        padded = pad_sequence(str(sequence))
    except ValueError as e:
        raise StreamRecordError(str(e)) from None
    line: bytes | None = None
    if event != "remove":
        image = body.get("NewImage")
        if not isinstance(image, Mapping):
            raise StreamRecordError(
                f"the record has no NewImage (stream view type {body.get('StreamViewType', '?')}; "
                "continuous capture needs NEW_IMAGE or NEW_AND_OLD_IMAGES)")
        line = encode_item(dict(image))
    where = shard or str(record.get("eventSourceARN") or "stream")
    return Change(key=record_key(keys, recorded), event=event,
                  time=_time(body.get("ApproximateCreationDateTime")), shard=where,
                  sequence=padded, line=line)
