"""Cosmos DB reading: clients, the container's properties and feed ranges, and the reads of a
backup — every feed range by a query, page by page, resumed from the last continuation after a
transient failure; for an incremental snapshot, the latest change per item from the change feed."""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import Any, Literal, overload

from ...capabilities import Description, pages_from_start
from ...clouds.azure import translating
from ...errors import SourceError, SourceUnreachableError
from ...redaction import redact
from .changefeed import PAGE_SIZE, ChangeFeed, IncrementalPlan, SdkChangeFeed
from .codec import UNDEFINED, canonical, encode_delete, encode_item, partition_key_paths, partition_key_value
from .errors import Transient, errors, resumes

log = logging.getLogger(__name__)
_NULL_HANDLER = logging.NullHandler()

QUERY = "SELECT * FROM c"
LINES_PER_PAGE = 500  # lines per page handed to the engine from the change feed
HTTP_POOL = 64  # connections per client: writer threads plus the reading segments


def _at_page_end(token: str | None, last: int) -> Callable[[int], Any]:
    """Cursors of a query page: its continuation, only after the page's last line."""
    def after(index: int) -> dict[str, Any] | None:
        return {"continuation": token} if index == last and token else None

    return after


class CosmosReader:
    """The connection to one container and the reads of a backup (a base of
    :class:`~cloudkeep.sources.cosmos.CosmosSource`)."""

    def __init__(self, endpoint: str, database: str, container: str, *, key: str | None = None,
                 verify_tls: bool = True, page_size: int = PAGE_SIZE, client: Any = None,
                 change_feed: ChangeFeed | None = None, credential_hint: str = "COSMOS_KEY") -> None:
        self.endpoint = endpoint.rstrip("/")
        self.database = database
        self.container = container
        self._key = key  # never logged, never in the manifest
        self.verify_tls = verify_tls
        self.page_size = page_size
        self._client = client
        self._client_lock = threading.Lock()
        self._change_feed = change_feed
        self.credential_hint = credential_hint
        self._properties: dict[str, Any] | None = None
        self._ranges: list[dict[str, Any]] | None = None
        self._plan: IncrementalPlan | None = None

    # ---------------------------------------------------------------- clients

    @property
    def where(self) -> str:
        return redact(f"Cosmos DB {self.endpoint} {self.database}/{self.container}")

    def errors(self, doing: str, *, passthrough: tuple[type[BaseException], ...] = (),
               resumable: bool = False, throttled: bool = False, creating: bool = False) -> translating:
        """SDK exceptions raised inside as cloudkeep errors (see :func:`.errors.errors`)."""
        return errors(self.where, self.credential_hint, doing, passthrough=passthrough,
                      resumable=resumable, throttled=throttled, creating=creating)

    def new_client(self) -> Any:
        """A new CosmosClient (the key from the environment, else a managed identity)."""
        from azure.cosmos import CosmosClient

        # The SDK's own warnings (e.g. "Marking ... unavailable") would reach stderr through
        # logging's last resort; cloudkeep reports the errors itself. Root handlers still get them.
        logging.getLogger("azure").addHandler(_NULL_HANDLER)
        if not self.verify_tls:
            import urllib3

            warnings.filterwarnings("ignore", category=urllib3.exceptions.InsecureRequestWarning)
        credential: Any = self._key
        if credential is None:
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential()
        import requests
        from azure.core.pipeline.transport import RequestsTransport

        session = requests.Session()  # a pool as large as the writer's threads, and then some
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=HTTP_POOL)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        with self.errors("connecting"):
            return CosmosClient(
                self.endpoint, credential=credential, connection_verify=self.verify_tls,
                connection_timeout=10, read_timeout=60, retry_connect=2, retry_read=2,
                retry_backoff_max=30, user_agent_suffix="cloudkeep",
                transport=RequestsTransport(session=session, session_owner=True),
            )

    @property
    def client(self) -> Any:
        with self._client_lock:
            if self._client is None:
                self._client = self.new_client()
            return self._client

    def container_of(self, client: Any, name: str | None = None) -> Any:
        return client.get_database_client(self.database).get_container_client(name or self.container)

    @property
    def change_feed(self) -> ChangeFeed:
        if self._change_feed is None:
            self._change_feed = SdkChangeFeed(self)
        return self._change_feed

    def container_properties(self) -> dict[str, Any]:
        if self._properties is None:
            self._properties = self.read_properties(self.container)
            if self._properties is None:
                raise SourceUnreachableError(
                    f"{self.where}: container {self.container!r} not found in database "
                    f"{self.database!r}"
                )
        return self._properties

    def paths(self) -> list[str]:
        return partition_key_paths(self.container_properties()["partitionKey"])

    def read_properties(self, name: str) -> dict[str, Any] | None:
        """A container's properties, None when the container does not exist. A missing database
        is "unreachable"."""
        from azure.cosmos.exceptions import CosmosResourceNotFoundError

        try:
            with self.errors(f"reading container {name}", passthrough=(CosmosResourceNotFoundError,)):
                return dict(self.container_of(self.client, name).read())
        except CosmosResourceNotFoundError:
            if not self._database_exists():
                raise SourceUnreachableError(
                    f"{self.where}: database {self.database!r} not found") from None
            return None

    def _database_exists(self) -> bool:
        from azure.cosmos.exceptions import CosmosResourceNotFoundError

        try:
            with self.errors("reading the database", passthrough=(CosmosResourceNotFoundError,)):
                self.client.get_database_client(self.database).read()
        except CosmosResourceNotFoundError:
            return False
        return True

    def feed_ranges(self) -> list[dict[str, Any]]:
        if self._ranges is None:
            with self.errors("listing feed ranges"):
                self._ranges = [dict(r) for r in self.container_of(self.client).read_feed_ranges()]
        return self._ranges

    # ---------------------------------------------------------------- reading

    def plan_segments(self, described: Description | dict[str, Any]) -> int:
        """One segment per feed range; for an incremental snapshot, per recorded continuation of
        the previous snapshot."""
        if self._plan is not None and self._plan.kind == "incremental":
            assert self._plan.previous is not None
            return max(1, len(self._plan.previous.source["incremental"]["continuations"]))
        return max(1, len(self.feed_ranges()))

    def read_segment(self, segment: int, total: int) -> Iterator[list[bytes]]:
        return pages_from_start(self, segment, total)

    def read_segment_from(
        self, segment: int, total: int, cursor: dict[str, Any] | None
    ) -> Iterator[tuple[list[bytes], Callable[[int], Any] | None]]:
        """Pages of one segment, each with the cursor after its i-th line: for a full snapshot,
        the query's continuation token at a page's end (None inside a page); an incremental
        snapshot's segment is not resumable mid-way (its lines come out of a de-duplicated
        change feed) and restarts when interrupted."""
        if self._plan is not None and self._plan.kind == "incremental":
            assert self._plan.previous is not None
            recorded = self._plan.previous.source["incremental"]["continuations"]
            for lines in self._read_changes(recorded[segment]["range"], recorded[segment]["token"]):
                yield lines, None
            return
        ranges = self.feed_ranges()
        if total != len(ranges):
            raise SourceError(f"{self.where}: {total} segments planned for {len(ranges)} feed ranges")
        paths = self.paths()
        start = cursor.get("continuation") if cursor else None
        pages = self._query_range(self.container_of(self.client), ranges[segment], start, tokens=True)
        for docs, token in pages:
            if docs:
                last = len(docs) - 1
                yield [encode_item(doc, paths) for doc in docs], _at_page_end(token, last)

    @overload
    def _query_range(self, container: Any, feed_range: dict[str, Any], token: str | None = None,
                     *, tokens: Literal[False] = False) -> Iterator[list[dict[str, Any]]]: ...

    @overload
    def _query_range(self, container: Any, feed_range: dict[str, Any], token: str | None = None,
                     *, tokens: Literal[True]) -> Iterator[tuple[list[dict[str, Any]], str | None]]: ...

    def _query_range(self, container: Any, feed_range: dict[str, Any], token: str | None = None,
                     *, tokens: bool = False) -> Iterator[Any]:
        """Pages of one feed range (from ``token``, a continuation), with the continuation after
        each page when ``tokens``; a transient failure resumes from the last page's continuation."""
        backoff = resumes()
        while True:
            seen: list[str | None] = []

            def hook(headers: Any, _result: Any, seen: list[str | None] = seen) -> None:
                seen.append(headers.get("x-ms-continuation"))

            try:
                with self.errors("querying", resumable=True):
                    pager = container.query_items(
                        QUERY, feed_range=feed_range, enable_cross_partition_query=True,
                        max_item_count=self.page_size, response_hook=hook,
                    ).by_page(token)
                    for page in pager:
                        docs = [dict(d) for d in page]
                        token = seen[-1] if seen else None
                        backoff.reset()
                        yield (docs, token) if tokens else docs
                        if not token:
                            return
                return
            except Transient as exc:
                if not backoff.wait():
                    raise exc.error from exc
                log.warning("%s: %s; resuming the feed range from its last page", self.where, exc.error)

    def _read_changes(self, feed_range: dict[str, Any], token: str) -> Iterator[list[bytes]]:
        """The latest change per item of one feed range since ``token``.

        The feed lists every version in order; only the last one per item is kept, so memory is
        bounded by the items changed since the previous snapshot (one line each), not by the
        container."""
        paths = self.paths()
        latest: dict[tuple[str, bytes], bytes] = {}
        for changes, _ in self.change_feed.read(feed_range, token):
            for change in changes:
                if change.doc is not None:
                    doc = change.doc
                    key = (str(doc.get("id")), canonical(partition_key_value(doc, paths)))
                    line = encode_item(doc, paths)
                else:
                    pk = change.partition_key or [UNDEFINED]
                    key = (str(change.id), canonical(pk))
                    line = encode_delete(str(change.id), pk, change.meta)
                latest.pop(key, None)  # re-insert: lines come out in the order of the last change
                latest[key] = line
        lines = list(latest.values())
        latest.clear()
        for start in range(0, len(lines), LINES_PER_PAGE):
            yield lines[start : start + LINES_PER_PAGE]

