"""Checkpoints of an unfinished snapshot, kept in the store next to its parts.

A run that cannot finish in one invocation (a time budget, a crash, ``kill -9``) leaves:

- ``checkpoints/run.json`` — the run's plan (source description, segment count, codec options,
  the source's own plan state), written once, create-only, before any part; every later
  invocation reads the snapshot with exactly this plan;
- ``checkpoints/segment-<n>.json`` — per segment, the source's cursor (DynamoDB
  LastEvaluatedKey, Firestore document name, Cosmos DB continuation) after the last part it
  lists, those parts, and the content digest of their items; overwritten atomically (a whole
  object put) every few parts;
- ``checkpoints/segment-<n>.done.json`` — the segment's final record, create-only;
- ``checkpoints/segment-<n>.lock`` — the lease of the worker reading the segment (fan-out).

A checkpoint only ever names parts that were written before it, so the parts it lists are
complete; parts written after it (by a run that then died) are removed when the segment resumes.
Nothing here is visible as a snapshot: only the manifest, written last, makes one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from . import layout
from .codec import ContentDigest, PartStats
from .errors import CloudkeepError, ObjectNotFoundError
from .stores import Store

STATE_FORMAT = 1
DEFAULT_RESERVE = 30.0  # seconds kept free before a deadline, at least


class CheckpointError(CloudkeepError):
    """A checkpoint object is unreadable (the snapshot then starts afresh)."""


@dataclass
class RunState:
    """The plan of one snapshot, shared by every invocation and worker that reads it."""

    snapshot_id: str
    dataset: str
    run_id: str
    trigger: str
    slot: str | None
    started_at: str
    described: dict[str, Any]
    method: str
    consistency: dict[str, Any]
    ignores: list[str]
    segments: int
    part_size: int
    level: int
    retain_until: str | None = None
    source_state: dict[str, Any] | None = None
    fanout: bool = False
    checkpoint_every: int = 4
    encryption: dict[str, Any] | None = None  # the wrapped data keys (never a key in the clear)
    format: int = STATE_FORMAT

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True, default=str).encode()

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> RunState:
        try:
            doc = json.loads(data)
            if doc.get("format") != STATE_FORMAT:
                raise ValueError(f"unknown format {doc.get('format')!r}")
            return cls(**doc)
        except (ValueError, TypeError, AttributeError) as exc:
            raise CheckpointError(f"{where}: unreadable run state: {exc}") from exc

    @property
    def slot_time(self) -> datetime | None:
        return datetime.fromisoformat(self.slot) if self.slot else None

    @property
    def started(self) -> datetime:
        return datetime.fromisoformat(self.started_at)

    @property
    def retain_until_time(self) -> datetime | None:
        return datetime.fromisoformat(self.retain_until) if self.retain_until else None


@dataclass
class SegmentRecord:
    """What one segment has written so far, and where its reading continues."""

    segment: int
    cursor: Any = None
    parts: list[PartStats] = field(default_factory=list)
    digest_value: int = 0
    digest_count: int = 0
    done: bool = False

    @property
    def next_index(self) -> int:
        return len(self.parts)

    def digest(self, ignores: list[str]) -> ContentDigest:
        return ContentDigest(self.digest_value, self.digest_count, ignores=ignores)

    def to_bytes(self) -> bytes:
        return json.dumps({
            "segment": self.segment,
            "cursor": self.cursor,
            "parts": [asdict(p) for p in self.parts],
            "digest": {"value": f"{self.digest_value:064x}", "count": self.digest_count},
            "done": self.done,
        }, sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> SegmentRecord:
        try:
            doc = json.loads(data)
            return cls(
                segment=int(doc["segment"]),
                cursor=doc.get("cursor"),
                parts=[PartStats(**p) for p in doc["parts"]],
                digest_value=int(doc["digest"]["value"], 16),
                digest_count=int(doc["digest"]["count"]),
                done=bool(doc.get("done")),
            )
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise CheckpointError(f"{where}: unreadable checkpoint: {exc}") from exc


class Deadline:
    """The time an invocation has left. A run stops cleanly after the part it is writing when
    less than ``reserve`` seconds — or twice its slowest part so far — are left."""

    def __init__(self, remaining: Callable[[], float], *, reserve: float = DEFAULT_RESERVE) -> None:
        self._remaining = remaining
        self.reserve = reserve

    @classmethod
    def after(cls, seconds: float, *, reserve: float | None = None) -> Deadline:
        """A budget of ``seconds`` from now (e.g. ``cloudkeep run --budget 10m``)."""
        end = time.monotonic() + seconds
        return cls(lambda: end - time.monotonic(),
                   reserve=min(DEFAULT_RESERVE, seconds / 10) if reserve is None else reserve)

    @classmethod
    def from_lambda_context(cls, context: Any, *, reserve: float = 60.0) -> Deadline | None:
        getter = getattr(context, "get_remaining_time_in_millis", None)
        if getter is None:
            return None
        return cls(lambda: float(getter()) / 1000.0, reserve=reserve)

    def remaining(self) -> float:
        return self._remaining()

    def near(self, slowest_part: float = 0.0) -> bool:
        return self.remaining() < max(self.reserve, 2.0 * slowest_part)


# ------------------------------------------------------------------ store operations


def load_run_state(store: Store, dataset: str, snapshot_id: str) -> RunState | None:
    key = layout.run_state_key(dataset, snapshot_id)
    try:
        data = store.get(key)
    except ObjectNotFoundError:
        return None
    return RunState.from_bytes(data, key)


def load_segment(store: Store, dataset: str, snapshot_id: str, segment: int) -> SegmentRecord | None:
    """The segment's final record if it is done, else its latest checkpoint, else None."""
    for key in (layout.segment_done_key(dataset, snapshot_id, segment),
                layout.checkpoint_key(dataset, snapshot_id, segment)):
        try:
            data = store.get(key)
        except ObjectNotFoundError:
            continue
        return SegmentRecord.from_bytes(data, key)
    return None


def done_segments(store: Store, dataset: str, snapshot_id: str) -> set[int]:
    out = set()
    head = layout.checkpoints_prefix(dataset, snapshot_id)
    for info in store.list(head):
        name = info.key[len(head):]
        if name.startswith("segment-") and name.endswith(".done.json"):
            try:
                out.add(int(name[len("segment-"):-len(".done.json")]))
            except ValueError:
                continue
    return out


def unfinished_snapshots(store: Store, dataset: str) -> list[str]:
    """Snapshots of ``dataset`` with a run state and no manifest, oldest first."""
    states, manifests = set(), set()
    for info in store.list(layout.snapshots_prefix(dataset)):
        sid = layout.parse_run_state_key(dataset, info.key)
        if sid:
            states.add(sid)
        sid = layout.parse_manifest_key(dataset, info.key)
        if sid:
            manifests.add(sid)
    return sorted(states - manifests)


def remove_checkpoints(store: Store, dataset: str, snapshot_id: str) -> None:
    keys = [i.key for i in store.list(layout.checkpoints_prefix(dataset, snapshot_id))]
    if keys:
        store.delete(keys)
