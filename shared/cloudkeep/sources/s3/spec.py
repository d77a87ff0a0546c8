"""The policy spec of an S3 source (``type: s3``): objects copied into content-addressed blobs."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, StrictBool, StrictInt, field_validator

from ...clouds import aws
from ...specs import S3Bucket, SourceModel

if TYPE_CHECKING:
    from ...place import Place
    from ...sources import Source


class S3SourceSpec(SourceModel):
    """Objects of an S3 bucket (optionally under ``prefix``), copied into content-addressed blobs
    of the dataset's store: an object whose content did not change since the last snapshot is
    never copied again, and identical content is stored once. ``include`` / ``exclude``: globs
    (``*`` also matches ``/``) on the key relative to ``prefix`` or the full key; an object is
    backed up when it matches an ``include`` pattern (or there are none) and no ``exclude``
    pattern."""

    IMPLEMENTATION: ClassVar[str] = "cloudkeep.sources.s3:S3Source"
    USES_BLOBS: ClassVar[bool] = True

    type: Literal["s3"]
    bucket: S3Bucket
    prefix: str = ""
    include: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)
    versions: StrictBool = Field(
        default=False, description="false: the current version of each object (the only mode)"
    )
    region: str = Field(min_length=1)
    endpoint_url: str | None = None
    workers: StrictInt = Field(default=16, ge=1, le=256, description="objects copied in parallel")

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

    def encrypts_parts(self) -> bool:
        return False  # the objects are copied as they are

    def event_origin(self) -> str | None:
        return f"s3:{self.bucket}"

    def captures_key(self, key: Any) -> bool:
        """An object a backup copies: under ``prefix``, matching an ``include`` glob (if any) and
        no ``exclude`` glob, not a restore drill's scratch object (as S3Source.wanted)."""
        if not isinstance(key, str) or not key.startswith(self.prefix) \
                or key.startswith("cloudkeep-drill-"):
            return False
        rel = key[len(self.prefix):]

        def matches(pattern: str) -> bool:
            return fnmatch.fnmatchcase(rel, pattern) or fnmatch.fnmatchcase(key, pattern)

        if self.include and not any(matches(p) for p in self.include):
            return False
        return not any(matches(p) for p in self.exclude)

    @classmethod
    def check_line(cls, doc: Any) -> str | None:
        if (not isinstance(doc, dict) or not isinstance(doc.get("key"), str)
                or not isinstance(doc.get("size"), int)
                or not isinstance(doc.get("sha256"), str) or len(doc["sha256"]) != 64):
            return "line is not an S3 object record ({\"key\": ..., \"size\": ..., \"sha256\": ...})"
        return None

    @classmethod
    def item_label(cls, doc: Any) -> str:
        return str(doc.get("key")) if isinstance(doc, dict) else "?"

    PLACE_OPTIONS: ClassVar[frozenset[str]] = aws.PLACE_OPTIONS

    def open_at(self, place: Place) -> Source:
        """The adapter for a restore at ``place``: its region, and the credentials of its
        profile or assumed role (``clouds.aws.access_of``), resolved now — a profile that does not
        exist or a role that cannot be assumed fails here (exit 3), before the restore starts."""
        placed, access = self.placed(place), aws.access_of(place)
        if access is not None:
            aws.botocore_session(access, placed.region)  # cached: the adapter's clients share it
        return placed.open(access=access)

    CONTINUOUS: ClassVar[str | None] = (
        "versioning on the bucket (`cloudkeep capture` lists object versions newer than its last "
        "position; s3:ListBucketVersions, s3:GetObjectVersion) and, for the event-driven handler, "
        "event notifications (object created and removed) sent to Amazon EventBridge "
        "(serverless.yml captureBuckets routes them to the captureObjects Lambda)")
    ITEM_KEYS: ClassVar[bool] = True
    KEY_FORM: ClassVar[str] = 'an object key, as a JSON string, e.g. "invoices/2026/11.pdf"'

    @classmethod
    def item_key(cls, doc: Any, recorded: Mapping[str, Any]) -> Any:
        key = doc.get("key") if isinstance(doc, dict) else None
        return key if isinstance(key, str) else None

    @classmethod
    def parse_key(cls, value: Any, recorded: Mapping[str, Any]) -> Any:
        if not isinstance(value, str) or not value:
            raise ValueError(f"an S3 key is {cls.KEY_FORM}")
        return value

    @classmethod
    def item_fields(cls, doc: Any, recorded: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """The object's listing record: ``key``, ``size``, ``content_type``, ``storage_class``,
        ``last_modified``, ``sha256``, ``metadata.NAME``, ``tags.NAME``, ``headers.NAME``."""
        if not isinstance(doc, dict) or not isinstance(doc.get("key"), str):
            return None
        return {k: v for k, v in doc.items() if k not in ("etag", "version")}
