"""One error hierarchy; every error carries the exit code the CLI ends with.

Exit codes (DESIGN.md §5): 0 success, 1 an operation failed (backup, verify, restore),
2 bad usage or a bad policy, 3 the store or a source could not be reached.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3


class CloudkeepError(Exception):
    """Root of every error cloudkeep raises on purpose. The message is shown to the user as is."""

    exit_code = EXIT_FAILED


class UsageError(CloudkeepError):
    """The command line asked for something that cannot be done as asked."""

    exit_code = EXIT_USAGE


class PolicyError(CloudkeepError):
    """The policy file is missing, malformed or inconsistent. Carries every problem found."""

    exit_code = EXIT_USAGE

    def __init__(self, problems: list[str], *, source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        head = f"invalid policy {source}" if source else "invalid policy"
        super().__init__(head + ":\n" + "\n".join(f"  {p}" for p in self.problems))


class UnreachableError(CloudkeepError):
    """A store or a source could not be reached (network, credentials, missing bucket/table)."""

    exit_code = EXIT_UNREACHABLE


class StoreError(CloudkeepError):
    """A store operation failed for a reason that is not "unreachable"."""


class StoreUnreachableError(UnreachableError, StoreError):
    """The store could not be reached or refused our credentials."""


class ObjectExistsError(StoreError):
    """A create-only write found the key already present."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"object already exists: {key}")


class ObjectLockedError(StoreError):
    """Objects could not be deleted because an immutability policy still protects them."""

    def __init__(self, keys: list[str], detail: str = "") -> None:
        self.keys = list(keys)
        more = f" (and {len(keys) - 1} more)" if len(keys) > 1 else ""
        super().__init__(f"object {keys[0]}{more} is locked{': ' + detail if detail else ''}")


class ObjectNotFoundError(StoreError):
    """The key is not in the store."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"object not found: {key}")


class SourceError(CloudkeepError):
    """Reading from or writing to a source failed."""


class ThrottledError(SourceError):
    """The target (or source) refused a call for being too fast (DynamoDB's
    ProvisionedThroughputExceeded, a 429): a restore backs off and tries again
    (``cloudkeep.governor``)."""


class SourceUnreachableError(UnreachableError, SourceError):
    """The source could not be reached, does not exist, or refused our credentials."""


class LockedError(CloudkeepError):
    """Another run holds the dataset's lock and its lease has not expired."""


class SnapshotNotFoundError(CloudkeepError):
    """No committed snapshot matches the reference."""

    exit_code = EXIT_USAGE


class VerificationError(CloudkeepError):
    """A snapshot failed verification."""


class RestoreError(CloudkeepError):
    """A restore could not be done (or was refused, e.g. a non-empty target)."""


class KeyUnavailableError(UnreachableError):
    """A snapshot's data key could not be made or unwrapped: the key provider is unreachable,
    refused us, the key is wrong or missing, or a local key file is unsafe."""


class TamperedError(CloudkeepError):
    """A manifest's authentication tag does not match its content (it was edited after commit)."""
