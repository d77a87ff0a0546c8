"""Fan-out: one snapshot read by many workers, one segment per work item.

A run with a queue (``RunOptions.queue``) records the snapshot's plan and sends one work item
per unfinished segment. Any worker — a queue-triggered Lambda, Cloud Function or Azure Function,
or ``cloudkeep work`` — takes an item and :func:`run_work_item` reads that segment from its
checkpoint under a per-segment lease. A worker nearing its time budget checkpoints and sends the
item again (it hands the rest on). The worker that finishes a segment and finds every segment done
commits the manifest, create-only: exactly one commit, whatever the redeliveries.

Every step is idempotent, because queues deliver at least once:

- manifest already there → nothing to do (``exists``);
- segment already done → only try the commit (``already-done`` or ``committed``);
- every segment done but another worker's create-only commit won the race →
  ``committed-by-other`` (exactly one worker reports ``committed`` and runs what follows it);
- segment leased by a live worker → drop the duplicate (``busy``): the lease holder finishes it,
  or, if it dies, its own delivery comes back and the next tick re-sends unfinished segments;
- no plan and no manifest, or an abandoned plan → the snapshot was abandoned (``stale``).

A worker writes only through its segment's fenced lease (``lock.py``): a worker that lost the
lease (frozen past it while another took over) writes nothing more and drops the item (``busy``).
Workers never delete or overwrite anything.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

from . import checkpoint, keys, layout, logctx
from . import clock as _clock
from .checkpoint import Deadline, RunState, SegmentRecord
from .commit import commit, existing_manifest
from .duties import after_backup
from .errors import CloudkeepError, LockedError, ObjectNotFoundError, UsageError
from .lock import FencedStore
from .manifest import Manifest
from .outcomes import RunResult
from .policy import Policy
from .queues import Delivery, WorkQueue
from .registry import open_source, open_store
from .runstate import attach_source, data_key_of, prepare_source, tier_store
from .segments import RunOptions, SegmentRunner, new_run_id
from .sources import Source
from .stores import Store

log = logging.getLogger(__name__)

ITEM_KIND = "cloudkeep.segment"

# committed: this worker's create-only manifest write won; committed-by-other: every segment was
# done but another worker's commit won the race (nothing more to do here).
Status = Literal["committed", "committed-by-other", "segment-done", "already-done", "exists",
                 "busy", "requeued", "stale"]


class WorkItemError(UsageError):
    """A message that is not a cloudkeep work item (it cannot succeed on redelivery)."""


@dataclass(frozen=True)
class WorkItem:
    dataset: str
    snapshot_id: str
    segment: int

    def to_dict(self) -> dict[str, Any]:
        return {"kind": ITEM_KIND, "v": 1, "dataset": self.dataset,
                "snapshot_id": self.snapshot_id, "segment": self.segment}

    @classmethod
    def parse(cls, body: Any) -> WorkItem:
        """From a message body (a dict, or JSON text / bytes)."""
        try:
            doc = json.loads(body) if isinstance(body, (str, bytes, bytearray)) else body
            if not isinstance(doc, dict) or doc.get("kind") != ITEM_KIND:
                raise ValueError(f"not a {ITEM_KIND} message")
            item = cls(str(doc["dataset"]), str(doc["snapshot_id"]), int(doc["segment"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise WorkItemError(f"bad work item {str(body)[:200]!r}: {exc}") from exc
        if not layout.SNAPSHOT_ID_RE.match(item.snapshot_id) or item.segment < 0:
            raise WorkItemError(f"bad work item {item}")
        return item


@dataclass
class WorkOutcome:
    item: WorkItem
    status: Status
    manifest: Manifest | None = None
    checkpoint_seconds: tuple[float, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"dataset": self.item.dataset, "snapshot_id": self.item.snapshot_id,
                               "segment": self.item.segment, "status": self.status}
        if self.manifest is not None:
            out |= self.manifest.summary()
        return out


def run_work_item(policy: Policy, item: WorkItem, *, store: Store | None = None,
                  source: Source | None = None, deadline: Deadline | None = None,
                  queue: WorkQueue | None = None, options: RunOptions | None = None,
                  prune: bool = True) -> WorkOutcome:
    """Read one segment of a fanned-out snapshot, and commit the snapshot if it was the last
    (then retention follows a scheduled one, unless ``prune`` is False: a cloud's workers run
    as the backup identity, which deletes nothing; the pruner function prunes).

    Raises on real failures (the queue then redelivers the item, and finally dead-letters it)."""
    spec = policy.dataset(item.dataset)
    store = tier_store(policy, item.dataset, store or open_store(policy.stores[spec.store]))
    run_id = new_run_id()
    with logctx.bind(run_id=run_id, dataset=item.dataset, snapshot_id=item.snapshot_id):
        if existing_manifest(store, item.dataset, item.snapshot_id) is not None:
            return WorkOutcome(item, "exists")
        state = checkpoint.load_run_state(store, item.dataset, item.snapshot_id)
        if state is None or checkpoint.is_abandoned(store, item.dataset, item.snapshot_id):
            log.warning("work item %s: the snapshot has no plan (abandoned); dropping it", item)
            return WorkOutcome(item, "stale")
        if item.segment >= state.segments:
            raise WorkItemError(f"work item {item}: the snapshot has {state.segments} segments")
        if item.segment in checkpoint.done_segments(store, item.dataset, item.snapshot_id):
            manifest = try_commit(policy, store, state, run_id)  # its committer may have died
            if manifest is None:
                return WorkOutcome(item, "already-done")
            if manifest.run_id != run_id:
                return WorkOutcome(item, "committed-by-other", manifest)
            _after_commit(policy, store, state, manifest, prune=prune)
            return WorkOutcome(item, "committed", manifest)
        source = source or open_source(spec.source)
        keyring = keys.keyring_for(policy)  # looked up when called (tests give workers theirs)
        prepare_source(store, source, state, keyring, policy)
        attach_source(source, store, state)
        opts = options or RunOptions()
        opts.deadline = deadline
        runner = SegmentRunner(store, source, state, opts, leases=True, run_id=run_id,
                               data_key=data_key_of(keyring, state))
        try:
            # The segment and, if it was the last, the commit: under the segment's fenced lease.
            with runner.lease(item.segment) as lease:
                fenced = FencedStore(store, lease)
                record = runner.run_in(item.segment, fenced)
                manifest = try_commit(policy, fenced, state, run_id) if record.done else None
        except LockedError as exc:  # a live worker holds the segment, or this one was fenced
            log.info("work item %s: %s; dropping the duplicate", item, exc)
            return WorkOutcome(item, "busy")
        timings = tuple(runner.checkpoint_seconds)
        if not record.done:
            if queue is None:
                raise CloudkeepError(f"work item {item}: stopped at the time budget and no queue "
                                     "to hand the rest to")
            queue.send([item.to_dict()])
            return WorkOutcome(item, "requeued", checkpoint_seconds=timings)
        if manifest is None:
            return WorkOutcome(item, "segment-done", None, timings)
        if manifest.run_id != run_id:  # lost the commit race: the winner does what follows
            return WorkOutcome(item, "committed-by-other", manifest, timings)
        _after_commit(policy, store, state, manifest, prune=prune)
        return WorkOutcome(item, "committed", manifest, timings)


def _after_commit(policy: Policy, store: Store, state: RunState, manifest: Manifest, *,
                  prune: bool = True) -> None:
    """What follows a committed snapshot (copies; retention after a scheduled one), done by the
    worker that committed it."""
    result = RunResult(state.dataset, "committed", state.snapshot_id, manifest)
    after_backup(policy, result, store,
                 prune_at=_clock.now() if prune and state.trigger == "schedule" else None)


def try_commit(policy: Policy, store: Store, state: RunState, run_id: str) -> Manifest | None:
    """Commit the snapshot if every segment is done (None if some are not). Safe to call from
    many workers at once: the manifest is create-only, and the committed manifest is returned to
    every caller — its ``run_id`` is the caller's own only for the one whose write won."""
    done = checkpoint.done_segments(store, state.dataset, state.snapshot_id)
    if len(done) < state.segments:
        return None
    records: dict[int, SegmentRecord] = {}
    try:
        for segment in range(state.segments):
            found = checkpoint.load_segment(store, state.dataset, state.snapshot_id, segment)
            if found is None or not found.done:
                raise ObjectNotFoundError(f"segment {segment} has no final record")
            records[segment] = found
    except ObjectNotFoundError:
        # Prune removed the checkpoints of a snapshot another worker committed meanwhile.
        committed = existing_manifest(store, state.dataset, state.snapshot_id)
        if committed is not None:
            return committed
        raise
    manifest = commit(policy, store, state, records, run_id)
    log.info("snapshot %s committed: %d items, %d parts", state.snapshot_id,
             manifest.totals.items, manifest.totals.parts)
    return manifest


