"""Firestore's SDK errors as cloudkeep errors (on :mod:`cloudkeep.clouds.gcp`'s translator)."""

from __future__ import annotations

from ...clouds.gcp import classify, translating
from ...errors import SourceError, SourceUnreachableError

#: What an answer of the service that makes Firestore unreachable says, by kind.
_UNREACHABLE = {
    "denied": "{where} refused access while {doing}: {message}",
    "not-found": "{where} not found while {doing}: {message}",
    "transient": "cannot reach {where} while {doing}: {message}",
}


class PartitionQueryUnavailable(Exception):
    """The service offers no partition query (the emulator answers UNIMPLEMENTED)."""


def transient(exc: BaseException) -> bool:
    """Worth retrying: unavailable, deadline exceeded, internal, aborted, resource exhausted."""
    failure = classify(exc)
    return failure is not None and failure.kind == "transient"


def errors(where: str, doing: str, passthrough: tuple[type[BaseException], ...] = ()) -> translating:
    """Maps SDK exceptions raised inside to cloudkeep errors naming ``where`` and ``doing``
    (``passthrough`` ones are left to the caller)."""

    def translate(exc: BaseException) -> BaseException | None:
        failure = classify(exc)
        if failure is None or failure.kind in ("connection", "corrupt"):
            return None
        if failure.kind == "no-credentials":
            return SourceUnreachableError(
                f"no Google credentials for {where} while {doing} (run `gcloud auth "
                f"application-default login`, or set FIRESTORE_EMULATOR_HOST for the emulator)")
        if failure.kind == "auth":
            return SourceUnreachableError(f"cannot authenticate to {where} while {doing}: {exc}")
        if failure.kind in ("retry", "api"):
            return SourceError(f"Firestore error while {doing} ({where}): {exc}")
        message = failure.message or type(failure.error).__name__
        unreachable = _UNREACHABLE.get(failure.kind)
        if unreachable is not None:
            return SourceUnreachableError(unreachable.format(where=where, doing=doing, message=message))
        return SourceError(f"Firestore error while {doing} ({where}): {message}")

    return translating(translate, passthrough)
