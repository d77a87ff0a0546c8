"""A snapshot run: lock, read the source's segments in parallel, write parts, commit the manifest.

Write order is what makes a snapshot safe: every part is written (create-only) before the
manifest, and the manifest is written last and create-only. A snapshot without a manifest is
invisible to every command. A run only ever creates objects: it never deletes or overwrites one
(a failed run leaves its parts for a later run to resume past, or for prune). Every write goes
through the run's fenced lock (``lock.FencedStore``): a run that lost its lock writes nothing
more. Part names are never reused: a writer that finds a name taken takes the next index.

A run records its plan and, per segment, checkpoints (``checkpoint.py``): a run stopped by its
time budget, or killed, is resumed by the next run of the same snapshot from the last
checkpoint. With a queue (fan-out), the segments become work items (``fanout.py``) that any
number of workers read in parallel; the last segment to finish commits the manifest.
"""

from __future__ import annotations

import contextvars
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from . import __version__, checkpoint, layout, logctx
from . import clock as _clock
from .capabilities import Description
from .checkpoint import CheckpointError, Deadline, RunState, SegmentRecord
from .codec import DEFAULT_LEVEL, ContentDigest, PartBuffer, PartStats, encrypt_part
from .errors import CloudkeepError, ObjectExistsError, ObjectNotFoundError
from .keys import RESUME_KEYS
from .lock import FencedStore, Lease, unwrap
from .manifest import (
    Codec,
    Consistency,
    ContentDigestEntry,
    Encryption,
    Manifest,
    PartEntry,
    Totals,
)
from .policy import Policy
from .progress import NullProgress, Progress
from .registry import open_source, open_store
from .sources import Source, native_method
from .stores import Store

if TYPE_CHECKING:
    from .keys import Keyring
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


@dataclass
class RunResult:
    dataset: str
    status: Literal["committed", "exists", "locked", "failed", "unfinished", "pending"]
    snapshot_id: str | None = None
    manifest: Manifest | None = None
    error: str | None = None
    exit_code: int = 0
    copies: list[dict[str, object]] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    segments: int | None = None  # unfinished: the snapshot's segments, how many are done,
    segments_done: int | None = None  # and how many were handed to a queue (fan-out)
    dispatched: int | None = None
    job: dict[str, object] | None = None  # a pending native job's state (cloudkeep.jobs)

    @property
    def copy_failures(self) -> list[dict[str, object]]:
        """Copies that failed (the snapshot itself stays committed; ``run`` exits 1)."""
        return [c for c in self.copies if not c.get("verified") and c.get("error")]

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"dataset": self.dataset, "status": self.status,
                                  "snapshot_id": self.snapshot_id}
        if self.manifest is not None:
            out |= self.manifest.summary()
        if self.error:
            out["error"] = self.error
        if self.copies:
            out["copies"] = self.copies
        if self.copy_failures:
            out["copy_failed"] = sorted({str(c.get("store")) for c in self.copy_failures})
            if not self.error:
                out["error"] = "; ".join(
                    f"copy of {c.get('snapshot_id') or self.snapshot_id} to {c.get('store')} "
                    f"failed: {c.get('error')}" for c in self.copy_failures)
        if self.pruned:
            out["pruned"] = self.pruned
        if self.status == "unfinished":
            out |= {"segments": self.segments, "segments_done": self.segments_done}
            if self.dispatched is not None:
                out["dispatched"] = self.dispatched
        if self.job:
            out["job"] = self.job
        return out


def new_run_id() -> str:
    return secrets.token_hex(8)


