"""S3 event notifications (object created / removed) as change records, and the capture of one
object version's content into the dataset's blobs.

An event names a bucket, a key (URL-encoded, ``+`` for a space), the version it created (on a
versioned bucket) and a ``sequencer``: a hex token that orders the events of one key. The S3
notification form (``Records[].s3``, also what SNS or SQS deliver) and the EventBridge form
(``detail-type: Object Created | Object Deleted``) are both understood.

The item line of a captured version is the listing record a snapshot writes
(:meth:`S3Source._record`): the content goes create-only into ``<dataset>/blobs/<sha256>``
exactly as a snapshot's copy does (an existing blob is the same content and is left as it is).
"""

from __future__ import annotations

import hashlib
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ... import layout
from ...codec import HashingReader
from .errors import _errors, _Vanished
from .listing import SMALL, etag_of

if TYPE_CHECKING:
    from .source import S3Source

SEQUENCER_WIDTH = 32  # S3 sequencers are hex; left-padded they compare as text (per key)
MAX_KEY = 1024


@dataclass(frozen=True)
class ObjectEvent:
    """One object event: ``created`` (a new version) or not (removed: a delete, or a delete
    marker on a versioned bucket)."""

    bucket: str
    key: str
    created: bool
    version: str | None
    sequencer: str
    time: datetime
    name: str  # the event's own name, for logs
    marker: bool = False  # a removal that created a delete marker (the object is hidden)

    @property
    def sequence(self) -> str:
        """The event time (milliseconds since the epoch, zero-padded) and the padded sequencer:
        sorts as text in the order S3 applied the writes of one key."""
        millis = int(self.time.timestamp() * 1000)
        return f"{millis:015d}-{self.sequencer.lower().rjust(SEQUENCER_WIDTH, '0')}"


class BadEventError(ValueError):
    """A notification that is not an S3 object event (the message says why)."""


def _time(text: Any) -> datetime:
    try:
        moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        raise BadEventError(f"bad event time {str(text)[:40]!r}") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _key(raw: Any, *, encoded: bool) -> str:
    if not isinstance(raw, str) or not raw:
        raise BadEventError("the event names no object key")
    key = urllib.parse.unquote_plus(raw) if encoded else raw
    if len(key.encode("utf-8")) > MAX_KEY:
        raise BadEventError("an object key longer than 1,024 bytes")
    return key


def _sequencer(raw: Any) -> str:
    text = str(raw or "0")
    if len(text) > SEQUENCER_WIDTH or any(c not in "0123456789abcdefABCDEF" for c in text):
        raise BadEventError(f"bad sequencer {text[:40]!r}")
    return text


def parse_events(event: Mapping[str, Any]) -> Iterator[ObjectEvent]:
    """The object events of one notification (S3's ``Records`` form, or one EventBridge event).
    Test events (``s3:TestEvent``) yield nothing. Raises BadEventError for anything else."""
    if event.get("Event") == "s3:TestEvent":
        return
    if "detail-type" in event:
        detail = event.get("detail")
        kind = event.get("detail-type")
        if not isinstance(detail, Mapping) or kind not in ("Object Created", "Object Deleted"):
            raise BadEventError(f"not an S3 object event (detail-type {str(kind)[:40]!r})")
        obj = detail.get("object") if isinstance(detail.get("object"), Mapping) else {}
        bucket = (detail.get("bucket") or {}).get("name") if isinstance(detail.get("bucket"), Mapping) else None
        if not isinstance(bucket, str) or not isinstance(obj, Mapping):
            raise BadEventError("an S3 event without a bucket or object")
        marker = detail.get("deletion-type") == "Delete Marker Created"
        yield ObjectEvent(bucket, _key(obj.get("key"), encoded=False), kind == "Object Created",
                          obj.get("version-id") or None, _sequencer(obj.get("sequencer")),
                          _time(event.get("time")), str(kind), marker)
        return
    records = event.get("Records")
    if not isinstance(records, list):
        raise BadEventError("not an S3 notification (no Records)")
    for record in records:
        if not isinstance(record, Mapping) or not isinstance(record.get("s3"), Mapping):
            raise BadEventError("a record without its s3 part")
        name = str(record.get("eventName", ""))
        if name.startswith("ObjectCreated:"):
            created = True
        elif name.startswith("ObjectRemoved:"):
            created = False
        else:
            continue  # restores, replication, lifecycle transitions, tagging: no new version
        body = record["s3"]
        bucket = (body.get("bucket") or {}).get("name") if isinstance(body.get("bucket"), Mapping) else None
        obj = body.get("object") if isinstance(body.get("object"), Mapping) else None
        if not isinstance(bucket, str) or obj is None:
            raise BadEventError("a record without its bucket or object")
        yield ObjectEvent(bucket, _key(obj.get("key"), encoded=True), created,
                          obj.get("versionId") or None, _sequencer(obj.get("sequencer")),
                          _time(record.get("eventTime")), name,
                          name == "ObjectRemoved:DeleteMarkerCreated")


def capture_version(source: S3Source, key: str, version: str | None) -> dict[str, Any] | None:
    """Copy one object version's content into the dataset's blobs (create-only) and return its
    listing record — the line a snapshot writes for it. None when the version is gone (deleted
    before it could be read: a later event says so). Raises SourceError for an archived object."""
    assert source.store is not None and source.dataset is not None
    params: dict[str, Any] = {"Bucket": source.bucket, "Key": key}
    if version and version != "null":
        params["VersionId"] = version
    where = f"s3://{source.bucket}/{key}"
    try:
        with _errors(f"reading {where}"):
            resp = dict(source.client.get_object(**params))
        storage_class = resp.get("StorageClass") or "STANDARD"
        size = int(resp["ContentLength"])
        if size <= SMALL:
            with _errors(f"reading {where}"):
                body = resp["Body"].read()
            sha = hashlib.sha256(body).hexdigest()
            source._put_blob(sha, body, size)
            return source._record(key, resp, sha, storage_class)
        digest = hashlib.sha256()
        with _errors(f"reading {where}"):
            while chunk := resp["Body"].read(1 << 20):
                digest.update(chunk)
        sha = digest.hexdigest()
        if source.store.stat(layout.blob_key(source.dataset, sha)) is None:
            params["IfMatch"] = f'"{etag_of(resp["ETag"])}"'
            with _errors(f"reading {where}"):
                again = source.client.get_object(**params)
            reader = HashingReader(again["Body"])
            source._put_blob(sha, reader, size, check=reader)
        return source._record(key, resp, sha, storage_class)
    except _Vanished:
        return None


def still_there(source: S3Source, key: str) -> bool:
    """Whether ``key`` has a current version (HeadObject): after a version was deleted for good,
    an older or newer version may still be the object."""
    try:
        with _errors(f"reading s3://{source.bucket}/{key}"):
            source.client.head_object(Bucket=source.bucket, Key=key)
        return True
    except _Vanished:
        return False
