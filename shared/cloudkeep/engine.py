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

The pieces: ``runstate.py`` (the plan, recorded before any part, and preparing a source to read
it), ``segments.py`` (reading segments into parts; ``RunOptions``), ``commit.py`` (the manifest);
this module runs them in order. Result types are in ``outcomes.py``.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal

from . import checkpoint, extras, layout, logctx
from . import clock as _clock
from .capabilities import Summarizes, able
from .commit import commit, existing_manifest, load_done
from .errors import CloudkeepError
from .fanout import WorkItem
from .jobs import Wait, pending_jobs, run_native
from .keys import Keyring, keyring_for
from .lock import FencedStore, Lease
from .outcomes import RunResult
from .policy import Policy
from .progress import NullProgress, Progress
from .registry import open_source, open_store
from .runstate import (
    RunStart,
    Unresumable,
    attach_source,
    data_key_of,
    load_or_plan,
    prepare_source,
    tier_store,
    unfinished_snapshot,
)
from .segments import (
    CHECKPOINT_EVERY,
    DEFAULT_PART_SIZE,
    MAX_WORKERS,
    RunOptions,
    SegmentRunner,
    new_run_id,
)
from .sources import Source, native_method
from .stores import Store

__all__ = [  # what callers import from here; the pieces live in runstate, segments and commit
    "CHECKPOINT_EVERY", "DEFAULT_PART_SIZE", "MAX_WORKERS", "RunOptions", "RunResult",
    "SegmentRunner", "attach_source", "backup", "backup_many", "commit", "data_key_of",
    "new_run_id", "prepare_source", "tier_store", "unfinished_snapshot",
]

log = logging.getLogger(__name__)


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
        return _backup(RunStart(policy, dataset, store, source, snapshot_id, trigger, slot,
                                options, started, run_id, keyring), progress)


def _backup(start: RunStart, progress: Progress) -> RunResult:
    policy, dataset, store, source = start.policy, start.dataset, start.store, start.source
    snapshot_id, options, run_id, keyring = start.snapshot_id, start.options, start.run_id, start.keyring
    existing = existing_manifest(store, dataset, snapshot_id)
    if existing is not None:
        log.info("dataset %s: snapshot %s is already committed", dataset, snapshot_id)
        return RunResult(dataset, "exists", snapshot_id, existing)
    if native_method(source):
        return run_native(policy, dataset, store, source, snapshot_id,  # type: ignore[arg-type]
                          run_id=run_id, trigger=start.trigger, slot=start.slot,
                          wait=Wait(options.wait, options.poll_interval))

    with Lease(store, dataset, run_id, lease=options.lease) as lock:
        store = FencedStore(store, lock)  # every write checks the lock first
        start = dataclasses.replace(start, store=store)
        existing = existing_manifest(store, dataset, snapshot_id)
        if existing is not None:
            return RunResult(dataset, "exists", snapshot_id, existing)
        try:
            state = load_or_plan(start)
        except Unresumable as exc:
            # Never deleted, never reused: the old attempt is marked abandoned (prune removes
            # it) and the snapshot starts afresh under a new id with the same time.
            checkpoint.abandon(store, dataset, snapshot_id, str(exc))
            fresh = f"{snapshot_id[:16]}-{secrets.token_hex(3)}"
            log.warning("dataset %s: cannot resume snapshot %s (%s); abandoned it, starting %s "
                        "afresh", dataset, snapshot_id, exc, fresh)
            snapshot_id = fresh
            state = load_or_plan(dataclasses.replace(start, snapshot_id=fresh,
                                                     started=datetime.now(UTC)))
        data_key = data_key_of(keyring, state)
        attach_source(source, store, state)
        done = checkpoint.done_segments(store, dataset, snapshot_id)
        todo = [s for s in range(state.segments) if s not in done]
        if options.queue is not None and todo:
            # Fan-out: the segments become work items; the last one to finish commits.
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
            records.update({s: r for s in done if (r := load_done(store, state, s)) is not None})
            finished = [s for s in range(state.segments) if s in records and records[s].done]
            if len(finished) < state.segments:
                log.info("run %s: dataset %s snapshot %s stops near its time budget: %d of %d "
                         "segments done; the next run resumes it", run_id, dataset, snapshot_id,
                         len(finished), state.segments)
                return RunResult(dataset, "unfinished", snapshot_id, segments=state.segments,
                                 segments_done=len(finished))
            summarizer = able(source, Summarizes)  # e.g. the objects an S3 source copied
            summary = dict(summarizer.read_summary()) if summarizer is not None else None
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
            with extras.translated():  # a missing cloud SDK: one line naming the extra to install
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
