"""Cosmos DB (NoSQL API) source: every feed range read in parallel, written back concurrently.

Lines. One item per line, canonical JSON (sorted keys, no spaces, UTF-8)::

    {"_cloudkeep": {"_etag": …, "_rid": …, "_self": …, "_ts": …, "_attachments": …},
     "item": {<the document without those five system properties>},
     "partition_key": [<its partition key value(s)>]}

``item`` is the document as Cosmos DB returns it (nested JSON, unicode, nulls, booleans, numbers
as doubles — integers are exact up to 2^53, as in Cosmos DB itself). The system properties are
kept under ``_cloudkeep`` for reference; a restored copy gets new ones, so ``_cloudkeep`` is left
out of the content digest (``digest_ignores``). ``partition_key`` is the wire form of the
partition key: one value per path of the container's partition key (several for hierarchical
keys), ``{}`` for a path the document does not have. The item is wrapped (not flattened next to
``_cloudkeep``) so that no document field can collide with cloudkeep's own keys.

Reading. Each feed range (one per physical partition) is a segment, read by a ``SELECT * FROM c``
query scoped to it, page by page (constant memory). A transient failure (throttling after the
SDK's own retries, timeouts, a dropped connection) resumes the range from the continuation token
of the last page read, a few times, instead of starting over. A plain read is fuzzy: items are
read at different moments between the start and the end of the run.

Restore. ``restore REF --into CONTAINER`` writes into CONTAINER in the same database, creating it
when missing with the recorded partition key, indexing policy, unique keys, default TTL,
conflict resolution policy, computed properties and (container-level) throughput. Items are
upserted by a pool of threads; a 429 the SDK gave up on is retried after the server's
``x-ms-retry-after-ms``. A non-empty target is refused unless ``--overwrite``.

Incremental snapshots (``incremental: true``). Every snapshot of such a dataset records, per
feed range, a change-feed continuation taken *before* it reads anything. The next snapshot reads
the change feed from those continuations until it is caught up and stores, per item, its latest
state or a deletion line ``{"_cloudkeep": {...}, "delete": true, "id": …, "partition_key": […]}``.
Restore replays the chain (see ``cloudkeep.chain``): the full snapshot, then each incremental one
in order. Deletes are only in the change feed's *all versions and deletes* mode, which needs
continuous backup on the account and a change feed retention on the container; where the
container has none, or the previous continuation is older than that retention, or the chain
already holds ``full_every`` incremental snapshots, the snapshot is a full one (the manifest
says why). The change feed is read through the narrow :class:`ChangeFeed` seam.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol, overload

from ... import clock as _clock
from ...codec import ContentDigest
from ...errors import CloudkeepError, RestoreError, SourceError, SourceUnreachableError

if TYPE_CHECKING:
    from ...manifest import Manifest
    from .spec import CosmosSourceSpec

log = logging.getLogger(__name__)
_NULL_HANDLER = logging.NullHandler()

SYSTEM_PROPERTIES = ("_rid", "_self", "_etag", "_attachments", "_ts")
DIGEST_IGNORES = ("_cloudkeep",)
QUERY = "SELECT * FROM c"
PAGE_SIZE = 1000  # items per query page (Cosmos DB also caps a page at about 4 MB)
LINES_PER_PAGE = 500  # lines per page handed to the engine from the change feed
WRITE_WORKERS = 16
HTTP_POOL = 64  # connections per client: writer threads plus the reading segments
MAX_THROTTLED_ATTEMPTS = 12  # per item, on top of the SDK's own throttling retries
MAX_RESUMES = 5  # per feed range: transient failures resumed from the last continuation
RETENTION_MARGIN = 0.9  # use a continuation only while it is younger than 90% of the retention
UNDEFINED: dict[str, Any] = {}  # the wire form of "this document has no value at that path"
_TRANSIENT_STATUS = {408, 410, 429, 449, 500, 502, 503, 504}

# --------------------------------------------------------------------------------------------
# Lines (pure)


def canonical(value: object) -> bytes:
    """The one encoding of a JSON value. Strings that cannot be UTF-8 (lone surrogates) make
    the whole line fall back to ``\\u`` escapes: still one encoding per value."""
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                          allow_nan=False).encode("ascii")


def path_segments(path: str) -> list[str]:
    """``/a/b`` → ``["a", "b"]``; a segment may be quoted (``/"a b"/c``)."""
    out: list[str] = []
    i, n = 0, len(path)
    while i < n:
        if path[i] != "/":
            raise ValueError(f"bad partition key path {path!r}")
        i += 1
        if i < n and path[i] == '"':
            end = i + 1
            while end < n and path[end] != '"':
                end += 2 if path[end] == "\\" else 1
            out.append(json.loads(path[i : end + 1]))
            i = end + 1
        else:
            end = path.find("/", i)
            end = n if end < 0 else end
            out.append(path[i:end])
            i = end
    return out


def partition_key_paths(partition_key: dict[str, Any]) -> list[str]:
    """The paths of a container's ``partitionKey`` definition."""
    return [str(p) for p in partition_key.get("paths") or []]


