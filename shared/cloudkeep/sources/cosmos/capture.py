"""Reading a container's change feed for ``cloudkeep capture`` (through the :class:`ChangeFeed`
seam: on a real account ``query_items_change_feed`` with continuations).

The position is ``{"container": <rid>, "ranges": [{"range": feed range, "token": continuation,
"read_at": when it was last read}], "drained_at": ...}``. The first read starts every feed range
at *now* (the log is complete from then on: take the base snapshot after it). A continuation
older than the feed's retention (all-versions-and-deletes mode) is a gap, restarted at now.

Each change's time is its ``crts`` (or ``_ts``: whole seconds), never earlier than the previous
read that drained the feed; its sequence is its ``lsn`` (ordered within its feed range).
The feed must be in all-versions-and-deletes mode (a container with a change feed retention):
the latest-version feed lists no deletes, so capture refuses it (docs/continuous.md).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, Protocol

from ...changes import Change, ChangeBatch, StreamGap, pad_sequence, utc
from ...errors import SourceError
from .changefeed import Change as FeedChange
from .changefeed import ChangeFeed
from .codec import encode_item, partition_key_value

EVENTS = {"create": "insert", "replace": "modify", "upsert": "modify", "delete": "remove"}


class _Container(Protocol):
    @property
    def where(self) -> str: ...

    @property
    def change_feed(self) -> ChangeFeed: ...

    def feed_ranges(self) -> list[dict[str, Any]]: ...

    def paths(self) -> list[str]: ...

    def container_properties(self) -> dict[str, Any]: ...


def _range_id(feed_range: dict[str, Any]) -> str:
    return json.dumps(feed_range, sort_keys=True, separators=(",", ":"))


def _time(text: Any) -> datetime | None:
    try:
        return utc(datetime.fromisoformat(str(text))) if text else None
    except ValueError:
        return None


def to_change(feed: FeedChange, paths: list[str], shard: str,
              floor: datetime | None = None) -> Change:
    """One change-feed record as a :class:`~cloudkeep.changes.Change`."""
    meta = feed.meta or {}
    doc = feed.doc or {}
    lsn = meta.get("lsn", doc.get("_lsn"))
    stamp = meta.get("crts", doc.get("_ts"))
    if lsn is None or stamp is None:
        raise SourceError("a change-feed record has no lsn or time (crts/_ts)")
    at = datetime.fromtimestamp(float(stamp), UTC)
    if floor is not None and at < floor:
        at = floor
    event = EVENTS.get(str(meta.get("operationType") or ""), "modify")
    if feed.doc is None or event == "remove":
        key = {"id": str(feed.id), "partition_key": list(feed.partition_key or [])}
        return Change(key=key, event="remove", time=at, shard=shard,
                      sequence=pad_sequence(int(lsn)), line=None)
    key = {"id": str(doc.get("id")), "partition_key": partition_key_value(doc, paths)}
    return Change(key=key, event=event, time=at, shard=shard, sequence=pad_sequence(int(lsn)),
                  line=encode_item(doc, paths))


class FeedCapture:
    """One capture read of a container's change feed (see the module docstring)."""

    def __init__(self, source: _Container) -> None:
        self.source = source

    def read(self, position: dict[str, Any] | None, *, now: Callable[[], datetime],
             deadline: float | None) -> Iterator[ChangeBatch]:
        source = self.source
        feed = source.change_feed
        retention = feed.retention()
        if retention is None:
            raise SourceError(f"{source.where}: the container's change feed has no "
                              "all-versions-and-deletes mode (no changeFeedPolicy retention; it "
                              "needs continuous backup on the account): continuous capture needs "
                              "it — the latest-version feed lists no deletes")
        rid = str(source.container_properties().get("_rid") or source.where)
        started = now()
        state = json.loads(json.dumps(position)) if position else {}
        gaps: list[StreamGap] = []
        since = None
        if state.get("container") != rid:
            if state.get("container"):
                gaps.append(StreamGap(_time(state.get("drained_at")) or started, None,
                                      "the container was replaced: its change feed starts afresh"))
            state = {"container": rid, "ranges": [
                {"range": r, "token": feed.start(r), "read_at": started.isoformat()}
                for r in source.feed_ranges()]}
            since = started
        known = {_range_id(r["range"]) for r in state["ranges"]}
        for r in source.feed_ranges():
            if _range_id(r) not in known:  # a range the position does not cover
                gaps.append(StreamGap(_time(state.get("drained_at")) or started, None,
                                      f"feed range {_range_id(r)} has no continuation"))
                state["ranges"].append({"range": r, "token": feed.start(r),
                                        "read_at": started.isoformat()})
        floor = _time(state.get("drained_at"))
        paths = source.paths()
        for entry in state["ranges"]:
            read_at = _time(entry.get("read_at")) or started
            if retention is not None and started - read_at > retention * 0.9:
                gaps.append(StreamGap(read_at, None, f"the continuation of feed range "
                                      f"{_range_id(entry['range'])} is older than the change "
                                      f"feed's retention ({retention})"))
                entry["token"] = feed.start(entry["range"])
            shard = _range_id(entry["range"])
            for changes, token in feed.read(entry["range"], entry["token"]):
                entry["token"] = token
                converted = [to_change(c, paths, shard, floor) for c in changes]
                if converted or gaps:
                    yield ChangeBatch(converted, json.loads(json.dumps(state)), list(gaps))
                    gaps = []
                if deadline is not None and time.monotonic() > deadline:
                    return
            entry["read_at"] = started.isoformat()
        state["drained_at"] = started.isoformat()
        yield ChangeBatch([], state, gaps, caught_up=started, since=since)

