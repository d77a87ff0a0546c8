"""Per-part key indexes: which parts of a snapshot can hold an item, without reading them.

Every part a backup writes by reading the source item by item (not a native export) gets a small
index next to it, ``<part name>.keys`` (``layout.key_index_key``), written create-only right
after the part and recorded in the manifest (``PartEntry.key_index``: the sha256 of the index
object), so the manifest — authenticated like everything it records — covers it. The format::

    b"CKKI" 0x01                      magic and version
    flags (1 byte)                    bit 0: the hashes are keyed (an encrypted snapshot)
    part sha256 (32 bytes)            the sha256 of the stored part it indexes (binds it)
    count (8 bytes, big-endian)       number of hashes: the part's item count, exactly
    count × 8 bytes                   the hashes of the part's item keys, sorted ascending

A hash is the first 8 bytes of sha256 over the item's canonical key (``itemkeys.key_hash``); in
an encrypted snapshot, of HMAC-SHA256 under a key derived from the snapshot's data key, so the
index tells nothing about the keys to whoever cannot unwrap the data key. A collision only costs
reading one part more, never a wrong item. The index names its part's sha256 and holds exactly
one hash per item, so an index moved from another part or snapshot, or cut short, is refused
even where the manifest that records its sha256 is not authenticated (unsigned).

:func:`candidate_parts` is the reader ``find`` and partial restore use: the parts that may hold
one of some keys. A part without an index (an older snapshot, a line without a key) is always a
candidate; an index that is missing, too large, altered or malformed never hides an item: the
reader warns and falls back to every part of the snapshot.
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
import json
import logging
import sys
from array import array
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from . import layout
from .errors import CloudkeepError, ObjectExistsError, ObjectNotFoundError
from .itemkeys import KEY_HASH_BYTES, key_bytes, key_hash
from .manifest import Manifest, PartEntry
from .registry import source_spec
from .stores import Store

log = logging.getLogger(__name__)

MAGIC = b"CKKI\x01"
FLAG_KEYED = 1
_SHA = 32
HEADER = len(MAGIC) + 1 + _SHA + 8
_INDEX_KEY_LABEL = b"cloudkeep key index v1"
_READERS = 8


class KeyIndexError(CloudkeepError):
    """A key index failed its check (reported by verify; readers fall back to the parts)."""


def index_mac_key(data_key: bytes) -> bytes:
    """The key an encrypted snapshot's index hashes are keyed with (derived from its data key)."""
    return hmac.new(data_key, _INDEX_KEY_LABEL, hashlib.sha256).digest()


_ENCODE = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode
_DECODE = json.JSONDecoder().decode


class Hasher:
    """The index hash of a normalised key: plain (``itemkeys.key_hash``) or keyed."""

    def __init__(self, data_key: bytes | None) -> None:
        self._mac = index_mac_key(data_key) if data_key is not None else None

    @property
    def keyed(self) -> bool:
        return self._mac is not None

    def __call__(self, key: Any) -> bytes:
        if self._mac is None:
            return key_hash(key)
        return hmac.new(self._mac, key_bytes(key), hashlib.sha256).digest()[:KEY_HASH_BYTES]

    def number(self, key: Any) -> int:
        """The hash as the unsigned integer an index stores (the same as ``self(key)``; the
        canonical encoding inlined: this runs once per item on the backup path)."""
        data = _ENCODE(key).encode("utf-8")  # == itemkeys.key_bytes(key)
        if self._mac is None:
            digest = hashlib.sha256(data).digest()
        else:
            digest = hmac.new(self._mac, data, hashlib.sha256).digest()
        return int.from_bytes(digest[:KEY_HASH_BYTES], "big")


