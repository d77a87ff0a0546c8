"""An in-memory source: a real implementation of the Source protocol and of every source
capability, for tests and for trying cloudkeep out without a cloud.

:class:`MemoryWorld` stands in for a cloud account: named tables of JSON items (keys are strings,
items any JSON value), every change numbered by a global *version*, so a table can be read as it
was at a version (a consistent, point-in-time read that a resumed run repeats exactly), and the
changes after a version listed (incremental snapshots). Native "backups" are copies of a table
kept in the world, made by jobs that advance one step per poll.

Lines are canonical, lossless and self-describing: ``{"key": K, "item": V}`` for an item and, in
an incremental snapshot only, ``{"delete": true, "key": K}`` for a deleted one — UTF-8 JSON with
sorted keys and no insignificant whitespace, so the same item always gives the same bytes (floats
are kept by their shortest repr; NaN and infinities are refused when an item is put).

- :class:`MemorySource` — a scanned source: :class:`~cloudkeep.capabilities.Resumable` (cursor:
  the last key read), :class:`~cloudkeep.capabilities.Summarizes`,
  :class:`~cloudkeep.capabilities.SampleCheck`, restore-target naming rules and scratch targets
  for drills.
- :class:`MemoryIncrementalSource` — the same, :class:`~cloudkeep.capabilities.Incremental`:
  after the first snapshot, each holds only the changes since the previous one (a chain).
- :class:`MemoryNativeSource` — the same, set to run a native job
  (:class:`~cloudkeep.sources.NativeJobSource`): a job copies the table into a native backup;
  :class:`~cloudkeep.capabilities.NativeCheck`, :class:`~cloudkeep.capabilities.NativeRestore`,
  :class:`~cloudkeep.capabilities.NativeRetention` and :class:`~cloudkeep.capabilities.Drillable`
  act on those backups.
- :class:`MemoryObjectSource` — the same, copying items into the store as content-addressed blobs
  (:class:`~cloudkeep.capabilities.CopiesObjects`), as the S3 source copies objects.

Everything here is thread-safe (the engine reads segments and restores parts from several threads).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .. import layout
from ..capabilities import (
    CopiesObjects,
    Drillable,
    Incremental,
    NativeCheck,
    NativeRestore,
    NativeRetention,
    Resumable,
    SampleCheck,
    Summarizes,
)
from ..codec import ContentDigest
from ..errors import ObjectExistsError, RestoreError, SourceError
from . import JobContext, JobPoll, NativeJobSource, NativeOutcome

if TYPE_CHECKING:
    from ..manifest import Manifest
    from ..stores import Store

KIND = "memory"
#: What a table's history records for a deletion (an item may itself be JSON null).
GONE: Any = type("Gone", (), {"__repr__": lambda self: "GONE"})()
_NAME = re.compile(r"[A-Za-z0-9._-]{1,128}")


def encode(key: str, item: Any) -> bytes:
    """The canonical line of ``item`` under ``key``."""
    return json.dumps({"key": key, "item": item}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False, allow_nan=False).encode()


def encode_delete(key: str) -> bytes:
    """The canonical line saying ``key`` was deleted (incremental snapshots only)."""
    return json.dumps({"delete": True, "key": key}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


def decode(line: bytes) -> tuple[str, Any, bool]:
    """(key, item, deleted) of a line; SourceError when it is not a memory source line."""
    try:
        doc = json.loads(line)
    except ValueError as exc:
        raise SourceError(f"not a memory source line: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("key"), str):
        raise SourceError("not a memory source line ({\"key\": ..., \"item\": ...})")
    if doc.get("delete") is True:
        return doc["key"], None, True
    if "item" not in doc:
        raise SourceError(f"memory source line for {doc['key']!r} has no item")
    return doc["key"], doc["item"], False


def _check_json(value: Any) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value!r} has no lossless JSON form")
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValueError(f"object key {k!r} is not a string")
            _check_json(v)
    elif isinstance(value, list):
        for v in value:
            _check_json(v)
    elif not (value is None or isinstance(value, (str, int, float, bool))):
        raise ValueError(f"{type(value).__name__} is not a JSON value")


def segment_of(key: str, total: int) -> int:
    """The segment ``key`` is read in (stable across processes)."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % total


@dataclass
class NativeBackup:
    """A native backup held by the world: a copy of a table at one version."""

    backup_id: str
    table: str
    dataset: str
    snapshot_id: str
    created: datetime
    version: int
    items: dict[str, Any]


