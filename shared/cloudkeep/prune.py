"""Prune: apply retention to a dataset's snapshots, then delete — copies first, then the
manifest, then parts.

Prune is the only deleter (the backup path only creates), and it runs holding the dataset's
fenced lock (``lock.py``), so it never races a run's, a copy's or another prune's writes; a prune
that lost its lock deletes nothing more. Deleting the manifest first means a crash half-way
leaves parts no manifest points at (invisible, removed by the next prune), never a manifest
pointing at missing parts; a snapshot's copies (and their records) go before its manifest, so a
crash never leaves a copy nobody will remove. A committed snapshot's parts are deleted only when
retention removes that whole snapshot.

What the backup path leaves behind is collected too (``sweep.collect_leftovers``): parts in a committed
snapshot's folder that its manifest does not reference (an interrupted or fenced writer's) and its
checkpoints; unfinished snapshots that can no longer be resumed (abandoned, or started before
``checkpoint.RESUME_WITHIN`` and untouched for ``ORPHAN_GRACE``; never the folder of a native job
still running); superseded entries of the append-only state sequences (lock generations,
checkpoints, job records, alert state, policy digests: the newest few stay); partial copies in
every copy store; and the file store's temporaries of killed writes in those places. Objects still
under an immutability policy are skipped and reported, not failed on. Snapshots that are kept have their Object Lock retention extended when
they now outlive it. For the S3 source, blobs no committed snapshot references are deleted
last (``cloudkeep.blobs``: never one younger than its grace period, always under the dataset's
lock); a dry run shows what would go.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from . import blobs, catalog, chain, copies, holds, layout, runs, timeline
from .capabilities import DeletesNative, ExtendsRetention, SweepsNative, able
from .catalog import Listing, list_manifests, load_manifest, scan, snapshot_ids
from .errors import CloudkeepError, LockedError, ObjectLockedError, ObjectNotFoundError
from .jobs import pending_jobs
from .lock import Fence, FencedStore, Lease, unwrap
from .outcomes import PruneReport
from .policy import Policy
from .registry import open_source, open_store
from .retention import Decision, Rules, SnapshotInfo, apply
from .sources import native_method
from .stores import Store
from .sweep import ORPHAN_GRACE, collect_leftovers, fenced, same_store, temporaries
from .trust import expect_for

__all__ = ["ORPHAN_GRACE", "PruneReport", "prune", "snapshot_infos"]

log = logging.getLogger(__name__)




def snapshot_infos(store: Store, dataset: str, listing: Listing | None = None,
                   problems: list[str] | None = None) -> list[SnapshotInfo]:
    """What retention needs to know of each trusted snapshot (``listing``, else every snapshot
    with a manifest). A snapshot's time is its capture time (``timeline.py``). An unreadable
    hold record keeps its snapshot, an unreadable verification counts as not verified; both are
    added to ``problems``. Raises only when the store cannot be read."""
    held = holds.all_for(store, dataset, problems)
    ids = listing.ids if listing is not None else snapshot_ids(store, dataset)
    out = []
    captured = (
        [timeline.Captured(m.snapshot_id, timeline.remember(store, m)) for m in listing.manifests]
        if listing is not None else catalog.committed(store, dataset, ids=ids))
    for entry in sorted(captured, key=lambda c: (c.captured_at, c.snapshot_id)):
        sid = entry.snapshot_id
        out.append(SnapshotInfo(
            id=sid,
            time=entry.captured_at,
            verified=_latest_verification_ok(store, dataset, sid, problems),
            hold=holds.reasons(held.get(sid, [])),
            copies=len(copies.verified_stores(store, dataset, sid)),
        ))
    return out


def _latest_verification_ok(store: Store, dataset: str, snapshot_id: str,
                            problems: list[str] | None = None) -> bool:
    keys = sorted(i.key for i in store.list(layout.verifications_prefix(dataset, snapshot_id)))
    if not keys:
        return False
    try:
        record = json.loads(store.get(keys[-1]))
    except ObjectNotFoundError:
        return False
    except (ValueError, RecursionError):
        if problems is not None:
            problems.append(f"verification record {keys[-1]} is not JSON (counted as not verified)")
        return False
    return isinstance(record, dict) and record.get("ok") is True


def prune(policy: Policy, dataset: str, now: datetime, *, dry_run: bool = False,
          store: Store | None = None, source: Any = None,
          lease: timedelta | None = None) -> PruneReport:
    """Apply retention to ``dataset`` at ``now`` and collect what the backup path left behind.
    The real run holds the dataset's fenced lock for all of it (decision included); when a run
    holds the lock, nothing is removed and the report says so (an error: try again later)."""
    store = store or open_store(policy.stores[policy.dataset(dataset).store])
    if dry_run:
        return _prune(policy, dataset, now, dry_run=True, store=store, source=source)
    lock = Lease(store, dataset, f"prune-{secrets.token_hex(6)}", lease=lease,
                 what=f"dataset {dataset!r} (prune)")
    try:
        lock.acquire()
    except LockedError as exc:
        report = PruneReport(dataset, False, Decision([], [], {}))
        report.errors.append(f"nothing removed: {exc}")
        return report
    try:
        return _prune(policy, dataset, now, dry_run=False, store=FencedStore(store, lock),
                      source=source, fence=lock)
    finally:
        lock.release()


def _prune(policy: Policy, dataset: str, now: datetime, *, dry_run: bool, store: Store,
           source: Any = None, fence: Fence | None = None) -> PruneReport:
    spec = policy.dataset(dataset)
    tier = policy.tiers[spec.tier]
    rules = Rules.from_policy(tier.retention, min_copies=tier.min_copies)
    uncertain = None
    problems: list[str] = []
    listing = Listing(dataset)
    guessed = False
    try:
        # Only manifests bound to their key and store, authentic and meeting the policy count.
        listing = scan(store, dataset, expect=expect_for(policy, dataset))
        infos = snapshot_infos(store, dataset, listing, problems)
    except CloudkeepError as exc:
        infos, uncertain, guessed = [], str(exc), True  # ids only: their times are unknown
        try:
            infos = [SnapshotInfo(s, datetime.now(UTC)) for s in snapshot_ids(store, dataset)]
        except CloudkeepError:
            pass
    unkeyed = [r for r in listing.refused if r.kind == "key-unavailable"]
    if unkeyed and not uncertain:
        uncertain = f"cannot authenticate the manifests: {unkeyed[0].message}"
    # same capture time: the larger id (the later slot) counts as the newer one (apply keeps
    # the given order of ties, as restic's stable sort)
    infos = sorted(infos, key=lambda s: s.id, reverse=True)
    decision = apply(infos, rules, now, policy.timezone, uncertain=uncertain)
    if guessed:
        decision.times.clear()
    if not uncertain and decision.remove and spec.source.CHAINS:
        try:
            decision = _keep_chains(store, dataset, decision, listing)
        except CloudkeepError as exc:
            uncertain = f"cannot read the incremental chains: {exc}"
            decision = apply(infos, rules, now, policy.timezone, uncertain=uncertain)
    decision = _keep_evidence(decision, listing)
    report = PruneReport(dataset, dry_run, decision)
    report.problems.extend(problems)
    for refusal in listing.refused:
        report.refused.append(refusal.as_dict())
        if refusal.tampering:
            report.errors.append(f"{refusal.message} (left alone)")
        elif refusal.kind == "unreadable":
            report.problems.append(f"{refusal.message} (left alone)")
    if uncertain:
        report.errors.append(f"nothing removed: {uncertain}")
    if dry_run:
        if not uncertain:
            _collect_blobs(policy, store, dataset, now, report, keep_ids=decision.keep)
        return report
    natives = _NativeResources(policy, dataset, source)
    refused = {r.snapshot_id for r in listing.refused}
    pending: set[str] | None = None
    _index_runs(store, dataset, decision.remove)
    try:
        prune_id = holds.new_prune_id()
        for sid in list(decision.remove):
            _remove_unless_held(policy, store, dataset, sid, report, natives, prune_id, fence)
        _extend_retention(store, dataset, [s for s in report.decision.keep if s not in refused],
                          rules, report)
        pending = _pending_ids(store, dataset, report)
        if pending is not None:
            collect_leftovers(policy, store, dataset, now, report, pending, fence, skip=refused)
    except LockedError as exc:  # fenced: another run took the lock; this prune stops here
        report.errors.append(f"stopped: {exc}")
        return report
    if not uncertain and pending is not None:
        try:
            committed = set(snapshot_ids(store, dataset))
        except CloudkeepError as exc:
            report.errors.append(f"{dataset}: native sweep skipped: {exc}")
        else:
            natives.sweep(store, dataset, committed | pending, now - ORPHAN_GRACE, report)
    if not uncertain:
        _collect_blobs(policy, store, dataset, now, report, fence=fence)
        _compact_hold_ledgers(store, dataset, report)
    log.info("prune %s: kept %d, removed %d, locked %d, orphans %d", dataset, len(decision.keep),
             len(report.removed), len(report.locked), len(report.orphans))
    return report


def _collect_blobs(policy: Policy, store: Store, dataset: str, now: datetime, report: PruneReport,
                   keep_ids: list[str] | None = None, fence: Fence | None = None) -> None:
    """S3 source: blobs no committed snapshot references (older than the grace period), in the
    dataset's store and in the stores it is copied to."""
    targets: list[tuple[str | None, Store | None]] = [(None, store)]
    targets += [(name, None) for name in copies.targets(policy, dataset) if name in policy.stores]
    for name, target in targets:
        where = name or "primary"
        try:
            target = target or open_store(policy.stores[str(name)])
            gc = blobs.collect(target, dataset, now, keep_ids=keep_ids, dry_run=report.dry_run,
                               fence=fence)
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


