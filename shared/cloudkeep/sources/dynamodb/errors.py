"""botocore errors → cloudkeep errors for the DynamoDB adapter (``clouds/aws.py`` translates)."""

from __future__ import annotations

from ...clouds.aws import AwsErrors, Fault
from ...errors import ThrottledError

_UNREACHABLE_CODES = {
    "ResourceNotFoundException",
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "ExpiredTokenException",
    "MissingAuthenticationTokenException",
}


class _errors(AwsErrors):
    """Maps botocore exceptions to cloudkeep errors, in one place for this adapter."""

    SERVICE = "DynamoDB"
    UNREACHABLE = frozenset(_UNREACHABLE_CODES)

    def refused(self, fault: Fault) -> BaseException:
        """Throttling (after botocore's own retries) is ThrottledError: a restore backs off."""
        if fault.code in THROTTLE_CODES:
            return ThrottledError(f"DynamoDB {fault.code} while {self.doing}: {fault.message}".rstrip(": "))
        return super().refused(fault)


#: error codes that mean "too fast": the table's or the account's throughput
THROTTLE_CODES = frozenset({
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
})
