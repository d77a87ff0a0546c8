"""The policy file: pydantic models, loading, and error reports that name every problem.

A policy names the stores backups go to, the tiers (schedule, RPO, retention) and the datasets.
Loading either returns a frozen, fully cross-checked :class:`Policy` or raises
:class:`~cloudkeep.errors.PolicyError` listing *every* problem as ``file:line: field.path: what``.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.functional_validators import BeforeValidator
from pydantic.json_schema import WithJsonSchema

from .errors import PolicyError, UsageError
from .layout import DATASET_NAME_RE

DEFAULT_POLICY_FILE = "cloudkeep.yaml"
POLICY_ENV = "CLOUDKEEP_POLICY"

# Every reader has limits: a policy is small, shallow, and its aliases are few.
MAX_POLICY_BYTES = 1 << 20
"""The largest policy file (local or remote) cloudkeep reads."""
MAX_YAML_DEPTH = 50
"""The deepest nesting of mappings and lists (aliases expanded) a policy may have."""
MAX_YAML_ALIASES = 100
"""How many aliases (``*name``) a policy may use."""
MAX_YAML_NODES = 200_000
"""How many values a policy may hold once its aliases are expanded (an alias bomb's 609 bytes
would expand to billions)."""
MAX_DURATION = timedelta(days=36_600)
"""The longest duration (about 100 years) any field accepts."""

# --------------------------------------------------------------------------------------------
# Scalar types


_DURATION_RE = re.compile(r"^(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(text: object) -> timedelta:
    """Parse ``90m``, ``26h``, ``7d``, ``2w``, ``1h30m`` into a positive timedelta."""
    if isinstance(text, timedelta):
        if text <= timedelta(0):
            raise ValueError(f"duration {format_duration(text)!r} must be longer than zero")
        return text
    if not isinstance(text, str):
        raise ValueError(f"expected a duration such as 90m, 26h or 7d, got {text!r}")
    match = _DURATION_RE.match(text.strip())
    if not text.strip() or not match:
        raise ValueError(f"bad duration {text!r} (use e.g. 90m, 26h, 7d, 2w or 1h30m)")
    weeks, days, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    try:
        value = timedelta(weeks=weeks, days=days, hours=hours, minutes=minutes, seconds=seconds)
    except OverflowError:
        raise ValueError(f"duration {text!r} is too long") from None
    if value <= timedelta(0):
        raise ValueError(f"duration {text!r} must be longer than zero")
    if value > MAX_DURATION:
        raise ValueError(f"duration {text!r} is too long (at most {MAX_DURATION.days}d)")
    return value


def format_duration(value: timedelta) -> str:
    """The inverse of :func:`parse_duration` (largest units first)."""
    seconds = int(value.total_seconds())
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            out.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(out) or "0s"


DURATION_PATTERN = r"^(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?$"
Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN, "minLength": 2,
                    "description": "a duration such as 90m, 26h, 7d, 2w or 1h30m"}),
]


def parse_offset(text: object) -> timedelta:
    """Like :func:`parse_duration`, but zero (``0m``) is allowed."""
    if isinstance(text, str) and re.fullmatch(r"0+[wdhms]?", text.strip()):
        return timedelta(0)
    return parse_duration(text)


Offset = Annotated[
    timedelta,
    BeforeValidator(parse_offset),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN, "minLength": 1,
                    "description": "a delay such as 0m, 90s, 5m or 1h30m"}),
]

_RATE_RE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")


def validate_schedule(expr: object) -> str:
    """Accept a 5-field cron expression or ``rate(N minutes|hours|days)``."""
    if not isinstance(expr, str):
        raise ValueError(f"expected a cron expression or rate(...), got {expr!r}")
    text = expr.strip()
    if text.startswith("rate"):
        match = _RATE_RE.match(text)
        if not match:
            raise ValueError(f"bad rate expression {expr!r} (use e.g. rate(15 minutes), rate(1 hour))")
        number, unit = int(match.group(1)), match.group(2)
        if number < 1:
            raise ValueError(f"bad rate expression {expr!r}: the interval must be at least 1")
        per = {"minute": 1, "hour": 60, "day": 1440}[unit.rstrip("s")]
        if number * per > MAX_DURATION.total_seconds() // 60:
            raise ValueError(f"bad rate expression {expr!r}: the interval is too long "
                             f"(at most {MAX_DURATION.days} days)")
        if (number == 1) != (not unit.endswith("s")):
            raise ValueError(
                f"bad rate expression {expr!r}: use the singular unit for 1 and the plural otherwise"
            )
        return text
    fields = text.split()
    if len(fields) != 5:
        raise ValueError(
            f"bad cron expression {expr!r}: expected 5 fields (minute hour day month weekday), "
            f"got {len(fields)}"
        )
    from croniter import CroniterError, croniter

    if not croniter.is_valid(text):
        bad = [
            f"{name} field {fields[i]!r} (allowed: {allowed})"
            for i, (name, allowed) in enumerate(_CRON_FIELDS)
            if not croniter.is_valid(" ".join(fields[i] if j == i else "*" for j in range(5)))
        ]
        detail = f": bad {', '.join(bad)}" if bad else ""
        raise ValueError(f"bad cron expression {expr!r}{detail}")
    try:
        croniter(text, datetime(2000, 1, 1)).get_next(datetime)
    except CroniterError:
        raise ValueError(f"bad cron expression {expr!r}: it never fires") from None
    return text


_CRON_FIELDS = (
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day-of-month", "1-31"),
    ("month", "1-12 or jan-dec"),
    ("day-of-week", "0-7 or sun-sat"),
)


Schedule = Annotated[
    str,
    BeforeValidator(validate_schedule),
    WithJsonSchema({"type": "string", "pattern": r"^(rate\(\d+ (minutes?|hours?|days?)\)|\S+( \S+){4})$",
                    "description": "a 5-field cron expression (minute hour day month weekday, in "
                    "the policy's time zone) or rate(N minutes|hours|days)"}),
]

# --------------------------------------------------------------------------------------------
# Models


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class StoreLocation:
    """Where a store keeps its objects, normalised so that two specs naming the same place
    compare equal (see :meth:`overlaps` and docs/policy-reference.md, "Store identity")."""

    kind: str  # file, s3, gcs, azure_blob
    service: str  # the endpoint or account ("" for a file store)
    bucket: str  # bucket or container ("" for a file store)
    path: str  # the prefix, or a file store's resolved folder

    def overlaps(self, other: StoreLocation) -> bool:
        """The same place, or one inside the other (their keys would mix)."""
        if (self.kind, self.service, self.bucket) != (other.kind, other.service, other.bucket):
            return False
        a, b = sorted((self.path.rstrip("/"), other.path.rstrip("/")), key=len)
        return a == b or not a or b.startswith(a + "/")

    def __str__(self) -> str:
        if self.kind == "file":
            return f"folder {self.path}"
        where = f"{self.bucket}/{self.path}".rstrip("/")
        return f"{self.kind} {where}" + (f" at {self.service}" if self.service else "")


def normalise_url(url: str) -> str:
    """An endpoint as an identity: lower-case scheme and host, no credentials, no default port,
    no trailing slash, no query."""
    from urllib.parse import urlsplit

    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is not None and port != {"http": 80, "https": 443}.get(scheme):
        host = f"{host}:{port}"
    return f"{scheme}://{host}{parts.path.rstrip('/')}"


_AWS_S3_HOST = re.compile(r"^s3(?:[.-][a-z0-9-]+)*\.amazonaws\.com(?:\.cn)?$")


def _s3_service(endpoint_url: str | None) -> str:
    """The S3 service a store talks to: AWS itself (bucket names are global there, whatever the
    region) or another endpoint. Without ``endpoint_url``, boto3's own environment variables
    decide, as they do for the store."""
    url = (endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3")
           or os.environ.get("AWS_ENDPOINT_URL") or "")
    if not url:
        return "aws"
    normal = normalise_url(url)
    host = normal.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]
    if _AWS_S3_HOST.match(host):
        return "aws-cn" if host.endswith(".cn") else "aws"
    return normal


def _azure_account(spec: AzureBlobStoreSpec) -> str:
    """The storage account a store talks to: the connection string in its environment variable
    wins when set (as it does for the store), else ``account_url``."""
    conn = os.environ.get(spec.connection_string_env)
    if conn:
        fields = dict(item.partition("=")[::2] for item in conn.split(";") if "=" in item)
        if fields.get("BlobEndpoint"):
            return normalise_url(fields["BlobEndpoint"])
        if fields.get("AccountName"):
            suffix = fields.get("EndpointSuffix") or "core.windows.net"
            scheme = fields.get("DefaultEndpointsProtocol") or "https"
            return normalise_url(f"{scheme}://{fields['AccountName']}.blob.{suffix}")
        if conn.strip().lower().startswith("usedevelopmentstorage=true"):
            return "http://127.0.0.1:10000/devstoreaccount1"
    if spec.account_url:
        return normalise_url(spec.account_url)
    return f"${spec.connection_string_env}"


class FileStoreSpec(Model):
    """A folder on local disk (or a mounted volume). Relative paths are relative to the policy."""

    type: Literal["file"]
    path: str = Field(min_length=1)

    @field_validator("path")
    @classmethod
    def _plain_path(cls, value: str) -> str:
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise ValueError("a folder path may not contain control characters (e.g. a NUL byte)")
        return value

    def location(self) -> StoreLocation:
        """The folder, resolved: relative to the policy's folder, ``~`` expanded, symbolic
        links and ``..`` resolved."""
        return StoreLocation("file", "", "", os.path.realpath(os.path.expanduser(self.path)))


_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class ObjectLock(Model):
    """S3 Object Lock for every object written: retained until the snapshot's longest possible
    retention has passed (extended by prune when a snapshot is kept longer)."""

    mode: Literal["COMPLIANCE", "GOVERNANCE"] = "GOVERNANCE"


class Immutability(Model):
    """Object Lock for a tier's snapshots, in a store that locks objects (``object_lock``):
    the mode replaces the store's for the tier's objects — COMPLIANCE unless the tier says
    otherwise: no one, not the account root, can shorten or lift it — and every object stays
    locked at least ``days`` (else: as long as the tier's retention could keep it)."""

    mode: Literal["COMPLIANCE", "GOVERNANCE"] = "COMPLIANCE"
    days: StrictInt | None = Field(default=None, ge=1, le=36500,
                                   description="lock every object at least this many days")


def _s3_bucket_name(value: str) -> str:
    if not _BUCKET_RE.match(value) or ".." in value:
        raise ValueError(f"bad S3 bucket name {value!r}")
    return value


class S3StoreSpec(Model):
    """An S3 bucket (or S3-compatible endpoint)."""

    type: Literal["s3"]
    bucket: str
    prefix: str = ""
    region: str = Field(min_length=1)
    endpoint_url: str | None = None
    object_lock: ObjectLock | None = Field(
        default=None,
        description="write every object with an Object Lock retain-until date (the bucket must "
        "have Object Lock enabled)",
    )

    @field_validator("bucket")
    @classmethod
    def _bucket_name(cls, value: str) -> str:
        return _s3_bucket_name(value)

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return value.strip("/")

    def location(self) -> StoreLocation:
        """The service (AWS whatever the region, or the endpoint), the bucket and the prefix."""
        return StoreLocation("s3", _s3_service(self.endpoint_url), self.bucket, self.prefix)


class GcsStoreSpec(Model):
    """A Google Cloud Storage bucket."""

    type: Literal["gcs"]
    bucket: str = Field(min_length=3, max_length=222)
    prefix: str = ""
    project: str | None = None
    region: str | None = Field(default=None, description="the bucket's location (for residency)")

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return value.strip("/")

    def location(self) -> StoreLocation:
        """The bucket (names are global, whatever the project) and the prefix."""
        return StoreLocation("gcs", "", self.bucket, self.prefix)


class BlobImmutability(Model):
    """Azure Blob version-level immutability for every blob written: a time-based retention
    policy until the snapshot's longest possible retention has passed (extended by prune when a
    snapshot is kept longer); legal holds (``cloudkeep hold``) also set the blobs' legal hold."""

    mode: Literal["Unlocked", "Locked"] = "Unlocked"


class AzureBlobStoreSpec(Model):
    """An Azure Blob Storage container. Credentials: the connection string in the environment
    variable ``connection_string_env`` if it is set, else ``account_url`` with the default Azure
    credential (managed identity, CLI login, ...). No secret is ever written in the policy."""

    type: Literal["azure_blob"]
    container: str = Field(min_length=3, max_length=63, pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
    prefix: str = ""
    account_url: str | None = None
    connection_string_env: str = "AZURE_STORAGE_CONNECTION_STRING"
    region: str | None = Field(default=None, description="the storage account's region (for residency)")
    immutability: BlobImmutability | None = Field(
        default=None,
        description="write every blob with a time-based retention policy (the container needs "
        "version-level immutability support)",
    )

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return value.strip("/")

    def location(self) -> StoreLocation:
        """The storage account, the container and the prefix."""
        return StoreLocation("azure_blob", _azure_account(self), self.container, self.prefix)


StoreSpec = Annotated[
    FileStoreSpec | S3StoreSpec | GcsStoreSpec | AzureBlobStoreSpec, Field(discriminator="type")
]
STORE_MODELS: dict[str, type[BaseModel]] = {
    "file": FileStoreSpec,
    "s3": S3StoreSpec,
    "gcs": GcsStoreSpec,
    "azure_blob": AzureBlobStoreSpec,
}
STORE_TYPES = tuple(STORE_MODELS)


# --------------------------------------------------------------------------------------------
# Keys, encryption, residency


class AwsKmsKeySpec(Model):
    """An AWS KMS key (id, ARN or alias) in one region."""

    provider: Literal["aws_kms"]
    key_id: str = Field(min_length=1)
    region: str = Field(min_length=1)


class GcpKmsKeySpec(Model):
    """A Cloud KMS key: projects/P/locations/L/keyRings/R/cryptoKeys/K."""

    provider: Literal["gcp_kms"]
    key_name: str = Field(pattern=r"^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$")


class AzureKeyVaultKeySpec(Model):
    """An Azure Key Vault RSA key: https://VAULT.vault.azure.net/keys/NAME[/VERSION]."""

    provider: Literal["azure_key_vault"]
    key_url: str = Field(pattern=r"^https://[^/]+/keys/[^/]+(/[^/]+)?/?$")


class LocalKeySpec(Model):
    """A key file (``cloudkeep keys create --path FILE``); relative to the policy's folder."""

    provider: Literal["local"]
    path: str = Field(min_length=1)


KeySpec = Annotated[
    AwsKmsKeySpec | GcpKmsKeySpec | AzureKeyVaultKeySpec | LocalKeySpec, Field(discriminator="provider")
]
KEY_MODELS: dict[str, type[BaseModel]] = {
    "aws_kms": AwsKmsKeySpec,
    "gcp_kms": GcpKmsKeySpec,
    "azure_key_vault": AzureKeyVaultKeySpec,
    "local": LocalKeySpec,
}
KEY_PROVIDERS = tuple(KEY_MODELS)


class EncryptionSpec(Model):
    """Envelope encryption: a fresh data key per snapshot, wrapped by every key listed (the first
    that can make data keys makes it); any one of them can restore the snapshot."""

    keys: list[str] = Field(min_length=1)

    @field_validator("keys")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("a key is listed more than once")
        return value


def _encryption_value(value: object) -> object:
    if value is True:
        raise ValueError("encryption: true needs its keys: write encryption: {keys: [NAME, ...]}")
    if value is False:
        return NO_ENCRYPTION
    return value


NO_ENCRYPTION = EncryptionSpec.model_construct(keys=[])
"""``encryption: false``: an explicit opt-out (overrides a default set higher up)."""

Encryption = Annotated[EncryptionSpec | None, BeforeValidator(_encryption_value)]


class SigningSpec(Model):
    """Authentication tags on the manifests of snapshots that are not encrypted (an encrypted
    snapshot's manifest is always tagged with its data key): a fresh signing key per snapshot,
    wrapped by every key listed. Readers check the tag; with ``required``, a manifest of the
    dataset that is neither tagged nor endorsed (``cloudkeep keys endorse``) is refused."""

    keys: list[str] | None = Field(
        default=None, min_length=1,
        description="keys that wrap each snapshot's signing key (default: the dataset's "
        "encryption keys, else the nearest encryption keys of its tier or the policy)")
    required: StrictBool = Field(
        default=True,
        description="refuse, on every read, a manifest of the dataset without a valid tag or "
        "endorsement (manifests written before signing began: run `cloudkeep keys endorse` first)")

    @field_validator("keys")
    @classmethod
    def _unique(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("a key is listed more than once")
        return value


def _signing_value(value: object) -> object:
    if value is True:
        return {}
    if value is False:
        return NO_SIGNING
    return value


NO_SIGNING = SigningSpec.model_construct(keys=[], required=False)
"""``signing: false``: an explicit opt-out (overrides a default set higher up)."""

Signing = Annotated[SigningSpec | None, BeforeValidator(_signing_value)]


class Residency(Model):
    """Where data may be kept: every store and source must declare a region in this list."""

    allowed_regions: list[str] = Field(min_length=1)


class Retention(Model):
    """How many snapshots to keep per period (restic ``forget`` semantics)."""

    # Counts are bounded (about 1000 years each): dates computed from them stay representable.
    last: StrictInt | None = Field(default=None, ge=0, le=1_000_000)
    hourly: StrictInt | None = Field(default=None, ge=0, le=8_760_000)
    daily: StrictInt | None = Field(default=None, ge=0, le=365_000)
    weekly: StrictInt | None = Field(default=None, ge=0, le=52_000)
    monthly: StrictInt | None = Field(default=None, ge=0, le=12_000)
    yearly: StrictInt | None = Field(default=None, ge=0, le=1000)
    within: Duration | None = Field(
        default=None, description="keep every snapshot taken within this long of the newest one"
    )


def _validate_window(value: object) -> object:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"expected a window such as \"01:00-05:00\", got {_show(value)}")
    from .schedule import Window

    Window.parse(value)
    return value.strip()


class VerifySchedule(Model):
    """When the tick verifies a tier's newest snapshot beyond the integrity check of every run:
    ``drill`` restores it into a scratch target, ``sample`` compares random items with the live
    source (each a cron expression or rate(...))."""

    drill: Schedule | None = None
    sample: Schedule | None = None
    sample_items: StrictInt = Field(default=100, ge=1, le=100_000,
                                    description="items a scheduled sample re-reads")


class Tier(Model):
    """How often a dataset is backed up, how stale it may get, and how long snapshots live."""

    schedule: Schedule
    rpo: Duration
    retention: Retention
    copy_to: list[str] = Field(default_factory=list, description="stores each snapshot is copied to")
    min_copies: StrictInt = Field(
        default=0, ge=0, le=100, description="verified copies a snapshot needs before retention may remove it"
    )
    window: Annotated[str | None, BeforeValidator(_validate_window)] = Field(
        default=None, description='local start window "HH:MM-HH:MM" (policy time zone); may wrap midnight'
    )
    verify: VerifySchedule | None = Field(default=None, description="scheduled drills and samples")
    rto: Duration | None = Field(
        default=None, description="longest acceptable restore; a drill slower than this fails"
    )
    encryption: Encryption = Field(
        default=None, description="overrides the policy's encryption for the tier's datasets (false: none)"
    )
    signing: Signing = Field(
        default=None, description="overrides the policy's signing for the tier's datasets (false: none)"
    )
    immutability: Immutability | None = Field(
        default=None, description="Object Lock mode (default COMPLIANCE) and minimum days for the "
        "tier's snapshots, in stores with object_lock"
    )

    @field_validator("retention")
    @classmethod
    def _some_rule(cls, value: Retention) -> Retention:
        if not any(getattr(value, name) for name in Retention.model_fields):
            raise ValueError(
                "give at least one rule above zero (last, hourly, daily, weekly, monthly, yearly)"
            )
        return value


class DynamoDBSourceSpec(Model):
    """A DynamoDB table. ``method: scan`` (default) reads it by a parallel segmented Scan;
    ``export`` runs ExportTableToPointInTime into the dataset's S3 store (PITR must be on);
    ``native`` takes an on-demand backup (CreateBackup), deleted by retention."""

    type: Literal["dynamodb"]
    table: str = Field(min_length=3, max_length=255, pattern=r"^[A-Za-z0-9_.-]+$")
    region: str = Field(min_length=1)
    method: Literal["scan", "export", "native"] = "scan"
    segments: StrictInt | None = Field(default=None, ge=1, le=1_000_000)
    consistent_read: StrictBool = False


_RDS_ID = r"^[A-Za-z](?:-?[A-Za-z0-9])*$"  # no "--", no trailing "-"


class RdsCopyTo(Model):
    """Where each RDS snapshot is copied: another region, optionally another account (through a
    role there), encrypted with a KMS key of the destination."""

    region: str = Field(min_length=1)
    account_role_arn: str | None = Field(default=None, pattern=r"^arn:aws[a-z-]*:iam::\d{12}:role/.+$")
    kms_key_id: str | None = Field(default=None, min_length=1)


class RdsSourceSpec(Model):
    """An RDS DB instance or Aurora cluster, backed up by native (tagged) snapshots."""

    type: Literal["rds"]
    instance: str | None = Field(default=None, max_length=63, pattern=_RDS_ID)
    cluster: str | None = Field(default=None, max_length=63, pattern=_RDS_ID)
    region: str = Field(min_length=1)
    copy_to: RdsCopyTo | None = None

    @model_validator(mode="after")
    def _one_target(self) -> RdsSourceSpec:
        if (self.instance is None) == (self.cluster is None):
            raise ValueError("give exactly one of 'instance' (a DB instance) or 'cluster' (an Aurora cluster)")
        return self


class FirestoreSourceSpec(Model):
    """Firestore documents: some root collections (or all), with their subcollections, read at
    one point in time. ``segments`` splits each root collection into that many document-name
    ranges read in parallel (default: one per 20,000 documents). ``rewrite_references``: on
    restore, point references into the snapshot's collections at the restored copies."""

    type: Literal["firestore"]
    project: str = Field(min_length=1)
    database: str = "(default)"
    collections: list[str] | None = Field(default=None, min_length=1)
    recursive: StrictBool = True
    segments: StrictInt | None = Field(default=None, ge=1, le=1000)
    rewrite_references: StrictBool = False
    method: Literal["scan", "export"] = Field(
        default="scan",
        description="export: Firestore's managed export (the Admin API's ExportDocuments) into "
        "the dataset's Cloud Storage store; the Firestore emulator has no Admin API, so export "
        "runs only against real Firestore",
    )
    region: str | None = Field(default=None, description="the database's location (for residency)")
    drill_database: str | None = Field(
        default=None, min_length=1, max_length=63, pattern=r"^[a-z][a-z0-9-]*$",
        description="restore drills write into this database (e.g. cloudkeep-drill, which "
        "infra/gcp creates), never into the source's; default: prefixed collections of the "
        "source's database")

    @field_validator("collections")
    @classmethod
    def _collection_ids(cls, value: list[str] | None) -> list[str] | None:
        for name in value or []:
            if not name or "/" in name:
                raise ValueError(f"bad collection id {name!r}: a root collection id, without '/'")
            if name.startswith("__") and name.endswith("__"):
                raise ValueError(f"bad collection id {name!r}: ids like __name__ are reserved")
        if value and len(set(value)) != len(value):
            raise ValueError("a collection is listed more than once")
        return value


class CosmosSourceSpec(Model):
    """A Cosmos DB (NoSQL API) container. The account key is read from the environment variable
    ``key_env``; without it a managed identity is used. A key never appears in the policy.
    ``verify_tls: false`` only for a local emulator's self-signed certificate. ``incremental``:
    after a full snapshot, the next ones hold only what the change feed reports as changed (a
    full one again after ``full_every`` incremental ones)."""

    type: Literal["cosmos"]
    endpoint: str = Field(min_length=1, pattern=r"^https?://")
    database: str = Field(min_length=1, max_length=255, pattern=r"^[^/\\?#]+$")
    container: str = Field(min_length=1, max_length=255, pattern=r"^[^/\\?#]+$")
    key_env: str = Field(default="COSMOS_KEY", min_length=1)
    verify_tls: StrictBool = True
    incremental: StrictBool = False
    full_every: StrictInt = Field(
        default=24, ge=1, le=10_000,
        description="with incremental: take a full snapshot after this many incremental ones",
    )
    region: str | None = Field(default=None, description="the account's region (for residency)")


class S3SourceSpec(Model):
    """Objects of an S3 bucket (optionally under ``prefix``), copied into content-addressed blobs
    of the dataset's store: an object whose content did not change since the last snapshot is
    never copied again, and identical content is stored once. ``include`` / ``exclude``: globs
    (``*`` also matches ``/``) on the key relative to ``prefix`` or the full key; an object is
    backed up when it matches an ``include`` pattern (or there are none) and no ``exclude``
    pattern."""

    type: Literal["s3"]
    bucket: str
    prefix: str = ""
    include: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)
    versions: StrictBool = Field(
        default=False, description="false: the current version of each object (the only mode)"
    )
    region: str = Field(min_length=1)
    endpoint_url: str | None = None
    workers: StrictInt = Field(default=16, ge=1, le=256, description="objects copied in parallel")

    @field_validator("bucket")
    @classmethod
    def _bucket_name(cls, value: str) -> str:
        return _s3_bucket_name(value)

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return value.lstrip("/")

    @field_validator("include", "exclude")
    @classmethod
    def _globs(cls, value: list[str]) -> list[str]:
        for pattern in value:
            if not pattern:
                raise ValueError("an empty glob matches nothing; remove it")
        return value

    @field_validator("versions")
    @classmethod
    def _versions(cls, value: bool) -> bool:
        if value:
            raise ValueError("versions: true (every version of every object) is not supported; "
                             "use versions: false to back up the current version of each object")
        return value


SourceSpec = Annotated[
    DynamoDBSourceSpec | FirestoreSourceSpec | CosmosSourceSpec | S3SourceSpec | RdsSourceSpec,
    Field(discriminator="type"),
]
SOURCE_MODELS: dict[str, type[BaseModel]] = {
    "dynamodb": DynamoDBSourceSpec,
    "firestore": FirestoreSourceSpec,
    "cosmos": CosmosSourceSpec,
    "s3": S3SourceSpec,
    "rds": RdsSourceSpec,
}
SOURCE_TYPES = tuple(SOURCE_MODELS)


class Dataset(Model):
    """One thing to back up: where it is read from, how often, and where it goes."""

    source: SourceSpec
    tier: str = Field(description="name of a tier under `tiers`")
    store: str = Field(description="name of the store under `stores` its snapshots are written to")
    copy_to: list[str] | None = Field(
        default=None, description="stores each snapshot is copied to (overrides the tier's)"
    )
    offset: Offset | None = Field(
        default=None, description="explicit start delay after each slot (default: stable from the name)"
    )
    encryption: Encryption = Field(
        default=None, description="overrides the tier's and the policy's encryption (false: none)"
    )
    signing: Signing = Field(
        default=None, description="overrides the tier's and the policy's signing (false: none)"
    )


class SnsAlerts(Model):
    topic_arn: str = Field(pattern=r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$")


class PubSubAlerts(Model):
    topic: str = Field(
        pattern=r"^projects/[^/]+/topics/[A-Za-z][A-Za-z0-9._~+%-]{2,254}$",
        description="projects/PROJECT/topics/TOPIC",
    )


class WebhookAlerts(Model):
    url_env: str = Field(
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="environment variable holding the webhook URL (a URL is a secret: it is "
                    "never written in the policy)",
    )


class Alerts(Model):
    """Where alerts go (any of them; each alert goes to every channel given)."""

    sns: SnsAlerts | None = None
    pubsub: PubSubAlerts | None = None
    webhook: WebhookAlerts | None = None


class Policy(Model):
    """A whole policy file (version 1)."""

    version: Literal[1] = Field(description="policy format version; this cloudkeep reads 1")
    timezone: str = Field(default="UTC", description="IANA time zone of schedules, windows and "
                          "retention periods, e.g. Europe/Paris")
    stores: dict[str, StoreSpec]
    tiers: dict[str, Tier]
    datasets: dict[str, Dataset]
    alerts: Alerts | None = None
    keys: dict[str, KeySpec] = Field(default_factory=dict, description="named key providers")
    encryption: Encryption = Field(default=None, description="every dataset's default encryption")
    signing: Signing = Field(default=None, description="every dataset's default signing of "
                             "unencrypted manifests (default: by the encryption keys, not required)")
    residency: Residency | None = None

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, value: Any) -> Any:
        # Literal[1] alone would accept true and 1.0 (both == 1).
        if type(value) is not int or value != 1:
            raise ValueError(f"unsupported policy version {_show(value)} (this cloudkeep reads version 1)")
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (use an IANA name such as Europe/Paris)"
            ) from None
        return value

    def dataset(self, name: str) -> Dataset:
        try:
            return self.datasets[name]
        except KeyError:
            known = ", ".join(sorted(self.datasets)) or "none"
            raise UsageError(f"unknown dataset {name!r} (known: {known})") from None

    def encryption_keys(self, name: str) -> list[str]:
        """The keys that wrap ``name``'s new snapshots (empty: not encrypted). The dataset's
        setting wins over its tier's, which wins over the policy's."""
        spec = self.dataset(name)
        for setting in (spec.encryption, self.tiers[spec.tier].encryption, self.encryption):
            if setting is not None:
                return list(setting.keys)  # empty for encryption: false
        return []

    def _signing_setting(self, name: str) -> SigningSpec | None:
        spec = self.dataset(name)
        for setting in (spec.signing, self.tiers[spec.tier].signing, self.signing):
            if setting is not None:
                return setting
        return None

    def signing_keys(self, name: str) -> list[str]:
        """The keys that wrap the signing key of ``name``'s new unencrypted snapshots (empty: not
        signed): the nearest ``signing.keys``, else the dataset's encryption keys, else the nearest
        non-empty encryption keys of its tier or the policy (a dataset that opts out of encryption
        is still signed)."""
        setting = self._signing_setting(name)
        if setting is not None and setting.keys is not None:
            return list(setting.keys)  # empty for signing: false
        spec = self.dataset(name)
        for encryption in (spec.encryption, self.tiers[spec.tier].encryption, self.encryption):
            if encryption is not None and encryption.keys:
                return list(encryption.keys)
        return []

    def signing_required(self, name: str) -> bool:
        """Whether every manifest of ``name`` must carry a valid tag (or endorsement): only when
        a ``signing`` setting says so (``required`` defaults to true there) and keys sign."""
        setting = self._signing_setting(name)
        return bool(setting is not None and setting.required and self.signing_keys(name))


