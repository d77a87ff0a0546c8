"""Small values sealed under a snapshot's data key (AES-256-GCM), for state the backup path writes
beside an encrypted snapshot.

A checkpoint records where a segment's reading continues: a source's cursor, which is an item's
key (a DynamoDB primary key, a Firestore document name). For an encrypted snapshot that key is
data, so it is stored sealed: ``{"sealed": "<base64 of nonce + ciphertext>"}``, authenticated
with what it belongs to (``aad``: the snapshot id and the segment), so a sealed value cannot be
moved to another snapshot or segment. Plain values (an unencrypted snapshot, or a checkpoint
written by an older release) pass through unchanged.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

SEALED = "sealed"
_NONCE = 12


class SealError(Exception):
    """A sealed value that does not open under this key and context (altered or moved)."""


def cursor_aad(snapshot_id: str, segment: int) -> bytes:
    return f"cloudkeep cursor {snapshot_id} segment {segment}".encode()


def plan_aad(snapshot_id: str) -> bytes:
    return f"cloudkeep plan {snapshot_id}".encode()


def seal(data_key: bytes, aad: bytes, value: Any) -> dict[str, str]:
    """``value`` (JSON) sealed under ``data_key``, bound to ``aad``."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(_NONCE)
    body = AESGCM(data_key).encrypt(nonce, json.dumps(value, sort_keys=True).encode(), aad)
    return {SEALED: base64.b64encode(nonce + body).decode()}


def is_sealed(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {SEALED} and isinstance(value[SEALED], str)


def unseal(data_key: bytes, aad: bytes, value: Any) -> Any:
    """The value :func:`seal` sealed; a plain value as it is. Raises :class:`SealError` when a
    sealed value does not open (another key, another context, altered bytes)."""
    if not is_sealed(value):
        return value
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    try:
        raw = base64.b64decode(value[SEALED], validate=True)
        plain = AESGCM(data_key).decrypt(raw[:_NONCE], raw[_NONCE:], aad)
        return json.loads(plain)
    except (ValueError, InvalidTag) as exc:
        raise SealError("a sealed checkpoint value does not open under this snapshot's key") from exc
