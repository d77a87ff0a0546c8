"""Checkpoints of an unfinished snapshot, kept in the store next to its parts.

A run that cannot finish in one invocation (a time budget, a crash, ``kill -9``) leaves:

- ``checkpoints/run.json`` — the run's plan (source description, segment count, codec options,
  the source's own plan state), written once, create-only, before any part; every later
  invocation reads the snapshot with exactly this plan;
- ``checkpoints/segment-<n>/<seq>.json`` — per segment, the source's cursor (DynamoDB
  LastEvaluatedKey, Firestore document name, Cosmos DB continuation) after the last part it
  lists, those parts, and the content digest of their items; every few parts a new entry of an
  append-only sequence (create-only; the newest is current, ``sequences.py``);
- ``checkpoints/segment-<n>.done.json`` — the segment's final record, create-only;
- ``checkpoints/lease-<n>/<generation>.json`` — the lease of the worker reading the segment
  (fan-out; a fenced lock, ``lock.py``);
- ``checkpoints/abandoned.json`` — the plan can no longer be resumed (create-only).

Nothing here is ever overwritten or deleted by a run. A checkpoint only ever names parts that were
written before it, so the parts it lists are complete; parts written after it (by a run that then
died or was fenced) stay where they are, unreferenced: the resumed segment writes its next parts
under the next free index, and prune removes the unreferenced ones once the snapshot is committed
(with its checkpoints). Nothing here is visible as a snapshot: only the manifest, written last,
makes one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from . import layout, sequences
from .codec import ContentDigest, PartStats
from .errors import CloudkeepError, ObjectExistsError, ObjectNotFoundError
from .stores import Store

STATE_FORMAT = 1
DEFAULT_RESERVE = 30.0  # seconds kept free before a deadline, at least
# An unfinished snapshot started longer ago than this is not resumed by any run (a new one
# starts); prune removes it once nothing has been written to it for its grace period.
RESUME_WITHIN = timedelta(hours=24)


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
        """Above every part this record lists (other indexes may be taken too: parts are never
        reused, so a writer moves on past any name it finds taken)."""
        return max((p.index for p in self.parts), default=-1) + 1

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
    """The segment's final record if it is done, else its newest readable checkpoint (or the
    previous release's single checkpoint), else None."""
    key = layout.segment_done_key(dataset, snapshot_id, segment)
    try:
        return SegmentRecord.from_bytes(store.get(key), key)
    except ObjectNotFoundError:
        pass
    found = sequences.newest(store, layout.segment_checkpoints_prefix(dataset, snapshot_id, segment),
                             SegmentRecord.from_bytes)
    if found is not None:
        return found[1]
    key = layout.checkpoint_key(dataset, snapshot_id, segment)
    try:
        return SegmentRecord.from_bytes(store.get(key), key)
    except ObjectNotFoundError:
        return None


def save_segment(store: Store, dataset: str, snapshot_id: str, record: SegmentRecord, *,
                 after: int | None = None) -> int:
    """Append ``record`` as the segment's newest checkpoint (create-only), after entry ``after``
    when the writer knows it (else after the newest listed). Returns its number."""
    return sequences.append(store, layout.segment_checkpoints_prefix(dataset, snapshot_id,
                                                                     record.segment),
                            record.to_bytes(), after=after)


def last_checkpoint_number(store: Store, dataset: str, snapshot_id: str, segment: int) -> int:
    """The number of the segment's newest checkpoint entry (-1: none yet)."""
    return max(sequences.numbers(
        store, layout.segment_checkpoints_prefix(dataset, snapshot_id, segment)), default=-1)


def finish_segment(store: Store, dataset: str, snapshot_id: str,
                   record: SegmentRecord) -> SegmentRecord:
    """Write the segment's final record, create-only. If another worker finished it first, its
    record is the segment's (returned instead of ``record``)."""
    key = layout.segment_done_key(dataset, snapshot_id, record.segment)
    try:
        store.put(key, record.to_bytes(), if_absent=True)
        return record
    except ObjectExistsError:
        return SegmentRecord.from_bytes(store.get(key), key)


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


def is_abandoned(store: Store, dataset: str, snapshot_id: str) -> bool:
    return store.stat(layout.abandoned_key(dataset, snapshot_id)) is not None


def abandon(store: Store, dataset: str, snapshot_id: str, reason: str) -> None:
    """Mark an unfinished snapshot as never to be resumed or committed (create-only)."""
    body = json.dumps({"snapshot_id": snapshot_id, "reason": reason,
                       "at": datetime.now().astimezone().isoformat()}).encode()
    try:
        store.put(layout.abandoned_key(dataset, snapshot_id), body, if_absent=True)
    except ObjectExistsError:
        pass


def unfinished_snapshots(store: Store, dataset: str) -> list[str]:
    """Snapshots of ``dataset`` with a run state, no manifest and not abandoned, oldest first."""
    states, manifests, abandoned = set(), set(), set()
    for info in store.list(layout.snapshots_prefix(dataset)):
        sid = layout.parse_run_state_key(dataset, info.key)
        if sid:
            states.add(sid)
        sid = layout.parse_manifest_key(dataset, info.key)
        if sid:
            manifests.add(sid)
        if info.key.endswith("/" + layout.CHECKPOINTS_DIR + "/abandoned.json"):
            abandoned.add(info.key[len(layout.snapshots_prefix(dataset)):].split("/", 1)[0])
    return sorted(states - manifests - abandoned)
