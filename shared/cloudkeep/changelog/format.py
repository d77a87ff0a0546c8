"""The change log's stored form: segment lines, segments, and their index entries.

A **segment** is a zstd frame of newline-terminated lines, one change per line, in the order of
its shard's sequence::

    {"event":"modify","key":{...},"seq":"000…123","shard":"shardId-…","time":"2026-…Z","item":<line>}

``item`` is the item exactly as a snapshot's part holds it (the same bytes: the source's
lossless encoding), or ``null`` for a remove. Encrypted datasets seal a segment like a part
(AES-256-GCM chunks, :func:`cloudkeep.codec.encrypt_part`) under a data key of its own, wrapped
by the dataset's keys and bound to the segment (:func:`segment_context`).

A segment's **index entry** (JSON, written create-only after the segment: the commit — a segment
without its entry does not exist) records where the segment is, its shard, sequence and time
range, the number of changes, sizes, the sha256 of the stored bytes and of the lines, its wrapped
data key, and — when the dataset is not encrypted — the hashes of the keys it changes, so a key
finds its segments by reading entries only.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ..changes import EVENTS, Change, utc
from ..codec import MAX_LINE_BYTES, PartBuffer, canonical_json
from ..itemkeys import key_bytes, key_hash

FORMAT = 1
MAX_ENTRY_BYTES = 4 * 1024 * 1024
MAX_SEGMENT_CHANGES = 10_000
MAX_SEGMENT_RAW = 32 * 1024 * 1024
MAX_SEGMENT_SPAN = timedelta(hours=1)
"""Event time one segment covers at most (so a time's segments are found near it)."""


def format_time(at: datetime) -> str:
    """A change time as recorded: ISO 8601 UTC with microseconds and ``Z``."""
    return utc(at).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: Any) -> datetime:
    if not isinstance(text, str) or len(text) > 40:
        raise ValueError(f"not a time: {str(text)[:40]!r}")
    try:
        return utc(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except OverflowError:  # a forged time: year 1 with a positive offset
        raise ValueError(f"time out of range: {text!r}") from None


def _head(change: Change) -> bytes:
    head = canonical_json({"event": change.event, "key": change.key, "seq": change.sequence,
                           "shard": change.shard, "time": format_time(change.time)})
    return head[:-1] + b',"item":'


def encode_change(change: Change) -> bytes:
    """One segment line (without its newline)."""
    return _head(change) + (change.line if change.line is not None else b"null") + b"}"


def decode_change(line: bytes) -> Change:
    """A change from one segment line; ValueError when the line is not one this module wrote."""
    if len(line) > MAX_LINE_BYTES:
        raise ValueError("line too long")
    doc = json.loads(line)
    if not isinstance(doc, dict) or set(doc) != {"event", "key", "seq", "shard", "time", "item"}:
        raise ValueError("not a change line")
    if doc["event"] not in EVENTS or not isinstance(doc["seq"], str) or not isinstance(doc["shard"], str):
        raise ValueError("not a change line")
    change = Change(key=doc["key"], event=doc["event"], time=parse_time(doc["time"]),
                    shard=doc["shard"], sequence=doc["seq"], line=b"x" if doc["item"] is not None else None)
    head = _head(change)
    if not line.startswith(head) or not line.endswith(b"}"):
        raise ValueError("change line not in canonical form")
    item = line[len(head):-1]
    if (item == b"null") != (change.event == "remove"):
        raise ValueError("a remove carries no item; an insert or modify carries one")
    return Change(key=change.key, event=change.event, time=change.time, shard=change.shard,
                  sequence=change.sequence, line=None if item == b"null" else item)


def segment_context(name: str) -> str:
    """What a segment's data key is bound to (the key providers' context ``snapshot``)."""
    return f"changelog-{name}"


@dataclass(frozen=True)
class Entry:
    """A committed segment, as its index entry records it."""

    name: str
    key: str  # the index entry's own store key
    segment: str  # the segment's store key
    shard: str
    first_seq: str
    last_seq: str
    first_time: datetime
    last_time: datetime
    changes: int
    raw_bytes: int
    stored_bytes: int
    sha256: str
    lines_sha256: str
    encryption: dict[str, Any] | None
    key_hashes: frozenset[str] | None  # None: not recorded (encrypted datasets)
    written_at: str
    blobs: tuple[str, ...] = ()  # S3 source: the blobs (sha256) its changes' lines reference

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "name": self.name, "segment": self.segment, "shard": self.shard,
            "first_seq": self.first_seq, "last_seq": self.last_seq,
            "first_time": format_time(self.first_time), "last_time": format_time(self.last_time),
            "changes": self.changes, "raw_bytes": self.raw_bytes,
            "stored_bytes": self.stored_bytes, "sha256": self.sha256,
            "lines_sha256": self.lines_sha256, "compression": "zstd",
            "encryption": self.encryption,
            "keys": None if self.key_hashes is None else sorted(self.key_hashes),
            "written_at": self.written_at,
            "blobs": list(self.blobs),
        }

    def may_hold(self, key: Any) -> bool:
        """False only when the entry's key hashes prove the segment does not change ``key``."""
        return self.key_hashes is None or key_hash(key).hex() in self.key_hashes