def partition_key_value(doc: dict[str, Any], paths: list[str]) -> list[Any]:
    """The wire form of a document's partition key: one value per path, ``{}`` where missing."""
    values: list[Any] = []
    for path in paths:
        node: Any = doc
        for segment in path_segments(path):
            if isinstance(node, dict) and segment in node:
                node = node[segment]
            else:
                node = UNDEFINED
                break
        values.append(node)
    return values


def encode_item(doc: dict[str, Any], paths: list[str]) -> bytes:
    """One canonical line for a document as Cosmos DB returns it."""
    item = {k: v for k, v in doc.items() if k not in SYSTEM_PROPERTIES}
    system = {k: doc[k] for k in SYSTEM_PROPERTIES if k in doc}
    return canonical({"_cloudkeep": system, "item": item,
                      "partition_key": partition_key_value(doc, paths)})


def encode_delete(item_id: str, partition_key: list[Any], meta: dict[str, Any] | None = None) -> bytes:
    """One canonical line saying that an item was deleted (incremental snapshots only)."""
    return canonical({"_cloudkeep": meta or {}, "delete": True, "id": item_id,
                      "partition_key": partition_key})


@dataclass(frozen=True)
class Decoded:
    """A snapshot line: an item to write (``doc``), or an item to delete (``doc`` is None)."""

    id: str
    partition_key: list[Any]
    doc: dict[str, Any] | None


def decode_line(line: bytes) -> Decoded:
    """The operation one snapshot line stands for. Raises ValueError for a line that is not one."""
    value = json.loads(line)
    if not isinstance(value, dict) or not isinstance(value.get("partition_key"), list):
        raise ValueError("not a Cosmos DB line (no partition_key list)")
    if value.get("delete") is True:
        if not isinstance(value.get("id"), str):
            raise ValueError("a deletion line without an id")
        return Decoded(value["id"], value["partition_key"], None)
    item = value.get("item")
    if not isinstance(item, dict) or not isinstance(item.get("id"), str):
        raise ValueError("not a Cosmos DB item line (no item with a string id)")
    return Decoded(item["id"], value["partition_key"], item)


def sdk_partition_key(values: list[Any]) -> Any:
    """The SDK's ``partition_key=`` argument for a wire-form value."""
    from azure.cosmos.partition_key import NonePartitionKeyValue

    converted = [NonePartitionKeyValue if v == UNDEFINED and isinstance(v, dict) else v for v in values]
    return converted[0] if len(converted) == 1 else converted


# --------------------------------------------------------------------------------------------
# The change feed seam


@dataclass(frozen=True)
class Change:
    """One change from the change feed: a document's new state (``doc``, as Cosmos DB returns
    it), or a deletion (``doc`` None, with ``id`` and the wire-form ``partition_key``)."""

    doc: dict[str, Any] | None = None
    id: str | None = None
    partition_key: list[Any] | None = None
    meta: dict[str, Any] | None = None


class ChangeFeed(Protocol):
    """The narrow seam between the incremental-snapshot logic and a container's change feed.

    Continuations are opaque strings; each belongs to the feed range it was taken for."""

    def retention(self) -> timedelta | None:
        """How long a continuation stays readable with deletes included; None when the container
        cannot report deletes (no all-versions-and-deletes change feed)."""
        ...

    def start(self, feed_range: dict[str, Any]) -> str:
        """A continuation for ``feed_range`` marking now: reading from it returns later changes."""
        ...

    def read(self, feed_range: dict[str, Any], continuation: str) -> Iterator[tuple[list[Change], str]]:
        """Pages of changes after ``continuation`` in the order they happened, each with the
        continuation after it; ends when caught up."""
        ...


