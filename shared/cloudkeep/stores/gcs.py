"""A store in a Google Cloud Storage bucket.

Create-only writes carry ``ifGenerationMatch=0``, so Cloud Storage itself refuses a second create
(412 → :class:`~cloudkeep.errors.ObjectExistsError`). An object that fits in one chunk (8 MiB)
goes up in one request; a larger one is streamed as a resumable upload, one chunk in memory at a
time, with the precondition on the upload session (Cloud Storage checks it when the upload
completes). Reads stream in chunks, pinned to the generation first seen.

Credentials and endpoint are the SDK's: Application Default Credentials, or
``STORAGE_EMULATOR_HOST`` for an emulator. Retries are the SDK's (transient errors, with jittered
backoff), but short until the service has answered once, so a wrong endpoint or a missing network
fails fast with exit code 3 instead of retrying for minutes.
"""

from __future__ import annotations

import builtins
import io
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, BinaryIO, ClassVar, Literal, Self, cast

from pydantic import Field

from .. import extras, layout
from ..capabilities import GcsLocation, LifecycleRules
from ..clouds.gcp import GcpFailure, classify, translating
from ..errors import (
    ObjectExistsError,
    ObjectNotFoundError,
    StoreError,
    StoreUnreachableError,
)
from ..specs import Prefix, StoreLocation, UrlStoreModel
from . import CHUNK, BaseStore, Data, ObjectInfo, StoreCapabilities, as_stream, check_key

CONNECT_BUDGET = 8.0  # seconds of retries before the service has answered once
RETRY_BUDGET = 120.0  # seconds of retries afterwards (the SDK's default)
TIMEOUT = (10.0, 120.0)  # connect, read (per HTTP request)
DELETE_WORKERS = 8