def _keep_chains(store: Store, dataset: str, decision: Decision,
                 listing: Listing | None = None) -> Decision:
    """Also keep every snapshot a kept incremental snapshot needs (its chain back to the full
    one): removing it would make the kept one impossible to restore."""
    trusted = listing.manifests if listing is not None else list_manifests(store, dataset)
    manifests = {m.snapshot_id: m for m in trusted}
    needed = chain.needed_by(manifests, decision.keep)
    if not needed:
        return decision
    reasons = {k: list(v) for k, v in decision.reasons.items()}
    for sid, by in needed.items():
        reasons.setdefault(sid, []).append(f"chain of {by}")
    keep = sorted(set(decision.keep) | set(needed), reverse=True)
    remove = [s for s in decision.remove if s not in needed]
    return Decision(keep, remove, reasons, decision.times)


def _keep_evidence(decision: Decision, listing: Listing) -> Decision:
    """Manifests that are not trusted (forged, replayed, tampered, downgraded, unreadable) are
    evidence: kept, never counted, and so is every snapshot whose parts one of them points at."""
    if not listing.refused:
        return decision
    reasons = {k: list(v) for k, v in decision.reasons.items()}
    keep = set(decision.keep)
    for refusal in listing.refused:
        reasons.setdefault(refusal.snapshot_id, []).append(
            f"manifest refused ({refusal.kind}): kept as evidence")
        keep.add(refusal.snapshot_id)
        claimed = refusal.manifest
        if (claimed is not None and claimed.dataset == listing.dataset
                and claimed.snapshot_id != refusal.snapshot_id
                and layout.SNAPSHOT_ID_RE.match(claimed.snapshot_id)):
            reasons.setdefault(claimed.snapshot_id, []).append(
                f"parts referenced by refused manifest {refusal.snapshot_id}")
            if claimed.snapshot_id in decision.remove:
                keep.add(claimed.snapshot_id)
    return Decision(sorted(keep, reverse=True), [s for s in decision.remove if s not in keep],
                    {k: v for k, v in reasons.items() if k in keep or k in decision.remove},
                    decision.times)


