"""A store in an S3 bucket (or any S3-compatible endpoint such as moto server).

Create-only writes use ``IfNoneMatch="*"`` (on ``PutObject`` and on
``CompleteMultipartUpload``), so S3 itself refuses a second create. Objects larger than one chunk
are streamed as a multipart upload, one chunk in memory at a time.
"""

from __future__ import annotations

import builtins
import logging
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, BinaryIO, ClassVar, Literal, Self, cast

from pydantic import Field

from .. import layout
from ..capabilities import ExtendsRetention, LifecycleRules, LockModes, Rehydrates, ServerSideCopy
from ..clouds.aws import S3StoreErrors, s3_client
from ..errors import ObjectNotFoundError, StoreError
from ..specs import ObjectLock, Prefix, S3Bucket, StoreLocation, UrlStoreModel, normalise_url
from . import CHUNK, BaseStore, Data, ObjectInfo, StoreCapabilities, as_stream, check_key

#: The S3 client (timeouts and retries: ``clouds/aws.py``); the S3 source builds its own with it.
make_client = s3_client


#: The object tag every part is written with: lifecycle rules move only parts (s16-cold).
PART_TAG = ("cloudkeep-data", "part")
#: Rule IDs of the lifecycle rules cloudkeep writes (others in the bucket are kept as they are).
RULE_PREFIX = "cloudkeep-"
#: Expected hours of a Standard retrieval (AWS: DEEP_ARCHIVE within 12 h, GLACIER 3-5 h).
_RESTORE_HOURS = {"DEEP_ARCHIVE": 12.0, "GLACIER": 5.0}
#: Error codes of a PutObject refused for its tag (IAM without s3:PutObjectTagging; services
#: without object tags): retried untagged.
_TAGGING_REFUSED = frozenset({"AccessDenied", "NotImplemented", "InvalidTag", "InvalidArgument"})
log = logging.getLogger(__name__)


