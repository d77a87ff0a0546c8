"""Firestore values and lines: raw protobuf <-> Firestore REST Value JSON, document names and
collection-id rules, reference rewriting (pure; the protobuf classes are passed in)."""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from ...codec import canonical_json
from ...errors import SourceError, UsageError

# Document ids of the form __id<n>__ are numeric and sort before every string id (this is the
# smallest), so "C/<MIN_ID>" .. "C\0/<MIN_ID>" bounds every document below root collection C.
MIN_ID = "__id-9223372036854775808__"
_NUMERIC_ID = re.compile(r"^__id(-?\d+)__$")
_TIMESTAMP = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?Z$")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def format_timestamp(seconds: int, nanos: int) -> str:
    """RFC 3339 in UTC with 0, 3, 6 or 9 fractional digits, as the REST API writes it."""
    moment = EPOCH + timedelta(seconds=seconds)
    text = (f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T"
            f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}")
    if nanos:
        if nanos % 1_000_000 == 0:
            text += f".{nanos // 1_000_000:03d}"
        elif nanos % 1000 == 0:
            text += f".{nanos // 1000:06d}"
        else:
            text += f".{nanos:09d}"
    return text + "Z"


def parse_timestamp(text: str) -> tuple[int, int]:
    """(seconds since the epoch, nanoseconds) of an RFC 3339 UTC timestamp."""
    match = _TIMESTAMP.match(text)
    if not match:
        raise ValueError(f"bad timestamp {text!r}")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    moment = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    nanos = int((match.group(7) or "").ljust(9, "0"))
    return (moment - EPOCH) // timedelta(seconds=1), nanos


def _double(value: float) -> float | str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def _undouble(value: Any) -> float:
    if isinstance(value, str):
        if value not in ("NaN", "Infinity", "-Infinity"):
            raise ValueError(f"bad doubleValue {value!r}")
        return float(value.replace("Infinity", "inf"))
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"bad doubleValue {value!r}")
    return float(value)


def encode_value(value: Any, refs: Callable[[str], str] | None = None) -> dict[str, Any]:
    """REST Value JSON of a raw protobuf ``google.firestore.v1.Value``."""
    kind = value.WhichOneof("value_type")
    if kind == "string_value":
        return {"stringValue": value.string_value}
    if kind == "integer_value":
        return {"integerValue": str(value.integer_value)}
    if kind == "double_value":
        return {"doubleValue": _double(value.double_value)}
    if kind == "boolean_value":
        return {"booleanValue": value.boolean_value}
    if kind == "null_value":
        return {"nullValue": None}
    if kind == "map_value":
        fields = value.map_value.fields
        return {"mapValue": {"fields": {k: encode_value(v, refs) for k, v in fields.items()}}
                if fields else {}}
    if kind == "array_value":
        values = value.array_value.values
        return {"arrayValue": {"values": [encode_value(v, refs) for v in values]} if values else {}}
    if kind == "timestamp_value":
        ts = value.timestamp_value
        return {"timestampValue": format_timestamp(ts.seconds, ts.nanos)}
    if kind == "bytes_value":
        return {"bytesValue": base64.b64encode(value.bytes_value).decode("ascii")}
    if kind == "reference_value":
        ref = value.reference_value
        return {"referenceValue": refs(ref) if refs else ref}
    if kind == "geo_point_value":
        # As proto3 JSON (the REST API) writes a LatLng: a coordinate of +0.0 is left out.
        point = value.geo_point_value
        return {"geoPointValue": {k: _double(v) for k, v in (("latitude", point.latitude),
                                                             ("longitude", point.longitude))
                                  if v != 0 or math.copysign(1.0, v) < 0}}
    raise SourceError(f"cannot back up a Firestore value of type {kind!r} (not a stored type)")


