"""Incremental snapshots: the change feed seam (:class:`ChangeFeed`, on a real container
:class:`SdkChangeFeed`) and the pure decision whether a snapshot can continue from the previous
one (:func:`plan_incremental`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol

from ...errors import SourceError
from .codec import UNDEFINED, partition_key_value, path_segments
from .errors import Transient, resumes

if TYPE_CHECKING:
    from ...clouds.azure import translating
    from ...manifest import Manifest

PAGE_SIZE = 1000  # items per page (Cosmos DB also caps a page at about 4 MB)
RETENTION_MARGIN = 0.9  # use a continuation only while it is younger than 90% of the retention


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


class Container(Protocol):
    """What the change feed needs of the source: its container, through clients of its own."""

    @property
    def where(self) -> str: ...

    def new_client(self) -> Any: ...

    def container_of(self, client: Any, name: str | None = None) -> Any: ...

    def container_properties(self) -> dict[str, Any]: ...

    def paths(self) -> list[str]: ...

    def errors(self, doing: str, *, resumable: bool = False) -> translating: ...


class SdkChangeFeed:
    """The change feed of a real container, in *all versions and deletes* mode.

    The SDK hands out a change-feed continuation only through its client's last response
    headers, so every call uses a client of its own (calls run on several threads)."""

    def __init__(self, source: Container) -> None:
        self._source = source

    def retention(self) -> timedelta | None:
        policy = self._source.container_properties().get("changeFeedPolicy") or {}
        minutes = policy.get("retentionDuration") or 0
        return timedelta(minutes=int(minutes)) if int(minutes) > 0 else None

    def start(self, feed_range: dict[str, Any]) -> str:
        client = self._source.new_client()
        container = self._source.container_of(client)
        with self._source.errors("starting the change feed"):
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
        backoff = resumes()
        while True:
            try:
                with self._source.errors("reading the change feed", resumable=True):
                    pager = container.query_items_change_feed(
                        continuation=token, max_item_count=PAGE_SIZE).by_page()
                    for page in pager:
                        records = list(page)
                        token = str(client.client_connection.last_response_headers.get("etag") or token)
                        backoff.reset()
                        yield [self._change(r, paths) for r in records], token
                    token = str(client.client_connection.last_response_headers.get("etag") or token)
                yield [], token
                return
            except Transient as exc:
                if not backoff.wait():
                    raise exc.error from exc

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

