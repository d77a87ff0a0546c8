"""One change of one item, as every change-log producer hands it over (issue #21).

A base module: the sources' converters (a DynamoDB stream record, an S3 object version, a Cosmos
DB change, a Firestore document event) build :class:`Change` values without importing the core;
:mod:`cloudkeep.changelog` re-exports it and writes them into the dataset's change log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

EVENTS = ("insert", "modify", "remove")
SEQUENCE_WIDTH = 40
"""Digits a numeric sequence is zero-padded to, so that sequences sort as text."""
MAX_TOKEN = 512


@dataclass(frozen=True)
class Change:
    """One change: ``key`` (normalised, :mod:`cloudkeep.itemkeys`), ``event`` (insert, modify or
    remove), ``time`` (the source's own event time, UTC-aware), ``shard`` (the ordering domain:
    a DynamoDB shard, a Cosmos DB feed range, an S3 bucket, a Firestore database), ``sequence``
    (the source's ordering token within the shard, sortable as text) and ``line`` (the new item
    as one line of the snapshot's lossless encoding; None for a remove)."""

    key: Any
    event: str
    time: datetime
    shard: str
    sequence: str
    line: bytes | None

    def __post_init__(self) -> None:
        if self.event not in EVENTS:
            raise ValueError(f"a change's event is insert, modify or remove, not {self.event!r}")
        if self.time.tzinfo is None:
            raise ValueError("a change's time must be timezone-aware (UTC)")
        if (self.line is None) != (self.event == "remove"):
            raise ValueError("a remove has no line, an insert or modify has one")
        if self.line is not None and (b"\n" in self.line or not self.line):
            raise ValueError("a change's line is one non-empty line")
        if not self.shard or len(self.shard) > MAX_TOKEN:
            raise ValueError("a change's shard is 1 to 512 characters")
        if not self.sequence or len(self.sequence) > MAX_TOKEN:
            raise ValueError("a change's sequence is 1 to 512 characters")
        if self.key is None:
            raise ValueError("a change needs its item's key")


def pad_sequence(number: int | str) -> str:
    """A numeric sequence zero-padded to :data:`SEQUENCE_WIDTH` digits (sorts as text)."""
    text = str(number).strip()
    if not text.isdigit() or not text.isascii():
        raise ValueError(f"not a numeric sequence: {text[:60]!r}")
    text = text.lstrip("0") or "0"
    if len(text) > SEQUENCE_WIDTH:  # it would sort before shorter, smaller ones
        raise ValueError(f"a numeric sequence has at most {SEQUENCE_WIDTH} digits: {text[:60]!r}")
    return text.rjust(SEQUENCE_WIDTH, "0")


def utc(at: datetime) -> datetime:
    """``at`` in UTC (a naive time is taken as UTC)."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


@dataclass(frozen=True)
class StreamGap:
    """Changes a source's stream may have lost: from ``start`` to ``end`` (None: until the next
    base snapshot), and why."""

    start: datetime
    end: datetime | None
    reason: str


@dataclass
class ChangeBatch:
    """What one read of a source's change stream gives ``capture``: changes (in each shard's
    order), the position reading continues from after them (JSON, opaque to the core), gaps
    found, and — once the read has drained the stream — ``caught_up``: the time up to which the
    stream had been read completely. ``since`` (first read only): from when the stream's changes
    are complete (the stream's start, or its trim horizon)."""

    changes: list[Change]
    position: dict[str, Any]
    gaps: list[StreamGap] = field(default_factory=list)
    caught_up: datetime | None = None
    since: datetime | None = None
