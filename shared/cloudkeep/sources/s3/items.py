"""Item by item in a restore target (``BUCKET[/PREFIX]``): objects deleted by key, and read back
as listing records (the snapshot's line of an object) to compare with a snapshot's."""

from __future__ import annotations

import hashlib
from typing import Any

from ...codec import canonical_json
from ...errors import SourceError
from .errors import _errors, _Vanished
from .listing import HEADERS, etag_of, full_object_sha256, iso_seconds

DELETE_BATCH = 1000  # DeleteObjects takes at most 1,000 keys a request


def target_key(prefix: str, key: str) -> str:
    """The object key in the target of the snapshot's object ``key``."""
    return f"{prefix}/{key}" if prefix else key


def delete_objects(client: Any, bucket: str, prefix: str, keys: list[str]) -> None:
    """Delete these objects (snapshot keys, under ``prefix``); an absent one is no error."""
    unique = list(dict.fromkeys(target_key(prefix, k) for k in keys))
    for start in range(0, len(unique), DELETE_BATCH):
        chunk = unique[start : start + DELETE_BATCH]
        with _errors(f"deleting objects of s3://{bucket}"):
            resp = client.delete_objects(Bucket=bucket, Delete={
                "Objects": [{"Key": k} for k in chunk], "Quiet": True})
        errors = resp.get("Errors") or []
        if errors:
            first = errors[0]
            raise _errors_refused(bucket, len(errors), first)


def _errors_refused(bucket: str, count: int, first: dict[str, Any]) -> Exception:
    return SourceError(f"S3 refused to delete {count} object(s) of s3://{bucket}, e.g. "
                       f"{first.get('Key')!r}: {first.get('Code')} {first.get('Message', '')}".rstrip())


def live_record(client: Any, bucket: str, prefix: str, key: str) -> bytes | None:
    """The listing line (as a snapshot holds it) of the target's object for the snapshot's
    ``key``, or None when there is none. Its sha256 comes from S3's full-object checksum where
    S3 has one, else from reading the object once."""
    where = f"s3://{bucket}/{target_key(prefix, key)}"
    name = target_key(prefix, key)
    try:
        with _errors(f"reading {where}"):
            head = dict(client.head_object(Bucket=bucket, Key=name, ChecksumMode="ENABLED"))
        sha256 = full_object_sha256(head) or _hash(client, bucket, name, etag_of(head["ETag"]), where)
        version = head.get("VersionId")
        params: dict[str, Any] = {"Bucket": bucket, "Key": name}
        if version and version != "null":
            params["VersionId"] = version
        with _errors(f"reading the tags of {where}"):
            tagset = client.get_object_tagging(**params).get("TagSet", [])
    except _Vanished:
        return None
    return canonical_json({
        "key": key,
        "version": version,
        "size": int(head["ContentLength"]),
        "etag": etag_of(head["ETag"]),
        "last_modified": iso_seconds(head["LastModified"]),
        "sha256": sha256,
        "content_type": head.get("ContentType"),
        "metadata": dict(head.get("Metadata") or {}),
        "headers": {name_: head[f] for f, name_ in HEADERS.items() if head.get(f)},
        "tags": {t["Key"]: t["Value"] for t in tagset},
        "storage_class": head.get("StorageClass") or "STANDARD",
    })


def _hash(client: Any, bucket: str, key: str, etag: str, where: str) -> str:
    """sha256 of the object's content (at ``etag``), streamed."""
    digest = hashlib.sha256()
    with _errors(f"reading {where}"):
        body = client.get_object(Bucket=bucket, Key=key, IfMatch=f'"{etag}"')["Body"]
        while chunk := body.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
