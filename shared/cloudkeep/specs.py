"""The base of every policy spec: the pydantic :class:`Model`, the spec classes adapters derive
their policy models from, and the field types and validators several of them share.

A leaf module: adapters (``sources/<name>/spec.py``, the end of ``stores/<name>.py`` and
``keys/<name>.py``) import it, the policy package assembles their specs through
:mod:`cloudkeep.registry`. Type-level knowledge the core needs about an adapter is a method or
a ClassVar of its spec class, so the core never compares a type name.
"""

from __future__ import annotations

import importlib
import json
import re
from abc import abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Self, get_args
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError
from pydantic.functional_validators import AfterValidator, BeforeValidator
from pydantic.json_schema import WithJsonSchema

from .errors import UsageError
from .place import place_option_names

if TYPE_CHECKING:
    from .keys import KeyProvider
    from .place import Place
    from .sources import Source
    from .stores import Store

MAX_DURATION = timedelta(days=36_600)
"""The longest duration (about 100 years) any field accepts."""

# --------------------------------------------------------------------------------------------
# Durations


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


def _duration_type(parse: Callable[[object], timedelta], min_length: int, description: str) -> Any:
    """A timedelta field written as text (``90m``) and shown in the JSON schema as a string."""
    return Annotated[timedelta, BeforeValidator(parse), WithJsonSchema(
        {"type": "string", "pattern": DURATION_PATTERN, "minLength": min_length,
         "description": description})]


def parse_offset(text: object) -> timedelta:
    """Like :func:`parse_duration`, but zero (``0m``) is allowed."""
    if isinstance(text, str) and re.fullmatch(r"0+[wdhms]?", text.strip()):
        return timedelta(0)
    return parse_duration(text)


if TYPE_CHECKING:
    Duration = timedelta
    Offset = timedelta
else:
    Duration = _duration_type(parse_duration, 2, "a duration such as 90m, 26h, 7d, 2w or 1h30m")
    Offset = _duration_type(parse_offset, 1, "a delay such as 0m, 90s, 5m or 1h30m")


def show(value: Any) -> str:
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


# --------------------------------------------------------------------------------------------
# Store identity


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
        if not self.bucket and not self.service:
            return f"folder {self.path}"
        where = f"{self.bucket}/{self.path}".rstrip("/")
        return f"{self.kind} {where}" + (f" at {self.service}" if self.service else "")


def normalise_url(url: str) -> str:
    """An endpoint as an identity: lower-case scheme and host, no credentials, no default port,
    no trailing slash, no query."""
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


BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
"""An S3 bucket name (the S3 store and the S3 source)."""


def s3_bucket_name(value: str) -> str:
    """``value`` if it is a valid S3 bucket name, else ValueError naming it."""
    if not BUCKET_RE.match(value) or ".." in value:
        raise ValueError(f"bad S3 bucket name {value!r}")
    return value


def strip_prefix(value: str) -> str:
    """A key prefix without leading or trailing slashes."""
    return value.strip("/")


S3Bucket = Annotated[str, AfterValidator(s3_bucket_name)]
"""An S3 bucket name, checked."""
Prefix = Annotated[str, AfterValidator(strip_prefix)]
"""A store's key prefix (slashes at either end dropped)."""


# --------------------------------------------------------------------------------------------
# Models


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Tagged(Model):
    """A spec of one type among several: its ``type`` (or ``provider``) field is a Literal of
    the one name the policy knows it by, the tag of the policy's discriminated union."""

    TAG: ClassVar[str] = "type"

    @classmethod
    def type_name(cls) -> str:
        """The name the policy gives this type (``dynamodb``, ``s3``, ``aws_kms``, ...)."""
        return str(get_args(cls.model_fields[cls.TAG].annotation)[0])


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


