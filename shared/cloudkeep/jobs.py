"""Native jobs that span invocations: start, poll, finish — never a sleeping function.

A source that runs a native job (a DynamoDB export or backup, an RDS snapshot, a Firestore
managed export; see ``sources.NativeJobSource``) makes a snapshot in three steps, each in
whichever invocation comes next (a scheduled tick, ``cloudkeep run`` again, or one ``run --wait``):

1. *start*: the job is started and its record — the append-only sequence
   ``<dataset>/jobs/<snapshot_id>/<seq>.json`` — gets its first entry (state ``started``); the
   run returns ``pending``.
2. *poll*: a later invocation looks at the job once; still running → the record gets a new entry
   (state ``polling``, poll count, last poll time) and the run returns ``pending`` again.
3. *finish*: the job is done → the source lists what it made (data files become parts with
   sizes and sha256), the manifest is committed create-only, and the record says ``finished``.
   A failed job is recorded as ``failed`` with its message; the next run of that snapshot id
   starts it afresh.

Every step runs under the dataset's fenced lock, and every record entry is written create-only
as exactly the next number after the one it was read from, so two invocations never advance one
job twice (the second finds the number taken and fails); the manifest's create-only write decides
the one that commits. Nothing is overwritten or deleted (prune removes superseded entries).
A record of the previous release (``<dataset>/jobs/<snapshot_id>.json``) is read when the
sequence has no entry yet. Scheduled ticks continue a dataset's pending job before (instead of)
starting a new one.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from . import __version__, layout, sequences
from . import clock as _clock
from .capabilities import Description
from .catalog import load_manifest, snapshot_ids
from .commit import existing_manifest
from .errors import CloudkeepError, ObjectExistsError, ObjectNotFoundError
from .lock import FencedStore, Lease, unwrap
from .manifest import Codec, Consistency, ContentDigestEntry, Manifest, Totals
from .outcomes import RunResult
from .redaction import redact
from .retention import Rules
from .sources import JobContext, NativeJobSource
from .trust import sign_new

if TYPE_CHECKING:
    from .policy import Policy
    from .stores import Store

log = logging.getLogger(__name__)

PENDING_STATES = ("started", "polling")
State = Literal["started", "polling", "finished", "failed"]


@dataclass
class Wait:
    """Poll in process until the job is done (``cloudkeep run --wait``), at most ``seconds``."""

    seconds: float = 0.0
    interval: float = 15.0
    sleep: Callable[[float], None] = time.sleep


def _parse(data: bytes, key: str) -> dict[str, Any]:
    try:
        record = json.loads(data)
    except ValueError:
        raise CloudkeepError(f"job record {key} is damaged (not JSON)") from None
    if not isinstance(record, dict):
        raise CloudkeepError(f"job record {key} is damaged (not an object)")
    return record


def read_job_entry(store: Store, dataset: str, snapshot_id: str
                   ) -> tuple[int, dict[str, Any]] | None:
    """The job's current record and its entry number (-1: a record of the previous release)."""
    found = sequences.newest(store, layout.job_records_prefix(dataset, snapshot_id), _parse)
    if found is not None:
        return found
    key = layout.job_key(dataset, snapshot_id)
    try:
        return -1, _parse(store.get(key), key)
    except ObjectNotFoundError:
        return None


def read_job(store: Store, dataset: str, snapshot_id: str) -> dict[str, Any] | None:
    found = read_job_entry(store, dataset, snapshot_id)
    return found[1] if found is not None else None


def job_ids(store: Store, dataset: str) -> list[str]:
    """Snapshot ids that have a job record, oldest first."""
    out = set()
    for info in store.list(layout.jobs_prefix(dataset)):
        sid = layout.parse_job_key(dataset, info.key)
        if sid:
            out.add(sid)
    return sorted(out)


def pending_jobs(store: Store, dataset: str) -> list[dict[str, Any]]:
    """Records of the dataset's jobs still running (started or polling), oldest first. Only
    records of snapshots without a manifest are read."""
    ids = job_ids(store, dataset)
    if not ids:
        return []
    committed = set(snapshot_ids(store, dataset))
    out = []
    for sid in ids:
        if sid in committed:
            continue
        record = read_job(store, dataset, sid)
        if record is not None and record.get("state") in PENDING_STATES:
            out.append(record)
    return out


