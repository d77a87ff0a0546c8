"""The policy's pydantic models: tiers, datasets, encryption, signing, alerts and the whole
:class:`Policy`. Source, store and key specs are the adapters' own models; their discriminated
unions are assembled here from :mod:`cloudkeep.registry`."""

from __future__ import annotations

import operator
from collections.abc import Iterable
from functools import reduce
from typing import TYPE_CHECKING, Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, StrictBool, StrictInt, field_validator
from pydantic.functional_validators import AfterValidator, BeforeValidator
from pydantic.json_schema import WithJsonSchema

from .. import pricing, registry
from ..errors import UsageError
from ..spans import RetentionSpan
from ..specs import Duration, Immutability, KeyModel, Model, Offset, SourceModel, StoreModel, show
from ..storageclass import Pricing, Transition, check_transitions
from .schedules import Schedule, validate_window


def _union(classes: Iterable[type[Model]]) -> Any:
    """``A | B | ...`` of the registry's spec classes, in the registry's order."""
    return reduce(operator.or_, classes)


if TYPE_CHECKING:
    StoreSpec = StoreModel
    SourceSpec = SourceModel
    KeySpec = KeyModel
else:
    StoreSpec = Annotated[_union(registry.STORES.values()), Field(discriminator="type")]
    SourceSpec = Annotated[_union(registry.SOURCES.values()), Field(discriminator="type")]
    KeySpec = Annotated[_union(registry.KEYS.values()), Field(discriminator="provider")]

STORE_MODELS = registry.STORES
STORE_TYPES = tuple(STORE_MODELS)
SOURCE_MODELS = registry.SOURCES
SOURCE_TYPES = tuple(SOURCE_MODELS)
KEY_MODELS = registry.KEYS
KEY_PROVIDERS = tuple(KEY_MODELS)


def _no_repeats(value: list[str]) -> list[str]:
    if len(set(value)) != len(value):
        raise ValueError("a key is listed more than once")
    return value


KeyNames = Annotated[list[str], AfterValidator(_no_repeats)]
"""Names of keys under ``keys:``, each listed once."""


class EncryptionSpec(Model):
    """Envelope encryption: a fresh data key per snapshot, wrapped by every key listed (the first
    that can make data keys makes it); any one of them can restore the snapshot."""

    keys: KeyNames = Field(min_length=1)


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

    keys: KeyNames | None = Field(
        default=None, min_length=1,
        description="keys that wrap each snapshot's signing key (default: the dataset's "
        "encryption keys, else the nearest encryption keys of its tier or the policy)")
    required: StrictBool = Field(
        default=True,
        description="refuse, on every read, a manifest of the dataset without a valid tag or "
        "endorsement (manifests written before signing began: run `cloudkeep keys endorse` first)")


def _signing_value(value: object) -> object:
    if value is True:
        return {}
    if value is False:
        return NO_SIGNING
    return value


NO_SIGNING = SigningSpec.model_construct(keys=[], required=False)
"""``signing: false``: an explicit opt-out (overrides a default set higher up)."""

Signing = Annotated[SigningSpec | None, BeforeValidator(_signing_value)]


def _overrides(what: str) -> Any:
    """An ``encryption`` or ``signing`` field that overrides ``what`` (false: none)."""
    return Field(default=None, description=f"overrides {what} (false: none)")


class Residency(Model):
    """Where data may be kept: every store and source must declare a region in this list."""

    allowed_regions: list[str] = Field(min_length=1)


def _count_value(most: int) -> Any:
    """A count rule's value: an integer 0..``most``, or ``unlimited`` (restic's -1)."""

    def check(value: object) -> object:
        if value == "unlimited" and isinstance(value, str):
            return value
        if type(value) is not int:
            raise ValueError(f"expected a whole number, got {show(value)} (or unlimited)")
        if value < 0:
            raise ValueError(f"must be at least 0, got {value} (negative counts are not allowed: "
                             "write unlimited to keep every period)")
        if value > most:
            raise ValueError(f"must be at most {most}, got {value} (or unlimited)")
        return value

    return check


def _count(most: int) -> Any:
    return Annotated[int | Literal["unlimited"], BeforeValidator(_count_value(most)), WithJsonSchema(
        {"anyOf": [{"type": "integer", "minimum": 0, "maximum": most}, {"const": "unlimited"}]})]


