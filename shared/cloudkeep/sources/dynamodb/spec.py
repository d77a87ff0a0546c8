"""The policy spec of a DynamoDB source (``type: dynamodb``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, StrictBool, StrictInt

from ...clouds import aws
from ...specs import SourceModel

if TYPE_CHECKING:
    from ...place import Place
    from ...sources import Source


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

    def event_origin(self) -> str | None:
        return f"dynamodb:{self.table}"  # a stream mapping is in its table's region

    @classmethod
    def check_line(cls, doc: Any) -> str | None:
        if not isinstance(doc, dict) or not isinstance(doc.get("Item"), dict):
            return "line is not a DynamoDB item ({\"Item\": {...}})"
        return None

    @classmethod
    def item_label(cls, doc: Any) -> str:
        return "(a DynamoDB item)"

    PLACE_OPTIONS: ClassVar[frozenset[str]] = aws.PLACE_OPTIONS
    WRITE_CAPACITY: ClassVar[bool] = True

    def open_at(self, place: Place) -> Source:
        """The adapter for a restore at ``place``: its region, and the credentials of its
        profile or assumed role (``clouds.aws.access_of``), resolved now — a profile that does not
        exist or a role that cannot be assumed fails here (exit 3), before the restore starts."""
        placed, access = self.placed(place), aws.access_of(place)
        if access is not None:
            aws.botocore_session(access, placed.region)  # cached: the adapter's clients share it
        return placed.open(access=access)

    CONTINUOUS: ClassVar[str | None] = (
        "a DynamoDB stream on the table with view type NEW_AND_OLD_IMAGES (or NEW_IMAGE); the "
        "backup role reads it (dynamodb:DescribeTable, DescribeStream, GetShardIterator, "
        "GetRecords); `cloudkeep capture` or the stream's Lambda handler must run at least every "
        "24 hours (a stream keeps records 24 hours)")
    ITEM_KEYS: ClassVar[bool] = True
    KEY_FORM: ClassVar[str] = 'the key attributes in DynamoDB JSON, e.g. {"pk": {"S": "user#1"}}'

    @classmethod
    def item_key(cls, doc: Any, recorded: Mapping[str, Any]) -> Any:
        return cls.item_keyer(recorded)(doc)

    @classmethod
    def item_keyer(cls, recorded: Mapping[str, Any]) -> Callable[[Any], Any]:
        names = _key_names(recorded)

        def key(doc: Any) -> Any:
            item = doc.get("Item") if isinstance(doc, dict) else None
            if not isinstance(item, dict) or not names or any(n not in item for n in names):
                return None
            return {n: _typed(item[n]) for n in names}

        return key

    @classmethod
    def parse_key(cls, value: Any, recorded: Mapping[str, Any]) -> Any:
        names = _key_names(recorded)
        if not isinstance(value, dict):
            raise ValueError(f"a DynamoDB key is a JSON object of {cls.KEY_FORM}")
        if sorted(value) != sorted(names):
            raise ValueError(f"a key of this table names exactly {', '.join(names)} "
                             f"(got {', '.join(sorted(value)) or 'nothing'})")
        out = {}
        types = {str(a.get("AttributeName")): a.get("AttributeType")
                 for a in recorded.get("attribute_definitions") or [] if isinstance(a, dict)}
        for name in names:
            typed = value[name]
            if (not isinstance(typed, dict) or len(typed) != 1
                    or next(iter(typed)) not in ("S", "N", "B")
                    or not isinstance(next(iter(typed.values())), str)):
                raise ValueError(f"key attribute {name!r} is not DynamoDB JSON "
                                 '({"S": "..."}, {"N": "..."} or {"B": "<base64>"})')
            if types.get(name) not in (None, next(iter(typed))):  # DynamoDB would refuse it
                raise ValueError(f"key attribute {name!r} is of type {types[name]} in this "
                                 f"table, not {next(iter(typed))}")
            try:
                out[name] = _typed(typed)
            except ArithmeticError as e:
                raise ValueError(f"key attribute {name!r}: {typed['N']!r} is not a number") from e
        return out

    @classmethod
    def item_fields(cls, doc: Any, recorded: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """The item's attributes: S → text, N → number, B → base64 text, BOOL, NULL → null,
        M → map, L → list, SS/NS/BS → lists."""
        item = doc.get("Item") if isinstance(doc, dict) else None
        return {k: _plain(v) for k, v in item.items()} if isinstance(item, dict) else None


def _plain(value: Any) -> Any:
    """One DynamoDB JSON attribute value as a plain value."""
    if not isinstance(value, dict) or len(value) != 1:
        return None
    ((kind, inner),) = value.items()
    if kind == "N":
        return _number(inner)
    if kind == "NS":
        return [_number(v) for v in inner]
    if kind == "NULL":
        return None
    if kind == "M":
        return {k: _plain(v) for k, v in inner.items()}
    if kind == "L":
        return [_plain(v) for v in inner]
    return inner  # S, B (base64 text), BOOL, SS, BS


def _number(text: Any) -> Any:
    try:
        return Decimal(str(text))
    except InvalidOperation:
        return None


def _key_names(recorded: Mapping[str, Any]) -> list[str]:
    """The table's key attribute names, partition key first (from the manifest's key_schema)."""
    schema = recorded.get("key_schema") or []
    order = {"HASH": 0, "RANGE": 1}
    return [str(k["AttributeName"]) for k in sorted(
        (k for k in schema if isinstance(k, dict) and "AttributeName" in k),
        key=lambda k: order.get(str(k.get("KeyType")), 2))]


def _typed(value: Any) -> Any:
    """One key attribute value, with a number in one spelling (``1.50`` and ``1.5`` are one key)."""
    if isinstance(value, dict) and set(value) == {"N"} and isinstance(value["N"], str):
        number = Decimal(value["N"])
        if not number.is_finite():
            raise InvalidOperation(value["N"])
        text = format(number.normalize(), "f")
        return {"N": text[:-2] if text.endswith(".0") else text}
    return value