def _remove_unless_held(policy: Policy, store: Store, dataset: str, sid: str, report: PruneReport,
                        natives: _NativeResources, prune_id: str,
                        fence: Fence | None = None) -> None:
    """Remove one snapshot retention gave up — unless a hold arrived meanwhile: mark it as being
    deleted (create-only), re-read its holds, and delete only if none is active and only within
    the deletion lease (``cloudkeep.holds``). Its hold ledger goes with it."""
    started = time.monotonic()
    try:
        live = holds.begin_delete(store, dataset, sid, prune_id)
    except CloudkeepError as exc:
        report.errors.append(f"{dataset}@{sid}: cannot mark it for deletion (kept): {exc}")
        _keep_instead(report, sid, "could not be marked for deletion")
        return
    if live:
        log.info("prune %s: %s@%s was held while pruning; kept", dataset, dataset, sid)
        _keep_instead(report, sid, f"legal hold: {holds.reasons(live)}")
        return

    def guard() -> str | None:
        if time.monotonic() - started > holds.DELETE_LEASE.total_seconds():
            return (f"more than {int(holds.DELETE_LEASE.total_seconds())}s passed since it was "
                    "marked for deletion (a hold may have been placed since); kept")
        return None

    _remove_snapshot(policy, store, dataset, sid, report, natives, fence, guard=guard)
    if sid not in report.removed:  # locked, or a step failed (reported): holds may come again
        holds.cancel_delete(store, dataset, sid, prune_id)
        return
    _delete_ledger(store, dataset, sid, report, "its released holds were not deleted")


