"""Prune: apply retention to a dataset's snapshots, then delete — manifest first, then parts.

Deleting the manifest first means a crash half-way leaves parts no manifest points at (invisible,
removed by a later prune), never a manifest pointing at missing parts. Parts left by crashed runs
(a snapshot folder without a manifest) are removed once older than a grace period and while no
run holds the dataset's lock. Objects still under an immutability policy are skipped and
reported, not failed on. Snapshots that are kept have their Object Lock retention extended when
they now outlive it. For the S3 source, blobs no committed snapshot references are deleted
last (``cloudkeep.blobs``: never one younger than its grace period, always under the dataset's
lock); a dry run shows what would go.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from . import chain, copies, holds, layout
from .catalog import load_manifest, snapshot_ids
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
    blobs: dict[str, Any] | None = None  # S3 source: garbage collection of unreferenced blobs
    copy_blobs: dict[str, dict[str, Any]] = field(default_factory=dict)  # ... in copy stores
    native_deleted: list[str] = field(default_factory=list)  # backup / snapshot ARNs

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
            "native_deleted": self.native_deleted,
            "errors": self.errors,
        } | ({"blobs": self.blobs} if self.blobs is not None else {}) | (
            {"copy_blobs": self.copy_blobs} if self.copy_blobs else {})


def snapshot_infos(store: Store, dataset: str) -> list[SnapshotInfo]:
    """What retention needs to know of each committed snapshot (raises on any read error); a
    snapshot's time is its capture time (``timeline.py``)."""
    from . import timeline

    held = holds.all_for(store, dataset)
    out = []
    for captured in timeline.committed(store, dataset):
        sid = captured.snapshot_id
        out.append(SnapshotInfo(
            id=sid,
            time=captured.captured_at,
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
          store: Store | None = None, source: Any = None) -> PruneReport:
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
        if not uncertain:
            _collect_blobs(policy, store, dataset, now, report, keep_ids=decision.keep)
        return report
    natives = _NativeResources(policy, dataset, source)
    _index_runs(store, dataset, decision.remove)
    for sid in decision.remove:
        _remove_snapshot(policy, store, dataset, sid, report, natives)
    _extend_retention(store, dataset, decision.keep, rules, report)
    pending = _pending_ids(store, dataset, report)
    _remove_orphans(store, dataset, now, report, pending)
    if not uncertain and pending is not None:
        try:
            committed = set(snapshot_ids(store, dataset))
        except CloudkeepError as exc:
            report.errors.append(f"{dataset}: native sweep skipped: {exc}")
        else:
            natives.sweep(store, dataset, committed | pending, now - ORPHAN_GRACE, report)
    if not uncertain:
        _collect_blobs(policy, store, dataset, now, report)
    log.info("prune %s: kept %d, removed %d, locked %d, orphans %d", dataset, len(decision.keep),
             len(report.removed), len(report.locked), len(report.orphans))
    return report


def _collect_blobs(policy: Policy, store: Store, dataset: str, now: datetime, report: PruneReport,
                   keep_ids: list[str] | None = None) -> None:
    """S3 source: blobs no committed snapshot references (older than the grace period), in the
    dataset's store and in the stores it is copied to."""
    from . import blobs

    targets: list[tuple[str | None, Store | None]] = [(None, store)]
    targets += [(name, None) for name in copies.targets(policy, dataset) if name in policy.stores]
    for name, target in targets:
        where = name or "primary"
        try:
            target = target or open_store(policy.stores[str(name)])
            gc = blobs.collect(target, dataset, now, keep_ids=keep_ids, dry_run=report.dry_run)
        except ObjectLockedError as exc:
            report.locked.append({"snapshot_id": "(blobs)", "store": where, "detail": str(exc)})
            continue
        except CloudkeepError as exc:
            report.errors.append(f"unreferenced blobs of {dataset} ({where}): {exc}")
            continue
        if not (gc.referenced or gc.unreferenced or gc.skipped):
            continue
        if name is None:
            report.blobs = gc.as_dict()
        else:
            report.copy_blobs[name] = gc.as_dict()


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


class _NativeResources:
    """Backups and snapshots a native job made (DynamoDB backups, RDS snapshots): deleted with
    their snapshot, and swept when tagged for a snapshot that neither exists nor is pending."""

    def __init__(self, policy: Policy, dataset: str, source: Any = None) -> None:
        self.spec = policy.dataset(dataset).source
        self._source: Any = source

    @property
    def source(self) -> Any:
        if self._source is None:
            from .registry import open_source

            self._source = open_source(self.spec)
        return self._source

    def delete(self, store: Store, dataset: str, sid: str, report: PruneReport) -> bool:
        """Delete what the snapshot's manifest records; False (and an error) if that failed."""
        try:
            manifest = load_manifest(store, dataset, sid)
        except CloudkeepError:
            return True  # no readable manifest: nothing recorded (the sweep finds tagged leftovers)
        if not manifest.native:
            return True
        delete = getattr(self.source, "delete_native", None)
        if delete is None or manifest.source.get("type") != self.source.kind:
            return True
        try:
            report.native_deleted.extend(delete(dataset, sid, manifest.native))
        except CloudkeepError as exc:
            report.errors.append(f"{dataset}@{sid}: cannot delete its {manifest.method} resources: {exc}")
            return False
        return True

    def sweep(self, store: Store, dataset: str, keep: set[str], older_than: datetime,
              report: PruneReport) -> None:
        from .sources import native_method

        try:
            if not native_method(self.source) or not hasattr(self.source, "sweep_native"):
                return
            report.native_deleted.extend(self.source.sweep_native(dataset, keep, older_than))
        except CloudkeepError as exc:
            report.errors.append(f"{dataset}: cannot sweep leftover native backups: {exc}")


def _pending_ids(store: Store, dataset: str, report: PruneReport) -> set[str] | None:
    """Snapshot ids of native jobs still running (None if the job records cannot be read)."""
    from .jobs import pending_jobs

    try:
        return {str(r["snapshot_id"]) for r in pending_jobs(store, dataset)}
    except CloudkeepError as exc:
        report.errors.append(f"{dataset}: cannot read its native job records: {exc}")
        return None


def _remove_snapshot(policy: Policy, store: Store, dataset: str, sid: str, report: PruneReport,
                     natives: _NativeResources | None = None) -> None:
    # A native snapshot's backups go first: if they cannot be deleted, the manifest stays, so
    # the next prune tries again (a manifest never points at a backup deleted behind its back
    # by anyone but retention).
    if natives is not None and not natives.delete(store, dataset, sid, report):
        return
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
            if target.stat(layout.job_key(dataset, sid)) is not None:
                leftovers.append(layout.job_key(dataset, sid))
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
            _extend_blobs(store, dataset, sid, extend, until)
            report.extended.append(sid)
        except CloudkeepError as exc:
            report.errors.append(f"{dataset}@{sid}: cannot extend retention: {exc}")


def _extend_blobs(store: Store, dataset: str, sid: str, extend: Any, until: datetime) -> None:
    """S3 source: the blobs a kept snapshot references stay locked as long as the snapshot."""
    from . import blobs
    from .catalog import load_manifest

    manifest = load_manifest(store, dataset, sid)
    if blobs.uses_blobs(manifest):
        for sha in blobs.distinct_blobs(store, manifest):
            extend(layout.blob_key(dataset, sha), until)


def _remove_orphans(store: Store, dataset: str, now: datetime, report: PruneReport,
                    pending: set[str] | None = None) -> None:
    """Parts of crashed runs: snapshot folders without a manifest, untouched for the grace period,
    while no run holds the dataset's lock — never the folder of a native job still running (an
    export may take hours)."""
    if store.stat(layout.lock_key(dataset)) is not None:
        return  # a run is (or was just) writing: never race it
    if pending is None:
        return  # the job records could not be read: any folder may belong to a running export
    groups: dict[str, list[Any]] = {}
    head = layout.snapshots_prefix(dataset)
    for info in store.list(head):
        sid = info.key[len(head):].split("/", 1)[0]
        groups.setdefault(sid, []).append(info)
    for sid, infos in groups.items():
        if sid in pending or any(i.key.endswith("/" + layout.MANIFEST_NAME) for i in infos):
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


def _index_runs(store: Store, dataset: str, snapshot_ids_: list[str]) -> None:
    """Make sure every snapshot about to be removed is in the run index (``runs.py``: a snapshot
    of an earlier release, or of a run that stopped right after its commit), so the run history
    outlives it. Best effort: the index is create-only and a miss only costs report accuracy."""
    from . import runs, timeline

    if not snapshot_ids_:
        return
    try:
        for captured in timeline.committed(store, dataset, ids=list(snapshot_ids_)):
            key = layout.run_index_key(dataset, captured.captured_at, captured.snapshot_id)
            if store.stat(key) is None:
                runs.record(store, load_manifest(store, dataset, captured.snapshot_id))
    except CloudkeepError as exc:
        log.warning("dataset %s: could not complete the run index before pruning: %s", dataset, exc)
