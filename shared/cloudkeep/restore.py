"""Restore a committed snapshot into a target (a new table, by default refusing a non-empty one).

Before writing anything, every part is checked to exist with the recorded size. While writing,
each part's sha256 and the content digest of all items are recomputed; a mismatch fails the
restore loudly, naming the part (the target then holds a partial copy and says so).

An incremental snapshot (``cloudkeep.chain``) is restored by replaying its chain in order: the
full snapshot, then each incremental one; every snapshot of the chain is prechecked before
anything is written, and each one's content digest is checked as it is written.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO

import zstandard

from . import blobs, chain, layout
from .capabilities import Closes, CopiesObjects, able
from .codec import ContentDigest, DecryptionError, PartLimitError, TruncatedPartError, open_part
from .errors import RestoreError
from .keys import keyring_for
from .manifest import Manifest, PartEntry
from .policy import Policy
from .progress import NullProgress, Progress
from .registry import open_source
from .sources import RestoreWriter, Source, restore_native
from .stores import Store
from .trust import check_policy, expect_for

if TYPE_CHECKING:
    from .changelog.replay import Replay
    from .keys import Keyring

SPOOL_CHUNK = 1 << 20  # bytes read at a time while a part is checked
log = logging.getLogger(__name__)

WRITE_CHUNK = 500
DEFAULT_WORKERS = 8


@dataclass
class RestoreResult:
    dataset: str
    snapshot_id: str
    target: str
    items: int
    seconds: float
    digest_ok: bool | None  # None: restored by the service itself (a native backup), unchecked
    chain: list[str] = field(default_factory=list)  # an incremental snapshot's replayed chain
    via: str | None = None  # a native restore: the service call that did it

    def as_dict(self) -> dict[str, Any]:
        return {
            "ref": f"{self.dataset}@{self.snapshot_id}",
            "dataset": self.dataset,
            "snapshot_id": self.snapshot_id,
            "target": self.target,
            "items": self.items,
            "seconds": round(self.seconds, 3),
            "content_digest_ok": self.digest_ok,
        } | ({"chain": self.chain} if self.chain else {}) | ({"via": self.via} if self.via else {})


def restore(
    policy: Policy,
    store: Store,
    manifest: Manifest,
    target: str,
    *,
    overwrite: bool = False,
    source: Source | None = None,
    progress: Progress | None = None,
    workers: int = DEFAULT_WORKERS,
    keyring: Keyring | None = None,
    allow_unsigned: bool = False,
    replay: Replay | None = None,
) -> RestoreResult:
    """Restore ``manifest`` (and, for an incremental snapshot, its chain) into ``target``. Every
    manifest of the chain is authenticated, checked against the policy's encryption and signing
    requirements (``cloudkeep.trust``; ``allow_unsigned`` accepts an unsigned or unencrypted one)
    and its data key unwrapped before anything is written. With ``replay`` (a point-in-time
    restore, ``cloudkeep.changelog``), the items the change log changed are written in their
    final state instead of the snapshot's."""
    keyring = keyring or keyring_for(policy)
    expect = expect_for(policy, manifest.dataset, allow_unsigned=allow_unsigned)
    spec = policy.dataset(manifest.dataset)
    source = source or open_source(spec.source)
    progress = progress or NullProgress()
    if manifest.source.get("type") != source.kind:
        raise RestoreError(
            f"snapshot {manifest.dataset}@{manifest.snapshot_id} holds a "
            f"{manifest.source.get('type')} source; the policy's dataset is now {source.kind}"
        )
    keyring.authenticate(manifest)  # before anything, native restores included
    check_policy(store, manifest, expect, keyring)
    # A snapshot made by a native job may be restored by the service itself
    # (RestoreTableFromBackup, a Firestore import); an export's parts restore as usual.
    t0 = time.monotonic()
    native = None if replay is not None else restore_native(source, manifest, target,
                                                             overwrite=overwrite)
    if native is not None:
        log.info("restored %s@%s into %s via %s", manifest.dataset, manifest.snapshot_id, target,
                 native.get("via"))
        return RestoreResult(manifest.dataset, manifest.snapshot_id, target, int(native.get("items") or 0),
                             time.monotonic() - t0, None, via=str(native.get("via")))
    # An incremental snapshot is restored by replaying its chain: the full snapshot it starts
    # from, then every incremental one up to it, in order (cloudkeep.chain).
    snapshots = chain.load_chain(store, manifest)
    data_keys: dict[str, bytes | None] = {}
    for snapshot in snapshots:
        data_keys[snapshot.snapshot_id] = keyring.authenticate(snapshot)
        check_policy(store, snapshot, expect, keyring)
        _precheck(store, snapshot)
    copier = able(source, CopiesObjects)
    if copier is not None:  # the S3 source restores objects from the store's blobs
        copier.attach_store(store, manifest.dataset)
    writer = source.open_restore(target, manifest.source, overwrite=overwrite)
    t0 = time.monotonic()
    items = 0
    progress.start(f"restore {manifest.dataset} → {target}", sum(m.totals.items for m in snapshots))
    try:
        for snapshot in snapshots:
            digest = _restore_snapshot(store, snapshot, writer, progress, workers,
                                       data_keys[snapshot.snapshot_id], replay)
            if digest.hexdigest() != snapshot.content_digest.value or digest.count != snapshot.totals.items:
                raise RestoreError(
                    f"the items restored into {target!r} do not match the content digest of "
                    f"{snapshot.dataset}@{snapshot.snapshot_id} ({digest.count} items read, "
                    f"manifest says {snapshot.totals.items})"
                )
            items += digest.count
        if replay is not None:  # the change log's final lines (s16-capture)
            items += replay.write(writer) - replay.replaced
    except RestoreError as exc:
        raise RestoreError(f"{exc}; target {target!r} holds a partial restore") from exc
    finally:
        progress.finish()
        closing = able(writer, Closes)
        if closing is not None:
            closing.close()
    seconds = time.monotonic() - t0
    log.info("restored %s@%s into %s: %d items in %.2fs%s", manifest.dataset, manifest.snapshot_id,
             target, items, seconds,
             f" (a chain of {len(snapshots)} snapshots)" if len(snapshots) > 1 else "")
    return RestoreResult(manifest.dataset, manifest.snapshot_id, target, items, seconds, True,
                         chain=[m.snapshot_id for m in snapshots] if len(snapshots) > 1 else [])


