"""Reading the change log back: index entries (by time, by key) and segments, every one checked.

A segment is read only through its index entry: its stored size and sha256 are checked before
any line is used (the bytes are spooled), an encrypted one is authenticated chunk by chunk under
its own data key, the lines' sha256, count, shard, sequence order and range must match the entry.
Anything else is a :class:`LogError` naming the segment — the log is never half-believed.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import zstandard

from .. import layout
from ..changes import Change
from ..codec import (
    DecryptionError,
    PartLimitError,
    TruncatedPartError,
    open_part,
)
from ..errors import CloudkeepError, ObjectNotFoundError, VerificationError
from ..stores import Store
from .format import MAX_SEGMENT_SPAN, Entry, decode_change, parse_entry, segment_context

if TYPE_CHECKING:
    from ..keys import Keyring

log = logging.getLogger(__name__)
SPOOL_CHUNK = 1 << 20


class LogError(VerificationError):
    """A change-log object that is missing, damaged or not what its entry says."""


def entries(store: Store, dataset: str, *, start: datetime | None = None,
            end: datetime | None = None) -> list[Entry]:
    """Index entries of segments that may hold changes from ``start`` to ``end`` (inclusive),
    ordered by first time; an unreadable entry is a LogError (a damaged index must not make a
    restore silently miss changes)."""
    prefix = layout.changelog_index_prefix(dataset)
    segments = layout.changelog_segments_prefix(dataset)
    lower = None if start is None else start - MAX_SEGMENT_SPAN - timedelta(days=1)
    out = []
    for info in store.list(prefix):
        first = _first_time(info.key[len(prefix):])
        if first is None:
            continue  # not an entry (another tool's object)
        if (end is not None and first > end) or (lower is not None and first < lower):
            continue
        try:
            entry = parse_entry(store.get(info.key), info.key, segments)
        except (ValueError, CloudkeepError) as exc:
            raise LogError(f"change-log index entry {info.key} is unreadable: {exc}") from None
        if start is not None and entry.last_time < start:
            continue
        out.append(entry)
    out.sort(key=lambda e: (e.first_time, e.shard, e.first_seq, e.last_seq))
    return out


def _first_time(rest: str) -> datetime | None:
    """The first time in an entry's key (``yyyy/mm/dd/<time>-...json``)."""
    parts = rest.split("/")
    if len(parts) != 4 or not parts[3].endswith(".json"):
        return None
    try:
        return datetime.strptime(parts[3].split("-", 1)[0] + "+0000",
                                 layout.CHANGELOG_TIME_FORMAT + "%z")
    except ValueError:
        return None


def data_key(keyring: Keyring | None, dataset: str, entry: Entry) -> bytes | None:
    if entry.encryption is None:
        return None
    if keyring is None:
        raise LogError(f"segment {entry.segment} is encrypted: no keys to open it")
    return keyring.unseal(dataset, segment_context(entry.name), entry.encryption)


def read_segment(store: Store, dataset: str, entry: Entry, keyring: Keyring | None = None
                 ) -> Iterator[Change]:
    """The changes of one committed segment, each checked (see the module docstring)."""
    key = data_key(keyring, dataset, entry)
    where = f"segment {entry.segment}"
    spool = tempfile.TemporaryFile()
    try:
        sha = hashlib.sha256()
        size = 0
        try:
            with store.open(entry.segment) as stream:
                while chunk := stream.read(min(SPOOL_CHUNK, entry.stored_bytes + 1 - size)):
                    size += len(chunk)
                    if size > entry.stored_bytes:
                        raise LogError(f"{where} holds more bytes than its index entry records")
                    sha.update(chunk)
                    spool.write(chunk)
        except ObjectNotFoundError:
            raise LogError(f"{where} is missing") from None
        if size != entry.stored_bytes or sha.hexdigest() != entry.sha256:
            raise LogError(f"{where} failed its sha256 check")
        spool.seek(0)
        _, lines = open_part(spool, compression="zstd", stored_bytes=entry.stored_bytes,
                             raw_bytes=entry.raw_bytes, data_key=key,
                             snapshot_id=segment_context(entry.name),
                             part_name=entry.segment.rsplit("/", 1)[1])
        lines_sha = hashlib.sha256()
        count = 0
        previous: str | None = None
        try:
            for line in lines:
                lines_sha.update(line + b"\n")
                change = decode_change(line)
                count += 1
                if change.shard != entry.shard:
                    raise LogError(f"{where}: line {count} is of shard {change.shard!r}, not {entry.shard!r}")
                if previous is not None and change.sequence <= previous:
                    raise LogError(f"{where}: line {count} is out of sequence order")
                if not entry.first_seq <= change.sequence <= entry.last_seq or \
                        not entry.first_time <= change.time <= entry.last_time:
                    raise LogError(f"{where}: line {count} is outside the entry's range")
                previous = change.sequence
                yield change
        except (TruncatedPartError, DecryptionError, PartLimitError, zstandard.ZstdError) as exc:
            raise LogError(f"{where} is damaged: {exc}") from None
        except ValueError as exc:
            raise LogError(f"{where}: line {count + 1} is not a change: {exc}") from None
        if count != entry.changes or lines_sha.hexdigest() != entry.lines_sha256:
            raise LogError(f"{where} does not hold the {entry.changes} changes its entry records")
    finally:
        spool.close()


def changes_between(store: Store, dataset: str, start: datetime, end: datetime, *,
                    keyring: Keyring | None = None, key: Any = None) -> Iterator[Change]:
    """Every logged change with ``start <= time <= end`` (of ``key`` only, when given), segment
    by segment. Duplicates (a batch written twice) may repeat; callers order by (time, sequence)."""
    for entry in entries(store, dataset, start=start, end=end):
        if key is not None and not entry.may_hold(key):
            continue
        for change in read_segment(store, dataset, entry, keyring):
            if start <= change.time <= end and (key is None or change.key == key):
                yield change
