"""The policy spec of a Cosmos DB source (``type: cosmos``)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, StrictBool, StrictInt

from ...specs import SourceModel


class CosmosSourceSpec(SourceModel):
    """A Cosmos DB (NoSQL API) container. The account key is read from the environment variable
    ``key_env``; without it a managed identity is used. A key never appears in the policy.
    ``verify_tls: false`` only for a local emulator's self-signed certificate. ``incremental``:
    after a full snapshot, the next ones hold only what the change feed reports as changed (a
    full one again after ``full_every`` incremental ones)."""

    IMPLEMENTATION: ClassVar[str] = "cloudkeep.sources.cosmos:CosmosSource"
    CHAINS: ClassVar[bool] = True

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

    def secret_envs(self) -> list[str]:
        return [self.key_env] if self.key_env else []

    @classmethod
    def check_line(cls, doc: Any) -> str | None:
        if not isinstance(doc, dict) or not isinstance(doc.get("partition_key"), list):
            return "line is not a Cosmos DB item ({\"item\": {...}, \"partition_key\": [...]})"
        if doc.get("delete") is True:
            return None if isinstance(doc.get("id"), str) else "deletion line without an id"
        item = doc.get("item")
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            return "line is not a Cosmos DB item ({\"item\": {\"id\": ...}, ...})"
        return None

    @classmethod
    def item_label(cls, doc: Any) -> str:
        item = doc.get("item") if isinstance(doc, dict) else None
        return f"id={item.get('id')!r}" if isinstance(item, dict) else "?"
