"""What the scheduled functions and ``cloudkeep plan`` / ``run --due`` share: the plan and the tick.

``plan`` says, per dataset, where it stands against its schedule and RPO. ``tick`` runs exactly
the datasets that are due, each as the snapshot of its current slot, whose id is derived from
(dataset, slot): a trigger delivered twice finds the committed manifest and does nothing, and a
delivery that arrives while the first still runs finds the dataset locked and leaves it alone.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from . import alerts, checkpoint, clock, copies, logctx, timeline, verify_slots
from .alerts import Notifier, channels_for, secret_values
from .duties import (
    after_backup,
    audit_backup,
    due_verifications,
    newest_trusted,
    note_policy,
    prune_one,
)
from .engine import RunOptions, RunResult, backup, unfinished_snapshot
from .errors import CloudkeepError, LockedError, UsageError
from .jobs import pending_jobs
from .metrics import MetricsSink, backup_metrics, freshness_metrics, verification_metrics
from .policy import Policy, format_duration
from .progress import Progress
from .registry import open_source, open_store
from .schedule import Schedule, Window, due_state, slot_snapshot_id
from .sources import Source, native_method
from .stores import Store
from .verify import brief, latest_records

# Callers and tests import these from here; they live in ``duties.py``.
_due_verifications = due_verifications
__all__ = ["DUTIES", "DatasetPlan", "TickResult", "after_backup", "audit_backup", "dataset_plan",
           "parse_now", "plan", "snapshot_time", "tick"]

log = logging.getLogger(__name__)


def parse_now(text: str | None) -> datetime:
    """``--now`` as an aware UTC datetime (a time without offset is taken as UTC); without it,
    the current time of :mod:`cloudkeep.clock`."""
    if not text:
        return clock.now()
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        raise UsageError(f"bad --now {text!r} (use ISO 8601, e.g. 2026-01-31T02:30:00Z)") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        value = value.astimezone(UTC)
    except OverflowError:
        value = datetime.min.replace(tzinfo=UTC)  # refused just below
    if not NOW_RANGE[0] <= value <= NOW_RANGE[1]:
        raise UsageError(f"bad --now {text!r}: use a time between {NOW_RANGE[0]:%Y} and "
                         f"{NOW_RANGE[1]:%Y}")
    return value


# Times a replay may name: schedules, windows and retention need room on either side.
NOW_RANGE = (datetime(1971, 1, 1, tzinfo=UTC), datetime(9000, 1, 1, tzinfo=UTC))


def snapshot_time(snapshot_id: str) -> datetime:
    """The time in a snapshot id: the slot of a scheduled run, the start of an on-demand one
    (what a snapshot is *named* by; its age and place on the timeline come from its capture
    time, :mod:`cloudkeep.timeline`)."""
    return timeline.id_time(snapshot_id)


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
    latest_captured_at: datetime | None
    age: timedelta | None
    rpo: timedelta
    rpo_met: bool
    slot: datetime
    due: bool
    in_window: bool
    next_run: datetime
    rendered: dict[str, str | None]
    last_verification: dict[str, Any] | None = None  # filled by plan(), not by the tick
    last_drill: dict[str, Any] | None = None
    rto: timedelta | None = None
    alerts: list[dict[str, Any]] | None = None
    continuous: dict[str, Any] | None = None  # s16-capture: window and gaps, filled by plan()

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
            "latest_captured_at": (self.latest_captured_at.isoformat()
                                   if self.latest_captured_at else None),
            "age_seconds": int(self.age.total_seconds()) if self.age is not None else None,
            "rpo_seconds": int(self.rpo.total_seconds()),
            "rpo_met": self.rpo_met,
            "slot": self.slot.isoformat(),
            "slot_snapshot_id": slot_snapshot_id(self.dataset, self.slot),
            "due": self.due,
            "in_window": self.in_window,
            "next_run": self.next_run.isoformat(),
            "rendered": self.rendered,
            "rto_seconds": int(self.rto.total_seconds()) if self.rto is not None else None,
            "last_verification": self.last_verification,
            "last_drill": self.last_drill,
            "alerts": self.alerts or [],
            "continuous": self.continuous,
        }


def dataset_plan(policy: Policy, name: str, now: datetime, store: Store | None = None) -> DatasetPlan:
    spec = policy.dataset(name)
    tier = policy.tiers[spec.tier]
    store = store or open_store(policy.stores[spec.store])
    schedule = Schedule.parse(tier.schedule, policy.timezone)
    window = Window.parse(tier.window) if tier.window else None
    # The trusted snapshots that count at ``now``; the newest is the one captured last
    # (timeline.py; catalog.latest orders by capture time and skips untrusted manifests).
    newest_manifest = newest_trusted(policy, name, store, now, by_capture=True)
    latest_started = newest_manifest.started_at if newest_manifest is not None else None
    newest = (timeline.Captured(newest_manifest.snapshot_id, timeline.remember(store, newest_manifest))
              if newest_manifest is not None else None)
    # due-ness goes by the names (slots) of the trusted snapshots, freshness by capture time
    by_name = newest_trusted(policy, name, store, now)
    captured = [timeline.Captured(m.snapshot_id, timeline.capture_time(m))
                for m in (by_name, newest_manifest) if m is not None]
    state = due_state(
        schedule,
        dataset=name,
        now=now,
        # a slot is done once a snapshot named for it (or a later one) is committed: due-ness
        # goes by the names (slots), freshness below by the capture time
        latest=max((c.id_time for c in captured), default=None),
        window=window,
        offset=spec.offset,
    )
    age = timeline.age(newest.captured_at, now) if newest is not None else None
    return DatasetPlan(
        dataset=name,
        tier=spec.tier,
        store=spec.store,
        schedule=tier.schedule,
        window=tier.window,
        stagger=state.stagger,
        latest_snapshot=newest.snapshot_id if newest else None,
        latest_started_at=latest_started,
        latest_captured_at=newest.captured_at if newest else None,
        age=age,
        rpo=tier.rpo,
        rpo_met=age is not None and age <= tier.rpo,
        slot=state.slot,
        due=state.due,
        in_window=state.in_window,
        next_run=state.next_run,
        rendered=schedule.render(),
        rto=tier.rto,
    )


def plan(policy: Policy, now: datetime, *, datasets: list[str] | None = None,
         store_for: Callable[[str], Store] | None = None) -> list[DatasetPlan]:
    names = datasets or sorted(policy.datasets)
    out = []
    for name in names:
        store = store_for(name) if store_for else open_store(policy.stores[policy.dataset(name).store])
        state = dataset_plan(policy, name, now, store)
        newest = latest_records(store, name)
        for level in ("drill", "sample"):
            # a scheduled verification is remembered after its snapshot (and record) is pruned
            outcome = verify_slots.latest_outcome(store, name, level)
            known = newest.get(level)
            if outcome is not None and (known is None or str(outcome.get("started_at"))
                                        > str(known.get("started_at"))):
                newest[level] = outcome
        if newest:
            last = max(newest.values(), key=lambda r: str(r.get("started_at")))
            state.last_verification = brief(last)
        if "drill" in newest:
            state.last_drill = brief(newest["drill"])
        state.alerts = [{k: a.get(k) for k in ("kind", "since", "message")}
                        for a in alerts.open_alerts(store, name)]
        out.append(state)
    return out


DUTIES = ("backup", "prune", "verify")
"""What a tick can do. The CLI's ``run --due`` (an operator) does all three; in the clouds each
duty runs as its own function and identity (docs/threat-model.md): the tick backs up, the
pruner prunes, the verifier runs the scheduled drills and samples."""


@dataclass
class TickResult:
    """Everything one tick did: backups (with their copies and prunes), scheduled drills and
    samples, the watchdog's freshness per dataset, and the alerts and recoveries it sent."""

    run_id: str
    now: datetime
    results: list[RunResult] = field(default_factory=list)
    not_due: list[str] = field(default_factory=list)
    freshness: list[dict[str, Any]] = field(default_factory=list)  # the watchdog, per dataset
    verifications: list[dict[str, Any]] = field(default_factory=list)  # scheduled drills/samples
    alerts: list[dict[str, Any]] = field(default_factory=list)  # alerts and recoveries sent
    copies: list[dict[str, Any]] = field(default_factory=list)  # copies made or retried, per dataset
    duties: tuple[str, ...] = DUTIES
    prunes: list[dict[str, Any]] = field(default_factory=list)  # the prune duty, per dataset

    @property
    def pending(self) -> list[RunResult]:
        return [r for r in self.results if r.status == "pending"]

    @property
    def failed(self) -> list[RunResult]:
        return [r for r in self.results if r.status == "failed"]

    @property
    def copy_failures(self) -> list[dict[str, Any]]:
        """Copies that failed in this tick (their snapshots stay committed)."""
        return [c for c in self.copies if not c.get("verified") and c.get("error")]

    @property
    def ok(self) -> bool:
        return (not self.failed and not self.copy_failures
                and not [p for p in self.prunes if p.get("failed")])

    def as_dict(self) -> dict[str, Any]:
        """The reply of a tick (``run --due --format json``, the functions): ``datasets`` (every
        dataset's outcome, not-due ones included), and what the tick did — ``backups``,
        ``copies``, ``drills``, ``samples`` (all scheduled ones also in ``verifications``),
        ``prunes`` and ``alerts`` — plus the watchdog's ``freshness``."""
        backups = [r.as_dict() for r in self.results]
        # retention runs after every snapshot a tick commits (after_backup)
        prunes = [{"dataset": r.dataset, "after": r.snapshot_id, "removed": r.pruned}
                  for r in self.results if r.status == "committed" and "prune" in self.duties]
        prunes += self.prunes  # the prune duty on its own (the pruner)
        return {
            "run_id": self.run_id,
            "now": self.now.isoformat(),
            "ok": self.ok,
            "datasets": backups + [{"dataset": n, "status": "not-due"} for n in self.not_due],
            "backups": backups,
            "drills": [v for v in self.verifications if v.get("level") == "drill"],
            "samples": [v for v in self.verifications if v.get("level") == "sample"],
            "verifications": self.verifications,
            "prunes": prunes,
            "alerts": self.alerts,
            "copies": self.copies,
            "copy_failed": self.copy_failures,
            "freshness": self.freshness,
            "duties": list(self.duties),
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
    sink: MetricsSink | None = None,
    notifier: Notifier | None = None,
    duties: Collection[str] = DUTIES,
) -> TickResult:
    """Back up every dataset that is due at ``now``. One dataset failing does not stop the others;
    the result lists each dataset's outcome (committed, exists, locked, failed, or not due).

    Then, per dataset: the drills and samples its tier schedules (once per slot), the freshness
    watchdog (age of the newest committed snapshot against the RPO), metrics, alerts (raised once,
    cleared by one recovery) and audit records. A policy that differs from the one last seen is
    audited as a ``policy_change``. Recorded times come from :mod:`cloudkeep.clock` (a replay
    installs a simulated clock there); ``now`` defaults to it.

    ``duties`` limits what the tick does (:data:`DUTIES`): ``backup`` (snapshots, copies, the
    freshness watchdog), ``prune`` (retention; right after each committed snapshot when backing
    up too, else of every dataset) and ``verify`` (the scheduled drills and samples). A backup
    without the prune duty deletes nothing."""
    unknown = sorted(set(duties) - set(DUTIES))
    if unknown or not duties:
        raise UsageError(f"unknown tick duties {unknown or '(none)'} (known: {', '.join(DUTIES)})")
    now = now or clock.now()
    result = TickResult(run_id=secrets.token_hex(8), now=now,
                        duties=tuple(d for d in DUTIES if d in duties))
    notifier = notifier or Notifier(channels_for(policy), secret_values(policy))
    names = datasets or sorted(policy.datasets)
    backing_up, pruning = "backup" in duties, "prune" in duties
    with logctx.bind(run_id=result.run_id):
        if backing_up:
            note_policy(policy, names, store_for, now)
        for name in names:
            outcome = None
            if backing_up:
                outcome = _tick_one(policy, name, now, store_for, source_for, progress_factory,
                                    options, prune=pruning)
                if outcome is None:
                    result.not_due.append(name)
                else:
                    result.results.append(outcome)
                    if on_result:
                        on_result(outcome)
            elif pruning:
                result.prunes.append(prune_one(policy, name, now, store_for))
            _watch(policy, name, now, outcome, result, store_for, source_for, sink, notifier)
    log.info("tick %s at %s: %d run, %d failed, %d not due", result.run_id, now.isoformat(),
             len(result.results), len(result.failed), len(result.not_due))
    return result


