"""Firestore reading: the connection (raw protobuf through the SDK's GAPIC client, retries of
transient errors within a budget) and the queries of a backup — the server's time, root
collections, counts, split points, and documents by name range — all at the run's read time,
with the segment plan a later invocation resumes."""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from ...capabilities import Description
from ...clouds.gcp import translating
from ...errors import SourceError, SourceUnreachableError
from ...retry import Backoff
from .codec import MIN_ID, encode_document, name_order_key
from .errors import PartitionQueryUnavailable, errors, transient

log = logging.getLogger(__name__)

DEFAULT_DATABASE = "(default)"
QUERY_PAGE = 1000  # documents per RunQuery call; the next call starts after the last name
PAGE_LINES = 500  # lines per page handed to the engine
PAGE_BYTES = 1024 * 1024
DOCS_PER_SEGMENT = 20_000  # above this, a root collection is split
MAX_SEGMENTS_PER_COLLECTION = 32
CONNECT_BUDGET = 8.0  # seconds of retries before the first answer: then "unreachable"
RETRY_BUDGET = 120.0  # seconds of retries of transient errors once Firestore has answered
CALL_TIMEOUT = 120.0
PROBE_COLLECTION = "cloudkeep-read-time"  # queried (empty) only to learn the server's time

T = TypeVar("T")


class Types:
    """The SDK's protobuf modules (imported on first use)."""

    def __init__(self, document: Any, firestore: Any, query: Any, write: Any) -> None:
        self.document = document
        self.firestore = firestore
        self.query = query
        self.write = write


def _after_names(names: list[str]) -> Callable[[int], Any]:
    def after(index: int) -> dict[str, Any]:
        return {"after": names[index]}

    return after


class FirestoreReader:
    """The connection to one Firestore database and the reads of a backup (a base of
    :class:`~cloudkeep.sources.firestore.FirestoreSource`)."""

    def __init__(self, project: str, database: str = DEFAULT_DATABASE, *,
                 collections: Sequence[str] | None = None, recursive: bool = True,
                 segments: int | None = None, client: Any = None) -> None:
        self.project = project
        self.database = database
        self.collections = list(collections) if collections else None
        self.recursive = recursive
        self.segments = segments
        self._client = client
        self._client_lock = threading.Lock()
        self._answered = False  # set once Firestore has answered a call (see CONNECT_BUDGET)
        self._read_time: tuple[int, int] | None = None  # (seconds, nanos) of this run's reads
        self._collections_read: list[str] = []
        self._counts: dict[str, int | None] = {}
        self._ranges: list[tuple[str, str | None, str | None]] | None = None
        self.split_methods: dict[str, str] = {}  # per collection: how it was split (for logs)

    # ---------------------------------------------------------------- plumbing

    @property
    def client(self) -> Any:
        """The SDK client (created on first use; credentials and the emulator as the SDK finds
        them: ``FIRESTORE_EMULATOR_HOST``, else Application Default Credentials)."""
        with self._client_lock:
            if self._client is None:
                with self._errors("connecting"):
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


    def _errors(self, doing: str, passthrough: tuple[type[BaseException], ...] = ()) -> translating:
        return errors(self.where(), doing, passthrough)

    def _backoff(self) -> Backoff:
        """Jittered exponential backoff within a budget: short until Firestore has answered once
        (so a wrong host or a stopped emulator fails fast), longer afterwards."""
        return Backoff(None, base=0.25, cap=10.0,
                       budget=lambda: RETRY_BUDGET if self._answered else CONNECT_BUDGET)

    def _call(self, doing: str, fn: Callable[[], T], *, passthrough: tuple[type[BaseException], ...] = ()) -> T:
        """``fn()`` with retries of transient errors; other errors mapped to cloudkeep errors
        (except ``passthrough`` ones, which the caller handles)."""
        backoff = self._backoff()
        while True:
            with self._errors(doing, passthrough):
                try:
                    result = fn()
                except Exception as exc:
                    if transient(exc) and backoff.wait():
                        continue
                    raise
            self._answered = True
            return result

    def _types(self) -> Any:
        from google.cloud.firestore_v1.types import document, firestore, query, write

        return Types(document, firestore, query, write)

    # ---------------------------------------------------------------- segments

    def plan_segments(self, described: Description | dict[str, Any]) -> int:
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

    # ---------------------------------------------------------------- the queries

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
        backoff = self._backoff()
        while True:
            query = self._query(collection, start, inclusive, high, limit=QUERY_PAGE, keys_only=keys_only)
            request = t.firestore.RunQueryRequest.pb()(parent=self.root, structured_query=query)
            self._read_time_pb(request)
            got = 0
            with self._errors(f"reading {collection}"):
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
                            backoff.reset()
                            got += 1
                            start, inclusive = doc.name[cut:], False
                            yield doc
                    finally:
                        stream.cancel()
                except Exception as exc:
                    if transient(exc) and backoff.wait():
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
        except PartitionQueryUnavailable as exc:
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
            raise PartitionQueryUnavailable(exc.message) from exc
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
