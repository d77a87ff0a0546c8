"""The policy spec of a DynamoDB source (``type: dynamodb``)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, StrictBool, StrictInt

from ...specs import SourceModel


class DynamoDBSourceSpec(SourceModel):
    """A DynamoDB table. ``method: scan`` (default) reads it by a parallel segmented Scan;
    ``export`` runs ExportTableToPointInTime into the dataset's S3 store (PITR must be on);
    ``native`` takes an on-demand backup (CreateBackup), deleted by retention."""

    IMPLEMENTATION: ClassVar[str] = "cloudkeep.sources.dynamodb:DynamoDBSource"
    EXPORT_STORE: ClassVar[tuple[str, str] | None] = (
        "s3", "ExportTableToPointInTime writes into an S3 bucket")

    type: Literal["dynamodb"]
    table: str = Field(min_length=3, max_length=255, pattern=r"^[A-Za-z0-9_.-]+$")
    region: str = Field(min_length=1)
    method: Literal["scan", "export", "native"] = "scan"
    segments: StrictInt | None = Field(default=None, ge=1, le=1_000_000)
    consistent_read: StrictBool = False

    def runs_native_jobs(self) -> bool:
        return self.method in ("export", "native")

    @classmethod
    def check_line(cls, doc: Any) -> str | None:
        if not isinstance(doc, dict) or not isinstance(doc.get("Item"), dict):
            return "line is not a DynamoDB item ({\"Item\": {...}})"
        return None

    @classmethod
    def item_label(cls, doc: Any) -> str:
        return "(a DynamoDB item)"
