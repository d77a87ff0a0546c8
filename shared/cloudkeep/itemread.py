"""Reading a snapshot item by item for ``diff`` and ``find``: trusted chains, checked parts.

A snapshot is read as what it *holds*: an incremental snapshot (``cloudkeep.chain``) by
replaying its chain, the full snapshot first; every manifest of the chain authenticated and
checked against the policy (``cloudkeep.trust``) with its data key unwrapped, before a part is
read. A part is spooled to a temporary file and checked against its recorded size and sha256
*before* any of its lines is used, within the manifest's limits (``codec.open_part``).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import zstandard

from . import chain, layout
from .codec import DecryptionError, PartLimitError, TruncatedPartError, open_part
from .errors import CloudkeepError, UsageError
from .keys import Keyring
from .manifest import Manifest, PartEntry
from .registry import source_spec
from .specs import SourceModel
from .stores import Store
from .trust import Expect, check_policy

SPOOL_CHUNK = 1 << 20


class SnapshotReadError(CloudkeepError):
    """A part of a snapshot is missing, damaged or holds a line that is no item."""


class NotItemByItemError(SnapshotReadError, UsageError):
    """The snapshot is held in a form that cannot be read item by item (a native backup, a
    service's own export files): asking to is bad usage (exit 2), not a failed read."""

    exit_code = UsageError.exit_code


class TempSpaceError(CloudkeepError):
    """A part could not be spooled to a temporary file (a full or read-only $TMPDIR)."""


@dataclass
class Trusted:
    """One snapshot's chain, oldest (the full snapshot) first, each with its data key."""

    manifest: Manifest
    links: list[Manifest]
    data_keys: dict[str, bytes | None] = field(default_factory=dict)

    @property
    def items_upper_bound(self) -> int:
        """At most this many lines are read replaying the chain."""
        return sum(m.totals.items for m in self.links)


def trusted_chain(store: Store, manifest: Manifest, expect: Expect, keyring: Keyring,
                  cache: dict[str, bytes | None] | None = None) -> Trusted:
    """``manifest``'s chain with every link authenticated and meeting the policy (raises
    TamperedError / DowngradeError / KeyUnavailableError otherwise). ``cache``: data keys of
    snapshots already checked (by snapshot id), reused and filled."""
    if manifest.codec.framing != "ndjson":
        raise NotItemByItemError(f"{manifest.dataset}@{manifest.snapshot_id} holds files in the "
                                "service's own export format: it cannot be read item by item")
    if manifest.native is not None and not manifest.parts:
        raise NotItemByItemError(f"{manifest.dataset}@{manifest.snapshot_id} is held by the "
                                "service itself (a native backup): it cannot be read item by item")
    links = chain.load_chain(store, manifest)
    keys = cache if cache is not None else {}
    for link in links:
        if link.snapshot_id not in keys:
            keys[link.snapshot_id] = keyring.authenticate(link)
            check_policy(store, link, expect, keyring)
    return Trusted(manifest, links, {m.snapshot_id: keys[m.snapshot_id] for m in links})


def spec_of(manifest: Manifest) -> type[SourceModel]:
    """The source spec of a snapshot whose items have keys (UsageError otherwise)."""
    spec = source_spec(manifest.source.get("type"))
    if spec is None or not spec.ITEM_KEYS:
        raise UsageError(f"{manifest.dataset}@{manifest.snapshot_id}: "
                                f"{manifest.source.get('type')} snapshots are not addressable "
                                "item by item")
    return spec


def part_lines(store: Store, manifest: Manifest, part: PartEntry,
               data_key: bytes | None) -> Iterator[bytes]:
    """The lines of one part, read only once the stored bytes passed their size and sha256
    check; SnapshotReadError names the part otherwise."""
    key = layout.part_key(manifest.dataset, manifest.snapshot_id, part.name)
    where = f"{manifest.dataset}@{manifest.snapshot_id} part {part.name}"
    try:
        spool = tempfile.TemporaryFile()
    except OSError as exc:
        raise TempSpaceError(f"reading {where} needs a temporary file in "
                             f"{tempfile.gettempdir()}: {exc}") from exc
    with spool:
        sha = hashlib.sha256()
        size = 0
        try:
            with store.open(key) as stream:
                while chunk := stream.read(min(SPOOL_CHUNK, part.stored_bytes + 1 - size)):
                    size += len(chunk)
                    if size > part.stored_bytes:
                        raise SnapshotReadError(f"{where} is damaged: it holds more than the "
                                                f"{part.stored_bytes} bytes its manifest records")
                    sha.update(chunk)
                    try:
                        spool.write(chunk)
                    except OSError as exc:  # e.g. no space left on the device
                        raise TempSpaceError(f"reading {where} needs about {part.stored_bytes} "
                                             f"bytes of temporary space in "
                                             f"{tempfile.gettempdir()}: {exc}") from exc
        except (SnapshotReadError, TempSpaceError):
            raise
        except CloudkeepError as exc:
            raise SnapshotReadError(f"{where} cannot be read: {exc}") from exc
        if size != part.stored_bytes or sha.hexdigest() != part.sha256:
            raise SnapshotReadError(f"{where} failed its sha256 check")
        spool.seek(0)
        hashing, lines = open_part(spool, compression=manifest.codec.compression,  # type: ignore[arg-type]
                                   stored_bytes=part.stored_bytes, raw_bytes=part.raw_bytes,
                                   data_key=data_key, snapshot_id=manifest.snapshot_id,
                                   part_name=part.name)
        count = 0
        try:
            for line in lines:
                if not line:
                    continue  # a service's export file may hold blank lines (not items)
                count += 1
                yield line
            hashing.drain()
        except (TruncatedPartError, DecryptionError, PartLimitError, zstandard.ZstdError) as exc:
            raise SnapshotReadError(f"{where} is damaged: {exc}") from exc
        if count != part.items:
            raise SnapshotReadError(f"{where} holds {count} items, its manifest says {part.items}")


@dataclass(frozen=True)
class Entry:
    """One line of a snapshot as an item operation: ``line`` held under ``key``, or (``line``
    None) ``key`` deleted (an incremental snapshot's deletion line)."""

    key: Any
    line: bytes | None
    doc: Any


def entries(spec: type[SourceModel], manifest: Manifest, lines: Iterator[bytes]) -> Iterator[Entry]:
    """Each line as an item operation; a line without a key is a SnapshotReadError."""
    keyer = spec.item_keyer(manifest.source)
    for n, line in enumerate(lines, 1):
        try:
            doc = json.loads(line)
        except ValueError:
            doc = None
        key = keyer(doc) if doc is not None else None
        if key is None:
            raise SnapshotReadError(f"{manifest.dataset}@{manifest.snapshot_id}: line {n} of a "
                                    "part names no item key")
        yield Entry(key, None if spec.deletes_item(doc) else line, doc)
