"""Use cases that take snapshots: :func:`backup` (now), :func:`tick` (what is due), :func:`run`
(the CLI's ``run``: either, with fan-out items drained in this process), :func:`copy` (a
dataset's copies to its further stores) and :func:`work` (fan-out work items from a queue)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from typing import Any

from .. import clock, copies, extras, fanout, runtime
from ..alerts import Notifier
from ..capabilities import InProcess, able
from ..checkpoint import Deadline
from ..engine import RunOptions, backup_many
from ..metrics import MetricsSink
from ..policy import Policy
from ..progress import Progress
from ..queues import WorkQueue
from ..registry import open_store
from ..results import BackupRun

ProgressFactory = Callable[[], Progress]
_IN_PROCESS: Any = InProcess  # (mypy refuses a protocol class where type[C] is expected)


@extras.translating
def dataset_names(policy: Policy, datasets: Sequence[str] | None) -> list[str]:
    """The named datasets (every dataset of the policy if none is named); an unknown name
    raises UsageError before anything runs."""
    names = [str(n) for n in datasets] if datasets else sorted(policy.datasets)
    for name in names:
        policy.dataset(name)
    return names


@extras.translating
def backup(policy: Policy, datasets: Sequence[str] | None = None, *,
           options: RunOptions | None = None,
           progress_factory: ProgressFactory | None = None) -> BackupRun:
    """Take a snapshot of each dataset now (every dataset if none is named); one failing does
    not stop the others. Each committed snapshot is indexed, copied to the dataset's further
    stores (a failed copy is in ``copy_failures``; the snapshot stays committed) and audited.
    Never deletes anything."""
    names = dataset_names(policy, datasets)
    results = backup_many(policy, names, progress_factory=progress_factory, options=options)
    for result in results:
        runtime.after_backup(policy, result)  # copies to the dataset's further stores
        runtime.audit_backup(policy, result)
    return BackupRun(results, copy_failures=[c for r in results for c in r.copy_failures])


@extras.translating
def tick(policy: Policy, now: datetime | None = None, *, datasets: Sequence[str] | None = None,
         options: RunOptions | None = None, progress_factory: ProgressFactory | None = None,
         sink: MetricsSink | None = None, notifier: Notifier | None = None,
         duties: Collection[str] = runtime.DUTIES) -> runtime.TickResult:
    """The scheduled tick at ``now`` (:func:`cloudkeep.runtime.tick`): back up what is due, the
    drills and samples the tiers schedule, retention, the freshness watchdog, metrics, alerts
    and audit records — limited to ``duties`` (backup, prune, verify)."""
    return runtime.tick(policy, now, datasets=list(datasets) if datasets else None,
                        progress_factory=progress_factory, options=options, sink=sink,
                        notifier=notifier, duties=duties)


@extras.translating
def run(policy: Policy, datasets: Sequence[str] | None = None, *, due: bool = False,
        now: datetime | None = None, replay: bool = False, options: RunOptions | None = None,
        progress_factory: ProgressFactory | None = None) -> BackupRun:
    """``cloudkeep run``: :func:`backup` the datasets now, or with ``due`` :func:`tick` at
    ``now`` (with ``replay``, under a simulated clock starting at ``now``: every time the run
    records comes from it). With an in-process queue in ``options``, the fan-out work items are
    run here and the snapshots they committed are reported committed."""
    options = options or RunOptions()
    names = dataset_names(policy, datasets)
    # a queue only this process can drain: its items are run here before returning
    local_queue = options.queue if able(options.queue, _IN_PROCESS) is not None else None
    outcome: runtime.TickResult | None = None
    with clock.simulated(now) if (due and replay and now is not None) else contextlib.nullcontext():
        if due:
            outcome = tick(policy, now or clock.now(), datasets=names, options=options,
                           progress_factory=progress_factory)
            done = BackupRun(outcome.results, list(outcome.not_due), outcome,
                             list(outcome.copy_failures))
        else:
            done = backup(policy, names, options=options, progress_factory=progress_factory)
        if local_queue is not None:
            # The same work items as on a cloud's queue, run by workers in this process.
            outcomes = fanout.drain(policy, local_queue, workers=options.workers,
                                    deadline=options.deadline)
    if local_queue is not None:
        committed = {o.item.snapshot_id: o.manifest for o in outcomes if o.manifest is not None}
        for result in done.results:
            if result.status == "unfinished" and committed.get(result.snapshot_id or ""):
                result.status, result.manifest = "committed", committed[result.snapshot_id or ""]
        done.drained = True
    return done


def run_reply(done: BackupRun) -> Any:
    """The JSON reply of ``cloudkeep run``: the list of dataset rows, or with ``due`` everything
    the tick did (``datasets``, ``backups``, ``copies``, ``drills``, ``samples``, ``prunes``,
    ``alerts``, ``freshness``). A row whose dataset had a copy fail (here or retried by the
    tick) names the stores in ``copy_failed`` and the failure in ``error``."""
    if done.tick is None:
        return done.rows()
    data: dict[str, Any] = done.tick.as_dict()
    if done.drained:  # fan-out finished here: the statuses after the workers
        data["datasets"] = done.rows()
        data["backups"] = [r.as_dict() for r in done.results]
    for row in data["datasets"]:  # copies retried by the tick for datasets it did not back up
        mine = [c for c in done.copy_failures if c.get("dataset") == row["dataset"]]
        if mine and not row.get("copy_failed"):
            row["copy_failed"] = sorted({str(c.get("store")) for c in mine})
            row["error"] = row.get("error") or copies.failure_text(mine)
    return data


@extras.translating
def copy(policy: Policy, dataset: str) -> list[dict[str, Any]]:
    """Copy ``dataset``'s committed snapshots that are not yet (verified) in each of its further
    stores; returns one entry per copy made or failed (``verified``, ``error``). Create-only."""
    store = open_store(policy.stores[policy.dataset(dataset).store])
    return copies.catch_up(policy, store, dataset)


@extras.translating
def work(policy: Policy, queue: WorkQueue, *, workers: int = 4, deadline: Deadline | None = None,
         wait_seconds: float = 0.0, idle_rounds: int = 1) -> list[fanout.WorkOutcome]:
    """Take fan-out work items from ``queue`` until it stays empty (or ``deadline`` nears); the
    worker finishing a snapshot's last segment commits it."""
    return fanout.drain(policy, queue, workers=workers, deadline=deadline,
                        wait_seconds=wait_seconds, idle_rounds=idle_rounds)


__all__ = ["backup", "copy", "dataset_names", "run", "run_reply", "tick", "work"]