class S3Store(BaseStore, LockModes, ExtendsRetention, ServerSideCopy, LifecycleRules, Rehydrates):
    capabilities = StoreCapabilities(conditional_create=True, object_lock=False, max_delete_batch=1000)

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        client: Any = None,
        lock_mode: str | None = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._region = region
        self._endpoint_url = endpoint_url
        self._client = client
        self.lock_mode = lock_mode  # Object Lock mode for new objects; None: no retention
        self._tag_parts = True  # False once the store refused an object tag (s16-cold)
        self.capabilities = StoreCapabilities(
            conditional_create=True, object_lock=lock_mode is not None, max_delete_batch=1000
        )

    @classmethod
    def from_spec(cls, spec: S3StoreSpec) -> S3Store:
        mode = spec.object_lock.mode if spec.object_lock else None
        return cls(spec.bucket, spec.prefix, region=spec.region, endpoint_url=spec.endpoint_url,
                   lock_mode=mode)

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = make_client(self._region, self._endpoint_url)
        return self._client

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def location(self, key: str) -> tuple[str, str]:
        """The bucket and full object key of ``key`` (for server-side copies into this store)."""
        return self.bucket, self._key(key)

    def copy_client(self) -> Any:
        """The client that reaches this store's bucket (server-side copies, exports)."""
        return self.client

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _rel(self, full: str) -> str:
        return full[len(self.prefix) + 1 :] if self.prefix else full

    def put(
        self, key: str, data: Data, *, if_absent: bool = False, retain_until: datetime | None = None
    ) -> ObjectInfo:
        full = self._key(key)
        extra: dict[str, Any] = {}
        if if_absent:
            extra["IfNoneMatch"] = "*"
        lock: dict[str, Any] = {}
        if self._tag_parts and layout.PART_NAME_RE.match(full.rsplit("/", 1)[-1]):
            lock["Tagging"] = f"{PART_TAG[0]}={PART_TAG[1]}"  # lifecycle rules select parts by it
        if retain_until is not None and self.lock_mode:
            lock = {"ObjectLockMode": self.lock_mode, "ObjectLockRetainUntilDate": retain_until}
        stream = as_stream(data)
        first = _read_chunk(stream)
        with self._errors(key):
            if len(first) < CHUNK:
                self._tagged(self.client.put_object, Bucket=self.bucket, Key=full, Body=first,
                             **extra, **lock)
                return ObjectInfo(key, len(first), datetime.now(UTC))
            return self._multipart(key, full, first, stream, extra, lock)

    def _multipart(
        self, key: str, full: str, first: bytes, stream: BinaryIO, extra: dict[str, Any],
        lock: dict[str, Any],
    ) -> ObjectInfo:
        upload_id = self._tagged(self.client.create_multipart_upload, Bucket=self.bucket, Key=full,
                                 **lock)["UploadId"]
        parts = []
        size = 0
        try:
            chunk = first
            number = 1
            while chunk:
                resp = self.client.upload_part(
                    Bucket=self.bucket, Key=full, UploadId=upload_id, PartNumber=number, Body=chunk
                )
                parts.append({"ETag": resp["ETag"], "PartNumber": number})
                size += len(chunk)
                number += 1
                chunk = _read_chunk(stream)
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=full,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
                **extra,
            )
        except BaseException:
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload_id)
            except Exception:  # noqa: BLE001 - the original error matters more
                pass
            raise
        return ObjectInfo(key, size, datetime.now(UTC))

    def _tagged(self, call: Any, **kwargs: Any) -> Any:
        """``call(**kwargs)``; when it carries the part tag and the store refuses tagging (a role
        without s3:PutObjectTagging, an S3-compatible service without tags), again without it —
        nothing was created by the refused request — and no more tags from this store: the
        backup goes on, only cold-tier lifecycle rules will not select these parts (logged)."""
        if "Tagging" not in kwargs:
            return call(**kwargs)
        try:
            return call(**kwargs)
        except Exception as exc:
            code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
            if code not in _TAGGING_REFUSED:
                raise
            self._tag_parts = False
            log.warning("%s refuses object tags (%s): parts are written untagged, so cold-tier "
                        "lifecycle rules will not move them (docs/cold-tiers.md)",
                        self.describe(), code)
            kwargs.pop("Tagging")
            return call(**kwargs)

    def open(self, key: str) -> BinaryIO:
        with self._errors(key):
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
        return cast(BinaryIO, _BodyReader(body))

    def get(self, key: str) -> bytes:
        with self._errors(key):
            return cast(bytes, self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read())

    def stat(self, key: str) -> ObjectInfo | None:
        try:
            with self._errors(key):
                head = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ObjectNotFoundError:
            return None
        return ObjectInfo(key, int(head["ContentLength"]), head.get("LastModified"))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        root = f"{self.prefix}/" if self.prefix else ""
        full = root + prefix
        paginator = self.client.get_paginator("list_objects_v2")
        with self._errors(prefix or "/"):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
                for obj in page.get("Contents", []):
                    yield ObjectInfo(self._rel(obj["Key"]), int(obj["Size"]), obj.get("LastModified"),
                                     obj.get("StorageClass"))

    LOCKED_DETAIL = "Object Lock retention has not expired"

    def delete_batch(self, keys: builtins.list[str]) -> builtins.list[str]:
        """Delete a batch of keys (:class:`BaseStore` batches ``delete`` by 1000, DeleteObjects'
        limit); with Object Lock (a versioned bucket) every version of each key, so the data
        really goes. Returns the keys Object Lock refused."""
        if self.lock_mode:
            objects = [v for key in keys for v in self._versions(key)]
        else:
            objects = [{"Key": self._key(key)} for key in keys]
        size = self.capabilities.max_delete_batch
        locked: builtins.list[str] = []
        for start in range(0, len(objects), size):
            locked += self._delete_objects(objects[start:start + size])
        return locked

    def _versions(self, key: str) -> builtins.list[dict[str, str]]:
        full = self._key(key)
        out: builtins.list[dict[str, str]] = []
        paginator = self.client.get_paginator("list_object_versions")
        with self._errors(key):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
                for v in page.get("Versions", []) + page.get("DeleteMarkers", []):
                    if v["Key"] == full:
                        out.append({"Key": full, "VersionId": v["VersionId"]})
        return out

    def _delete_objects(self, batch: builtins.list[dict[str, str]]) -> builtins.list[str]:
        """One DeleteObjects request; returns the keys refused by Object Lock."""
        with self._errors(batch[0]["Key"]):
            resp = self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
            )
        errors = [e for e in resp.get("Errors", []) if e.get("Code") != "NoSuchKey"]
        locked = [self._rel(e["Key"]) for e in errors
                  if e.get("Code") == "AccessDenied" and "lock" in str(e.get("Message", "")).lower()]
        others = [e for e in errors if self._rel(e.get("Key", "")) not in locked]
        if others:
            first = others[0]
            raise StoreError(
                f"cannot delete {len(others)} object(s) from {self.describe()}, e.g. "
                f"{first.get('Key')}: {first.get('Code')} {first.get('Message', '')}".rstrip()
            )
        return locked

    def with_lock_mode(self, mode: str) -> S3Store:
        """This store, writing new objects in Object Lock ``mode`` (a tier's ``immutability``);
        itself when it locks no objects."""
        if not self.lock_mode or mode == self.lock_mode:
            return self
        return S3Store(self.bucket, self.prefix, region=self._region, endpoint_url=self._endpoint_url,
                       client=self._client, lock_mode=mode)

    def retain_until(self, key: str) -> datetime | None:
        """The Object Lock retain-until date of the current version (None: not locked)."""
        return self._lock_of(key)[1]

    def _lock_of(self, key: str) -> tuple[str | None, datetime | None]:
        with self._errors(key):
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        value = head.get("ObjectLockRetainUntilDate")
        return head.get("ObjectLockMode"), value if isinstance(value, datetime) else None

    def extend_retention(self, key: str, until: datetime) -> bool:
        """Move the retain-until date of ``key`` later (never earlier), keeping the object's
        own lock mode (a COMPLIANCE tier's objects in a GOVERNANCE store). True if it moved."""
        if not self.lock_mode:
            return False
        mode, current = self._lock_of(key)
        if current is not None and current >= until:
            return False
        with self._errors(key):
            self.client.put_object_retention(
                Bucket=self.bucket, Key=self._key(key),
                Retention={"Mode": mode or self.lock_mode, "RetainUntilDate": until},
            )
        return True

    # --- s16-cold: storage classes by lifecycle rules, rehydration by RestoreObject ----------

    def lifecycle_rules(self, plans: dict[str, builtins.list[tuple[int, str]]]) -> dict[str, Any]:
        """The bucket's lifecycle configuration moving the parts under each prefix (relative to
        the store) to the classes given, ``days`` after their creation; rules of the bucket that
        cloudkeep did not write are kept (PutBucketLifecycleConfiguration replaces them all)."""
        ours = []
        for prefix, steps in sorted(plans.items()):
            full = self._key(prefix.rstrip("/")) + "/"
            ours.append({
                "ID": (RULE_PREFIX + full.rstrip("/").replace("/", "-"))[:255],
                "Status": "Enabled",
                "Filter": {"And": {"Prefix": full,
                                   "Tags": [{"Key": PART_TAG[0], "Value": PART_TAG[1]}]}},
                "Transitions": [{"Days": days, "StorageClass": cls} for days, cls in steps],
            })
        others = [r for r in self.current_lifecycle().get("Rules", []) if not self._own_rule(r)]
        return {"Rules": others + ours}

    def _own_rule(self, rule: dict[str, Any]) -> bool:
        """Whether ``rule`` is one cloudkeep wrote for THIS store (its ID, and a filter on a
        dataset's ``snapshots/`` right under this store's prefix): the rules of another store in
        the same bucket (another prefix) are someone else's and kept."""
        if not str(rule.get("ID", "")).startswith(RULE_PREFIX):
            return False
        prefix = ((rule.get("Filter") or {}).get("And") or {}).get("Prefix")
        base = f"{self.prefix}/" if self.prefix else ""
        return (isinstance(prefix, str) and prefix.startswith(base)
                and layout.is_snapshots_prefix(prefix[len(base):]))

    def current_lifecycle(self) -> dict[str, Any]:
        try:
            with self._errors("lifecycle"):
                resp = self.client.get_bucket_lifecycle_configuration(Bucket=self.bucket)
        except Exception as exc:
            if "NoSuchLifecycleConfiguration" in str(exc):
                return {"Rules": []}
            raise
        return {"Rules": resp.get("Rules", [])}

    def apply_lifecycle(self, rules: dict[str, Any]) -> None:
        with self._errors("lifecycle"):
            if rules.get("Rules"):
                self.client.put_bucket_lifecycle_configuration(
                    Bucket=self.bucket, LifecycleConfiguration=rules)
            else:
                self.client.delete_bucket_lifecycle(Bucket=self.bucket)

    def readiness(self, key: str) -> tuple[str, str | None]:
        """``online``, ``archived``, ``rehydrating`` or ``ready``, and the object's class."""
        with self._errors(key):
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        cls = head.get("StorageClass") or "STANDARD"
        if cls not in _RESTORE_HOURS:
            return "online", cls
        restore = str(head.get("Restore") or "")
        if 'ongoing-request="false"' in restore:
            return "ready", cls
        if 'ongoing-request="true"' in restore:
            return "rehydrating", cls
        return "archived", cls

    def rehydrate(self, key: str, *, days: int) -> None:
        """RestoreObject (Standard retrieval): a readable copy for ``days`` days; one already
        under way is fine."""
        try:
            with self._errors(key):
                self.client.restore_object(
                    Bucket=self.bucket, Key=self._key(key),
                    RestoreRequest={"Days": days, "GlacierJobParameters": {"Tier": "Standard"}})
        except Exception as exc:
            if "RestoreAlreadyInProgress" not in str(exc):
                raise

    def is_offline(self, store_class: str) -> bool:
        return store_class in _RESTORE_HOURS

    def rehydration_hours(self, store_class: str | None) -> float:
        return _RESTORE_HOURS.get(store_class or "", 12.0)

    def _errors(self, key: str) -> S3StoreErrors:
        """botocore errors on ``key`` → cloudkeep's (``clouds/aws.py``)."""
        return S3StoreErrors(f"{self.describe()}/{key}", subject=key)