def _compact_hold_ledgers(store: Store, dataset: str, report: PruneReport) -> None:
    """Hold ledgers of snapshots that no longer exist (a hold withdrawn because prune got there
    first) are deleted once nothing in them is active; an active hold on a snapshot that does not
    exist is reported and kept. Of a kept snapshot, only cancelled deletion marks older than
    their TTL go (a snapshot still locked in its store is marked and cancelled by every prune)."""
    try:
        committed = set(snapshot_ids(store, dataset))
        ledgers = holds.ledgers(store, dataset)
    except CloudkeepError as exc:
        report.problems.append(f"{dataset}: hold ledgers not compacted: {exc}")
        return
    now = datetime.now(UTC)
    for sid, ledger in ledgers.items():
        if sid in committed:
            spent = [k for m in ledger.markers.values()
                     if m.cancelled and m.created is not None and now - m.created > holds.MARKER_TTL
                     for k in (layout.deleting_marker_key(dataset, sid, m.prune_id),
                               layout.deleting_cancel_key(dataset, sid, m.prune_id))]
            try:
                if spent:
                    store.delete(spent)
            except CloudkeepError as exc:
                report.problems.append(f"{dataset}@{sid}: old deletion marks not deleted: {exc}")
            continue
        if ledger.active:
            report.problems.append(f"{dataset}@{sid}: held ({', '.join(h.hold_id for h in ledger.active)})"
                                   " but the snapshot does not exist")
            continue
        _delete_ledger(store, dataset, sid, report, "released holds not deleted")


def _delete_ledger(store: Store, dataset: str, sid: str, report: PruneReport, failed: str) -> None:
    """Delete the hold ledger of ``sid``; a failure is a reported problem (``failed``: ...)."""
    try:
        store.delete(holds.ledger_keys(store, dataset, sid))
    except CloudkeepError as exc:
        report.problems.append(f"{dataset}@{sid}: {failed}: {exc}")


def _keep_instead(report: PruneReport, sid: str, reason: str) -> None:
    decision = report.decision
    if sid in decision.remove:
        decision.remove.remove(sid)
        decision.keep = sorted([*decision.keep, sid], reverse=True)
    decision.reasons.setdefault(sid, []).append(reason)


class _NativeResources:
    """Backups and snapshots a native job made (DynamoDB backups, RDS snapshots): deleted with
    their snapshot, and swept when tagged for a snapshot that neither exists nor is pending."""

    def __init__(self, policy: Policy, dataset: str, source: Any = None) -> None:
        self.spec = policy.dataset(dataset).source
        self._source: Any = source

    @property
    def source(self) -> Any:
        if self._source is None:
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
        native = able(self.source, DeletesNative)
        if native is None or manifest.source.get("type") != self.source.kind:
            return True
        try:
            report.native_deleted.extend(native.delete_native(dataset, sid, manifest.native))
        except CloudkeepError as exc:
            report.errors.append(f"{dataset}@{sid}: cannot delete its {manifest.method} resources: {exc}")
            return False
        return True

    def sweep(self, store: Store, dataset: str, keep: set[str], older_than: datetime,
              report: PruneReport) -> None:
        try:
            native = able(self.source, SweepsNative)
            if not native_method(self.source) or native is None:
                return
            report.native_deleted.extend(native.sweep_native(dataset, keep, older_than))
        except CloudkeepError as exc:
            report.errors.append(f"{dataset}: cannot sweep leftover native backups: {exc}")


def _pending_ids(store: Store, dataset: str, report: PruneReport) -> set[str] | None:
    """Snapshot ids of native jobs still running (None if the job records cannot be read)."""
    try:
        return {str(r["snapshot_id"]) for r in pending_jobs(store, dataset)}
    except CloudkeepError as exc:
        report.errors.append(f"{dataset}: cannot read its native job records: {exc}")
        return None


