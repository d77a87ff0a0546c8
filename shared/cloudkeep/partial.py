"""Partial restore: only the selected items of a snapshot, written into a target (the live
dataset included) while every other item of the target stays as it is.

``restore REF --into TARGET [--keys FILE | --key JSON ...] [--where EXPR] [--dry-run]
[--delete-missing]`` (selection: ``cloudkeep.selection``).

Two phases, so that nothing is written from a snapshot that does not check out:

1. *Select.* Every snapshot of the chain (an incremental snapshot replays its chain) is
   authenticated, checked against the policy's trust requirements and prechecked (every part
   there with its recorded size) before anything is read. Then the chain is read newest first,
   every part spooled and its sha256 checked before its lines are looked at (encrypted parts
   are authenticated chunk by chunk); a snapshot read whole has its content digest recomputed
   and compared. With a key list, only the parts whose key index (``keyindex.candidate_parts``)
   may hold one of the keys are read (a snapshot without an index, or with an index that fails
   its check, is read whole). An item's state is the newest the chain holds (a key seen in a newer snapshot is
   skipped in older ones; only the keys of the incremental snapshots are remembered, the full
   snapshot is read last). The items selected — their key among the keys asked, if any, and
   matching the where-expression, if any — are spooled to a local temporary file (never held in
   memory). Keys asked for that the snapshot does not hold (or holds as deleted) are *missing*;
   a key the snapshot holds but whose item the where-expression leaves out is neither.
2. *Apply.* ``--dry-run`` writes nothing: each selected item is compared with the target's
   (``ReadsItems``): ``new``, ``changed`` or ``unchanged`` (ignoring what a restored copy cannot
   keep, the manifest's ``content_digest.ignores``); each missing key is reported, as ``delete``
   when ``--delete-missing`` is given and the target holds it. Otherwise the target is opened as
   a whole restore opens it (refusing a non-empty target unless ``--overwrite``), the selected
   items are written, and with ``--delete-missing`` the missing keys are deleted from the
   target (``DeletesItems``).
"""

from __future__ import annotations

import json
import logging
import struct
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

import zstandard

from . import chain, keyindex, layout
from .capabilities import Closes, CopiesObjects, DeletesItems, ReadsItems, ReadsTarget, able
from .codec import ContentDigest, DecryptionError, PartLimitError, TruncatedPartError, open_part
from .errors import CloudkeepError, RestoreError, UsageError
from .itemkeys import key_bytes, key_of
from .keys import keyring_for
from .manifest import Manifest, PartEntry
from .policy import Policy
from .progress import NullProgress, Progress
from .registry import open_source
from .restore import _checked_part, _precheck
from .selection import Selection
from .sources import Source
from .stores import Store
from .trust import check_policy, expect_for

if TYPE_CHECKING:
    from .keys import Keyring

log = logging.getLogger(__name__)

BATCH = 100  # items compared (read from the target) or written at a time
MAX_LISTED = 100_000  # item records a result lists at most (the counts are always complete)
_LEN = struct.Struct(">I")


@dataclass
class PartialResult:
    """What a partial restore did (or, with ``dry_run``, would do)."""

    dataset: str
    snapshot_id: str
    target: str
    dry_run: bool
    selection: dict[str, Any]
    selected: int = 0  # items of the snapshot selected
    put: int = 0  # items written (would be written)
    new: int | None = None  # dry run: not in the target
    changed: int | None = None  # dry run: in the target, different
    unchanged: int | None = None  # dry run: in the target, the same
    deleted: int = 0  # missing keys deleted (would be deleted) from the target
    missing: int = 0  # keys asked for that the snapshot does not hold
    items: list[dict[str, Any]] = field(default_factory=list)
    items_truncated: bool = False
    seconds: float = 0.0
    chain: list[str] = field(default_factory=list)
    parts_read: int = 0
    parts_skipped: int = 0  # parts the key index says cannot hold a selected key
    needs_overwrite: bool = False  # dry run: the target holds some of the items compared

    def listed(self, record: dict[str, Any]) -> None:
        if len(self.items) < MAX_LISTED:
            self.items.append(record)
        else:
            self.items_truncated = True

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ref": f"{self.dataset}@{self.snapshot_id}",
            "dataset": self.dataset,
            "snapshot_id": self.snapshot_id,
            "target": self.target,
            "partial": True,
            "dry_run": self.dry_run,
            "selection": self.selection,
            "selected": self.selected,
            "put": self.put,
        }
        if self.dry_run:
            out |= {"new": self.new, "changed": self.changed, "unchanged": self.unchanged,
                    "needs_overwrite": self.needs_overwrite}
        out |= {"deleted": self.deleted, "missing": self.missing, "items": self.items,
                "items_truncated": self.items_truncated, "seconds": round(self.seconds, 3),
                "content_digest_ok": True if not self.parts_skipped else None,
                "parts_read": self.parts_read, "parts_skipped": self.parts_skipped}
        return out | ({"chain": self.chain} if self.chain else {})