def _per(period: str) -> Any:
    return Field(default=None, description=f"keep the newest snapshot of each of the N most recent "
                 f"{period}s that have one, and the oldest snapshot while N is not used up "
                 f"(unlimited: every {period})")


if TYPE_CHECKING:
    LastCount = int | Literal["unlimited"]
    HourlyCount = int | Literal["unlimited"]
    DailyCount = int | Literal["unlimited"]
    WeeklyCount = int | Literal["unlimited"]
    MonthlyCount = int | Literal["unlimited"]
    YearlyCount = int | Literal["unlimited"]
else:
    # Counts are bounded (about 1000 years each): dates computed from them stay representable.
    LastCount = _count(1_000_000)
    HourlyCount = _count(8_760_000)
    DailyCount = _count(365_000)
    WeeklyCount = _count(52_000)
    MonthlyCount = _count(12_000)
    YearlyCount = _count(1000)


def _window(what: str) -> Any:
    return Field(default=None, description=f"keep {what} within this long of the latest snapshot "
                 "(calendar units: e.g. 7d, 36h, 6mo, 1y2mo3d3h)")


def _store_classes(store_type: str) -> set[str]:
    """The storage classes cloudkeep knows of a store type (its spec's and the price table's)."""
    spec = registry.store_spec(store_type)
    known = set(pricing.table().get("storage_gb_month", {}).get(store_type, {}))
    if spec is not None:
        known |= {*spec.STORAGE_CLASSES.values(), spec.DEFAULT_CLASS, *spec.MIN_STORAGE_DAYS}
    return known


class Retention(Model):
    """Which snapshots to keep: exactly restic's ``forget`` rules (docs/retention.md)."""

    last: LastCount | None = Field(default=None, description="keep the N newest snapshots "
                                   "(unlimited: every one)")
    hourly: HourlyCount | None = _per("hour")
    daily: DailyCount | None = _per("day")
    weekly: WeeklyCount | None = _per("ISO week")
    monthly: MonthlyCount | None = _per("month")
    yearly: YearlyCount | None = _per("year")
    within: RetentionSpan | None = Field(
        default=None, description="keep every snapshot taken within this long of the latest one "
        "(strictly newer than the latest minus this; calendar units: e.g. 7d, 36h, 6mo, 1y2mo3d3h)"
    )
    within_hourly: RetentionSpan | None = _window("the newest snapshot of each hour")
    within_daily: RetentionSpan | None = _window("the newest snapshot of each day")
    within_weekly: RetentionSpan | None = _window("the newest snapshot of each ISO week")
    within_monthly: RetentionSpan | None = _window("the newest snapshot of each month")
    within_yearly: RetentionSpan | None = _window("the newest snapshot of each year")

    def has_rule(self) -> bool:
        """True when some rule can keep a snapshot (a count above zero, unlimited, a window)."""
        return any(getattr(self, name) for name in type(self).model_fields)


RETENTION_NEEDS_A_RULE = ("give at least one rule above zero (last, hourly, daily, weekly, monthly, "
                          "yearly, within, within_hourly, within_daily, within_weekly, "
                          "within_monthly, within_yearly)")


class VerifySchedule(Model):
    """When the tick verifies a tier's newest snapshot beyond the integrity check of every run:
    ``drill`` restores it into a scratch target, ``sample`` compares random items with the live
    source (each a cron expression or rate(...))."""

    drill: Schedule | None = None
    sample: Schedule | None = None
    sample_items: StrictInt = Field(default=100, ge=1, le=100_000,
                                    description="items a scheduled sample re-reads")


class ContinuousSpec(Model):
    """Continuous capture (``continuous: true``, or these settings): every change between
    snapshots is kept in the dataset's change log (docs/continuous.md)."""

    flush_interval: Duration = Field(
        default="60s", validate_default=True, description="longest a change waits before its log segment is written "
        "(how far behind the log may be; at most 1h)")
    window: Duration | None = Field(
        default=None, description="how long point-in-time restore reaches back (default: as long "
        "as the tier's retention keeps snapshots)")

    @field_validator("flush_interval")
    @classmethod
    def _flush_bound(cls, value: Any) -> Any:
        if value.total_seconds() < 1 or value.total_seconds() > 3600:
            raise ValueError("flush_interval is between 1s and 1h")
        return value


