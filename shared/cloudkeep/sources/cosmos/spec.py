"""The policy spec of a Cosmos DB source (``type: cosmos``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import Field, StrictBool, StrictInt

from ...errors import UsageError
from ...place import Place
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

    def event_origin(self) -> str | None:
        return f"cosmos:{self.database}/{self.container}"

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

    PLACE_OPTIONS: ClassVar[frozenset[str]] = frozenset({"endpoint", "key_env", "region"})

    def place_fields(self, place: Place) -> dict[str, Any]:
        """``--endpoint``: another account (its region unknown unless ``--region`` says it);
        ``--key-env``: the environment variable holding that account's key, which must be set
        (the key itself is never an option)."""
        out: dict[str, Any] = {}
        if place.endpoint is not None:
            out["endpoint"] = place.endpoint
            out["region"] = None
        if place.key_env is not None:
            if not os.environ.get(place.key_env):
                raise UsageError(f"--key-env {place.key_env}: that environment variable is not set "
                                 "(it must hold the target account's key)")
            out["key_env"] = place.key_env
        if place.region is not None:
            if place.endpoint is None:
                raise UsageError("--region names the region of another Cosmos DB account: give it "
                                 "with --endpoint (the source account's region is the policy's)")
            out["region"] = place.region
        return out

    CONTINUOUS: ClassVar[str | None] = (
        "the container's change feed in all-versions-and-deletes mode (continuous backup on the "
        "account and a change feed retention on the container: the latest-version feed lists no "
        "deletes); `cloudkeep capture` reads it with the account key. The Cosmos DB trigger "
        "handler reads the latest-version feed: its log records a gap per snapshot interval "
        "(no deletes), so `restore --at` refuses moments it captured")
    ITEM_KEYS: ClassVar[bool] = True
    KEY_FORM: ClassVar[str] = 'the id and partition key, e.g. {"id": "o1", "partition_key": "tenant-a"}'

    @classmethod
    def item_key(cls, doc: Any, recorded: Mapping[str, Any]) -> Any:
        if not isinstance(doc, dict) or not isinstance(doc.get("partition_key"), list):
            return None
        item = doc.get("item")
        item_id = doc.get("id") if doc.get("delete") is True else (
            item.get("id") if isinstance(item, dict) else None)
        if not isinstance(item_id, str):
            return None
        return {"id": item_id, "partition_key": doc["partition_key"]}

    @classmethod
    def deletes_item(cls, doc: Any) -> bool:
        return isinstance(doc, dict) and doc.get("delete") is True

    @classmethod
    def parse_key(cls, value: Any, recorded: Mapping[str, Any]) -> Any:
        if not isinstance(value, dict) or not isinstance(value.get("id"), str) \
                or "partition_key" not in value or set(value) != {"id", "partition_key"}:
            raise ValueError(f"a Cosmos DB key is {cls.KEY_FORM}")
        pk = value["partition_key"]
        return {"id": value["id"], "partition_key": pk if isinstance(pk, list) else [pk]}

    @classmethod
    def item_fields(cls, doc: Any, recorded: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """The item's properties as Cosmos DB holds them (nested JSON); None for a deletion."""
        if not isinstance(doc, dict) or doc.get("delete") is True:
            return None
        item = doc.get("item")
        return item if isinstance(item, dict) else None
