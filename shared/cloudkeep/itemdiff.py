"""``diff``: which items two snapshots of a dataset hold differently, in flat memory.

Both snapshots are read as what they hold (an incremental one by replaying its chain,
``itemread``), each line's key normalised (``itemkeys``), and *partitioned by key hash* into
temporary bucket files — one file per side and bucket, with as many buckets as it takes for
each to hold about :data:`BUCKET_ITEMS` lines (a bucket that still holds more is partitioned
again on further bits of the hash). One bucket at a time is loaded (per key: a digest of the
item and where its line is in the file) and compared: memory is bounded by the bucket size, not
by the snapshots', and the temporary files are removed when the diff ends.

An item is *changed* when the two lines differ outside the top-level fields the manifest's
content digest ignores (e.g. Firestore's ``update_time``): what a restore would change. With
``keys``, each added, removed and changed key is listed with the fields that differ (spooled
to a temporary file too, read back by the caller).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import struct
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from .codec import ContentDigest, digest_form
from .errors import UsageError
from .itemkeys import key_bytes
from .itemread import SnapshotReadError, TempSpaceError, Trusted, entries, part_lines, spec_of
from .stores import Store

log = logging.getLogger(__name__)

BUCKET_ITEMS = 4_096
"""Lines per side a bucket is sized for (memory per bucket: a few hundred bytes per line)."""
MAX_FANOUT = 256
"""Most buckets one partitioning pass opens per side (more lines: buckets are split again)."""
_HEAD = struct.Struct(">IIB")  # key length, line length, op (0 holds, 1 deleted)
_MAX_DEPTH = 8


class DiffSpaceError(TempSpaceError):
    """The diff's temporary files could not be written (a full or read-only $TMPDIR)."""


