"""Copies of committed snapshots in further stores (another region, account or cloud).

A copy is written like a snapshot: parts first, each part's sha256 checked by reading it back
from the destination, the manifest last and create-only. The primary store then records the
verified copy (``<dataset>/copies/<snapshot_id>/<store>.json``, create-only); ``list`` shows the
copies and a tier's ``min_copies`` keeps retention from removing a snapshot that has too few.

Copies are tracked, retried and alerted steps:

- they run holding the dataset's fenced lock (``lock.py``), so prune — which takes the same lock —
  never races a copy, and a copier that lost the lock writes nothing more;
- :func:`catch_up` copies every committed snapshot that lacks a verified copy record for one of
  its targets (newest first, a few per call): a copy that failed, or was interrupted by a crash
  or ``kill -9``, is completed by a later run or tick;
- a copy that fails is reported on the run's result (``run`` exits 1; the backup itself stays
  committed) and the tick raises a ``copy_failed`` alert, cleared by one recovery once every
  copy is verified;
- nothing is ever deleted or overwritten here: the parts of an interrupted copy are reused (each
  is checked) by the next attempt, and a partial copy (no manifest in the copy store) is removed
  by prune.
"""

from __future__ import annotations

import json
import logging
import secrets
from datetime import datetime, timedelta
from typing import Any

from . import blobs, keyindex, layout, rehydrate
from . import clock as _clock
from .catalog import load_manifest, snapshot_ids
from .codec import HashingReader
from .errors import (
    CloudkeepError,
    LockedError,
    ObjectExistsError,
    ObjectNotFoundError,
    VerificationError,
)
from .lock import Fence, FencedStore, Lease
from .manifest import Manifest
from .policy import Policy
from .registry import open_store
from .stores import Store

log = logging.getLogger(__name__)

CATCH_UP = 5  # snapshots with a missing copy handled per call (newest first); later calls go on


def targets(policy: Policy, dataset: str) -> list[str]:
    spec = policy.dataset(dataset)
    if spec.copy_to is not None:
        return list(spec.copy_to)
    return list(policy.tiers[spec.tier].copy_to)


def copy_snapshot(
    policy: Policy, source: Store, manifest: Manifest, target_name: str,
    *, retain_until: datetime | None = None, target: Store | None = None,
    fence: Fence | None = None,
) -> dict[str, Any]:
    """Copy one committed snapshot into the store ``target_name``; returns the copy record.
    With ``fence`` every write (in the copy store and the record in ``source``) checks it first."""
    target = target or open_store(policy.stores[target_name])
    if fence is not None:
        target, source = FencedStore(target, fence), FencedStore(source, fence)
    ds, sid = manifest.dataset, manifest.snapshot_id
    for part in manifest.parts:
        key = layout.part_key(ds, sid, part.name)
        with source.open(key) as stream:
            reader = HashingReader(stream, limit=part.stored_bytes)  # never past the manifest's size
            try:
                target.put(key, reader, if_absent=True, retain_until=retain_until)  # type: ignore[arg-type]
            except ObjectExistsError:
                pass  # an earlier, interrupted copy wrote it: checked below like the others
            else:
                if reader.sha256.hexdigest() != part.sha256 or reader.exceeded:
                    raise VerificationError(f"part {part.name} changed in {source.describe()} while copying")
        with target.open(key) as copied:
            digest = HashingReader(copied, limit=part.stored_bytes)
            digest.drain()
        if digest.sha256.hexdigest() != part.sha256 or digest.exceeded:
            raise VerificationError(
                f"part {part.name} of {ds}@{sid} in {target.describe()} failed its sha256 check"
            )
    keyindex.copy_indexes(source, target, manifest, retain_until=retain_until)
    if blobs.uses_blobs(manifest):  # the objects' content, before the manifest
        blobs.copy_blobs(source, target, manifest, retain_until=retain_until)
    try:
        target.put(layout.manifest_key(ds, sid), manifest.to_bytes(), if_absent=True,
                   retain_until=retain_until)
    except ObjectExistsError:
        existing = Manifest.from_bytes(target.get(layout.manifest_key(ds, sid)), where=target.describe())
        if existing != manifest:
            raise VerificationError(
                f"{target.describe()} holds a different manifest for {ds}@{sid}"
            ) from None
    record = {
        "dataset": ds,
        "snapshot_id": sid,
        "store": target_name,
        "location": target.describe(),
        "parts": len(manifest.parts),
        "verified": True,
        "verified_at": _clock.now().isoformat(),
    }
    try:
        source.put(layout.copy_record_key(ds, sid, target_name),
                   json.dumps(record, indent=2).encode(), if_absent=True)
    except ObjectExistsError:
        pass  # recorded by an earlier attempt (records are written only for verified copies)
    log.info("copied %s@%s to %s (%d parts verified)", ds, sid, target_name, len(manifest.parts))
    return record


def copy_all(policy: Policy, source: Store, manifest: Manifest,
             retain_until: datetime | None = None, *, lease: timedelta | None = None
             ) -> list[dict[str, Any]]:
    """Copy ``manifest``'s snapshot to every store the dataset names that lacks a verified copy
    (under the dataset's lock); a failed copy is reported, not raised."""
    if not targets(policy, manifest.dataset):
        return []
    return _copy_under_lock(policy, source, manifest.dataset, [manifest], retain_until, lease)


