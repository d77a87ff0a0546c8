"""Object versions of a versioned bucket for ``cloudkeep capture`` (ListObjectVersions).

Every version listed that is newer than the recorded position becomes a change: a version is an
insert (the key's first version) or a modify, its content copied into the dataset's blobs (by
version id: versions never change) and its line the snapshot's own object record; a delete marker
is a remove. The position is ``{"bucket", "through": newest LastModified seen, "recent":
{version id: LastModified}}`` — versions seen within :data:`LOOKBACK` of ``through``, so a version
whose LastModified is a little older than one already seen (an upload that took a while) is still
picked up, once. ListObjectVersions lists the whole bucket (under the prefix) on every read: a
cost of requests per object version, not per change (docs/continuous.md).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from ... import layout
from ...changes import Change, ChangeBatch, utc
from ...codec import HashingReader, canonical_json
from ...errors import ObjectExistsError, SourceError
from .errors import _errors
from .listing import ARCHIVE_CLASSES

if TYPE_CHECKING:
    from ...stores import Store


class _Bucket(Protocol):
    """What the version reader needs of the S3 source."""

    bucket: str
    prefix: str
    store: Store | None
    dataset: str | None

    @property
    def client(self) -> Any: ...

    def wanted(self, key: str) -> bool: ...

    def _record(self, key: str, resp: dict[str, Any], sha256: str, storage_class: str
                ) -> dict[str, Any]: ...

log = logging.getLogger(__name__)

LOOKBACK = timedelta(minutes=15)
BATCH = 500
SMALL = 8 * 1024 * 1024


def _iso(at: datetime) -> str:
    return utc(at).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(text: str) -> datetime:
    return utc(datetime.fromisoformat(text.replace("Z", "+00:00")))


def _sequence(at: datetime, key: str, version: str, rank: int = 0) -> str:
    """A version's sequence: its time, its rank among the key's versions of that same time
    (oldest 0: S3 stamps LastModified to the second, so two writes of one key in one second tie),
    and a tag of the version id."""
    tag = hashlib.sha256(f"{key}\0{version}".encode()).hexdigest()[:16]
    return f"{utc(at).strftime('%Y%m%dT%H%M%S%fZ')}-{rank:04d}-{tag}"


class VersionReader:
    """One capture read of ``source``'s bucket (see the module docstring)."""

    def __init__(self, source: _Bucket) -> None:
        self.source = source

    def _keys(self) -> Iterator[list[dict[str, Any]]]:
        """Each wanted key's versions and delete markers, oldest first (ListObjectVersions lists
        a key's versions together, newest first; a key may continue on the next page)."""
        src = self.source
        paginator = src.client.get_paginator("list_object_versions")
        held: list[dict[str, Any]] = []
        listed = 0  # listing order: a key's versions come newest first
        with _errors(f"listing the object versions of bucket {src.bucket}"):
            for page in paginator.paginate(Bucket=src.bucket, Prefix=src.prefix):
                entries = ([v | {"_marker": False} for v in page.get("Versions", [])]
                           + [m | {"_marker": True} for m in page.get("DeleteMarkers", [])])
                entries.sort(key=lambda e: e["Key"])
                for entry in entries:
                    if held and held[0]["Key"] != entry["Key"]:
                        yield self._ordered(held)
                        held = []
                    listed += 1
                    if src.wanted(entry["Key"]):
                        held.append(entry | {"_at": utc(entry["LastModified"]), "_pos": listed,
                                             "_vid": str(entry.get("VersionId") or "null")})
        if held:
            yield self._ordered(held)

    @staticmethod
    def _ordered(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One key's entries oldest first (same-second ones in reverse listing order: S3 lists a
        key's versions newest first), each marked ``_first`` when it starts a life of the object
        (its first version, or the first after a delete marker) and given its ``_seq``."""
        entries.sort(key=lambda e: (e["_at"], bool(e.get("IsLatest", False)), -e.get("_pos", 0)))
        previous_removed = True
        rank, previous_at = 0, None
        for entry in entries:
            entry["_first"] = previous_removed and not entry["_marker"]
            previous_removed = entry["_marker"]
            rank = rank + 1 if entry["_at"] == previous_at else 0
            previous_at = entry["_at"]
            entry["_seq"] = _sequence(entry["_at"], entry["Key"], entry["_vid"], rank)
        return entries

    def read(self, position: dict[str, Any] | None, *, now: Callable[[], datetime],
             deadline: float | None) -> Iterator[ChangeBatch]:
        src = self.source
        with _errors(f"reading bucket {src.bucket}"):
            status = src.client.get_bucket_versioning(Bucket=src.bucket).get("Status")
        if status != "Enabled":
            raise SourceError(f"bucket {src.bucket} has versioning {status or 'never enabled'}: "
                              "continuous capture of an S3 source needs versioning on")
        started = now()
        state = dict(position or {})
        if state.get("bucket") != src.bucket:
            state = {"bucket": src.bucket, "through": None, "recent": {}}
        through = _parse(state["through"]) if state.get("through") else None
        recent: dict[str, str] = dict(state.get("recent") or {})
        floor = None if through is None else through - LOOKBACK
        new: list[dict[str, Any]] = []
        earliest: datetime | None = None
        for entries in self._keys():
            for entry in entries:
                earliest = entry["_at"] if earliest is None else min(earliest, entry["_at"])
                if (floor is None or entry["_at"] >= floor) and entry["_vid"] not in recent:
                    new.append(entry)
        new.sort(key=lambda e: (e["_at"], e["Key"], e["_vid"]))
        chunks = [new[i:i + BATCH] for i in range(0, len(new), BATCH)] or [[]]
        newest = through
        for number, chunk in enumerate(chunks):
            changes = [c for c in (self._change(e) for e in chunk) if c is not None]
            for entry in chunk:
                recent[entry["_vid"]] = _iso(entry["_at"])
                newest = entry["_at"] if newest is None else max(newest, entry["_at"])
            if number < len(chunks) - 1:
                if changes:  # the position moves only once the whole listing is captured
                    yield ChangeBatch(changes, dict(state))
                if deadline is not None and time.monotonic() > deadline:
                    return
                continue
            keep = None if newest is None else newest - LOOKBACK
            final = {"bucket": src.bucket, "through": None if newest is None else _iso(newest),
                     "recent": {k: v for k, v in recent.items()
                                if keep is None or _parse(v) >= keep}}
            since = None if position else min(earliest or started, started)
            yield ChangeBatch(changes, final, caught_up=started, since=since)

    def _change(self, v: dict[str, Any]) -> Change | None:
        src = self.source
        key, vid, at, first = v["Key"], v["_vid"], v["_at"], v["_first"]
        seq = v.get("_seq") or _sequence(at, key, vid)
        if v["_marker"]:
            return Change(key=key, event="remove", time=at, shard=src.bucket, sequence=seq,
                          line=None)
        storage_class = v.get("StorageClass") or "STANDARD"
        if storage_class in ARCHIVE_CLASSES:
            log.warning("s3://%s/%s version %s is in %s: not captured (it cannot be read "
                        "without a restore)", src.bucket, key, vid, storage_class)
            return None
        record = self._copy(key, vid, storage_class)
        if record is None:
            return None  # the version was deleted meanwhile (its delete is a later change)
        return Change(key=key, event="insert" if first else "modify", time=at,
                      shard=src.bucket, sequence=seq, line=canonical_json(record))

    def _copy(self, key: str, vid: str, storage_class: str) -> dict[str, Any] | None:
        """The version's content into the dataset's blobs (create-only; read twice when large);
        its object record."""
        src = self.source
        store, dataset = src.store, src.dataset
        if store is None or dataset is None:
            raise SourceError("the S3 source needs a store to copy blobs into (attach_store)")
        params: dict[str, Any] = {"Bucket": src.bucket, "Key": key}
        if vid != "null":
            params["VersionId"] = vid
        try:
            with _errors(f"reading s3://{src.bucket}/{key} version {vid}"):
                resp = dict(src.client.get_object(**params))
                size = int(resp["ContentLength"])
                if size <= SMALL:
                    body = resp["Body"].read()
                    sha = hashlib.sha256(body).hexdigest()
                    self._put(layout.blob_key(dataset, sha), body)
                else:
                    digest = hashlib.sha256()
                    while chunk := resp["Body"].read(1 << 20):
                        digest.update(chunk)
                    sha = digest.hexdigest()
                    blob = layout.blob_key(dataset, sha)
                    if store.stat(blob) is None:
                        again = src.client.get_object(**params)
                        reader = HashingReader(again["Body"])
                        self._put(blob, reader)
                        if reader.sha256.hexdigest() != sha:
                            raise SourceError(f"s3://{src.bucket}/{key} version {vid} changed "
                                              "while it was read")
        except Exception as exc:  # a version deleted meanwhile (NoSuchVersion / NoSuchKey)
            if "NoSuch" in str(exc) or "Not Found" in str(exc):
                return None
            raise
        record = src._record(key, resp, sha, storage_class)
        record["version"] = None if vid == "null" else vid
        return record

    def _put(self, blob: str, data: Any) -> None:
        assert self.source.store is not None
        try:
            self.source.store.put(blob, data, if_absent=True)
        except ObjectExistsError:
            pass  # identical content, already stored
