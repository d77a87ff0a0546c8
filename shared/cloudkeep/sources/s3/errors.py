"""botocore errors → cloudkeep errors for the S3 source (``clouds/aws.py`` classifies them)."""

from __future__ import annotations

from ...clouds.aws import S3_MISSING_CODES, S3_PRECONDITION_CODES, S3_UNREACHABLE_CODES, AwsErrors, Fault
from ...errors import SourceError, SourceUnreachableError, ThrottledError


class _Changed(Exception):
    """The object changed (or went) between two reads."""


class _Vanished(Exception):
    """The object was deleted after it was listed."""


class _errors(AwsErrors):
    """Turns botocore exceptions raised while doing ``what`` into cloudkeep errors: a failed
    precondition is :class:`_Changed`, a missing object :class:`_Vanished`, an unreachable bucket
    SourceUnreachableError (exit 3), an archived object or anything else SourceError."""

    def __init__(self, what: str, *, passthrough: set[str] | None = None) -> None:
        super().__init__(what, passthrough)

    def unreachable(self, fault: Fault) -> BaseException:
        return SourceUnreachableError(f"{self.doing}: {fault.reason()}")

    def refused(self, fault: Fault) -> BaseException:
        what = self.doing
        if fault.code in S3_PRECONDITION_CODES:
            return _Changed()
        if fault.code in S3_MISSING_CODES:
            return _Vanished()
        if fault.code in S3_UNREACHABLE_CODES:
            return SourceUnreachableError(f"{what}: {fault.text()}")
        if fault.code in ("SlowDown", "503", "RequestLimitExceeded", "Throttling"):
            return ThrottledError(f"{what}: {fault.text()}")  # a restore backs off (governor)
        if fault.code == "InvalidObjectState":
            return SourceError(f"{what}: the object is archived ({fault.text()})")
        return SourceError(f"{what}: {fault.text()}")