class SdkChangeFeed:
    """The change feed of a real container, in *all versions and deletes* mode.

    The SDK hands out a change-feed continuation only through its client's last response
    headers, so every call uses a client of its own (calls run on several threads)."""

    def __init__(self, source: CosmosSource) -> None:
        self._source = source

    def retention(self) -> timedelta | None:
        policy = self._source.container_properties().get("changeFeedPolicy") or {}
        minutes = policy.get("retentionDuration") or 0
        return timedelta(minutes=int(minutes)) if int(minutes) > 0 else None

    def start(self, feed_range: dict[str, Any]) -> str:
        client = self._source.new_client()
        container = self._source.container_of(client)
        with _errors(self._source, "starting the change feed"):
            pager = container.query_items_change_feed(
                feed_range=feed_range, start_time="Now", mode="AllVersionsAndDeletes", max_item_count=1,
            ).by_page()
            for page in pager:
                list(page)
            token = client.client_connection.last_response_headers.get("etag")
        if not token:
            raise SourceError(f"{self._source.where}: the change feed returned no continuation")
        return str(token)

    def read(self, feed_range: dict[str, Any], continuation: str) -> Iterator[tuple[list[Change], str]]:
        client = self._source.new_client()
        container = self._source.container_of(client)
        paths = self._source.paths()
        token = continuation
        resumes = 0
        while True:
            try:
                with _errors(self._source, "reading the change feed", resumable=True):
                    pager = container.query_items_change_feed(
                        continuation=token, max_item_count=PAGE_SIZE).by_page()
                    for page in pager:
                        records = list(page)
                        token = str(client.client_connection.last_response_headers.get("etag") or token)
                        resumes = 0
                        yield [self._change(r, paths) for r in records], token
                    token = str(client.client_connection.last_response_headers.get("etag") or token)
                yield [], token
                return
            except _Transient as exc:
                resumes += 1
                if resumes > MAX_RESUMES:
                    raise exc.error from exc
                _sleep_before_retry(resumes)

    @staticmethod
    def _change(record: dict[str, Any], paths: list[str]) -> Change:
        meta = record.get("metadata")
        if not isinstance(meta, dict):
            return Change(doc=record)  # latest-version form: the document itself
        brief = {k: meta[k] for k in ("lsn", "crts", "operationType", "timeToLiveExpired") if k in meta}
        if meta.get("operationType") == "delete":
            raw = record.get("previous")
            previous: dict[str, Any] = raw if isinstance(raw, dict) else {}
            item_id = meta.get("id") or previous.get("id")
            keys = meta.get("partitionKey")
            if isinstance(keys, dict) and keys:
                value = [_pk_from_metadata(keys, path) for path in paths]
            else:
                value = partition_key_value(previous, paths)
            return Change(id=str(item_id), partition_key=value, meta=brief)
        return Change(doc=record.get("current") or {}, meta=brief)


def _pk_from_metadata(keys: dict[str, Any], path: str) -> Any:
    """A partition key value from a delete's metadata (keyed by property name)."""
    segments = path_segments(path)
    for name in ("/".join(segments), segments[-1] if segments else "", path):
        if name in keys:
            return keys[name]
    if len(keys) == 1:
        return next(iter(keys.values()))
    return UNDEFINED


# --------------------------------------------------------------------------------------------
# Incremental planning (pure)


@dataclass(frozen=True)
class IncrementalPlan:
    kind: Literal["full", "incremental"]
    reason: str
    previous: Manifest | None = None


def plan_incremental(previous: Manifest | None, identity: dict[str, Any], retention: timedelta | None,
                     full_every: int, now: datetime) -> IncrementalPlan:
    """Whether the next snapshot can continue from ``previous`` (and why not)."""
    if retention is None:
        return IncrementalPlan("full", "the container's change feed does not report deletes (no "
                               "all-versions-and-deletes retention): every snapshot is a full one")
    if previous is None:
        return IncrementalPlan("full", "first snapshot of the dataset")
    recorded = previous.source
    record = recorded.get("incremental")
    if recorded.get("type") != "cosmos" or not isinstance(record, dict) or not record.get("continuations"):
        return IncrementalPlan("full", f"the previous snapshot {previous.snapshot_id} holds no "
                               "change-feed continuation")
    for key, value in identity.items():
        if recorded.get(key) != value:
            return IncrementalPlan("full", f"the container changed since {previous.snapshot_id} "
                                   f"({key}: {recorded.get(key)!r} → {value!r})")
    sequence = int(record.get("sequence") or 0)
    if sequence + 1 > full_every:
        return IncrementalPlan("full", f"the chain already holds {sequence} incremental snapshot(s) "
                               f"(full_every: {full_every})")
    age = now - previous.started_at
    if age >= retention * RETENTION_MARGIN:
        return IncrementalPlan("full", f"the previous continuation is {age} old, too close to the "
                               f"change feed retention of {retention}")
    return IncrementalPlan("incremental", f"changes since {previous.snapshot_id}", previous)


# --------------------------------------------------------------------------------------------
# The source