def _watch(policy: Policy, name: str, now: datetime, outcome: RunResult | None, result: TickResult,
           store_for: Callable[[str], Store] | None, source_for: Callable[[str], Source] | None,
           sink: MetricsSink | None, notifier: Notifier) -> None:
    """Everything a tick does for one dataset after its backup (never raises)."""
    def emit(metrics: list[Any]) -> None:
        for metric in metrics:
            if sink is not None:
                try:
                    sink.emit(metric)
                except Exception as exc:  # noqa: BLE001 - a metrics backend must not break the tick
                    log.error("metric %s not emitted: %s", metric.name, exc)

    with logctx.bind(dataset=name):
        try:
            spec = policy.dataset(name)
            store = store_for(name) if store_for else open_store(policy.stores[spec.store])
            observed: dict[str, str | None] = {}
            if "backup" not in result.duties and "verify" not in result.duties:
                return  # the pruner: its own audit records only
            if outcome is not None:
                emit(backup_metrics(policy, outcome))
                audit_backup(policy, outcome, store)
                if outcome.status == "failed":
                    observed["backup_failed"] = f"backup failed: {outcome.error}"
                elif outcome.status == "committed":
                    observed["backup_failed"] = None
            if "backup" in result.duties:
                observed |= _copy_duty(policy, name, outcome, store, result)
            due = due_verifications(policy, name, now, store, source_for,
                                     run_id=result.run_id) if "verify" in result.duties else []
            for report in due:
                emit(verification_metrics(report))
                result.verifications.append(report.as_dict())
                observed["verification_failed"] = None if report.ok else (
                    f"{report.level} of {report.snapshot_id} failed: "
                    + "; ".join(str(p) for p in report.problems[:3]))
            if "backup" not in result.duties:
                if observed:
                    sent = alerts.update(store, name, observed, notifier, tier=spec.tier, now=now)
                    result.alerts.extend(a.as_dict() for a in sent)
                return
            state = dataset_plan(policy, name, now, store)
            age = state.age.total_seconds() if state.age is not None else None
            breached = not state.rpo_met
            result.freshness.append({"dataset": name, "tier": state.tier, "age_seconds": age,
                                     "rpo_seconds": int(state.rpo.total_seconds()),
                                     "rpo_met": state.rpo_met,
                                     "latest_snapshot": state.latest_snapshot,
                                     "latest_captured_at": (state.latest_captured_at.isoformat()
                                                            if state.latest_captured_at else None)})
            emit(freshness_metrics(name, state.tier, age, breached))
            if breached:
                observed["rpo_breach"] = (
                    f"newest snapshot is {_age_text(age)} old, RPO is "
                    f"{_age_text(state.rpo.total_seconds())}" if age is not None
                    else f"no snapshot yet (RPO {_age_text(state.rpo.total_seconds())})")
            else:
                observed["rpo_breach"] = None
            sent = alerts.update(store, name, observed, notifier, tier=state.tier, now=now)
            result.alerts.extend(a.as_dict() for a in sent)
        except Exception:
            log.exception("dataset %s: the watchdog failed", name)


