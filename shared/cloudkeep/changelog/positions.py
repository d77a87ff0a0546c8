"""Where ``capture`` continues, and up to when the log is known complete.

Per stream, an append-only sequence ``<dataset>/changelog/positions/<stream>/<seq>.json``
(create-only; the newest entry is current; prune removes superseded ones) holding the source's
opaque position, ``since`` (from when the stream's changes are complete in the log) and
``complete_until`` (the log holds every change up to this time: the last time a read drained the
stream). Event-driven handlers, which have no position, call :func:`mark_complete`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .. import layout, sequences
from ..changes import utc
from ..stores import Store
from .format import format_time, parse_time

log = logging.getLogger(__name__)

MAX_POSITION_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class Position:
    stream: str
    position: dict[str, Any] | None
    since: datetime | None
    complete_until: datetime | None
    number: int = -1
    logged: dict[str, str] | None = None  # shard → the highest sequence ingested (verify: holes)

    def as_dict(self, recorded_at: datetime) -> dict[str, Any]:
        return {"format": 1, "stream": self.stream, "position": self.position,
                "logged": self.logged or {},
                "since": None if self.since is None else format_time(self.since),
                "complete_until": None if self.complete_until is None else format_time(self.complete_until),
                "recorded_at": format_time(recorded_at)}


def _parse(data: bytes, key: str) -> Position:
    if len(data) > MAX_POSITION_BYTES:
        raise ValueError("position entry too large")
    doc = json.loads(data)
    if not isinstance(doc, dict) or doc.get("format") != 1 or not isinstance(doc.get("stream"), str):
        raise ValueError("not a capture position")
    position = doc.get("position")
    if position is not None and not isinstance(position, dict):
        raise ValueError("bad position")
    since, until = doc.get("since"), doc.get("complete_until")
    logged = doc.get("logged") or {}
    if not isinstance(logged, dict) or not all(isinstance(v, str) for v in logged.values()):
        raise ValueError("bad logged")
    return Position(stream=doc["stream"], position=position,
                    since=None if since is None else parse_time(since),
                    complete_until=None if until is None else parse_time(until),
                    logged={str(k): v for k, v in logged.items()})


def current(store: Store, dataset: str, stream: str) -> Position | None:
    """The newest readable position of ``stream``, or None (never captured)."""
    found = sequences.newest(store, layout.changelog_positions_prefix(dataset, stream), _parse)
    if found is None:
        return None
    n, pos = found
    return Position(pos.stream, pos.position, pos.since, pos.complete_until, n, pos.logged)


def append(store: Store, dataset: str, position: Position, recorded_at: datetime) -> int:
    """Record ``position`` as the stream's next entry (create-only)."""
    body = json.dumps(position.as_dict(recorded_at), indent=1, default=str).encode()
    return sequences.append(store, layout.changelog_positions_prefix(dataset, position.stream),
                            body, after=position.number if position.number >= 0 else None)


def all_streams(store: Store, dataset: str) -> list[Position]:
    """The current position of every stream the dataset was captured from."""
    head = f"{layout.changelog_prefix(dataset)}positions/"
    streams = sorted({info.key[len(head):].split("/", 1)[0] for info in store.list(head)})
    out = []
    for token in streams:
        found = sequences.newest(store, f"{head}{token}/", _parse)
        if found is not None:
            out.append(found[1])
    return out


def mark_complete(store: Store, dataset: str, stream: str, until: datetime, *,
                  since: datetime | None = None) -> None:
    """For an event-driven producer: the log holds every change of ``stream`` up to ``until``
    (``since``: from when, on the first call). Keeps the position of an earlier entry."""
    before = current(store, dataset, stream)
    entry = Position(stream=stream, position=before.position if before else None,
                     since=(before.since if before and before.since else since),
                     complete_until=utc(until) if before is None or before.complete_until is None
                     else max(before.complete_until, utc(until)),
                     number=before.number if before else -1)
    append(store, dataset, entry, utc(until))
