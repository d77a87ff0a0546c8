"""Azure SDK plumbing shared by the Azure adapters (Cosmos DB, Blob Storage, Key Vault, Storage
Queue): the one place that knows azure-core's and azure-identity's exceptions.

:func:`classify` says what an SDK exception is (:class:`AzureFailure`); each adapter turns that
into its own cloudkeep error and wording (with :class:`~cloudkeep.clouds._translate.translating`).
The SDKs are imported only when an exception is classified, so importing this module costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from ._translate import Translate, translating

__all__ = ["AzureFailure", "Kind", "Translate", "classify", "first_line", "retry_after_seconds",
           "short", "translating"]

Kind = Literal[
    "exists",  # ResourceExistsError (409 / 412 on a create)
    "not-found",  # ResourceNotFoundError (404)
    "auth",  # ClientAuthenticationError: refused or unavailable credentials
    "http",  # any other answer of the service (HttpResponseError)
    "request",  # ServiceRequestError: the request could not be sent (DNS, refused, TLS)
    "response",  # ServiceResponseError: no usable answer (dropped connection, timeout)
    "azure",  # another azure-core error
]

#: Statuses worth resuming a read after: timeouts, gone, throttled, retry-with, server errors.
TRANSIENT_STATUS = frozenset({408, 410, 429, 449, 500, 502, 503, 504})


@dataclass(frozen=True)
class AzureFailure:
    """What an Azure SDK exception is. ``status``: the HTTP status of a service answer (0
    otherwise); ``code``: the service's error code (``x-ms-error-code``, ``""`` if none)."""

    kind: Kind
    error: BaseException
    status: int = 0
    code: str = ""

    @property
    def answered(self) -> bool:
        """The service answered (an HTTP error), as opposed to no answer at all."""
        return self.kind in ("exists", "not-found", "auth", "http")

    @property
    def transient(self) -> bool:
        """Worth retrying: a transient status, or a response that never came."""
        return self.status in TRANSIENT_STATUS or self.kind == "response"

    @property
    def message(self) -> str:
        """The first meaningful line of the service's message (or of the exception's text)."""
        exc: Any = self.error
        return first_line(getattr(exc, "http_error_message", None) or getattr(exc, "message", "") or exc)


def classify(exc: BaseException) -> AzureFailure | None:
    """What ``exc`` is, if it comes from the Azure SDKs (None otherwise)."""
    try:
        from azure.core import exceptions as e
    except ImportError:  # a scripted client without the SDK installed
        return None
    if not isinstance(exc, e.AzureError):
        return None
    code = str(getattr(exc, "error_code", "") or "")
    if isinstance(exc, e.HttpResponseError):
        status = int(getattr(exc, "status_code", 0) or 0)
        kind: Kind = "http"
        if isinstance(exc, e.ResourceExistsError):
            kind = "exists"
        elif isinstance(exc, e.ResourceNotFoundError):
            kind = "not-found"
        elif isinstance(exc, e.ClientAuthenticationError):
            kind = "auth"
        return AzureFailure(kind, exc, status, code)
    if isinstance(exc, e.ServiceRequestError):
        return AzureFailure("request", exc, code=code)
    if isinstance(exc, e.ServiceResponseError):
        return AzureFailure("response", exc, code=code)
    return AzureFailure("azure", exc, code=code)


def first_line(value: object) -> str:
    """The first line of an Azure error's text that says something (not ``Code:``/``Status
    code:``), without its ``Message:`` label."""
    text = str(value).strip()
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("Code:", "Status code:")):
            return line.removeprefix("Message: ")
    return text


def short(text: str) -> str:
    """A transport error's text for a one-line message."""
    if "Connection refused" in text or "NewConnectionError" in text:
        return "connection refused"
    if "Name or service not known" in text or "getaddrinfo" in text or "nodename nor servname" in text:
        return "unknown host"
    return text if len(text) <= 200 else text[:200] + "…"


def retry_after_seconds(headers: Any) -> float | None:
    """The server's ``x-ms-retry-after-ms`` (or ``Retry-After`` seconds), if it sent one."""
    if not headers:
        return None
    for name, scale in (("x-ms-retry-after-ms", 0.001), ("Retry-After", 1.0)):
        value = headers.get(name)
        if value is not None:
            try:
                return max(0.0, float(value) * scale)
            except ValueError:
                continue
    return None
