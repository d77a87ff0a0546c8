"""Prune: apply retention to a dataset's snapshots, then delete — manifest first, then parts.

Deleting the manifest first means a crash half-way leaves parts no manifest points at (invisible,
removed by a later prune), never a manifest pointing at missing parts. Parts left by crashed runs
(a snapshot folder without a manifest) are removed once older than a grace period and while no
run holds the dataset's lock. Objects still under an immutability policy are skipped and
reported, not failed on. Snapshots that are kept have their Object Lock retention extended when
they now outlive it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from . import chain, copies, holds, layout
from .catalog import snapshot_ids
from .errors import CloudkeepError, ObjectLockedError, ObjectNotFoundError
from .policy import Policy
from .registry import open_store
from .retention import Decision, Rules, SnapshotInfo, apply
from .stores import Store

log = logging.getLogger(__name__)

ORPHAN_GRACE = timedelta(hours=6)


@dataclass
class PruneReport:
    dataset: str
    dry_run: bool
    decision: Decision
    removed: list[str] = field(default_factory=list)
    locked: list[dict[str, str]] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    extended: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        rows = [{"snapshot_id": s, "action": "keep", "reasons": self.decision.reasons.get(s, [])}
                for s in self.decision.keep]
        rows += [{"snapshot_id": s, "action": "remove", "reasons": ["no rule keeps it"]}
                 for s in self.decision.remove]
        rows.sort(key=lambda r: str(r["snapshot_id"]), reverse=True)
        return {
            "dataset": self.dataset,
            "dry_run": self.dry_run,
            "snapshots": rows,
            "removed": self.removed,
            "locked": self.locked,
            "orphans_removed": self.orphans,
            "retention_extended": self.extended,
            "errors": self.errors,
        }


def snapshot_infos(store: Store, dataset: str) -> list[SnapshotInfo]:
    """What retention needs to know of each committed snapshot (raises on any read error)."""
    from .runtime import snapshot_time

    held = holds.all_for(store, dataset)
    out = []
    for sid in snapshot_ids(store, dataset):
        out.append(SnapshotInfo(
            id=sid,
            time=snapshot_time(sid),
            verified=_latest_verification_ok(store, dataset, sid),
            hold=str(held[sid].get("reason", "held")) if sid in held else None,
            copies=len(copies.verified_stores(store, dataset, sid)),
        ))
    return out


def _latest_verification_ok(store: Store, dataset: str, snapshot_id: str) -> bool:
    keys = sorted(i.key for i in store.list(layout.verifications_prefix(dataset, snapshot_id)))
    if not keys:
        return False
    try:
        return bool(json.loads(store.get(keys[-1])).get("ok"))
    except (ObjectNotFoundError, ValueError):
        return False


def prune(policy: Policy, dataset: str, now: datetime, *, dry_run: bool = False,
          store: Store | None = None) -> PruneReport:
    spec = policy.dataset(dataset)
    tier = policy.tiers[spec.tier]
    store = store or open_store(policy.stores[spec.store])
    rules = Rules.from_policy(tier.retention, min_copies=tier.min_copies)
    uncertain = None
    try:
        infos = snapshot_infos(store, dataset)
    except CloudkeepError as exc:
        infos, uncertain = [], str(exc)
        try:
            infos = [SnapshotInfo(s, datetime.now(UTC)) for s in snapshot_ids(store, dataset)]
        except CloudkeepError:
            pass
    decision = apply(infos, rules, now, policy.timezone, uncertain=uncertain)
    if not uncertain and decision.remove and hasattr(spec.source, "incremental"):
        try:
            decision = _keep_chains(store, dataset, decision)
        except CloudkeepError as exc:
            uncertain = f"cannot read the incremental chains: {exc}"
            decision = apply(infos, rules, now, policy.timezone, uncertain=uncertain)
    tampered: dict[str, str] = {}
    if not uncertain and policy.keys:
        try:
            tampered = _tampered(policy, store, dataset)
        except CloudkeepError as exc:
            uncertain = f"cannot authenticate the manifests: {exc}"
            decision = apply(infos, rules, now, policy.timezone, uncertain=uncertain)
    if tampered:
        # Never delete the evidence: a snapshot whose manifest was edited is kept and reported.
        reasons = {k: list(v) for k, v in decision.reasons.items()}
        for sid in tampered:
            reasons.setdefault(sid, []).append("manifest failed authentication")
        decision = Decision(sorted(set(decision.keep) | set(tampered), reverse=True),
                            [s for s in decision.remove if s not in tampered], reasons)
    report = PruneReport(dataset, dry_run, decision)
    for sid, problem in tampered.items():
        report.errors.append(f"{dataset}@{sid}: {problem} (left alone)")
    if uncertain:
        report.errors.append(f"nothing removed: {uncertain}")
    if dry_run:
        return report
    for sid in decision.remove:
        _remove_snapshot(policy, store, dataset, sid, report)
    _extend_retention(store, dataset, decision.keep, rules, report)
    _remove_orphans(store, dataset, now, report)
    log.info("prune %s: kept %d, removed %d, locked %d, orphans %d", dataset, len(decision.keep),
             len(report.removed), len(report.locked), len(report.orphans))
    return report


def _tampered(policy: Policy, store: Store, dataset: str) -> dict[str, str]:
    """Snapshots whose manifest fails authentication with the policy's keys, with the reason."""
    from .catalog import load_manifest
    from .errors import TamperedError
    from .keys import keyring_for

    keyring = keyring_for(policy)
    out: dict[str, str] = {}
    for sid in snapshot_ids(store, dataset):
        try:
            load_manifest(store, dataset, sid, keyring=keyring)
        except TamperedError as exc:
            out[sid] = str(exc)
    return out