def _write(store: Store, record: dict[str, Any], *, after: int) -> int:
    """Append ``record`` as entry ``after + 1`` of the job's sequence, create-only (the number
    taken: another invocation advanced the job meanwhile → ``ObjectExistsError``)."""
    record["updated_at"] = _clock.now().isoformat()
    body = redact(json.dumps(record, indent=2, sort_keys=True, default=str)).encode()  # no secrets
    prefix = layout.job_records_prefix(record["dataset"], record["snapshot_id"])
    store.put(layout.sequence_key(prefix, after + 1), body, if_absent=True)
    return after + 1


def run_native(
    policy: Policy,
    dataset: str,
    store: Store,
    source: NativeJobSource,
    snapshot_id: str,
    *,
    run_id: str,
    trigger: Literal["manual", "schedule"],
    slot: datetime | None,
    wait: Wait | None = None,
) -> RunResult:
    """Advance the native job of ``snapshot_id`` by one step (or, with ``wait``, until it is done
    or the wait is over). Returns ``pending``, ``committed``, ``exists`` or ``failed``."""
    wait = wait or Wait()
    deadline = time.monotonic() + wait.seconds
    with Lease(store, dataset, run_id) as lock:
        store = FencedStore(store, lock)  # a run that lost the lock writes nothing more
        job = _Job(policy, dataset, source, snapshot_id, run_id, trigger, slot)
        while True:
            result = _step(job, store)
            if result.status != "pending" or time.monotonic() + wait.interval > deadline:
                return result
            log.info("dataset %s: job of %s still running; polling again in %.0fs", dataset,
                     snapshot_id, wait.interval)
            wait.sleep(wait.interval)


@dataclass(frozen=True)
class _Job:
    """The run advancing one native job: which snapshot, by whom, for which slot."""

    policy: Policy
    dataset: str
    source: NativeJobSource
    snapshot_id: str
    run_id: str
    trigger: Literal["manual", "schedule"]
    slot: datetime | None


def _step(run: _Job, store: Store) -> RunResult:
    policy, dataset, source, snapshot_id = run.policy, run.dataset, run.source, run.snapshot_id
    run_id, trigger, slot = run.run_id, run.trigger, run.slot
    existing = existing_manifest(store, dataset, snapshot_id)
    if existing is not None:
        return RunResult(dataset, "exists", snapshot_id, existing)
    entry = read_job_entry(store, dataset, snapshot_id)
    seq, record = entry if entry is not None else (-1, None)
    method = source.native_method() or "native"
    if record is None or record.get("state") == "failed":
        now = _clock.now()
        ctx = JobContext(dataset, snapshot_id, unwrap(store), now)
        job = source.start_job(ctx)
        attempt = int(record.get("attempt", 0)) + 1 if record else 1
        record = {
            "format": 1, "dataset": dataset, "snapshot_id": snapshot_id, "source": source.kind,
            "method": method, "state": "started", "attempt": attempt, "run_id": run_id,
            "trigger": trigger, "slot": slot.isoformat() if slot else None,
            "created_at": now.isoformat(), "polls": 0, "job": job,
        }
        try:
            _write(store, record, after=seq)
        except ObjectExistsError:
            raise CloudkeepError(
                f"dataset {dataset!r}: a job for {snapshot_id} was recorded by another run "
                f"meanwhile; the one just started ({json.dumps(job, default=str)}) is not "
                "recorded and is removed by retention's sweep"
            ) from None
        log.info("dataset %s: started %s job for snapshot %s", dataset, method, snapshot_id)
        return _pending(dataset, snapshot_id, record)
    if record.get("state") == "finished":
        # Finished but no manifest: the commit did not happen (crash); finish again below.
        record["state"] = "polling"
    ctx = JobContext(dataset, snapshot_id, unwrap(store),
                     datetime.fromisoformat(str(record["created_at"])))
    job = dict(record.get("job") or {})
    poll = source.poll_job(ctx, job)
    record["job"] = poll.job
    record["polls"] = int(record.get("polls", 0)) + 1
    record["last_polled_at"] = _clock.now().isoformat()
    if poll.state == "running":
        record["state"] = "polling"
        if poll.message:
            record["progress"] = poll.message
        _advance(store, record, seq)
        return _pending(dataset, snapshot_id, record)
    if poll.state == "failed":
        record["state"] = "failed"
        record["error"] = poll.message
        _advance(store, record, seq)
        message = f"{method} job of {dataset}@{snapshot_id} failed: {poll.message}"
        log.error("dataset %s: %s", dataset, message)
        return RunResult(dataset, "failed", snapshot_id, error=message, exit_code=1)
    manifest = _finish(policy, dataset, store, source, ctx, record)
    record["state"] = "finished"
    record["finished_at"] = manifest.finished_at.isoformat()
    _advance(store, record, seq)
    return RunResult(dataset, "committed", snapshot_id, manifest)