def _remove_snapshot(policy: Policy, store: Store, dataset: str, sid: str, report: PruneReport,
                     natives: _NativeResources | None = None, fence: Fence | None = None,
                     guard: Callable[[], str | None] | None = None) -> None:
    # ``guard`` (a hold's deletion lease) is asked before each destructive step; a reason stops.
    if guard is not None and (why := guard()) is not None:
        report.errors.append(f"{dataset}@{sid}: {why}")
        return
    # A native snapshot's backups go first: if they cannot be deleted, the manifest stays, so
    # the next prune tries again (a manifest never points at a backup deleted behind its back
    # by anyone but retention).
    if natives is not None and not natives.delete(store, dataset, sid, report):
        return
    if guard is not None and (why := guard()) is not None:
        report.errors.append(f"{dataset}@{sid}: {why}")
        return
    # Then its copies, each record before the copy (no record ever claims a missing copy), in
    # every store the dataset copies to — recorded or not (a crash may have dropped the record
    # first): while the primary manifest stands, the next prune finds and finishes this.
    for name in copies.targets(policy, dataset):
        if name not in policy.stores:
            continue
        try:
            store.delete([layout.copy_record_key(dataset, sid, name)])
            target = fenced(open_store(policy.stores[name]), fence)
            if same_store(target, store):
                continue
            target.delete([layout.manifest_key(dataset, sid)])
            head = layout.snapshot_prefix(dataset, sid)
            target.delete([i.key for i in target.list(head)] + temporaries(target, head))
        except ObjectLockedError as exc:
            report.locked.append({"snapshot_id": sid, "store": name, "detail": str(exc)})
        except LockedError:
            raise
        except CloudkeepError as exc:
            report.errors.append(f"{dataset}@{sid} ({name}): {exc}")
            return  # the primary stays whole until its copies are gone
    # The plan first (what is left can no longer look resumable), then the manifest: the
    # snapshot disappears; then everything else of it.
    try:
        store.delete([layout.run_state_key(dataset, sid)])
        store.delete([layout.manifest_key(dataset, sid)])
    except ObjectLockedError as exc:
        report.locked.append({"snapshot_id": sid, "store": "primary", "detail": str(exc)})
        return  # still locked in the primary store: leave it whole
    except LockedError:
        raise
    except CloudkeepError as exc:
        report.errors.append(f"{dataset}@{sid} (primary): {exc}")
        return
    leftovers = [i.key for i in store.list(layout.snapshot_prefix(dataset, sid))]
    leftovers += temporaries(store, layout.snapshot_prefix(dataset, sid))
    leftovers += [i.key for i in store.list(layout.verifications_prefix(dataset, sid))]
    leftovers += [i.key for i in store.list(layout.copies_prefix(dataset, sid))]
    leftovers += [i.key for i in store.list(layout.job_records_prefix(dataset, sid))]
    if store.stat(layout.job_key(dataset, sid)) is not None:
        leftovers.append(layout.job_key(dataset, sid))
    try:
        store.delete(leftovers)
    except ObjectLockedError as exc:
        report.locked.append({"snapshot_id": sid, "store": "primary", "detail": str(exc)})
    except LockedError:
        raise
    except CloudkeepError as exc:
        report.errors.append(f"{dataset}@{sid} (primary): {exc}")
    report.removed.append(sid)



def _extend_retention(store: Store, dataset: str, keep: list[str], rules: Rules,
                      report: PruneReport) -> None:
    extender = able(unwrap(store), ExtendsRetention)  # a fenced store: the store it wraps
    if extender is None or not store.capabilities.object_lock:
        return
    extend = extender.extend_retention
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
    manifest = load_manifest(store, dataset, sid)
    if blobs.uses_blobs(manifest):
        for sha in blobs.distinct_blobs(store, manifest):
            extend(layout.blob_key(dataset, sha), until)




def _index_runs(store: Store, dataset: str, snapshot_ids_: list[str]) -> None:
    """Make sure every snapshot about to be removed is in the run index (``runs.py``: a snapshot
    of an earlier release, or of a run that stopped right after its commit), so the run history
    outlives it. Best effort: the index is create-only and a miss only costs report accuracy."""
    if not snapshot_ids_:
        return
    try:
        for captured in catalog.committed(store, dataset, ids=list(snapshot_ids_)):
            key = layout.run_index_key(dataset, captured.captured_at, captured.snapshot_id)
            if store.stat(key) is None:
                runs.record(store, load_manifest(store, dataset, captured.snapshot_id))
    except CloudkeepError as exc:
        log.warning("dataset %s: could not complete the run index before pruning: %s", dataset, exc)
