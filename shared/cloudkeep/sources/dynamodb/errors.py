"""botocore errors → cloudkeep errors for the DynamoDB adapter (``clouds/aws.py`` translates)."""

from __future__ import annotations

from ...clouds.aws import AwsErrors

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
