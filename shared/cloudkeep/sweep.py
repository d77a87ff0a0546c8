"""What prune collects besides the snapshots retention gives up: whatever the backup path (which
never deletes) leaves behind.

Parts in a committed snapshot's folder that its manifest does not reference (an interrupted or
fenced writer's) and its checkpoints; unfinished snapshots that can no longer be resumed
(abandoned, or started before ``checkpoint.RESUME_WITHIN`` and untouched for ``ORPHAN_GRACE``;
never the folder of a native job still running); superseded entries of the append-only state
sequences (lock generations, checkpoints, job records, alert state, policy digests: the newest
few stay); partial copies in every copy store; and the file store's temporaries of killed
writes in those places. Everything here runs under the dataset's fenced lock, held by prune; a
refusal (immutability, an error) is reported in the :class:`~cloudkeep.outcomes.PruneReport`,
never raised — except a lost lock, which stops the prune.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from . import checkpoint, copies, layout, sequences
from .catalog import load_manifest
from .errors import CloudkeepError, LockedError, ObjectLockedError
from .keys import keyring_for
from .lock import Fence, FencedStore, Lease, unwrap
from .outcomes import PruneReport
from .policy import Policy
from .registry import open_store
from .stores import HasTemporaries, ObjectInfo, Store

log = logging.getLogger(__name__)

ORPHAN_GRACE = timedelta(hours=6)


def fenced(store: Store, fence: Fence | None) -> Store:
    return FencedStore(store, fence) if fence is not None else store


def same_store(a: Store, b: Store) -> bool:
    """Two handles on one location (a copy target that is the primary itself is never swept)."""
    return a.describe() == b.describe()


def collect_leftovers(policy: Policy, store: Store, dataset: str, now: datetime,
                       report: PruneReport, pending: set[str], fence: Fence | None,
                       skip: set[str] | None = None) -> None:
    """Collect what the backup path (which never deletes) leaves behind, in the dataset's store
    and in every store it copies to. Runs under the dataset's lock (``fence``); ``skip``: snapshots
    to leave alone (e.g. a manifest that failed authentication)."""
    skip = skip or set()
    committed = _collect_snapshot_folders(policy, store, dataset, now, report, pending, skip)
    _collect_records(store, dataset, now, report, pending, committed)
    _collect_sequences(store, dataset, report, fence)
    for name in copies.targets(policy, dataset):
        if name not in policy.stores:
            continue
        try:
            target = fenced(open_store(policy.stores[name]), fence)
            if same_store(target, store):
                continue
            _collect_copy_store(policy, target, dataset, report, name, skip)
        except LockedError:
            raise
        except ObjectLockedError as exc:
            report.locked.append({"snapshot_id": "(leftovers)", "store": name, "detail": str(exc)})
        except CloudkeepError as exc:
            report.errors.append(f"leftovers of {dataset} in {name}: {exc}")


def _count(report: PruneReport, kind: str, n: int) -> None:
    if n:
        report.collected[kind] = report.collected.get(kind, 0) + n


def _folders(store: Store, dataset: str) -> dict[str, list[ObjectInfo]]:
    """The dataset's snapshot folders: snapshot id → every object in it (a folder that holds
    nothing but the temporaries of killed writes is listed, empty)."""
    groups: dict[str, list[ObjectInfo]] = {}
    head = layout.snapshots_prefix(dataset)
    for info in store.list(head):
        sid = info.key[len(head):].split("/", 1)[0]
        groups.setdefault(sid, []).append(info)
    for key in temporaries(store, head):
        groups.setdefault(key[len(head):].split("/", 1)[0], [])
    return groups


def temporaries(store: Store, prefix: str) -> list[str]:
    """The file store's temporaries of killed writes under ``prefix`` (none for other stores)."""
    inner = unwrap(store)
    if not isinstance(inner, HasTemporaries):
        return []
    return [i.key for i in inner.temporaries(prefix)]


