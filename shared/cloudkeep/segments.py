"""Reading a snapshot's segments into parts: the part of a run that any invocation — the run
that started the snapshot, a later one resuming it, or a fan-out worker — does the same way.

A segment resumes from its checkpoint; its parts are written create-only under indexes above
every part already in the store (a name is never written twice); every ``checkpoint_every``
parts (and when the time budget nears) the segment's next checkpoint is appended
(``checkpoint.py``). The run options (:class:`RunOptions`) live here because every reader
shares them.
"""

from __future__ import annotations

import contextvars
import dataclasses
import hashlib
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from . import checkpoint, keyindex, layout, sealed
from .capabilities import ReadsFromCursor, able
from .checkpoint import Deadline, RunState, SegmentRecord
from .codec import DEFAULT_LEVEL, ContentDigest, PartBuffer, PartStats, encrypt_part
from .errors import CloudkeepError, ObjectExistsError
from .lock import FencedStore, Lease
from .progress import NullProgress, Progress
from .sources import Source
from .stores import Store

if TYPE_CHECKING:
    from .queues import WorkQueue

log = logging.getLogger(__name__)

DEFAULT_PART_SIZE = 64 * 1024 * 1024  # raw NDJSON bytes per part
MAX_WORKERS = 16
_SLICE = 32  # lines added to a part between size checks
CHECKPOINT_EVERY = 4  # parts per segment between checkpoints


@dataclass
class RunOptions:
    part_size: int = DEFAULT_PART_SIZE
    level: int = DEFAULT_LEVEL
    workers: int = MAX_WORKERS
    retain_until: datetime | None = None  # Object Lock date for every object (set by the engine)
    checkpoint_every: int = CHECKPOINT_EVERY
    deadline: Deadline | None = None  # stop cleanly (after a part) when it nears; resume later
    queue: WorkQueue | None = None  # fan-out: segments become work items on this queue
    wait: float = 0.0  # native jobs: seconds to keep polling in process (run --wait); 0: one step
    poll_interval: float = 15.0  # native jobs: seconds between polls while waiting
    lease: timedelta | None = None  # the lock's lease (default lock.DEFAULT_LEASE; tests shorten it)



def new_run_id() -> str:
    return secrets.token_hex(8)


