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

from . import logctx
from .alerts import Notifier
from .catalog import load_manifest, snapshot_ids
from .engine import RunOptions, RunResult, backup
from .errors import CloudkeepError, LockedError, UsageError
from .metrics import MetricsSink
from .policy import Policy
from .progress import Progress
from .registry import open_source, open_store
from .schedule import Schedule, Window, due_state, slot_snapshot_id
from .sources import Source, native_method
from .stores import Store
from .verify import record_and_audit

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
    last_verification: dict[str, Any] | None = None  # filled by plan(), not by the tick
    last_drill: dict[str, Any] | None = None
    rto: timedelta | None = None
    alerts: list[dict[str, Any]] | None = None

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
            "rto_seconds": int(self.rto.total_seconds()) if self.rto is not None else None,
            "last_verification": self.last_verification,
            "last_drill": self.last_drill,
            "alerts": self.alerts or [],
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
        from .errors import KeyUnavailableError
        from .keys import keyring_for

        try:
            latest_started = load_manifest(store, name, latest_id,
                                           keyring=keyring_for(policy)).started_at
        except KeyUnavailableError as exc:
            # The backup identity may not unwrap committed data keys (docs/threat-model.md): the
            # schedule needs only the snapshot's time, which the tag would not make safer here
            # (whoever can create a manifest can create the slot's one); verification checks it.
            log.debug("dataset %s: %s; reading the manifest of %s for its time only", name, exc,
                      latest_id)
            latest_started = load_manifest(store, name, latest_id).started_at
    state = due_state(
        schedule,
        dataset=name,
        now=now,
        latest=snapshot_time(latest_id) if latest_id else None,
        window=window,
        offset=spec.offset,
    )
    # A snapshot's data is at least as fresh as its start — and as its id's time (the slot of a
    # scheduled run, which a real start never precedes; under a replayed --now clock the start
    # may be behind it, and the slot is the time the run stands for).
    age = now - max(latest_started, snapshot_time(latest_id)) if latest_started and latest_id else None
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
        rto=tier.rto,
    )


