"""Issue 20, AWS side: adapters declare their capabilities, stores batch deletes by their declared
limit, and the one AWS error translator keeps each adapter's messages and exit codes."""

from __future__ import annotations

import builtins
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from cloudkeep.capabilities import (
    CopiesObjects,
    Drillable,
    ExtendsRetention,
    Incremental,
    LockModes,
    NativeCheck,
    NativeRestore,
    NativeRetention,
    Resumable,
    SampleCheck,
    ServerSideCopy,
    Summarizes,
    able,
)
from cloudkeep.clouds.aws import AwsErrors, S3StoreErrors, fault_of
from cloudkeep.errors import (
    ObjectExistsError,
    ObjectLockedError,
    ObjectNotFoundError,
    SourceError,
    SourceUnreachableError,
    StoreError,
    StoreUnreachableError,
)
from cloudkeep.sources.dynamodb import DynamoDBSource
from cloudkeep.sources.rds import RdsSource
from cloudkeep.sources.s3 import S3Source
from cloudkeep.stores import StoreCapabilities
from cloudkeep.stores.file import FileStore
from cloudkeep.stores.memory import MemoryStore
from cloudkeep.stores.s3 import S3Store


def client_error(code: str, message: str = "nope") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, "Op")


def test_aws_adapters_declare_their_capabilities() -> None:
    dynamodb = DynamoDBSource("orders", "us-east-1")
    for capability in (Resumable, SampleCheck, NativeCheck, NativeRestore, NativeRetention):
        assert able(dynamodb, capability) is dynamodb, capability
    assert able(dynamodb, CopiesObjects) is None and able(dynamodb, Drillable) is None
    s3 = S3Source("bucket", "us-east-1")
    for capability in (CopiesObjects, Incremental, Summarizes):
        assert able(s3, capability) is s3, capability
    assert able(s3, Resumable) is None and able(s3, NativeRestore) is None
    rds = RdsSource("us-east-1", instance="db")
    for capability in (NativeCheck, NativeRestore, Drillable, NativeRetention):
        assert able(rds, capability) is rds, capability
    assert able(rds, Resumable) is None
    store = S3Store("bucket", "prefix")
    for capability in (LockModes, ExtendsRetention, ServerSideCopy):
        assert able(store, capability) is store, capability
    assert store._client is None  # asking builds no client
    assert store.location("a/b") == ("bucket", "prefix/a/b")
    assert able(MemoryStore(), ServerSideCopy) is None


class CountingStore(MemoryStore):
    """A memory store with a small declared delete limit that records every batch and refuses
    keys under ``locked/``."""

    capabilities = StoreCapabilities(max_delete_batch=3)

    def __init__(self) -> None:
        super().__init__()
        self.batches: builtins.list[builtins.list[str]] = []

    def delete_batch(self, keys: builtins.list[str]) -> builtins.list[str]:
        self.batches.append(list(keys))
        kept = [k for k in keys if k.startswith("locked/")]
        super().delete_batch([k for k in keys if k not in kept])
        return kept


def test_deletes_are_batched_by_the_declared_limit_and_locked_keys_are_reported_last() -> None:
    store = CountingStore()
    keys = [f"k/{i}" for i in range(7)] + ["locked/a"]
    for key in keys:
        store.put(key, b"x")
    with pytest.raises(ObjectLockedError) as caught:
        store.delete(iter(keys))
    assert [len(b) for b in store.batches] == [3, 3, 2]
    assert caught.value.keys == ["locked/a"]
    assert [o.key for o in store.list()] == ["locked/a"]  # everything else went first


def test_a_bad_key_is_refused_before_its_batch_is_deleted(tmp_path: Any) -> None:
    store = FileStore(str(tmp_path))
    store.put("a/b", b"x")
    with pytest.raises(StoreError, match="invalid object key"):
        store.delete(["a/b", "../escape"])
    assert store.stat("a/b") is not None  # the batch holding the bad key was not started
    store.delete(["a/b", "a/gone"])
    assert store.stat("a/b") is None


def test_fault_of_classifies_botocore_errors_only() -> None:
    fault = fault_of(client_error("Throttling", "slow down"))
    assert fault is not None and (fault.kind, fault.code, fault.text()) == (
        "response", "Throttling", "Throttling: slow down")
    creds = fault_of(NoCredentialsError())
    assert creds is not None and creds.kind == "credentials"
    net = fault_of(EndpointConnectionError(endpoint_url="http://127.0.0.1:1"))
    assert net is not None and net.kind == "network"
    assert fault_of(ValueError("x")) is None


class TableErrors(AwsErrors):
    SERVICE = "DynamoDB"
    UNREACHABLE = frozenset({"ResourceNotFoundException"})


def test_service_translation_keeps_messages_and_exit_codes() -> None:
    with pytest.raises(SourceUnreachableError) as gone, TableErrors("scanning t"):
        raise client_error("ResourceNotFoundException", "no table")
    assert str(gone.value) == "DynamoDB ResourceNotFoundException while scanning t: no table"
    assert gone.value.exit_code == 3
    with pytest.raises(SourceError) as other, TableErrors("exporting t", hints={"X": "do this"}):
        raise client_error("X", "")
    assert str(other.value) == "DynamoDB X while exporting t — do this"
    assert other.value.exit_code == 1
    with pytest.raises(ClientError), TableErrors("reading", passthrough={"BackupNotFoundException"}):
        raise client_error("BackupNotFoundException")
    with pytest.raises(SourceUnreachableError, match="no AWS credentials found while reading"), \
            TableErrors("reading"):
        raise NoCredentialsError()
    with pytest.raises(KeyError), TableErrors("reading"):
        raise KeyError("not botocore: untouched")


def test_s3_store_translation() -> None:
    where = "s3://bucket/prefix/k"
    with pytest.raises(ObjectExistsError), S3StoreErrors(where, subject="k"):
        raise client_error("PreconditionFailed")
    with pytest.raises(ObjectNotFoundError), S3StoreErrors(where, subject="k"):
        raise client_error("NoSuchKey")
    with pytest.raises(StoreUnreachableError, match=f"cannot reach {where}: AccessDenied: denied"), \
            S3StoreErrors(where, subject="k"):
        raise client_error("AccessDenied", "denied")
    with pytest.raises(StoreError, match=f"S3 error on {where}: InternalError: oops"), \
            S3StoreErrors(where, subject="k"):
        raise client_error("InternalError", "oops")
