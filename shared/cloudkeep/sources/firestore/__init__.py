"""Firestore source: a point-in-time read of root collections (with their subcollections) by
document-name ranges, and a batched restore under a collection-name prefix.

Lines. One document per line, canonical JSON::

    {"fields": {<Firestore REST Value JSON>}, "name": "users/u1/orders/o1", "update_time": "…Z"}

``name`` is the document's path below the database root (the project and database are in the
manifest's ``source``); ``fields`` are Firestore REST ``Value`` JSON exactly as the REST API
writes them (``integerValue`` as a string, ``doubleValue`` with ``"NaN"``/``"Infinity"``/
``"-Infinity"`` as strings, ``timestampValue`` in RFC 3339 with up to nanoseconds, ``bytesValue``
in base64, ``referenceValue``, ``geoPointValue``, ``arrayValue``, ``mapValue``, ``nullValue``,
``booleanValue``, ``stringValue``). Documents are read as raw protobuf from the Firestore API,
never through the SDK's Python conversion (which refuses references to other databases), so what
is stored is what Firestore holds. Subcollections are simply documents with longer names;
"missing" parent documents (never written, but with subcollections) stay missing on restore.

Consistency. ``describe()`` takes the server's current time as ``read_time`` and every read of the
run — listing, counting, splitting, reading — is made at that time: the snapshot is point-in-time
(recorded in the manifest). Firestore serves such reads for one hour (seven days at whole minutes
with point-in-time recovery enabled), so a run must finish within the hour.

Segments. Each root collection is one ordered range of document names; a large one (more than
``DOCS_PER_SEGMENT`` documents, or ``segments`` in the policy) is split into several. Split points
come from a partition query where the service offers one; where it does not (the emulator answers
UNIMPLEMENTED), from one keys-only pass over the names at the same read time, keeping every
n-th name. Each segment pages through its range by cursor on the document name, so memory is
bounded by one page whatever the collection size.

Digest. A restored copy has new update times and, with a prefix, new names, so ``update_time`` is
left out of the content digest (``digest_ignores``), and :meth:`FirestoreSource.scan_digest`
reads a restored prefix with the prefix (and rewritten references, if any) mapped back: a
restored copy scans to the manifest's digest.

Restore. ``restore SNAPSHOT --into PREFIX`` writes each root collection ``C`` of the snapshot as
``PREFIX + C`` in the policy's project and database (``--into ""`` restores in place), same
document ids, with BatchWrite in batches of up to 500 and retries of the writes Firestore reports
as transient. It refuses a target collection that already holds documents unless
``--overwrite``. References are written as they were unless the policy's source says
``rewrite_references: true``: then references into the snapshot's collections point at the
restored copies.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from ...codec import ContentDigest, canonical_json
from ...errors import RestoreError, SourceError, SourceUnreachableError, UsageError

if TYPE_CHECKING:
    from ...manifest import Manifest
    from .spec import FirestoreSourceSpec

from .export import AdminApi, FirestoreExportJobs

log = logging.getLogger(__name__)

DEFAULT_DATABASE = "(default)"
QUERY_PAGE = 1000  # documents per RunQuery call; the next call starts after the last name
PAGE_LINES = 500  # lines per page handed to the engine
PAGE_BYTES = 1024 * 1024
DOCS_PER_SEGMENT = 20_000  # above this, a root collection is split
MAX_SEGMENTS_PER_COLLECTION = 32
WRITE_BATCH = 500  # BatchWrite accepts up to 500 writes ...
WRITE_BATCH_BYTES = 8 * 1024 * 1024  # ... in a request of at most 10 MiB
MAX_WRITE_ATTEMPTS = 8
CONNECT_BUDGET = 8.0  # seconds of retries before the first answer: then "unreachable"
RETRY_BUDGET = 120.0  # seconds of retries of transient errors once Firestore has answered
CALL_TIMEOUT = 120.0
DIGEST_IGNORES = ("update_time",)
METHOD = "query"
PROBE_COLLECTION = "cloudkeep-read-time"  # queried (empty) only to learn the server's time

# Document ids of the form __id<n>__ are numeric and sort before every string id (this is the
# smallest), so "C/<MIN_ID>" .. "C\0/<MIN_ID>" bounds every document below root collection C.
MIN_ID = "__id-9223372036854775808__"
_NUMERIC_ID = re.compile(r"^__id(-?\d+)__$")
_TIMESTAMP = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?Z$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_RETRYABLE_WRITE_CODES = {4, 8, 10, 13, 14}  # DEADLINE_EXCEEDED RESOURCE_EXHAUSTED ABORTED INTERNAL UNAVAILABLE

T = TypeVar("T")

# --------------------------------------------------------------------------------------------
# Values: raw protobuf <-> Firestore REST Value JSON (pure; the protobuf classes are passed in)


def format_timestamp(seconds: int, nanos: int) -> str:
    """RFC 3339 in UTC with 0, 3, 6 or 9 fractional digits, as the REST API writes it."""
    moment = _EPOCH + timedelta(seconds=seconds)
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
    return (moment - _EPOCH) // timedelta(seconds=1), nanos


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


# --------------------------------------------------------------------------------------------
# The source


def _after_names(names: list[str]) -> Callable[[int], Any]:
    def after(index: int) -> dict[str, Any]:
        return {"after": names[index]}

    return after


class FirestoreSource(FirestoreExportJobs):
    """Firestore documents read by queries at one read time (``method: scan``), or Firestore's
    managed export driven as a native job (``method: export``, see ``cloudkeep.sources.firestore.export``)."""

    kind = "firestore"

    def __init__(
        self,
        project: str,
        database: str = DEFAULT_DATABASE,
        *,
        collections: Sequence[str] | None = None,
        recursive: bool = True,
        segments: int | None = None,
        rewrite_references: bool = False,
        method: str = "scan",
        client: Any = None,
        admin: AdminApi | None = None,
        drill_database: str | None = None,
    ) -> None:
        self.method = method
        self.drill_database = drill_database
        self._drills: set[str] = set()  # scratch targets handed out (they live in drill_database)
        self._drill_source: FirestoreSource | None = None
        self._origin_root: str | None = None  # a drill database's source: the source's root
        self._admin = admin
        self.project = project
        self.database = database
        self.collections = list(collections) if collections else None
        self.recursive = recursive
        self.segments = segments
        self.rewrite_references = rewrite_references
        self._client = client
        self._client_lock = threading.Lock()
        self._answered = False  # set once Firestore has answered a call (see CONNECT_BUDGET)
        self._read_time: tuple[int, int] | None = None  # (seconds, nanos) of this run's reads
        self._collections_read: list[str] = []
        self._counts: dict[str, int | None] = {}
        self._ranges: list[tuple[str, str | None, str | None]] | None = None
        self.split_methods: dict[str, str] = {}  # per collection: how it was split (for logs)

    @classmethod
    def from_spec(cls, spec: FirestoreSourceSpec) -> FirestoreSource:
        return cls(spec.project, spec.database, collections=spec.collections,
                   recursive=spec.recursive, segments=spec.segments,
                   rewrite_references=spec.rewrite_references, method=spec.method,
                   drill_database=spec.drill_database)

    # ---------------------------------------------------------------- plumbing

    @property
    def client(self) -> Any:
        """The SDK client (created on first use; credentials and the emulator as the SDK finds
        them: ``FIRESTORE_EMULATOR_HOST``, else Application Default Credentials)."""
        with self._client_lock:
            if self._client is None:
                with _errors(self, "connecting"):
                    from google.cloud import firestore

                    self._client = firestore.Client(project=self.project, database=self.database)
            return self._client

    @property
    def _api(self) -> Any:
        # The SDK's own GAPIC client (the one its BulkWriter and queries use): we need raw
        # protobuf documents, which the SDK's high-level API converts to Python values lossily.
        return self.client._firestore_api

    @property
    def _metadata(self) -> Any:
        return self.client._rpc_metadata

    @property
    def database_path(self) -> str:
        return f"projects/{self.project}/databases/{self.database}"

    @property
    def root(self) -> str:
        return f"{self.database_path}/documents"

    def where(self) -> str:
        host = os.environ.get("FIRESTORE_EMULATOR_HOST")
        place = f"the Firestore emulator at {host}" if host else "Firestore"
        return f"{place} (project {self.project}, database {self.database})"

    def _call(self, doing: str, fn: Callable[[], T], *, passthrough: tuple[type[BaseException], ...] = ()) -> T:
        """``fn()`` with retries of transient errors; other errors mapped to cloudkeep errors
        (except ``passthrough`` ones, which the caller handles)."""
        backoff = _Backoff(self)
        while True:
            with _errors(self, doing, passthrough):
                try:
                    result = fn()
                except Exception as exc:
                    if _transient(exc) and backoff.wait():
                        continue
                    raise
            self._answered = True
            return result

    def _types(self) -> Any:
        from google.cloud.firestore_v1.types import document, firestore, query, write

        return _Types(document, firestore, query, write)

    # ---------------------------------------------------------------- reading

    def describe(self) -> dict[str, Any]:
        read_time = self._server_time()
        self._read_time = read_time
        collections = list(self.collections) if self.collections else self._root_collections()
        self._collections_read = collections
        self._counts = {c: self._count(c) for c in collections}
        self._ranges = None
        known = [n for n in self._counts.values() if n is not None]
        moment = (_EPOCH + timedelta(seconds=read_time[0], microseconds=read_time[1] // 1000))
        return {
            "type": "firestore",
            "project": self.project,
            "database": self.database,
            "collections": collections,
            "recursive": self.recursive,
            "read_time": format_timestamp(*read_time),
            "item_count_estimate": sum(known) if len(known) == len(collections) else None,
            "method": METHOD,
            "consistency": {"mode": "point-in-time", "time": moment.isoformat()},
            "digest_ignores": list(DIGEST_IGNORES),
        }

    def plan_segments(self, described: dict[str, Any]) -> int:
        """One segment per root collection, and more for a large one (``segments`` in the
        policy, else one per ``DOCS_PER_SEGMENT`` documents, at most 32 per collection)."""
        if self._read_time is None:
            raise SourceError("internal error: plan_segments() before describe()")
        ranges: list[tuple[str, str | None, str | None]] = []
        for collection in self._collections_read:
            count = self._counts.get(collection)
            want = self.segments or (
                1 if not count else min(MAX_SEGMENTS_PER_COLLECTION, math.ceil(count / DOCS_PER_SEGMENT))
            )
            splits = self._split_points(collection, want, count) if want > 1 else []
            if want == 1:
                self.split_methods[collection] = "whole"
            bounds: list[str | None] = [None, *splits, None]
            ranges.extend((collection, bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1))
            log.info("firestore %s: collection %s (%s documents) in %d segment(s) (%s)",
                     self.project, collection, "?" if count is None else count, len(bounds) - 1,
                     self.split_methods[collection])
        self._ranges = ranges
        return max(1, len(ranges))

    def read_segment(self, segment: int, total: int) -> Iterator[list[bytes]]:
        for lines, _ in self.read_segment_from(segment, total, None):
            yield lines

    def read_segment_from(
        self, segment: int, total: int, cursor: dict[str, Any] | None
    ) -> Iterator[tuple[list[bytes], Callable[[int], Any] | None]]:
        """Pages of one segment, each with the cursor after its i-th line: that document's
        name (reading goes on after it, in name order, at the run's read time)."""
        if self._ranges is None:
            raise SourceError("internal error: read_segment() before plan_segments()")
        if not self._ranges:  # no collection at all: one empty segment
            return
        if total != len(self._ranges):
            raise SourceError(f"internal error: {total} segments asked, {len(self._ranges)} planned")
        collection, low, high = self._ranges[segment]
        prefix = len(self.root) + 1
        after = str(cursor["after"]) if cursor and cursor.get("after") else None
        page: list[bytes] = []
        names: list[str] = []
        size = 0
        for doc in self._documents(collection, low, high, after=after):
            line = encode_document(doc, doc.name[prefix:])
            page.append(line)
            names.append(doc.name[prefix:])
            size += len(line)
            if len(page) >= PAGE_LINES or size >= PAGE_BYTES:
                yield page, _after_names(names)
                page, names, size = [], [], 0
        if page:
            yield page, _after_names(names)

    def plan_state(self) -> dict[str, Any]:
        """What a later invocation needs to read this very plan: the read time, the segments'
        name ranges."""
        if self._read_time is None or self._ranges is None:
            raise SourceError("internal error: plan_state() before plan_segments()")
        return {"read_time": list(self._read_time), "collections": list(self._collections_read),
                "ranges": [list(r) for r in self._ranges]}

    def resume_plan(self, state: dict[str, Any], segments: int) -> None:
        try:
            seconds, nanos = state["read_time"]
            ranges = [(str(c), lo, hi) for c, lo, hi in state["ranges"]]
            collections = [str(c) for c in state["collections"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise SourceError(f"{self.where()}: unreadable recorded plan: {exc}") from exc
        if max(1, len(ranges)) != segments:
            raise SourceError(f"{self.where()}: the recorded plan has {len(ranges)} ranges, "
                              f"not {segments}")
        self._read_time = (int(seconds), int(nanos))
        self._ranges = ranges
        self._collections_read = collections

    def scan_digest(self, target: str) -> tuple[int, str]:
        """(documents, content digest) of the copy restored under the prefix ``target`` (``""``:
        the source itself), read as a backup reads it with the prefix — and rewritten references,
        if the policy rewrites them — mapped back, so it equals the snapshot's digest."""
        if self._for(target) is not self:
            return self._for(target).scan_digest(target)
        _check_prefix(target, self.collections or [])
        self._read_time = self._server_time()
        if self.collections:
            names = [target + c for c in self.collections]
        else:
            names = [c for c in self._root_collections() if c.startswith(target)]
        refs = None
        if self.rewrite_references and target:
            originals = {target + c: c for c in (self.collections or [n[len(target):] for n in names])}
            refs = _reference_mapper(self.root, self._origin_root or self.root, originals)
        digest = ContentDigest(ignores=DIGEST_IGNORES)
        prefix = len(self.root) + 1
        for name in names:
            for doc in self._documents(name, None, None):
                digest.add_line(encode_document(doc, doc.name[prefix + len(target):], refs))
        return digest.count, digest.hexdigest()

    # The queries. Every read carries the run's read_time.

    def _server_time(self) -> tuple[int, int]:
        """The server's current time (microsecond precision, as reads at a time must be)."""
        t = self._types()
        query = t.query.StructuredQuery.pb()()
        query.from_.add().collection_id = PROBE_COLLECTION
        query.limit.value = 1
        request = t.firestore.RunQueryRequest.pb()(parent=self.root, structured_query=query)

        def probe() -> tuple[int, int]:
            stream = self._api.run_query(
                request=t.firestore.RunQueryRequest.wrap(request), metadata=self._metadata,
                retry=None, timeout=CALL_TIMEOUT,
            )
            try:
                for response in stream:
                    pb = t.firestore.RunQueryResponse.pb(response)
                    if pb.HasField("read_time"):
                        return pb.read_time.seconds, pb.read_time.nanos - pb.read_time.nanos % 1000
            finally:
                stream.cancel()
            raise SourceError(f"{self.where()} did not tell its time")

        return self._call("reading the server time", probe)

    def _read_time_pb(self, message: Any) -> None:
        assert self._read_time is not None
        message.read_time.seconds, message.read_time.nanos = self._read_time

    def _root_collections(self) -> list[str]:
        t = self._types()
        request = t.firestore.ListCollectionIdsRequest.pb()(parent=self.root, page_size=500)
        self._read_time_pb(request)

        def fetch() -> list[str]:
            pager = self._api.list_collection_ids(
                request=t.firestore.ListCollectionIdsRequest.wrap(request),
                metadata=self._metadata, retry=None, timeout=CALL_TIMEOUT,
            )
            return sorted(pager)

        return self._call("listing the root collections", fetch)

    def _query(
        self, collection: str, start: str | None, start_inclusive: bool, end: str | None,
        *, limit: int | None = None, keys_only: bool = False,
    ) -> Any:
        """The structured query of the documents of root collection ``collection`` (with
        subcollections if recursive) whose names are in [start, end), in name order."""
        t = self._types()
        q = t.query.StructuredQuery.pb()()
        selector = q.from_.add()
        if self.recursive:
            # A kindless all-descendants query bounded by names: the collection and everything
            # below it, as the SDK's own Query.recursive() builds it.
            selector.all_descendants = True
            start = start or f"{collection}/{MIN_ID}"
            end = end or f"{collection}\0/{MIN_ID}"
        else:
            selector.collection_id = collection
        order = q.order_by.add()
        order.field.field_path = "__name__"
        order.direction = t.query.StructuredQuery.Direction.ASCENDING
        if start is not None:
            q.start_at.values.add().reference_value = f"{self.root}/{start}"
            q.start_at.before = start_inclusive
        if end is not None:
            q.end_at.values.add().reference_value = f"{self.root}/{end}"
            q.end_at.before = True
        if limit is not None:
            q.limit.value = limit
        if keys_only:
            q.select.fields.add().field_path = "__name__"
        return q

    def _documents(
        self, collection: str, low: str | None, high: str | None, *, keys_only: bool = False,
        after: str | None = None,
    ) -> Iterator[Any]:
        """Raw documents with names in [low, high) — or (after, high) — in name order, one
        RunQuery call per page; the next page — or, after a transient error, the retry — starts
        after the last name."""
        t = self._types()
        cut = len(self.root) + 1
        start, inclusive = (after, False) if after else (low, True)
        backoff = _Backoff(self)
        while True:
            query = self._query(collection, start, inclusive, high, limit=QUERY_PAGE, keys_only=keys_only)
            request = t.firestore.RunQueryRequest.pb()(parent=self.root, structured_query=query)
            self._read_time_pb(request)
            got = 0
            with _errors(self, f"reading {collection}"):
                try:
                    stream = self._api.run_query(
                        request=t.firestore.RunQueryRequest.wrap(request), metadata=self._metadata,
                        retry=None, timeout=CALL_TIMEOUT,
                    )
                    try:
                        for response in stream:
                            doc = t.firestore.RunQueryResponse.pb(response).document
                            if not doc.name:
                                continue  # a message with only the read time
                            self._answered = True
                            backoff.progress()
                            got += 1
                            start, inclusive = doc.name[cut:], False
                            yield doc
                    finally:
                        stream.cancel()
                except Exception as exc:
                    if _transient(exc) and backoff.wait():
                        continue
                    raise
            if got < QUERY_PAGE:
                return

    def _count(self, collection: str) -> int | None:
        t = self._types()
        agg = t.firestore.RunAggregationQueryRequest.pb()(parent=self.root)
        agg.structured_aggregation_query.structured_query.CopyFrom(
            self._query(collection, None, True, None))
        aggregation = agg.structured_aggregation_query.aggregations.add()
        aggregation.alias = "n"
        aggregation.count.SetInParent()
        self._read_time_pb(agg)

        def count() -> int | None:
            for response in self._api.run_aggregation_query(
                request=t.firestore.RunAggregationQueryRequest.wrap(agg), metadata=self._metadata,
                retry=None, timeout=CALL_TIMEOUT,
            ):
                pb = t.firestore.RunAggregationQueryResponse.pb(response)
                if pb.HasField("result"):
                    return int(pb.result.aggregate_fields["n"].integer_value)
            return None

        try:
            return self._call(f"counting {collection}", count)
        except SourceUnreachableError:
            raise
        except SourceError as exc:  # e.g. a count too large for the deadline: plan without it
            log.warning("firestore: cannot count %s (%s); planning without the count", collection, exc)
            return None

    def _split_points(self, collection: str, want: int, count: int | None) -> list[str]:
        """Up to ``want - 1`` document names splitting ``collection`` into ranges."""
        try:
            points = self._partition_points(collection, want)
            self.split_methods[collection] = "partition query"
        except _PartitionQueryUnavailable as exc:
            if count is None:
                self.split_methods[collection] = f"whole (no partition query: {exc}; no count)"
                return []
            points = self._sampled_points(collection, want, count)
            self.split_methods[collection] = "document-name ranges (partition query unavailable)"
        return points

    def _partition_points(self, collection: str, want: int) -> list[str]:
        from google.api_core import exceptions

        t = self._types()
        query = t.query.StructuredQuery.pb()()
        selector = query.from_.add()
        selector.collection_id = collection
        selector.all_descendants = True  # partition queries need a collection group
        order = query.order_by.add()
        order.field.field_path = "__name__"
        order.direction = t.query.StructuredQuery.Direction.ASCENDING
        request = t.firestore.PartitionQueryRequest.pb()(
            parent=self.root, structured_query=query, partition_count=want - 1)
        self._read_time_pb(request)

        def fetch() -> list[str]:
            pager = self._api.partition_query(
                request=t.firestore.PartitionQueryRequest.wrap(request), metadata=self._metadata,
                retry=None, timeout=CALL_TIMEOUT,
            )
            return [c.values[0].reference_value for c in pager if c.values]

        try:
            cursors = self._call(f"partitioning {collection}", fetch,
                                 passthrough=(exceptions.MethodNotImplemented,))
        except exceptions.MethodNotImplemented as exc:
            raise _PartitionQueryUnavailable(exc.message) from exc
        prefix = len(self.root) + 1
        names = {c[prefix:] for c in cursors if c.startswith(self.root + "/")}
        # The collection group also holds same-named subcollections elsewhere: keep our range.
        names = {n for n in names if n.startswith(collection + "/")
                 and (self.recursive or n.count("/") == 1)}
        return sorted(names, key=name_order_key)

    def _sampled_points(self, collection: str, want: int, count: int) -> list[str]:
        """Every (count / want)-th name of one keys-only pass (at the run's read time)."""
        want = max(1, min(want, count))
        marks = sorted({round(i * count / want) for i in range(1, want)})
        points: list[str] = []
        if not marks:
            return points
        prefix = len(self.root) + 1
        for position, doc in enumerate(self._documents(collection, None, None, keys_only=True)):
            if position == marks[len(points)]:
                points.append(doc.name[prefix:])
                if len(points) == len(marks):
                    break
        return points

    # ---------------------------------------------------------------- restore

    def open_restore(self, target: str, recorded: dict[str, Any], *, overwrite: bool) -> FirestoreWriter:
        if self._for(target) is not self:
            return self._for(target).open_restore(target, recorded, overwrite=overwrite)
        collections = [str(c) for c in recorded.get("collections") or []]
        _check_prefix(target, collections)
        busy = [target + c for c in collections if self._has_documents(target + c)]
        if busy and not overwrite:
            shown = ", ".join(busy[:5]) + (f" and {len(busy) - 5} more" if len(busy) > 5 else "")
            raise RestoreError(
                f"target collection(s) {shown} in {self.where()} already hold documents; refusing "
                f"to write into them (pass --overwrite to write the snapshot's documents over them)"
            )
        refs = None
        if self.rewrite_references:
            source_root = (f"projects/{recorded.get('project', self.project)}/databases/"
                           f"{recorded.get('database', DEFAULT_DATABASE)}/documents")
            refs = _reference_mapper(source_root, self.root, {c: target + c for c in collections})
        return FirestoreWriter(self, target, refs)

    # ---------------------------------------------------------------- drills and samples

    def target_problem(self, target: str, manifest: Manifest) -> str | None:
        """A restore target is a collection-name prefix (empty: the original collections, in
        place); a managed export restores into a database instead ((default) or its id)."""
        if manifest.method == "export" and manifest.native:
            if target == "(default)" or re.fullmatch(r"[a-z][a-z0-9-]{2,61}[a-z0-9]", target):
                return None
            return ("a Firestore export restores into a database: '(default)' or a database id "
                    "(4 to 63 lowercase letters, digits or '-', starting with a letter)")
        return _prefix_problem(target, [str(c) for c in manifest.source.get("collections") or []])

    def scratch_target(self, token: str) -> str:
        """A collection-name prefix for a restore drill (its collections are deleted after it):
        in ``drill_database`` where the policy names one (then the drill never writes the
        source's database), else in the source's own database."""
        target = f"cloudkeep_drill_{token}_"
        if self.drill_database:
            self._drills.add(target)
        return target

    def _for(self, target: str) -> FirestoreSource:
        """The source that holds ``target``: a drill database's, for this source's drills."""
        if target not in self._drills or not self.drill_database:
            return self
        if self._drill_source is None:
            drill = FirestoreSource(self.project, self.drill_database, collections=self.collections,
                                    recursive=self.recursive, segments=self.segments,
                                    rewrite_references=self.rewrite_references)
            drill._origin_root = self.root
            self._drill_source = drill
        return self._drill_source

    def drop_target(self, target: str, recorded: dict[str, Any]) -> None:
        """Delete every document a restore under the prefix ``target`` wrote (subcollections
        too)."""
        if self._for(target) is not self:
            self._for(target).drop_target(target, recorded)
            return
        if not target:
            raise SourceError("refusing to delete the source's own collections")
        collections = [str(c) for c in recorded.get("collections") or []]
        _check_prefix(target, collections)
        for collection in collections:
            ref = self.client.collection(target + collection)

            def delete(ref: Any = ref) -> Any:
                return self.client.recursive_delete(ref)

            self._call(f"deleting the scratch collection {target + collection}", delete)
        log.info("deleted scratch collections %s*", target)

    def sample_check(self, lines: list[bytes]) -> list[str]:
        """Per snapshot line: ``matched``, ``changed`` (a later update time), ``deleted``, or
        ``differs`` (same update time, different content: the snapshot is wrong)."""
        t = self._types()
        names: list[str] = []
        recorded: list[dict[str, Any]] = []
        for line in lines:
            doc = json.loads(line)
            names.append(f"{self.root}/{doc['name']}")
            recorded.append(doc)
        live: dict[str, Any] = {}
        for start in range(0, len(names), 100):
            request = t.firestore.BatchGetDocumentsRequest.pb()(
                database=self.database_path, documents=sorted(set(names[start : start + 100])))

            def fetch(request: Any = request) -> dict[str, Any]:
                found: dict[str, Any] = {}
                stream = self._api.batch_get_documents(
                    request=t.firestore.BatchGetDocumentsRequest.wrap(request),
                    metadata=self._metadata, retry=None, timeout=CALL_TIMEOUT)
                for response in stream:
                    pb = t.firestore.BatchGetDocumentsResponse.pb(response)
                    if pb.WhichOneof("result") == "found":
                        found[pb.found.name] = pb.found
                return found

            live.update(self._call("reading sample documents", fetch))
        cut = len(self.root) + 1
        out = []
        for name, doc, line in zip(names, recorded, lines, strict=True):
            found = live.get(name)
            if found is None:
                out.append("deleted")
                continue
            fresh = encode_document(found, name[cut:])
            if json.loads(fresh).get("update_time") != doc.get("update_time"):
                out.append("changed")
            else:
                out.append("matched" if fresh == line else "differs")
        return out

    def _has_documents(self, collection_id: str) -> bool:
        t = self._types()
        request = t.firestore.ListDocumentsRequest.pb()(
            parent=self.root, collection_id=collection_id, page_size=1, show_missing=True)

        def probe() -> bool:
            response = self._api.list_documents(
                request=t.firestore.ListDocumentsRequest.wrap(request), metadata=self._metadata,
                retry=None, timeout=CALL_TIMEOUT,
            )
            return any(True for _ in response.documents)

        return self._call(f"checking the target collection {collection_id}", probe)


class FirestoreWriter:
    """Writes decoded documents with BatchWrite; retries the writes Firestore reports transient."""

    def __init__(self, source: FirestoreSource, prefix: str, refs: Callable[[str], str] | None) -> None:
        self.source = source
        self.prefix = prefix
        self.target = f"{source.where()}, collections prefixed {prefix!r}" if prefix else source.where()
        self._refs = refs

    def write(self, lines: list[bytes]) -> int:
        t = self.source._types()
        batch: list[Any] = []
        size = 0
        for line in lines:
            write = self._write_of(t, line)
            n = write.ByteSize()
            if batch and (len(batch) >= WRITE_BATCH or size + n > WRITE_BATCH_BYTES):
                self._commit(t, batch)
                batch, size = [], 0
            batch.append(write)
            size += n
        if batch:
            self._commit(t, batch)
        return len(lines)

    def _write_of(self, t: _Types, line: bytes) -> Any:
        doc = json.loads(line)
        name = doc["name"]
        if not isinstance(name, str) or name.count("/") % 2 != 1 or "" in name.split("/"):
            raise ValueError(f"bad document name {name!r}")
        write = t.write.Write.pb()()
        write.update.name = f"{self.source.root}/{self.prefix}{name}"
        fields = doc["fields"]
        if not isinstance(fields, dict):
            raise ValueError("'fields' is not an object")
        for key, value in fields.items():
            fill_value(write.update.fields[key], value, self._refs)
        return write

    def _commit(self, t: _Types, writes: list[Any]) -> None:
        pending = writes
        for attempt in range(MAX_WRITE_ATTEMPTS):
            request = t.firestore.BatchWriteRequest.pb()(database=self.source.database_path)
            request.writes.extend(pending)
            response = self.source._call(f"writing to {self.target}", self._sender(t, request))
            failed = [(w, s) for w, s in zip(pending, response.status, strict=False) if s.code]
            refused = [(w, s) for w, s in failed if s.code not in _RETRYABLE_WRITE_CODES]
            if refused:
                write, status = refused[0]
                raise RestoreError(
                    f"Firestore refused {len(refused)} document(s), e.g. "
                    f"{write.update.name[len(self.source.root) + 1:]}: {status.message} (code {status.code})"
                )
            if not failed:
                return
            pending = [w for w, _ in failed]
            time.sleep(min(5.0, 0.1 * (2**attempt)) * random.uniform(0.5, 1.0))
        raise RestoreError(
            f"Firestore kept {len(pending)} write(s) failing after {MAX_WRITE_ATTEMPTS} attempts "
            f"(contention or quota?)"
        )

    def _sender(self, t: _Types, request: Any) -> Callable[[], Any]:
        def send() -> Any:
            return t.firestore.BatchWriteResponse.pb(self.source._api.batch_write(
                request=t.firestore.BatchWriteRequest.wrap(request),
                metadata=self.source._metadata, retry=None, timeout=CALL_TIMEOUT,
            ))

        return send


# --------------------------------------------------------------------------------------------
# Helpers


class _Types:
    def __init__(self, document: Any, firestore: Any, query: Any, write: Any) -> None:
        self.document = document
        self.firestore = firestore
        self.query = query
        self.write = write


class _PartitionQueryUnavailable(Exception):
    pass


def _prefix_problem(prefix: str, collections: Sequence[str]) -> str | None:
    if "/" in prefix:
        return "a Firestore target is a collection-name prefix (e.g. restored_), without '/'"
    for collection in collections:
        try:
            check_collection_id(prefix + collection)
        except ValueError as exc:
            return str(exc)
    return None


def _check_prefix(prefix: str, collections: Sequence[str]) -> None:
    problem = _prefix_problem(prefix, collections)
    if problem:
        raise UsageError(f"bad restore target {prefix!r}: {problem}")


def _reference_mapper(old_root: str, new_root: str, renames: dict[str, str]) -> Callable[[str], str]:
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


def _transient(exc: BaseException) -> bool:
    from google.api_core import exceptions

    return isinstance(exc, (exceptions.ServiceUnavailable, exceptions.DeadlineExceeded,
                            exceptions.InternalServerError, exceptions.Aborted,
                            exceptions.ResourceExhausted))


class _Backoff:
    """Jittered exponential backoff within a budget: short until Firestore has answered once
    (so a wrong host or a stopped emulator fails fast), longer afterwards."""

    def __init__(self, source: FirestoreSource) -> None:
        self.source = source
        self.since: float | None = None  # first failure since the last progress
        self.attempt = 0

    def progress(self) -> None:
        self.since = None
        self.attempt = 0

    def wait(self) -> bool:
        now = time.monotonic()
        if self.since is None:
            self.since = now
        budget = RETRY_BUDGET if self.source._answered else CONNECT_BUDGET
        delay = min(10.0, 0.25 * (2**self.attempt)) * random.uniform(0.5, 1.0)
        if now - self.since + delay > budget:
            return False
        self.attempt += 1
        time.sleep(delay)
        return True


class _errors:
    """Maps SDK exceptions to cloudkeep errors, in one place for this adapter."""

    def __init__(self, source: FirestoreSource, doing: str,
                 passthrough: tuple[type[BaseException], ...] = ()) -> None:
        self.source = source
        self.doing = doing
        self.passthrough = passthrough

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is None or isinstance(exc, (SourceError, UsageError, RestoreError, *self.passthrough)):
            return
        from google.api_core import exceptions
        from google.auth import exceptions as auth_exceptions

        where = self.source.where()
        if isinstance(exc, auth_exceptions.DefaultCredentialsError):
            raise SourceUnreachableError(
                f"no Google credentials for {where} while {self.doing} (run `gcloud auth "
                f"application-default login`, or set FIRESTORE_EMULATOR_HOST for the emulator)"
            ) from exc
        if isinstance(exc, auth_exceptions.GoogleAuthError):
            raise SourceUnreachableError(f"cannot authenticate to {where} while {self.doing}: {exc}") from exc
        if isinstance(exc, exceptions.GoogleAPICallError):
            message = f"{exc.message}".strip() or type(exc).__name__
            if isinstance(exc, (exceptions.PermissionDenied, exceptions.Unauthenticated)):
                raise SourceUnreachableError(f"{where} refused access while {self.doing}: {message}") from exc
            if isinstance(exc, exceptions.NotFound):
                raise SourceUnreachableError(f"{where} not found while {self.doing}: {message}") from exc
            if _transient(exc):
                raise SourceUnreachableError(f"cannot reach {where} while {self.doing}: {message}") from exc
            raise SourceError(f"Firestore error while {self.doing} ({where}): {message}") from exc
        if isinstance(exc, exceptions.GoogleAPIError):
            raise SourceError(f"Firestore error while {self.doing} ({where}): {exc}") from exc