@dataclass
class MemoryWorld:
    """An account of in-memory tables. Each table keeps its history: key → [(version, item or
    :data:`GONE` for a deletion)], versions increasing, so it can be read at any version."""

    tables: dict[str, dict[str, list[tuple[int, Any]]]] = field(default_factory=dict)
    version: int = 0
    backups: dict[str, NativeBackup] = field(default_factory=dict)
    jobs: dict[str, int] = field(default_factory=dict)  # native job (its backup id) → polls
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def create(self, table: str) -> None:
        """Create ``table`` (empty) if it does not exist."""
        with self.lock:
            self.tables.setdefault(table, {})

    def exists(self, table: str) -> bool:
        with self.lock:
            return table in self.tables

    def drop(self, table: str) -> None:
        """Delete ``table`` and its history (nothing if it does not exist)."""
        with self.lock:
            self.tables.pop(table, None)

    def put(self, table: str, key: str, item: Any) -> int:
        """Create or replace one item; returns the change's version."""
        _check_json(item)
        with self.lock:
            self.version += 1
            self.tables.setdefault(table, {}).setdefault(key, []).append((self.version, item))
            return self.version

    def delete(self, table: str, key: str) -> int:
        """Delete one item (a no-op change if it is absent); returns the change's version."""
        with self.lock:
            self.version += 1
            history = self.tables.setdefault(table, {}).get(key)
            if history is not None and history[-1][1] is not GONE:
                history.append((self.version, GONE))
            return self.version

    def items(self, table: str, at: int | None = None) -> dict[str, Any]:
        """The live items of ``table`` at version ``at`` (default: now), by key."""
        with self.lock:
            out: dict[str, Any] = {}
            for key, history in self.tables.get(table, {}).items():
                value = _at(history, at)
                if value is not GONE:
                    out[key] = value
            return out

    def changes(self, table: str, after: int, upto: int) -> dict[str, Any]:
        """Keys changed in ``(after, upto]``, with their item at ``upto`` (:data:`GONE`:
        deleted)."""
        with self.lock:
            out: dict[str, Any] = {}
            for key, history in self.tables.get(table, {}).items():
                if any(after < v <= upto for v, _ in history):
                    before, now = _at(history, after), _at(history, upto)
                    if before is not GONE or now is not GONE:
                        out[key] = now
            return out


def _cursor_after(keys: list[str]) -> Callable[[int], Any]:
    """The cursor after the i-th of ``keys``: the last key read."""
    return lambda i: {"after": keys[i]}


def _at(history: list[tuple[int, Any]], at: int | None) -> Any:
    value: Any = GONE
    for version, item in history:
        if at is not None and version > at:
            break
        value = item
    return value


class MemoryWriter:
    """Writes decoded lines into a world table; safe from several threads."""

    def __init__(self, world: MemoryWorld, target: str) -> None:
        self.world = world
        self.target = target

    def write(self, lines: list[bytes]) -> int:
        for line in lines:
            key, item, deleted = decode(line)
            if deleted:
                self.world.delete(self.target, key)
            else:
                self.world.put(self.target, key, item)
        return len(lines)