class SourceModel(Tagged):
    """The base of a source type's policy spec (``sources/<name>/spec.py``). Its ClassVars and
    methods are what the core knows of the type; ``open()`` builds the adapter."""

    IMPLEMENTATION: ClassVar[str] = ""
    """``module:Class`` of the adapter, imported by :meth:`open` on first use (cold starts)."""
    EXPORT_STORE: ClassVar[tuple[str, str] | None] = None
    """With ``method: export``: the store type the service's export writes into, and why."""
    HAS_REGION: ClassVar[bool] = True
    """Whether the spec names a region (``region``, checked against ``residency``)."""
    USES_BLOBS: ClassVar[bool] = False
    """Its snapshots keep content-addressed blobs beside their parts (``layout.blob_key``)."""
    CHAINS: ClassVar[bool] = False
    """Its snapshots may be incremental, each resting on the one before (prune keeps chains)."""

    if TYPE_CHECKING:
        type: str

    def open(self, **options: Any) -> Source:
        """The adapter this spec describes (its module and cloud SDK load now, not before);
        ``options`` go to the adapter's ``from_spec`` (e.g. AWS credentials of a place)."""
        module, _, name = self.IMPLEMENTATION.partition(":")
        adapter: Source = getattr(importlib.import_module(module), name).from_spec(self, **options)
        return adapter

    # --- restore targets elsewhere (cloudkeep.place, cloudkeep.target) ---------------------

    PLACE_OPTIONS: ClassVar[frozenset[str]] = frozenset()
    """Which options of a :class:`~cloudkeep.place.Place` a restore target of this type takes
    (``region``, ``profile``, ``role_arn``, ``external_id``, ``project``, ``endpoint``,
    ``key_env``)."""
    WRITE_CAPACITY: ClassVar[bool] = False
    """Whether its restore writers can report the target's provisioned write capacity
    (``restore --capacity-share``)."""

    def placed(self, place: Place) -> Self:
        """This spec with ``place`` applied (the same spec when the place is empty). Raises
        UsageError for an option the type does not take, naming the options it does."""
        unknown = [name for name in place.given() if name not in self.PLACE_OPTIONS]
        if unknown:
            from_place = place_option_names(unknown)
            takes = place_option_names(sorted(self.PLACE_OPTIONS)) or "none"
            raise UsageError(f"{from_place} does not apply to a restore of a {self.type_name()} "
                             f"source (it takes: {takes})")
        update = self.place_fields(place)
        if not update:
            return self
        try:
            return type(self).model_validate({**self.model_dump(), **update})
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                                 for e in exc.errors())
            raise UsageError(f"{place_option_names(place.given())}: not a place a "
                             f"{self.type_name()} source can restore to ({problems})") from None

    def place_fields(self, place: Place) -> dict[str, Any]:
        """The policy fields ``place`` sets (default: ``region``)."""
        return {"region": place.region} if place.region is not None else {}

    def open_at(self, place: Place) -> Source:
        """The adapter for a restore at ``place`` (:meth:`placed`, then :meth:`open`)."""
        return self.placed(place).open()

    def region_name(self) -> str | None:
        """The region the spec declares (``region``), or None."""
        region = self.model_dump(include={"region"}).get("region")
        return str(region) if region is not None else None

    def runs_native_jobs(self) -> bool:
        """Whether snapshots are made by native jobs of the service (read from the policy alone,
        so a dataset that is not due needs no source client)."""
        return False

    def encrypts_parts(self) -> bool:
        """Whether cloudkeep encrypts the parts when the policy asks for encryption (it does not
        for native jobs — the service writes the data — nor for objects copied as they are)."""
        return not self.runs_native_jobs()

    def secret_envs(self) -> list[str]:
        """Environment variables that hold this source's secrets (redacted everywhere)."""
        return []

    @classmethod
    def check_line(cls, doc: Any) -> str | None:
        """What is wrong with one decoded line of a part (None: nothing)."""
        return None if isinstance(doc, dict) else "line is not a JSON object"

    @classmethod
    def item_label(cls, doc: Mapping[str, Any]) -> str:
        """How a report names the item of one line."""
        return json.dumps(doc, sort_keys=True)[:80]

    ITEM_KEYS: ClassVar[bool] = False
    """Whether the type's lines are items with a key (diff, find, history, partial restore)."""
    KEY_FORM: ClassVar[str] = ""
    """How a user writes one key of this type (``--key``), for help and error messages."""

    @classmethod
    def item_key(cls, doc: Any, recorded: Mapping[str, Any]) -> Any:
        """The key of the item one decoded line holds (or deletes), in the source's own form,
        normalised so two spellings of one key compare equal; ``recorded`` is the manifest's
        ``source``. ``None`` for a line without an item key (or a type without keys)."""
        return None

    @classmethod
    def parse_key(cls, value: Any, recorded: Mapping[str, Any]) -> Any:
        """A user's key (decoded JSON) in the normalised form :meth:`item_key` returns.
        Raises ValueError naming what is wrong."""
        raise ValueError(f"{cls.type_name()} snapshots are not addressable item by item")

    CONTINUOUS: ClassVar[str | None] = None
    """What the source needs for continuous capture (``continuous:``; docs/continuous.md);
    None: its changes cannot be captured."""

    @classmethod
    def continuous_requirements(cls) -> str | None:
        """What ``validate`` says a continuously captured dataset of this type needs (None: the
        type cannot be captured continuously)."""
        return cls.CONTINUOUS

    @classmethod
    def item_fields(cls, doc: Any, recorded: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """The attributes of the item one decoded line holds, as plain JSON-like values (numbers
        as ``Decimal``) for ``restore --where`` (``cloudkeep.where``); None for a line that
        deletes an item (or a type without items)."""
        return None

    @classmethod
    def deletes_item(cls, doc: Any) -> bool:
        """Whether one decoded line says its item was deleted (an incremental snapshot's
        deletion line) rather than holding it."""
        return False

    @classmethod
    def item_keyer(cls, recorded: Mapping[str, Any]) -> Callable[[Any], Any]:
        """:meth:`item_key` with ``recorded`` bound, for many lines of one snapshot (a type may
        prepare once what every line needs, e.g. the key attribute names)."""
        return lambda doc: cls.item_key(doc, recorded)

    # --- event-driven continuous capture (issue #21; branch s16-capturefn)

    def event_origin(self) -> str | None:
        """Where this source's change events come from, as the event handlers spell it
        (``dynamodb:<table>``, ``s3:<bucket>``, ``firestore:projects/<p>/databases/<d>``,
        ``cosmos:<database>/<container>``): a handler ingests an event into every continuous
        dataset whose source has the event's origin. None: no event-driven capture."""
        return None

    def captures_key(self, key: Any) -> bool:
        """Whether a change of the item ``key`` (normalised) belongs in this dataset's change log:
        whether a snapshot of this source reads that item (collections, prefixes, globs)."""
        return True


class StoreModel(Tagged):
    """The base of a store type's policy spec (at the end of ``stores/<name>.py``)."""

    HAS_REGION: ClassVar[bool] = True
    # s16-cold: storage classes (cloudkeep.storageclass, docs/cold-tiers.md)
    STORAGE_CLASSES: ClassVar[dict[str, str]] = {}
    """cloudkeep's classes (cool, cold, archive) → the store's own; empty: it has no classes."""
    DEFAULT_CLASS: ClassVar[str] = "default"
    """The class of an object written without one (the price table's row for it)."""
    MIN_STORAGE_DAYS: ClassVar[dict[str, int]] = {}
    """Store class → the days an object is billed for at least (deleted earlier: still billed)."""
    LIFECYCLE_MIN_DAYS: ClassVar[dict[str, int]] = {}
    """Store class → the earliest day the store's lifecycle rules may move an object there."""
    TRANSITIONS_BY: ClassVar[str] = "none"
    """Who moves parts: "lifecycle" (the store's own rules, `cloudkeep lifecycle`), "prune"
    (the pruner, on its schedule) or "none"."""
    IMPLEMENTATION: ClassVar[Any]
    """The store class; ``IMPLEMENTATION.from_spec(spec)`` builds the store (its SDK loads on
    first use, not on import)."""

    if TYPE_CHECKING:
        type: str

    def open(self) -> Store:
        """The store this spec describes."""
        store: Store = self.IMPLEMENTATION.from_spec(self)
        return store

    @abstractmethod
    def location(self) -> StoreLocation:
        """Where the store keeps its objects (two specs of one place compare equal)."""

    def locks_objects(self) -> bool:
        """Whether every object written is locked (Object Lock, blob immutability)."""
        return False

    def resolve_paths(self, resolve: Callable[[str], str]) -> Self:
        """The spec with its local paths made absolute by ``resolve`` (relative to the policy)."""
        return self

    def secret_envs(self) -> list[str]:
        """Environment variables that hold this store's secrets (redacted everywhere)."""
        return []


class UrlStoreModel(StoreModel):
    """The spec of a store type a policy can be read through by URL (``s3://``, ``gs://``,
    ``az://``): ``cloudkeep --policy s3://BUCKET/KEY``."""

    URL_SHAPE: ClassVar[str]
    """The shape of a policy URL read through this store type, e.g. ``s3://BUCKET/KEY`` (its
    scheme, then the parts that name the store before ``KEY``)."""

    @classmethod
    def for_url(cls, parts: list[str]) -> tuple[Self, str] | None:
        """The spec and key of a policy URL of its scheme (its part after ``://``, split
        on ``/``), or None when the URL has the wrong shape (see :data:`URL_SHAPE`)."""
        named = cls.URL_SHAPE.partition("://")[2].count("/")
        if len(parts) <= named or not all(parts):
            return None
        return cls.at_url(parts[:named]), "/".join(parts[named:])

    @classmethod
    @abstractmethod
    def at_url(cls, names: list[str]) -> Self:
        """The spec of the store a policy URL names (``names``: the parts before the key)."""


class KeyModel(Tagged):
    """The base of a key provider's policy spec (at the end of ``keys/<name>.py``)."""

    TAG: ClassVar[str] = "provider"
    IMPLEMENTATION: ClassVar[Any]
    """The provider class, built with the key's name and spec (its SDK loads on first use)."""

    if TYPE_CHECKING:
        provider: str

    def open(self, name: str) -> KeyProvider:
        """The key provider this spec describes, named ``name``."""
        provider: KeyProvider = self.IMPLEMENTATION(name, self)
        return provider

    def resolve_paths(self, resolve: Callable[[str], str]) -> Self:
        """The spec with its local paths made absolute by ``resolve`` (relative to the policy)."""
        return self