def _keep_chains(store: Store, dataset: str, decision: Decision) -> Decision:
    """Also keep every snapshot a kept incremental snapshot needs (its chain back to the full
    one): removing it would make the kept one impossible to restore."""
    from .catalog import list_manifests

    manifests = {m.snapshot_id: m for m in list_manifests(store, dataset)}
    needed = chain.needed_by(manifests, decision.keep)
    if not needed:
        return decision
    reasons = {k: list(v) for k, v in decision.reasons.items()}
    for sid, by in needed.items():
        reasons.setdefault(sid, []).append(f"chain of {by}")
    keep = sorted(set(decision.keep) | set(needed), reverse=True)
    remove = [s for s in decision.remove if s not in needed]
    return Decision(keep, remove, reasons)


def _remove_snapshot(policy: Policy, store: Store, dataset: str, sid: str, report: PruneReport) -> None:
    targets = [(store, None)] + [
        (open_store(policy.stores[name]), name) for name in copies.verified_stores(store, dataset, sid)
        if name in policy.stores
    ]
    for target, name in targets:
        where = name or "primary"
        try:
            target.delete([layout.manifest_key(dataset, sid)])  # first: the snapshot disappears
        except ObjectLockedError as exc:
            report.locked.append({"snapshot_id": sid, "store": where, "detail": str(exc)})
            if name is None:
                return  # still locked in the primary store: leave it (and its copies) whole
            continue
        except CloudkeepError as exc:
            report.errors.append(f"{dataset}@{sid} ({where}): {exc}")
            if name is None:
                return
            continue
        leftovers = [i.key for i in target.list(layout.snapshot_prefix(dataset, sid))]
        if name is None:
            leftovers += [i.key for i in target.list(layout.verifications_prefix(dataset, sid))]
            leftovers += [i.key for i in target.list(layout.copies_prefix(dataset, sid))]
        try:
            target.delete(leftovers)
        except ObjectLockedError as exc:
            report.locked.append({"snapshot_id": sid, "store": where, "detail": str(exc)})
        except CloudkeepError as exc:
            report.errors.append(f"{dataset}@{sid} ({where}): {exc}")
    report.removed.append(sid)


def _extend_retention(store: Store, dataset: str, keep: list[str], rules: Rules,
                      report: PruneReport) -> None:
    extend = getattr(store, "extend_retention", None)
    if extend is None or not store.capabilities.object_lock:
        return
    until = datetime.now(UTC) + rules.horizon()
    for sid in keep:
        manifest_key = layout.manifest_key(dataset, sid)
        try:
            if not extend(manifest_key, until):
                continue
            for info in store.list(layout.snapshot_prefix(dataset, sid)):
                if info.key != manifest_key:
                    extend(info.key, until)
            report.extended.append(sid)
        except CloudkeepError as exc:
            report.errors.append(f"{dataset}@{sid}: cannot extend retention: {exc}")


def _remove_orphans(store: Store, dataset: str, now: datetime, report: PruneReport) -> None:
    """Parts of crashed runs: snapshot folders without a manifest, untouched for the grace period,
    while no run holds the dataset's lock."""
    if store.stat(layout.lock_key(dataset)) is not None:
        return  # a run is (or was just) writing: never race it
    groups: dict[str, list[Any]] = {}
    head = layout.snapshots_prefix(dataset)
    for info in store.list(head):
        sid = info.key[len(head):].split("/", 1)[0]
        groups.setdefault(sid, []).append(info)
    for sid, infos in groups.items():
        if any(i.key.endswith("/" + layout.MANIFEST_NAME) for i in infos):
            continue
        newest = max((i.modified for i in infos if i.modified), default=None)
        if newest is None or now - newest < ORPHAN_GRACE:
            continue
        try:
            store.delete([i.key for i in infos])
            report.orphans.append(sid)
        except ObjectLockedError as exc:
            report.locked.append({"snapshot_id": sid, "store": "primary", "detail": str(exc)})
        except CloudkeepError as exc:
            report.errors.append(f"orphan parts of {sid}: {exc}")
