"""Restoring an S3 snapshot: listed objects written into ``BUCKET[/PREFIX]`` from the store's blobs."""

from __future__ import annotations

import json
import logging
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Protocol

from ... import layout
from ...capabilities import DeletesItems, ReadsItems, ServerSideCopy, able
from ...codec import HashingReader, PartLimitError, canonical_json
from ...errors import ObjectNotFoundError, RestoreError
from .errors import _Changed, _errors, _Vanished
from .items import delete_objects, live_record
from .listing import ARCHIVE_CLASSES, HEADERS, SMALL, etag_of, split_target
from .servercopy import server_copy

if TYPE_CHECKING:
    from ...stores import Store

log = logging.getLogger(__name__)


class S3Origin(Protocol):
    """What a restore needs of the S3 source (:class:`~cloudkeep.sources.s3.S3Source`): its
    client, region and workers, the snapshot's store and dataset (``attach_store``), and whether
    blobs copy inside S3."""

    region: str
    workers: int
    store: Store | None
    dataset: str | None

    @property
    def client(self) -> Any: ...

    def server_side(self) -> bool: ...


def prepare_target(source: S3Origin, target: str, *, overwrite: bool) -> S3Writer:
    """A writer into ``BUCKET[/PREFIX]`` (the bucket made when absent), refusing a non-empty
    target unless ``overwrite``."""
    if source.store is None:
        raise RestoreError("the S3 source needs the snapshot's store to restore (attach_store)")
    bucket, prefix = split_target(target)
    from botocore.exceptions import ClientError

    client = source.client
    try:
        with _errors(f"reading bucket {bucket}", passthrough={"NoSuchBucket", "404", "NotFound"}):
            client.head_bucket(Bucket=bucket)
    except ClientError:
        log.info("creating bucket %s in %s", bucket, source.region)
        params: dict[str, Any] = {"Bucket": bucket}
        if source.region != "us-east-1":
            params["CreateBucketConfiguration"] = {"LocationConstraint": source.region}
        with _errors(f"creating bucket {bucket}"):
            client.create_bucket(**params)
    with _errors(f"listing bucket {bucket}"):
        probe = client.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/" if prefix else "",
                                       MaxKeys=1)
    if probe.get("KeyCount", 0) and not overwrite:
        where = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        raise RestoreError(f"target {where} is not empty; refusing to write into it "
                           "(pass --overwrite to write the snapshot's objects over it)")
    return S3Writer(source, target, bucket, prefix)


def drop_prefix(client: Any, bucket: str, prefix: str) -> int:
    """Delete every object under ``s3://bucket/prefix/`` (DeleteObjects, 1000 keys a request);
    how many there were."""
    deleted = 0
    pages = iter(client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/"))
    while True:  # page by page: never the whole listing in memory
        with _errors(f"listing bucket {bucket}"):
            page = next(pages, None)
        if page is None:
            return deleted
        keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
        for i in range(0, len(keys), 1000):
            with _errors(f"deleting the drill objects under s3://{bucket}/{prefix}/"):
                client.delete_objects(Bucket=bucket, Delete={"Objects": keys[i:i + 1000], "Quiet": True})
            deleted += len(keys[i:i + 1000])


class S3Writer(DeletesItems, ReadsItems):
    """Writes listed objects into ``BUCKET[/PREFIX]`` from the store's blobs: content, metadata,
    content type, headers, tags and storage class. Server-side when the store is a bucket on the
    same endpoint; otherwise streamed, with each object's sha256 checked. Deletes objects and
    reads them back (as listing records) by the snapshot's object key."""

    def __init__(self, source: S3Origin, target: str, bucket: str, prefix: str) -> None:
        self.source = source
        self.target = target
        self.bucket = bucket
        self.prefix = prefix
        self._server_side = source.server_side()
        self._pool = ThreadPoolExecutor(max_workers=source.workers, thread_name_prefix="s3-restore")

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def delete_keys(self, keys: list[Any]) -> int:
        """Delete the target's objects for these snapshot keys (under the target's prefix)."""
        delete_objects(self.source.client, self.bucket, self.prefix, [str(k) for k in keys])
        return len(keys)

    def read_items(self, keys: list[Any]) -> dict[bytes, bytes | None]:
        """``canonical_json(key)`` → the target's object as a listing line, None where absent."""
        wanted = {canonical_json(k): str(k) for k in keys}
        client = self.source.client
        futures = {kb: self._pool.submit(live_record, client, self.bucket, self.prefix, key)
                   for kb, key in wanted.items()}
        return {kb: future.result() for kb, future in futures.items()}

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
        for field_name, name in HEADERS.items():
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
            copyable = able(store, ServerSideCopy)
            assert copyable is not None
            src_bucket, src_key = copyable.location(blob)
            info = store.stat(blob)
            if info is None:
                raise RestoreError(f"blob {sha} of {record['key']!r} is missing from {store.describe()}")
            with _errors(f"reading blob {sha}"):
                blob_etag = etag_of(copyable.copy_client().head_object(Bucket=src_bucket, Key=src_key)["ETag"])
            directives = {"MetadataDirective": "REPLACE", "TaggingDirective": "REPLACE"}
            try:
                server_copy(client, {"Bucket": src_bucket, "Key": src_key}, blob_etag, info.size,
                            self.bucket, key, extra | directives, where=where)
            except (_Changed, _Vanished):
                raise RestoreError(f"blob {sha} changed or went while it was copied to {where}") from None
            return
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