# --------------------------------------------------------------------------------------------
# Loading


@dataclass(frozen=True)
class LoadedPolicy:
    """A validated policy and where it came from."""

    policy: Policy
    source: str


def resolve_policy_path(explicit: str | None) -> str:
    """``--policy`` if given, else ``./cloudkeep.yaml`` if present, else ``$CLOUDKEEP_POLICY``."""
    if explicit:
        return explicit
    if Path(DEFAULT_POLICY_FILE).exists():
        return DEFAULT_POLICY_FILE
    env = os.environ.get(POLICY_ENV)
    if env:
        return env
    raise UsageError(
        f"no policy file: pass --policy FILE, create ./{DEFAULT_POLICY_FILE}, or set {POLICY_ENV}"
    )


def load_policy(location: str) -> LoadedPolicy:
    """Read, parse and validate a policy from a local path or an ``s3://``, ``gs://`` or
    ``az://ACCOUNT/CONTAINER/KEY`` URL."""
    from .redaction import remember, secret_values

    text = _read_text(location)
    base_dir = Path.cwd() if "://" in location else Path(location).resolve().parent
    policy = parse_policy(text, source=location, base_dir=base_dir)
    remember(secret_values(policy))  # redacted from every output from now on
    return LoadedPolicy(policy, location)


