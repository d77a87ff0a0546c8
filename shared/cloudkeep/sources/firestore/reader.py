"""Firestore reading: the connection (raw protobuf through the SDK's GAPIC client, retries of
transient errors within a budget) and the queries of a backup — the server's time, root
collections, documents by name range — all at the run's read time."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from ...clouds.gcp import translating
from ...errors import SourceError
from ...retry import Backoff
from .codec import MIN_ID
from .errors import errors, transient

DEFAULT_DATABASE = "(default)"
QUERY_PAGE = 1000  # documents per RunQuery call; the next call starts after the last name
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


class FirestoreReader:
    """The connection to one Firestore database and its queries (the base of
    :class:`~cloudkeep.sources.firestore.segments.SegmentReader`)."""

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