def catch_up(policy: Policy, source: Store, dataset: str, *, limit: int = CATCH_UP,
             lease: timedelta | None = None) -> list[dict[str, Any]]:
    """Copy the newest ``limit`` committed snapshots of ``dataset`` that lack a verified copy in
    one of its targets (retrying failed and interrupted copies). Returns one entry per copy
    attempted: ``{snapshot_id, store, verified, error?}``, or one ``deferred`` entry per target
    when another run holds the dataset's lock (the next call tries again)."""
    if not targets(policy, dataset):
        return []
    wanted = targets(policy, dataset)
    recorded = _recorded(source, dataset)  # one listing, not one per snapshot
    todo: list[Manifest] = []
    for sid in reversed(snapshot_ids(source, dataset)):
        if len(todo) >= limit:
            break
        if all(name in recorded.get(sid, set()) for name in wanted):
            continue  # a record for every target (read and checked below when one is missing)
        try:
            todo.append(load_manifest(source, dataset, sid))
        except CloudkeepError as exc:
            log.warning("dataset %s: cannot copy %s: %s", dataset, sid, exc)
    if not todo:
        return []
    return _copy_under_lock(policy, source, dataset, todo, None, lease)


def _copy_under_lock(policy: Policy, source: Store, dataset: str, manifests: list[Manifest],
                     retain_until: datetime | None, lease: timedelta | None
                     ) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    lock = Lease(source, dataset, f"copy-{secrets.token_hex(6)}", lease=lease)
    try:
        lock.acquire()
    except LockedError as exc:
        log.info("dataset %s: copies deferred: %s", dataset, exc)
        return [{"snapshot_id": m.snapshot_id, "store": name, "verified": False,
                 "deferred": str(exc)} for m in manifests for name in targets(policy, dataset)]
    try:
        for manifest in manifests:
            have = set(verified_stores(source, dataset, manifest.snapshot_id))
            for name in targets(policy, dataset):
                if name in have:
                    continue
                waiting = _rehydrating(policy, source, manifest)
                if waiting:  # archived parts: asked back (recorded); a later catch-up copies
                    out.append({"snapshot_id": manifest.snapshot_id, "store": name,
                                "verified": False, "rehydrating": waiting})
                    continue
                try:
                    record = copy_snapshot(policy, source, manifest, name,
                                           retain_until=retain_until, fence=lock)
                    out.append({"snapshot_id": manifest.snapshot_id} | record)
                except LockedError as exc:  # fenced: another run holds the lock now
                    out.append({"snapshot_id": manifest.snapshot_id, "store": name,
                                "verified": False, "deferred": str(exc)})
                    return out
                except CloudkeepError as exc:
                    log.error("copy of %s@%s to %s failed: %s", dataset, manifest.snapshot_id,
                              name, exc)
                    out.append({"snapshot_id": manifest.snapshot_id, "store": name,
                                "verified": False, "error": str(exc)})
    finally:
        lock.release()
    return out


def _rehydrating(policy: Policy, source: Store, manifest: Manifest) -> str | None:
    """Cold tiers (s16-cold): None when every part of ``manifest`` can be read now; otherwise
    the rehydration of its archived parts is started or found (and recorded) and the wait is
    returned (the copy is not a failure: a later catch-up copies it once they are back). A
    manifest that fails its checks starts nothing (its copy then fails as before)."""
    if not manifest.parts or not rehydrate.authentic(policy, source, manifest, without_key=True):
        return None
    try:
        rehydrate.ensure_readable(source, [manifest], purpose="copy")
    except rehydrate.RehydrationPendingError as exc:
        log.info("dataset %s: copy of %s waits for a rehydration: %s", manifest.dataset,
                 manifest.snapshot_id, exc)
        return str(exc)
    except CloudkeepError as exc:  # the copy itself will say what is wrong
        log.warning("dataset %s: cannot check for archived parts: %s", manifest.dataset, exc)
    return None


def _recorded(store: Store, dataset: str) -> dict[str, set[str]]:
    """Snapshot id → the stores it has a copy record for (records are written create-only, and
    only for verified copies)."""
    out: dict[str, set[str]] = {}
    head = layout.all_copies_prefix(dataset)
    for info in store.list(head):
        sid, _, name = info.key[len(head):].partition("/")
        if name.endswith(".json") and "/" not in name:
            out.setdefault(sid, set()).add(name[: -len(".json")])
    return out


def failures(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The entries of copies that failed (not those deferred because another run held the lock)."""
    return [e for e in entries if not e.get("verified") and e.get("error")]


def failure_text(entries: list[dict[str, Any]]) -> str:
    """One line naming every failed copy."""
    return "; ".join(f"copy of {e.get('snapshot_id')} to {e.get('store')} failed: {e.get('error')}"
                     for e in failures(entries))


def records(store: Store, dataset: str, snapshot_id: str,
            problems: list[str] | None = None) -> list[dict[str, Any]]:
    """The snapshot's copy records; an unreadable one is skipped (and added to ``problems``)."""
    out = []
    for info in store.list(layout.copies_prefix(dataset, snapshot_id)):
        try:
            data = json.loads(store.get(info.key))
        except (ObjectNotFoundError, ValueError, RecursionError):
            data = None
        if isinstance(data, dict):
            out.append(data)
        elif problems is not None:
            problems.append(f"copy record {info.key} cannot be read (skipped)")
    return out


def verified_stores(store: Store, dataset: str, snapshot_id: str,
                    problems: list[str] | None = None) -> list[str]:
    return sorted(str(r.get("store")) for r in records(store, dataset, snapshot_id, problems)
                  if r.get("verified") is True)
