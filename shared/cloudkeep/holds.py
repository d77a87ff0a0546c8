"""Legal holds: a record in the store that keeps a snapshot from retention, whatever the rules
(and, in a store with its own legal holds, that store's hold on every object of the snapshot)."""

from __future__ import annotations

import getpass
import json
import socket
from datetime import UTC, datetime
from typing import Any

from . import layout
from .errors import ObjectNotFoundError, UsageError
from .manifest import Manifest
from .stores import Store


def who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def add(store: Store, manifest: Manifest, reason: str) -> dict[str, Any]:
    if not reason.strip():
        raise UsageError("a legal hold needs a --reason")
    record = {
        "dataset": manifest.dataset,
        "snapshot_id": manifest.snapshot_id,
        "reason": reason.strip(),
        "created_at": datetime.now(UTC).isoformat(),
        "created_by": who(),
    }
    _storage_hold(store, manifest, True)
    store.put(layout.hold_key(manifest.dataset, manifest.snapshot_id),
              json.dumps(record, indent=2).encode())
    return record


def remove(store: Store, manifest: Manifest) -> bool:
    key = layout.hold_key(manifest.dataset, manifest.snapshot_id)
    if store.stat(key) is None:
        return False
    _storage_hold(store, manifest, False)
    store.delete([key])
    return True


def _storage_hold(store: Store, manifest: Manifest, hold: bool) -> None:
    """Where the store itself has legal holds (Azure Blob with immutability), set or clear them
    on every object of the snapshot too."""
    set_hold = getattr(store, "set_legal_hold", None)
    if set_hold is None or not store.capabilities.object_lock:
        return
    keys = [layout.part_key(manifest.dataset, manifest.snapshot_id, p.name) for p in manifest.parts]
    for key in [*keys, layout.manifest_key(manifest.dataset, manifest.snapshot_id)]:
        set_hold(key, hold)


def get(store: Store, dataset: str, snapshot_id: str) -> dict[str, Any] | None:
    try:
        data = json.loads(store.get(layout.hold_key(dataset, snapshot_id)))
    except ObjectNotFoundError:
        return None
    return data if isinstance(data, dict) else {"reason": "unreadable hold record"}


def all_for(store: Store, dataset: str) -> dict[str, dict[str, Any]]:
    """snapshot id → hold record, for every hold of ``dataset``."""
    out: dict[str, dict[str, Any]] = {}
    prefix = layout.holds_prefix(dataset)
    for info in store.list(prefix):
        snapshot_id = info.key[len(prefix):].removesuffix(".json")
        record = get(store, dataset, snapshot_id)
        if record is not None:
            out[snapshot_id] = record
    return out