def backup(
    policy: Policy,
    dataset: str,
    *,
    store: Store | None = None,
    source: Source | None = None,
    snapshot_id: str | None = None,
    trigger: Literal["manual", "schedule"] = "manual",
    slot: datetime | None = None,
    progress: Progress | None = None,
    options: RunOptions | None = None,
    keyring: Keyring | None = None,
) -> RunResult:
    """Take one snapshot of ``dataset``. Returns the committed manifest (or the existing one when
    ``snapshot_id`` is already committed, which makes retried scheduled triggers idempotent).

    An unfinished snapshot is resumed: the one named ``snapshot_id``, or — for a manual run
    without one — the dataset's latest unfinished manual snapshot. A run that nears
    ``options.deadline`` stops after its current parts and returns ``unfinished``; with
    ``options.queue`` the segments are dispatched as work items and the result is
    ``unfinished`` until a worker commits.

    With encryption (``policy.encryption_keys``) every part is encrypted under a fresh data key
    wrapped by each listed key (the wrapped keys are recorded in the run state, so an invocation
    that resumes the snapshot, or a worker, unwraps the same key), and the manifest carries its
    authentication tag."""
    from .keys import keyring_for

    spec = policy.dataset(dataset)
    keyring = keyring or keyring_for(policy)
    store = tier_store(policy, dataset, store or open_store(policy.stores[spec.store]))
    source = source or open_source(spec.source)
    progress = progress or NullProgress()
    options = options or RunOptions()
    started = _clock.now()
    run_id = new_run_id()
    if snapshot_id is None and native_method(source):
        # An on-demand run continues the dataset's pending native job instead of starting one.
        from .jobs import pending_jobs

        pending = pending_jobs(store, dataset)
        if pending:
            record = pending[0]
            snapshot_id = str(record["snapshot_id"])
            trigger = "schedule" if record.get("trigger") == "schedule" else "manual"
            slot = datetime.fromisoformat(record["slot"]) if record.get("slot") else None
    elif snapshot_id is None:
        resumable = unfinished_snapshot(store, dataset, trigger, now=started)
        if resumable is not None:
            snapshot_id, started = resumable.snapshot_id, resumable.started
    snapshot_id = snapshot_id or layout.snapshot_id_for(started, secrets.token_hex(3))

    with logctx.bind(run_id=run_id, dataset=dataset, snapshot_id=snapshot_id):
        return _backup(policy, dataset, store, source, snapshot_id, trigger, slot, progress,
                       options, started, run_id, keyring)


def tier_store(policy: Policy, dataset: str, store: Store) -> Store:
    """``store`` writing the dataset's objects in its tier's Object Lock mode (``immutability``),
    where the store locks objects; else ``store`` itself."""
    immutability = policy.tiers[policy.dataset(dataset).tier].immutability
    with_lock_mode = getattr(store, "with_lock_mode", None)
    if immutability is None or with_lock_mode is None or not store.capabilities.object_lock:
        return store
    locked: Store = with_lock_mode(immutability.mode)
    return locked


def unfinished_snapshot(store: Store, dataset: str, trigger: str,
                        now: datetime | None = None) -> RunState | None:
    """The dataset's latest unfinished, not abandoned snapshot started by a ``trigger`` run
    within ``checkpoint.RESUME_WITHIN`` of ``now`` (older ones are left to prune), if any."""
    now = now or datetime.now(UTC)
    for snapshot_id in reversed(checkpoint.unfinished_snapshots(store, dataset)):
        try:
            state = checkpoint.load_run_state(store, dataset, snapshot_id)
        except CheckpointError as exc:
            log.warning("dataset %s: %s", dataset, exc)
            continue
        if state is not None and state.trigger == trigger:
            if now - state.started > checkpoint.RESUME_WITHIN:
                return None
            return state
    return None


class _Unresumable(CloudkeepError):
    """The recorded plan of an unfinished snapshot cannot be followed (it is abandoned)."""