def drain(
    policy: Policy,
    queue: WorkQueue,
    *,
    workers: int = 4,
    deadline: Deadline | None = None,
    store_for: Callable[[str], Store] | None = None,
    source_for: Callable[[str], Source] | None = None,
    wait_seconds: float = 0.0,
    idle_rounds: int = 1,
) -> list[WorkOutcome]:
    """Take work items from ``queue`` until it stays empty (or the deadline nears), running up
    to ``workers`` at once in this process. An item whose run raises is left unacknowledged (the
    queue redelivers it); the first such error is raised once the queue is drained."""
    outcomes: list[WorkOutcome] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def handle(delivery: Delivery) -> None:
        try:
            item = WorkItem.parse(delivery.body)
            outcome = run_work_item(
                policy, item,
                store=store_for(item.dataset) if store_for else None,
                source=source_for(item.dataset) if source_for else None,
                deadline=deadline, queue=queue,
            )
        except WorkItemError as exc:
            log.error("%s; dropping it", exc)
            queue.ack(delivery)
            return
        except BaseException as exc:  # noqa: BLE001 - reported after the drain
            log.error("work item failed: %s", exc)
            with lock:
                errors.append(exc)
            return
        queue.ack(delivery)
        with lock:
            outcomes.append(outcome)

    idle = 0
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="work") as pool:
        while idle < idle_rounds:
            if deadline is not None and deadline.near():
                break
            batch = queue.receive(max_items=max(1, workers), wait_seconds=wait_seconds)
            if not batch:
                idle += 1
                continue
            idle = 0
            list(pool.map(handle, batch))
    if errors:
        raise errors[0]
    return outcomes
