"""Finding committed snapshots: listing manifests and resolving ``DATASET@ID`` references."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import layout
from .errors import ObjectNotFoundError, SnapshotNotFoundError, UsageError
from .manifest import Manifest
from .policy import Policy
from .registry import open_store
from .stores import Store

if TYPE_CHECKING:
    from .keys import Keyring


@dataclass(frozen=True)
class SnapshotRef:
    dataset: str
    snapshot_id: str  # or "latest"

    def __str__(self) -> str:
        return f"{self.dataset}@{self.snapshot_id}"


def parse_ref(text: str) -> SnapshotRef | str:
    """``DATASET@SNAPSHOT_ID`` / ``DATASET@latest`` → SnapshotRef; a bare snapshot id → str.
    ``latest`` is the snapshot with the newest capture time (``timeline.py``)."""
    if "@" in text:
        dataset, _, snap = text.partition("@")
        if not dataset or not snap:
            raise UsageError(f"bad snapshot reference {text!r} (use DATASET@SNAPSHOT_ID or DATASET@latest)")
        if snap != "latest" and not layout.SNAPSHOT_ID_RE.match(snap):
            raise UsageError(f"bad snapshot id {snap!r} in {text!r} (expected e.g. 20260101T020000Z-1a2b3c)")
        return SnapshotRef(dataset, snap)
    if layout.SNAPSHOT_ID_RE.match(text):
        return text
    raise UsageError(f"bad snapshot reference {text!r} (use DATASET@SNAPSHOT_ID or DATASET@latest)")


def snapshot_ids(store: Store, dataset: str) -> list[str]:
    """Ids of committed snapshots (those with a manifest), oldest first."""
    ids = []
    for info in store.list(layout.snapshots_prefix(dataset)):
        snapshot_id = layout.parse_manifest_key(dataset, info.key)
        if snapshot_id:
            ids.append(snapshot_id)
    return sorted(ids)


def load_manifest(store: Store, dataset: str, snapshot_id: str, *,
                  keyring: Keyring | None = None) -> Manifest:
    """The committed manifest; with ``keyring``, an encrypted one is authenticated first
    (TamperedError if it was edited, KeyUnavailableError if no policy key unwraps it)."""
    key = layout.manifest_key(dataset, snapshot_id)
    try:
        data = store.get(key)
    except ObjectNotFoundError:
        raise SnapshotNotFoundError(f"no committed snapshot {dataset}@{snapshot_id}") from None
    manifest = Manifest.from_bytes(data, where=f"{store.describe()}/{key}")
    if keyring is not None:
        keyring.authenticate(manifest)
    return manifest


def list_manifests(store: Store, dataset: str, *, keyring: Keyring | None = None) -> list[Manifest]:
    ids = snapshot_ids(store, dataset)
    if len(ids) <= 1:
        return [load_manifest(store, dataset, i, keyring=keyring) for i in ids]
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(lambda i: load_manifest(store, dataset, i, keyring=keyring), ids))


def store_named(policy: Policy, dataset: str, name: str | None) -> Store:
    """The dataset's own store, or the store ``name`` (a copy) when given."""
    spec = policy.dataset(dataset)
    if name is None:
        return open_store(policy.stores[spec.store])
    if name not in policy.stores:
        known = ", ".join(sorted(policy.stores))
        raise UsageError(f"unknown store {name!r} (known: {known})")
    return open_store(policy.stores[name])


def resolve(policy: Policy, text: str, *, store_name: str | None = None,
            authenticate: bool = True) -> tuple[Store, Manifest]:
    """The store and manifest a reference names (in the dataset's store, or in the copy store
    ``store_name``), authenticated with the policy's keys unless ``authenticate`` is False (verify
    checks the tag itself, to report it). Raises SnapshotNotFoundError if none."""
    from .keys import keyring_for

    keyring = keyring_for(policy) if authenticate else None
    ref = parse_ref(text)
    if isinstance(ref, str):
        if store_name:
            raise UsageError("with --store, name the snapshot as DATASET@SNAPSHOT_ID")
        return _find_bare(policy, ref, keyring)
    store = store_named(policy, ref.dataset, store_name)
    if ref.snapshot_id == "latest":
        from . import timeline

        newest = timeline.newest(store, ref.dataset)  # the newest capture time, not slot
        if newest is None:
            raise SnapshotNotFoundError(f"dataset {ref.dataset!r} has no committed snapshot")
        return store, load_manifest(store, ref.dataset, newest.snapshot_id, keyring=keyring)
    return store, load_manifest(store, ref.dataset, ref.snapshot_id, keyring=keyring)


def _find_bare(policy: Policy, snapshot_id: str, keyring: Keyring | None) -> tuple[Store, Manifest]:
    found = []
    for name, spec in policy.datasets.items():
        store = open_store(policy.stores[spec.store])
        if store.stat(layout.manifest_key(name, snapshot_id)) is not None:
            found.append((store, name))
    if not found:
        raise SnapshotNotFoundError(f"no committed snapshot {snapshot_id} in any dataset")
    if len(found) > 1:
        names = ", ".join(f"{n}@{snapshot_id}" for _, n in found)
        raise UsageError(f"snapshot id {snapshot_id} is ambiguous: {names}")
    store, name = found[0]
    return store, load_manifest(store, name, snapshot_id, keyring=keyring)