def restore_partial(
    policy: Policy,
    store: Store,
    manifest: Manifest,
    target: str,
    selection: Selection,
    *,
    overwrite: bool = False,
    dry_run: bool = False,
    delete_missing: bool = False,
    source: Source | None = None,
    progress: Progress | None = None,
    keyring: Keyring | None = None,
    allow_unsigned: bool = False,
) -> PartialResult:
    """Restore the items ``selection`` takes from ``manifest`` (its chain, if incremental) into
    ``target``; with ``dry_run`` write nothing and say, item by item, what would change. Every
    snapshot of the chain is authenticated and checked, and every part read has its sha256
    checked, before anything is written."""
    if delete_missing and selection.keys is None:
        raise UsageError("--delete-missing needs the keys of the items (--keys FILE or --key JSON)")
    keyring = keyring or keyring_for(policy)
    expect = expect_for(policy, manifest.dataset, allow_unsigned=allow_unsigned)
    source = source or open_source(policy.dataset(manifest.dataset).source)
    progress = progress or NullProgress()
    if manifest.source.get("type") != source.kind:
        raise RestoreError(
            f"snapshot {manifest.dataset}@{manifest.snapshot_id} holds a "
            f"{manifest.source.get('type')} source; the policy's dataset is now {source.kind}")
    keyring.authenticate(manifest)
    check_policy(store, manifest, expect, keyring)
    if manifest.codec.framing != "ndjson" or (manifest.native is not None and not manifest.parts):
        raise RestoreError(f"{manifest.dataset}@{manifest.snapshot_id} was made by the service "
                           "itself (a native backup): it cannot be restored item by item")
    snapshots = chain.load_chain(store, manifest)
    data_keys: dict[str, bytes | None] = {}
    for snapshot in snapshots:
        data_keys[snapshot.snapshot_id] = keyring.authenticate(snapshot)
        check_policy(store, snapshot, expect, keyring)
        _precheck(store, snapshot)
    t0 = time.monotonic()
    result = PartialResult(manifest.dataset, manifest.snapshot_id, target, dry_run,
                           selection.summary(),
                           chain=[m.snapshot_id for m in snapshots] if len(snapshots) > 1 else [])
    with tempfile.TemporaryFile() as spool:
        try:
            found = _select(store, snapshots, selection, data_keys, spool, result, progress)
        except RestoreError as exc:
            raise RestoreError(f"{exc}; nothing was written") from exc
        missing = [k for kb, k in (selection.keys or {}).items() if kb not in found]
        result.missing = len(missing)
        spool.seek(0)
        copier = able(source, CopiesObjects)
        if copier is not None:  # the S3 source restores objects from the store's blobs
            copier.attach_store(store, manifest.dataset)
        if dry_run:
            _compare(source, manifest, target, spool, missing, delete_missing, result)
        else:
            _apply(source, manifest, target, spool, missing, delete_missing, overwrite, result,
                   progress)
    result.seconds = time.monotonic() - t0
    log.info("%s %d of %s@%s's items into %s (%d missing, %d deleted)",
             "would restore" if dry_run else "restored", result.put, manifest.dataset,
             manifest.snapshot_id, target, result.missing, result.deleted)
    return result


