"""S3 source: a bucket's objects copied into content-addressed blobs, listed in NDJSON parts.

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
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import hashlib
import json
import logging
import threading
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ... import layout
from ...clouds.aws import S3_UNREACHABLE_CODES as UNREACHABLE_CODES
from ...codec import ContentDigest, canonical_json
from ...errors import (
    CloudkeepError,
    ObjectExistsError,
    RestoreError,
    SourceError,
    SourceUnreachableError,
)

if TYPE_CHECKING:
    from ...manifest import Manifest
    from ...policy import S3SourceSpec
    from ...stores import Store

log = logging.getLogger(__name__)

SMALL = 8 * 1024 * 1024  # objects up to this size are read once, into memory
MULTIPART_COPY_THRESHOLD = 5 * 1024**3  # CopyObject's limit: larger objects use UploadPartCopy
COPY_PART_SIZE = 512 * 1024**2
MAX_PARTS = 10_000
ARCHIVE_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE"})
# Keys of a listing line a restored copy cannot keep (S3 sets them on every write): left out of
# the content digest, so a restored bucket can be compared with the manifest.
DIGEST_IGNORES = ("etag", "last_modified", "version")
# Restore drills write into ``<source bucket>/cloudkeep-drill-<token>/``; backups never read it.
DRILL_PREFIX = "cloudkeep-drill-"
_HEADERS = {
    "CacheControl": "cache_control",
    "ContentDisposition": "content_disposition",
    "ContentEncoding": "content_encoding",
    "ContentLanguage": "content_language",
}
_CHANGED_CODES = {"PreconditionFailed", "412"}
_MISSING_CODES = {"NoSuchKey", "404", "NotFound"}


class _Changed(Exception):
    """The object changed (or went) between two reads."""


@dataclass
class BlobStats:
    """What a snapshot copied; goes into the manifest as ``source.blobs``."""

    objects: int = 0
    bytes: int = 0
    reused_objects: int = 0  # unchanged since the previous snapshot: not read, not copied
    copied_objects: int = 0  # new blobs written
    copied_bytes: int = 0
    deduplicated_objects: int = 0  # new to this dataset's listing, but the blob already existed
    hashed_bytes: int = 0  # bytes read only to compute a sha256
    skipped_archived: int = 0
    vanished: int = 0  # listed, then deleted before it could be read
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def as_dict(self) -> dict[str, int]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}


def etag_of(value: str) -> str:
    return value.strip('"')


def iso_seconds(value: datetime) -> str:
    """LastModified at second precision (HeadObject has no milliseconds; listings may)."""
    return value.replace(microsecond=0).isoformat()


def full_object_sha256(head: dict[str, Any]) -> str | None:
    """S3's full-object ChecksumSHA256 as hex, or None (absent, or a checksum of part checksums)."""
    value = head.get("ChecksumSHA256")
    if not value or "-" in value or head.get("ChecksumType") == "COMPOSITE":
        return None
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) == 32 else None


def split_target(target: str) -> tuple[str, str]:
    """``BUCKET[/PREFIX]`` → (bucket, prefix without slashes at either end)."""
    bucket, _, prefix = target.strip().partition("/")
    from ...policy import _BUCKET_RE

    if not _BUCKET_RE.match(bucket) or ".." in bucket:
        raise RestoreError(f"bad restore target {target!r}: expected BUCKET[/PREFIX] with a valid "
                           "S3 bucket name")
    return bucket, prefix.strip("/")


def same_endpoint(a: str | None, b: str | None) -> bool:
    """Whether two S3 clients reach the same service (server-side copies work between them)."""
    if a and b and ".amazonaws.com" in a and ".amazonaws.com" in b:
        return True  # AWS: any region copies from any other
    return (a or "").rstrip("/") == (b or "").rstrip("/")


