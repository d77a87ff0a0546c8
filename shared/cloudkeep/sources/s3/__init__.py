"""S3 source: a bucket's objects copied into content-addressed blobs, listed in NDJSON parts.
The adapter is :class:`S3Source` (``source.py``; the format is described there)."""

from __future__ import annotations

from ...clouds.aws import same_endpoint
from .listing import DIGEST_IGNORES, DRILL_PREFIX, BlobStats, Cursor, full_object_sha256, split_target
from .restore import S3Writer
from .servercopy import server_copy
from .source import S3Source

__all__ = ["DIGEST_IGNORES", "DRILL_PREFIX", "BlobStats", "Cursor", "S3Source", "S3Writer",
           "full_object_sha256", "same_endpoint", "server_copy", "split_target"]
