"""An S3 snapshot's listing: the record of one object, what a snapshot copied, the previous listing
walked alongside the bucket's, and restore targets (``BUCKET[/PREFIX]``)."""

from __future__ import annotations

import base64
import binascii
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ...clouds.aws import BUCKET_RE
from ...errors import RestoreError

SMALL = 8 * 1024 * 1024  # objects up to this size are read once, into memory
ARCHIVE_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE"})
# Keys of a listing line a restored copy cannot keep (S3 sets them on every write): left out of
# the content digest, so a restored bucket can be compared with the manifest.
DIGEST_IGNORES = ("etag", "last_modified", "version")
# Restore drills write into ``<source bucket>/cloudkeep-drill-<token>/``; backups never read it.
DRILL_PREFIX = "cloudkeep-drill-"
HEADERS = {  # GetObject/PutObject field → the listing's ``headers`` name
    "CacheControl": "cache_control",
    "ContentDisposition": "content_disposition",
    "ContentEncoding": "content_encoding",
    "ContentLanguage": "content_language",
}


@dataclass
class BlobStats:
    """What a snapshot copied; goes into the manifest as ``source.blobs``."""

    objects: int = 0
    bytes: int = 0
    reused_objects: int = 0  # unchanged since the previous snapshot: not read, not copied
    copied_objects: int = 0  # new blobs written
    copied_bytes: int = 0
    deduplicated_objects: int = 0  # new to this dataset's listing, but the blob already existed
    hashed_bytes: int = 0  # bytes read only to compute a sha256
    skipped_archived: int = 0
    vanished: int = 0  # listed, then deleted before it could be read
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def as_dict(self) -> dict[str, int]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}


def etag_of(value: str) -> str:
    return value.strip('"')


def iso_seconds(value: datetime) -> str:
    """LastModified at second precision (HeadObject has no milliseconds; listings may)."""
    return value.replace(microsecond=0).isoformat()


def full_object_sha256(head: dict[str, Any]) -> str | None:
    """S3's full-object ChecksumSHA256 as hex, or None (absent, or a checksum of part checksums)."""
    value = head.get("ChecksumSHA256")
    if not value or "-" in value or head.get("ChecksumType") == "COMPOSITE":
        return None
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) == 32 else None


def split_target(target: str) -> tuple[str, str]:
    """``BUCKET[/PREFIX]`` → (bucket, prefix without slashes at either end)."""
    bucket, _, prefix = target.strip().partition("/")
    if not BUCKET_RE.match(bucket) or ".." in bucket:
        raise RestoreError(f"bad restore target {target!r}: expected BUCKET[/PREFIX] with a valid "
                           "S3 bucket name")
    return bucket, prefix.strip("/")


class Cursor:
    """Walks the previous listing (key order) alongside the bucket's listing."""

    def __init__(self, records: Iterator[dict[str, Any]]) -> None:
        self._records = records
        self._current: dict[str, Any] | None = None
        self._done = False

    def find(self, key: str) -> dict[str, Any] | None:
        while not self._done:
            if self._current is None:
                self._current = next(self._records, None)
                if self._current is None:
                    self._done = True
                    return None
            current_key = str(self._current.get("key", ""))
            if current_key == key:
                return self._current
            if current_key > key:
                return None
            self._current = None
        return None