class S3Source:
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
    ) -> None:
        self.bucket = bucket
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
    def from_spec(cls, spec: S3SourceSpec) -> S3Source:
        return cls(spec.bucket, spec.region, prefix=spec.prefix, include=spec.include,
                   exclude=spec.exclude, endpoint_url=spec.endpoint_url, workers=spec.workers)

    @property
    def client(self) -> Any:
        with self._client_lock:
            if self._client is None:
                from ...stores.s3 import make_client

                self._client = make_client(self.region, self.endpoint_url)
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
        """Whether blobs are copied inside S3 (the store is a bucket on the same endpoint)."""
        from ...stores.s3 import S3Store

        return isinstance(self.store, S3Store) and same_endpoint(
            self.client.meta.endpoint_url, self.store.client.meta.endpoint_url)

    def describe(self) -> dict[str, Any]:
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
            "method": "server-side-copy" if self.store is not None and self.server_side() else "stream",
            "digest_ignores": list(DIGEST_IGNORES),
        }
        if self.endpoint_url:  # recorded in the manifest: never with credentials
            from ...redaction import redact_url

            out["endpoint_url"] = redact_url(self.endpoint_url)
        if self.previous is not None:
            out["reused_from"] = self.previous.snapshot_id
        return out

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
        previous = _Cursor(self._previous_records())
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
        from ...blobs import listing_records

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
            "headers": {name: resp[field] for field, name in _HEADERS.items() if resp.get(field)},
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

    def _copy_streamed(self, key: str, storage_class: str) -> dict[str, Any]:
        assert self.store is not None and self.dataset is not None
        resp = self._get(key)
        size = int(resp["ContentLength"])
        etag = etag_of(resp["ETag"])
        if size <= SMALL:
            with _errors(f"reading s3://{self.bucket}/{key}"):
                body = resp["Body"].read()
            sha = hashlib.sha256(body).hexdigest()
            self._put_blob(sha, body, size)
            return self._record(key, resp, sha, storage_class)
        digest = hashlib.sha256()
        with _errors(f"reading s3://{self.bucket}/{key}"):
            while chunk := resp["Body"].read(1 << 20):
                digest.update(chunk)
        self.stats.add(hashed_bytes=size)
        sha = digest.hexdigest()
        if self.store.stat(layout.blob_key(self.dataset, sha)) is not None:
            self.stats.add(objects=1, bytes=size, deduplicated_objects=1)
            return self._record(key, resp, sha, storage_class)
        from ...codec import HashingReader

        again = self._get(key, etag)  # the same bytes, or _Changed
        reader = HashingReader(again["Body"])
        self._put_blob(sha, reader, size, check=reader)
        return self._record(key, resp, sha, storage_class)

    def _put_blob(self, sha: str, data: Any, size: int, *, check: Any = None) -> None:
        """Write a blob create-only; an existing blob is identical content (skipped)."""
        assert self.store is not None and self.dataset is not None
        blob = layout.blob_key(self.dataset, sha)
        try:
            info = self.store.put(blob, data, if_absent=True, retain_until=self.retain_until)
        except ObjectExistsError:
            self.stats.add(objects=1, bytes=size, deduplicated_objects=1)
            return
        if check is not None and check.sha256.hexdigest() != sha:
            # Never deleted by a backup (only prune deletes): the blob stays unreferenced and
            # prune's blob collection removes it after its grace period. (A snapshot that reused
            # it meanwhile would fail verify's sha256 check of its blobs: docs/locking.md.)
            raise _Changed()
        self.stats.add(objects=1, bytes=info.size, copied_objects=1, copied_bytes=info.size)

    def _copy_server_side(self, key: str, storage_class: str, listed_size: int) -> dict[str, Any]:
        from ...stores.s3 import S3Store

        assert isinstance(self.store, S3Store) and self.dataset is not None
        head: dict[str, Any] | None
        if listed_size <= SMALL:
            # Small: one GetObject gives the metadata, the tag count and the bytes to hash.
            head = self._get(key, checksum=True)
            etag, size = etag_of(head["ETag"]), int(head["ContentLength"])
            sha = full_object_sha256(head) or ""
            with _errors(f"reading s3://{self.bucket}/{key}"):
                body = head["Body"].read() if not sha else b""
                head["Body"].close()
            if not sha:
                sha = hashlib.sha256(body).hexdigest()
                self.stats.add(hashed_bytes=size)
        else:
            head = self._head(key)
            if head is None:
                raise _Changed()
            etag, size = etag_of(head["ETag"]), int(head["ContentLength"])
            sha = full_object_sha256(head) or self._hash_object(key, etag)
        blob = layout.blob_key(self.dataset, sha)
        if self.store.stat(blob) is not None:
            self.stats.add(objects=1, bytes=size, deduplicated_objects=1)
            return self._record(key, head, sha, storage_class)
        bucket, full = self.store.location(blob)
        source = {"Bucket": self.bucket, "Key": key}
        version = head.get("VersionId")
        if version and version != "null":
            source["VersionId"] = version
        server_copy(self.store.client, source, etag, size, bucket, full,
                    {"MetadataDirective": "REPLACE", "TaggingDirective": "REPLACE",
                     "ContentType": "application/octet-stream"}, where=f"s3://{self.bucket}/{key}")
        if self.retain_until is not None and self.store.lock_mode:
            # Retention is set right after the copy (a copy request with Object Lock headers
            # needs a body checksum that a copy does not have).
            self.store.extend_retention(blob, self.retain_until)
        self.stats.add(objects=1, bytes=size, copied_objects=1, copied_bytes=size)
        return self._record(key, head, sha, storage_class)

    # ------------------------------------------------------------------ restore

    def open_restore(self, target: str, recorded: dict[str, Any], *, overwrite: bool) -> S3Writer:
        if self.store is None:
            raise RestoreError("the S3 source needs the snapshot's store to restore (attach_store)")
        bucket, prefix = split_target(target)
        from botocore.exceptions import ClientError

        try:
            with _errors(f"reading bucket {bucket}", passthrough={"NoSuchBucket", "404", "NotFound"}):
                self.client.head_bucket(Bucket=bucket)
        except ClientError:
            log.info("creating bucket %s in %s", bucket, self.region)
            params: dict[str, Any] = {"Bucket": bucket}
            if self.region != "us-east-1":
                params["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
            with _errors(f"creating bucket {bucket}"):
                self.client.create_bucket(**params)
        with _errors(f"listing bucket {bucket}"):
            probe = self.client.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/" if prefix else "",
                                                MaxKeys=1)
        if probe.get("KeyCount", 0) and not overwrite:
            where = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
            raise RestoreError(f"target {where} is not empty; refusing to write into it "
                               "(pass --overwrite to write the snapshot's objects over it)")
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
        deleted = 0
        for page in self.list_objects(bucket, f"{prefix}/"):
            keys = [{"Key": obj["Key"]} for obj in page]
            for i in range(0, len(keys), 1000):
                with _errors(f"deleting the drill objects under s3://{bucket}/{prefix}/"):
                    self.client.delete_objects(Bucket=bucket,
                                               Delete={"Objects": keys[i:i + 1000], "Quiet": True})
                deleted += len(keys[i:i + 1000])
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


