"""botocore errors → cloudkeep errors for the RDS adapter (``clouds/aws.py`` translates), and the
RDS states that mean a snapshot or an instance failed."""

from __future__ import annotations

from ...clouds.aws import AwsErrors

_FAILED = {"failed", "deleted", "deleting", "incompatible-restore", "incompatible-parameters"}
_UNREACHABLE = {"DBInstanceNotFound", "DBInstanceNotFoundFault", "DBClusterNotFoundFault",
                "AccessDenied", "AccessDeniedException", "UnrecognizedClientException",
                "InvalidClientTokenId", "ExpiredToken", "SignatureDoesNotMatch"}
_MISSING = {"DBSnapshotNotFound", "DBSnapshotNotFoundFault", "DBClusterSnapshotNotFoundFault",
            "DBInstanceNotFound", "DBInstanceNotFoundFault", "DBClusterNotFoundFault"}


class _errors(AwsErrors):
    """Maps botocore exceptions to cloudkeep errors, in one place for this adapter."""

    SERVICE = "RDS"
    UNREACHABLE = frozenset(_UNREACHABLE)
