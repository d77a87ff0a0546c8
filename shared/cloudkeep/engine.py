"""A snapshot run: lock, read the source's segments in parallel, write parts, commit the manifest.

Write order is what makes a snapshot safe: every part is written (create-only) before the
manifest, and the manifest is written last and create-only. A snapshot without a manifest is
invisible to every command; a run that fails removes the parts it wrote, and a run that crashes
leaves parts that no manifest references (harmless, removed by prune).
"""

from __future__ import annotations

import contextvars
import dataclasses
import logging
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from . import __version__, layout, logctx
from .codec import DEFAULT_LEVEL, ContentDigest, PartBuffer, PartStats, encrypt_part
from .errors import CloudkeepError, ObjectNotFoundError
from .lock import DatasetLock
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

log = logging.getLogger(__name__)

DEFAULT_PART_SIZE = 64 * 1024 * 1024  # raw NDJSON bytes per part
MAX_WORKERS = 16
_SLICE = 32  # lines added to a part between size checks


@dataclass
class RunOptions:
    part_size: int = DEFAULT_PART_SIZE
    level: int = DEFAULT_LEVEL
    workers: int = MAX_WORKERS
    retain_until: datetime | None = None  # Object Lock date for every object (set by the engine)
    wait: float = 0.0  # native jobs: seconds to keep polling in process (run --wait); 0: one step
    poll_interval: float = 15.0  # native jobs: seconds between polls while waiting


@dataclass
class RunResult:
    dataset: str
    status: Literal["committed", "exists", "locked", "failed", "pending"]
    snapshot_id: str | None = None
    manifest: Manifest | None = None
    error: str | None = None
    exit_code: int = 0
    copies: list[dict[str, object]] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    job: dict[str, object] | None = None  # a pending native job's state (cloudkeep.jobs)

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"dataset": self.dataset, "status": self.status,
                                  "snapshot_id": self.snapshot_id}
        if self.manifest is not None:
            out |= self.manifest.summary()
        if self.error:
            out["error"] = self.error
        if self.copies:
            out["copies"] = self.copies
        if self.pruned:
            out["pruned"] = self.pruned
        if self.job:
            out["job"] = self.job
        return out