class _Cursor:
    """Walks the previous listing (key order) alongside the bucket's listing."""

    def __init__(self, records: Iterator[dict[str, Any]]) -> None:
        self._records = records
        self._current: dict[str, Any] | None = None
        self._done = False

    def find(self, key: str) -> dict[str, Any] | None:
        while not self._done:
            if self._current is None:
                self._current = next(self._records, None)
                if self._current is None:
                    self._done = True
                    return None
            current_key = str(self._current.get("key", ""))
            if current_key == key:
                return self._current
            if current_key > key:
                return None
            self._current = None
        return None


class _Vanished(Exception):
    """The object was deleted after it was listed."""


def server_copy(client: Any, source: dict[str, str], etag: str, size: int, bucket: str, key: str,
                extra: dict[str, Any], *, where: str) -> None:
    """Copy an object inside S3: ``CopyObject`` up to 5 GiB, else a multipart ``UploadPartCopy``
    (parts of 512 MiB or more). Every request carries ``CopySourceIfMatch`` on ``etag``, so the
    copy is of exactly that content (or _Changed)."""
    if size <= MULTIPART_COPY_THRESHOLD:
        with _errors(f"copying {where}"):
            client.copy_object(Bucket=bucket, Key=key, CopySource=source,
                               CopySourceIfMatch=f'"{etag}"', **extra)
        return
    part_size = max(COPY_PART_SIZE, -(-size // MAX_PARTS))
    create = {k: v for k, v in extra.items() if k not in ("MetadataDirective", "TaggingDirective")}
    with _errors(f"copying {where}"):
        upload_id = client.create_multipart_upload(Bucket=bucket, Key=key, **create)["UploadId"]
    try:
        parts = []
        for number, start in enumerate(range(0, size, part_size), start=1):
            end = min(size, start + part_size) - 1
            with _errors(f"copying {where}"):
                resp = client.upload_part_copy(
                    Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number,
                    CopySource=source, CopySourceRange=f"bytes={start}-{end}",
                    CopySourceIfMatch=f'"{etag}"',
                )
            parts.append({"ETag": resp["CopyPartResult"]["ETag"], "PartNumber": number})
        with _errors(f"copying {where}"):
            client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                             MultipartUpload={"Parts": parts})
    except BaseException:
        try:
            client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        except Exception:  # noqa: BLE001 - the original error matters more
            pass
        raise


class S3Writer:
    """Writes listed objects into ``BUCKET[/PREFIX]`` from the store's blobs: content, metadata,
    content type, headers, tags and storage class. Server-side when the store is a bucket on the
    same endpoint; otherwise streamed, with each object's sha256 checked."""

    def __init__(self, source: S3Source, target: str, bucket: str, prefix: str) -> None:
        self.source = source
        self.target = target
        self.bucket = bucket
        self.prefix = prefix
        self._server_side = source.server_side()
        self._pool = ThreadPoolExecutor(max_workers=source.workers, thread_name_prefix="s3-restore")

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def write(self, lines: list[bytes]) -> int:
        records = [json.loads(line) for line in lines]
        for future in [self._pool.submit(self._one, r) for r in records]:
            future.result()
        return len(records)

    def _one(self, record: dict[str, Any]) -> None:
        store, dataset = self.source.store, self.source.dataset
        assert store is not None and dataset is not None
        key = f"{self.prefix}/{record['key']}" if self.prefix else str(record["key"])
        sha = str(record["sha256"])
        blob = layout.blob_key(dataset, sha)
        extra: dict[str, Any] = {"Metadata": dict(record.get("metadata") or {})}
        if record.get("content_type"):
            extra["ContentType"] = record["content_type"]
        for field_name, name in _HEADERS.items():
            if (record.get("headers") or {}).get(name):
                extra[field_name] = record["headers"][name]
        if record.get("tags"):
            extra["Tagging"] = urllib.parse.urlencode(record["tags"])
        storage_class = record.get("storage_class")
        if storage_class and storage_class != "STANDARD" and storage_class not in ARCHIVE_CLASSES:
            extra["StorageClass"] = storage_class
        client = self.source.client
        where = f"s3://{self.bucket}/{key}"
        if self._server_side:
            from ...stores.s3 import S3Store

            assert isinstance(store, S3Store)
            src_bucket, src_key = store.location(blob)
            info = store.stat(blob)
            if info is None:
                raise RestoreError(f"blob {sha} of {record['key']!r} is missing from {store.describe()}")
            with _errors(f"reading blob {sha}"):
                blob_etag = etag_of(store.client.head_object(Bucket=src_bucket, Key=src_key)["ETag"])
            directives = {"MetadataDirective": "REPLACE", "TaggingDirective": "REPLACE"}
            try:
                server_copy(client, {"Bucket": src_bucket, "Key": src_key}, blob_etag, info.size,
                            self.bucket, key, extra | directives, where=where)
            except (_Changed, _Vanished):
                raise RestoreError(f"blob {sha} changed or went while it was copied to {where}") from None
            return
        from ...codec import HashingReader, PartLimitError
        from ...errors import ObjectNotFoundError

        try:
            stream = store.open(blob)
        except ObjectNotFoundError:
            raise RestoreError(f"blob {sha} of {record['key']!r} is missing from {store.describe()}") from None
        size = int(record.get("size", 0))
        with stream:
            reader = HashingReader(stream, limit=size)  # never past the listed size
            try:
                if size <= SMALL:
                    body = reader.read()
                    with _errors(f"writing {where}"):
                        client.put_object(Bucket=self.bucket, Key=key, Body=body, **extra)
                else:
                    from boto3.s3.transfer import TransferConfig

                    with _errors(f"writing {where}"):
                        client.upload_fileobj(reader, self.bucket, key, ExtraArgs=extra,
                                              Config=TransferConfig(use_threads=False))
                reader.check_size()
            except PartLimitError:
                raise RestoreError(f"blob {sha} in {store.describe()} holds more than the {size} "
                                   f"bytes its listing says; {where} holds only those") from None
        if reader.sha256.hexdigest() != sha or reader.size != int(record.get("size", reader.size)):
            raise RestoreError(f"blob {sha} in {store.describe()} is damaged (its sha256 or size "
                               f"differs); {where} was written from it")


class _errors:  # used as a context manager, like a function
    """Turns botocore exceptions into cloudkeep errors, in one place."""

    def __init__(self, what: str, *, passthrough: set[str] | None = None) -> None:
        self.what = what
        self.passthrough = passthrough or set()

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is None or isinstance(exc, CloudkeepError):
            return
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        if isinstance(exc, ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            if code in self.passthrough:
                return
            if code in _CHANGED_CODES:
                raise _Changed() from exc
            if code in _MISSING_CODES:
                raise _Vanished() from exc
            message = f"{code}: {err.get('Message', '')}".strip().rstrip(":")
            if code in UNREACHABLE_CODES:
                raise SourceUnreachableError(f"{self.what}: {message}") from exc
            if code == "InvalidObjectState":
                raise SourceError(f"{self.what}: the object is archived ({message})") from exc
            raise SourceError(f"{self.what}: {message}") from exc
        if isinstance(exc, NoCredentialsError):
            raise SourceUnreachableError(f"{self.what}: no AWS credentials found") from exc
        if isinstance(exc, BotoCoreError):
            raise SourceUnreachableError(f"{self.what}: {exc}") from exc