def _backup(
    policy: Policy,
    dataset: str,
    store: Store,
    source: Source,
    snapshot_id: str,
    trigger: Literal["manual", "schedule"],
    slot: datetime | None,
    progress: Progress,
    options: RunOptions,
    started: datetime,
    run_id: str,
    keyring: Keyring,
) -> RunResult:
    existing = _existing_manifest(store, dataset, snapshot_id)
    if existing is not None:
        log.info("dataset %s: snapshot %s is already committed", dataset, snapshot_id)
        return RunResult(dataset, "exists", snapshot_id, existing)
    if native_method(source):
        from .jobs import Wait, run_native

        return run_native(policy, dataset, store, source, snapshot_id,  # type: ignore[arg-type]
                          run_id=run_id, trigger=trigger, slot=slot,
                          wait=Wait(options.wait, options.poll_interval))

    with Lease(store, dataset, run_id, lease=options.lease) as lock:
        store = FencedStore(store, lock)  # every write checks the lock first
        existing = _existing_manifest(store, dataset, snapshot_id)
        if existing is not None:
            return RunResult(dataset, "exists", snapshot_id, existing)
        try:
            state = _load_or_plan(policy, dataset, store, source, snapshot_id, trigger, slot,
                                  options, started, run_id, keyring)
        except _Unresumable as exc:
            # Never deleted, never reused: the old attempt is marked abandoned (prune removes
            # it) and the snapshot starts afresh under a new id with the same time.
            checkpoint.abandon(store, dataset, snapshot_id, str(exc))
            fresh = f"{snapshot_id[:16]}-{secrets.token_hex(3)}"
            log.warning("dataset %s: cannot resume snapshot %s (%s); abandoned it, starting %s "
                        "afresh", dataset, snapshot_id, exc, fresh)
            snapshot_id, started = fresh, datetime.now(UTC)
            state = _load_or_plan(policy, dataset, store, source, snapshot_id, trigger, slot,
                                  options, started, run_id, keyring)
        data_key = data_key_of(keyring, state)
        attach_source(source, store, state)
        done = checkpoint.done_segments(store, dataset, snapshot_id)
        todo = [s for s in range(state.segments) if s not in done]
        if options.queue is not None and todo:
            # Fan-out: the segments become work items; the last one to finish commits.
            from .fanout import WorkItem

            options.queue.send([WorkItem(dataset, snapshot_id, s).to_dict() for s in todo])
            log.info("run %s: dataset %s snapshot %s: %d of %d segments dispatched to %s",
                     run_id, dataset, snapshot_id, len(todo), state.segments, options.queue.describe())
            return RunResult(dataset, "unfinished", snapshot_id, segments=state.segments,
                             segments_done=len(done), dispatched=len(todo))
        log.info(
            "run %s: dataset %s → snapshot %s (%d segments, %d done, store %s)",
            run_id, dataset, snapshot_id, state.segments, len(done), store.describe(),
        )
        stop = threading.Event()
        progress.start(f"{dataset}", state.described.get("item_count_estimate"))
        t0 = time.monotonic()
        runner = SegmentRunner(store, source, state, options, progress, stop, leases=state.fanout,
                               run_id=run_id, data_key=data_key)
        try:
            records = runner.run_all(todo)
            records.update({s: r for s in done if (r := _load_done(store, state, s)) is not None})
            finished = [s for s in range(state.segments) if s in records and records[s].done]
            if len(finished) < state.segments:
                log.info("run %s: dataset %s snapshot %s stops near its time budget: %d of %d "
                         "segments done; the next run resumes it", run_id, dataset, snapshot_id,
                         len(finished), state.segments)
                return RunResult(dataset, "unfinished", snapshot_id, segments=state.segments,
                                 segments_done=len(finished))
            read_summary = getattr(source, "read_summary", None)
            summary = dict(read_summary()) if read_summary is not None else None  # e.g. S3 copies
            manifest = commit(policy, store, state, records, run_id, keyring=keyring,
                              summary=summary)
        except BaseException:
            stop.set()  # what it wrote stays: the next run resumes past it, or prune removes it
            raise
        finally:
            progress.finish()
    timings = runner.checkpoint_seconds
    log.info(
        "run %s: dataset %s snapshot %s committed: %d items, %d parts, %d bytes stored in %.2fs "
        "(%d checkpoints, %.1f ms each)",
        run_id, dataset, snapshot_id, manifest.totals.items, manifest.totals.parts,
        manifest.totals.stored_bytes, time.monotonic() - t0, len(timings),
        1000 * sum(timings) / len(timings) if timings else 0.0,
    )
    return RunResult(dataset, "committed", snapshot_id, manifest)


