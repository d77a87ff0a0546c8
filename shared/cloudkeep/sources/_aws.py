"""botocore errors → cloudkeep errors, shared by the AWS sources (DynamoDB, RDS)."""

from __future__ import annotations

from typing import Any, ClassVar

from ..errors import SourceError, SourceUnreachableError


class AwsErrors:
    """A context manager mapping botocore exceptions raised while ``doing`` something: a client
    error with a code in ``passthrough`` propagates as it is; codes in :attr:`UNREACHABLE` (and
    missing credentials, network errors) become SourceUnreachableError (exit 3), other codes
    SourceError, with the service's message and an optional hint per code."""

    SERVICE: ClassVar[str] = "AWS"
    UNREACHABLE: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, doing: str, passthrough: set[str] | None = None,
                 hints: dict[str, str] | None = None) -> None:
        self.doing = doing
        self.passthrough = passthrough or set()
        self.hints = hints or {}

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is None:
            return
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        if isinstance(exc, ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            if code in self.passthrough:
                return
            message = f"{self.SERVICE} {code} while {self.doing}: {err.get('Message', '')}".rstrip(": ")
            if code in self.hints:
                message += f" — {self.hints[code]}"
            if code in self.UNREACHABLE:
                raise SourceUnreachableError(message) from exc
            raise SourceError(message) from exc
        if isinstance(exc, NoCredentialsError):
            raise SourceUnreachableError(f"no AWS credentials found while {self.doing}") from exc
        if isinstance(exc, BotoCoreError):
            raise SourceUnreachableError(f"cannot reach {self.SERVICE} while {self.doing}: {exc}") from exc
