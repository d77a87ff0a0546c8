"""The GCP/Azure adapters' shared plumbing: retry.Backoff's clock-driven budget, resets and fixed
polling; the one SDK-error classifier per cloud (``clouds/gcp.py``, ``clouds/azure.py``) on the
SDKs' own exception classes; ``translating``; the adapters' declared capabilities and typed
descriptions. No test sleeps: the clock and the sleep are injected."""

from __future__ import annotations

from typing import Any

import pytest

from cloudkeep.capabilities import (
    Description,
    ExtendsRetention,
    GcsLocation,
    Incremental,
    LegalHolds,
    NativeRestore,
    ReadsFromCursor,
    Resumable,
    SampleCheck,
    able,
)
from cloudkeep.clouds import azure as az
from cloudkeep.clouds import gcp
from cloudkeep.clouds._translate import translating
from cloudkeep.errors import KeyUnavailableError, SourceError, SourceUnreachableError, StoreError
from cloudkeep.retry import Backoff


class FakeClock:
    """A monotonic clock that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def __call__(self) -> float:
        return self.now


# --------------------------------------------------------------------------------------------
# retry.Backoff


def test_backoff_without_a_count_stops_at_its_budget_and_reset_starts_afresh() -> None:
    clock = FakeClock()
    backoff = Backoff(None, base=1.0, cap=4.0, budget=10.0, sleep=clock.sleep, clock=clock, jitter=False)
    assert [backoff.wait() for _ in range(3)] == [True, True, True]
    assert clock.sleeps == [1.0, 2.0, 4.0]  # doubling up to the cap
    assert backoff.wait() is False  # 7 s spent, 4 more would pass the 10 s budget
    assert clock.sleeps == [1.0, 2.0, 4.0]  # ... and it did not sleep
    backoff.reset()  # progress: the next failure starts from the base delay, with a fresh budget
    assert backoff.wait() is True and clock.sleeps[-1] == 1.0


def test_backoff_budget_may_be_a_function_asked_at_each_wait() -> None:
    clock = FakeClock()
    answered = {"yet": False}
    backoff = Backoff(None, base=2.0, cap=2.0, sleep=clock.sleep, clock=clock, jitter=False,
                      budget=lambda: 120.0 if answered["yet"] else 3.0)
    assert backoff.wait() is True
    assert backoff.wait() is False  # 2 s + 2 s > 3 s: short while the service never answered
    answered["yet"] = True
    assert backoff.wait() is True  # the longer budget applies from now on


def test_backoff_counts_attempts_and_a_servers_hint_replaces_the_delay() -> None:
    clock = FakeClock()
    backoff = Backoff(3, base=0.5, cap=5.0, sleep=clock.sleep, clock=clock)
    assert backoff.wait(retry_after=0.12) is True
    assert backoff.wait() is True
    assert backoff.wait() is False  # three tries in all: two waits
    assert clock.sleeps[0] == 0.12 and 0.5 <= clock.sleeps[1] < 1.0  # jittered 2**1 * 0.5


# --------------------------------------------------------------------------------------------
# clouds/gcp.py


@pytest.mark.parametrize(("name", "kind", "status"), [
    ("PermissionDenied", "denied", 403),
    ("Unauthenticated", "denied", 401),
    ("NotFound", "not-found", 404),
    ("PreconditionFailed", "precondition", 412),
    ("MethodNotImplemented", "unimplemented", 501),
    ("ServiceUnavailable", "transient", 503),
    ("DeadlineExceeded", "transient", 504),
    ("Aborted", "transient", 409),
    ("ResourceExhausted", "transient", 429),
    ("InvalidArgument", "call", 400),
])
def test_gcp_call_errors_are_classified_by_class(name: str, kind: str, status: int) -> None:
    from google.api_core import exceptions

    failure = gcp.classify(getattr(exceptions, name)("  the service says why \n more"))
    assert failure is not None
    assert (failure.kind, failure.status, failure.answered) == (kind, status, True)
    assert failure.message == "the service says why \n more"


def test_gcp_errors_without_an_answer() -> None:
    import requests
    from google.api_core import exceptions
    from google.auth import exceptions as auth

    cause = exceptions.ServiceUnavailable("down")
    retry = gcp.classify(exceptions.RetryError("gave up", cause))
    assert retry is not None and retry.kind == "retry" and retry.cause is cause and not retry.answered
    assert gcp.classify(auth.DefaultCredentialsError("none")).kind == "no-credentials"  # type: ignore[union-attr]
    assert gcp.classify(auth.RefreshError("expired")).kind == "auth"  # type: ignore[union-attr]
    assert gcp.classify(requests.ConnectionError("refused")).kind == "connection"  # type: ignore[union-attr]
    assert gcp.classify(ValueError("ours")) is None


def test_gcp_raw_http_error_of_an_upload_is_mapped_to_its_class() -> None:
    from google.cloud.storage import exceptions as storage

    class Response:
        status_code = 412

    failure = gcp.classify(storage.InvalidResponse(Response(), "precondition failed"))
    assert failure is not None and failure.kind == "precondition" and failure.status == 412


def test_firestore_wording_of_gcp_failures() -> None:
    from google.api_core import exceptions

    from cloudkeep.sources.firestore.errors import errors, transient

    def raised(exc: BaseException) -> BaseException:
        with pytest.raises(Exception) as info, errors("Firestore (project p)", "reading users"):
            raise exc
        return info.value

    denied = raised(exceptions.PermissionDenied("no role"))
    assert isinstance(denied, SourceUnreachableError)
    assert str(denied) == "Firestore (project p) refused access while reading users: no role"
    other = raised(exceptions.InvalidArgument(""))
    assert type(other) is SourceError
    assert str(other) == "Firestore error while reading users (Firestore (project p)): InvalidArgument"
    ours = ValueError("not the SDK's")
    assert raised(ours) is ours
    assert transient(exceptions.Aborted("contention")) and not transient(exceptions.NotFound("x"))


# --------------------------------------------------------------------------------------------
# clouds/azure.py


def _http(cls: Any, status: int, code: str = "", message: str = "Message: it failed") -> Any:
    error = cls(message=message)
    error.status_code = status
    error.error_code = code
    return error


def test_azure_errors_are_classified_with_status_and_code() -> None:
    from azure.core import exceptions as e

    exists = az.classify(_http(e.ResourceExistsError, 409, "BlobAlreadyExists"))
    assert exists is not None and (exists.kind, exists.status, exists.code) == ("exists", 409, "BlobAlreadyExists")
    throttled = az.classify(_http(e.HttpResponseError, 429))
    assert throttled is not None and throttled.kind == "http" and throttled.transient and throttled.answered
    assert throttled.message == "it failed"
    assert az.classify(_http(e.ResourceNotFoundError, 404)).kind == "not-found"  # type: ignore[union-attr]
    assert az.classify(_http(e.ClientAuthenticationError, 401)).kind == "auth"  # type: ignore[union-attr]
    dropped = az.classify(e.ServiceResponseError("connection dropped"))
    assert dropped is not None and dropped.kind == "response" and dropped.transient and not dropped.answered
    unsent = az.classify(e.ServiceRequestError("Connection refused"))
    assert unsent is not None and unsent.kind == "request" and not unsent.transient
    assert az.classify(KeyError("ours")) is None


def test_azure_helpers() -> None:
    assert az.first_line("Code: X\nMessage: the real one\nmore") == "the real one"
    assert az.short("... NewConnectionError ...") == "connection refused"
    assert az.short("getaddrinfo failed") == "unknown host"
    assert az.retry_after_seconds({"x-ms-retry-after-ms": "250"}) == 0.25
    assert az.retry_after_seconds({"Retry-After": "bad", "x-ms-retry-after-ms": None}) is None


def test_cosmos_wording_of_azure_failures() -> None:
    from azure.core import exceptions as e

    from cloudkeep.sources.cosmos.errors import Throttled, Transient, errors

    def raised(exc: BaseException, **options: Any) -> BaseException:
        with pytest.raises(Exception) as info, errors("Cosmos DB https://x db/c", "COSMOS_KEY", "querying",
                                                      **options):
            raise exc
        return info.value

    refused = raised(_http(e.ClientAuthenticationError, 401))
    assert isinstance(refused, SourceUnreachableError) and "set COSMOS_KEY to the account key" in str(refused)
    throttled = raised(_http(e.HttpResponseError, 429), throttled=True)
    assert isinstance(throttled, Throttled)
    resumable = raised(e.ServiceResponseError("reset by peer"), resumable=True)
    assert isinstance(resumable, Transient) and isinstance(resumable.error, SourceUnreachableError)
    assert str(raised(_http(e.HttpResponseError, 500))) == "Cosmos DB https://x db/c: HTTP 500 while querying: it failed"


# --------------------------------------------------------------------------------------------
# translating, and the key providers on it


def test_translating_leaves_cloudkeep_errors_and_passthrough_alone() -> None:
    seen: list[BaseException] = []

    def translate(exc: BaseException) -> BaseException | None:
        seen.append(exc)
        return StoreError("mapped") if isinstance(exc, OSError) else None

    with pytest.raises(StoreError, match="mapped") as info, translating(translate):
        raise OSError("raw")
    assert isinstance(info.value.__cause__, OSError)
    with pytest.raises(SourceError), translating(translate):
        raise SourceError("already ours")
    with pytest.raises(OSError), translating(translate, passthrough=(OSError,)):
        raise OSError("the caller handles it")
    with pytest.raises(StoreError) as hidden, translating(translate, chain=False):
        raise OSError("raw")
    assert hidden.value.__cause__ is None and hidden.value.__suppress_context__
    assert len(seen) == 2


def test_key_providers_report_sdk_errors_in_one_line() -> None:
    from azure.core.exceptions import HttpResponseError
    from google.api_core import exceptions

    from cloudkeep.keys.azure_key_vault import AzureKeyVaultProvider
    from cloudkeep.keys.gcp_kms import GcpKmsProvider

    class Spec:
        key_name = "projects/p/locations/l/keyRings/r/cryptoKeys/k"
        key_url = "https://v.vault.azure.net/keys/k"

    class Refusing:
        def encrypt(self, request: dict[str, Any]) -> Any:
            raise exceptions.PermissionDenied("caller lacks cloudkms.cryptoKeyVersions.useToEncrypt")

        def wrap_key(self, algorithm: Any, data: bytes) -> Any:
            raise HttpResponseError(message="Forbidden\nsecond line")

    with pytest.raises(KeyUnavailableError) as gcp_info:
        GcpKmsProvider("g", Spec(), client=Refusing()).wrap(b"k" * 32, {"dataset": "d"})
    assert str(gcp_info.value) == (
        f"key 'g' (gcp_kms {Spec.key_name}): encrypt failed: PermissionDenied: "
        "caller lacks cloudkms.cryptoKeyVersions.useToEncrypt")
    with pytest.raises(KeyUnavailableError) as az_info:
        AzureKeyVaultProvider("a", Spec(), client_factory=lambda _: Refusing()).wrap(b"k" * 32, {})
    assert str(az_info.value) == f"key 'a' (azure_key_vault {Spec.key_url}): wrap_key failed: HttpResponseError: Forbidden"


# --------------------------------------------------------------------------------------------
# declared capabilities, typed descriptions


def test_gcp_and_azure_adapters_declare_their_abilities() -> None:
    from cloudkeep.sources.cosmos import CosmosSource
    from cloudkeep.sources.firestore import FirestoreSource
    from cloudkeep.stores.azure_blob import AzureBlobStore

    firestore = FirestoreSource("p")
    for capability in (Resumable, ReadsFromCursor, SampleCheck, NativeRestore):
        assert issubclass(FirestoreSource, capability) and able(firestore, capability) is firestore
    assert able(firestore, Incremental) is None
    cosmos = CosmosSource("https://cosmos.invalid", "db", "c", key="k")
    for capability in (Incremental, ReadsFromCursor, SampleCheck):
        assert issubclass(CosmosSource, capability) and able(cosmos, capability) is cosmos
    assert able(cosmos, Resumable) is None and able(cosmos, NativeRestore) is None
    assert issubclass(AzureBlobStore, ExtendsRetention) and issubclass(AzureBlobStore, LegalHolds)


def test_a_description_keeps_the_manifests_content() -> None:
    identity = {"type": "firestore", "project": "p"}
    typed = Description(identity=identity, method="query",
                        consistency={"mode": "point-in-time", "time": "2026-01-01T00:00:00+00:00"},
                        digest_ignores=("update_time",))
    legacy = Description.coerce(identity | {"method": "query", "consistency": typed.consistency,
                                            "digest_ignores": ["update_time"]})
    assert legacy == typed and Description.coerce(typed) is typed


def test_a_firestore_export_needs_a_store_in_cloud_storage() -> None:
    from datetime import UTC, datetime

    from cloudkeep.sources import JobContext
    from cloudkeep.sources.firestore import FirestoreSource
    from cloudkeep.stores.gcs import GcsStore
    from cloudkeep.stores.memory import MemoryStore

    class NoAdmin:
        def export_documents(self, **request: Any) -> str:
            raise AssertionError("no export may start for a store outside Cloud Storage")

    source = FirestoreSource("p", method="export", admin=NoAdmin())  # type: ignore[arg-type]
    ctx = JobContext("users", "20260101T000000Z", MemoryStore(), datetime(2026, 1, 1, tzinfo=UTC))
    with pytest.raises(SourceError, match="the store must be of type gcs"):
        source.start_job(ctx)
    gcs = GcsStore("bucket", "backups/ck")
    assert able(gcs, GcsLocation) is gcs and able(MemoryStore(), GcsLocation) is None
    assert gcs.gs_uri("users/snapshots/x/export") == "gs://bucket/backups/ck/users/snapshots/x/export"