def _at_page_end(token: str | None, last: int) -> Callable[[int], Any]:
    """Cursors of a query page: its continuation, only after the page's last line."""
    def after(index: int) -> dict[str, Any] | None:
        return {"continuation": token} if index == last and token else None

    return after


class CosmosSource:
    kind = "cosmos"

    def __init__(
        self,
        endpoint: str,
        database: str,
        container: str,
        *,
        key: str | None = None,
        verify_tls: bool = True,
        incremental: bool = False,
        full_every: int = 24,
        page_size: int = PAGE_SIZE,
        write_workers: int = WRITE_WORKERS,
        client: Any = None,
        change_feed: ChangeFeed | None = None,
        credential_hint: str = "COSMOS_KEY",
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.database = database
        self.container = container
        self._key = key  # never logged, never in the manifest
        self.verify_tls = verify_tls
        self.incremental = incremental
        self.full_every = full_every
        self.page_size = page_size
        self.write_workers = write_workers
        self._client = client
        self._client_lock = threading.Lock()
        self._change_feed = change_feed
        self.credential_hint = credential_hint
        self._properties: dict[str, Any] | None = None
        self._ranges: list[dict[str, Any]] | None = None
        self._previous: Manifest | None = None
        self._plan: IncrementalPlan | None = None

    @classmethod
    def from_spec(cls, spec: CosmosSourceSpec) -> CosmosSource:
        import os

        return cls(spec.endpoint, spec.database, spec.container, key=os.environ.get(spec.key_env) or None,
                   verify_tls=spec.verify_tls, incremental=spec.incremental,
                   full_every=spec.full_every, credential_hint=spec.key_env)

    # ---------------------------------------------------------------- clients

    @property
    def where(self) -> str:
        from ...redaction import redact

        return redact(f"Cosmos DB {self.endpoint} {self.database}/{self.container}")

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
        with _errors(self, "connecting"):
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
            self._properties = self._read_properties(self.container)
            if self._properties is None:
                raise SourceUnreachableError(
                    f"{self.where}: container {self.container!r} not found in database "
                    f"{self.database!r}"
                )
        return self._properties

    def paths(self) -> list[str]:
        return partition_key_paths(self.container_properties()["partitionKey"])

    def _read_properties(self, name: str) -> dict[str, Any] | None:
        """A container's properties, None when the container does not exist. A missing database
        is "unreachable"."""
        from azure.cosmos.exceptions import CosmosResourceNotFoundError

        try:
            with _errors(self, f"reading container {name}", passthrough=(CosmosResourceNotFoundError,)):
                return dict(self.container_of(self.client, name).read())
        except CosmosResourceNotFoundError:
            if not self._database_exists():
                raise SourceUnreachableError(
                    f"{self.where}: database {self.database!r} not found") from None
            return None

    def _database_exists(self) -> bool:
        from azure.cosmos.exceptions import CosmosResourceNotFoundError

        try:
            with _errors(self, "reading the database", passthrough=(CosmosResourceNotFoundError,)):
                self.client.get_database_client(self.database).read()
        except CosmosResourceNotFoundError:
            return False
        return True

    def feed_ranges(self) -> list[dict[str, Any]]:
        if self._ranges is None:
            with _errors(self, "listing feed ranges"):
                self._ranges = [dict(r) for r in self.container_of(self.client).read_feed_ranges()]
        return self._ranges

    # ---------------------------------------------------------------- reading

    def set_previous(self, manifest: Manifest | None) -> None:
        """The dataset's latest committed snapshot (engine hook, called before describe)."""
        self._previous = manifest

    def describe(self) -> dict[str, Any]:
        props = self.container_properties()
        from ...redaction import redact_url

        out: dict[str, Any] = {
            "type": "cosmos",
            "endpoint": redact_url(self.endpoint),  # recorded in the manifest: no credentials
            "database": self.database,
            "container": self.container,
            "container_rid": props.get("_rid"),
            "partition_key": props.get("partitionKey"),
            "indexing_policy": props.get("indexingPolicy"),
            "unique_key_policy": props.get("uniqueKeyPolicy"),
            "default_ttl": props.get("defaultTtl"),
            "feed_ranges": len(self.feed_ranges()),
            "method": "query",
            "digest_ignores": list(DIGEST_IGNORES),
        }
        for key, name in (("conflictResolutionPolicy", "conflict_resolution_policy"),
                          ("computedProperties", "computed_properties")):
            if props.get(key):
                out[name] = props[key]
        out.update(self._throughput())
        if self.incremental:
            out["incremental"] = self._describe_incremental(out)
            if out["incremental"]["kind"] == "incremental":
                out["method"] = "change-feed"
        return out

    def _describe_incremental(self, described: dict[str, Any]) -> dict[str, Any]:
        identity = {k: described[k] for k in ("endpoint", "database", "container", "container_rid")}
        retention = self.change_feed.retention()
        # the clock the previous snapshot's times were recorded with (simulated under --now)
        plan = plan_incremental(self._previous, identity, retention, self.full_every, _clock.now())
        self._plan = plan
        log.info("%s: %s snapshot (%s)", self.where, plan.kind, plan.reason)
        record: dict[str, Any] = {"kind": plan.kind, "reason": plan.reason, "previous": None,
                                  "base": None, "sequence": 0}
        if plan.kind == "incremental":
            assert plan.previous is not None
            before = plan.previous.source["incremental"]
            record |= {"previous": plan.previous.snapshot_id,
                       "base": before.get("base") or plan.previous.snapshot_id,
                       "sequence": int(before.get("sequence") or 0) + 1}
        if retention is not None:
            # Taken before anything is read: what changes from here on is in the next snapshot.
            record["continuations"] = [{"range": r, "token": self.change_feed.start(r)}
                                       for r in self.feed_ranges()]
            record["retention_minutes"] = int(retention.total_seconds() // 60)
        return record

    def _throughput(self) -> dict[str, Any]:
        """The container's (or its database's shared) provisioned throughput, where the account
        reports it (serverless accounts and the local emulator do not, and a managed identity
        with data-plane roles only may not read it): otherwise None, with the reason."""
        def container_level() -> Any:
            return self.container_of(self.client).get_throughput()

        def database_level() -> Any:
            return self.client.get_database_client(self.database).get_throughput()

        attempts = (("container", container_level), ("database", database_level))
        notes = []
        for scope, read in attempts:
            try:
                with _errors(self, f"reading the {scope} throughput"):
                    tp = read()
            except CloudkeepError as exc:  # also 403: data-plane roles may not read offers
                notes.append(f"{scope}: {str(exc).split(chr(10))[0][:160]}")
                continue
            entry: dict[str, Any] = {"scope": scope}
            if getattr(tp, "auto_scale_max_throughput", None):
                entry["autoscale_max_throughput"] = int(tp.auto_scale_max_throughput)
            elif getattr(tp, "offer_throughput", None):
                entry["manual_throughput"] = int(tp.offer_throughput)
            return {"throughput": entry}
        return {"throughput": None, "throughput_note": "not reported: " + "; ".join(notes)}

    def plan_segments(self, described: dict[str, Any]) -> int:
        """One segment per feed range; for an incremental snapshot, per recorded continuation of
        the previous snapshot."""
        if self._plan is not None and self._plan.kind == "incremental":
            assert self._plan.previous is not None
            return max(1, len(self._plan.previous.source["incremental"]["continuations"]))
        return max(1, len(self.feed_ranges()))

    def read_segment(self, segment: int, total: int) -> Iterator[list[bytes]]:
        for lines, _ in self.read_segment_from(segment, total, None):
            yield lines

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
        resumes = 0
        while True:
            seen: list[str | None] = []

            def hook(headers: Any, _result: Any, seen: list[str | None] = seen) -> None:
                seen.append(headers.get("x-ms-continuation"))

            try:
                with _errors(self, "querying", resumable=True):
                    pager = container.query_items(
                        QUERY, feed_range=feed_range, enable_cross_partition_query=True,
                        max_item_count=self.page_size, response_hook=hook,
                    ).by_page(token)
                    for page in pager:
                        docs = [dict(d) for d in page]
                        token = seen[-1] if seen else None
                        resumes = 0
                        yield (docs, token) if tokens else docs
                        if not token:
                            return
                return
            except _Transient as exc:
                resumes += 1
                if resumes > MAX_RESUMES:
                    raise exc.error from exc
                log.warning("%s: %s; resuming the feed range from its last page", self.where, exc.error)
                _sleep_before_retry(resumes)

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

    def scan_digest(self, target: str) -> tuple[int, str]:
        """(items, content digest) of container ``target`` in the same database, read as a full
        backup reads it."""
        other = CosmosSource(self.endpoint, self.database, target, key=self._key,
                             verify_tls=self.verify_tls, page_size=self.page_size, client=self.client)
        paths = other.paths()
        digest = ContentDigest(ignores=DIGEST_IGNORES)
        container = other.container_of(other.client)
        for feed_range in other.feed_ranges():
            for docs in other._query_range(container, feed_range):
                for doc in docs:
                    digest.add_line(encode_item(doc, paths))
        return digest.count, digest.hexdigest()

    # ---------------------------------------------------------------- restore

    def open_restore(self, target: str, recorded: dict[str, Any], *, overwrite: bool) -> CosmosWriter:
        _check_container_id(target)
        existing = self._read_properties(target)
        if existing is None:
            existing = self._create_container(target, recorded)
        else:
            mine = recorded.get("partition_key") or {}
            theirs = existing.get("partitionKey") or {}
            if partition_key_paths(mine) != partition_key_paths(theirs) or \
                    mine.get("kind", "Hash") != theirs.get("kind", "Hash"):
                raise RestoreError(
                    f"target container {target!r} exists with partition key "
                    f"{partition_key_paths(theirs)}, but the snapshot's is {partition_key_paths(mine)}; "
                    f"restore into a new container instead"
                )
            if self._has_items(target) and not overwrite:
                raise RestoreError(
                    f"target container {target!r} is not empty; refusing to write into it "
                    f"(pass --overwrite to write the snapshot's items over it)"
                )
        container = self.container_of(self.client, target)
        return CosmosWriter(self, container, target, self.write_workers)

    # ---------------------------------------------------------------- drills and samples

    def target_problem(self, target: str, manifest: Manifest) -> str | None:
        """A restore target is a container id of the source's database."""
        return _container_problem(target)

    def scratch_target(self, token: str) -> str:
        """A container name for a restore drill, in the source's database (deleted after it)."""
        return f"{self.container[:200]}-cloudkeep-drill-{token}"

    def drop_target(self, target: str, recorded: dict[str, Any]) -> None:
        """Delete a drill's scratch container (gone already is fine)."""
        if target == self.container:
            raise SourceError(f"refusing to delete the source container {target!r}")
        from azure.cosmos.exceptions import CosmosResourceNotFoundError

        try:
            with _errors(self, f"deleting container {target}",
                         passthrough=(CosmosResourceNotFoundError,)):
                self.client.get_database_client(self.database).delete_container(target)
        except CosmosResourceNotFoundError:
            return
        log.info("deleted scratch container %s", target)

    def sample_check(self, lines: list[bytes]) -> list[str]:
        """Per snapshot line: ``matched``, ``changed`` (another etag), ``deleted``, or ``differs``
        (same etag, different content: the snapshot is wrong). Reads each item by id within its
        partition (a query: it answers "none" where a point read of a missing item may fail)."""
        container = self.container_of(self.client)
        paths = self.paths()
        out = []
        for line in lines:
            decoded = decode_line(line)
            recorded = json.loads(line)
            with _errors(self, f"reading sample item {decoded.id!r}"):
                rows = [dict(r) for r in container.query_items(
                    "SELECT * FROM c WHERE c.id = @id",
                    parameters=[{"name": "@id", "value": decoded.id}],
                    partition_key=sdk_partition_key(decoded.partition_key),
                    enable_cross_partition_query=True)]
            # an id is unique per partition only: keep the one of this line's partition
            rows = [r for r in rows if partition_key_value(r, paths) == decoded.partition_key]
            if not rows:
                out.append("deleted")
                continue
            fresh = encode_item(rows[0], paths)
            etag = (recorded.get("_cloudkeep") or {}).get("_etag")
            if etag is None or json.loads(fresh).get("_cloudkeep", {}).get("_etag") != etag:
                out.append("changed" if fresh != line else "matched")
            else:
                out.append("matched" if fresh == line else "differs")
        return out

    def _has_items(self, target: str) -> bool:
        with _errors(self, f"reading {target}"):
            rows = self.container_of(self.client, target).query_items(
                "SELECT TOP 1 c.id FROM c", enable_cross_partition_query=True, max_item_count=1)
            return any(True for _ in rows)

    def _create_container(self, target: str, recorded: dict[str, Any]) -> dict[str, Any]:
        from azure.cosmos import PartitionKey, ThroughputProperties
        from azure.cosmos.exceptions import CosmosResourceExistsError

        pk = recorded.get("partition_key") or {}
        paths = partition_key_paths(pk)
        if not paths:
            raise RestoreError("the snapshot records no partition key: cannot create the container")
        kwargs: dict[str, Any] = {
            "partition_key": PartitionKey(path=paths if len(paths) > 1 else paths[0],
                                          kind=pk.get("kind", "Hash"), version=pk.get("version", 2)),
        }
        if recorded.get("indexing_policy"):
            kwargs["indexing_policy"] = recorded["indexing_policy"]
        if recorded.get("default_ttl") is not None:
            kwargs["default_ttl"] = recorded["default_ttl"]
        if (recorded.get("unique_key_policy") or {}).get("uniqueKeys"):
            kwargs["unique_key_policy"] = recorded["unique_key_policy"]
        if recorded.get("conflict_resolution_policy"):
            kwargs["conflict_resolution_policy"] = recorded["conflict_resolution_policy"]
        if recorded.get("computed_properties"):
            kwargs["computed_properties"] = recorded["computed_properties"]
        throughput = recorded.get("throughput") or {}
        if throughput.get("scope") == "container":
            if throughput.get("autoscale_max_throughput"):
                kwargs["offer_throughput"] = ThroughputProperties(
                    auto_scale_max_throughput=throughput["autoscale_max_throughput"])
            elif throughput.get("manual_throughput"):
                kwargs["offer_throughput"] = throughput["manual_throughput"]
        log.info("creating container %s in %s", target, self.database)
        try:
            with _errors(self, f"creating container {target}",
                         passthrough=(CosmosResourceExistsError,), creating=True):
                return dict(self.client.get_database_client(self.database).create_container(
                    target, **kwargs).read())
        except CosmosResourceExistsError:  # created meanwhile by someone else: use it as is
            props = self._read_properties(target)
            if props is None:
                raise RestoreError(f"container {target!r} could not be created") from None
            return props


def _container_problem(name: str) -> str | None:
    if not name or len(name) > 255 or any(c in name for c in "/\\?#") or name != name.strip():
        return "a container name has 1 to 255 characters, without / \\ ? # or surrounding spaces"
    return None


def _check_container_id(name: str) -> None:
    problem = _container_problem(name)
    if problem:
        raise RestoreError(f"bad target container name {name!r}: {problem}")


class CosmosWriter:
    """Upserts (and, for incremental snapshots, deletes) items with a pool of threads."""

    def __init__(self, source: CosmosSource, container: Any, target: str, workers: int) -> None:
        self.source = source
        self.container = container
        self.target = target
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="cosmos-write")

    def write(self, lines: list[bytes]) -> int:
        ops = [decode_line(line) for line in lines]  # a bad line fails before anything is sent
        futures = [self._pool.submit(self._apply, op) for op in ops]
        _, pending = wait(futures, return_when=FIRST_EXCEPTION)
        for future in pending:
            future.cancel()
        wait(futures)
        for future in futures:
            error = None if future.cancelled() else future.exception()
            if error is not None:
                raise error
        return len(ops)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _apply(self, op: Decoded) -> None:
        from azure.cosmos.exceptions import CosmosResourceNotFoundError

        attempt = 0
        while True:
            try:
                with _errors(self.source, f"writing to {self.target}", throttled=True,
                             passthrough=(CosmosResourceNotFoundError,) if op.doc is None else ()):
                    if op.doc is not None:
                        self.container.upsert_item(op.doc)
                    else:
                        self.container.delete_item(op.id, partition_key=sdk_partition_key(op.partition_key))
                return
            except CosmosResourceNotFoundError:
                return  # deleting an item that is not there: the target already says so
            except _Throttled as exc:
                attempt += 1
                if attempt >= MAX_THROTTLED_ATTEMPTS:
                    raise SourceError(
                        f"{self.source.where}: still throttled (429) after {attempt} attempts "
                        f"writing to {self.target}; the restore is incomplete"
                    ) from exc
                time.sleep(exc.retry_after if exc.retry_after is not None
                           else min(5.0, 0.1 * 2**attempt) * random.uniform(0.5, 1.0))


# --------------------------------------------------------------------------------------------
# Errors: SDK exceptions → cloudkeep errors, in one place


class _Transient(Exception):
    """A failure worth resuming a read after (carries the cloudkeep error to raise otherwise)."""

    def __init__(self, error: CloudkeepError) -> None:
        super().__init__(str(error))
        self.error = error


class _Throttled(Exception):
    """HTTP 429 after the SDK's own retries; ``retry_after`` in seconds, from the server."""

    def __init__(self, retry_after: float | None) -> None:
        super().__init__("throttled")
        self.retry_after = retry_after


def _sleep_before_retry(attempt: int) -> None:
    time.sleep(min(10.0, 0.5 * 2**attempt) * random.uniform(0.5, 1.0))


def retry_after_seconds(headers: Any) -> float | None:
    """The server's ``x-ms-retry-after-ms`` (or ``Retry-After`` seconds), if it sent one."""
    if not headers:
        return None
    for name, scale in (("x-ms-retry-after-ms", 0.001), ("Retry-After", 1.0)):
        value = headers.get(name)
        if value is not None:
            try:
                return max(0.0, float(value) * scale)
            except ValueError:
                continue
    return None


class _errors:
    """Maps azure-core / azure-cosmos / azure-identity exceptions to cloudkeep errors.

    With ``resumable``, transient failures come out as ``_Transient`` (the caller resumes a read
    from its last continuation); with ``throttled``, a 429 comes out as ``_Throttled`` (the
    writer waits as long as the server asked, then retries)."""

    def __init__(self, source: CosmosSource, doing: str, *,
                 passthrough: tuple[type[BaseException], ...] = (),
                 resumable: bool = False, throttled: bool = False, creating: bool = False) -> None:
        self.source = source
        self.doing = doing
        self.passthrough = passthrough
        self.resumable = resumable
        self.throttled = throttled
        self.creating = creating

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if not isinstance(exc, Exception) or isinstance(exc, (CloudkeepError, _Transient, _Throttled)):
            return
        if self.passthrough and isinstance(exc, self.passthrough):
            return
        if self.throttled and _status(exc) == 429:
            raise _Throttled(retry_after_seconds(getattr(exc, "headers", None))) from exc
        mapped = map_error(exc, self.source, self.doing, creating=self.creating)
        if mapped is None:
            return
        if self.resumable and _is_transient(exc):
            raise _Transient(mapped) from exc
        raise mapped from exc


def _status(exc: BaseException) -> int:
    from azure.core.exceptions import HttpResponseError

    return int(getattr(exc, "status_code", 0) or 0) if isinstance(exc, HttpResponseError) else 0


def _is_transient(exc: BaseException) -> bool:
    from azure.core.exceptions import ServiceResponseError

    return _status(exc) in _TRANSIENT_STATUS or isinstance(exc, ServiceResponseError)


def map_error(exc: BaseException, source: CosmosSource, doing: str, *,
              creating: bool = False) -> CloudkeepError | None:
    """The cloudkeep error for an exception raised by the Azure SDKs (None: not theirs)."""
    from azure.core.exceptions import (
        AzureError,
        ClientAuthenticationError,
        HttpResponseError,
        ServiceRequestError,
        ServiceResponseError,
    )

    where = source.where
    if isinstance(exc, HttpResponseError):
        status = _status(exc)
        message = _first_line(getattr(exc, "http_error_message", None) or getattr(exc, "message", "") or exc)
        if creating and status == 403:
            return RestoreError(
                f"{where}: not allowed to create the container ({message}); with a managed "
                f"identity, create it first (Azure CLI, Bicep, Terraform) with the snapshot's "
                f"settings (`cloudkeep show`), then restore into it"
            )
        if status in (401, 403) or isinstance(exc, ClientAuthenticationError):
            return SourceUnreachableError(
                f"cannot reach {where} while {doing}: the account refused the credentials "
                f"(HTTP {status}: {message}); set {source.credential_hint} to the account key, or "
                f"grant the managed identity a Cosmos DB data role"
            )
        if status == 404:
            return SourceUnreachableError(f"{where}: not found while {doing} ({message})")
        if status == 429:
            return SourceError(f"{where}: throttled (HTTP 429) while {doing}, after the SDK's "
                               f"retries: {message}")
        return SourceError(f"{where}: HTTP {status} while {doing}: {message}")
    if isinstance(exc, ClientAuthenticationError):
        return SourceUnreachableError(
            f"cannot reach {where}: no usable credentials ({_first_line(exc)}); set "
            f"{source.credential_hint} to the account key, or run where a managed identity is available"
        )
    if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
        text = _first_line(exc)
        hint = ""
        if "CERTIFICATE_VERIFY_FAILED" in text or "SSL" in text:
            hint = " (a local emulator's self-signed certificate needs verify_tls: false)"
        return SourceUnreachableError(f"cannot reach {where} while {doing}: {_short(text)}{hint}")
    if isinstance(exc, AzureError):
        return SourceUnreachableError(f"cannot reach {where} while {doing}: {_short(_first_line(exc))}")
    try:
        from azure.identity import CredentialUnavailableError
    except ImportError:  # pragma: no cover - azure-identity is a dependency
        return None
    if isinstance(exc, CredentialUnavailableError):
        return SourceUnreachableError(f"cannot reach {where}: no credentials ({_first_line(exc)})")
    return None


def _first_line(value: object) -> str:
    text = str(value).strip()
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("Code:", "Status code:")):
            return line.removeprefix("Message: ")
    return text


def _short(text: str) -> str:
    if "Connection refused" in text or "NewConnectionError" in text:
        return "connection refused"
    if "Name or service not known" in text or "getaddrinfo" in text or "nodename nor servname" in text:
        return "unknown host"
    return text if len(text) <= 200 else text[:200] + "…"