def _select(store: Store, snapshots: list[Manifest], selection: Selection,
            data_keys: dict[str, bytes | None], spool: IO[bytes], result: PartialResult,
            progress: Progress) -> set[bytes]:
    """Read the chain newest first; spool each selected item's newest state as (key, line).
    Returns the keys of the key list that the snapshot holds as items."""
    found: set[bytes] = set()
    seen: set[bytes] = set()  # keys of the newer (incremental) snapshots already decided
    newest = snapshots[-1]
    progress.start(f"select {newest.dataset}@{newest.snapshot_id}",
                   sum(m.totals.items for m in snapshots))
    try:
        for position, snapshot in enumerate(reversed(snapshots)):
            oldest = position == len(snapshots) - 1
            digest = ContentDigest(ignores=snapshot.content_digest.ignores)
            parts = list(snapshot.parts)
            if selection.keys is not None:  # only the parts that may hold a selected key
                parts = keyindex.candidate_parts(store, snapshot, list(selection.keys.values()),
                                                 data_key=data_keys[snapshot.snapshot_id])
                result.parts_skipped += len(snapshot.parts) - len(parts)
            for line in _lines(store, snapshot, parts, data_keys[snapshot.snapshot_id], result):
                digest.add_line(line)
                progress.advance(1, len(line))
                try:
                    doc = json.loads(line)
                except ValueError as exc:
                    raise RestoreError(f"{snapshot.dataset}@{snapshot.snapshot_id} holds an "
                                       f"item that cannot be decoded: {exc}") from exc
                key = key_of(snapshot.source, doc)
                if key is None:
                    raise RestoreError(f"{snapshot.dataset}@{snapshot.snapshot_id} holds a line "
                                       "without an item key")
                kb = key_bytes(key)
                if kb in seen:
                    continue  # a newer snapshot of the chain decided this item
                if not oldest:
                    seen.add(kb)
                if not selection.wants_key(kb):
                    continue
                fields = selection.fields(doc)
                if fields is None:
                    continue  # deleted in the snapshot: missing
                if selection.keys is not None:
                    found.add(kb)  # in the snapshot (selected or not by --where): not missing
                if not selection.matches(fields):
                    continue
                spool.write(_LEN.pack(len(kb)) + kb + _LEN.pack(len(line)) + line)
                result.selected += 1
            if len(parts) == len(snapshot.parts) and (
                    digest.hexdigest() != snapshot.content_digest.value
                    or digest.count != snapshot.totals.items):
                raise RestoreError(
                    f"refusing to restore from {snapshot.dataset}@{snapshot.snapshot_id}: its "
                    f"items do not match its content digest ({digest.count} items read, "
                    f"manifest says {snapshot.totals.items})")
    finally:
        progress.finish()
    return found


def _lines(store: Store, manifest: Manifest, parts: list[PartEntry], data_key: bytes | None,
           result: PartialResult) -> Iterator[bytes]:
    """Every line of these parts of ``manifest``, each part's sha256 and size checked before
    its first line is given (``restore._checked_part``)."""
    for part in parts:
        key = layout.part_key(manifest.dataset, manifest.snapshot_id, part.name)
        with _checked_part(store, key, part) as stream:
            try:
                hashing, lines = open_part(
                    stream, compression=manifest.codec.compression, stored_bytes=part.stored_bytes,
                    raw_bytes=part.raw_bytes, data_key=data_key, snapshot_id=manifest.snapshot_id,
                    part_name=part.name)
                yield from lines
                hashing.drain()
                hashing.check_size()
            except (TruncatedPartError, DecryptionError, PartLimitError, zstandard.ZstdError) as exc:
                raise RestoreError(f"part {part.name} is damaged: {exc}") from exc
            if hashing.sha256.hexdigest() != part.sha256:
                raise RestoreError(f"part {part.name} failed its sha256 check")
        result.parts_read += 1


def _spooled(spool: IO[bytes]) -> Iterator[list[tuple[bytes, bytes]]]:
    """The spooled (key bytes, line) pairs, :data:`BATCH` at a time."""
    batch: list[tuple[bytes, bytes]] = []
    while header := spool.read(_LEN.size):
        kb = spool.read(_LEN.unpack(header)[0])
        line = spool.read(_LEN.unpack(spool.read(_LEN.size))[0])
        batch.append((kb, line))
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _comparable(line: bytes | None, ignores: list[str]) -> Any:
    if line is None:
        return None
    doc = json.loads(line)
    return {k: v for k, v in doc.items() if k not in ignores} if isinstance(doc, dict) else doc


def _target_exists(source: Source, manifest: Manifest, target: str) -> bool:
    """Whether ``target`` exists (True when the source cannot tell): a target that does not
    holds nothing to delete, and is not created to delete nothing."""
    targets = able(source, ReadsTarget)
    if targets is None:
        return True
    reader = targets.target_reader(target, manifest.source)
    closing = able(reader, Closes)
    if closing is not None:
        closing.close()
    return reader is not None


