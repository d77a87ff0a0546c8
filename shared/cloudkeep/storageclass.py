"""Cold tiers: cloudkeep's own storage classes and a tier's ``transition`` list (s16-cold).

A tier may move its snapshots' parts to colder, cheaper storage as they age::

    transition: [{after: 30d, to: cold}, {after: 180d, to: archive}]

cloudkeep names three classes, coldest last: ``cool`` (infrequent access, read at once), ``cold``
(rarely read, read at once) and ``archive`` (offline: a read needs a rehydration that takes hours).
Each store type maps them to its own classes (its spec's ``STORAGE_CLASSES``):

=========  ==============  ==========  ================
class      S3              GCS         Azure Blob
=========  ==============  ==========  ================
cool       STANDARD_IA     NEARLINE    Cool
cold       GLACIER_IR      COLDLINE    Cold
archive    DEEP_ARCHIVE    ARCHIVE     Archive
=========  ==============  ==========  ================

The file store has no classes (a transition there is ignored; ``validate`` warns). Only parts
move: manifests, records and the S3 source's shared blobs stay in the store's default class, so
listing, planning and verification records never wait for a rehydration.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import Field, field_validator, model_validator

from .specs import Duration, Model, format_duration

CLASSES = ("cool", "cold", "archive")
"""cloudkeep's storage classes, warmest first."""

ClassName = Literal["cool", "cold", "archive"]


class Transition(Model):
    """Move a snapshot's parts to the colder class ``to`` once the snapshot is ``after`` old
    (counted from its capture time)."""

    after: Duration = Field(description="age of the snapshot (from its capture time), e.g. 30d")
    to: ClassName = Field(description="cool, cold or archive (each store maps them to its own "
                          "classes: docs/cold-tiers.md)")


def check_transitions(value: list[Transition]) -> list[Transition]:
    """A tier's transitions: ages strictly increasing and classes strictly colder, in order."""
    for before, after in zip(value, value[1:], strict=False):
        if after.after <= before.after:
            raise ValueError(
                f"transition to {after.to} after {format_duration(after.after)} must come later "
                f"than the one before it (after {format_duration(before.after)}): list them "
                "oldest last")
        if CLASSES.index(after.to) <= CLASSES.index(before.to):
            raise ValueError(
                f"transition to {after.to} after {format_duration(after.after)} is not colder "
                f"than {before.to}: classes go cool, cold, archive")
    return value


def class_at(transitions: list[Transition], age: timedelta) -> str | None:
    """cloudkeep's class a snapshot of ``age`` belongs in (None: the store's default class)."""
    current = None
    for step in transitions:
        if age >= step.after:
            current = step.to
    return current


def colder(a: str | None, b: str | None) -> bool:
    """Whether cloudkeep class ``a`` is colder than ``b`` (None: the default class)."""
    def rank(name: str | None) -> int:
        return CLASSES.index(name) if name in CLASSES else -1

    return rank(a) > rank(b)


class Pricing(Model):
    """A policy's overrides of the price table in the repository (``cloudkeep/prices.json``;
    docs/cold-tiers.md): what one GB stored for a month costs, per store type and storage class.
    Prices not given here come from the table."""

    currency: str | None = Field(default=None, min_length=3, max_length=3, pattern=r"^[A-Z]{3}$",
                                 description="ISO 4217 code of every price given here (default: "
                                 "the table's, USD)")
    storage_gb_month: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="store type → storage class → price of one GB-month, e.g. "
        "{s3: {STANDARD: 0.021, DEEP_ARCHIVE: 0.0018}}")

    @field_validator("storage_gb_month", mode="before")
    @classmethod
    def _numbers(cls, value: object) -> object:
        """Prices are numbers as written: ``true`` or ``"0.1"`` are refused, not coerced."""
        if isinstance(value, dict):
            for store_type, prices in value.items():
                for name, price in (prices.items() if isinstance(prices, dict) else ()):
                    if isinstance(price, bool) or not isinstance(price, int | float):
                        raise ValueError(f"{store_type}.{name}: a price must be a number from 0 "
                                         f"to 1000000, got {price!r}")
        return value

    @model_validator(mode="after")
    def _sane(self) -> Pricing:
        for store_type, prices in self.storage_gb_month.items():
            for name, price in prices.items():
                if not name or price < 0 or price != price or price > 1_000_000:
                    raise ValueError(
                        f"storage_gb_month.{store_type}.{name}: a price must be a number "
                        "from 0 to 1000000")
        return self