def _read_full(stream: BinaryIO, size: int) -> bytes:
    """Up to ``size`` bytes; fewer only at the end of the stream (raw streams may return less)."""
    chunks: list[bytes] = []
    remaining = size
    while remaining > 0:
        chunk = stream.read(remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


#: Name suffixes of parts: cloudkeep's lifecycle rules move only objects ending so (s16-cold).
PART_SUFFIXES = [layout.PART_SUFFIX, layout.PART_SUFFIX + layout.ENCRYPTED_SUFFIX]


class GcsStore(BaseStore, GcsLocation, LifecycleRules):
    capabilities = StoreCapabilities(conditional_create=True, object_lock=False, max_delete_batch=100)

    def __init__(self, bucket: str, prefix: str = "", *, project: str | None = None, client: Any = None) -> None:
        self.bucket_name = bucket
        self.prefix = prefix.strip("/")
        self.project = project
        self._client = client
        self._client_lock = threading.Lock()
        self._answered = False

    @classmethod
    def from_spec(cls, spec: GcsStoreSpec) -> GcsStore:
        return cls(spec.bucket, spec.prefix, project=spec.project)

    @property
    def client(self) -> Any:
        with self._client_lock:
            if self._client is None:
                with self._errors("/"):
                    with extras.translated():  # not installed: one line naming the extra
                        from google.cloud import storage

                    self._client = storage.Client(project=self.project)
            return self._client

    @property
    def bucket(self) -> Any:
        return self.client.bucket(self.bucket_name)

    def describe(self) -> str:
        return f"gs://{self.bucket_name}/{self.prefix}".rstrip("/")

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def gs_uri(self, key: str) -> str:
        return f"gs://{self.bucket_name}/{self._key(key)}"

    def _rel(self, full: str) -> str:
        return full[len(self.prefix) + 1 :] if self.prefix else full

    def _retry(self) -> Any:
        from google.cloud.storage.retry import DEFAULT_RETRY

        return DEFAULT_RETRY.with_timeout(RETRY_BUDGET if self._answered else CONNECT_BUDGET)

    # ---------------------------------------------------------------- writing

    def put(
        self, key: str, data: Data, *, if_absent: bool = False, retain_until: datetime | None = None
    ) -> ObjectInfo:
        """Write ``data`` under ``key``. ``retain_until`` is not applied: this store declares no
        object lock (Cloud Storage object retention is not wired in yet)."""
        full = self._key(key)
        stream = as_stream(data)
        first = _read_full(stream, CHUNK)
        condition = {"if_generation_match": 0} if if_absent else {}
        with self._errors(key, "create" if if_absent else "write"):
            blob = self.bucket.blob(full)
            if len(first) < CHUNK:
                blob.upload_from_file(io.BytesIO(first), size=len(first), retry=self._retry(),
                                      timeout=TIMEOUT, **condition)
                size = len(first)
            else:
                size = self._resumable(key, blob, first, stream, condition)
        self._answered = True
        return ObjectInfo(key, size, datetime.now(UTC))

    def _resumable(self, key: str, blob: Any, first: bytes, stream: BinaryIO, condition: dict[str, int]) -> int:
        if condition and self.stat(key) is not None:
            # Cloud Storage checks ifGenerationMatch when the upload completes; asking first also
            # saves uploading a whole object for nothing (and is the only check emulators make).
            raise ObjectExistsError(key)
        from google.cloud.storage.fileio import BlobWriter

        writer = BlobWriter(blob, chunk_size=CHUNK, ignore_flush=True, retry=self._retry(),
                            timeout=TIMEOUT, **condition)
        size = 0
        chunk = first
        while chunk:
            writer.write(chunk)
            size += len(chunk)
            chunk = _read_full(stream, CHUNK)
        writer.close()  # sends the last chunk and completes the upload
        return size

    # ---------------------------------------------------------------- reading

    def open(self, key: str) -> BinaryIO:
        with self._errors(key):
            blob = self.bucket.get_blob(self._key(key), retry=self._retry(), timeout=TIMEOUT)
        if blob is None:
            raise ObjectNotFoundError(key)
        self._answered = True
        from google.cloud.storage.fileio import BlobReader

        reader = BlobReader(blob, chunk_size=CHUNK, retry=self._retry(), timeout=TIMEOUT,
                            if_generation_match=blob.generation)
        return cast(BinaryIO, _Reader(self, key, reader))

    def get(self, key: str) -> bytes:
        with self._errors(key):
            data = self.bucket.blob(self._key(key)).download_as_bytes(retry=self._retry(), timeout=TIMEOUT)
        self._answered = True
        return cast(bytes, data)

    def stat(self, key: str) -> ObjectInfo | None:
        with self._errors(key):
            blob = self.bucket.get_blob(self._key(key), retry=self._retry(), timeout=TIMEOUT)
        self._answered = True
        if blob is None:
            return None
        return ObjectInfo(key, int(blob.size or 0), blob.updated)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        root = f"{self.prefix}/" if self.prefix else ""
        with self._errors(prefix or "/", "list"):
            blobs = self.client.list_blobs(self.bucket_name, prefix=root + prefix, retry=self._retry(),
                                           timeout=TIMEOUT)
            for blob in blobs:
                self._answered = True
                yield ObjectInfo(self._rel(blob.name), int(blob.size or 0), blob.updated,
                                 blob.storage_class)

    # ---------------------------------------------------------------- deleting

    def delete_batch(self, keys: builtins.list[str]) -> builtins.list[str]:
        """Delete one batch (``max_delete_batch`` keys, BaseStore), several requests at a time;
        GCS has no per-object lock here, so nothing is reported as protected."""
        names = [self._key(k) for k in keys]
        if len(names) == 1:
            self._delete_one(names[0])
            return []
        with ThreadPoolExecutor(max_workers=DELETE_WORKERS, thread_name_prefix="gcs-delete") as pool:
            for future in [pool.submit(self._delete_one, name) for name in names]:
                future.result()
        return []

    def _delete_one(self, name: str) -> None:
        from google.api_core import exceptions

        with self._errors(self._rel(name)):
            try:
                self.bucket.delete_blob(name, retry=self._retry(), timeout=TIMEOUT)
            except exceptions.NotFound:
                pass  # already gone (or the bucket is): not an error
        self._answered = True

    # --- s16-cold: storage classes by the bucket's lifecycle rules ----------------------------

    def lifecycle_rules(self, plans: dict[str, builtins.list[tuple[int, str]]]
                        ) -> builtins.list[dict[str, Any]]:
        """The bucket's lifecycle rules moving the parts (by name suffix) under each prefix to
        the classes given, ``age`` days after creation; rules cloudkeep did not write (any other
        ``matchesSuffix``) are kept as they are."""
        ours = [{"action": {"type": "SetStorageClass", "storageClass": cls},
                 "condition": {"age": days, "matchesPrefix": [self._key(prefix.rstrip("/")) + "/"],
                               "matchesSuffix": list(PART_SUFFIXES)}}
                for prefix, steps in sorted(plans.items()) for days, cls in steps]
        others = [r for r in self.current_lifecycle() if not self._own_rule(r)]
        return others + ours

    def _own_rule(self, rule: dict[str, Any]) -> bool:
        """Whether ``rule`` is one cloudkeep wrote for THIS store (parts' suffixes, and a
        dataset's ``snapshots/`` right under this store's prefix): another store's rules in the
        same bucket (another prefix) are kept."""
        condition = rule.get("condition") or {}
        prefixes = condition.get("matchesPrefix")
        base = f"{self.prefix}/" if self.prefix else ""
        return (condition.get("matchesSuffix") == PART_SUFFIXES and isinstance(prefixes, list)
                and len(prefixes) == 1 and isinstance(prefixes[0], str)
                and prefixes[0].startswith(base)
                and layout.is_snapshots_prefix(prefixes[0][len(base):]))

    def current_lifecycle(self) -> builtins.list[dict[str, Any]]:
        with self._errors("lifecycle", "list"):
            bucket = self.client.get_bucket(self.bucket_name)
            return [dict(rule) for rule in bucket.lifecycle_rules]

    def apply_lifecycle(self, rules: builtins.list[dict[str, Any]]) -> None:
        with self._errors("lifecycle", "write"):
            bucket = self.client.get_bucket(self.bucket_name)
            bucket.lifecycle_rules = rules
            bucket.patch()

    def _errors(self, key: str, op: str = "read") -> translating:
        """Turns google-cloud-storage exceptions into cloudkeep errors about ``key``; ``op``:
        read, write, create (if absent), list."""
        return translating(lambda exc: _store_error(self, key, op, exc))


def _store_error(store: GcsStore, key: str, op: str, exc: BaseException) -> BaseException | None:
    failure = classify(exc)
    if failure is None:
        return None
    where = f"{store.describe()}/{key}".rstrip("/")
    if failure.answered:
        store._answered = True
        return _answer_error(store, key, op, where, failure)
    if failure.kind == "retry":
        assert failure.cause is not None
        return StoreUnreachableError(f"cannot reach {where}: {_short(failure.cause)}")
    if failure.kind == "no-credentials":
        return StoreUnreachableError(
            f"cannot reach {where}: no Google credentials found (run `gcloud auth "
            f"application-default login`, or set STORAGE_EMULATOR_HOST for an emulator)"
        )
    if failure.kind == "auth":
        return StoreUnreachableError(f"cannot reach {where}: {exc}")
    if failure.kind == "connection":
        return StoreUnreachableError(f"cannot reach {where}: {_short(exc)}")
    if failure.kind == "corrupt":
        return StoreError(f"Cloud Storage checksum mismatch on {where}: {exc}")
    return None


def _answer_error(store: GcsStore, key: str, op: str, where: str, failure: GcpFailure) -> BaseException:
    message = failure.text.split("\n")[0]
    if failure.kind == "precondition":
        if op == "create":
            return ObjectExistsError(key)
        return StoreError(f"{where} changed while it was being read ({message})")
    if failure.kind == "not-found":
        # Only an upload or a listing says for sure that the bucket is missing; a read says
        # so in its message on Cloud Storage ("No such object" is the object).
        if op != "read" or "bucket does not exist" in message.lower():
            return StoreUnreachableError(f"cannot reach {where}: bucket {store.bucket_name!r} not found")
        return ObjectNotFoundError(key)
    if failure.kind == "denied":
        return StoreUnreachableError(f"cannot reach {where}: access denied ({message})")
    return StoreError(f"Cloud Storage error on {where}: {message}")


class _Reader(io.RawIOBase):
    """A file-like wrapper over a BlobReader that maps read errors."""

    def __init__(self, store: GcsStore, key: str, reader: Any) -> None:
        super().__init__()
        self._store = store
        self._key = key
        self._reader = reader

    def read(self, size: int = -1) -> bytes:
        with self._store._errors(self._key):
            return cast(bytes, self._reader.read(size))

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._reader.close()
        super().close()


def _short(exc: BaseException) -> str:
    text = str(exc)
    if "NewConnectionError" in text or "Connection refused" in text:
        return "connection refused"
    return text if len(text) <= 200 else text[:200] + "…"



# --------------------------------------------------------------------------------------------
# The policy spec (s20-policy)


class GcsStoreSpec(UrlStoreModel):
    """A Google Cloud Storage bucket."""

    URL_SHAPE: ClassVar[str] = "gs://BUCKET/KEY"
    STORAGE_CLASSES: ClassVar[dict[str, str]] = {
        "cool": "NEARLINE", "cold": "COLDLINE", "archive": "ARCHIVE"}
    DEFAULT_CLASS: ClassVar[str] = "STANDARD"
    MIN_STORAGE_DAYS: ClassVar[dict[str, int]] = {"NEARLINE": 30, "COLDLINE": 90, "ARCHIVE": 365}
    TRANSITIONS_BY: ClassVar[str] = "lifecycle"

    IMPLEMENTATION = GcsStore

    type: Literal["gcs"]
    bucket: str = Field(min_length=3, max_length=222)
    prefix: Prefix = ""
    project: str | None = None
    region: str | None = Field(default=None, description="the bucket's location (for residency)")

    def location(self) -> StoreLocation:
        """The bucket (names are global, whatever the project) and the prefix."""
        return StoreLocation("gcs", "", self.bucket, self.prefix)

    @classmethod
    def at_url(cls, names: list[str]) -> Self:
        return cls(type="gcs", bucket=names[0])