def _unreferenced(store: Store, dataset: str, sid: str, infos: list[ObjectInfo],
                  keyring: Any) -> list[str] | None:
    """Keys in a committed snapshot's folder that nothing needs: parts its manifest does not
    reference (written by an interrupted or fenced writer), its checkpoints, the temporaries of
    killed writes. None when its manifest cannot be read and trusted (then nothing is touched)."""
    try:
        manifest = load_manifest(store, dataset, sid, keyring=keyring)
    except CloudkeepError as exc:
        log.warning("dataset %s: leaving %s alone: %s", dataset, sid, exc)
        return None
    if manifest.dataset != dataset or manifest.snapshot_id != sid:
        return None
    head = layout.snapshot_prefix(dataset, sid)
    used = {p.name for p in manifest.parts}
    indexed = {layout.key_index_name(p.name) for p in manifest.parts if p.key_index is not None}
    out = []
    for info in infos:
        name = info.key[len(head):]
        if name.startswith(layout.CHECKPOINTS_DIR + "/") or (
                layout.parse_part_name(name) is not None and name not in used) or (
                layout.parse_key_index_name(name) is not None and name not in indexed):
            out.append(info.key)
    return out + temporaries(store, head)


def _collect_snapshot_folders(policy: Policy, store: Store, dataset: str, now: datetime,
                              report: PruneReport, pending: set[str], skip: set[str]) -> set[str]:
    """Unreferenced parts and checkpoints of committed snapshots; unfinished snapshots no run
    will resume. Returns the committed snapshot ids."""
    keyring = keyring_for(policy) if policy.keys else None
    committed: set[str] = set()
    for sid, infos in _folders(store, dataset).items():
        keys = {i.key for i in infos}
        if layout.manifest_key(dataset, sid) in keys:
            committed.add(sid)
            if sid in skip:
                continue
            doomed = _unreferenced(store, dataset, sid, infos, keyring)
            if doomed:
                delete(store, doomed, report, sid)
                _count(report, "committed_leftovers", len(doomed))
            continue
        if sid in pending or not _abandoned(store, dataset, sid, infos, now):
            _collect_superseded_checkpoints(store, dataset, sid, infos, report)
            continue
        # The plan first: whatever a crash leaves of the folder can no longer look resumable.
        plan = layout.run_state_key(dataset, sid)
        rest = [i.key for i in infos if i.key != plan]
        rest += temporaries(store, layout.snapshot_prefix(dataset, sid))
        if plan in keys:
            delete(store, [plan], report, sid)
        if delete(store, rest, report, sid):
            report.orphans.append(sid)
    return committed


def _abandoned(store: Store, dataset: str, sid: str, infos: list[ObjectInfo],
               now: datetime) -> bool:
    """An unfinished snapshot no run will resume or commit: marked abandoned; or without a plan
    (runs record it before any part; what is left is a crashed prune's or a previous release's);
    or started before ``RESUME_WITHIN``, untouched for ``ORPHAN_GRACE`` and with no live lease."""
    keys = {i.key for i in infos}
    if layout.abandoned_key(dataset, sid) in keys:
        return True
    if layout.run_state_key(dataset, sid) not in keys:
        return True
    try:
        state = checkpoint.load_run_state(store, dataset, sid)
    except CloudkeepError:
        state = None
    if state is not None and now - state.started <= checkpoint.RESUME_WITHIN:
        return False
    newest = max((i.modified for i in infos if i.modified), default=None)
    if newest is None or now - newest < ORPHAN_GRACE:
        return False
    head = layout.checkpoints_prefix(dataset, sid)
    leases = {i.key[len(head):].split("/", 1)[0] for i in infos
              if i.key.startswith(head + "lease-") and "/" in i.key[len(head):]}
    for name in leases:
        if Lease(store, dataset, "prune", prefix=f"{head}{name}/").holder() is not None:
            return False
    return True


def _collect_superseded_checkpoints(store: Store, dataset: str, sid: str,
                                    infos: list[ObjectInfo], report: PruneReport) -> None:
    """In an unfinished snapshot still being written: all but the newest few entries of each
    segment's checkpoints and lease generations."""
    head = layout.checkpoints_prefix(dataset, sid)
    folders = {i.key[len(head):].split("/", 1)[0] for i in infos
               if i.key.startswith(head) and "/" in i.key[len(head):]}
    doomed: list[str] = []
    for name in sorted(folders):
        if name.startswith(("segment-", "lease-")):
            doomed += sequences.superseded(store, f"{head}{name}/")
    if doomed:
        delete(store, doomed, report, sid)
        _count(report, "superseded_entries", len(doomed))


