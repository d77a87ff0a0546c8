"""Cosmos DB's SDK errors as cloudkeep errors (on :mod:`cloudkeep.clouds.azure`'s classifier),
and the two retry signals: a read to resume, a write throttled."""

from __future__ import annotations

from ...clouds.azure import classify, first_line, retry_after_seconds, short, translating
from ...errors import CloudkeepError, RestoreError, SourceError, SourceUnreachableError
from ...retry import Backoff

MAX_RESUMES = 5  # per feed range: transient failures resumed from the last continuation


class Transient(Exception):
    """A failure worth resuming a read after (carries the cloudkeep error to raise otherwise)."""

    def __init__(self, error: CloudkeepError) -> None:
        super().__init__(str(error))
        self.error = error


class Throttled(Exception):
    """HTTP 429 after the SDK's own retries; ``retry_after`` in seconds, from the server."""

    def __init__(self, retry_after: float | None) -> None:
        super().__init__("throttled")
        self.retry_after = retry_after


def resumes() -> Backoff:
    """The waits between resumes of one read (``MAX_RESUMES`` in a row at most)."""
    return Backoff(MAX_RESUMES + 1, base=1.0, cap=10.0)


def errors(where: str, hint: str, doing: str, *, passthrough: tuple[type[BaseException], ...] = (),
           resumable: bool = False, throttled: bool = False, creating: bool = False) -> translating:
    """Maps azure-core / azure-cosmos / azure-identity exceptions to cloudkeep errors.

    With ``resumable``, transient failures come out as :class:`Transient` (the caller resumes a
    read from its last continuation); with ``throttled``, a 429 comes out as :class:`Throttled`
    (the writer waits as long as the server asked, then retries)."""

    def translate(exc: BaseException) -> BaseException | None:
        if isinstance(exc, (Transient, Throttled)):
            return None
        failure = classify(exc)
        if failure is None:
            return None
        if throttled and failure.status == 429:
            return Throttled(retry_after_seconds(getattr(exc, "headers", None)))
        mapped = map_error(exc, where, hint, doing, creating=creating)
        if resumable and mapped is not None and failure.transient:
            return Transient(mapped)
        return mapped

    return translating(translate, passthrough)


def map_error(exc: BaseException, where: str, hint: str, doing: str, *,
              creating: bool = False) -> CloudkeepError | None:
    """The cloudkeep error for an exception raised by the Azure SDKs (None: not theirs).
    ``hint``: the environment variable that holds the account key."""
    failure = classify(exc)
    if failure is None:
        return None
    if failure.answered:
        status, message = failure.status, failure.message
        if creating and status == 403:
            return RestoreError(
                f"{where}: not allowed to create the container ({message}); with a managed "
                f"identity, create it first (Azure CLI, Bicep, Terraform) with the snapshot's "
                f"settings (`cloudkeep show`), then restore into it"
            )
        if status in (401, 403) or failure.kind == "auth":
            return SourceUnreachableError(
                f"cannot reach {where} while {doing}: the account refused the credentials "
                f"(HTTP {status}: {message}); set {hint} to the account key, or "
                f"grant the managed identity a Cosmos DB data role"
            )
        if status == 404:
            return SourceUnreachableError(f"{where}: not found while {doing} ({message})")
        if status == 429:
            return SourceError(f"{where}: throttled (HTTP 429) while {doing}, after the SDK's "
                               f"retries: {message}")
        return SourceError(f"{where}: HTTP {status} while {doing}: {message}")
    if failure.kind in ("request", "response"):
        text = first_line(exc)
        tls = "CERTIFICATE_VERIFY_FAILED" in text or "SSL" in text
        suffix = " (a local emulator's self-signed certificate needs verify_tls: false)" if tls else ""
        return SourceUnreachableError(f"cannot reach {where} while {doing}: {short(text)}{suffix}")
    return SourceUnreachableError(f"cannot reach {where} while {doing}: {short(first_line(exc))}")