def _load_or_plan(
    policy: Policy,
    dataset: str,
    store: Store,
    source: Source,
    snapshot_id: str,
    trigger: Literal["manual", "schedule"],
    slot: datetime | None,
    options: RunOptions,
    started: datetime,
    run_id: str,
    keyring: Keyring,
) -> RunState:
    """The snapshot's plan: the recorded one when an earlier invocation started it (the source is
    then prepared to read exactly that plan), else a new one, recorded before any part.
    Raises ``_Unresumable`` when a recorded plan cannot be followed (or was abandoned)."""
    if checkpoint.is_abandoned(store, dataset, snapshot_id):
        raise _Unresumable("it was abandoned")
    try:
        state = checkpoint.load_run_state(store, dataset, snapshot_id)
        if state is not None:
            prepare_source(store, source, state, keyring, policy)
            log.info("dataset %s: resuming unfinished snapshot %s (started %s)", dataset,
                     snapshot_id, state.started_at)
            return state
    except CheckpointError as exc:
        raise _Unresumable(str(exc)) from exc
    spec = policy.dataset(dataset)
    # A fresh data key, wrapped by every key the dataset lists: a key that cannot be used
    # fails the run here, before anything is read or written.
    key_names = policy.encryption_keys(dataset)
    if key_names and getattr(source, "attach_store", None) is not None:
        # Sources that copy objects (S3) store them content-addressed, server-side copied and
        # deduplicated across snapshots: not client-side encrypted (README, encryption).
        log.warning("%s: the %s source's snapshots are not client-side encrypted (objects are "
                    "copied as they are); protect the store with SSE-KMS", dataset, source.kind)
        key_names = []
    encryption = None
    if key_names:
        data_key, encryption = keyring.seal(key_names, dataset, snapshot_id)
        # ... and wrapped once more for this run state alone, under a purpose-bound context:
        # whoever resumes the snapshot (a later tick, a worker) unwraps that one (keys/).
        encryption = encryption | {RESUME_KEYS: keyring.wrap_for_resume(
            key_names, dataset, snapshot_id, data_key)}
    retain_until = options.retain_until
    if store.capabilities.object_lock:
        # Immutable for as long as the tier's retention could ever keep the snapshot.
        from .retention import Rules

        horizon = Rules.from_policy(policy.tiers[spec.tier].retention).horizon()
        immutability = policy.tiers[spec.tier].immutability
        if immutability is not None and immutability.days:
            horizon = max(horizon, timedelta(days=immutability.days))
        retain_until = started + horizon
    attach_store = getattr(source, "attach_store", None)
    if attach_store is not None:
        # Sources that copy objects (S3) write content-addressed blobs into the store (the real
        # store: a blob is create-only and named by its content, so a late one harms nothing).
        attach_store(unwrap(store), dataset, retain_until)
    set_previous = getattr(source, "set_previous", None)
    if set_previous is not None:
        # Sources that take incremental snapshots continue from the latest committed one.
        set_previous(_previous_manifest(store, dataset, snapshot_id, keyring, policy))
    description = Description.coerce(source.describe())
    described = dict(description.identity)
    # A source may report its own read method and consistency (e.g. a point-in-time read).
    method = description.method
    consistency = dict(description.consistency)
    # ... and top-level keys of its lines that a restored copy cannot keep (codec.py).
    ignores = list(description.digest_ignores)
    total = source.plan_segments(described)
    plan_state = getattr(source, "plan_state", None)
    state = RunState(
        snapshot_id=snapshot_id, dataset=dataset, run_id=run_id, trigger=trigger,
        slot=slot.isoformat() if slot else None, started_at=started.isoformat(),
        described=described, method=method, consistency=consistency, ignores=ignores,
        segments=total, part_size=options.part_size, level=options.level,
        retain_until=retain_until.isoformat() if retain_until else None,
        source_state=plan_state() if plan_state is not None else None,
        fanout=options.queue is not None, checkpoint_every=options.checkpoint_every,
        encryption=encryption,
    )
    store.put(layout.run_state_key(dataset, snapshot_id), state.to_bytes(), if_absent=True)
    return state


def data_key_of(keyring: Keyring, state: RunState) -> bytes | None:
    """The snapshot's data key (None when it is not encrypted), unwrapped from the run state —
    its purpose-bound resume wrap where it has one, so the backup identity needs no right to
    unwrap committed snapshots' keys."""
    if not state.encryption:
        return None
    return keyring.unseal(state.dataset, state.snapshot_id, state.encryption)


def attach_source(source: Source, store: Store, state: RunState) -> None:
    """Sources that copy objects (S3) write their blobs into the store (with the snapshot's
    Object Lock date): told so by every invocation that reads a segment of the snapshot."""
    attach_store = getattr(source, "attach_store", None)
    if attach_store is not None:
        attach_store(unwrap(store), state.dataset, state.retain_until_time)