def _collect_records(store: Store, dataset: str, now: datetime, report: PruneReport,
                     pending: set[str], committed: set[str]) -> None:
    """Verification and copy records of snapshots that do not exist (their removal was
    interrupted), and job records of snapshots neither committed nor pending, untouched for
    ``ORPHAN_GRACE`` (a failed job's record is kept that long for its next attempt)."""
    doomed: list[str] = []
    for prefix in (layout.all_verifications_prefix(dataset), layout.all_copies_prefix(dataset)):
        for info in store.list(prefix):
            sid = info.key[len(prefix):].split("/", 1)[0]
            if sid not in committed and layout.SNAPSHOT_ID_RE.match(sid):
                doomed.append(info.key)
    jobs: dict[str, list[ObjectInfo]] = {}
    for info in store.list(layout.jobs_prefix(dataset)):
        job_sid = layout.parse_job_key(dataset, info.key)
        if job_sid is not None:
            jobs.setdefault(job_sid, []).append(info)
    for sid, infos in jobs.items():
        if sid in committed or sid in pending:
            continue
        newest = max((i.modified for i in infos if i.modified), default=None)
        if newest is not None and now - newest >= ORPHAN_GRACE:
            doomed += [i.key for i in infos]
    doomed += temporaries(store, layout.all_copies_prefix(dataset))
    if doomed:
        delete(store, doomed, report, "(records)")
        _count(report, "orphan_records", len(doomed))


def _collect_sequences(store: Store, dataset: str, report: PruneReport,
                       fence: Fence | None) -> None:
    """Superseded entries of the append-only state sequences (the newest few stay), and the
    previous release's single objects they replace."""
    doomed: list[str] = []
    # Lock generations: older than the newest few. This prune holds the newest one, so the
    # sequence never goes backwards (a fenced holder that re-creates a removed generation still
    # finds a newer one and stays fenced).
    doomed += sequences.superseded(store, layout.lock_prefix(dataset))
    doomed += temporaries(store, layout.lock_prefix(dataset))
    legacy = [layout.lock_key(dataset)]
    legacy += [i.key for i in store.list(layout.lock_takeover_prefix(dataset))]
    doomed += [k for k in legacy if store.stat(k) is not None]
    doomed += sequences.superseded(store, layout.alert_states_prefix(dataset))
    if sequences.numbers(store, layout.alert_states_prefix(dataset)) \
            and store.stat(layout.alert_state_key(dataset)) is not None:
        doomed.append(layout.alert_state_key(dataset))
    doomed += sequences.superseded(store, layout.policy_digests_prefix())
    if sequences.numbers(store, layout.policy_digests_prefix()) \
            and store.stat(layout.policy_digest_key()) is not None:
        doomed.append(layout.policy_digest_key())
    head = layout.jobs_prefix(dataset)
    sids = {layout.parse_job_key(dataset, i.key) for i in store.list(head)}
    for sid in sorted(s for s in sids if s):
        prefix = layout.job_records_prefix(dataset, sid)
        doomed += sequences.superseded(store, prefix)
        if sequences.numbers(store, prefix) and store.stat(layout.job_key(dataset, sid)) is not None:
            doomed.append(layout.job_key(dataset, sid))
    if doomed:
        delete(store, doomed, report, "(state)")
        _count(report, "superseded_entries", len(doomed))


def _collect_copy_store(policy: Policy, target: Store, dataset: str, report: PruneReport,
                        name: str, skip: set[str]) -> None:
    """In a copy store: partial copies (a folder without a manifest — copies run under the
    dataset's lock, which prune holds, so none is in progress) and what a committed copy's
    manifest does not reference. A committed copy itself is removed only with its snapshot."""
    keyring = keyring_for(policy) if policy.keys else None
    for sid, infos in _folders(target, dataset).items():
        if sid in skip:
            continue
        head = layout.snapshot_prefix(dataset, sid)
        if any(i.key == layout.manifest_key(dataset, sid) for i in infos):
            doomed = _unreferenced(target, dataset, sid, infos, keyring)
            if doomed:
                delete(target, doomed, report, f"{sid} ({name})")
                _count(report, "copy_leftovers", len(doomed))
            continue
        doomed = [i.key for i in infos] + temporaries(target, head)
        if delete(target, doomed, report, f"{sid} ({name})"):
            _count(report, "partial_copies", 1)


def delete(store: Store, keys: list[str], report: PruneReport, what: str) -> bool:
    """Delete ``keys``; a refusal (immutability, an error) is reported, not raised — except a
    lost lock, which stops the prune. True when they are gone."""
    if not keys:
        return True
    try:
        store.delete(keys)
        return True
    except ObjectLockedError as exc:
        report.locked.append({"snapshot_id": what, "store": store.describe(), "detail": str(exc)})
    except LockedError:
        raise
    except CloudkeepError as exc:
        report.errors.append(f"leftovers of {what}: {exc}")
    return False
