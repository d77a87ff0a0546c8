"""The manifest: the record that makes a snapshot exist. Written last, create-only.

``schemas/manifest.schema.json`` in the repository is generated from :class:`Manifest`
(``python -m cloudkeep.manifest > schemas/manifest.schema.json``; a test keeps it current).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import CloudkeepError


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PartEntry(_Model):
    name: str = Field(description="file name under the snapshot's folder")
    segment: int = Field(ge=0, description="source segment the part was read from")
    index: int = Field(ge=0, description="order of the part within its segment")
    items: int = Field(ge=0)
    raw_bytes: int = Field(ge=0, description="size of the uncompressed NDJSON")
    stored_bytes: int = Field(ge=0, description="size of the object in the store")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of the stored bytes")
    key_index: str | None = Field(
        default=None, pattern=r"^[0-9a-f]{64}$",
        description="sha256 of the part's key index (`<name>.keys`: the sorted 8-byte hashes of "
        "the keys of its items; keyed by the data key when encrypted); null: no index, readers "
        "read the part")


class Totals(_Model):
    items: int = Field(ge=0)
    parts: int = Field(ge=0)
    raw_bytes: int = Field(ge=0)
    stored_bytes: int = Field(ge=0)


class WrappedKey(_Model):
    """The snapshot's data key wrapped by one key provider."""

    key: str = Field(description="the key's name in the policy that wrote the snapshot")
    provider: Literal["aws_kms", "gcp_kms", "azure_key_vault", "local"]
    key_id: str = Field(description="aws_kms key id or alias, gcp_kms key name, azure_key_vault "
                        "key URL, or a local key file's fingerprint (never the key)")
    algorithm: str = Field(description="how the provider wrapped the data key")
    wrapped_key: str = Field(description="base64 of the wrapped data key")
    region: str | None = None
    key_arn: str | None = None
    key_version: str | None = None


class Encryption(_Model):
    """Envelope encryption of the snapshot's parts (see cloudkeep.codec and cloudkeep.keys)."""

    algorithm: Literal["AES-256-GCM"] = "AES-256-GCM"
    chunk_size: int = Field(ge=1, description="plaintext bytes per authenticated chunk of a part")
    associated_data: str = Field(description="what each part's chunks are bound to")
    keys: list[WrappedKey] = Field(min_length=1, description="the data key, wrapped by each key")


class Codec(_Model):
    framing: Literal["ndjson", "opaque"] = Field(
        default="ndjson",
        description="ndjson: one item per line; opaque: files of a service's own export format "
        "(e.g. Firestore's), checked by size and sha256 only",
    )
    compression: Literal["zstd", "gzip", "none"] = Field(
        default="zstd", description="gzip: the data files of a DynamoDB export"
    )
    level: int | None = 3
    encryption: Encryption | None = Field(default=None, description="null: parts are not encrypted")


class Authentication(_Model):
    """A tag over the manifest's own content (which names its dataset, snapshot id and store);
    checked by every command that reads it. An encrypted snapshot's tag key derives from its data
    key; an unencrypted snapshot's from its own signing key, wrapped by each policy key listed in
    ``keys`` (``signing`` in the policy)."""

    algorithm: Literal["HMAC-SHA256"] = "HMAC-SHA256"
    key_derivation: str = Field(description="how the tag's key is derived (from the data key, or "
                                "from the signing key in `keys`)")
    tag: str = Field(pattern=r"^[0-9a-f]{64}$")
    keys: list[WrappedKey] | None = Field(
        default=None, min_length=1,
        description="an unencrypted snapshot's signing key, wrapped by each signing key (null: the "
        "tag key derives from the data key of `codec.encryption`)")


class Consistency(_Model):
    mode: Literal["fuzzy", "point-in-time"] = Field(
        description="fuzzy: a plain scan, items read at different moments between started_at "
        "and finished_at; point-in-time: every item as of `time`"
    )
    time: datetime | None = None


class ContentDigestEntry(_Model):
    algorithm: Literal["sha256-sum-mod-2^256"] = "sha256-sum-mod-2^256"
    value: str = Field(pattern=r"^[0-9a-f]{64}$")
    ignores: list[str] = Field(
        default_factory=list,
        description="top-level keys of each item line left out of the digest (a line then enters "
        "it re-encoded canonically without them), e.g. Firestore's update_time, which a restored "
        "copy cannot keep",
    )


class Manifest(_Model):
    """Everything needed to verify and restore a snapshot without the policy."""

    format: Literal[1] = 1
    snapshot_id: str
    dataset: str
    run_id: str
    trigger: Literal["manual", "schedule"]
    slot: datetime | None = None
    tier: str
    store: str
    source: dict[str, Any] = Field(description="source type, identity and the schema to restore")
    method: str = Field(description="how the source was read, e.g. 'scan'")
    consistency: Consistency
    started_at: datetime
    finished_at: datetime
    segments: int = Field(ge=1)
    parts: list[PartEntry]
    totals: Totals
    codec: Codec
    content_digest: ContentDigestEntry
    native: dict[str, Any] | None = Field(
        default=None,
        description="what a native job made and where (a backup ARN, snapshot ARNs and their "
        "copies, an export's ARN or operation name and output URI); retention deletes the "
        "backups and snapshots recorded here",
    )
    cloudkeep_version: str
    authentication: Authentication | None = Field(
        default=None, description="null for a snapshot neither encrypted nor signed")

    def to_bytes(self) -> bytes:
        return (self.model_dump_json(indent=2) + "\n").encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes, *, where: str) -> Manifest:
        try:
            return cls.model_validate_json(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(p) for p in first["loc"]) or "(top level)"
            raise ManifestError(
                f"manifest {where} is damaged or not a cloudkeep manifest: {loc}: {first['msg']}"
                + (f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else "")
            ) from None

    def summary(self) -> dict[str, Any]:
        """The fields ``list`` shows."""
        return {
            "dataset": self.dataset,
            "snapshot_id": self.snapshot_id,
            "ref": f"{self.dataset}@{self.snapshot_id}",
            "trigger": self.trigger,
            "tier": self.tier,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "duration_seconds": round((self.finished_at - self.started_at).total_seconds(), 3),
            "items": self.totals.items,
            "parts": self.totals.parts,
            "bytes_raw": self.totals.raw_bytes,
            "bytes_stored": self.totals.stored_bytes,
            "consistency": self.consistency.mode,
            "encrypted": self.codec.encryption is not None,
        }


class ManifestError(CloudkeepError):
    """A manifest could not be parsed."""


def json_schema() -> dict[str, Any]:
    schema = Manifest.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "cloudkeep/manifest/v1"
    return schema


if __name__ == "__main__":  # pragma: no cover - regenerates the schema file
    print(json.dumps(json_schema(), indent=2, sort_keys=True))