def plan(policy: Policy, now: datetime, *, datasets: list[str] | None = None,
         store_for: Callable[[str], Store] | None = None) -> list[DatasetPlan]:
    from . import alerts
    from .verify import brief, latest_records

    names = datasets or sorted(policy.datasets)
    out = []
    for name in names:
        store = store_for(name) if store_for else open_store(policy.stores[policy.dataset(name).store])
        state = dataset_plan(policy, name, now, store)
        newest = latest_records(store, name)
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
    run_id: str
    now: datetime
    results: list[RunResult] = field(default_factory=list)
    not_due: list[str] = field(default_factory=list)
    freshness: list[dict[str, Any]] = field(default_factory=list)  # the watchdog, per dataset
    verifications: list[dict[str, Any]] = field(default_factory=list)  # scheduled drills/samples
    alerts: list[dict[str, Any]] = field(default_factory=list)  # alerts and recoveries sent
    duties: tuple[str, ...] = DUTIES
    prunes: list[dict[str, Any]] = field(default_factory=list)  # the prune duty, per dataset

    @property
    def pending(self) -> list[RunResult]:
        return [r for r in self.results if r.status == "pending"]

    @property
    def failed(self) -> list[RunResult]:
        return [r for r in self.results if r.status == "failed"]

    @property
    def ok(self) -> bool:
        return not self.failed and not [p for p in self.prunes if p.get("failed")]

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "now": self.now.isoformat(),
            "ok": self.ok,
            "datasets": [r.as_dict() for r in self.results]
            + [{"dataset": n, "status": "not-due"} for n in self.not_due],
            "freshness": self.freshness,
            "verifications": self.verifications,
            "alerts": self.alerts,
            "duties": list(self.duties),
        } | ({"prunes": self.prunes} if self.prunes else {})


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
    audited as a ``policy_change``.

    ``duties`` limits what the tick does (:data:`DUTIES`): ``backup`` (snapshots, copies, the
    freshness watchdog), ``prune`` (retention; right after each committed snapshot when backing
    up too, else of every dataset) and ``verify`` (the scheduled drills and samples). A backup
    without the prune duty deletes nothing."""
    from .alerts import channels_for, secret_values

    unknown = sorted(set(duties) - set(DUTIES))
    if unknown or not duties:
        raise UsageError(f"unknown tick duties {unknown or '(none)'} (known: {', '.join(DUTIES)})")
    now = now or datetime.now(UTC)
    result = TickResult(run_id=secrets.token_hex(8), now=now,
                        duties=tuple(d for d in DUTIES if d in duties))
    notifier = notifier or Notifier(channels_for(policy), secret_values(policy))
    names = datasets or sorted(policy.datasets)
    backing_up, pruning = "backup" in duties, "prune" in duties
    with logctx.bind(run_id=result.run_id):
        if backing_up:
            _note_policy(policy, names, store_for, now)
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
                result.prunes.append(_prune_one(policy, name, now, store_for))
            _watch(policy, name, now, outcome, result, store_for, source_for, sink, notifier)
    log.info("tick %s at %s: %d run, %d failed, %d not due", result.run_id, now.isoformat(),
             len(result.results), len(result.failed), len(result.not_due))
    return result


def _note_policy(policy: Policy, names: list[str], store_for: Callable[[str], Store] | None,
                 now: datetime) -> None:
    """Audit a policy change, once per distinct store of the datasets ticked."""
    from . import audit

    seen: set[str] = set()
    for name in names:
        try:
            spec = policy.dataset(name)
            store = store_for(name) if store_for else open_store(policy.stores[spec.store])
            where = store.describe()
            if where in seen:
                continue
            seen.add(where)
            audit.note_policy(store, policy, at=now)
        except CloudkeepError as exc:
            log.warning("dataset %s: could not check the policy digest: %s", name, exc)


def _watch(policy: Policy, name: str, now: datetime, outcome: RunResult | None, result: TickResult,
           store_for: Callable[[str], Store] | None, source_for: Callable[[str], Source] | None,
           sink: MetricsSink | None, notifier: Notifier) -> None:
    """Everything a tick does for one dataset after its backup (never raises)."""
    from . import alerts
    from .metrics import backup_metrics, freshness_metrics, verification_metrics

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
            due = _due_verifications(policy, name, now, store, source_for) \
                if "verify" in result.duties else []
            for report in due:
                record_and_audit(store, report)
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
                                     "latest_snapshot": state.latest_snapshot})
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


def _age_text(seconds: float | None) -> str:
    from .policy import format_duration

    return "?" if seconds is None else format_duration(timedelta(seconds=int(seconds)))


def _due_verifications(policy: Policy, name: str, now: datetime, store: Store,
                       source_for: Callable[[str], Source] | None) -> list[Any]:
    """Run the drill and sample the tier schedules, if a slot of theirs has passed since the last
    one of that level (any trigger counts: a manual drill after the slot satisfies it)."""
    from .verify import latest_records, run_level

    spec = policy.dataset(name)
    tier = policy.tiers[spec.tier]
    if tier.verify is None:
        return []
    plans = [("drill", tier.verify.drill), ("sample", tier.verify.sample)]
    plans = [(level, expr) for level, expr in plans if expr]
    if not plans:
        return []
    ids = [i for i in snapshot_ids(store, name) if snapshot_time(i) <= now]
    if not ids:
        return []
    last = latest_records(store, name)
    reports = []
    for level, expr in plans:
        assert expr is not None
        slot = Schedule.parse(expr, policy.timezone).previous(now)
        previous = last.get(level)
        if previous is not None:
            if previous.get("slot") == slot.isoformat():
                continue  # this slot's verification has run
            try:
                if (previous.get("trigger") != "schedule"
                        and datetime.fromisoformat(str(previous.get("started_at"))) >= slot):
                    continue  # run by hand since the slot: that one counts
            except ValueError:
                pass
        manifest = load_manifest(store, name, ids[-1])
        log.info("dataset %s: scheduled %s of %s (slot %s)", name, level, manifest.snapshot_id,
                 slot.isoformat())
        try:
            report = run_level(policy, store, manifest, level,
                               sample_items=tier.verify.sample_items,
                               source=source_for(name) if source_for else None, trigger="schedule")
        except CloudkeepError as exc:
            from .verify import Problem, VerifyReport

            report = VerifyReport(name, manifest.snapshot_id, level, now, trigger="schedule",
                                  tier=spec.tier, problems=[Problem(None, level, str(exc))])
            report.finished_at = datetime.now(UTC)
        report.slot = slot
        reports.append(report)
    return reports


def audit_backup(policy: Policy, result: RunResult, store: Store | None = None,
                 at: datetime | None = None) -> None:
    """Append the audit record of one backup outcome (committed or failed; nothing else)."""
    from . import audit

    if result.status not in ("committed", "failed"):
        return
    try:
        store = store or open_store(policy.stores[policy.dataset(result.dataset).store])
    except CloudkeepError as exc:
        log.warning("dataset %s: no audit record: %s", result.dataset, exc)
        return
    keep = ("items", "parts", "bytes_stored", "duration_seconds", "error", "pruned", "trigger")
    audit.write(store, "backup", outcome=result.status, dataset=result.dataset,
                snapshot_id=result.snapshot_id, at=at,
                detail={k: v for k, v in result.as_dict().items() if k in keep})
    if result.pruned:
        audit.write(store, "prune", outcome="removed", dataset=result.dataset, at=at,
                    detail={"removed": result.pruned})


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
                from .jobs import pending_jobs

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



def _prune_one(policy: Policy, name: str, now: datetime,
               store_for: Callable[[str], Store] | None) -> dict[str, Any]:
    """The prune duty of one dataset (the pruner's own schedule): retention applied, audited.
    Never raises; a prune that could not run at all is reported ``failed``."""
    from . import audit
    from .prune import prune

    with logctx.bind(dataset=name):
        try:
            spec = policy.dataset(name)
            store = store_for(name) if store_for else open_store(policy.stores[spec.store])
            report = prune(policy, name, now, store=store)
        except CloudkeepError as exc:
            log.error("dataset %s: prune failed: %s", name, exc)
            return {"dataset": name, "failed": True, "error": str(exc)}
        except Exception as exc:
            log.exception("dataset %s: prune failed unexpectedly", name)
            return {"dataset": name, "failed": True, "error": f"internal error: {type(exc).__name__}: {exc}"}
        if report.removed:
            try:
                audit.write(store, "prune", outcome="removed", dataset=name, at=now,
                            detail={"removed": report.removed})
            except CloudkeepError as exc:
                log.warning("dataset %s: no audit record of the prune: %s", name, exc)
        return {"dataset": name, "failed": False, "removed": report.removed,
                "locked": [entry["snapshot_id"] for entry in report.locked],
                "orphans_removed": report.orphans, "errors": report.errors}


def _runs_native_jobs(spec: Any) -> bool:
    """Whether a source spec makes snapshots by native jobs (read from the policy alone, so a
    dataset that is not due needs no source client)."""
    return spec.type == "rds" or getattr(spec, "method", "scan") in ("export", "native")