def _copy_duty(policy: Policy, name: str, outcome: RunResult | None, store: Store,
               result: TickResult) -> dict[str, str | None]:
    """Retry the copies a dataset is missing (failed or interrupted earlier) and say what the
    ``copy_failed`` alert should be: a message while some copy fails, None once all are
    verified (nothing when the dataset has no copy targets, or another run held its lock)."""
    if not copies.targets(policy, name):
        return {}
    if outcome is not None and outcome.status in ("committed", "exists"):
        entries = list(outcome.copies)  # after_backup has just copied (and caught up)
    else:
        try:
            entries = copies.catch_up(policy, store, name)
        except CloudkeepError as exc:
            log.error("dataset %s: copies could not be retried: %s", name, exc)
            return {"copy_failed": f"copies could not be retried: {exc}"}
    result.copies.extend({"dataset": name} | e for e in entries)
    if copies.failures(entries):
        return {"copy_failed": copies.failure_text(entries)}
    if any(e.get("deferred") or e.get("rehydrating") for e in entries):
        return {}
    return {"copy_failed": None}


def _age_text(seconds: float | None) -> str:
    return "?" if seconds is None else format_duration(timedelta(seconds=int(seconds)))


RESUME_WITHIN = checkpoint.RESUME_WITHIN  # older unfinished snapshots are left to prune