class MemorySource(Resumable, Summarizes, SampleCheck):
    """Reads one table of a :class:`MemoryWorld` in ``segments`` segments of pages of
    ``page_size`` lines, at the version ``describe()`` saw."""

    kind = KIND
    incremental = False  # MemoryIncrementalSource: a snapshot continues the previous one

    def __init__(self, world: MemoryWorld | None = None, table: str = "items", *,
                 segments: int = 2, page_size: int = 10) -> None:
        self.world = world if world is not None else MemoryWorld()
        self.table = table
        self.segments = segments
        self.page_size = page_size
        self.world.create(table)
        self._previous: Manifest | None = None
        self._version: int | None = None
        self._since: int | None = None  # an incremental read: changes after this version
        self._read = 0
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ the items (the "cloud")

    def put(self, key: str, item: Any) -> None:
        """Create or replace one live item."""
        self.world.put(self.table, key, item)

    def delete(self, key: str) -> None:
        """Delete one live item."""
        self.world.delete(self.table, key)

    def fill(self, count: int, *, prefix: str = "k", pad: int = 0) -> None:
        """Put ``count`` varied items (``{prefix}{i:05d}``): text, numbers beyond 64 bits,
        floats, booleans, null, nested lists and objects, unicode."""
        for i in range(count):
            self.put(f"{prefix}{i:05d}", {"i": i, "big": 2**70 + i, "f": i / 7, "ok": i % 2 == 0,
                                          "none": None, "tags": ["a", {"b": [i]}],
                                          "text": f"caf\u00e9 \u2615 {i}" + "x" * pad})

    def live(self, table: str | None = None) -> dict[str, Any]:
        """The live items of ``table`` (default: the source's)."""
        return self.world.items(table or self.table)

    # ------------------------------------------------------------------ Source

    def describe(self) -> dict[str, Any]:
        """The table at the current version; with ``incremental``, the chain record."""
        with self.world.lock:
            version = self.world.version
            count = len(self.world.items(self.table, version))
        self._version, self._since = version, None
        out: dict[str, Any] = {"type": KIND, "table": self.table, "version": version,
                               "item_count_estimate": count}
        if self.incremental:
            out["incremental"] = self._chain_record(version)
            if out["incremental"]["kind"] == "incremental":
                out["method"] = "changes"
        return out

    def _chain_record(self, version: int) -> dict[str, Any]:
        prev = self._previous
        before = prev.source.get("incremental") if prev is not None else None
        if (prev is None or not isinstance(before, dict) or prev.source.get("table") != self.table
                or not isinstance(before.get("version"), int) or before["version"] > version):
            return {"kind": "full", "previous": None, "base": None, "sequence": 0,
                    "version": version}
        self._since = int(before["version"])
        return {"kind": "incremental", "previous": prev.snapshot_id,
                "base": before.get("base") or prev.snapshot_id,
                "sequence": int(before.get("sequence") or 0) + 1, "version": version}

    def plan_segments(self, described: dict[str, Any]) -> int:
        return self.segments

    def read_segment(self, segment: int, total: int) -> Iterator[list[bytes]]:
        for page, _ in self.read_segment_from(segment, total, None):
            yield page

    def open_restore(self, target: str, recorded: dict[str, Any], *, overwrite: bool) -> MemoryWriter:
        """A writer into table ``target`` (created if absent); refuses a non-empty one unless
        ``overwrite``."""
        if self.world.items(target) and not overwrite:
            raise RestoreError(f"target table {target!r} is not empty; refusing to write into it "
                               f"(pass --overwrite to write the snapshot's items over it)")
        self.world.create(target)
        return MemoryWriter(self.world, target)

    def scan_digest(self, target: str) -> tuple[int, str]:
        digest = ContentDigest()
        for key, item in self.world.items(target).items():
            digest.add_line(encode(key, item))
        return digest.count, digest.hexdigest()

    # ------------------------------------------------------------------ Resumable

    def plan_state(self) -> dict[str, Any]:
        if self._version is None:
            raise SourceError("memory source: plan_state before describe")
        return {"version": self._version, "since": self._since}

    def resume_plan(self, state: dict[str, Any], segments: int) -> None:
        if segments != self.segments:
            raise SourceError(f"memory source: the plan has {segments} segments, the source "
                              f"{self.segments}")
        self._version = int(state["version"])
        self._since = None if state.get("since") is None else int(state["since"])

    def read_segment_from(
        self, segment: int, total: int, cursor: dict[str, Any] | None
    ) -> Iterator[tuple[list[bytes], Callable[[int], Any] | None]]:
        """Pages of ``segment`` in key order, after the key ``cursor`` names; each page with a
        function giving the cursor after its i-th line."""
        if self._version is None:
            raise SourceError("memory source: read before describe (or resume_plan)")
        after = None if cursor is None else str(cursor["after"])
        if self._since is None:
            rows = self.world.items(self.table, self._version)
        else:
            rows = self.world.changes(self.table, self._since, self._version)
        keys = sorted(k for k in rows if segment_of(k, total) == segment
                      and (after is None or k > after))
        for start in range(0, len(keys), self.page_size):
            chunk = keys[start : start + self.page_size]
            page = [encode_delete(k) if rows[k] is GONE else encode(k, rows[k]) for k in chunk]
            with self._lock:
                self._read += len(page)
            yield page, _cursor_after(chunk)

    # ------------------------------------------------------------------ Summarizes

    def read_summary(self) -> dict[str, Any]:
        return {"read_version": self._version}

    # ------------------------------------------------------------------ SampleCheck

    def sample_check(self, lines: list[bytes]) -> list[str]:
        live = self.world.items(self.table)
        out = []
        for line in lines:
            try:
                key, item, deleted = decode(line)
            except SourceError:
                out.append("differs")
                continue
            if deleted:
                out.append("matched" if key not in live else "changed")
            elif key not in live:
                out.append("deleted")
            else:
                out.append("matched" if encode(key, live[key]) == line else "changed")
        return out

    # ------------------------------------------------------------------ restore targets, drills

    def target_problem(self, target: str, manifest: Manifest) -> str | None:
        """A restore target is a table name of the world (nothing is read or written)."""
        if not _NAME.fullmatch(target):
            return "a table name is 1-128 letters, digits, '.', '_' or '-'"
        return None

    def scratch_target(self, token: str) -> str:
        """A table name for a restore drill (dropped after it)."""
        return f"{self.table}-drill-{token}"

    def drop_target(self, target: str, recorded: dict[str, Any]) -> None:
        """Drop a drill's scratch table (gone already is fine); never the source's own."""
        if target == self.table:
            raise SourceError(f"refusing to drop the source table {target!r}")
        self.world.drop(target)


