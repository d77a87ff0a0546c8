"""What the scheduled functions and ``cloudkeep plan`` / ``run --due`` share: the plan and the tick.

``plan`` says, per dataset, where it stands against its schedule and RPO. ``tick`` runs exactly
the datasets that are due, each as the snapshot of its current slot, whose id is derived from
(dataset, slot): a trigger delivered twice finds the committed manifest and does nothing, and a
delivery that arrives while the first still runs finds the dataset locked and leaves it alone.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from . import logctx
from .catalog import load_manifest, snapshot_ids
from .engine import RunOptions, RunResult, backup
from .errors import CloudkeepError, LockedError, UsageError
from .policy import Policy
from .progress import Progress
from .registry import open_source, open_store
from .schedule import Schedule, Window, due_state, slot_snapshot_id
from .sources import Source
from .stores import Store

log = logging.getLogger(__name__)


def parse_now(text: str | None) -> datetime:
    """``--now`` as an aware UTC datetime (a time without offset is taken as UTC)."""
    if not text:
        return datetime.now(UTC)
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        raise UsageError(f"bad --now {text!r} (use ISO 8601, e.g. 2026-01-31T02:30:00Z)") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def snapshot_time(snapshot_id: str) -> datetime:
    """The time in a snapshot id: the slot of a scheduled run, the start of an on-demand one."""
    return datetime.strptime(snapshot_id[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


@dataclass
class DatasetPlan:
    dataset: str
    tier: str
    store: str
    schedule: str
    window: str | None
    stagger: timedelta
    latest_snapshot: str | None
    latest_started_at: datetime | None
    age: timedelta | None
    rpo: timedelta
    rpo_met: bool
    slot: datetime
    due: bool
    in_window: bool
    next_run: datetime
    rendered: dict[str, str | None]

    def as_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "tier": self.tier,
            "store": self.store,
            "schedule": self.schedule,
            "window": self.window,
            "stagger_seconds": int(self.stagger.total_seconds()),
            "latest_snapshot": self.latest_snapshot,
            "latest_started_at": self.latest_started_at.isoformat() if self.latest_started_at else None,
            "age_seconds": int(self.age.total_seconds()) if self.age is not None else None,
            "rpo_seconds": int(self.rpo.total_seconds()),
            "rpo_met": self.rpo_met,
            "slot": self.slot.isoformat(),
            "slot_snapshot_id": slot_snapshot_id(self.dataset, self.slot),
            "due": self.due,
            "in_window": self.in_window,
            "next_run": self.next_run.isoformat(),
            "rendered": self.rendered,
        }


def dataset_plan(policy: Policy, name: str, now: datetime, store: Store | None = None) -> DatasetPlan:
    spec = policy.dataset(name)
    tier = policy.tiers[spec.tier]
    store = store or open_store(policy.stores[spec.store])
    schedule = Schedule.parse(tier.schedule, policy.timezone)
    window = Window.parse(tier.window) if tier.window else None
    ids = [i for i in snapshot_ids(store, name) if snapshot_time(i) <= now]
    latest_id = ids[-1] if ids else None
    latest_started: datetime | None = None
    if latest_id:
        latest_started = load_manifest(store, name, latest_id).started_at
    state = due_state(
        schedule,
        dataset=name,
        now=now,
        latest=snapshot_time(latest_id) if latest_id else None,
        window=window,
        offset=spec.offset,
    )
    age = now - latest_started if latest_started else None
    return DatasetPlan(
        dataset=name,
        tier=spec.tier,
        store=spec.store,
        schedule=tier.schedule,
        window=tier.window,
        stagger=state.stagger,
        latest_snapshot=latest_id,
        latest_started_at=latest_started,
        age=age,
        rpo=tier.rpo,
        rpo_met=age is not None and age <= tier.rpo,
        slot=state.slot,
        due=state.due,
        in_window=state.in_window,
        next_run=state.next_run,
        rendered=schedule.render(),
    )


def plan(policy: Policy, now: datetime, *, datasets: list[str] | None = None,
         store_for: Callable[[str], Store] | None = None) -> list[DatasetPlan]:
    names = datasets or sorted(policy.datasets)
    return [dataset_plan(policy, n, now, store_for(n) if store_for else None) for n in names]


@dataclass
class TickResult:
    run_id: str
    now: datetime
    results: list[RunResult] = field(default_factory=list)
    not_due: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[RunResult]:
        return [r for r in self.results if r.status == "failed"]

    @property
    def ok(self) -> bool:
        return not self.failed

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "now": self.now.isoformat(),
            "ok": self.ok,
            "datasets": [r.as_dict() for r in self.results]
            + [{"dataset": n, "status": "not-due"} for n in self.not_due],
        }


def tick(
    policy: Policy,
    now: datetime | None = None,
    *,
    datasets: list[str] | None = None,
    store_for: Callable[[str], Store] | None = None,
    source_for: Callable[[str], Source] | None = None,
    progress_factory: Callable[[], Progress] | None = None,
    options: RunOptions | None = None,
    on_result: Callable[[RunResult], None] | None = None,
) -> TickResult:
    """Back up every dataset that is due at ``now``. One dataset failing does not stop the others;
    the result lists each dataset's outcome (committed, exists, locked, failed, or not due)."""
    now = now or datetime.now(UTC)
    result = TickResult(run_id=secrets.token_hex(8), now=now)
    with logctx.bind(run_id=result.run_id):
        for name in datasets or sorted(policy.datasets):
            outcome = _tick_one(policy, name, now, store_for, source_for, progress_factory, options)
            if outcome is None:
                result.not_due.append(name)
                continue
            result.results.append(outcome)
            if on_result:
                on_result(outcome)
    log.info("tick %s at %s: %d run, %d failed, %d not due", result.run_id, now.isoformat(),
             len(result.results), len(result.failed), len(result.not_due))
    return result


