"""S3 source (:class:`S3Source`): a bucket's objects copied into content-addressed blobs, listed in NDJSON parts.

A snapshot of a bucket is two things in the dataset's store:

- blobs, ``<dataset>/blobs/<sha256[:2]>/<sha256>``, one per distinct content (create-only: a blob
  that exists is never written again, so identical content is stored once);
- the listing, the snapshot's ordinary NDJSON parts, one canonical line per object::

      {"key", "version", "size", "etag", "last_modified", "sha256", "content_type",
       "metadata", "headers", "tags", "storage_class"}

Incremental forever: the previous committed snapshot's listing is read alongside the bucket's
listing (both are in key order: a merge, never a whole listing in memory). An object with the
same key, ETag and size as before keeps its sha256 without being read or copied; when its
LastModified is also unchanged, its metadata and tags are taken from the previous listing too
(metadata cannot change without a new LastModified; a tag-only change is picked up the next time
the object changes — see README).

New content is hashed, then copied:

- server-side (``CopyObject``; ``UploadPartCopy`` above 5 GiB) when the store is an S3 bucket on
  the same endpoint. The sha256 is S3's own full-object ``ChecksumSHA256`` when the object has one
  (S3 checks it on upload); otherwise the object is read once to hash it (first time only). The
  copy is made with ``CopySourceIfMatch`` on the ETag that was hashed, so the blob holds exactly
  the hashed bytes. Objects up to 8 MiB are read with one GetObject (metadata, tag count and
  bytes at once); larger ones are inspected with HeadObject first.
- streamed through this process otherwise: objects up to 8 MiB are read once into memory; larger
  ones are read once to hash and, if the blob is absent, read again (``IfMatch`` the same ETag)
  into a create-only put whose sha256 is checked.

Objects in the GLACIER and DEEP_ARCHIVE classes cannot be read without a restore request: they
are skipped (counted in the manifest) unless the previous snapshot already holds their content.

Its parts: ``listing.py`` (listing records, the previous listing's cursor, restore targets),
``copier.py`` (content into blobs), ``servercopy.py`` (copies inside S3), ``restore.py`` (the writer),
``errors.py``.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ...capabilities import (
    CapturesChanges,
    CopiesObjects,
    Description,
    Incremental,
    LocatesTargets,
    ReadsTarget,
    RefusesSettingsTargets,
    RestoresSettings,
    ServerSideCopy,
    Summarizes,
    able,
)
from ...clouds.aws import Access, s3_client, same_endpoint
from ...codec import ContentDigest, canonical_json, listing_records
from ...errors import RestoreError, SourceError, SourceUnreachableError
from ...redaction import redact_url
from .. import NamesTargets
from .copier import BlobCopier
from .errors import _Changed, _errors, _Vanished
from .listing import (
    ARCHIVE_CLASSES,
    DIGEST_IGNORES,
    DRILL_PREFIX,
    HEADERS,
    BlobStats,
    Cursor,
    etag_of,
    iso_seconds,
    split_target,
)
from .restore import S3Writer, drop_prefix, prepare_target
from .settings import DATA_SETTINGS, creates_locked, not_applicable
from .settings import apply as apply_settings
from .settings import capture as capture_settings
from .settings import read as read_settings
from .versions import VersionReader

if TYPE_CHECKING:
    from ...changes import ChangeBatch
    from ...manifest import Manifest
    from ...stores import Store
    from .spec import S3SourceSpec

log = logging.getLogger(__name__)


class S3Source(BlobCopier, CopiesObjects, Incremental, Summarizes, ReadsTarget, NamesTargets,
               CapturesChanges, RestoresSettings, RefusesSettingsTargets, LocatesTargets):
    kind = "s3"

    def __init__(
        self,
        bucket: str,
        region: str,
        *,
        prefix: str = "",
        include: list[str] | None = None,
        exclude: list[str] | None = None,
        endpoint_url: str | None = None,
        workers: int = 16,
        client: Any = None,
        access: Access | None = None,
    ) -> None:
        self.bucket = bucket
        self.access = access  # another account's credentials (a restore target elsewhere)
        self.region = region
        self.prefix = prefix
        self.include = list(include or [])
        self.exclude = list(exclude or [])
        self.endpoint_url = endpoint_url
        self.workers = workers
        self._client = client
        self._client_lock = threading.Lock()
        self.store: Store | None = None
        self.dataset: str | None = None
        self.retain_until: datetime | None = None
        self.previous: Manifest | None = None
        self.stats = BlobStats()

    @classmethod
    def from_spec(cls, spec: S3SourceSpec, *, access: Access | None = None) -> S3Source:
        return cls(spec.bucket, spec.region, prefix=spec.prefix, include=spec.include,
                   exclude=spec.exclude, endpoint_url=spec.endpoint_url, workers=spec.workers,
                   access=access)

    @property
    def client(self) -> Any:
        with self._client_lock:
            if self._client is None:
                self._client = s3_client(self.region, self.endpoint_url, self.access)
            return self._client

    # ------------------------------------------------------------------ hooks the engine calls

    def attach_store(self, store: Store, dataset: str, retain_until: datetime | None = None) -> None:
        """The store and dataset blobs go to (called before ``describe``)."""
        self.store = store
        self.dataset = dataset
        self.retain_until = retain_until

    def set_previous(self, manifest: Manifest | None) -> None:
        """The dataset's latest committed snapshot: unchanged objects are taken from it."""
        if manifest is not None and (manifest.source.get("type") != "s3"
                                     or manifest.source.get("bucket") != self.bucket):
            manifest = None  # another source: nothing to reuse
        self.previous = manifest

    def read_summary(self) -> dict[str, Any]:
        """Added to the manifest's ``source`` once every segment is read."""
        return {"blobs": self.stats.as_dict()}

    # ------------------------------------------------------------------ reading

    def server_side(self) -> bool:
        """Whether blobs are copied inside S3 (the store is a bucket on the same endpoint, and
        the same credentials reach both: a target in another account is written through)."""
        if self.access is not None and not self.access.is_default():
            return False
        store = able(self.store, ServerSideCopy)
        return store is not None and same_endpoint(
            self.client.meta.endpoint_url, store.copy_client().meta.endpoint_url)

    def describe(self) -> Description:
        try:
            with _errors(f"reading bucket {self.bucket}"):
                self.client.head_bucket(Bucket=self.bucket)
                versioning = self.client.get_bucket_versioning(Bucket=self.bucket).get("Status")
        except _Vanished:
            raise SourceUnreachableError(
                f"S3 bucket {self.bucket!r} not found (region {self.region})") from None
        out: dict[str, Any] = {
            "type": "s3",
            "bucket": self.bucket,
            "prefix": self.prefix,
            "region": self.region,
            "include": self.include,
            "exclude": self.exclude,
            "versions": False,
            "versioning": versioning or "Disabled",
            "settings": capture_settings(self.client, self.bucket),
        }
        if self.endpoint_url:  # recorded in the manifest: never with credentials
            out["endpoint_url"] = redact_url(self.endpoint_url)
        if self.previous is not None:
            out["reused_from"] = self.previous.snapshot_id
        method = "server-side-copy" if self.store is not None and self.server_side() else "stream"
        return Description(out, method=method, digest_ignores=DIGEST_IGNORES)

    def plan_segments(self, described: dict[str, Any]) -> int:
        """One segment: the listing is read in key order (merged with the previous listing);
        objects are copied by a pool of ``workers`` threads inside it."""
        return 1

    def wanted(self, key: str) -> bool:
        """Whether ``key`` is backed up: under the prefix, matching an ``include`` glob (if any)
        and no ``exclude`` glob. A glob matches the key relative to the prefix or the full key."""
        if not key.startswith(self.prefix) or key.startswith(DRILL_PREFIX):
            return False  # ... nor a restore drill's scratch objects
        rel = key[len(self.prefix):]

        def matches(pattern: str) -> bool:
            return fnmatch.fnmatchcase(rel, pattern) or fnmatch.fnmatchcase(key, pattern)

        if self.include and not any(matches(p) for p in self.include):
            return False
        return not any(matches(p) for p in self.exclude)

    def list_objects(self, bucket: str | None = None, prefix: str | None = None
                     ) -> Iterator[list[dict[str, Any]]]:
        """Pages of ListObjectsV2 (key order)."""
        bucket = bucket or self.bucket
        paginator = self.client.get_paginator("list_objects_v2")
        with _errors(f"listing bucket {bucket}"):
            for page in paginator.paginate(Bucket=bucket, Prefix=self.prefix if prefix is None else prefix):
                yield list(page.get("Contents", []))

    def read_segment(self, segment: int, total: int) -> Iterator[list[bytes]]:
        if self.store is None or self.dataset is None:
            raise SourceError("the S3 source needs a store to copy blobs into (attach_store)")
        previous = Cursor(self._previous_records())
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="s3-copy") as pool:
            for page in self.list_objects():
                work = [(obj, previous.find(obj["Key"])) for obj in page if self.wanted(obj["Key"])]
                records = list(pool.map(lambda w: self._entry(*w), work))
                lines = [canonical_json(r) for r in records if r is not None]
                if lines:
                    yield lines

    def _previous_records(self) -> Iterator[dict[str, Any]]:
        if self.previous is None or self.store is None:
            return iter(())
        return listing_records(self.store, self.previous, tolerant=True)

    def _entry(self, obj: dict[str, Any], prev: dict[str, Any] | None) -> dict[str, Any] | None:
        key = obj["Key"]
        etag, size = etag_of(obj["ETag"]), int(obj["Size"])
        modified = iso_seconds(obj["LastModified"])
        storage_class = obj.get("StorageClass") or "STANDARD"
        try:
            if prev is not None and prev.get("etag") == etag and prev.get("size") == size:
                record = self._unchanged(key, prev, modified, storage_class)
                if record is not None:
                    self.stats.add(objects=1, bytes=size, reused_objects=1)
                    return record
            if storage_class in ARCHIVE_CLASSES:
                log.warning("s3://%s/%s is in %s: skipped (it cannot be read without a restore)",
                            self.bucket, key, storage_class)
                self.stats.add(skipped_archived=1)
                return None
            for _ in range(3):
                try:
                    if self.server_side():
                        return self._copy_server_side(key, storage_class, size)
                    return self._copy_streamed(key, storage_class)
                except _Changed:
                    continue  # rewritten while we read it: read the new content
            raise SourceError(f"s3://{self.bucket}/{key} kept changing while it was copied")
        except _Vanished:
            self.stats.add(vanished=1)
            return None

    def _unchanged(self, key: str, prev: dict[str, Any], modified: str,
                   storage_class: str) -> dict[str, Any] | None:
        """The record of an object whose content is known; None if it changed meanwhile."""
        if prev.get("last_modified") == modified:
            return dict(prev) | {"storage_class": storage_class}
        # Same content, newer LastModified: copied in place, metadata may differ. Read it again
        # (no content is read or copied).
        head = self._head(key, if_match=prev["etag"])
        if head is None:
            return None
        return self._record(key, head, prev["sha256"], storage_class)

    def _record(self, key: str, resp: dict[str, Any], sha256: str, storage_class: str
                ) -> dict[str, Any]:
        version = resp.get("VersionId")
        if "Body" in resp and not resp.get("TagCount"):
            tags: dict[str, str] = {}  # GetObject says how many tags there are: none to read
        else:
            tags = self._tags(key, version if version and version != "null" else None)
        return {
            "key": key,
            "version": version,
            "size": int(resp["ContentLength"]),
            "etag": etag_of(resp["ETag"]),
            "last_modified": iso_seconds(resp["LastModified"]),
            "sha256": sha256,
            "content_type": resp.get("ContentType"),
            "metadata": dict(resp.get("Metadata") or {}),
            "headers": {name: resp[field] for field, name in HEADERS.items() if resp.get(field)},
            "tags": tags,
            "storage_class": storage_class,
        }

    def _head(self, key: str, *, if_match: str | None = None) -> dict[str, Any] | None:
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key, "ChecksumMode": "ENABLED"}
        if if_match:
            params["IfMatch"] = f'"{if_match}"'
        try:
            with _errors(f"reading s3://{self.bucket}/{key}"):
                return dict(self.client.head_object(**params))
        except _Changed:
            return None

    def _tags(self, key: str, version: str | None) -> dict[str, str]:
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if version:
            params["VersionId"] = version
        with _errors(f"reading the tags of s3://{self.bucket}/{key}"):
            tagset = self.client.get_object_tagging(**params).get("TagSet", [])
        return {t["Key"]: t["Value"] for t in tagset}

    def _get(self, key: str, etag: str | None = None, *, checksum: bool = False) -> dict[str, Any]:
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if checksum:
            params["ChecksumMode"] = "ENABLED"
        if etag:
            params["IfMatch"] = f'"{etag}"'
        with _errors(f"reading s3://{self.bucket}/{key}"):
            return dict(self.client.get_object(**params))

    def _hash_object(self, key: str, etag: str) -> str:
        """Read the object (at ``etag``) once, only to hash it."""
        resp = self._get(key, etag)
        digest = hashlib.sha256()
        with _errors(f"reading s3://{self.bucket}/{key}"):
            body = resp["Body"]
            while chunk := body.read(1 << 20):
                digest.update(chunk)
                self.stats.add(hashed_bytes=len(chunk))
        return digest.hexdigest()

    # ------------------------------------------------------------------ change capture

    def change_stream_id(self) -> str:
        return f"s3-{self.bucket}-{hashlib.sha256(self.prefix.encode()).hexdigest()[:8]}"

    def read_changes(self, position: dict[str, Any] | None, *, now: Callable[[], datetime],
                     deadline: float | None) -> Iterator[ChangeBatch]:
        """Object versions newer than ``position`` (``versions.VersionReader``)."""
        return VersionReader(self).read(position, now=now, deadline=deadline)

    # ------------------------------------------------------------------ restore

    def target_region(self, target: str) -> str | None:
        """The region of the target's bucket if it exists (S3's ``x-amz-bucket-region``; a
        bucket keeps its region whatever client reaches it), else None. Reads only."""
        from botocore.exceptions import ClientError

        bucket, _ = split_target(target)
        try:
            with _errors(f"reading bucket {bucket}", passthrough={"NoSuchBucket", "404", "NotFound"}):
                resp = self.client.head_bucket(Bucket=bucket)
        except ClientError:
            return None
        headers = (resp.get("ResponseMetadata") or {}).get("HTTPHeaders") or {}
        region = resp.get("BucketRegion") or headers.get("x-amz-bucket-region")
        return str(region) if region else self.region

    def open_restore(self, target: str, recorded: dict[str, Any], *, overwrite: bool) -> S3Writer:
        return prepare_target(self, target, overwrite=overwrite, locked=creates_locked(recorded))

    # ---------------------------------------------------------------- settings

    def recorded_settings(self, recorded: Mapping[str, Any]) -> dict[str, Any] | None:
        settings = recorded.get("settings")
        return dict(settings) if isinstance(settings, dict) else None

    def data_settings(self) -> frozenset[str]:
        return DATA_SETTINGS

    def apply_settings(self, target: str, settings: Mapping[str, Any],
                       recorded: Mapping[str, Any]) -> list[tuple[str, str | None]]:
        bucket, prefix = split_target(target)
        return apply_settings(self.client, bucket, prefix, settings,
                              str(recorded.get("bucket") or self.bucket))

    def read_settings(self, target: str, recorded: Mapping[str, Any]) -> dict[str, Any]:
        return read_settings(self.client, split_target(target)[0])

    def settings_not_applicable(self, target: str, names: list[str],
                                recorded: Mapping[str, Any]) -> dict[str, str]:
        try:
            bucket, prefix = split_target(target)
        except RestoreError:
            return {}
        why = not_applicable(bucket, prefix, str(recorded.get("bucket") or self.bucket))
        return {name: why for name in names} if why else {}

    def target_reader(self, target: str, recorded: dict[str, Any]) -> S3Writer | None:
        """Reads the objects of ``BUCKET[/PREFIX]`` by key (None: no such bucket); writes
        nothing."""
        bucket, prefix = split_target(target)
        try:
            with _errors(f"reading bucket {bucket}"):
                self.client.head_bucket(Bucket=bucket)
        except _Vanished:
            return None
        return S3Writer(self, target, bucket, prefix)

    # ---------------------------------------------------------------- drills

    def target_problem(self, target: str, manifest: Manifest) -> str | None:
        """A restore target is BUCKET[/PREFIX] on the source's endpoint."""
        try:
            split_target(target)
        except RestoreError:
            return "an S3 target is BUCKET[/PREFIX] with a valid bucket name"
        return None

    def scratch_target(self, token: str) -> str:
        """A prefix of the source bucket for a restore drill (deleted after the drill; backups of
        this bucket skip it)."""
        return f"{self.bucket}/{DRILL_PREFIX}{token}"

    def drop_target(self, target: str, recorded: dict[str, Any]) -> None:
        """Delete every object of a drill's scratch prefix (nothing there is fine)."""
        bucket, prefix = split_target(target)
        if not prefix.startswith(DRILL_PREFIX) or "/" in prefix:
            raise SourceError(f"refusing to delete {target!r}: not a drill's scratch prefix")
        deleted = drop_prefix(self.client, bucket, prefix)
        log.info("deleted %d scratch objects under s3://%s/%s/", deleted, bucket, prefix)

    def scan_digest(self, target: str) -> tuple[int, str]:
        """(objects, content digest) of a live bucket (``BUCKET[/PREFIX]``) read the way a backup
        reads it: every object is read and hashed; keys are taken relative to PREFIX."""
        bucket, prefix = split_target(target)
        head = f"{prefix}/" if prefix else ""
        digest = ContentDigest(ignores=DIGEST_IGNORES)
        reader = S3Source(bucket, self.region, endpoint_url=self.endpoint_url, client=self.client)
        for page in self.list_objects(bucket, head):
            for obj in page:
                original = obj["Key"][len(head):]
                if not self.wanted(original):
                    continue
                reader.bucket = bucket
                resp = reader._get(obj["Key"])
                sha = hashlib.sha256()
                with _errors(f"reading s3://{bucket}/{obj['Key']}"):
                    while chunk := resp["Body"].read(1 << 20):
                        sha.update(chunk)
                record = reader._record(obj["Key"], resp, sha.hexdigest(),
                                        obj.get("StorageClass") or "STANDARD")
                record["key"] = original
                digest.add_line(canonical_json(record))
        return digest.count, digest.hexdigest()
