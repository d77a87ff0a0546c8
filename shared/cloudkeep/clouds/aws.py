"""AWS plumbing shared by cloudkeep's AWS adapters: client building and the one SDK-error translator.

**Clients.** Every botocore client (DynamoDB, S3 store and source, RDS, STS, KMS, SQS, SNS,
discovery) is built with :func:`client_config`: botocore's *standard* retry mode with
``MAX_ATTEMPTS`` attempts in all (the first and two retries, exponential backoff with jitter: at
most 1 s, then 2 s), a ``CONNECT_TIMEOUT`` per connection attempt and a ``READ_TIMEOUT`` per
response. So a call to an endpoint that cannot be reached fails, with exit code 3, within a
bounded time: connection refused (the endpoint is down) — within the backoff, under ``3 s``; no
answer at all (a black-holed address) — under ``MAX_ATTEMPTS × CONNECT_TIMEOUT + 3 s = 9 s``. A
tick whose DynamoDB table is unreachable fails that dataset after one such call and goes on with
the others. ``AWS_MAX_ATTEMPTS`` and ``AWS_RETRY_MODE`` in the environment override the attempts
and the mode (botocore's own variables; e.g. more attempts for a heavily throttled table).

**Errors.** :func:`fault_of` classifies a botocore exception once (an error response with its
code and message, missing credentials, or the network); :class:`AwsErrors` is the context
manager every AWS adapter wraps its calls in. An adapter only says which cloudkeep error a fault
becomes (:meth:`AwsErrors.translate`); its default is the DynamoDB and RDS sources' translation,
:class:`S3StoreErrors` the S3 store's (the S3 source, KMS and SQS override it in their modules).

botocore and boto3 are imported lazily (cold starts): importing this module costs nothing.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from .. import extras
from ..errors import (
    CloudkeepError,
    ObjectExistsError,
    ObjectNotFoundError,
    SourceError,
    SourceUnreachableError,
    StoreError,
    StoreUnreachableError,
)

if TYPE_CHECKING:
    from ..place import Place

# --- clients --------------------------------------------------------------------------------

CONNECT_TIMEOUT = 2.0  # seconds per connection attempt
READ_TIMEOUT = 60.0  # seconds to wait for a response once connected
MAX_ATTEMPTS = 3  # attempts in all, retries included
RETRY_MODE = "standard"


def max_attempts() -> int:
    """The attempts per call: ``AWS_MAX_ATTEMPTS`` when set to a positive number, else
    :data:`MAX_ATTEMPTS`."""
    text = os.environ.get("AWS_MAX_ATTEMPTS", "")
    return int(text) if text.isdigit() and int(text) > 0 else MAX_ATTEMPTS


def client_config(**overrides: Any) -> Any:
    """A botocore ``Config`` with cloudkeep's timeouts and retry budget (``overrides`` are other
    Config options, e.g. ``max_pool_connections``)."""
    with extras.translated():  # not installed: one line naming the extra (a CloudkeepError)
        from botocore.config import Config

    retries = {"mode": os.environ.get("AWS_RETRY_MODE", RETRY_MODE),
               "total_max_attempts": max_attempts()}  # attempts in all, the first included
    options: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT, "read_timeout": READ_TIMEOUT,
                               "retries": retries}
    options.update(overrides)
    return Config(**options)


def client(service: str, region: str | None, *, endpoint_url: str | None = None,
           access: Access | None = None, **config: Any) -> Any:
    """A boto3 client of ``service`` with :func:`client_config` (``config``: other options),
    with the credentials of ``access`` when given (a profile, an assumed role)."""
    with extras.translated():  # not installed: one line naming the extra (a CloudkeepError)
        import boto3

    if access is not None and not access.is_default():
        return boto3.Session(botocore_session=botocore_session(access, region)).client(
            service, region_name=region, endpoint_url=endpoint_url, config=client_config(**config))
    return boto3.client(service, region_name=region, endpoint_url=endpoint_url,
                        config=client_config(**config))


def s3_client(region: str | None, endpoint_url: str | None = None,
              access: Access | None = None) -> Any:
    """The S3 client of the S3 store and source (a large connection pool: parallel copies)."""
    return client("s3", region, endpoint_url=endpoint_url, access=access, max_pool_connections=64)


#: An S3 bucket name (3-63 lowercase letters, digits, '.' and '-'; also refuse "..").
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def same_endpoint(a: str | None, b: str | None) -> bool:
    """Whether two S3 clients reach the same service (server-side copies work between them)."""
    if a and b and ".amazonaws.com" in a and ".amazonaws.com" in b:
        return True  # AWS: any region copies from any other
    return (a or "").rstrip("/") == (b or "").rstrip("/")


# --- errors ---------------------------------------------------------------------------------

#: S3 error codes that mean the bucket cannot be reached (the S3 store's and the S3 source's).
S3_UNREACHABLE_CODES = frozenset({
    "NoSuchBucket",
    "AccessDenied",
    "AllAccessDisabled",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "AuthorizationHeaderMalformed",
    "PermanentRedirect",
})
#: A conditional request's precondition failed (the object exists / changed).
S3_PRECONDITION_CODES = frozenset({"PreconditionFailed", "412"})
#: The object is not there.
S3_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})


@dataclass(frozen=True)
class Fault:
    """A botocore exception, classified: an error ``response`` from the service (with its
    ``code`` and ``message``), missing ``credentials``, or the ``network`` (any other botocore
    error; ``message`` is its text)."""

    kind: Literal["response", "credentials", "network"]
    code: str
    message: str
    error: BaseException

    def text(self) -> str:
        """``Code: message`` (without a dangling colon)."""
        return f"{self.code}: {self.message}".strip().rstrip(":")

    def reason(self) -> str:
        """Why the service could not be reached (credentials or network faults)."""
        return "no AWS credentials found" if self.kind == "credentials" else self.message


def fault_of(exc: BaseException) -> Fault | None:
    """``exc`` classified, or None when it is not a botocore exception."""
    try:
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
    except ModuleNotFoundError:
        return None  # without botocore, nothing raised is a botocore exception

    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        return Fault("response", str(err.get("Code", "")), str(err.get("Message", "")), exc)
    if isinstance(exc, NoCredentialsError):
        return Fault("credentials", "", str(exc), exc)
    if isinstance(exc, BotoCoreError):
        return Fault("network", "", str(exc), exc)
    return None


class AwsErrors:
    """A context manager turning the botocore exceptions raised while ``doing`` something into
    cloudkeep errors: an error response whose code is in ``passthrough`` propagates as it is (the
    caller handles it), as does anything that is not a botocore exception; every other one is
    replaced by :meth:`translate`'s answer (chained to it unless ``CHAIN`` is False).

    The default translation (the DynamoDB and RDS sources'): ``<SERVICE> <Code> while <doing>:
    <message>`` (plus a hint per code), SourceUnreachableError (exit 3) for codes in
    :attr:`UNREACHABLE`, missing credentials and network errors, else SourceError."""

    SERVICE: ClassVar[str] = "AWS"
    UNREACHABLE: ClassVar[frozenset[str]] = frozenset()
    CHAIN: ClassVar[bool] = True

    def __init__(self, doing: str, passthrough: set[str] | None = None,
                 hints: dict[str, str] | None = None, *, subject: str = "") -> None:
        self.doing = doing
        self.passthrough = passthrough or set()
        self.hints = hints or {}
        self.subject = subject  # what the call was about, for a translation that names it

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is None or isinstance(exc, CloudkeepError):
            return
        fault = fault_of(exc)
        if fault is None or (fault.kind == "response" and fault.code in self.passthrough):
            return
        raise self.translate(fault) from (exc if self.CHAIN else None)

    def translate(self, fault: Fault) -> BaseException:
        """The exception that replaces ``fault``: :meth:`unreachable`'s for missing credentials
        and network errors, else :meth:`refused`'s."""
        return self.refused(fault) if fault.kind == "response" else self.unreachable(fault)

    def unreachable(self, fault: Fault) -> BaseException:
        """Missing credentials or a network error (exit 3)."""
        if fault.kind == "credentials":
            return SourceUnreachableError(f"no AWS credentials found while {self.doing}")
        return SourceUnreachableError(f"cannot reach {self.SERVICE} while {self.doing}: {fault.message}")

    def refused(self, fault: Fault) -> BaseException:
        """An error response from the service."""
        message = f"{self.SERVICE} {fault.code} while {self.doing}: {fault.message}".rstrip(": ")
        if fault.code in self.hints:
            message += f" — {self.hints[fault.code]}"
        if fault.code in self.UNREACHABLE:
            return SourceUnreachableError(message)
        return SourceError(message)


class S3StoreErrors(AwsErrors):
    """The S3 store's translation; ``doing`` is the object's place (``s3://bucket/prefix/key``)
    and ``subject`` its store key: a failed create-only precondition is ObjectExistsError, a missing
    object ObjectNotFoundError, an unreachable bucket StoreUnreachableError (exit 3), anything
    else StoreError."""

    EXISTS: ClassVar[frozenset[str]] = S3_PRECONDITION_CODES | {"ConditionalRequestConflict"}

    def unreachable(self, fault: Fault) -> BaseException:
        return StoreUnreachableError(f"cannot reach {self.doing}: {fault.reason()}")

    def refused(self, fault: Fault) -> BaseException:
        where = self.doing
        if fault.code in self.EXISTS:
            return ObjectExistsError(self.subject)
        if fault.code in S3_MISSING_CODES:
            return ObjectNotFoundError(self.subject)
        if fault.code in S3_UNREACHABLE_CODES:
            return StoreUnreachableError(f"cannot reach {where}: {fault.text()}")
        return StoreError(f"S3 error on {where}: {fault.text()}")


# --- credentials of another account (restore targets elsewhere) -----------------------------

#: seconds an assumed role's credentials last (AssumeRole's DurationSeconds; the role's
#: maximum session duration may be longer, never shorter than this)
ROLE_SESSION_SECONDS = 3600
ROLE_SESSION_NAME = "cloudkeep-restore"


@dataclass(frozen=True)
class Access:
    """Which AWS credentials a client uses: a named ``profile`` (else the default chain), and
    optionally a role assumed from them (``role_arn``, with ``external_id``)."""

    profile: str | None = None
    role_arn: str | None = None
    external_id: str | None = None

    def is_default(self) -> bool:
        return self.profile is None and self.role_arn is None


def credentials_clock() -> datetime:
    """Now, for deciding when assumed-role credentials need refreshing (a test moves it)."""
    return datetime.now(UTC)


_SESSIONS: dict[tuple[Access, str | None], Any] = {}
_SESSIONS_LOCK = threading.Lock()


def botocore_session(access: Access, region: str | None) -> Any:
    """A botocore session with ``access``'s credentials, one per process and access (so every
    client of a restore shares it). An assumed role's credentials are *refreshable*: botocore
    calls :func:`assume_role` again shortly before they expire (by :func:`credentials_clock`),
    so a restore longer than :data:`ROLE_SESSION_SECONDS` keeps writing. The role is assumed
    here, once, before any client is used: a role that cannot be assumed fails now, as
    SourceUnreachableError (exit 3) naming the role (never the external id)."""
    with extras.translated():
        import botocore.session
        from botocore.credentials import RefreshableCredentials

    with _SESSIONS_LOCK:
        cached = _SESSIONS.get((access, region))
        if cached is not None:
            return cached
        try:
            session = botocore.session.Session(profile=access.profile)
            source = session.get_credentials()  # a missing profile fails here, not mid-restore
            if access.role_arn is not None:
                if source is None:
                    raise SourceUnreachableError(
                        f"no AWS credentials found to assume role {access.role_arn}"
                        + (f" (profile {access.profile})" if access.profile else ""))
                sts = session.create_client("sts", region_name=region, config=client_config())

                def refresh() -> dict[str, Any]:
                    return assume_role(sts, access)

                first = refresh()  # assume it now: fail before anything is written
                credentials = RefreshableCredentials(
                    first["access_key"], first["secret_key"], first["token"],
                    datetime.fromisoformat(first["expiry_time"].replace("Z", "+00:00")),
                    refresh_using=refresh, method="sts-assume-role",
                    time_fetcher=lambda: credentials_clock())
                session._credentials = credentials  # botocore's own slot for resolved credentials
        except CloudkeepError:
            raise
        except Exception as exc:  # a profile that does not exist, a broken config file
            fault = fault_of(exc)
            if fault is None:
                raise
            raise SourceUnreachableError(
                f"cannot use AWS credentials {describe_access(access)}: {fault.reason()}"
            ) from None
        _SESSIONS[(access, region)] = session
        return session


def assume_role(sts: Any, access: Access) -> dict[str, Any]:
    """AssumeRole of ``access.role_arn`` (with its external id): botocore's credential metadata
    (``access_key``, ``secret_key``, ``token``, ``expiry_time`` as ISO 8601 text)."""
    assert access.role_arn is not None
    params: dict[str, Any] = {"RoleArn": access.role_arn, "RoleSessionName": ROLE_SESSION_NAME,
                              "DurationSeconds": ROLE_SESSION_SECONDS}
    if access.external_id is not None:
        params["ExternalId"] = access.external_id
    with _AssumeRoleErrors(f"assuming role {access.role_arn}"):
        creds = sts.assume_role(**params)["Credentials"]
    expiry = creds["Expiration"]
    return {"access_key": creds["AccessKeyId"], "secret_key": creds["SecretAccessKey"],
            "token": creds["SessionToken"],
            "expiry_time": expiry.isoformat() if isinstance(expiry, datetime) else str(expiry)}


class _AssumeRoleErrors(AwsErrors):
    """AssumeRole refused (no trust, a wrong external id, bad credentials): exit 3."""

    SERVICE = "STS"
    UNREACHABLE = frozenset({"AccessDenied", "AccessDeniedException", "InvalidClientTokenId",
                             "ExpiredToken", "RegionDisabledException", "SignatureDoesNotMatch"})


#: the options of a restore target's place an AWS source takes (``cloudkeep.place``)
PLACE_OPTIONS = frozenset({"region", "profile", "role_arn", "external_id"})


def access_of(place: Place) -> Access | None:
    """The credentials ``place`` asks for (None: the default chain)."""
    if place.profile is None and place.role_arn is None:
        return None
    return Access(profile=place.profile, role_arn=place.role_arn, external_id=place.external_id)


def describe_access(access: Access) -> str:
    """``profile P, role R`` (never the external id)."""
    parts = ([f"profile {access.profile}"] if access.profile else []) + (
        [f"role {access.role_arn}"] if access.role_arn else [])
    return ", ".join(parts) or "the default chain"