def _pending_scheduled(store: Store, dataset: str, now: datetime) -> Any:
    """The latest unfinished scheduled snapshot of ``dataset`` started in the last 24 hours."""
    state = unfinished_snapshot(store, dataset, "schedule", now=now)
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
    *,
    prune: bool = True,
) -> RunResult | None:
    prune_at = now if prune else None
    with logctx.bind(dataset=name):
        try:
            spec = policy.dataset(name)
            store = store_for(name) if store_for else open_store(policy.stores[spec.store])
            source = source_for(name) if source_for else None
            if _runs_native_jobs(spec.source) or (source is not None and native_method(source)):
                # A native job still running is continued before (instead of) starting another.
                pending = pending_jobs(store, name)
                if pending:
                    record = pending[0]
                    log.info("dataset %s: continuing the %s job of snapshot %s", name,
                             record.get("method"), record["snapshot_id"])
                    slot = datetime.fromisoformat(record["slot"]) if record.get("slot") else None
                    result = backup(
                        policy, name, store=store, source=source or open_source(spec.source),
                        snapshot_id=str(record["snapshot_id"]),
                        trigger="schedule" if record.get("trigger") == "schedule" else "manual",
                        slot=slot, options=options,
                    )
                    after_backup(policy, result, store, prune_at=prune_at)
                    return result
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
                after_backup(policy, result, store, prune_at=prune_at)
                return result
            state = dataset_plan(policy, name, now, store)
            if not state.due:
                return None
            snapshot_id = slot_snapshot_id(name, state.slot)
            log.info("dataset %s is due (slot %s): snapshot %s", name, state.slot.isoformat(), snapshot_id)
            result = backup(
                policy, name, store=store, source=source or open_source(spec.source),
                snapshot_id=snapshot_id, trigger="schedule", slot=state.slot,
                progress=progress_factory() if progress_factory else None, options=options,
            )
            after_backup(policy, result, store, prune_at=prune_at)
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



def _runs_native_jobs(spec: Any) -> bool:
    """Whether a source spec makes snapshots by native jobs (read from the policy alone, so a
    dataset that is not due needs no source client)."""
    return bool(spec.runs_native_jobs())
