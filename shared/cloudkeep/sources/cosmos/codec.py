"""Cosmos DB lines (pure): canonical JSON of items and deletions, partition key paths and values."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

SYSTEM_PROPERTIES = ("_rid", "_self", "_etag", "_attachments", "_ts")
UNDEFINED: dict[str, Any] = {}  # the wire form of "this document has no value at that path"


def canonical(value: object) -> bytes:
    """The one encoding of a JSON value. Strings that cannot be UTF-8 (lone surrogates) make
    the whole line fall back to ``\\u`` escapes: still one encoding per value."""
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                          allow_nan=False).encode("ascii")


def path_segments(path: str) -> list[str]:
    """``/a/b`` → ``["a", "b"]``; a segment may be quoted (``/"a b"/c``)."""
    out: list[str] = []
    i, n = 0, len(path)
    while i < n:
        if path[i] != "/":
            raise ValueError(f"bad partition key path {path!r}")
        i += 1
        if i < n and path[i] == '"':
            end = i + 1
            while end < n and path[end] != '"':
                end += 2 if path[end] == "\\" else 1
            out.append(json.loads(path[i : end + 1]))
            i = end + 1
        else:
            end = path.find("/", i)
            end = n if end < 0 else end
            out.append(path[i:end])
            i = end
    return out


def partition_key_paths(partition_key: dict[str, Any]) -> list[str]:
    """The paths of a container's ``partitionKey`` definition."""
    return [str(p) for p in partition_key.get("paths") or []]


def partition_key_value(doc: dict[str, Any], paths: list[str]) -> list[Any]:
    """The wire form of a document's partition key: one value per path, ``{}`` where missing."""
    values: list[Any] = []
    for path in paths:
        node: Any = doc
        for segment in path_segments(path):
            if isinstance(node, dict) and segment in node:
                node = node[segment]
            else:
                node = UNDEFINED
                break
        values.append(node)
    return values


def encode_item(doc: dict[str, Any], paths: list[str]) -> bytes:
    """One canonical line for a document as Cosmos DB returns it."""
    item = {k: v for k, v in doc.items() if k not in SYSTEM_PROPERTIES}
    system = {k: doc[k] for k in SYSTEM_PROPERTIES if k in doc}
    return canonical({"_cloudkeep": system, "item": item,
                      "partition_key": partition_key_value(doc, paths)})


def encode_delete(item_id: str, partition_key: list[Any], meta: dict[str, Any] | None = None) -> bytes:
    """One canonical line saying that an item was deleted (incremental snapshots only)."""
    return canonical({"_cloudkeep": meta or {}, "delete": True, "id": item_id,
                      "partition_key": partition_key})


@dataclass(frozen=True)
class Decoded:
    """A snapshot line: an item to write (``doc``), or an item to delete (``doc`` is None)."""

    id: str
    partition_key: list[Any]
    doc: dict[str, Any] | None


def decode_line(line: bytes) -> Decoded:
    """The operation one snapshot line stands for. Raises ValueError for a line that is not one."""
    value = json.loads(line)
    if not isinstance(value, dict) or not isinstance(value.get("partition_key"), list):
        raise ValueError("not a Cosmos DB line (no partition_key list)")
    if value.get("delete") is True:
        if not isinstance(value.get("id"), str):
            raise ValueError("a deletion line without an id")
        return Decoded(value["id"], value["partition_key"], None)
    item = value.get("item")
    if not isinstance(item, dict) or not isinstance(item.get("id"), str):
        raise ValueError("not a Cosmos DB item line (no item with a string id)")
    return Decoded(item["id"], value["partition_key"], item)


def sdk_partition_key(values: list[Any]) -> Any:
    """The SDK's ``partition_key=`` argument for a wire-form value."""
    from azure.cosmos.partition_key import NonePartitionKeyValue

    converted = [NonePartitionKeyValue if v == UNDEFINED and isinstance(v, dict) else v for v in values]
    return converted[0] if len(converted) == 1 else converted
