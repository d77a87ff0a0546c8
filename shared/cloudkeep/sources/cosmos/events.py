"""Documents from the Azure Functions Cosmos DB trigger (the change feed, latest-version mode)
as change records (pure).

The trigger hands over a batch of documents, each as the change feed returns it: the item with
its system properties (``_rid``, ``_self``, ``_etag``, ``_attachments``, ``_ts``) and ``_lsn``,
the log sequence number of the write. The line is what the scan reader writes
(:func:`~cloudkeep.sources.cosmos.codec.encode_item`: ``_lsn`` is not part of a stored item, so
it is dropped); the event time is ``_ts`` (seconds) and the order within the container is
(``_ts``, ``_lsn``). Latest-version mode reports no deletes: an item deleted between two
snapshots is restored by ``--at`` as it last was (docs/continuous-setup.md).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .codec import canonical, encode_item, partition_key_value

CHANGE_FEED_ONLY = ("_lsn", "_metadata")  # in a change-feed document, never in a stored item
MAX_DOCUMENT_BYTES = 4 * 1024 * 1024  # Cosmos DB items are at most 2 MB


@dataclass(frozen=True)
class DocumentChange:
    """One document version from the trigger."""

    id: str
    partition_key: list[Any]
    time: datetime
    sequence: str
    line: bytes


class BadDocumentError(ValueError):
    """A trigger document that is not a Cosmos DB item (the message says why)."""


def to_change(doc: Any, paths: list[str]) -> DocumentChange:
    """The change of one trigger document (a dict, or its JSON text). ``paths``: the container's
    partition key paths."""
    if isinstance(doc, (str, bytes)):
        if len(doc) > MAX_DOCUMENT_BYTES:
            raise BadDocumentError("a document larger than 4 MB")
        try:
            doc = json.loads(doc)
        except ValueError:
            raise BadDocumentError("a document that is not JSON") from None
    if not isinstance(doc, Mapping) or not isinstance(doc.get("id"), str):
        raise BadDocumentError("a document without a string id")
    ts, lsn = doc.get("_ts"), doc.get("_lsn", 0)
    if isinstance(ts, bool) or not isinstance(ts, int) or ts < 0:
        raise BadDocumentError(f"document {doc['id'][:80]!r} has no _ts")
    if isinstance(lsn, bool) or not isinstance(lsn, int) or lsn < 0:
        raise BadDocumentError(f"document {doc['id'][:80]!r} has a bad _lsn")
    item = {k: v for k, v in doc.items() if k not in CHANGE_FEED_ONLY}
    line = encode_item(item, paths)
    if len(line) > MAX_DOCUMENT_BYTES:
        raise BadDocumentError(f"document {doc['id'][:80]!r} is larger than 4 MB")
    pk = partition_key_value(item, paths)
    tag = hashlib.sha256(canonical([doc["id"], pk])).hexdigest()[:16]
    return DocumentChange(id=doc["id"], partition_key=pk,
                          time=datetime.fromtimestamp(ts, UTC),
                          sequence=f"{ts:012d}-{lsn:020d}-{tag}", line=line)