class IndexBuilder:
    """Collects the key hashes of one part's lines as they are added (8 bytes per item).

    ``finish()`` is None — no index, readers read the part — when the source type has no item
    keys or a line names no key (an index must list every item of its part, or it could hide
    one)."""

    def __init__(self, recorded: Mapping[str, Any], data_key: bytes | None) -> None:
        spec = source_spec(recorded.get("type"))
        self._keyer = spec.item_keyer(recorded) if spec is not None and spec.ITEM_KEYS else None
        self._hasher = Hasher(data_key)
        self._hashes: array[int] | None = array("Q") if self._keyer is not None else None

    def add_lines(self, lines: Iterable[bytes]) -> None:
        hashes, keyer, number = self._hashes, self._keyer, self._hasher.number
        if hashes is None or keyer is None:
            return
        for line in lines:
            try:
                key = keyer(_DECODE(line.decode("utf-8")))
            except ValueError:  # UnicodeDecodeError too
                key = None
            if key is None:
                self._hashes = None  # this part goes without an index
                return
            hashes.append(number(key))

    def finish(self, part_sha256: str) -> bytes | None:
        """The index object's bytes for the part whose stored bytes have sha256
        ``part_sha256`` (hex) (None: this part has no index)."""
        if self._hashes is None:
            return None
        ordered = array("Q", sorted(self._hashes))
        self._hashes = None
        if sys.byteorder == "little":
            ordered.byteswap()  # stored big-endian: byte order is numeric order
        flags = FLAG_KEYED if self._hasher.keyed else 0
        return (MAGIC + bytes([flags]) + bytes.fromhex(part_sha256) + len(ordered).to_bytes(8, "big")
                + ordered.tobytes())


def write_index(store: Store, dataset: str, snapshot_id: str, part_name: str, body: bytes | None,
                *, retain_until: datetime | None = None) -> str | None:
    """Write a part's index create-only; its sha256 for the manifest, or None when there is
    no index (``body`` None, or the name is taken — parts are never reused, so that is another
    writer's or a forger's object: the part goes without an index rather than trust it)."""
    if body is None:
        return None
    key = layout.key_index_key(dataset, snapshot_id, part_name)
    try:
        store.put(key, body, if_absent=True, retain_until=retain_until)
    except ObjectExistsError:
        log.warning("key index %s already exists; part %s is recorded without an index", key,
                    part_name)
        return None
    return hashlib.sha256(body).hexdigest()


class Index:
    """One part's loaded index: membership of 8-byte hashes."""

    def __init__(self, hashes: array[int]) -> None:
        self._hashes = hashes

    def __len__(self) -> int:
        return len(self._hashes)

    def may_hold(self, digest: bytes) -> bool:
        value = int.from_bytes(digest, "big")
        at = bisect.bisect_left(self._hashes, value)
        return at < len(self._hashes) and self._hashes[at] == value


def parse_index(body: bytes, part: PartEntry, *, keyed: bool) -> Index:
    """An index object's bytes checked against its part's manifest entry (KeyIndexError naming
    what is wrong): the recorded sha256, the format, keyed as the snapshot is, naming this
    part's sha256, exactly one hash per item, sorted."""
    if part.key_index is None:
        raise KeyIndexError(f"part {part.name} records no key index")
    if hashlib.sha256(body).hexdigest() != part.key_index:
        raise KeyIndexError(f"the key index of part {part.name} fails its sha256 check")
    if len(body) < HEADER or body[: len(MAGIC)] != MAGIC:
        raise KeyIndexError(f"the key index of part {part.name} is not a cloudkeep key index")
    flags = body[len(MAGIC)]
    if bool(flags & FLAG_KEYED) != keyed:
        raise KeyIndexError(f"the key index of part {part.name} is "
                          f"{'' if flags & FLAG_KEYED else 'not '}keyed, its snapshot is "
                          f"{'' if keyed else 'not '}encrypted")
    if body[len(MAGIC) + 1 : len(MAGIC) + 1 + _SHA].hex() != part.sha256:
        raise KeyIndexError(f"the key index of part {part.name} belongs to another part")
    count = int.from_bytes(body[HEADER - 8 : HEADER], "big")
    if count != part.items or len(body) != HEADER + count * KEY_HASH_BYTES:
        raise KeyIndexError(f"the key index of part {part.name} holds {count} hashes in "
                          f"{len(body)} bytes for a part of {part.items} items")
    hashes = array("Q")
    hashes.frombytes(body[HEADER:])
    if sys.byteorder == "little":
        hashes.byteswap()
    if any(hashes[i] > hashes[i + 1] for i in range(len(hashes) - 1)):
        raise KeyIndexError(f"the key index of part {part.name} is not sorted")
    return Index(hashes)