POLICY_URL_SCHEMES = ("s3", "gs", "az")


def _read_text(location: str) -> str:
    data = _read_url(location) if "://" in location else _read_file(location)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"cannot read policy file {location}: {exc}") from None


_NOT_REGULAR = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a device"),
                (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket"))


def _read_file(location: str) -> bytes:
    """A local policy file: a regular file of at most :data:`MAX_POLICY_BYTES`. Opened without
    blocking and checked before a byte is read, so a FIFO, a directory or ``/dev/zero`` is
    refused at once."""
    try:
        fd = os.open(location, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise UsageError(f"policy file not found: {location}") from None
    except OSError as exc:
        raise UsageError(f"cannot read policy file {location}: {exc.strerror or exc}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = next((name for test, name in _NOT_REGULAR if test(mode)), "not a file")
            raise UsageError(f"cannot read policy file {location}: it is {kind}, not a regular file")
        os.set_blocking(fd, True)
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(fd, min(1 << 16, MAX_POLICY_BYTES + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_POLICY_BYTES:
                raise UsageError(f"policy file {location} is too large (more than "
                                 f"{MAX_POLICY_BYTES} bytes)")
        return b"".join(chunks)
    except OSError as exc:
        raise UsageError(f"cannot read policy file {location}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def _read_url(location: str) -> bytes:
    """A policy object in a bucket, read through the store adapter of its cloud."""
    from .errors import ObjectNotFoundError
    from .registry import open_store

    scheme, _, rest = location.partition("://")
    parts = rest.split("/")
    spec: BaseModel
    try:
        if scheme == "s3" and len(parts) >= 2 and all(parts):
            region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
            spec = S3StoreSpec(type="s3", bucket=parts[0], region=region)
            key = "/".join(parts[1:])
        elif scheme == "gs" and len(parts) >= 2 and all(parts):
            spec = GcsStoreSpec(type="gcs", bucket=parts[0])
            key = "/".join(parts[1:])
        elif scheme == "az" and len(parts) >= 3 and all(parts):
            spec = AzureBlobStoreSpec(type="azure_blob", container=parts[1],
                                      account_url=f"https://{parts[0]}.blob.core.windows.net")
            key = "/".join(parts[2:])
        elif scheme in POLICY_URL_SCHEMES:
            shape = "az://ACCOUNT/CONTAINER/KEY" if scheme == "az" else f"{scheme}://BUCKET/KEY"
            raise UsageError(f"bad policy URL {location!r} (expected {shape})")
        else:
            raise UsageError(
                f"cannot read a policy from {scheme}:// (supported: a local path, s3://, gs://, az://)"
            )
    except ValidationError as exc:
        raise UsageError(f"bad policy URL {location!r}: {exc.errors()[0]['msg']}") from None
    from .codec import HashingReader

    try:
        with open_store(spec).open(key) as stream:
            reader = HashingReader(stream, limit=MAX_POLICY_BYTES)  # never reads past the limit
            body = b"".join(iter(lambda: reader.read(1 << 16), b""))
    except ObjectNotFoundError:
        raise UsageError(f"policy not found: {location}") from None
    if reader.exceeded:
        raise UsageError(f"policy {location} is too large (more than {MAX_POLICY_BYTES} bytes)")
    return body


def parse_policy(text: str, *, source: str = "<policy>", base_dir: Path | None = None) -> Policy:
    """Validate policy text. Raises PolicyError with every problem, each with its field path."""
    data, lines = _parse_yaml(text, source)
    problems: list[tuple[int | None, str]] = []
    policy: Policy | None = None
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = err["loc"]
            if loc and loc[-1] == "[key]":  # a mapping key that is not a string, e.g. `1: {...}`
                path = _clean_path(data, loc[:-1])
                message = f"name {err.get('input')!r} must be a string (quote it)"
            else:
                path = _clean_path(data, loc)
                message = _describe(err, data, path)
            problems.append((_line_of(lines, path), f"{_dotted(path)}: {message}"))
    problems.extend((_line_of(lines, p), f"{_dotted(p)}: {m}") for p, m in _cross_check(data))
    if policy is not None and not problems:
        policy = _resolve_paths(policy, base_dir or Path.cwd())
        problems.extend((_line_of(lines, p), f"{_dotted(p)}: {m}") for p, m in _check_signing(policy))
        problems.extend((_line_of(lines, p), f"{_dotted(p)}: {m}") for p, m in _check_copy_stores(policy))
        problems.extend((_line_of(lines, p), f"{_dotted(p)}: {m}") for p, m in _check_nested_stores(policy))
    if problems:
        unique: dict[str, int | None] = {}
        for line, message in problems:
            unique.setdefault(message, line)
        ordered = sorted(unique.items(), key=lambda kv: (kv[1] or 0, kv[0]))
        raise PolicyError(
            [f"{source}:{line}: {msg}" if line else f"{source}: {msg}" for msg, line in ordered],
            source=source,
        )
    assert policy is not None
    return policy


def _resolve_paths(policy: Policy, base_dir: Path) -> Policy:
    def resolved(text: str) -> str:
        path = Path(os.path.expanduser(text))
        return str(path if path.is_absolute() else base_dir / path)

    stores: dict[str, Any] = {}
    for name, spec in policy.stores.items():
        if isinstance(spec, FileStoreSpec):
            spec = spec.model_copy(update={"path": resolved(spec.path)})
        stores[name] = spec
    keys: dict[str, Any] = {}
    for name, key in policy.keys.items():
        if isinstance(key, LocalKeySpec):
            key = key.model_copy(update={"path": resolved(key.path)})
        keys[name] = key
    return policy.model_copy(update={"stores": stores, "keys": keys})


class _LimitError(yaml.YAMLError):
    """A policy crosses one of the loader's limits (depth, aliases, expanded size)."""

    def __init__(self, message: str, mark: Any) -> None:
        super().__init__(message)
        self.message = message
        self.mark = mark


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys (YAML allows them silently) and enforces
    the policy's limits while composing — before anything is expanded or constructed: nesting
    depth (aliases expanded), the number of aliases, the number of values once aliases are
    expanded, and aliases that refer to a node containing them (self-reference)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0
        self._open_anchors: set[str] = set()
        self._sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (values, depth), expanded

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        anchor = getattr(event, "anchor", None)
        if isinstance(event, yaml.AliasEvent):
            if anchor in self._open_anchors:
                raise _LimitError(f"alias *{anchor} refers to a node that contains it "
                                  "(a self-referencing alias)", event.start_mark)
            self._aliases += 1
            if self._aliases > MAX_YAML_ALIASES:
                raise _LimitError(f"more than {MAX_YAML_ALIASES} aliases", event.start_mark)
            return super().compose_node(parent, index)  # type: ignore[no-untyped-call]
        self._depth += 1
        if self._depth > MAX_YAML_DEPTH:
            raise _LimitError(f"nested more than {MAX_YAML_DEPTH} levels deep", event.start_mark)
        if anchor is not None:
            self._open_anchors.add(anchor)
        try:
            node = super().compose_node(parent, index)  # type: ignore[no-untyped-call]
        finally:
            self._depth -= 1
            self._open_anchors.discard(anchor)  # type: ignore[arg-type]
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        else:
            children = []
        measured = [self._sizes.get(id(child), (1, 1)) for child in children]
        values = 1 + sum(v for v, _ in measured)
        depth = 1 + max((d for _, d in measured), default=0)
        if values > MAX_YAML_NODES:
            raise _LimitError(f"more than {MAX_YAML_NODES} values once its aliases are expanded "
                              "(an alias bomb?)", event.start_mark)
        if depth > MAX_YAML_DEPTH:
            raise _LimitError(f"nested more than {MAX_YAML_DEPTH} levels deep once its aliases "
                              "are expanded", event.start_mark)
        self._sizes[id(node)] = (values, depth)
        return node


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (first defined at line {seen[key].start_mark.line + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,  # type: ignore[arg-type]
)


def _parse_yaml(text: str, source: str) -> tuple[Any, dict[tuple[str, ...], int]]:
    if len(text) > MAX_POLICY_BYTES:
        raise PolicyError([f"{source}: the policy is too large (more than {MAX_POLICY_BYTES} "
                           "bytes)"], source=source)
    try:
        loader = _UniqueKeyLoader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except _LimitError as exc:
        where = f"{source}:{exc.mark.line + 1}:{exc.mark.column + 1}" if exc.mark else source
        raise PolicyError([f"{where}: refused: {exc.message}"], source=source) from None
    except RecursionError:  # a last resort: the limits above keep nesting far from this
        raise PolicyError([f"{source}: refused: nested too deeply"], source=source) from None
    except yaml.MarkedYAMLError as exc:
        raise PolicyError([_yaml_error(exc, text, source)], source=source) from None
    except yaml.YAMLError as exc:
        raise PolicyError([f"{source}: YAML syntax error: {exc}"], source=source) from None
    if not isinstance(data, dict):
        kind = "empty" if data is None else "a list" if isinstance(data, list) else f"just {_show(data)}"
        raise PolicyError([f"{source}: the policy must be a mapping with version, stores, tiers "
                           f"and datasets; this file is {kind}"], source=source)
    lines: dict[tuple[str, ...], int] = {}
    if node is not None:
        _index_lines(node, (), lines)
    return data, lines


def _yaml_error(exc: yaml.MarkedYAMLError, text: str, source: str) -> str:
    """``file:line:column: YAML syntax error: ...`` at the most useful place.

    A problem found at the end of the input (an unclosed quote or bracket) is reported where the
    unclosed construct starts, not on the line after the last one.
    """
    problem, context = exc.problem or "", exc.context
    pmark, cmark = exc.problem_mark, exc.context_mark
    mark = pmark or cmark
    if cmark is not None and (pmark is None or pmark.index >= len(text.rstrip())):
        mark = cmark
    what = problem
    if context:
        if cmark is not None and mark is not None and cmark.line != mark.line:
            context = f"{context} (line {cmark.line + 1})"
        what = f"{context}{',' if problem.startswith('but') else ':'} {problem}"
    if mark is None:
        return f"{source}: YAML syntax error: {what}"
    line, column = mark.line + 1, mark.column + 1
    body = text.rstrip()
    if mark.index >= len(body):  # past the last character: name the last non-blank line
        line, column = body.count("\n") + 1, len(body.rsplit("\n", 1)[-1]) + 1
    return f"{source}:{line}:{column}: YAML syntax error: {what}"


def _index_lines(node: yaml.Node, path: tuple[str, ...], out: dict[tuple[str, ...], int]) -> None:
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            sub = (*path, str(key_node.value))
            out[sub] = key_node.start_mark.line + 1
            _index_lines(value_node, sub, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index_lines(item, (*path, str(i)), out)


def _line_of(lines: Mapping[tuple[str, ...], int], path: tuple[str, ...]) -> int | None:
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return lines.get(())


def _clean_path(data: Any, loc: tuple[int | str, ...]) -> tuple[str, ...]:
    """Drop the discriminator tags pydantic inserts into error locations."""
    out: list[str] = []
    current = data
    for part in loc:
        if isinstance(current, dict) and part in current:
            out.append(str(part))
            current = current[part]
        elif isinstance(current, list) and isinstance(part, int) and part < len(current):
            out.append(str(part))
            current = current[part]
        elif isinstance(current, dict) and part in (current.get("type"), current.get("provider")):
            continue  # discriminated-union tag
        else:
            out.append(str(part))
            current = None
    return tuple(out)


def _dotted(path: tuple[str, ...]) -> str:
    return ".".join(path) if path else "(top level)"


def _allowed_keys(data: Any, parent: tuple[str, ...]) -> list[str] | None:
    model = _model_at(data, parent)
    return sorted(model.model_fields) if model else None


def _model_at(data: Any, path: tuple[str, ...]) -> type[BaseModel] | None:
    """The model that validates the mapping at ``path`` (for "allowed keys" hints)."""
    n = len(path)
    raw = data
    for part in path:
        raw = raw.get(part) if isinstance(raw, dict) else None
    kind = raw.get("type") if isinstance(raw, dict) else None
    if n == 0:
        return Policy
    if n == 2 and path[0] == "stores":
        return STORE_MODELS.get(str(kind))
    if n == 2 and path[0] == "keys":
        return KEY_MODELS.get(str(raw.get("provider")) if isinstance(raw, dict) else "")
    if (n == 1 and path[0] == "encryption") or (n == 3 and path[0] in ("tiers", "datasets")
                                                 and path[2] == "encryption"):
        return EncryptionSpec
    if (n == 1 and path[0] == "signing") or (n == 3 and path[0] in ("tiers", "datasets")
                                              and path[2] == "signing"):
        return SigningSpec
    if n == 1 and path[0] == "residency":
        return Residency
    if n == 2 and path[0] == "tiers":
        return Tier
    if n == 3 and path[0] == "tiers" and path[2] == "retention":
        return Retention
    if n == 3 and path[0] == "tiers" and path[2] == "verify":
        return VerifySchedule
    if n == 1 and path[0] == "alerts":
        return Alerts
    if n == 2 and path[0] == "alerts":
        channels: dict[str, type[BaseModel]] = {"sns": SnsAlerts, "pubsub": PubSubAlerts,
                                                "webhook": WebhookAlerts}
        return channels.get(path[1])
    if n == 2 and path[0] == "datasets":
        return Dataset
    if n == 3 and path[0] == "datasets" and path[2] == "source":
        return SOURCE_MODELS.get(str(kind))
    return None


def _describe(err: Any, data: Any, path: tuple[str, ...]) -> str:
    kind = err["type"]
    got = err.get("input")
    ctx = err.get("ctx") or {}
    if kind in ("extra_forbidden", "invalid_key"):
        allowed = _allowed_keys(data, path[:-1])
        hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
        return f"unknown key '{path[-1]}'{hint}"
    if kind == "missing":
        return "required key is missing"
    if kind == "union_tag_invalid":
        tag = err.get("ctx", {}).get("tag")
        if path[:1] == ("keys",):
            return f"unknown key provider {tag!r} (known: {', '.join(KEY_PROVIDERS)})"
        what = "store" if path[:1] == ("stores",) else "source"
        known = STORE_TYPES if what == "store" else SOURCE_TYPES
        return f"unknown {what} type {tag!r} (known: {', '.join(known)})"
    if kind == "union_tag_not_found":
        return "required key 'provider' is missing" if path[:1] == ("keys",) else "required key 'type' is missing"
    if kind == "value_error":
        return str(err["msg"]).removeprefix("Value error, ")
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"expected a mapping, got {_show(got)}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"expected a whole number, got {_show(got)}"
    if kind in ("bool_type", "bool_parsing"):
        return f"expected true or false, got {_show(got)}"
    if kind == "string_type":
        return f"expected a string, got {_show(got)}"
    if kind == "greater_than_equal":
        return f"must be at least {ctx.get('ge')}, got {_show(got)}"
    if kind == "less_than_equal":
        return f"must be at most {ctx.get('le')}, got {_show(got)}"
    if kind == "string_too_short":
        return "must not be empty" if not got else f"{got!r} is too short (at least {ctx.get('min_length')} characters)"
    if kind == "string_too_long":
        return f"is too long (at most {ctx.get('max_length')} characters)"
    if kind == "string_pattern_mismatch":
        return f"{got!r} does not match {ctx.get('pattern')}"
    return f"{err['msg']} (got {_show(got)})"


def _show(value: Any) -> str:
    """A value as the YAML author wrote it: ``'four'``, ``-1``, ``true``, ``null``, ``a list``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _cross_check(data: dict[str, Any]) -> Iterator[tuple[tuple[str, ...], str]]:
    """References between sections; runs on the raw data so it reports alongside type errors."""
    stores, tiers = data.get("stores"), data.get("tiers")
    datasets = data.get("datasets")
    if not isinstance(datasets, dict):
        return
    for name, spec in datasets.items():
        if not DATASET_NAME_RE.match(str(name)):
            yield (("datasets", str(name)),
                   f"bad dataset name {name!r} (letters, digits, '_', '.', '-'; up to 128)")
        if not isinstance(spec, dict):
            continue
        tier = spec.get("tier")
        if isinstance(tier, str) and isinstance(tiers, dict) and tier not in tiers:
            known = ", ".join(sorted(map(str, tiers))) or "none defined"
            yield (("datasets", str(name), "tier"), f"unknown tier {tier!r} (known: {known})")
        store = spec.get("store")
        if isinstance(store, str) and isinstance(stores, dict) and store not in stores:
            known = ", ".join(sorted(map(str, stores))) or "none defined"
            yield (("datasets", str(name), "store"), f"unknown store {store!r} (known: {known})")
        yield from _check_copies(("datasets", str(name)), spec.get("copy_to"), stores, store)
        yield from _check_export_store(str(name), spec.get("source"), stores, store)
        yield from _check_encryption(("datasets", str(name)), spec.get("encryption"), data.get("keys"))
        yield from _check_encryption(("datasets", str(name)), spec.get("signing"), data.get("keys"),
                                     "signing")
    if isinstance(tiers, dict):
        for tier_name, tier_spec in tiers.items():
            if isinstance(tier_spec, dict):
                yield from _check_copies(("tiers", str(tier_name)), tier_spec.get("copy_to"), stores, None)
                yield from _check_encryption(("tiers", str(tier_name)), tier_spec.get("encryption"),
                                             data.get("keys"))
                yield from _check_encryption(("tiers", str(tier_name)), tier_spec.get("signing"),
                                             data.get("keys"), "signing")
    yield from _check_encryption((), data.get("encryption"), data.get("keys"))
    yield from _check_encryption((), data.get("signing"), data.get("keys"), "signing")
    yield from _check_residency(data)


def _check_copies(where: tuple[str, ...], copies: Any, stores: Any,
                  own: Any) -> Iterator[tuple[tuple[str, ...], str]]:
    if not isinstance(copies, list) or not isinstance(stores, dict):
        return
    for i, target in enumerate(copies):
        path = (*where, "copy_to", str(i))
        if isinstance(target, str) and target not in stores:
            known = ", ".join(sorted(map(str, stores))) or "none defined"
            yield (path, f"unknown store {target!r} (known: {known})")
        elif isinstance(target, str) and target == own:
            yield (path, f"store {target!r} is the dataset's own store; copy_to names other stores")


def _check_copy_stores(policy: Policy) -> Iterator[tuple[tuple[str, ...], str]]:
    """Copies are real redundancy: no copy store at the location of the dataset's primary store
    or of another copy store (:meth:`StoreLocation.overlaps`), and a tier's ``min_copies`` never
    more than the copy stores at distinct locations its datasets copy to (else retention could
    never remove anything)."""
    where = {name: spec.location() for name, spec in policy.stores.items()}

    def distinct(path: tuple[str, ...], copies: list[str]) -> tuple[list[str], list[tuple[tuple[str, ...], str]]]:
        kept: list[str] = []
        found: list[tuple[tuple[str, ...], str]] = []
        for i, name in enumerate(copies):
            if name not in where:
                continue  # reported by the cross check
            twin = next((k for k in kept if where[k].overlaps(where[name])), None)
            if twin == name:
                found.append(((*path, str(i)), f"store {name!r} is listed twice"))
            elif twin is not None:
                found.append(((*path, str(i)), f"store {name!r} {_same_place(where[name], repr(twin), where[twin])}: "
                              "a copy there is no second copy"))
            else:
                kept.append(name)
        return kept, found

    users: dict[str, list[str]] = {}
    for ds_name, ds in policy.datasets.items():
        users.setdefault(ds.tier, []).append(ds_name)
    for tier_name, tier in policy.tiers.items():
        path = ("tiers", tier_name, "copy_to")
        kept, found = distinct(path, list(tier.copy_to))
        yield from found
        inherit = [d for d in users.get(tier_name, []) if policy.datasets[d].copy_to is None]
        if tier.min_copies > len(kept) and (inherit or not users.get(tier_name)):
            yield (("tiers", tier_name, "min_copies"),
                   f"min_copies: {tier.min_copies} needs as many copy stores at distinct locations, "
                   f"but copy_to names {len(kept)}: retention could never remove a snapshot")
    for ds_name, ds in policy.datasets.items():
        tier = policy.tiers[ds.tier]
        own = where.get(ds.store)
        if ds.copy_to is not None:
            path = ("datasets", ds_name, "copy_to")
            kept, found = distinct(path, list(ds.copy_to))
            yield from found
        else:
            path = ("tiers", ds.tier, "copy_to")
            kept, _ = distinct(path, list(tier.copy_to))  # its problems are the tier's, above
        copies = list(ds.copy_to if ds.copy_to is not None else tier.copy_to)
        for name in list(kept):
            if own is None or not where[name].overlaps(own):
                continue
            kept.remove(name)
            if name == ds.store and ds.copy_to is not None:
                continue  # "the dataset's own store": reported by the cross check
            whose = "the dataset's store" if ds.copy_to is not None else f"the store of dataset {ds_name!r}"
            if name == ds.store:
                what = f"is {whose}"
            elif where[name] == own:
                what = f"is at the same location as {ds.store!r}, {whose} ({own})"
            else:
                what = f"({where[name]}) overlaps {ds.store!r}, {whose} ({own}), one inside the other"
            yield ((*path, str(copies.index(name))), f"store {name!r} {what}: a copy there is no "
                   "second copy")
        if tier.min_copies > len(kept) and (ds.copy_to is not None or kept != distinct(path, list(tier.copy_to))[0]):
            yield ((*path,) if ds.copy_to is not None else ("tiers", ds.tier, "min_copies"),
                   f"tier {ds.tier!r} needs {tier.min_copies} verified copies (min_copies) but dataset "
                   f"{ds_name!r} copies to {len(kept)} store(s) at distinct locations: retention "
                   "could never remove its snapshots")


def _check_nested_stores(policy: Policy) -> Iterator[tuple[tuple[str, ...], str]]:
    """No store inside another (one's folder, bucket prefix or container prefix under the
    other's): the outer store's prune would take the inner store's objects for its own
    leftovers. Two names for one location are allowed (keys are per dataset)."""
    where = {name: spec.location() for name, spec in policy.stores.items()}
    reported = set()  # a dataset's copy store inside its own store: the copy check says so
    for ds in policy.datasets.values():
        targets = ds.copy_to if ds.copy_to is not None else policy.tiers[ds.tier].copy_to
        reported |= {frozenset((ds.store, c)) for c in targets}
    for name, mine in where.items():
        for other, theirs in where.items():
            if frozenset((name, other)) in reported:
                continue
            if other != name and mine != theirs and mine.overlaps(theirs) and \
                    len(str(mine)) > len(str(theirs)):
                yield (("stores", name), f"store {name!r} ({mine}) lies inside store {other!r} "
                       f"({theirs}): prune of one would remove the other's objects; give each "
                       "store a location of its own")


def _same_place(mine: StoreLocation, other: str, theirs: StoreLocation) -> str:
    if mine == theirs:
        return f"is at the same location as store {other} ({mine})"
    return f"({mine}) overlaps store {other} ({theirs}), one inside the other"


# An export written by the service itself lands in the dataset's own store bucket.
_EXPORT_STORE = {"dynamodb": ("s3", "ExportTableToPointInTime writes into an S3 bucket"),
                 "firestore": ("gcs", "Firestore's managed export writes into a Cloud Storage bucket")}


def _check_export_store(name: str, source: Any, stores: Any, store: Any) -> Iterator[tuple[tuple[str, ...], str]]:
    if not isinstance(source, dict) or source.get("method") != "export" or not isinstance(stores, dict):
        return
    need = _EXPORT_STORE.get(str(source.get("type")))
    target = stores.get(store) if isinstance(store, str) else None
    if need is None or not isinstance(target, dict):
        return
    kind, why = need
    if target.get("type") != kind:
        yield (("datasets", name, "source", "method"),
               f"method: export needs the dataset's store to be of type {kind} ({why}, under the "
               f"snapshot's folder); store {store!r} is of type {target.get('type')!r}")


def _check_encryption(where: tuple[str, ...], setting: Any, keys: Any,
                      field: str = "encryption") -> Iterator[tuple[tuple[str, ...], str]]:
    if not isinstance(setting, dict) or not isinstance(setting.get("keys"), list):
        return
    for i, name in enumerate(setting["keys"]):
        if isinstance(name, str) and (not isinstance(keys, dict) or name not in keys):
            known = ", ".join(sorted(map(str, keys))) if isinstance(keys, dict) and keys else "none defined"
            yield ((*where, field, "keys", str(i)), f"unknown key {name!r} (known: {known})")


def _check_signing(policy: Policy) -> Iterator[tuple[tuple[str, ...], str]]:
    """A dataset whose signing is required needs a key that signs it."""
    for name in policy.datasets:
        setting = policy._signing_setting(name)
        if setting is not None and setting.required and not policy.signing_keys(name):
            yield (("datasets", name),
                   "signing is required (signing.required) but no key signs this dataset's "
                   "manifests: list signing.keys, or give it encryption keys")


_REGION_FIELDS = {
    "s3": "region", "gcs": "region", "azure_blob": "region",
    "dynamodb": "region", "firestore": "region", "cosmos": "region",
}


def _check_residency(data: dict[str, Any]) -> Iterator[tuple[tuple[str, ...], str]]:
    """Every store and source in an allowed region (a local file store has none to check)."""
    residency = data.get("residency")
    if not isinstance(residency, dict) or not isinstance(residency.get("allowed_regions"), list):
        return
    allowed = [str(r) for r in residency["allowed_regions"]]
    shown = ", ".join(allowed)
    places: list[tuple[tuple[str, ...], Any, str]] = []
    for name, spec in (data.get("stores") or {}).items() if isinstance(data.get("stores"), dict) else ():
        places.append((("stores", str(name)), spec, "store"))
    for name, spec in (data.get("datasets") or {}).items() if isinstance(data.get("datasets"), dict) else ():
        if isinstance(spec, dict):
            places.append((("datasets", str(name), "source"), spec.get("source"), "source"))
    for path, spec, what in places:
        if not isinstance(spec, dict) or spec.get("type") not in _REGION_FIELDS:
            continue  # a file store, or a spec with its own errors
        region = spec.get("region")
        if region is None:
            yield ((*path, "region"), f"residency is set but this {what} declares no region "
                                      f"(add region: one of {shown})")
        elif str(region) not in allowed:
            yield ((*path, "region"), f"{what} region {region!r} is outside residency.allowed_regions "
                                      f"({shown})")
