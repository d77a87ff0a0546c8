"""A store in an Azure Blob Storage container.

Create-only writes are ``upload_blob(overwrite=False)``: the service itself refuses a second
create (``If-None-Match: *`` on the single put, or on the block-list commit of a staged upload).
Large objects are streamed as staged blocks of 8 MiB. Credentials: the connection string in the
environment variable the policy names (``connection_string_env``, default
``AZURE_STORAGE_CONNECTION_STRING``) when set, else ``account_url`` with the default Azure
credential (managed identity, workload identity, CLI login). No secret is written in the policy.

Immutability: with ``immutability: {mode: Unlocked|Locked}`` in the policy, every blob is written
with a version-level time-based retention policy until the snapshot's longest possible retention
(prune extends it for snapshots kept longer), and ``cloudkeep hold`` also sets the blobs' legal
hold. The container needs version-level immutability support. The first immutable blob is read
back: where the policy did not stick (Azurite ignores it, and answers 501 to setting one later),
the write fails with a message saying so instead of passing for immutable storage. Without
``immutability``, a container-level retention policy (set by infra/azure) may still protect the
blobs; deleting one then reports it as locked.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, BinaryIO, ClassVar, Literal, Self, cast

from pydantic import Field

from .. import extras
from ..capabilities import ExtendsRetention, LegalHolds, Rehydrates, SetsStorageClass
from ..clouds.azure import classify, translating
from ..errors import (
    ObjectExistsError,
    ObjectLockedError,
    ObjectNotFoundError,
    StoreError,
    StoreUnreachableError,
)
from ..redaction import redact  # an account_url may carry a SAS token
from ..specs import Model, Prefix, StoreLocation, UrlStoreModel, normalise_url
from . import CHUNK, BaseStore, Data, ObjectInfo, StoreCapabilities, as_stream, check_key

#: Expected hours of a Standard-priority rehydration from Archive (Azure: up to 15 hours).
ARCHIVE_REHYDRATION_HOURS = 15.0


class AzureBlobStore(BaseStore, ExtendsRetention, LegalHolds, SetsStorageClass, Rehydrates):
    """Objects as blobs of one container (see the module's docstring)."""

    capabilities = StoreCapabilities(conditional_create=True, object_lock=False, max_delete_batch=256)

    def __init__(self, container: str, prefix: str = "", *, connection_string: str | None = None,
                 account_url: str | None = None, client: Any = None,
                 immutability_mode: str | None = None) -> None:
        self.container = container
        self.prefix = prefix.strip("/")
        self._connection_string = connection_string
        self._account_url = account_url
        self._client = client
        # Version-level immutability ("Unlocked" or "Locked") for new blobs; None: none.
        self.immutability_mode = immutability_mode
        self._immutability_seen = False  # a written blob was read back with its policy
        self.capabilities = StoreCapabilities(conditional_create=True,
                                              object_lock=immutability_mode is not None,
                                              max_delete_batch=256)

    @classmethod
    def from_spec(cls, spec: AzureBlobStoreSpec) -> AzureBlobStore:
        conn = os.environ.get(spec.connection_string_env) or None
        if conn is None and not spec.account_url:
            raise StoreUnreachableError(
                f"Azure Blob container {spec.container!r}: set {spec.connection_string_env} in the "
                "environment or give account_url in the policy (with a managed identity or az login)"
            )
        mode = spec.immutability.mode if spec.immutability else None
        return cls(spec.container, spec.prefix, connection_string=conn, account_url=spec.account_url,
                   immutability_mode=mode)

    @property
    def client(self) -> Any:
        """The container client, created on first use."""
        if self._client is None:
            with extras.translated():  # not installed: one line naming the extra
                from azure.storage.blob import BlobServiceClient

            options: dict[str, Any] = {"max_single_put_size": CHUNK, "max_block_size": CHUNK,
                       "retry_total": 5, "connection_timeout": 10, "read_timeout": 60}
            if self._connection_string:
                service = BlobServiceClient.from_connection_string(self._connection_string, **options)
            else:
                with extras.translated():
                    from azure.identity import DefaultAzureCredential

                service = BlobServiceClient(self._account_url or "", credential=DefaultAzureCredential(),
                                            **options)
            self._client = service.get_container_client(self.container)
        return self._client

    def describe(self) -> str:
        base = self._account_url or ""
        for item in (self._connection_string or "").split(";"):
            name, _, value = item.partition("=")
            if name == "BlobEndpoint":
                base = value
            elif name == "AccountName" and not base:
                base = f"https://{value}.blob.core.windows.net"
        return redact(f"{base.rstrip('/')}/{self.container}/{self.prefix}".rstrip("/"))

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _rel(self, full: str) -> str:
        return full[len(self.prefix) + 1 :] if self.prefix else full

    def put(self, key: str, data: Data, *, if_absent: bool = False,
            retain_until: datetime | None = None) -> ObjectInfo:
        full = self._key(key)
        stream = as_stream(data)
        counter = _Counting(stream)
        extra: dict[str, Any] = {}
        if retain_until is not None and self.immutability_mode:
            from azure.storage.blob import ImmutabilityPolicy

            extra["immutability_policy"] = ImmutabilityPolicy(expiry_time=retain_until,
                                                              policy_mode=self.immutability_mode)
        with self._errors(key, immutable=bool(extra)):
            self.client.upload_blob(full, counter, overwrite=not if_absent, max_concurrency=1, **extra)
        if extra and not self._immutability_seen:
            self._check_immutability(key, full)
        return ObjectInfo(key, counter.size, datetime.now(UTC))

    def _check_immutability(self, key: str, full: str) -> None:
        """Read the first immutable blob back: an account or emulator that ignores the policy
        (Azurite does) must not pass for immutable storage."""
        with self._errors(key):
            props = self.client.get_blob_client(full).get_blob_properties()
        policy = getattr(props, "immutability_policy", None)
        if policy is None or getattr(policy, "expiry_time", None) is None:
            try:  # the blob is not protected as asked: do not leave it behind
                self.client.delete_blob(full)
            except Exception:  # noqa: BLE001 - the message below matters more
                pass
            raise StoreError(_IMMUTABILITY_UNSUPPORTED.format(where=self.describe()))
        self._immutability_seen = True

    def retain_until(self, key: str) -> datetime | None:
        """The blob's time-based retention expiry (None: no policy)."""
        with self._errors(key):
            props = self.client.get_blob_client(self._key(key)).get_blob_properties()
        policy = getattr(props, "immutability_policy", None)
        value = getattr(policy, "expiry_time", None)
        return value if isinstance(value, datetime) else None

    def extend_retention(self, key: str, until: datetime) -> bool:
        """Move the blob's retention expiry later (never earlier). True if it moved."""
        if not self.immutability_mode:
            return False
        current = self.retain_until(key)
        if current is not None and current >= until:
            return False
        from azure.storage.blob import ImmutabilityPolicy

        with self._errors(key, immutable=True):
            self.client.get_blob_client(self._key(key)).set_immutability_policy(
                ImmutabilityPolicy(expiry_time=until, policy_mode=self.immutability_mode))
        return True

    def set_legal_hold(self, key: str, hold: bool) -> None:
        """Set or clear the blob's legal hold (only with immutability configured)."""
        if not self.immutability_mode:
            return
        with self._errors(key, immutable=True):
            self.client.get_blob_client(self._key(key)).set_legal_hold(hold)

    def open(self, key: str) -> BinaryIO:
        with self._errors(key):
            downloader = self.client.download_blob(self._key(key), max_concurrency=1)
        return cast(BinaryIO, _Reader(downloader, self, key))

    def get(self, key: str) -> bytes:
        with self._errors(key):
            return cast(bytes, self.client.download_blob(self._key(key)).readall())

    def stat(self, key: str) -> ObjectInfo | None:
        try:
            with self._errors(key):
                props = self.client.get_blob_client(self._key(key)).get_blob_properties()
        except ObjectNotFoundError:
            return None
        return ObjectInfo(key, int(props.size), props.last_modified)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        root = f"{self.prefix}/" if self.prefix else ""
        with self._errors(prefix or "/"):
            found = [ObjectInfo(self._rel(b.name), int(b.size), b.last_modified, b.blob_tier)
                     for b in self.client.list_blobs(name_starts_with=root + prefix)]
        found.sort(key=lambda info: info.key)
        yield from found

    LOCKED_DETAIL = "an immutability policy protects them"

    def delete_batch(self, keys: builtins.list[str]) -> builtins.list[str]:
        """Delete one batch (BaseStore): gone already is fine; returns the keys an
        immutability policy still protects."""
        locked: builtins.list[str] = []
        for key in keys:
            try:
                with self._errors(key):
                    self.client.delete_blob(self._key(key))
            except ObjectNotFoundError:
                continue
            except ObjectLockedError:
                locked.append(key)
        return locked

    # --- s16-cold: tiers set by the pruner, rehydration by Set Blob Tier -----------------------

    def set_storage_class(self, key: str, store_class: str) -> None:
        """Set Blob Tier (Hot, Cool, Cold, Archive): the blob is not rewritten."""
        with self._errors(key):
            self.client.get_blob_client(self._key(key)).set_standard_blob_tier(store_class)

    def readiness(self, key: str) -> tuple[str, str | None]:
        """``online`` (Hot, Cool, Cold), ``archived`` or ``rehydrating`` (Archive), and the tier."""
        with self._errors(key):
            props = self.client.get_blob_client(self._key(key)).get_blob_properties()
        tier = props.blob_tier
        if tier != "Archive":
            return "online", tier
        if str(props.archive_status or "").startswith("rehydrate-pending"):
            return "rehydrating", tier
        return "archived", tier

    def rehydrate(self, key: str, *, days: int) -> None:
        """Set Blob Tier to Cold at Standard priority: the blob leaves the archive for good
        (``days`` does not apply; the pruner archives it again once the rehydration record is
        older than the policy's rehydration days)."""
        with self._errors(key):
            self.client.get_blob_client(self._key(key)).set_standard_blob_tier(
                "Cold", rehydrate_priority="Standard")

    def is_offline(self, store_class: str) -> bool:
        return store_class == "Archive"

    def rehydration_hours(self, store_class: str | None) -> float:
        return ARCHIVE_REHYDRATION_HOURS

    def _errors(self, key: str, *, immutable: bool = False) -> translating:
        """Turns Azure SDK exceptions into cloudkeep errors about ``key``; ``immutable``: the call
        sets an immutability policy or a legal hold."""
        return translating(lambda exc: _store_error(self, key, immutable, exc))


_IMMUTABILITY_CODES = ("Immutab", "Worm", "VersionLevel", "LegalHold")
_IMMUTABILITY_UNSUPPORTED = (
    "{where} does not support version-level immutability: the blob was written without a "
    "retention policy. Enable version-level immutability support on the container (or on its storage "
    "account), or remove `immutability` from the store in the policy"
)


def _store_error(store: AzureBlobStore, key: str, immutable: bool, exc: BaseException) -> BaseException | None:
    failure = classify(exc)
    if failure is None:
        return None
    where = f"{store.describe()}/{key}"
    code, status = failure.code, failure.status
    if failure.kind == "exists" and code in ("BlobAlreadyExists", "", "ConditionNotMet"):
        return ObjectExistsError(key)
    if failure.kind == "not-found":
        if code == "ContainerNotFound":
            return StoreUnreachableError(f"cannot reach {where}: container not found")
        return ObjectNotFoundError(key)
    if failure.kind in ("auth", "request") or not failure.answered:
        return StoreUnreachableError(f"cannot reach {where}: {type(exc).__name__}")
    if immutable and (status == 501 or (
            status in (400, 409) and any(w in code for w in _IMMUTABILITY_CODES))):
        return StoreError(
            _IMMUTABILITY_UNSUPPORTED.format(where=store.describe()) + f" (HTTP {status} {code})".rstrip()
        )
    if status == 412:
        return ObjectExistsError(key)
    if status == 409 and "Immutab" in code:
        return ObjectLockedError([key], code)
    if status == 403:
        return StoreUnreachableError(f"cannot reach {where}: access denied ({code})")
    return StoreError(f"Azure Blob error on {where}: {status} {code}".rstrip())


class _Counting:
    """Counts the bytes the SDK reads from a stream, reading in bounded chunks."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(CHUNK if size is None or size < 0 else min(size, CHUNK))
        self.size += len(data)
        return data

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(CHUNK):
            yield chunk


class _Reader:
    """A file-like view of a blob download, read chunk by chunk."""

    def __init__(self, downloader: Any, store: AzureBlobStore, key: str) -> None:
        self._chunks = downloader.chunks()
        self._buffer = b""
        self._store = store
        self._key = key

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = self._next_chunk()
            if chunk is None:
                break
            self._buffer += chunk
        cut = len(self._buffer) if size < 0 else size
        out, self._buffer = self._buffer[:cut], self._buffer[cut:]
        return out

    def _next_chunk(self) -> bytes | None:
        """The download's next chunk; None at its end."""
        with self._store._errors(self._key):
            chunk: bytes | None = next(self._chunks, None)
        return chunk

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._buffer = b""

    def __enter__(self) -> _Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------------------------
# The policy spec (s20-policy)


def _azure_account(spec: AzureBlobStoreSpec) -> str:
    """The storage account a store talks to: the connection string in its environment variable
    wins when set (as it does for the store), else ``account_url``."""
    conn = os.environ.get(spec.connection_string_env)
    if conn:
        fields = dict(item.partition("=")[::2] for item in conn.split(";") if "=" in item)
        if fields.get("BlobEndpoint"):
            return normalise_url(fields["BlobEndpoint"])
        if fields.get("AccountName"):
            suffix = fields.get("EndpointSuffix") or "core.windows.net"
            scheme = fields.get("DefaultEndpointsProtocol") or "https"
            return normalise_url(f"{scheme}://{fields['AccountName']}.blob.{suffix}")
        if conn.strip().lower().startswith("usedevelopmentstorage=true"):
            return "http://127.0.0.1:10000/devstoreaccount1"
    if spec.account_url:
        return normalise_url(spec.account_url)
    return f"${spec.connection_string_env}"


class BlobImmutability(Model):
    """Azure Blob version-level immutability for every blob written: a time-based retention
    policy until the snapshot's longest possible retention has passed (extended by prune when a
    snapshot is kept longer); legal holds (``cloudkeep hold``) also set the blobs' legal hold."""

    mode: Literal["Unlocked", "Locked"] = "Unlocked"


class AzureBlobStoreSpec(UrlStoreModel):
    """An Azure Blob Storage container. Credentials: the connection string in the environment
    variable ``connection_string_env`` if it is set, else ``account_url`` with the default Azure
    credential (managed identity, CLI login, ...). No secret is ever written in the policy."""

    URL_SHAPE: ClassVar[str] = "az://ACCOUNT/CONTAINER/KEY"
    STORAGE_CLASSES: ClassVar[dict[str, str]] = {"cool": "Cool", "cold": "Cold", "archive": "Archive"}
    DEFAULT_CLASS: ClassVar[str] = "Hot"
    MIN_STORAGE_DAYS: ClassVar[dict[str, int]] = {"Cool": 30, "Cold": 90, "Archive": 180}
    TRANSITIONS_BY: ClassVar[str] = "prune"

    IMPLEMENTATION = AzureBlobStore

    type: Literal["azure_blob"]
    container: str = Field(min_length=3, max_length=63, pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
    prefix: Prefix = ""
    account_url: str | None = None
    connection_string_env: str = "AZURE_STORAGE_CONNECTION_STRING"
    region: str | None = Field(default=None, description="the storage account's region (for residency)")
    immutability: BlobImmutability | None = Field(
        default=None,
        description="write every blob with a time-based retention policy (the container needs "
        "version-level immutability support)",
    )

    def location(self) -> StoreLocation:
        """The storage account, the container and the prefix."""
        return StoreLocation("azure_blob", _azure_account(self), self.container, self.prefix)

    def secret_envs(self) -> list[str]:
        return [self.connection_string_env] if self.connection_string_env else []

    @classmethod
    def at_url(cls, names: list[str]) -> Self:
        return cls(type="azure_blob", container=names[1],
                   account_url=f"https://{names[0]}.blob.core.windows.net")