def _continuous_value(value: Any) -> Any:
    """``continuous: true`` → the default settings; ``false``: an explicit opt-out."""
    if value is True:
        return {}
    return value


Continuous = Annotated[ContinuousSpec | Literal[False] | None, BeforeValidator(_continuous_value)]


class Tier(Model):
    """How often a dataset is backed up, how stale it may get, and how long snapshots live."""

    schedule: Schedule
    rpo: Duration
    retention: Retention
    copy_to: list[str] = Field(default_factory=list, description="stores each snapshot is copied to")
    min_copies: StrictInt = Field(
        default=0, ge=0, le=100, description="verified copies a snapshot needs before retention may remove it"
    )
    window: Annotated[str | None, BeforeValidator(validate_window)] = Field(
        default=None, description='local start window "HH:MM-HH:MM" (policy time zone); may wrap midnight'
    )
    verify: VerifySchedule | None = Field(default=None, description="scheduled drills and samples")
    rto: Duration | None = Field(
        default=None, description="longest acceptable restore; a drill slower than this fails"
    )
    encryption: Encryption = _overrides("the policy's encryption for the tier's datasets")
    signing: Signing = _overrides("the policy's signing for the tier's datasets")
    immutability: Immutability | None = Field(
        default=None, description="Object Lock mode (default COMPLIANCE) and minimum days for the "
        "tier's snapshots, in stores with object_lock"
    )
    transition: Annotated[list[Transition], AfterValidator(check_transitions)] = Field(
        default_factory=list, max_length=3,
        description="move the snapshots' parts to colder storage classes as they age, e.g. "
        "[{after: 30d, to: cold}, {after: 180d, to: archive}] (docs/cold-tiers.md)")
    continuous: Continuous = Field(default=None, description="continuous capture for the tier's "
                                   "datasets: true or settings (docs/continuous.md)")

    @field_validator("retention")
    @classmethod
    def _some_rule(cls, value: Retention) -> Retention:
        if not value.has_rule():
            raise ValueError(RETENTION_NEEDS_A_RULE)
        return value


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
    encryption: Encryption = _overrides("the tier's and the policy's encryption")
    signing: Signing = _overrides("the tier's and the policy's signing")
    continuous: Continuous = Field(default=None, description="continuous capture: true or "
                                   "settings (overrides the tier's; false: none)")


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
    pricing: Pricing | None = Field(
        default=None, description="overrides of the price table `report` computes monthly "
        "storage cost with (docs/cold-tiers.md)")

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, value: Any) -> Any:
        # Literal[1] alone would accept true and 1.0 (both == 1).
        if type(value) is not int or value != 1:
            raise ValueError(f"unsupported policy version {show(value)} (this cloudkeep reads version 1)")
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

    @field_validator("pricing")
    @classmethod
    def _pricing_store_types(cls, value: Pricing | None) -> Pricing | None:
        for store_type in (value.storage_gb_month if value is not None else {}):
            if store_type not in STORE_TYPES:
                raise ValueError(f"storage_gb_month: unknown store type {store_type!r} "
                                 f"(known: {', '.join(STORE_TYPES)})")
            assert value is not None
            known = _store_classes(store_type)
            for name in value.storage_gb_month[store_type]:
                spelled = [k for k in known if k.casefold() == name.casefold() and k != name]
                if spelled:  # `standard` would price nothing: the listing says STANDARD
                    raise ValueError(f"storage_gb_month.{store_type}: storage class {name!r} is "
                                     f"spelled {spelled[0]!r}")
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

    def continuous(self, name: str) -> ContinuousSpec | None:
        """``name``'s continuous-capture settings, or None when it is not captured continuously
        (the dataset's setting wins over its tier's)."""
        spec = self.dataset(name)
        for setting in (spec.continuous, self.tiers[spec.tier].continuous):
            if setting is not None:
                return setting or None
        return None

    def signing_required(self, name: str) -> bool:
        """Whether every manifest of ``name`` must carry a valid tag (or endorsement): only when
        a ``signing`` setting says so (``required`` defaults to true there) and keys sign."""
        setting = self._signing_setting(name)
        return bool(setting is not None and setting.required and self.signing_keys(name))