def _read_chunk(stream: BinaryIO) -> bytes:
    """Up to CHUNK bytes, fewer only at the end of the stream.

    ``read(n)`` may return less than ``n`` before the end (pipes, sockets, raw files): a short first
    read must not end the object, and every multipart part but the last must be full size.
    """
    buf = bytearray()
    while len(buf) < CHUNK:
        piece = stream.read(CHUNK - len(buf))
        if not piece:
            break
        buf += piece
    return bytes(buf)


class _BodyReader:
    """A file-like wrapper over a botocore StreamingBody that maps read errors."""

    def __init__(self, body: Any) -> None:
        self._body = body

    def read(self, size: int = -1) -> bytes:
        return cast(bytes, self._body.read(None if size < 0 else size))

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._body.close()

    def __enter__(self) -> _BodyReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_url(url: str) -> bytes:
    """Read a whole object from an ``s3://bucket/key`` URL (used to load a policy)."""
    rest = url[len("s3://") :]
    bucket, _, key = rest.partition("/")
    if not bucket or not key:
        raise StoreError(f"bad S3 URL {url!r} (expected s3://bucket/key)")
    return S3Store(bucket).get(key)


# --------------------------------------------------------------------------------------------
# The policy spec (s20-policy)


_AWS_S3_HOST = re.compile(r"^s3(?:[.-][a-z0-9-]+)*\.amazonaws\.com(?:\.cn)?$")