def read_index(store: Store, manifest: Manifest, part: PartEntry) -> Index:
    """The part's index read (at most the size its item count allows) and checked; raises
    KeyIndexError for a missing, oversized, altered or malformed one."""
    key = layout.key_index_key(manifest.dataset, manifest.snapshot_id, part.name)
    limit = HEADER + part.items * KEY_HASH_BYTES
    try:
        with store.open(key) as stream:
            body = stream.read(limit + 1)
    except ObjectNotFoundError:
        raise KeyIndexError(f"the key index of part {part.name} is missing") from None
    if len(body) > limit:
        raise KeyIndexError(f"the key index of part {part.name} is larger than its "
                          f"{part.items} items allow")
    return parse_index(body, part, keyed=manifest.codec.encryption is not None)


def check(store: Store, manifest: Manifest, part: PartEntry) -> str | None:
    """What is wrong with a part's recorded index (None: nothing, or no index recorded)."""
    if part.key_index is None:
        return None
    try:
        read_index(store, manifest, part)
    except KeyIndexError as exc:
        return str(exc)
    return None


def candidate_parts(store: Store, manifest: Manifest, keys: Sequence[Any], *,
                    data_key: bytes | None = None) -> list[PartEntry]:
    """The parts of ``manifest`` that may hold an item with one of ``keys`` (normalised keys,
    ``cloudkeep.itemkeys``), in manifest order. Every part without an index is a candidate;
    so is every part when the snapshot is encrypted and ``data_key`` (its unwrapped data key)
    is not given. An index that fails its check (missing, altered, malformed) never hides an
    item: a warning is logged and every part is returned. The caller has authenticated
    ``manifest`` (its index digests are only as trustworthy as it is)."""
    if not keys:
        return []
    parts = list(manifest.parts)
    if manifest.codec.encryption is not None and data_key is None:
        log.info("%s@%s is encrypted and no data key was given: reading every part",
                 manifest.dataset, manifest.snapshot_id)
        return parts
    hasher = Hasher(data_key if manifest.codec.encryption is not None else None)
    wanted = [hasher(k) for k in keys]
    indexed = [p for p in parts if p.key_index is not None]

    def load(part: PartEntry) -> Index | str:
        try:
            return read_index(store, manifest, part)
        except KeyIndexError as exc:
            return str(exc)

    with ThreadPoolExecutor(max_workers=max(1, min(_READERS, len(indexed) or 1))) as pool:
        loaded = dict(zip([p.name for p in indexed], pool.map(load, indexed), strict=True))
    failed = [v for v in loaded.values() if isinstance(v, str)]
    if failed:
        log.warning("%s@%s: %s%s; reading every part of the snapshot instead", manifest.dataset,
                    manifest.snapshot_id, failed[0],
                    f" (and {len(failed) - 1} more)" if len(failed) > 1 else "")
        return parts
    out = []
    for part in parts:
        index = loaded.get(part.name)
        if index is None or isinstance(index, str) or any(index.may_hold(h) for h in wanted):
            out.append(part)
    return out


def copy_indexes(source: Store, target: Store, manifest: Manifest, *,
                 retain_until: datetime | None = None) -> None:
    """Copy the parts' key indexes into a copy store (create-only; one already there from an
    interrupted copy is left as it is — readers check it). An index that fails its check in
    ``source`` is not copied (logged): the copy's readers then read those parts, and verify
    reports it, as it does for the source."""
    for part in manifest.parts:
        if part.key_index is None:
            continue
        key = layout.key_index_key(manifest.dataset, manifest.snapshot_id, part.name)
        try:
            read_index(source, manifest, part)
            body = source.get(key)
            if hashlib.sha256(body).hexdigest() != part.key_index:
                raise KeyIndexError(f"the key index of part {part.name} changed while copying")
            target.put(key, body, if_absent=True, retain_until=retain_until)
        except ObjectExistsError:
            pass
        except (KeyIndexError, ObjectNotFoundError) as exc:
            log.warning("%s@%s: %s; not copied", manifest.dataset, manifest.snapshot_id, exc)