@dataclass
class _SegmentOutcome:
    parts: list[PartStats] = field(default_factory=list)
    digest: ContentDigest = field(default_factory=ContentDigest)


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
    With encryption (``policy.encryption_keys``) every part is encrypted under a fresh data key
    wrapped by each listed key, and the manifest carries its authentication tag."""
    from .keys import keyring_for

    spec = policy.dataset(dataset)
    keyring = keyring or keyring_for(policy)
    store = store or open_store(policy.stores[spec.store])
    source = source or open_source(spec.source)
    progress = progress or NullProgress()
    options = options or RunOptions()
    started = datetime.now(UTC)
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
    snapshot_id = snapshot_id or layout.snapshot_id_for(started, secrets.token_hex(3))

    with logctx.bind(run_id=run_id, dataset=dataset, snapshot_id=snapshot_id):
        return _backup(policy, dataset, store, source, snapshot_id, trigger, slot, progress,
                       options, started, run_id, keyring)


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
    spec = policy.dataset(dataset)
    existing = _existing_manifest(store, dataset, snapshot_id)
    if existing is not None:
        log.info("dataset %s: snapshot %s is already committed", dataset, snapshot_id)
        return RunResult(dataset, "exists", snapshot_id, existing)
    if native_method(source):
        from .jobs import Wait, run_native

        return run_native(policy, dataset, store, source, snapshot_id,  # type: ignore[arg-type]
                          run_id=run_id, trigger=trigger, slot=slot,
                          wait=Wait(options.wait, options.poll_interval))

    with DatasetLock(store, dataset, run_id):
        existing = _existing_manifest(store, dataset, snapshot_id)
        if existing is not None:
            return RunResult(dataset, "exists", snapshot_id, existing)
        # A fresh data key, wrapped by every key the dataset lists: a key that cannot be used
        # fails the run here, before anything is read or written.
        key_names = policy.encryption_keys(dataset)
        if key_names and getattr(source, "attach_store", None) is not None:
            # Sources that copy objects (S3) store them content-addressed, server-side copied
            # and deduplicated across snapshots: not client-side encrypted (README, S3 source).
            log.warning("%s: the %s source's snapshots are not client-side encrypted (objects are "
                        "copied as they are); protect the store with SSE-KMS", dataset, source.kind)
            key_names = []
        data_key, encryption = (keyring.seal(key_names, dataset, snapshot_id) if key_names
                                else (None, None))
        attach_store = getattr(source, "attach_store", None)
        if attach_store is not None:
            # Sources that copy objects (S3) write content-addressed blobs into the store.
            attach_store(store, dataset, _retain_until(policy, spec.tier, store, started))
        set_previous = getattr(source, "set_previous", None)
        if set_previous is not None:
            # Sources that take incremental snapshots continue from the latest committed one.
            set_previous(_previous_manifest(store, dataset, snapshot_id, keyring))
        described = dict(source.describe())
        # A source may report its own read method and consistency (e.g. a point-in-time read).
        method = str(described.pop("method", "scan"))
        consistency = Consistency(**described.pop("consistency", {"mode": "fuzzy"}))
        # ... and top-level keys of its lines that a restored copy cannot keep (codec.py).
        ignores = [str(k) for k in described.pop("digest_ignores", ())]
        total = source.plan_segments(described)
        if store.capabilities.object_lock:
            options = dataclasses.replace(
                options, retain_until=_retain_until(policy, spec.tier, store, started))
        log.info(
            "run %s: dataset %s → snapshot %s (%d segments, store %s)",
            run_id, dataset, snapshot_id, total, store.describe(),
        )
        written: list[str] = []
        written_lock = threading.Lock()
        stop = threading.Event()

        def on_written(key: str) -> None:
            with written_lock:
                written.append(key)

        progress.start(f"{dataset}", described.get("item_count_estimate"))
        t0 = time.monotonic()
        try:
            outcomes = _read_all(
                source, store, dataset, snapshot_id, total, options, progress, stop, on_written,
                ignores, data_key,
            )
            read_summary = getattr(source, "read_summary", None)
            if read_summary is not None:  # e.g. what the S3 source copied
                described = described | dict(read_summary())
            parts = sorted((p for o in outcomes for p in o.parts), key=lambda p: (p.segment, p.index))
            digest = ContentDigest()
            for outcome in outcomes:
                digest.merge(outcome.digest)
            finished = datetime.now(UTC)
            manifest = Manifest(
                snapshot_id=snapshot_id,
                dataset=dataset,
                run_id=run_id,
                trigger=trigger,
                slot=slot,
                tier=spec.tier,
                store=spec.store,
                source=described,
                method=method,
                consistency=consistency,
                started_at=started,
                finished_at=finished,
                segments=total,
                parts=[PartEntry(**vars(p)) for p in parts],
                totals=Totals(
                    items=sum(p.items for p in parts),
                    parts=len(parts),
                    raw_bytes=sum(p.raw_bytes for p in parts),
                    stored_bytes=sum(p.stored_bytes for p in parts),
                ),
                codec=Codec(level=options.level,
                            encryption=Encryption(**encryption) if encryption else None),
                content_digest=ContentDigestEntry(value=digest.hexdigest(), ignores=ignores),
                cloudkeep_version=__version__,
            )
            if data_key is not None:
                manifest = keyring.sign(manifest, data_key)
            store.put(layout.manifest_key(dataset, snapshot_id), manifest.to_bytes(), if_absent=True,
                      retain_until=options.retain_until)
        except BaseException:
            stop.set()
            _cleanup(store, written)
            raise
        finally:
            progress.finish()
    log.info(
        "run %s: dataset %s snapshot %s committed: %d items, %d parts, %d bytes stored in %.2fs",
        run_id, dataset, snapshot_id, manifest.totals.items, manifest.totals.parts,
        manifest.totals.stored_bytes, time.monotonic() - t0,
    )
    return RunResult(dataset, "committed", snapshot_id, manifest)


def _retain_until(policy: Policy, tier: str, store: Store, started: datetime) -> datetime | None:
    """Immutable for as long as the tier's retention could ever keep the snapshot (stores with
    Object Lock only)."""
    if not store.capabilities.object_lock:
        return None
    from .retention import Rules

    return started + Rules.from_policy(policy.tiers[tier].retention).horizon()


def _existing_manifest(store: Store, dataset: str, snapshot_id: str) -> Manifest | None:
    key = layout.manifest_key(dataset, snapshot_id)
    try:
        data = store.get(key)
    except ObjectNotFoundError:
        return None
    return Manifest.from_bytes(data, where=key)


def _previous_manifest(store: Store, dataset: str, snapshot_id: str,
                       keyring: Keyring | None = None) -> Manifest | None:
    """The dataset's latest committed snapshot before ``snapshot_id`` (ids sort by time),
    authenticated when it is encrypted."""
    from .catalog import load_manifest, snapshot_ids
    from .errors import TamperedError
    from .manifest import ManifestError

    earlier = [i for i in snapshot_ids(store, dataset) if i < snapshot_id]
    if not earlier:
        return None
    try:
        return load_manifest(store, dataset, earlier[-1], keyring=keyring)
    except (ManifestError, TamperedError) as exc:  # the source then starts afresh (e.g. a full snapshot)
        log.warning("dataset %s: cannot read the previous snapshot: %s", dataset, exc)
        return None


def _read_all(
    source: Source,
    store: Store,
    dataset: str,
    snapshot_id: str,
    total: int,
    options: RunOptions,
    progress: Progress,
    stop: threading.Event,
    on_written: object,
    ignores: list[str],
    data_key: bytes | None = None,
) -> list[_SegmentOutcome]:
    def flush(buffer: PartBuffer, segment: int, index: int, outcome: _SegmentOutcome) -> None:
        import hashlib

        body = buffer.finish()
        name = layout.part_name(segment, index, encrypted=data_key is not None)
        if data_key is not None:
            body = encrypt_part(data_key, snapshot_id, name, body)
        key = layout.part_key(dataset, snapshot_id, name)
        store.put(key, body, if_absent=True, retain_until=options.retain_until)
        on_written(key)  # type: ignore[operator]
        outcome.parts.append(
            PartStats(name, segment, index, buffer.items, buffer.raw_bytes, len(body),
                      hashlib.sha256(body).hexdigest())
        )
        outcome.digest.merge(buffer.digest)

    def one(segment: int) -> _SegmentOutcome:
        outcome = _SegmentOutcome()
        buffer = PartBuffer(level=options.level, digest=ContentDigest(ignores=ignores))
        index = 0
        for lines in source.read_segment(segment, total):
            if stop.is_set():
                raise _Cancelled()
            # Add a page in slices so a part closes near part_size even inside a 1 MB page.
            for start in range(0, len(lines), _SLICE):
                chunk = lines[start : start + _SLICE]
                before = buffer.raw_bytes
                buffer.add_lines(chunk)
                progress.advance(len(chunk), buffer.raw_bytes - before)
                if buffer.raw_bytes >= options.part_size:
                    flush(buffer, segment, index, outcome)
                    index += 1
                    buffer = PartBuffer(level=options.level, digest=ContentDigest(ignores=ignores))
        if buffer.items:
            flush(buffer, segment, index, outcome)
        return outcome

    workers = max(1, min(options.workers, total))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"scan-{dataset}") as pool:
        futures = [pool.submit(contextvars.copy_context().run, one, segment) for segment in range(total)]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        failed = [f for f in done if f.exception() is not None]
        if failed:
            stop.set()
            for f in futures:
                f.cancel()
            wait(futures)
            errors = [f.exception() for f in futures if f.done() and not f.cancelled()]
            real = [e for e in errors if e is not None and not isinstance(e, _Cancelled)]
            raise real[0] if real else CloudkeepError("backup cancelled")
        return [f.result() for f in futures]


class _Cancelled(Exception):
    pass


def _cleanup(store: Store, keys: list[str]) -> None:
    if not keys:
        return
    try:
        store.delete(list(keys))
    except Exception as exc:  # noqa: BLE001 - the original error matters more
        log.warning("could not remove %d parts of the failed run: %s", len(keys), exc)


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