def fill_value(out: Any, node: Any, refs: Callable[[str], str] | None = None) -> None:
    """Set the raw protobuf Value ``out`` from REST Value JSON (the inverse of encode_value)."""
    if not isinstance(node, dict) or len(node) != 1:
        raise ValueError(f"bad Firestore value {node!r}")
    ((kind, inner),) = node.items()
    if kind == "stringValue":
        if not isinstance(inner, str):
            raise ValueError(f"bad stringValue {inner!r}")
        out.string_value = inner
    elif kind == "integerValue":
        if isinstance(inner, bool) or not isinstance(inner, (str, int)):
            raise ValueError(f"bad integerValue {inner!r}")
        out.integer_value = int(inner)
    elif kind == "doubleValue":
        out.double_value = _undouble(inner)
    elif kind == "booleanValue":
        if not isinstance(inner, bool):
            raise ValueError(f"bad booleanValue {inner!r}")
        out.boolean_value = inner
    elif kind == "nullValue":
        out.null_value = 0
    elif kind == "mapValue":
        out.map_value.SetInParent()
        for key, sub in (inner.get("fields") or {}).items():
            fill_value(out.map_value.fields[key], sub, refs)
    elif kind == "arrayValue":
        out.array_value.SetInParent()
        for sub in inner.get("values") or []:
            fill_value(out.array_value.values.add(), sub, refs)
    elif kind == "timestampValue":
        seconds, nanos = parse_timestamp(inner)
        out.timestamp_value.seconds = seconds
        out.timestamp_value.nanos = nanos
    elif kind == "bytesValue":
        out.bytes_value = base64.b64decode(inner, validate=True)
    elif kind == "referenceValue":
        if not isinstance(inner, str):
            raise ValueError(f"bad referenceValue {inner!r}")
        out.reference_value = refs(inner) if refs else inner
    elif kind == "geoPointValue":
        if not isinstance(inner, dict):
            raise ValueError(f"bad geoPointValue {inner!r}")
        out.geo_point_value.latitude = _undouble(inner.get("latitude", 0.0))
        out.geo_point_value.longitude = _undouble(inner.get("longitude", 0.0))
    else:
        raise ValueError(f"unknown Firestore value type {kind!r}")


def encode_document(doc: Any, name: str, refs: Callable[[str], str] | None = None) -> bytes:
    """The canonical line of a raw protobuf Document, under the relative ``name``."""
    return canonical_json({
        "name": name,
        "fields": {k: encode_value(v, refs) for k, v in doc.fields.items()},
        "update_time": format_timestamp(doc.update_time.seconds, doc.update_time.nanos),
    })


def name_order_key(path: str) -> tuple[tuple[int, int | bytes], ...]:
    """Firestore's order of document names: segment by segment, numeric ids (``__id7__``) first
    by number, then string ids by their UTF-8 bytes."""
    key: list[tuple[int, int | bytes]] = []
    for segment in path.split("/"):
        numeric = _NUMERIC_ID.match(segment)
        key.append((0, int(numeric.group(1))) if numeric else (1, segment.encode("utf-8")))
    return tuple(key)


def check_collection_id(collection_id: str) -> None:
    """Raise ValueError unless ``collection_id`` is a valid root collection id."""
    if not collection_id or "/" in collection_id:
        raise ValueError(f"bad collection id {collection_id!r}: it must be non-empty, without '/'")
    if collection_id in (".", "..") or (collection_id.startswith("__") and collection_id.endswith("__")):
        raise ValueError(f"bad collection id {collection_id!r}: reserved by Firestore")
    if len(collection_id.encode("utf-8")) > 1500:
        raise ValueError(f"bad collection id {collection_id[:40]!r}…: longer than 1,500 bytes")



def prefix_problem(prefix: str, collections: Sequence[str]) -> str | None:
    """Why ``prefix`` cannot prefix ``collections`` as restore targets (None: it can)."""
    if "/" in prefix:
        return "a Firestore target is a collection-name prefix (e.g. restored_), without '/'"
    for collection in collections:
        try:
            check_collection_id(prefix + collection)
        except ValueError as exc:
            return str(exc)
    return None


def check_prefix(prefix: str, collections: Sequence[str]) -> None:
    """Raise UsageError unless ``prefix`` is a valid restore target for ``collections``."""
    problem = prefix_problem(prefix, collections)
    if problem:
        raise UsageError(f"bad restore target {prefix!r}: {problem}")


def reference_mapper(old_root: str, new_root: str, renames: dict[str, str]) -> Callable[[str], str]:
    """Rewrites references to documents below ``old_root/<C>`` into ``new_root/<renames[C]>``."""
    head = old_root + "/"

    def rewrite(ref: str) -> str:
        if not ref.startswith(head):
            return ref
        rest = ref[len(head):]
        first, sep, tail = rest.partition("/")
        if first not in renames:
            return ref
        return f"{new_root}/{renames[first]}{sep}{tail}"

    return rewrite
