"""Copies of committed snapshots in further stores (another region, account or cloud).

A copy is written like a snapshot: parts first, each part's sha256 checked by reading it back
from the destination, the manifest last and create-only. The primary store then records the
verified copy (``<dataset>/copies/<snapshot_id>/<store>.json``); ``list`` shows the copies and a
tier's ``min_copies`` keeps retention from removing a snapshot that has too few of them.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime
from typing import Any

from . import blobs, layout
from . import clock as _clock
from .codec import HashingReader
from .errors import CloudkeepError, ObjectExistsError, ObjectNotFoundError, VerificationError
from .manifest import Manifest
from .policy import Policy
from .registry import open_store
from .stores import Store

log = logging.getLogger(__name__)


def targets(policy: Policy, dataset: str) -> list[str]:
    spec = policy.dataset(dataset)
    if spec.copy_to is not None:
        return list(spec.copy_to)
    return list(policy.tiers[spec.tier].copy_to)


def copy_snapshot(
    policy: Policy, source: Store, manifest: Manifest, target_name: str,
    *, retain_until: datetime | None = None, target: Store | None = None,
) -> dict[str, Any]:
    """Copy one committed snapshot into the store ``target_name``; returns the copy record."""
    target = target or open_store(policy.stores[target_name])
    ds, sid = manifest.dataset, manifest.snapshot_id
    for part in manifest.parts:
        key = layout.part_key(ds, sid, part.name)
        with source.open(key) as stream:
            reader = HashingReader(stream)
            try:
                target.put(key, reader, if_absent=True, retain_until=retain_until)  # type: ignore[arg-type]
            except ObjectExistsError:
                pass  # an earlier, interrupted copy wrote it: checked below like the others
            else:
                if reader.sha256.hexdigest() != part.sha256:
                    raise VerificationError(f"part {part.name} changed in {source.describe()} while copying")
        digest = hashlib.sha256()
        with target.open(key) as copied:
            while chunk := copied.read(1 << 20):
                digest.update(chunk)
        if digest.hexdigest() != part.sha256:
            raise VerificationError(
                f"part {part.name} of {ds}@{sid} in {target.describe()} failed its sha256 check"
            )
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
    source.put(layout.copy_record_key(ds, sid, target_name), json.dumps(record, indent=2).encode())
    log.info("copied %s@%s to %s (%d parts verified)", ds, sid, target_name, len(manifest.parts))
    return record


def copy_all(policy: Policy, source: Store, manifest: Manifest,
             retain_until: datetime | None = None) -> list[dict[str, Any]]:
    """Copy to every store the dataset names; a failed copy is reported, not raised."""
    out = []
    for name in targets(policy, manifest.dataset):
        try:
            out.append(copy_snapshot(policy, source, manifest, name, retain_until=retain_until))
        except CloudkeepError as exc:
            log.error("copy of %s@%s to %s failed: %s", manifest.dataset, manifest.snapshot_id, name, exc)
            out.append({"store": name, "verified": False, "error": str(exc)})
    return out


def records(store: Store, dataset: str, snapshot_id: str) -> list[dict[str, Any]]:
    out = []
    for info in store.list(layout.copies_prefix(dataset, snapshot_id)):
        try:
            data = json.loads(store.get(info.key))
        except (ObjectNotFoundError, ValueError):
            continue
        if isinstance(data, dict):
            out.append(data)
    return out


def verified_stores(store: Store, dataset: str, snapshot_id: str) -> list[str]:
    return sorted(str(r.get("store")) for r in records(store, dataset, snapshot_id) if r.get("verified"))
