"""Google Cloud SDK plumbing shared by the GCP adapters (Firestore, Cloud Storage, Cloud KMS,
Pub/Sub): the one place that knows google-api-core's and google-auth's exceptions.

:func:`classify` says what an SDK exception is (:class:`GcpFailure`); each adapter turns that into
its own cloudkeep error and wording (with :class:`~cloudkeep.clouds._translate.translating`). The
SDKs are imported only when an exception is classified, so importing this module costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ._translate import Translate, translating

__all__ = ["GcpFailure", "Kind", "Translate", "classify", "translating"]

Kind = Literal[
    "no-credentials",  # google.auth found no Application Default Credentials
    "auth",  # another google.auth failure (expired, refused token exchange, ...)
    "denied",  # 401 / 403: Unauthorized, Forbidden (gRPC UNAUTHENTICATED, PERMISSION_DENIED)
    "not-found",  # 404 / NOT_FOUND
    "precondition",  # 412: a generation (or other) precondition did not hold
    "unimplemented",  # 501 / UNIMPLEMENTED (e.g. an emulator without the method)
    "transient",  # 409 ABORTED, 429, 500, 503, 504: worth retrying
    "call",  # any other answer of the service
    "retry",  # the SDK's own retries gave up (``cause``: the last error)
    "connection",  # no answer: refused, reset, timed out (requests)
    "corrupt",  # a download's checksum did not match
    "api",  # another google-api-core error
]


@dataclass(frozen=True)
class GcpFailure:
    """What a Google SDK exception is. ``message``: the service's own message (``""`` when it
    gave none); ``status``: the HTTP status of a service answer (0 otherwise); ``error``: the
    exception as google-api-core sees it (an upload's raw HTTP error mapped to its class);
    ``cause``: for ``retry``, the last error the SDK retried."""

    kind: Kind
    error: BaseException
    message: str = ""
    status: int = 0
    cause: BaseException | None = None

    @property
    def answered(self) -> bool:
        """The service answered (with an error status), as opposed to no answer at all."""
        return self.kind in ("denied", "not-found", "precondition", "unimplemented", "transient", "call")

    @property
    def text(self) -> str:
        """The service's message, else the exception's text."""
        return self.message or str(self.error)


def classify(exc: BaseException) -> GcpFailure | None:
    """What ``exc`` is, if it comes from the Google SDKs (None otherwise)."""
    try:
        from google.api_core import exceptions
        from google.auth import exceptions as auth_exceptions
    except ImportError:  # a scripted client without the SDK installed
        return None
    if isinstance(exc, auth_exceptions.DefaultCredentialsError):
        return GcpFailure("no-credentials", exc)
    if isinstance(exc, auth_exceptions.GoogleAuthError):
        return GcpFailure("auth", exc)
    raw = _raw_http_error(exc)
    if raw is not None:
        exc = raw
    if isinstance(exc, exceptions.GoogleAPICallError):
        return GcpFailure(_call_kind(exc), exc, f"{exc.message}".strip(), int(exc.code or 0))
    if isinstance(exc, exceptions.RetryError):
        return GcpFailure("retry", exc, cause=exc.cause if exc.cause is not None else exc)
    if isinstance(exc, exceptions.GoogleAPIError):
        return GcpFailure("api", exc)
    return _transport(exc)


def _call_kind(exc: BaseException) -> Kind:
    from google.api_core import exceptions as e

    if isinstance(exc, (e.Forbidden, e.Unauthorized)):
        return "denied"
    if isinstance(exc, e.NotFound):
        return "not-found"
    if isinstance(exc, e.PreconditionFailed):
        return "precondition"
    if isinstance(exc, e.MethodNotImplemented):
        return "unimplemented"
    if isinstance(exc, (e.ServiceUnavailable, e.DeadlineExceeded, e.InternalServerError, e.Aborted,
                        e.ResourceExhausted)):
        return "transient"
    return "call"


def _raw_http_error(exc: BaseException) -> BaseException | None:
    """A resumable upload's or download's raw HTTP error, as google-api-core's class for it."""
    try:
        from google.api_core import exceptions
        from google.cloud.storage import exceptions as storage_exceptions
    except ImportError:  # Cloud Storage's SDK is not installed: none of its errors either
        return None
    if not isinstance(exc, storage_exceptions.InvalidResponse):
        return None
    status = getattr(getattr(exc, "response", None), "status_code", 0)
    mapped: BaseException = exceptions.from_http_status(int(status or 500), str(exc))  # type: ignore[no-untyped-call]
    return mapped


def _transport(exc: BaseException) -> GcpFailure | None:
    try:
        import requests
    except ImportError:  # pragma: no cover - google-auth depends on requests
        requests = None  # type: ignore[assignment]
    if requests is not None and isinstance(exc, (requests.ConnectionError, requests.Timeout)):
        return GcpFailure("connection", exc)
    try:
        from google.cloud.storage import exceptions as storage_exceptions
    except ImportError:
        return None
    if isinstance(exc, storage_exceptions.DataCorruption):
        return GcpFailure("corrupt", exc)
    return None