class MemoryIncrementalSource(MemorySource, Incremental):
    """A memory source taking incremental snapshots: a snapshot that follows a committed one of
    the same table holds only the changes since it (deleted items as delete lines); a restore
    replays the chain (cloudkeep.chain)."""

    incremental = True

    def set_previous(self, manifest: Manifest | None) -> None:
        """The dataset's latest committed snapshot (None: there is none), before describe."""
        self._previous = manifest


class MemoryNativeSource(MemorySource, NativeJobSource, NativeCheck, NativeRestore,
                         NativeRetention, Drillable):
    """A memory source set to run a native job: ``start_job`` copies the table (at that moment)
    into a native backup; ``script`` says what this source's next polls find (``running``,
    ``failed``; once it is used up, ``done``). ``started`` lists the snapshot ids it started jobs
    for, ``polls`` counts its polls."""

    def __init__(self, world: MemoryWorld | None = None, table: str = "items", *,
                 script: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(world, table, **kwargs)
        self.script = list(script or [])
        self.started: list[str] = []
        self.polls = 0

    def native_method(self) -> str | None:
        return "native"

    def start_job(self, ctx: JobContext) -> dict[str, Any]:
        with self.world.lock:
            version = self.world.version
            backup_id = f"{ctx.dataset}.{ctx.snapshot_id}.{len(self.world.jobs)}"
            self.world.backups[backup_id] = NativeBackup(
                backup_id, self.table, ctx.dataset, ctx.snapshot_id, ctx.started_at, version,
                self.world.items(self.table, version))
            self.world.jobs[backup_id] = 0
        self.started.append(ctx.snapshot_id)
        return {"backup_id": backup_id}

    def poll_job(self, ctx: JobContext, job: dict[str, Any]) -> JobPoll:
        backup_id = str(job.get("backup_id"))
        with self.world.lock:
            if backup_id not in self.world.jobs:
                return JobPoll("failed", job, f"no job {backup_id!r}")
            self.world.jobs[backup_id] += 1
            self.polls += 1
            step = self.script.pop(0) if self.script else "done"
            if step == "failed":
                self.world.backups.pop(backup_id, None)
        if step == "failed":
            return JobPoll("failed", job, "the memory backup failed (scripted)")
        return JobPoll("done" if step == "done" else "running", job, f"poll {self.polls}")

    def finish_job(self, ctx: JobContext, job: dict[str, Any]) -> NativeOutcome:
        backup = self.world.backups.get(str(job.get("backup_id")))
        if backup is None:
            raise SourceError(f"native backup {job.get('backup_id')!r} is gone")
        digest = ContentDigest()
        for key, item in backup.items.items():
            digest.add_line(encode(key, item))
        return NativeOutcome(
            described={"type": KIND, "table": self.table, "version": backup.version,
                       "item_count_estimate": len(backup.items), "method": "native",
                       "consistency": {"mode": "point-in-time",
                                       "time": backup.created.isoformat()}},
            native={"kind": "memory-backup", "backup_id": backup.backup_id,
                    "items": len(backup.items), "digest": digest.hexdigest()})

    def check_native(self, manifest: Manifest) -> list[str]:
        backup_id = str((manifest.native or {}).get("backup_id"))
        if backup_id not in self.world.backups:
            return [f"native backup {backup_id} is gone"]
        return []

    def restore_native(self, manifest: Manifest, target: str, *, overwrite: bool) -> Any:
        """Restore a native backup into ``target``; refuses a non-empty target unless
        ``overwrite``."""
        if not manifest.native:
            return None
        backup_id = str(manifest.native.get("backup_id"))
        backup = self.world.backups.get(backup_id)
        if backup is None:
            raise RestoreError(f"native backup {backup_id} is gone")
        writer = self.open_restore(target, manifest.source, overwrite=overwrite)
        writer.write([encode(k, v) for k, v in sorted(backup.items.items())])
        return {"via": "memory-backup", "items": len(backup.items), "backup_id": backup_id}

    def delete_native(self, dataset: str, snapshot_id: str, native: dict[str, Any]) -> list[str]:
        with self.world.lock:
            gone = self.world.backups.pop(str(native.get("backup_id")), None)
        return [gone.backup_id] if gone is not None else []

    def sweep_native(self, dataset: str, keep: set[str], older_than: datetime) -> list[str]:
        with self.world.lock:
            doomed = [b.backup_id for b in self.world.backups.values()
                      if b.dataset == dataset and b.snapshot_id not in keep
                      and b.created < older_than]
            for backup_id in doomed:
                del self.world.backups[backup_id]
        return doomed

    def drill(self, manifest: Manifest, **options: Any) -> dict[str, Any]:
        """Restore the native backup into a scratch table, compare it, drop it (always)."""
        target = self.scratch_target(hashlib.sha256(manifest.snapshot_id.encode()).hexdigest()[:8])
        problems: list[str] = []
        try:
            restored = self.restore_native(manifest, target, overwrite=False)
            count, digest = self.scan_digest(target)
            if restored is None or count != (manifest.native or {}).get("items") or \
                    digest != (manifest.native or {}).get("digest"):
                problems.append(f"the drill table {target} does not hold the backup's items")
        except (RestoreError, SourceError) as exc:
            problems.append(str(exc))
        finally:
            self.world.drop(target)
        return {"target": target, "problems": problems, "cleaned_up": not self.world.exists(target)}


class MemoryObjectSource(MemorySource, CopiesObjects):
    """A memory source that copies each item's bytes into the store as a content-addressed blob
    (as the S3 source copies objects); its lines name the blob, and a restore reads it back."""

    def __init__(self, world: MemoryWorld | None = None, table: str = "items", **kwargs: Any) -> None:
        super().__init__(world, table, **kwargs)
        self.store: Store | None = None
        self.dataset = ""
        self.retain_until: datetime | None = None

    def attach_store(self, store: Store, dataset: str, retain_until: datetime | None = None) -> None:
        self.store, self.dataset, self.retain_until = store, dataset, retain_until

    def _blob_key(self, sha: str) -> str:
        return layout.blob_key(self.dataset, sha)

    def read_segment_from(
        self, segment: int, total: int, cursor: dict[str, Any] | None
    ) -> Iterator[tuple[list[bytes], Callable[[int], Any] | None]]:
        if self.store is None:
            raise SourceError("memory object source: no store attached")
        for page, after in super().read_segment_from(segment, total, cursor):
            out = []
            for line in page:
                key, item, deleted = decode(line)
                if deleted:
                    out.append(line)
                    continue
                body = encode(key, item)
                sha = hashlib.sha256(body).hexdigest()
                try:
                    self.store.put(self._blob_key(sha), body, if_absent=True)
                except ObjectExistsError:
                    pass  # the same content, already there (blobs are named by their content)
                out.append(_blob_line(key, body))
            yield out, after

    def open_restore(self, target: str, recorded: dict[str, Any], *, overwrite: bool) -> MemoryWriter:
        writer = super().open_restore(target, recorded, overwrite=overwrite)
        store, blob_key = self.store, self._blob_key

        class BlobWriter(MemoryWriter):
            def write(self, lines: list[bytes]) -> int:
                if store is None:
                    raise RestoreError("memory object source: no store attached")
                resolved = []
                for line in lines:
                    doc = json.loads(line)
                    resolved.append(line if doc.get("delete") is True
                                    else store.get(blob_key(str(doc["sha256"]))))
                return super().write(resolved)

        return BlobWriter(writer.world, target)

    def scan_digest(self, target: str) -> tuple[int, str]:
        digest = ContentDigest()
        for key, item in self.world.items(target).items():
            digest.add_line(_blob_line(key, encode(key, item)))
        return digest.count, digest.hexdigest()

    def sample_check(self, lines: list[bytes]) -> list[str]:
        """Per blob record line: is the live item still the blob it names?"""
        live = self.world.items(self.table)
        out = []
        for line in lines:
            try:
                doc = json.loads(line)
                key = str(doc["key"])
            except (ValueError, KeyError, TypeError):
                out.append("differs")
                continue
            if doc.get("delete") is True:
                out.append("matched" if key not in live else "changed")
            elif key not in live:
                out.append("deleted")
            else:
                out.append("matched" if _blob_line(key, encode(key, live[key])) == line
                           else "changed")
        return out


def _blob_line(key: str, body: bytes) -> bytes:
    """The line naming the blob ``body`` of item ``key``."""
    return json.dumps({"key": key, "sha256": hashlib.sha256(body).hexdigest(), "size": len(body)},
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