def _holds(recorded: dict[str, Any], line: bytes | None, key: Any) -> bool:
    """Whether the target's ``line`` (``ReadsItems``) is the item of exactly ``key``: the key
    the live item has, normalised, is the one asked for. A target that finds an item under
    another spelling of a key (Cosmos DB: partition key ``1.0`` for ``1``) does not make it a
    missing key to delete — the snapshot may hold that item under its own spelling."""
    if line is None:
        return False
    try:
        held = key_of(recorded, json.loads(line))
    except ValueError:
        return False
    return held is not None and key_bytes(held) == key_bytes(key)


def _compare(source: Source, manifest: Manifest, target: str, spool: IO[bytes],
             missing: list[Any], delete_missing: bool, result: PartialResult) -> None:
    """The dry run: each selected item against the target's, each missing key looked up."""
    targets = able(source, ReadsTarget)
    if targets is None:
        raise UsageError(f"{source.kind} targets cannot be read item by item: no --dry-run")
    reader = targets.target_reader(target, manifest.source)
    ignores = list(manifest.content_digest.ignores)
    result.new = result.changed = result.unchanged = 0
    try:
        for batch in _spooled(spool):
            keys = [json.loads(kb) for kb, _ in batch]
            live = reader.read_items(keys) if reader is not None else {}
            for (kb, line), key in zip(batch, keys, strict=True):
                now = live.get(kb)
                result.needs_overwrite |= now is not None
                state = ("new" if now is None else "unchanged"
                         if _comparable(now, ignores) == _comparable(line, ignores) else "changed")
                setattr(result, state, int(getattr(result, state)) + 1)
                result.put += 1
                result.listed({"key": key, "action": "put", "change": state})
        for start in range(0, len(missing), BATCH):
            keys = missing[start : start + BATCH]
            live = reader.read_items(keys) if reader is not None else {}
            for key in keys:
                present = _holds(manifest.source, live.get(key_bytes(key)), key)
                result.needs_overwrite |= present
                if present and delete_missing:
                    result.deleted += 1
                    result.listed({"key": key, "action": "delete", "live": True})
                else:
                    result.listed({"key": key, "action": "missing", "live": present})
    finally:
        closing = able(reader, Closes)
        if closing is not None:
            closing.close()


def _apply(source: Source, manifest: Manifest, target: str, spool: IO[bytes], missing: list[Any],
           delete_missing: bool, overwrite: bool, result: PartialResult,
           progress: Progress) -> None:
    """Write the selected items; delete the missing keys the target holds (``--delete-missing``).
    Nothing selected and nothing to delete: the target is not even opened (nor created)."""
    if not result.selected and not (delete_missing and missing and _target_exists(source,
                                                                                 manifest, target)):
        for key in missing:
            result.listed({"key": key, "action": "missing", "live": None})
        return
    writer = source.open_restore(target, manifest.source, overwrite=overwrite)
    deleter = able(writer, DeletesItems)
    if delete_missing and missing and deleter is None:
        raise UsageError(f"{source.kind} targets cannot delete items: no --delete-missing")
    progress.start(f"restore {result.selected} items of {manifest.dataset} → {target}", result.selected)
    try:
        try:
            for batch in _spooled(spool):
                result.put += writer.write([line for _, line in batch])
                progress.advance(len(batch), sum(len(line) for _, line in batch))
                for kb, _ in batch:
                    result.listed({"key": json.loads(kb), "action": "put"})
            reader = able(writer, ReadsItems)
            for start in range(0, len(missing), BATCH):
                keys = missing[start : start + BATCH]
                live = reader.read_items(keys) if reader is not None else None
                present = [k for k in keys
                           if live is None or _holds(manifest.source, live.get(key_bytes(k)), k)]
                if delete_missing and deleter is not None and present:
                    deleter.delete_keys(present)
                    result.deleted += len(present)
                for key in keys:
                    gone = delete_missing and key in present
                    result.listed({"key": key, "action": "delete" if gone else "missing",
                                   "live": None if live is None else key in present})
        except RestoreError as exc:
            raise RestoreError(f"{exc}; target {target!r} holds {result.put} of the "
                               f"{result.selected} selected items") from exc
        except CloudkeepError:
            log.error("partial restore into %s stopped: %d of the %d selected items written, "
                      "%d missing keys deleted", target, result.put, result.selected,
                      result.deleted)
            raise
    finally:
        progress.finish()
        closing = able(writer, Closes)
        if closing is not None:
            closing.close()
