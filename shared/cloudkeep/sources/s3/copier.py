"""Copying an S3 object's content into the store's content-addressed blob (the S3 source's
writes): streamed through this process, or server-side when the store is a bucket on the same S3
service (:class:`~cloudkeep.capabilities.ServerSideCopy`)."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ... import layout
from ...capabilities import ExtendsRetention, ServerSideCopy, able
from ...codec import HashingReader
from ...errors import ObjectExistsError
from .errors import _Changed, _errors
from .listing import SMALL, BlobStats, etag_of, full_object_sha256
from .servercopy import server_copy

if TYPE_CHECKING:
    from ...stores import Store


class BlobCopier:
    """The copying half of :class:`~cloudkeep.sources.s3.S3Source` (a mixin: it uses the
    source's bucket, client, store and reads)."""

    bucket: str
    store: Store | None
    dataset: str | None
    retain_until: datetime | None
    stats: BlobStats

    if TYPE_CHECKING:
        @property
        def client(self) -> Any: ...

        def _get(self, key: str, etag: str | None = None, *, checksum: bool = False) -> dict[str, Any]: ...

        def _head(self, key: str, *, if_match: str | None = None) -> dict[str, Any] | None: ...

        def _record(self, key: str, resp: dict[str, Any], sha256: str, storage_class: str
                    ) -> dict[str, Any]: ...

        def _hash_object(self, key: str, etag: str) -> str: ...

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
        store = able(self.store, ServerSideCopy)
        assert store is not None and self.store is not None and self.dataset is not None
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
        bucket, full = store.location(blob)
        source = {"Bucket": self.bucket, "Key": key}
        version = head.get("VersionId")
        if version and version != "null":
            source["VersionId"] = version
        server_copy(store.copy_client(), source, etag, size, bucket, full,
                    {"MetadataDirective": "REPLACE", "TaggingDirective": "REPLACE",
                     "ContentType": "application/octet-stream"}, where=f"s3://{self.bucket}/{key}")
        retention = able(self.store, ExtendsRetention)
        if self.retain_until is not None and retention is not None:
            # Retention is set right after the copy (a copy request with Object Lock headers
            # needs a body checksum that a copy does not have); a store that locks no objects
            # leaves it be.
            retention.extend_retention(blob, self.retain_until)
        self.stats.add(objects=1, bytes=size, copied_objects=1, copied_bytes=size)
        return self._record(key, head, sha, storage_class)