def _advance(store: Store, record: dict[str, Any], seq: int) -> None:
    try:
        _write(store, record, after=seq)
    except ObjectExistsError:
        raise CloudkeepError(
            f"dataset {record['dataset']!r}: the job of {record['snapshot_id']} was advanced by "
            "another run meanwhile; this run stops"
        ) from None


def _pending(dataset: str, snapshot_id: str, record: dict[str, Any]) -> RunResult:
    result = RunResult(dataset, "pending", snapshot_id)
    result.job = {k: record.get(k) for k in ("method", "state", "attempt", "polls", "created_at",
                                             "last_polled_at", "progress") if record.get(k) is not None}
    return result


def _finish(policy: Policy, dataset: str, store: Store, source: NativeJobSource, ctx: JobContext,
            record: dict[str, Any]) -> Manifest:
    spec = policy.dataset(dataset)
    outcome = source.finish_job(ctx, dict(record["job"]))
    raw = outcome.described
    if not isinstance(raw, Description):
        raw = dict(raw)
        raw.setdefault("method", record.get("method") or "native")
    described = Description.coerce(raw)
    method = described.method
    consistency = Consistency(**described.consistency)
    parts = list(outcome.parts)
    slot = record.get("slot")
    manifest = Manifest(
        snapshot_id=ctx.snapshot_id,
        dataset=dataset,
        run_id=str(record.get("run_id")),
        trigger=record.get("trigger", "manual"),
        slot=datetime.fromisoformat(slot) if slot else None,
        tier=spec.tier,
        store=spec.store,
        source=dict(described.identity),
        method=method,
        consistency=consistency,
        started_at=ctx.started_at,
        finished_at=_clock.now(),
        segments=max(1, len({p.segment for p in parts})),
        parts=parts,
        totals=Totals(
            items=sum(p.items for p in parts),
            parts=len(parts),
            raw_bytes=sum(p.raw_bytes for p in parts),
            stored_bytes=sum(p.stored_bytes for p in parts),
        ),
        codec=outcome.codec or Codec(),
        content_digest=ContentDigestEntry(value=outcome.content_digest, ignores=outcome.digest_ignores),
        native=outcome.native,
        cloudkeep_version=__version__,
    )
    manifest = sign_new(policy, manifest)  # a native snapshot is not encrypted: signed if keys sign
    retain_until = None
    if store.capabilities.object_lock:
        # Immutable as long as the tier's retention could keep the snapshot (as the engine does).
        retain_until = ctx.started_at + Rules.from_policy(policy.tiers[spec.tier].retention).horizon()
    try:
        store.put(layout.manifest_key(dataset, ctx.snapshot_id), manifest.to_bytes(), if_absent=True,
                  retain_until=retain_until)
    except ObjectExistsError:
        return load_manifest(store, dataset, ctx.snapshot_id)
    log.info("dataset %s: %s job of snapshot %s finished; manifest committed (%d parts, %d items)",
             dataset, method, ctx.snapshot_id, manifest.totals.parts, manifest.totals.items)
    return manifest
