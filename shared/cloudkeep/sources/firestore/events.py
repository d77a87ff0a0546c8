"""Firestore document events (``google.cloud.firestore.document.v1.written``) as change records
(pure: the protobuf classes are passed in).

A ``document.written`` CloudEvent carries a ``DocumentEventData`` (``value``: the document after
the write, absent for a delete; ``old_value``: before it, absent for a create), as protobuf
(``application/protobuf``, Eventarc's default) or as proto3 JSON (``application/json``). Its
``google.events.cloud.firestore.v1.Document`` has the field numbers and value types of
``google.firestore.v1.Document``, so the line is made by the same encoder the scan reader uses
(:func:`~cloudkeep.sources.firestore.codec.encode_document`): a captured version is byte for byte
the line a snapshot taken at that moment holds.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from .codec import EPOCH, encode_document

_EVENT_TIME = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$")
MAX_EVENT_BYTES = 12 * 1024 * 1024  # a document is at most 1 MiB; old and new value, some slack


@dataclass(frozen=True)
class DocumentChange:
    """One captured write of one document: its path relative to the database, the event kind,
    the commit time (seconds, nanoseconds) and the new line (None once deleted)."""

    path: str
    event: str  # insert | modify | remove
    seconds: int
    nanos: int
    line: bytes | None
    database: str  # projects/<p>/databases/<d>

    @property
    def time(self) -> datetime:
        """The commit time, UTC (microseconds: a datetime holds no more)."""
        return EPOCH + timedelta(seconds=self.seconds, microseconds=self.nanos // 1000)

    @property
    def sequence(self) -> str:
        """Sorts as text in commit order; unique per document and commit (a batch commits many
        documents at one time): zero-padded seconds and nanoseconds, then a hash of the path."""
        tag = hashlib.sha256(self.path.encode("utf-8")).hexdigest()[:16]
        return f"{self.seconds:012d}{self.nanos:09d}-{tag}"


def parse_event_time(text: str) -> tuple[int, int]:
    """(seconds, nanoseconds) of a CloudEvent ``time`` (RFC 3339, any offset)."""
    match = _EVENT_TIME.match(text or "")
    if not match:
        raise ValueError(f"bad event time {text!r}")
    base, fraction, zone = match.groups()
    moment = datetime.fromisoformat(base + ("+00:00" if zone == "Z" else zone)).astimezone(UTC)
    return (moment - EPOCH) // timedelta(seconds=1), int((fraction or "").ljust(9, "0"))


def split_name(name: str) -> tuple[str, str]:
    """(``projects/p/databases/d``, relative document path) of a full document name."""
    head, sep, tail = name.partition("/documents/")
    parts = head.split("/")
    if not sep or len(parts) != 4 or parts[0] != "projects" or parts[2] != "databases" or not tail:
        raise ValueError(f"bad document name {name[:200]!r}")
    return head, tail


def to_change(data: Any, event_time: str) -> DocumentChange:
    """The change one raw ``DocumentEventData`` protobuf describes. ``event_time``: the
    CloudEvent's ``time`` (the commit time of a delete, which leaves no document to read it
    from). Raises ValueError for an event that describes no write."""
    new: Any = data.value if data.HasField("value") and data.value.name else None
    old: Any = data.old_value if data.HasField("old_value") and data.old_value.name else None
    if new is None and old is None:
        raise ValueError("a document event with neither value nor old_value")
    database, path = split_name((new if new is not None else old).name)
    if new is not None:
        if new.update_time.seconds or new.update_time.nanos:
            seconds, nanos = new.update_time.seconds, new.update_time.nanos
        else:
            seconds, nanos = parse_event_time(event_time)
        return DocumentChange(path, "insert" if old is None else "modify", seconds, nanos,
                              encode_document(new, path), database)
    seconds, nanos = parse_event_time(event_time)
    return DocumentChange(path, "remove", seconds, nanos, None, database)


def decode(payload: bytes | str | dict[str, Any], content_type: str | None,
           message: Any = None) -> Any:
    """The raw ``DocumentEventData`` protobuf of an event's data: protobuf bytes, or proto3 JSON
    (text or already parsed). ``message`` is the proto-plus class (google-events'
    ``DocumentEventData``; imported on first use when not given). Raises ValueError for data
    that is neither, or too large."""
    if message is None:
        from google.events.cloud.firestore_v1 import DocumentEventData

        message = DocumentEventData
    size = len(payload) if isinstance(payload, (bytes, str)) else 0
    if size > MAX_EVENT_BYTES:
        raise ValueError(f"a document event of {size} bytes (at most {MAX_EVENT_BYTES})")
    kind = (content_type or "").split(";")[0].strip().lower()
    try:
        if isinstance(payload, dict):
            return message.pb(message.from_json(json.dumps(payload), ignore_unknown_fields=True))
        if kind.endswith("json") or (isinstance(payload, str)):
            text = payload.decode("utf-8") if isinstance(payload, bytes) else payload
            return message.pb(message.from_json(text, ignore_unknown_fields=True))
        return message.pb(message.deserialize(bytes(payload)))
    except ValueError:
        raise
    except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError, json_format's ParseError
        raise ValueError(f"not a Firestore DocumentEventData ({kind or 'no content type'}): "
                         f"{str(exc)[:200]}") from None


__all__ = ["DocumentChange", "decode", "parse_event_time", "split_name", "to_change"]
