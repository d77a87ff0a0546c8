"""Every version of one item: from the base snapshots and the change log, oldest first.

Each version is ``{"time", "event", "item", "source"}``: ``event`` is insert, modify or remove (a
logged change; ``item`` is null for a remove) or snapshot (the item as a committed snapshot holds
it, at the snapshot's capture time; snapshots that do not hold it are not listed). ``source``
names where it comes from (``DATASET@SNAPSHOT_ID``, or ``log <shard> <sequence>``). The log is
searched through its index (key hashes) where it records them; snapshots are read part by part
(every part checked as restore checks it).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import zstandard

from .. import catalog, layout
from ..codec import DecryptionError, PartLimitError, TruncatedPartError, open_part
from ..errors import RestoreError
from ..itemkeys import key_bytes, key_of
from ..manifest import Manifest
from ..restore import _checked_part
from ..stores import Store
from ..trust import Expect
from .format import format_time
from .reader import changes_between

if TYPE_CHECKING:
    from ..keys import Keyring

log = logging.getLogger(__name__)
MAX_VERSIONS = 100_000


@dataclass(frozen=True)
class Version:
    time: datetime
    event: str
    item: Any
    source: str
    order: tuple[datetime, int, str]

    def as_dict(self) -> dict[str, Any]:
        return {"time": format_time(self.time), "event": self.event, "item": self.item,
                "source": self.source}


def snapshot_item(store: Store, manifest: Manifest, key: Any, data_key: bytes | None) -> Any:
    """The item ``key`` as ``manifest``'s snapshot holds it (its decoded line), or None."""
    wanted = key_bytes(key)
    for part in manifest.parts:
        part_key = layout.part_key(manifest.dataset, manifest.snapshot_id, part.name)
        with _checked_part(store, part_key, part) as stream:
            _, lines = open_part(stream, compression=manifest.codec.compression,
                                 stored_bytes=part.stored_bytes, raw_bytes=part.raw_bytes,
                                 data_key=data_key, snapshot_id=manifest.snapshot_id,
                                 part_name=part.name)
            try:
                for line in lines:
                    doc = json.loads(line)
                    found = key_of(manifest.source, doc)
                    if found is not None and key_bytes(found) == wanted:
                        return doc
            except (TruncatedPartError, DecryptionError, PartLimitError, zstandard.ZstdError) as exc:
                raise RestoreError(f"part {part.name} is damaged: {exc}") from exc
    return None


def versions(store: Store, dataset: str, key: Any, *, since: datetime | None,
             keyring: Keyring, expect: Expect | None, log_store: Store | None = None
             ) -> Iterator[Version]:
    """The versions of ``key``, oldest first (see the module docstring)."""
    found: list[Version] = []
    for captured in catalog.committed(store, dataset):
        if since is not None and captured.captured_at < since:
            continue
        manifest = catalog.load_manifest(store, dataset, captured.snapshot_id, expect=expect)
        doc = snapshot_item(store, manifest, key, keyring.authenticate(manifest))
        if doc is not None:
            found.append(Version(captured.captured_at, "snapshot", doc,
                                 f"{dataset}@{captured.snapshot_id}",
                                 (captured.captured_at, 0, captured.snapshot_id)))
    start = since or datetime(1970, 1, 1, tzinfo=UTC)
    seen: set[tuple[str, str]] = set()
    end = datetime(9999, 1, 1, tzinfo=UTC)
    for change in changes_between(log_store or store, dataset, start, end, keyring=keyring, key=key):
        if (change.shard, change.sequence) in seen:
            continue  # the same change logged twice (a batch delivered again)
        seen.add((change.shard, change.sequence))
        item = None if change.line is None else json.loads(change.line)
        found.append(Version(change.time, change.event, item,
                             f"log {change.shard} {change.sequence}",
                             (change.time, 1, change.sequence)))
        if len(found) > MAX_VERSIONS:
            raise RestoreError(f"more than {MAX_VERSIONS} versions: narrow with --since")
    found.sort(key=lambda v: v.order)
    yield from found