@dataclass
class DiffResult:
    """Counts of items added, removed, changed and unchanged from ``ref_a`` to ``ref_b``;
    with keys, :meth:`items` yields one record per added, removed or changed key."""

    dataset: str
    ref_a: str
    ref_b: str
    added: int = 0
    removed: int = 0
    changed: int = 0
    unchanged: int = 0
    keys: bool = False
    chain_a: list[str] = field(default_factory=list)
    chain_b: list[str] = field(default_factory=list)
    _spool: IO[bytes] | None = None

    def counts(self) -> dict[str, Any]:
        """Everything but the items (``items`` is streamed by the callers that print it)."""
        return {"dataset": self.dataset, "ref_a": self.ref_a, "ref_b": self.ref_b,
                "added": self.added, "removed": self.removed, "changed": self.changed,
                "unchanged": self.unchanged}

    def items(self) -> Iterator[dict[str, Any]]:
        """``{"key", "change": added|removed|changed, "fields"}`` per key (with ``keys``)."""
        if self._spool is None:
            return
        self._spool.seek(0)
        for line in self._spool:
            yield json.loads(line)

    def as_dict(self, limit: int | None = None) -> dict[str, Any]:
        """The JSON form: the counts and ``items`` (at most ``limit``; ``items_truncated``
        then says whether more were left out)."""
        out = self.counts()
        items = []
        for n, item in enumerate(self.items()):
            if limit is not None and n >= limit:
                out["items_truncated"] = True
                break
            items.append(item)
        out["items"] = items
        return out

    def close(self) -> None:
        if self._spool is not None:
            self._spool.close()
            self._spool = None

    def __enter__(self) -> DiffResult:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def diff(store_a: Store, a: Trusted, store_b: Store, b: Trusted, *, keys: bool = False,
         bucket_items: int = BUCKET_ITEMS) -> DiffResult:
    """Compare what ``a`` and ``b`` (trusted chains of one dataset) hold. Reads every part of
    both chains (each checked before it is used; each snapshot's content digest checked once
    read); memory stays within one bucket of ``bucket_items`` lines per side."""
    ma, mb = a.manifest, b.manifest
    if ma.source.get("type") != mb.source.get("type"):
        raise UsageError(f"{ma.dataset}@{ma.snapshot_id} and {mb.dataset}@{mb.snapshot_id} hold "
                         "different source types: their items cannot be compared")
    spec = spec_of(mb)
    spec_of(ma)
    result = DiffResult(mb.dataset, f"{ma.dataset}@{ma.snapshot_id}",
                        f"{mb.dataset}@{mb.snapshot_id}", keys=keys,
                        chain_a=[m.snapshot_id for m in a.links] if len(a.links) > 1 else [],
                        chain_b=[m.snapshot_id for m in b.links] if len(b.links) > 1 else [])
    ignores = sorted(set(ma.content_digest.ignores) | set(mb.content_digest.ignores))
    form = digest_form(ignores)
    total = max(a.items_upper_bound, b.items_upper_bound)
    fanout = max(1, min(MAX_FANOUT, -(-total // max(1, bucket_items))))
    try:
        work = tempfile.mkdtemp(prefix="cloudkeep-diff-")
    except OSError as exc:
        raise DiffSpaceError(f"diff needs temporary files in {tempfile.gettempdir()}: {exc}") from exc
    try:
        files_a = _partition(_records(store_a, a, spec), os.path.join(work, "a"), fanout, 0)
        files_b = _partition(_records(store_b, b, spec), os.path.join(work, "b"), fanout, 0)
        if keys:
            result._spool = tempfile.TemporaryFile()
        for bucket_a, bucket_b in zip(files_a, files_b, strict=True):
            _compare(bucket_a, bucket_b, 1, bucket_items, form, result)
    except OSError as exc:  # e.g. no space left for the temporary files
        result.close()
        raise DiffSpaceError(f"diff needs temporary files in {tempfile.gettempdir()} (about the "
                             f"uncompressed size of both snapshots): {exc}") from exc
    except TempSpaceError as exc:  # a part could not be spooled
        result.close()
        raise DiffSpaceError(str(exc)) from exc
    except BaseException:
        result.close()
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.info("diff %s → %s: %d added, %d removed, %d changed, %d unchanged", result.ref_a,
             result.ref_b, result.added, result.removed, result.changed, result.unchanged)
    return result


_Record = tuple[bytes, bytes, bytes | None]  # key hash, key bytes, line (None: deleted)


def _records(store: Store, trusted: Trusted, spec: Any) -> Iterator[_Record]:
    """Every line of the chain, oldest snapshot first, as (hash, key bytes, line | None); each
    snapshot's items checked against its content digest and item count once read."""
    for manifest in trusted.links:
        digest = ContentDigest(ignores=manifest.content_digest.ignores)
        data_key = trusted.data_keys.get(manifest.snapshot_id)
        for part in manifest.parts:
            lines = part_lines(store, manifest, part, data_key)
            for entry in entries(spec, manifest, _counted(lines, digest)):
                kb = key_bytes(entry.key)
                yield hashlib.sha256(kb).digest(), kb, entry.line
        if digest.count != manifest.totals.items or digest.hexdigest() != manifest.content_digest.value:
            raise SnapshotReadError(f"the items of {manifest.dataset}@{manifest.snapshot_id} do "
                                    "not match its content digest")


def _counted(lines: Iterable[bytes], digest: ContentDigest) -> Iterator[bytes]:
    for line in lines:
        digest.add_line(line)
        yield line


def _bucket(digest: bytes, depth: int, fanout: int) -> int:
    return int.from_bytes(digest[2 * depth : 2 * depth + 2], "big") % fanout


_Bucket = tuple[str, int]  # a bucket file's path and how many records it holds


def _partition(records: Iterable[_Record], base: str, fanout: int, depth: int) -> list[_Bucket]:
    """Write ``records`` into ``fanout`` bucket files by their hash at ``depth``."""
    paths = [f"{base}-{depth}-{i:03d}" for i in range(fanout)]
    counts = [0] * fanout
    files = [open(p, "wb", buffering=64 * 1024) for p in paths]  # closed below
    try:
        for digest, kb, line in records:
            at = _bucket(digest, depth, fanout) if fanout > 1 else 0
            counts[at] += 1
            out = files[at]
            out.write(_HEAD.pack(len(kb), len(line or b""), 1 if line is None else 0))
            out.write(digest)
            out.write(kb)
            if line:
                out.write(line)
    finally:
        for f in files:
            f.close()
    return list(zip(paths, counts, strict=True))


def _read(path: str) -> Iterator[tuple[int, _Record]]:
    """The records of a bucket file with each one's offset."""
    with open(path, "rb", buffering=64 * 1024) as f:
        while True:
            offset = f.tell()
            head = f.read(_HEAD.size)
            if not head:
                return
            klen, llen, op = _HEAD.unpack(head)
            digest = f.read(32)
            kb = f.read(klen)
            line = f.read(llen) if op == 0 else None
            yield offset, (digest, kb, line)


_State = dict[bytes, tuple[bytes | None, int]]  # key bytes → (item digest | None: deleted, offset)


def _load(path: str, form: Any) -> _State:
    state: _State = {}
    for offset, (_, kb, line) in _read(path):
        state[kb] = (None if line is None else
                     hashlib.sha256(form(line) if form is not None else line).digest(), offset)
    return state


def _compare(bucket_a: _Bucket, bucket_b: _Bucket, depth: int, bucket_items: int, form: Any,
             result: DiffResult) -> None:
    """Compare one bucket; a bucket still too large is partitioned again, deeper."""
    (path_a, count_a), (path_b, count_b) = bucket_a, bucket_b
    lines = max(count_a, count_b)
    if depth < _MAX_DEPTH and lines > 2 * bucket_items:
        fanout = max(2, min(MAX_FANOUT, -(-lines // bucket_items)))
        sub_a = _partition((r for _, r in _read(path_a)), path_a, fanout, depth)
        sub_b = _partition((r for _, r in _read(path_b)), path_b, fanout, depth)
        os.remove(path_a)
        os.remove(path_b)
        for pa, pb in zip(sub_a, sub_b, strict=True):
            _compare(pa, pb, depth + 1, bucket_items, form, result)
        return
    state_a = _load(path_a, form)
    state_b = _load(path_b, form)
    listed: list[tuple[bytes, str, int | None, int | None]] = []
    for kb in state_a.keys() | state_b.keys():
        had, has = state_a.get(kb), state_b.get(kb)
        held_a = had is not None and had[0] is not None
        held_b = has is not None and has[0] is not None
        if held_a and held_b:
            assert had is not None and has is not None
            if had[0] == has[0]:
                result.unchanged += 1
                continue
            result.changed += 1
            change = "changed"
        elif held_b:
            result.added += 1
            change = "added"
        elif held_a:
            result.removed += 1
            change = "removed"
        else:
            continue
        if result._spool is not None:
            listed.append((kb, change, had[1] if had else None, has[1] if has else None))
    del state_a, state_b
    if result._spool is not None and listed:
        _spool_items(sorted(listed), path_a, path_b, form, result._spool)
    os.remove(path_a)
    os.remove(path_b)


def _line_at(f: IO[bytes], offset: int) -> bytes:
    f.seek(offset)
    klen, llen, _ = _HEAD.unpack(f.read(_HEAD.size))
    f.seek(32 + klen, os.SEEK_CUR)
    return f.read(llen)


def _spool_items(listed: list[tuple[bytes, str, int | None, int | None]], path_a: str,
                 path_b: str, form: Any, spool: IO[bytes]) -> None:
    with open(path_a, "rb") as fa, open(path_b, "rb") as fb:
        for kb, change, off_a, off_b in listed:
            record: dict[str, Any] = {"key": json.loads(kb), "change": change}
            if change == "changed" and off_a is not None and off_b is not None:
                record["fields"] = changed_fields(_line_at(fa, off_a), _line_at(fb, off_b), form)
            spool.write(json.dumps(record, ensure_ascii=False).encode() + b"\n")


def changed_fields(line_a: bytes, line_b: bytes, form: Any = None) -> list[str]:
    """The fields that differ between two lines of one item: top-level fields, and one level
    into a field that is an object in both (``Item.price`` of a DynamoDB line, ``fields.status``
    of a Firestore document, ``item.qty`` of a Cosmos DB item)."""
    if form is not None:
        line_a, line_b = form(line_a), form(line_b)
    a, b = json.loads(line_a), json.loads(line_b)
    if not isinstance(a, dict) or not isinstance(b, dict):
        return []
    out = []
    for name in sorted(a.keys() | b.keys()):
        va, vb = a.get(name), b.get(name)
        if va == vb:
            continue
        if isinstance(va, dict) and isinstance(vb, dict):
            out += [f"{name}.{sub}" for sub in sorted(va.keys() | vb.keys())
                    if va.get(sub) != vb.get(sub)]
        else:
            out.append(name)
    return out