def parse_entry(data: bytes, key: str, segments_prefix: str) -> Entry:
    """An index entry read back; ValueError naming what is wrong (a forged or damaged entry)."""
    if len(data) > MAX_ENTRY_BYTES:
        raise ValueError("index entry too large")
    doc = json.loads(data)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError("not a change-log index entry (format 1)")
    segment = doc.get("segment")
    if not isinstance(segment, str) or not segment.startswith(segments_prefix) or ".." in segment:
        raise ValueError("the entry's segment is not in this dataset's change log")
    ints = {}
    for field in ("changes", "raw_bytes", "stored_bytes"):
        value = doc.get(field)
        if type(value) is not int or value < 0:
            raise ValueError(f"bad {field}")
        ints[field] = value
    texts = {}
    for field in ("name", "shard", "first_seq", "last_seq", "sha256", "lines_sha256"):
        value = doc.get(field)
        if not isinstance(value, str) or not value or len(value) > 1024:
            raise ValueError(f"bad {field}")
        texts[field] = value
    keys = doc.get("keys")
    if keys is not None and (not isinstance(keys, list) or not all(isinstance(k, str) for k in keys)):
        raise ValueError("bad keys")
    encryption = doc.get("encryption")
    if encryption is not None and not isinstance(encryption, dict):
        raise ValueError("bad encryption")
    blobs = doc.get("blobs") or []
    if not isinstance(blobs, list) or not all(isinstance(b, str) and len(b) == 64 for b in blobs):
        raise ValueError("bad blobs")
    first, last = parse_time(doc.get("first_time")), parse_time(doc.get("last_time"))
    if last < first or texts["last_seq"] < texts["first_seq"]:
        raise ValueError("the entry's range runs backwards")
    return Entry(name=texts["name"], key=key, segment=segment, shard=texts["shard"],
                 first_seq=texts["first_seq"], last_seq=texts["last_seq"], first_time=first,
                 last_time=last, encryption=encryption,
                 key_hashes=None if keys is None else frozenset(keys),
                 sha256=texts["sha256"], lines_sha256=texts["lines_sha256"],
                 written_at=str(doc.get("written_at", "")), blobs=tuple(blobs), **ints)


@dataclass
class Built:
    """A segment's plain (compressed) bytes and what its entry records."""

    body: bytes
    raw_bytes: int
    lines_sha256: str
    key_hashes: frozenset[str]


def build_segment(changes: Sequence[Change]) -> Built:
    """The compressed segment of ``changes`` (already in sequence order)."""
    buffer = PartBuffer()
    lines = [encode_change(c) for c in changes]
    hasher = hashlib.sha256()
    for line in lines:
        hasher.update(line + b"\n")
    buffer.add_lines(lines)
    return Built(body=buffer.finish(), raw_bytes=buffer.raw_bytes, lines_sha256=hasher.hexdigest(),
                 key_hashes=frozenset(key_hash(c.key).hex() for c in changes))


def split(changes: Sequence[Change]) -> Iterator[list[Change]]:
    """``changes`` of one shard in sequence order, cut into segments of at most
    :data:`MAX_SEGMENT_CHANGES` changes and about :data:`MAX_SEGMENT_RAW` bytes (the cut depends
    only on the changes, so a batch delivered twice is cut the same way)."""
    ordered = sorted(changes, key=lambda c: c.sequence)
    chunk: list[Change] = []
    size = 0
    opened: datetime | None = None
    previous: str | None = None
    for change in ordered:
        if change.sequence == previous:
            continue  # delivered twice within the batch
        previous = change.sequence
        length = len(change.line or b"") + len(key_bytes(change.key)) + 200
        if chunk and (len(chunk) >= MAX_SEGMENT_CHANGES or size + length > MAX_SEGMENT_RAW
                      or (opened is not None and abs(change.time - opened) > MAX_SEGMENT_SPAN)):
            yield chunk
            chunk, size = [], 0
        if not chunk:
            opened = change.time
        chunk.append(change)
        size += length
    if chunk:
        yield chunk
