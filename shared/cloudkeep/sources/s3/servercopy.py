"""Copies inside S3: ``CopyObject`` up to 5 GiB, a multipart ``UploadPartCopy`` above."""

from __future__ import annotations

from typing import Any

from .errors import _errors

MULTIPART_COPY_THRESHOLD = 5 * 1024**3  # CopyObject's limit: larger objects use UploadPartCopy
COPY_PART_SIZE = 512 * 1024**2
MAX_PARTS = 10_000


def server_copy(client: Any, source: dict[str, str], etag: str, size: int, bucket: str, key: str,
                extra: dict[str, Any], *, where: str) -> None:
    """Copy an object inside S3: ``CopyObject`` up to 5 GiB, else a multipart ``UploadPartCopy``
    (parts of 512 MiB or more). Every request carries ``CopySourceIfMatch`` on ``etag``, so the
    copy is of exactly that content (or _Changed)."""
    if size <= MULTIPART_COPY_THRESHOLD:
        with _errors(f"copying {where}"):
            client.copy_object(Bucket=bucket, Key=key, CopySource=source,
                               CopySourceIfMatch=f'"{etag}"', **extra)
        return
    part_size = max(COPY_PART_SIZE, -(-size // MAX_PARTS))
    create = {k: v for k, v in extra.items() if k not in ("MetadataDirective", "TaggingDirective")}
    with _errors(f"copying {where}"):
        upload_id = client.create_multipart_upload(Bucket=bucket, Key=key, **create)["UploadId"]
    try:
        parts = []
        for number, start in enumerate(range(0, size, part_size), start=1):
            end = min(size, start + part_size) - 1
            with _errors(f"copying {where}"):
                resp = client.upload_part_copy(
                    Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number,
                    CopySource=source, CopySourceRange=f"bytes={start}-{end}",
                    CopySourceIfMatch=f'"{etag}"',
                )
            parts.append({"ETag": resp["CopyPartResult"]["ETag"], "PartNumber": number})
        with _errors(f"copying {where}"):
            client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                             MultipartUpload={"Parts": parts})
    except BaseException:
        try:
            client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        except Exception:  # noqa: BLE001 - the original error matters more
            pass
        raise