def prepare_source(store: Store, source: Source, state: RunState,
                   keyring: Keyring | None = None, policy: Policy | None = None) -> None:
    """Make ``source`` read the plan of ``state`` (recorded by the invocation that started it)."""
    resume_plan = getattr(source, "resume_plan", None)
    if resume_plan is not None:
        resume_plan(state.source_state or {}, state.segments)
        return
    set_previous = getattr(source, "set_previous", None)
    if set_previous is not None:
        set_previous(_previous_manifest(store, state.dataset, state.snapshot_id, keyring, policy))
    described = dict(Description.coerce(source.describe()).identity)
    total = source.plan_segments(described)
    if total != state.segments:
        raise CheckpointError(
            f"the source now splits into {total} segments, the unfinished snapshot into "
            f"{state.segments}"
        )


def commit(policy: Policy, store: Store, state: RunState, records: dict[int, SegmentRecord],
           run_id: str, *, keyring: Keyring | None = None,
           summary: dict[str, object] | None = None) -> Manifest:
    """Write the manifest of a snapshot whose segments are all done — create-only, so of several
    workers finishing together exactly one commits. Its checkpoints stay (prune removes them)."""
    spec = policy.dataset(state.dataset)
    parts = sorted((p for r in records.values() for p in r.parts), key=lambda p: (p.segment, p.index))
    digest = ContentDigest()
    for record in records.values():
        digest.merge(record.digest(state.ignores))
    manifest = Manifest(
        snapshot_id=state.snapshot_id,
        dataset=state.dataset,
        run_id=run_id,
        trigger=state.trigger,  # type: ignore[arg-type]
        slot=state.slot_time,
        tier=spec.tier,
        store=spec.store,
        source=state.described | (summary or {}),
        method=state.method,
        consistency=Consistency(**state.consistency),
        started_at=state.started,
        finished_at=_clock.now(),
        segments=state.segments,
        parts=[PartEntry(**vars(p)) for p in parts],
        totals=Totals(
            items=sum(p.items for p in parts),
            parts=len(parts),
            raw_bytes=sum(p.raw_bytes for p in parts),
            stored_bytes=sum(p.stored_bytes for p in parts),
        ),
        codec=Codec(level=state.level, encryption=Encryption(**{
            k: v for k, v in state.encryption.items() if k != RESUME_KEYS}) if state.encryption else None),
        content_digest=ContentDigestEntry(value=digest.hexdigest(), ignores=state.ignores),
        cloudkeep_version=__version__,
    )
    from .keys import keyring_for
    from .trust import sign_new

    keyring = keyring or keyring_for(policy)
    manifest = sign_new(policy, manifest, keyring, data_key_of(keyring, state))
    key = layout.manifest_key(state.dataset, state.snapshot_id)
    try:
        store.put(key, manifest.to_bytes(), if_absent=True, retain_until=state.retain_until_time)
    except ObjectExistsError:
        committed = _existing_manifest(store, state.dataset, state.snapshot_id)
        if committed is None:  # pragma: no cover - a create-only write refused, yet nothing there
            raise
        log.info("snapshot %s was committed by another worker", state.snapshot_id)
        return committed
    return manifest


def _load_done(store: Store, state: RunState, segment: int) -> SegmentRecord | None:
    try:
        data = store.get(layout.segment_done_key(state.dataset, state.snapshot_id, segment))
    except ObjectNotFoundError:
        return None
    return SegmentRecord.from_bytes(data, f"segment {segment}")


def _existing_manifest(store: Store, dataset: str, snapshot_id: str) -> Manifest | None:
    """The manifest committed under ``dataset@snapshot_id`` (ForgedManifestError if the one
    there names another snapshot: a run never takes a replayed manifest for its own)."""
    from .trust import check_binding

    key = layout.manifest_key(dataset, snapshot_id)
    try:
        data = store.get(key)
    except ObjectNotFoundError:
        return None
    manifest = Manifest.from_bytes(data, where=key)
    check_binding(manifest, dataset, snapshot_id, where=key)
    return manifest


