"""Appending changes to a dataset's change log, exactly-once in effect, create-only.

For each shard of a batch, its changes in sequence order are cut into segments
(:func:`.format.split`). A segment's index entry is named from its first event time, its shard
and its sequence range, so a batch delivered again finds its entry and writes nothing; a write
that crashed between the segment and its entry leaves an unreferenced segment (prune removes it)
and the retry writes the next attempt. Overlapping deliveries (a batch split on error and retried)
write overlapping segments, which replay to the same state: replay keeps, per item, the change
with the highest (time, sequence), whichever segment it came from.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from .. import clock as _clock
from .. import layout
from ..changes import Change
from ..codec import encrypt_part
from ..errors import ObjectExistsError, StoreError
from ..keys import keyring_for
from ..registry import store_for_dataset
from ..stores import Store
from .format import Entry, build_segment, format_time, segment_context, split

if TYPE_CHECKING:
    from ..policy import Policy

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 100


class Clock(Protocol):
    """Anything with ``now()`` (the process clock, :class:`cloudkeep.clock.SimulatedClock`)."""

    def now(self) -> datetime: ...


class _ProcessClock:
    def now(self) -> datetime:
        return _clock.now()


@dataclass
class IngestResult:
    """What one :func:`ingest` call did: ``changes`` handed over, ``written`` changes newly
    written, ``duplicates`` changes already in the log (a batch delivered again), ``segments``
    written, stored ``bytes``, and ``lag``: how far behind the newest change was when written
    (the measured RPO)."""

    changes: int = 0
    written: int = 0
    duplicates: int = 0
    segments: int = 0
    bytes: int = 0
    first_time: datetime | None = None
    last_time: datetime | None = None
    lag: timedelta | None = None
    entries: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {"changes": self.changes, "written": self.written, "duplicates": self.duplicates,
                "segments": self.segments, "bytes": self.bytes,
                "first_time": None if self.first_time is None else format_time(self.first_time),
                "last_time": None if self.last_time is None else format_time(self.last_time),
                "lag_seconds": None if self.lag is None else round(self.lag.total_seconds(), 3)}


def ingest(policy: Policy, dataset: str, changes: Sequence[Change], *,
           clock: Clock | None = None, store: Store | None = None) -> IngestResult:
    """Append one batch to ``dataset``'s change log (its policy store, or ``store``): every
    change is in a committed segment when this returns (already there or written now). Only
    creates objects. Raises a StoreError when the store refuses."""
    policy.dataset(dataset)  # an unknown dataset: a UsageError naming the known ones
    store = store if store is not None else store_for_dataset(policy, dataset)
    now = (clock or _ProcessClock()).now()
    result = IngestResult(changes=len(changes))
    by_shard: dict[str, list[Change]] = {}
    for change in changes:
        by_shard.setdefault(change.shard, []).append(change)
    names = policy.encryption_keys(dataset)
    for shard in sorted(by_shard):
        for chunk in split(by_shard[shard]):
            written = _write_segment(policy, dataset, store, chunk, names, now)
            if written is None:
                result.duplicates += len(chunk)
            else:
                result.written += len(chunk)
                result.segments += 1
                result.bytes += written.stored_bytes
                result.entries.append(written.key)
    if changes:
        result.first_time = min(c.time for c in changes)
        result.last_time = max(c.time for c in changes)
        result.lag = max(timedelta(0), now - result.last_time)
    return result


def _write_segment(policy: Policy, dataset: str, store: Store, chunk: list[Change],
                   names: list[str], now: datetime) -> Entry | None:
    """Write one segment and its entry; None when the entry already exists (a duplicate)."""
    first, last = chunk[0], chunk[-1]
    first_time = min(c.time for c in chunk)
    name = layout.changelog_entry_name(first_time, first.shard, first.sequence, last.sequence)
    entry_key = layout.changelog_entry_key(dataset, first_time, name)
    if store.stat(entry_key) is not None:
        return None
    built = build_segment(chunk)
    encryption = None
    body = built.body
    if names:
        data_key, encryption = keyring_for(policy).seal(names, dataset, segment_context(name))
    for attempt in range(MAX_ATTEMPTS):
        segment_key = layout.changelog_segment_key(dataset, first_time, name, attempt,
                                                   encrypted=bool(names))
        if names:
            body = encrypt_part(data_key, segment_context(name), segment_key.rsplit("/", 1)[1],
                                built.body)
        try:
            store.put(segment_key, body, if_absent=True)
            break
        except ObjectExistsError:
            continue  # an earlier attempt (crashed before its entry, or racing): the next one
    else:
        raise StoreError(f"{entry_key}: {MAX_ATTEMPTS} segment attempts are taken")
    entry = Entry(name=name, key=entry_key, segment=segment_key, shard=first.shard,
                  first_seq=first.sequence, last_seq=last.sequence, first_time=first_time,
                  last_time=max(c.time for c in chunk), changes=len(chunk),
                  raw_bytes=built.raw_bytes, stored_bytes=len(body), sha256=hashlib.sha256(body).hexdigest(),
                  lines_sha256=built.lines_sha256, encryption=encryption,
                  key_hashes=None if names else built.key_hashes, written_at=now.isoformat(),
                  blobs=_blobs(policy, dataset, chunk))
    try:
        store.put(entry_key, json.dumps(entry.as_dict(), indent=1).encode(), if_absent=True)
    except ObjectExistsError:
        log.info("%s: written meanwhile by another delivery of the same batch", entry_key)
        return None
    return entry


def _blobs(policy: Policy, dataset: str, chunk: list[Change]) -> tuple[str, ...]:
    """The blobs the changes' lines reference (a source whose content lives in blobs: S3), so
    prune keeps them while the log needs them."""
    if not type(policy.dataset(dataset).source).USES_BLOBS:
        return ()
    found = set()
    for change in chunk:
        if change.line is not None:
            sha = json.loads(change.line).get("sha256")
            if isinstance(sha, str) and len(sha) == 64:
                found.add(sha)
    return tuple(sorted(found))
