"""The policy file: pydantic models, loading, and error reports that name every problem.

A policy names the stores backups go to, the tiers (schedule, RPO, retention) and the datasets.
Loading either returns a frozen, fully cross-checked :class:`Policy` or raises
:class:`~cloudkeep.errors.PolicyError` listing *every* problem as ``file:line: field.path: what``.
"""

from __future__ import annotations

import os
import re
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


class FileStoreSpec(Model):
    """A folder on local disk (or a mounted volume). Relative paths are relative to the policy."""

    type: Literal["file"]
    path: str = Field(min_length=1)


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


class Residency(Model):
    """Where data may be kept: every store and source must declare a region in this list."""

    allowed_regions: list[str] = Field(min_length=1)


class Retention(Model):
    """How many snapshots to keep per period (restic ``forget`` semantics)."""

    last: StrictInt | None = Field(default=None, ge=0)
    hourly: StrictInt | None = Field(default=None, ge=0)
    daily: StrictInt | None = Field(default=None, ge=0)
    weekly: StrictInt | None = Field(default=None, ge=0)
    monthly: StrictInt | None = Field(default=None, ge=0)
    yearly: StrictInt | None = Field(default=None, ge=0)
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
        default=0, ge=0, description="verified copies a snapshot needs before retention may remove it"
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
        description="export: Firestore's managed export into the dataset's Cloud Storage store",
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
    text = _read_text(location)
    base_dir = Path.cwd() if "://" in location else Path(location).resolve().parent
    return LoadedPolicy(parse_policy(text, source=location, base_dir=base_dir), location)


POLICY_URL_SCHEMES = ("s3", "gs", "az")


def _read_text(location: str) -> str:
    if "://" in location:
        return _read_url(location).decode("utf-8")
    try:
        return Path(location).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"policy file not found: {location}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read policy file {location}: {exc}") from None


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
    try:
        return open_store(spec).get(key)
    except ObjectNotFoundError:
        raise UsageError(f"policy not found: {location}") from None


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
    return _resolve_paths(policy, base_dir or Path.cwd())


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


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys (YAML allows them silently)."""


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
    try:
        loader = _UniqueKeyLoader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
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
    if isinstance(tiers, dict):
        for tier_name, tier_spec in tiers.items():
            if isinstance(tier_spec, dict):
                yield from _check_copies(("tiers", str(tier_name)), tier_spec.get("copy_to"), stores, None)
                yield from _check_encryption(("tiers", str(tier_name)), tier_spec.get("encryption"),
                                             data.get("keys"))
    yield from _check_encryption((), data.get("encryption"), data.get("keys"))
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


def _check_encryption(where: tuple[str, ...], setting: Any, keys: Any) -> Iterator[tuple[tuple[str, ...], str]]:
    if not isinstance(setting, dict) or not isinstance(setting.get("keys"), list):
        return
    for i, name in enumerate(setting["keys"]):
        if isinstance(name, str) and (not isinstance(keys, dict) or name not in keys):
            known = ", ".join(sorted(map(str, keys))) if isinstance(keys, dict) and keys else "none defined"
            yield ((*where, "encryption", "keys", str(i)), f"unknown key {name!r} (known: {known})")


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
