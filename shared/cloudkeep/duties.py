"""The duties that follow or accompany a backup, each usable on its own: what follows a
committed snapshot (run index, copies, retention), its audit record, the prune duty of the
pruner, the scheduled drills and samples of the verifier, and the policy-change audit.

The tick (``runtime.py``) and the fan-out workers (``fanout.py``) call these; none of them
raises for one dataset's problem (each is logged, recorded on the result or reported).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Any

from . import audit, chain, clock, coldtiers, copies, logctx, rehydrate, runs, verify_slots
from .catalog import latest
from .drills import run_level
from .errors import CloudkeepError, KeyUnavailableError
from .manifest import Manifest
from .outcomes import RunResult
from .policy import Policy
from .prune import prune
from .registry import open_store
from .schedule import Schedule
from .sources import Source
from .stores import Store
from .trust import expect_for
from .verify import Problem, VerifyReport, latest_records, record_and_audit

log = logging.getLogger(__name__)


def newest_trusted(policy: Policy, name: str, store: Store, now: datetime, *,
                    by_capture: bool = False) -> Manifest | None:
    """The newest snapshot of ``name`` at ``now`` (by id, or by capture time) whose manifest
    passes every check of ``cloudkeep.trust`` (a forged or replayed one is skipped with a
    warning, never counted)."""
    try:
        return latest(store, name, expect=expect_for(policy, name), not_after=now,
                      by_capture=by_capture)
    except KeyUnavailableError as exc:
        # The backup identity may not unwrap committed data keys (docs/threat-model.md), so a
        # manifest of an earlier release (tagged with its data key only) cannot be checked here:
        # the schedule then goes by manifests bound to their key and store (a copied or replayed
        # manifest is still refused); verification, with the restore identity, checks the tag.
        log.debug("dataset %s: %s; choosing by bound manifests only", name, exc)
        return latest(store, name, not_after=now, by_capture=by_capture)


def note_policy(policy: Policy, names: list[str], store_for: Callable[[str], Store] | None,
                 now: datetime) -> None:
    """Audit a policy change, once per distinct store of the datasets ticked."""
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


def due_verifications(policy: Policy, name: str, now: datetime, store: Store,
                       source_for: Callable[[str], Source] | None = None, *,
                       run_id: str = "") -> list[Any]:
    """Run the drill and the sample the dataset's tier schedules whose current slot (the latest
    at or before ``now``) has not run yet: at most one drill per drill slot and one sample per
    sample slot, whatever the copies, retention or pruning of the verified snapshot.

    Each slot is claimed first with a create-only record that prune never deletes
    (:mod:`cloudkeep.verify_slots`); a tick that finds the claim taken skips the slot. A
    verification run by hand after the slot (or a scheduled one recorded by an earlier release)
    counts for it: the claim then notes it and nothing runs. The newest snapshot (by capture
    time) is verified; the reports are recorded under ``verifications/``, audited, and their
    outcomes added to the slot records. Returns the reports of what ran. Needs nothing of the
    tick: it can run on its own (e.g. in a restore-role function)."""
    spec = policy.dataset(name)
    tier = policy.tiers[spec.tier]
    if tier.verify is None:
        return []
    plans = [(level, expr) for level, expr in (("drill", tier.verify.drill),
                                                ("sample", tier.verify.sample)) if expr]
    if not plans:
        return []
    newest = newest_trusted(policy, name, store, now)
    if newest is None:
        return []
    run_id = run_id or secrets.token_hex(8)
    last: dict[str, dict[str, Any]] | None = None
    reports = []
    for level, expr in plans:
        assert expr is not None
        slot = Schedule.parse(expr, policy.timezone).previous(now)
        if verify_slots.claimed(store, name, level, slot):
            continue  # this slot ran (or runs now in another invocation)
        if last is None:
            last = latest_records(store, name)
        previous = last.get(level)
        satisfied: dict[str, Any] | None = None
        if previous is not None:
            try:
                if previous.get("slot") == slot.isoformat() or (
                        previous.get("trigger") != "schedule"
                        and datetime.fromisoformat(str(previous.get("started_at"))) >= slot):
                    satisfied = {k: previous.get(k) for k in ("snapshot_id", "trigger",
                                                              "started_at", "ok")}
            except ValueError:
                pass
        if satisfied is None and not _readable(policy, store, newest, level):
            continue  # archived: rehydration started (recorded); a later tick runs the slot
        try:
            mine = verify_slots.claim(store, name, level, slot, snapshot_id=newest.snapshot_id,
                                      run_id=run_id, satisfied_by=satisfied)
        except CloudkeepError as exc:
            log.error("dataset %s: cannot claim the %s slot %s (not run): %s", name, level,
                      slot.isoformat(), exc)
            continue
        if not mine or satisfied is not None:
            continue
        manifest = newest
        log.info("dataset %s: scheduled %s of %s (slot %s)", name, level, manifest.snapshot_id,
                 slot.isoformat())
        try:
            report = run_level(policy, store, manifest, level,
                               sample_items=tier.verify.sample_items,
                               source=source_for(name) if source_for else None, trigger="schedule")
        except CloudkeepError as exc:
            report = VerifyReport(name, manifest.snapshot_id, level, clock.now(), trigger="schedule",
                                  tier=spec.tier, problems=[Problem(None, level, str(exc))])
            report.finished_at = clock.now()
        report.slot = slot
        key = record_and_audit(store, report)
        verify_slots.record_outcome(store, report, slot, key)
        reports.append(report)
    return reports


def _readable(policy: Policy, store: Store, manifest: Manifest, level: str) -> bool:
    """Cold tiers (s16-cold): whether every part a scheduled ``level`` reads (the snapshot's
    chain) can be read now. If some are archived, their rehydration is started or found (and
    recorded) and False is returned: the slot stays unclaimed, so a later tick runs it once the
    parts are back — like a native job, never a failed verification. A manifest that fails its
    trust checks starts nothing (it is verified as it is, and fails)."""
    if not manifest.parts or not rehydrate.authentic(policy, store, manifest):
        return True
    try:
        rehydrate.ensure_readable(store, chain.load_chain(store, manifest), purpose="verify")
    except rehydrate.RehydrationPendingError as exc:
        log.info("dataset %s: scheduled %s waits for a rehydration: %s", manifest.dataset,
                 level, exc)
        return False
    except CloudkeepError as exc:  # the check itself failed: the verification will say why
        log.warning("dataset %s: cannot check for archived parts: %s", manifest.dataset, exc)
    return True


def audit_backup(policy: Policy, result: RunResult, store: Store | None = None,
                 at: datetime | None = None) -> None:
    """Append the audit record of one backup outcome (committed or failed; nothing else)."""
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
    """What follows a committed snapshot: its run-index entry (:mod:`cloudkeep.runs`), copies to
    the dataset's further stores (this one, and any earlier snapshot whose copy failed or was
    interrupted), and — on a scheduled tick — retention. Problems are logged and recorded on the
    result, never raised: the snapshot itself is committed (a failed copy is
    ``result.copy_failures``)."""
    if result.status not in ("committed", "exists") or result.manifest is None:
        return
    store = store or open_store(policy.stores[policy.dataset(result.dataset).store])
    if result.status == "committed":
        runs.record(store, result.manifest)
    try:
        result.copies = copies.catch_up(policy, store, result.dataset)
    except CloudkeepError as exc:
        log.error("dataset %s: copies failed: %s", result.dataset, exc)
        result.copies = [{"snapshot_id": result.snapshot_id, "store": name, "verified": False,
                          "error": str(exc)} for name in copies.targets(policy, result.dataset)]
    if result.status == "committed" and prune_at is not None:
        try:
            report = prune(policy, result.dataset, prune_at, store=store)
            result.pruned = report.removed
        except CloudkeepError as exc:
            log.error("dataset %s: prune failed: %s", result.dataset, exc)


def _transition(policy: Policy, name: str, store: Store, now: datetime) -> int:
    """Cold tiers: parts the pruner moved to colder classes (s16-cold; logged, never raised)."""
    try:
        moved = coldtiers.transition(policy, name, store, now)
    except CloudkeepError as exc:
        log.error("dataset %s: storage class transitions failed: %s", name, exc)
        return 0
    if moved["moved"]:
        try:
            audit.write(store, "transition", outcome="moved", dataset=name, at=now,
                        detail={"snapshots": moved["snapshots"]})
        except CloudkeepError as exc:
            log.warning("dataset %s: no audit record of the transitions: %s", name, exc)
    return int(moved["moved"])


def prune_one(policy: Policy, name: str, now: datetime,
               store_for: Callable[[str], Store] | None) -> dict[str, Any]:
    """The prune duty of one dataset (the pruner's own schedule): retention applied, audited.
    Never raises; a prune that could not run at all is reported ``failed``."""
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
        moved = _transition(policy, name, store, now)
        return {"dataset": name, "failed": False, "removed": report.removed, "transitioned": moved,
                "locked": [entry["snapshot_id"] for entry in report.locked],
                "orphans_removed": report.orphans, "errors": report.errors}