def _restore_snapshot(store: Store, manifest: Manifest, writer: RestoreWriter, progress: Progress,
                      workers: int, data_key: bytes | None = None,
                      replay: Replay | None = None) -> ContentDigest:
    """Write every part of one snapshot (parts in parallel); the digest of the lines read."""
    digest = ContentDigest()
    digest_lock = threading.Lock()

    def one(part: PartEntry) -> None:
        part_digest = _restore_part(store, manifest, part, writer, progress, data_key, replay)
        with digest_lock:
            digest.merge(part_digest)

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(manifest.parts) or 1))) as pool:
        for future in [pool.submit(one, part) for part in manifest.parts]:
            future.result()
    return digest


def _precheck(store: Store, manifest: Manifest) -> None:
    problems = []
    for part in manifest.parts:
        info = store.stat(layout.part_key(manifest.dataset, manifest.snapshot_id, part.name))
        if info is None:
            problems.append(f"part {part.name} is missing")
        elif info.size != part.stored_bytes:
            problems.append(
                f"part {part.name} has {info.size} bytes, manifest says {part.stored_bytes}"
            )
    if not problems and blobs.uses_blobs(manifest):
        # S3 source: every object's content must be there too (sha256 is checked while writing).
        problems += blobs.check_blobs(store, manifest, rehash=False)
    if problems:
        raise RestoreError(
            "refusing to restore a damaged snapshot (nothing was written): " + "; ".join(problems)
        )


def _restore_part(
    store: Store, manifest: Manifest, part: PartEntry, writer: RestoreWriter, progress: Progress,
    data_key: bytes | None = None, replay: Replay | None = None,
) -> ContentDigest:
    digest = ContentDigest(ignores=manifest.content_digest.ignores)
    key = layout.part_key(manifest.dataset, manifest.snapshot_id, part.name)
    with _checked_part(store, key, part) as stream:
        # Within the manifest's limits (stored_bytes, raw_bytes, line length); an encrypted
        # part's every chunk is authenticated before its items are written.
        hashing, lines = open_part(stream, compression=manifest.codec.compression,
                                   stored_bytes=part.stored_bytes, raw_bytes=part.raw_bytes,
                                   data_key=data_key, snapshot_id=manifest.snapshot_id,
                                   part_name=part.name)
        batch: list[bytes] = []
        try:
            for line in lines:
                digest.add_line(line)
                if replay is None or replay.keep(line):
                    batch.append(line)
                if len(batch) >= WRITE_CHUNK:
                    writer.write(batch)
                    progress.advance(len(batch), sum(len(x) for x in batch))
                    batch = []
            if batch:
                writer.write(batch)
                progress.advance(len(batch), sum(len(x) for x in batch))
            hashing.drain()
            hashing.check_size()
        except (TruncatedPartError, DecryptionError, PartLimitError, zstandard.ZstdError) as exc:
            raise RestoreError(f"part {part.name} is damaged: {exc}") from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise RestoreError(f"part {part.name} holds an item that cannot be decoded: {exc}") from exc
    if hashing.sha256.hexdigest() != part.sha256:
        raise RestoreError(f"part {part.name} failed its sha256 check")
    return digest


def _checked_part(store: Store, key: str, part: PartEntry) -> BinaryIO:
    """The part's stored bytes, spooled to a local temporary file and checked against the
    manifest's sha256 and size *before* any of its items is written to a target: a damaged or
    replaced part restores nothing, whatever it decompresses to. Reads at most ``stored_bytes``
    + 1 bytes; the file is deleted when closed."""
    spool = tempfile.TemporaryFile()
    sha = hashlib.sha256()
    size = 0
    try:
        with store.open(key) as stream:
            while chunk := stream.read(min(SPOOL_CHUNK, part.stored_bytes + 1 - size)):
                size += len(chunk)
                sha.update(chunk)
                spool.write(chunk)
                if size > part.stored_bytes:
                    raise RestoreError(f"part {part.name} is damaged: it holds more than the "
                                       f"{part.stored_bytes} bytes its manifest records")
        if size != part.stored_bytes or sha.hexdigest() != part.sha256:
            raise RestoreError(f"part {part.name} failed its sha256 check")
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    return spool