def _previous_manifest(store: Store, dataset: str, snapshot_id: str,
                       keyring: Keyring | None = None, policy: Policy | None = None) -> Manifest | None:
    """The dataset's latest committed snapshot before ``snapshot_id`` (ids sort by time),
    authenticated, and — with ``policy`` — meeting its requirements (a forged, replayed or
    downgraded one never becomes the base of an incremental snapshot: the source starts afresh)."""
    from .catalog import load_manifest, snapshot_ids
    from .errors import TamperedError
    from .manifest import ManifestError
    from .trust import expect_for

    earlier = [i for i in snapshot_ids(store, dataset) if i < snapshot_id]
    if not earlier:
        return None
    expect = expect_for(policy, dataset) if policy is not None else None
    try:
        return load_manifest(store, dataset, earlier[-1], keyring=keyring, expect=expect)
    except (ManifestError, TamperedError) as exc:  # the source then starts afresh (e.g. a full snapshot)
        log.warning("dataset %s: cannot read the previous snapshot: %s", dataset, exc)
        return None


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
                real = [e for e in errors if e is not None and not isinstance(e, _Cancelled)]
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
        reader = getattr(self.source, "read_segment_from", None)
        if record is None or (reader is None and record.parts) or record.segment != segment:
            record = SegmentRecord(segment)
        next_index = self._first_free_index(store, segment, record)
        seq = checkpoint.last_checkpoint_number(store, state.dataset, state.snapshot_id, segment)
        if record.parts:
            log.info("segment %d: resuming after %d part(s), %d item(s)", segment,
                     len(record.parts), record.digest_count)
        pages: Iterator[tuple[list[bytes], Callable[[int], Any] | None]]
        if reader is not None:
            pages = reader(segment, state.segments, record.cursor if record.parts else None)
        else:
            pages = ((page, None) for page in self.source.read_segment(segment, state.segments))
        digest = record.digest(state.ignores)
        buffer = self._buffer()
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
                raise _Cancelled()
            # Add a page in slices so a part closes near part_size even inside a 1 MB page.
            for start in range(0, len(lines), _SLICE):
                chunk = lines[start : start + _SLICE]
                self._add(buffer, chunk)
                if buffer.raw_bytes < part_size:
                    continue
                next_index = self._flush(store, buffer, record, digest, next_index)
                buffer = self._buffer()
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
            self._flush(store, buffer, record, digest, next_index)
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

    def _add(self, buffer: PartBuffer, chunk: list[bytes]) -> None:
        before = buffer.raw_bytes
        buffer.add_lines(chunk)
        self.progress.advance(len(chunk), buffer.raw_bytes - before)

    def _flush(self, store: Store, buffer: PartBuffer, record: SegmentRecord,
               digest: ContentDigest, index: int) -> int:
        """Write the buffer as the segment's part at ``index`` or, if that name is taken, at the
        next free index (create-only: a part name is written once). Returns the next index."""
        import hashlib

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
        record.parts.append(
            PartStats(name, segment, index, buffer.items, buffer.raw_bytes, len(body),
                      hashlib.sha256(body).hexdigest())
        )
        digest.merge(buffer.digest)
        record.digest_value, record.digest_count = digest.value, digest.count
        return index + 1

    def _save(self, store: Store, record: SegmentRecord, after: int) -> int:
        """Append the segment's next checkpoint (no listing per checkpoint: the number is
        tracked). Returns its number."""
        t0 = time.monotonic()
        seq = checkpoint.save_segment(store, self.state.dataset, self.state.snapshot_id, record,
                                      after=after)
        self.checkpoint_seconds.append(time.monotonic() - t0)
        return seq


class _Cancelled(Exception):
    pass


def backup_many(
    policy: Policy,
    datasets: list[str],
    *,
    progress_factory: Callable[[], Progress] | None = None,
    options: RunOptions | None = None,
    store: Store | None = None,
    source_for: Callable[[str], Source] | None = None,
) -> list[RunResult]:
    """Back up several datasets; one failing does not stop the others."""
    results: list[RunResult] = []
    for name in datasets:
        try:
            results.append(
                backup(
                    policy,
                    name,
                    store=store,
                    source=source_for(name) if source_for else None,
                    progress=progress_factory() if progress_factory else None,
                    options=options,
                )
            )
        except CloudkeepError as exc:
            log.error("dataset %s: backup failed: %s", name, exc)
            results.append(RunResult(name, "failed", error=str(exc), exit_code=exc.exit_code))
        except Exception as exc:
            log.exception("dataset %s: backup failed unexpectedly", name)
            results.append(
                RunResult(name, "failed", error=f"internal error: {type(exc).__name__}: {exc}",
                          exit_code=1)
            )
    return results