def _s3_service(endpoint_url: str | None) -> str:
    """The S3 service a store talks to: AWS itself (bucket names are global there, whatever the
    region) or another endpoint. Without ``endpoint_url``, boto3's own environment variables
    decide, as they do for the store."""
    url = (endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3")
           or os.environ.get("AWS_ENDPOINT_URL") or "")
    if not url:
        return "aws"
    normal = normalise_url(url)
    host = normal.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]
    if _AWS_S3_HOST.match(host):
        return "aws-cn" if host.endswith(".cn") else "aws"
    return normal


class S3StoreSpec(UrlStoreModel):
    """An S3 bucket (or S3-compatible endpoint)."""

    URL_SHAPE: ClassVar[str] = "s3://BUCKET/KEY"
    STORAGE_CLASSES: ClassVar[dict[str, str]] = {
        "cool": "STANDARD_IA", "cold": "GLACIER_IR", "archive": "DEEP_ARCHIVE"}
    DEFAULT_CLASS: ClassVar[str] = "STANDARD"
    MIN_STORAGE_DAYS: ClassVar[dict[str, int]] = {
        "STANDARD_IA": 30, "GLACIER_IR": 90, "GLACIER": 90, "DEEP_ARCHIVE": 180}
    LIFECYCLE_MIN_DAYS: ClassVar[dict[str, int]] = {"STANDARD_IA": 30}
    TRANSITIONS_BY: ClassVar[str] = "lifecycle"

    IMPLEMENTATION = S3Store

    type: Literal["s3"]
    bucket: S3Bucket
    prefix: Prefix = ""
    region: str = Field(min_length=1)
    endpoint_url: str | None = None
    object_lock: ObjectLock | None = Field(
        default=None,
        description="write every object with an Object Lock retain-until date (the bucket must "
        "have Object Lock enabled)",
    )

    def location(self) -> StoreLocation:
        """The service (AWS whatever the region, or the endpoint), the bucket and the prefix."""
        return StoreLocation("s3", _s3_service(self.endpoint_url), self.bucket, self.prefix)

    def locks_objects(self) -> bool:
        return self.object_lock is not None

    @classmethod
    def at_url(cls, names: list[str]) -> Self:
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        return cls(type="s3", bucket=names[0], region=region)