def after_backup(policy: Policy, result: RunResult, store: Store | None = None, *,
                 prune_at: datetime | None = None) -> None:
    """What follows a committed snapshot: copies to the dataset's further stores, and — on a
    scheduled tick — retention. Problems are logged and recorded on the result, never raised:
    the snapshot itself is committed."""
    if result.status != "committed" or result.manifest is None:
        return
    from . import copies
    from .prune import prune

    store = store or open_store(policy.stores[policy.dataset(result.dataset).store])
    result.copies = copies.copy_all(policy, store, result.manifest)
    if prune_at is not None:
        try:
            report = prune(policy, result.dataset, prune_at, store=store)
            result.pruned = report.removed
        except CloudkeepError as exc:
            log.error("dataset %s: prune failed: %s", result.dataset, exc)


RESUME_WITHIN = timedelta(hours=24)  # older unfinished snapshots are left to prune


def _pending_scheduled(store: Store, dataset: str, now: datetime) -> Any:
    """The latest unfinished scheduled snapshot of ``dataset`` started in the last 24 hours."""
    from .engine import unfinished_snapshot

    state = unfinished_snapshot(store, dataset, "schedule")
    if state is None or now - state.started > RESUME_WITHIN:
        return None
    return state


def _tick_one(
    policy: Policy,
    name: str,
    now: datetime,
    store_for: Callable[[str], Store] | None,
    source_for: Callable[[str], Source] | None,
    progress_factory: Callable[[], Progress] | None,
    options: RunOptions | None,
) -> RunResult | None:
    with logctx.bind(dataset=name):
        try:
            spec = policy.dataset(name)
            store = store_for(name) if store_for else open_store(policy.stores[spec.store])
            pending = _pending_scheduled(store, name, now)
            if pending is not None:
                # An earlier slot's snapshot stopped at its time budget (or its worker died):
                # finish it before starting a new one.
                log.info("dataset %s: resuming unfinished snapshot %s", name, pending.snapshot_id)
                result = backup(
                    policy, name, store=store,
                    source=source_for(name) if source_for else open_source(spec.source),
                    snapshot_id=pending.snapshot_id, trigger="schedule", slot=pending.slot_time,
                    progress=progress_factory() if progress_factory else None, options=options,
                )
                after_backup(policy, result, store, prune_at=now)
                return result
            state = dataset_plan(policy, name, now, store)
            if not state.due:
                return None
            snapshot_id = slot_snapshot_id(name, state.slot)
            log.info("dataset %s is due (slot %s): snapshot %s", name, state.slot.isoformat(), snapshot_id)
            result = backup(
                policy, name, store=store,
                source=source_for(name) if source_for else open_source(spec.source),
                snapshot_id=snapshot_id, trigger="schedule", slot=state.slot,
                progress=progress_factory() if progress_factory else None, options=options,
            )
            after_backup(policy, result, store, prune_at=now)
            return result
        except LockedError as exc:
            log.warning("dataset %s: %s", name, exc)
            return RunResult(name, "locked", error=str(exc))
        except CloudkeepError as exc:
            log.error("dataset %s: backup failed: %s", name, exc)
            return RunResult(name, "failed", error=str(exc), exit_code=exc.exit_code)
        except Exception as exc:
            log.exception("dataset %s: backup failed unexpectedly", name)
            return RunResult(name, "failed", error=f"internal error: {type(exc).__name__}: {exc}",
                             exit_code=1)

