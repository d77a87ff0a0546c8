"""Incremental snapshots: a snapshot that holds only what changed since the one before it.

A source that takes incremental snapshots says so in the manifest's ``source`` dict::

    "incremental": {"kind": "full" | "incremental",
                    "previous": <snapshot id of the snapshot it continues, or null>,
                    "base": <snapshot id of the full snapshot the chain starts with, or null>,
                    "sequence": <0 for a full snapshot, n for the n-th incremental one>,
                    ...}                         (plus whatever the source keeps, e.g. continuations)

Everything else is source-agnostic and lives here: restore replays the *chain* (the full
snapshot, then every incremental one up to the requested one, in order), verify reports a chain
whose earlier snapshots are gone, and prune keeps every snapshot a kept one depends on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from . import layout
from .errors import ObjectNotFoundError, RestoreError
from .manifest import Manifest
from .stores import Store
from .trust import check_binding


def info(manifest: Manifest) -> dict[str, Any]:
    """The manifest's incremental record (empty for a snapshot that is not part of a chain)."""
    value = manifest.source.get("incremental")
    return value if isinstance(value, dict) else {}


def previous_of(manifest: Manifest) -> str | None:
    """The snapshot an incremental snapshot continues (None: it stands alone)."""
    record = info(manifest)
    if record.get("kind") != "incremental":
        return None
    previous = record.get("previous")
    return str(previous) if previous else None


def load_chain(store: Store, manifest: Manifest) -> list[Manifest]:
    """The snapshots a restore of ``manifest`` replays, oldest (the full one) first.

    Raises RestoreError naming the first missing or inconsistent link, ForgedManifestError for a
    link that names another snapshot than the one it is stored as."""
    chain = [manifest]
    seen = {manifest.snapshot_id}
    current = manifest
    while (previous := previous_of(current)) is not None:
        if previous in seen:
            raise RestoreError(f"the incremental chain of {manifest.dataset}@{manifest.snapshot_id} "
                               f"loops at {previous}")
        key = layout.manifest_key(manifest.dataset, previous)
        try:
            data = store.get(key)
        except ObjectNotFoundError:
            raise RestoreError(
                f"{manifest.dataset}@{current.snapshot_id} is incremental but the snapshot it "
                f"continues, {previous}, is not in {store.describe()}: the chain is broken"
            ) from None
        current = Manifest.from_bytes(data, where=f"{store.describe()}/{key}")
        # each link must be the snapshot it is stored as (never one replayed under its name)
        check_binding(current, manifest.dataset, previous, stores=frozenset({manifest.store}),
                      where=f"{store.describe()}/{key}")
        seen.add(previous)
        chain.append(current)
    chain.reverse()
    if len(chain) > 1 and info(chain[0]).get("kind") != "full":
        raise RestoreError(f"the incremental chain of {manifest.dataset}@{manifest.snapshot_id} "
                           f"does not start with a full snapshot ({chain[0].snapshot_id})")
    return chain


def needed_by(manifests: Mapping[str, Manifest], keep: Iterable[str]) -> dict[str, str]:
    """Snapshots outside ``keep`` that a kept snapshot needs to be restored (its chain back to
    the full snapshot), each mapped to the newest kept snapshot that needs it. ``manifests``:
    the dataset's manifests by snapshot id."""
    kept = set(keep)
    needed: dict[str, str] = {}
    for snapshot_id in sorted(kept, reverse=True):
        current = manifests.get(snapshot_id)
        while current is not None and (previous := previous_of(current)) is not None:
            if previous in kept or previous in needed:
                break  # that one's own chain is (or will be) followed from it
            needed[previous] = snapshot_id
            current = manifests.get(previous)
    return needed
