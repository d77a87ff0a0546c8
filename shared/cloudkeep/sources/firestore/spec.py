"""The policy spec of a Firestore source (``type: firestore``)."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar, Literal

from pydantic import Field, StrictBool, StrictInt, field_validator

from ...errors import UsageError
from ...place import Place
from ...specs import SourceModel


class FirestoreSourceSpec(SourceModel):
    """Firestore documents: some root collections (or all), with their subcollections, read at
    one point in time. ``segments`` splits each root collection into that many document-name
    ranges read in parallel (default: one per 20,000 documents). ``rewrite_references``: on
    restore, point references into the snapshot's collections at the restored copies."""

    IMPLEMENTATION: ClassVar[str] = "cloudkeep.sources.firestore:FirestoreSource"
    EXPORT_STORE: ClassVar[tuple[str, str] | None] = (
        "gcs", "Firestore's managed export writes into a Cloud Storage bucket")

    type: Literal["firestore"]
    project: str = Field(min_length=1)
    database: str = "(default)"
    collections: list[str] | None = Field(default=None, min_length=1)
    recursive: StrictBool = True
    segments: StrictInt | None = Field(default=None, ge=1, le=1000)
    rewrite_references: StrictBool = False
    method: Literal["scan", "export"] = Field(
        default="scan",
        description="export: Firestore's managed export (the Admin API's ExportDocuments) into "
        "the dataset's Cloud Storage store; the Firestore emulator has no Admin API, so export "
        "runs only against real Firestore",
    )
    region: str | None = Field(default=None, description="the database's location (for residency)")
    drill_database: str | None = Field(
        default=None, min_length=1, max_length=63, pattern=r"^[a-z][a-z0-9-]*$",
        description="restore drills write into this database (e.g. cloudkeep-drill, which "
        "infra/gcp creates), never into the source's; default: prefixed collections of the "
        "source's database")

    @field_validator("collections")
    @classmethod
    def _collection_ids(cls, value: list[str] | None) -> list[str] | None:
        for name in value or []:
            if not name or "/" in name:
                raise ValueError(f"bad collection id {name!r}: a root collection id, without '/'")
            if name.startswith("__") and name.endswith("__"):
                raise ValueError(f"bad collection id {name!r}: ids like __name__ are reserved")
        if value and len(set(value)) != len(value):
            raise ValueError("a collection is listed more than once")
        return value

    def runs_native_jobs(self) -> bool:
        return self.method == "export"

    def event_origin(self) -> str | None:
        return f"firestore:projects/{self.project}/databases/{self.database}"

    def captures_key(self, key: Any) -> bool:
        """A document a backup reads: in ``collections`` (or any root collection but a drill's
        scratch one), below it only when ``recursive``."""
        if not isinstance(key, str):
            return False
        parts = key.split("/")
        if len(parts) < 2 or len(parts) % 2 or parts[0].startswith("cloudkeep_drill_"):
            return False
        if self.collections is not None and parts[0] not in self.collections:
            return False
        return self.recursive or len(parts) == 2

    @classmethod
    def check_line(cls, doc: Any) -> str | None:
        if (not isinstance(doc, dict) or not isinstance(doc.get("name"), str)
                or not isinstance(doc.get("fields"), dict)):
            return "line is not a Firestore document ({\"name\": ..., \"fields\": {...}})"
        return None

    @classmethod
    def item_label(cls, doc: Any) -> str:
        return str(doc.get("name")) if isinstance(doc, dict) else "?"

    PLACE_OPTIONS: ClassVar[frozenset[str]] = frozenset({"project", "region"})

    def place_fields(self, place: Place) -> dict[str, Any]:
        """``--project``: the target database is in that project (the credentials are the
        environment's, e.g. GOOGLE_APPLICATION_CREDENTIALS of an account allowed there);
        ``--region``: the location it declares for residency."""
        out: dict[str, Any] = {}
        if place.project is not None:
            out["project"] = place.project
            out["region"] = None  # another project's location is not the source's
        if place.region is not None:
            if place.project is None:
                raise UsageError("--region names the location of another project's database: "
                                 "give it with --project (the source's location is the policy's)")
            out["region"] = place.region
        return out

    CONTINUOUS: ClassVar[str | None] = (
        "document triggers: a Cloud Function on google.cloud.firestore.document.v1.written for the "
        "database (old and new value); the handler's service account writes the store")
    ITEM_KEYS: ClassVar[bool] = True
    KEY_FORM: ClassVar[str] = 'a document path, e.g. "users/alice" or "users/alice/orders/o1"'

    @classmethod
    def item_key(cls, doc: Any, recorded: Mapping[str, Any]) -> Any:
        name = doc.get("name") if isinstance(doc, dict) else None
        return _relative(name) if isinstance(name, str) else None

    @classmethod
    def parse_key(cls, value: Any, recorded: Mapping[str, Any]) -> Any:
        if not isinstance(value, str):
            raise ValueError(f"a Firestore key is {cls.KEY_FORM}, as a JSON string")
        path = _relative(value)
        parts = path.split("/")
        if len(parts) % 2 or any(not p for p in parts):
            raise ValueError(f"{value!r} is not a document path (collection/document[/...])")
        return path

    @classmethod
    def item_fields(cls, doc: Any, recorded: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """The document's fields (integers and doubles as numbers, timestamps, bytes and
        references as text, maps, arrays, null), plus ``__name__``: its path."""
        fields = doc.get("fields") if isinstance(doc, dict) else None
        name = doc.get("name") if isinstance(doc, dict) else None
        if not isinstance(fields, dict) or not isinstance(name, str):
            return None
        return {k: _plain(v) for k, v in fields.items()} | {"__name__": _relative(name)}


def _plain(value: Any) -> Any:
    """One Firestore REST Value as a plain value."""
    if not isinstance(value, dict) or len(value) != 1:
        return None
    ((kind, inner),) = value.items()
    if kind in ("integerValue", "doubleValue"):
        try:
            number = Decimal(str(inner))
        except InvalidOperation:
            return None
        return number if number.is_finite() else None
    if kind == "mapValue":
        return {k: _plain(v) for k, v in ((inner or {}).get("fields") or {}).items()}
    if kind == "arrayValue":
        return [_plain(v) for v in (inner or {}).get("values") or []]
    if kind == "nullValue":
        return None
    return inner  # stringValue, booleanValue, timestampValue, bytesValue, referenceValue, geoPointValue


def _relative(name: str) -> str:
    """A document's path relative to the database (``projects/p/databases/d/documents/`` off)."""
    head, sep, tail = name.partition("/documents/")
    return tail if sep and head.startswith("projects/") else name.strip("/")
