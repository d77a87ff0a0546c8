"""Item keys: which item a line of a snapshot (or of a change log) holds, in one spelling.

Every item-level feature — ``diff``, ``find``, ``history``, partial restore, erasure — names items
the same way: the key in the source's own form (DynamoDB JSON of the key attributes, a Firestore
document path, a Cosmos DB id and partition key, an S3 object key), normalised by the source
type's spec (:meth:`cloudkeep.specs.SourceModel.item_key` / ``parse_key``) so that two spellings of
one key are equal, then encoded canonically (:func:`key_bytes`) and hashed (:func:`key_hash`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from .codec import canonical_json
from .errors import UsageError
from .registry import source_spec
from .specs import SourceModel

KEY_HASH_BYTES = 8
"""Bytes of sha256 kept per key in indexes (collisions only cost a part read, never a wrong item)."""
MAX_KEY_TEXT = 64 * 1024


def spec_for(recorded: Mapping[str, Any]) -> type[SourceModel]:
    """The spec class of the source type a manifest (``manifest.source``) records; a
    UsageError when the type cannot name items."""
    spec = source_spec(recorded.get("type"))
    if spec is None or not spec.ITEM_KEYS:
        raise UsageError(f"{recorded.get('type')} snapshots are not addressable item by item")
    return spec


def key_of(recorded: Mapping[str, Any], doc: Any) -> Any:
    """The normalised key of the item one decoded line holds, or None."""
    spec = source_spec(recorded.get("type"))
    return None if spec is None else spec.item_key(doc, recorded)


def parse_key(recorded: Mapping[str, Any], text: str, *, where: str = "--key") -> Any:
    """A user's key (JSON text in the source's own form) normalised; a one-line UsageError
    naming ``where`` and the form expected otherwise. A bare Firestore path or S3 key (not JSON)
    is taken as the string it is."""
    spec = spec_for(recorded)
    if len(text) > MAX_KEY_TEXT:
        raise UsageError(f"bad {where}: a key is at most {MAX_KEY_TEXT} characters")
    try:
        value: Any = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested past the stack
        value = text.strip()
        if value[:1] in ("{", "["):
            raise UsageError(f"bad {where}: {text[:80]!r} is not valid JSON "
                             f"(expected {spec.KEY_FORM})") from None
    if value is None or isinstance(value, (bool, int, float)):
        value = text.strip()  # a bare S3 key such as 2024 or true is that text, not a number
    try:
        return spec.parse_key(value, recorded)
    except ValueError as e:
        raise UsageError(f"bad {where}: {e}") from None


def key_bytes(key: Any) -> bytes:
    """The canonical encoding of a normalised key (equal keys, equal bytes)."""
    return canonical_json(key)


def key_hash(key: Any) -> bytes:
    """The first :data:`KEY_HASH_BYTES` of the sha256 of :func:`key_bytes`."""
    return hashlib.sha256(key_bytes(key)).digest()[:KEY_HASH_BYTES]