class SegmentRunner:
    """Reads segments of one snapshot into parts, checkpointing as it goes.

    The same code runs a segment for a local run (several in threads) and for a work item taken
    from a queue (fan-out). A segment resumes from its checkpoint: reading continues at the
    checkpoint's cursor, and its parts go under indexes above every part already in the store
    (parts written after the checkpoint by a run that then died stay unreferenced, for prune),
    so no item is lost or written twice and no name is ever written twice. Sources with
    ``read_segment_from`` resume mid-segment; others restart an unfinished segment from its
    beginning. With ``leases`` every segment is read under its own fenced lease (fan-out).
    """

    def __init__(self, store: Store, source: Source, state: RunState, options: RunOptions,
                 progress: Progress | None = None, stop: threading.Event | None = None, *,
                 leases: bool = False, run_id: str = "", data_key: bytes | None = None) -> None:
        self.store = store
        self.source = source
        self.state = state
        self.options = options
        self.progress = progress or NullProgress()
        self.stop = stop or threading.Event()
        self.leases = leases
        self.run_id = run_id or new_run_id()
        self.data_key = data_key  # encrypted snapshot: every part is sealed with it
        self._wrote = threading.Event()  # this invocation has written a part
        self.checkpoint_seconds: list[float] = []  # time per checkpoint write (bench)

    def run_all(self, segments: list[int]) -> dict[int, SegmentRecord]:
        """Run ``segments`` in threads; returns their records (unfinished ones when the deadline
        stopped them). The first error cancels the rest and is raised."""
        if not segments:
            return {}
        workers = max(1, min(self.options.workers, len(segments)))
        prefix = f"scan-{self.state.dataset}"
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=prefix) as pool:
            futures = {pool.submit(contextvars.copy_context().run, self.run, s): s for s in segments}
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failed = [f for f in done if f.exception() is not None]
            if failed:
                self.stop.set()
                for f in futures:
                    f.cancel()
                wait(futures)
                errors = [f.exception() for f in futures if f.done() and not f.cancelled()]
                real = [e for e in errors if e is not None and not isinstance(e, Cancelled)]
                raise real[0] if real else CloudkeepError("backup cancelled")
            out = {}
            for f, segment in futures.items():
                record = f.result()
                if record is not None:
                    out[segment] = record
            return out

    def lease(self, segment: int) -> Lease:
        """The fenced lease of a worker on ``segment`` (not yet acquired)."""
        return Lease(
            self.store, self.state.dataset, self.run_id, lease=self.options.lease,
            prefix=layout.segment_lease_prefix(self.state.dataset, self.state.snapshot_id, segment),
            what=f"segment {segment} of snapshot {self.state.snapshot_id}",
        )

    def run(self, segment: int) -> SegmentRecord | None:
        """Read ``segment`` on from its checkpoint. None: not started (the deadline is near)."""
        deadline = self.options.deadline
        if deadline is not None and self._wrote.is_set() and deadline.near():
            return None
        if not self.leases:
            return self.run_in(segment, self.store)
        with self.lease(segment) as lease:
            return self.run_in(segment, FencedStore(self.store, lease))

    def run_in(self, segment: int, store: Store) -> SegmentRecord:
        """Read ``segment`` writing through ``store`` (fenced by whatever lock the caller holds)."""
        state = self.state
        record = checkpoint.load_segment(store, state.dataset, state.snapshot_id, segment)
        if record is not None and record.done:
            return record
        reader = able(self.source, ReadsFromCursor)
        if record is None or (reader is None and record.parts) or record.segment != segment:
            record = SegmentRecord(segment)
        elif sealed.is_sealed(record.cursor):
            record = self._opened(record)
        next_index = self._first_free_index(store, segment, record)
        seq = checkpoint.last_checkpoint_number(store, state.dataset, state.snapshot_id, segment)
        if record.parts:
            log.info("segment %d: resuming after %d part(s), %d item(s)", segment,
                     len(record.parts), record.digest_count)
        pages: Iterator[tuple[list[bytes], Callable[[int], Any] | None]]
        if reader is not None:
            pages = reader.read_segment_from(segment, state.segments,
                                             record.cursor if record.parts else None)
        else:
            pages = ((page, None) for page in self.source.read_segment(segment, state.segments))
        digest = record.digest(state.ignores)
        buffer, keys = self._buffer(), self._key_index()
        since_checkpoint = 0
        slowest = 0.0
        t_part = time.monotonic()
        deadline = self.options.deadline
        # The plan's part size and checkpoint interval: fan-out workers (and later invocations)
        # write the parts the run that started the snapshot asked for.
        every = max(1, self.state.checkpoint_every)
        part_size = self.state.part_size
        for lines, cursor_after in pages:
            if self.stop.is_set():
                raise Cancelled()
            # Add a page in slices so a part closes near part_size even inside a 1 MB page.
            for start in range(0, len(lines), _SLICE):
                chunk = lines[start : start + _SLICE]
                self._add(buffer, chunk)
                keys.add_lines(chunk)
                if buffer.raw_bytes < part_size:
                    continue
                next_index = self._flush(store, buffer, record, digest, next_index, keys)
                buffer, keys = self._buffer(), self._key_index()
                now = time.monotonic()
                slowest, t_part = max(slowest, now - t_part), now
                since_checkpoint += 1
                # Where the source can resume right after this part's last line, checkpoint.
                cursor = cursor_after(start + len(chunk) - 1) if cursor_after else None
                if cursor is None:
                    continue
                record.cursor = cursor
                stopping = deadline is not None and deadline.near(slowest)
                if since_checkpoint >= every or stopping:
                    seq = self._save(store, record, seq)
                    since_checkpoint = 0
                if stopping:
                    log.info("segment %d: near the time budget after %d part(s); checkpointed",
                             segment, len(record.parts))
                    return record
        if buffer.items:
            self._flush(store, buffer, record, digest, next_index, keys)
        record.done, record.cursor = True, None
        final = checkpoint.finish_segment(store, state.dataset, state.snapshot_id, record)
        if final is not record:
            log.warning("segment %d was finished by another worker; its record stands", segment)
        return final

    def _first_free_index(self, store: Store, segment: int, record: SegmentRecord) -> int:
        """Above the record's parts and every part of the segment already in the store."""
        prefix = layout.segment_parts_prefix(self.state.dataset, self.state.snapshot_id, segment)
        head = layout.snapshot_prefix(self.state.dataset, self.state.snapshot_id)
        taken = [parsed[1] for i in store.list(prefix)
                 if (parsed := layout.parse_part_name(i.key[len(head):])) is not None]
        if len(taken) > len(record.parts):
            log.info("segment %d: %d part(s) in the store that its checkpoint does not list "
                     "(an interrupted run's); continuing past them", segment,
                     len(taken) - len(record.parts))
        return max([record.next_index - 1, *taken], default=-1) + 1

    def _buffer(self) -> PartBuffer:
        return PartBuffer(level=self.state.level, digest=ContentDigest(ignores=self.state.ignores))

    def _key_index(self) -> keyindex.IndexBuilder:
        """The key index of the next part (keyed by the data key when encrypted)."""
        return keyindex.IndexBuilder(self.state.described, self.data_key)

    def _add(self, buffer: PartBuffer, chunk: list[bytes]) -> None:
        before = buffer.raw_bytes
        buffer.add_lines(chunk)
        self.progress.advance(len(chunk), buffer.raw_bytes - before)

    def _flush(self, store: Store, buffer: PartBuffer, record: SegmentRecord,
               digest: ContentDigest, index: int,
               keys: keyindex.IndexBuilder | None = None) -> int:
        """Write the buffer as the segment's part at ``index`` or, if that name is taken, at the
        next free index (create-only: a part name is written once), then its key index
        (create-only, next to it; recorded in the part's entry). Returns the next index."""
        state = self.state
        raw = buffer.finish()
        segment = record.segment
        while True:
            name = layout.part_name(segment, index, encrypted=self.data_key is not None)
            body = raw
            if self.data_key is not None:
                body = encrypt_part(self.data_key, state.snapshot_id, name, raw)
            key = layout.part_key(state.dataset, state.snapshot_id, name)
            try:
                store.put(key, body, if_absent=True, retain_until=state.retain_until_time)
                break
            except ObjectExistsError:
                log.info("segment %d: part %s is taken; writing the next index", segment, name)
                index += 1
        self._wrote.set()
        body_sha = hashlib.sha256(body).hexdigest()
        index_sha = keyindex.write_index(store, state.dataset, state.snapshot_id, name,
                                         keys.finish(body_sha) if keys is not None else None,
                                         retain_until=state.retain_until_time)
        record.parts.append(
            PartStats(name, segment, index, buffer.items, buffer.raw_bytes, len(body),
                      body_sha, key_index=index_sha)
        )
        digest.merge(buffer.digest)
        record.digest_value, record.digest_count = digest.value, digest.count
        return index + 1

    def _opened(self, record: SegmentRecord) -> SegmentRecord:
        """``record`` with its cursor unsealed. A cursor that does not open (no key, another
        snapshot's, altered) cannot be trusted: the segment is read again from its beginning,
        into new parts (parts are never reused)."""
        if not sealed.is_sealed(record.cursor):
            return record
        try:
            if self.data_key is None:
                raise sealed.SealError("the snapshot is not encrypted")
            cursor = sealed.unseal(self.data_key, sealed.cursor_aad(self.state.snapshot_id, record.segment),
                                   record.cursor)
        except sealed.SealError as exc:
            log.warning("segment %d: its checkpoint's cursor cannot be used (%s); reading the "
                        "segment again from its beginning", record.segment, exc)
            return SegmentRecord(record.segment)
        return dataclasses.replace(record, cursor=cursor)

    def _save(self, store: Store, record: SegmentRecord, after: int) -> int:
        """Append the segment's next checkpoint (no listing per checkpoint: the number is
        tracked). Returns its number."""
        t0 = time.monotonic()
        if self.data_key is not None and record.cursor is not None:
            # An encrypted snapshot's cursor is an item's key: data, stored sealed (sealed.py).
            record = dataclasses.replace(record, cursor=sealed.seal(
                self.data_key, sealed.cursor_aad(self.state.snapshot_id, record.segment), record.cursor))
        seq = checkpoint.save_segment(store, self.state.dataset, self.state.snapshot_id, record,
                                      after=after)
        self.checkpoint_seconds.append(time.monotonic() - t0)
        return seq


class Cancelled(Exception):
    """A segment stopped because another one failed (the first error is what the run raises)."""
