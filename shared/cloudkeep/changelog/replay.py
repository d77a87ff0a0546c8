"""Replaying the change log onto a base snapshot: the state of a dataset at a moment.

The final state of every item the log changed between the base's capture time and the moment is
its last change there by (time, sequence) — a put of its line or a remove — whatever order the
segments come in and however often a batch was delivered. Restore writes the base snapshot's
items except those the log changed, then the changed items' final lines (removes are simply not
written: the target starts empty). Replay starts :data:`SLACK` before the base's capture time:
a source may stamp its changes to the second (DynamoDB) or the minute (DynamoDB Local), so a
change made just after the base started can carry an earlier time; replaying a change the
snapshot already holds is harmless — puts and removes are idempotent and the last one wins.

Memory holds one entry per item changed in the replayed span (its key and final line), at most
:data:`MAX_REPLAY_BYTES` of them: a longer span is refused (:class:`ReplayTooLargeError`) before
anything is written — restore from a base snapshot nearer the moment.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..capabilities import DeletesItems, able
from ..changes import Change
from ..errors import RestoreError
from ..itemkeys import key_bytes, key_of
from ..sources import RestoreWriter
from ..stores import Store
from .reader import changes_between

if TYPE_CHECKING:
    from ..keys import Keyring

log = logging.getLogger(__name__)

SLACK = timedelta(seconds=60)
MAX_REPLAY_BYTES = 1 << 30
"""Keys and final lines replay holds in memory at most (about; per-entry overhead aside)."""


class ReplayTooLargeError(RestoreError):
    """The items changed between the base snapshot and the moment do not fit in replay's memory."""


class Replay:
    """The log's final changes from ``start`` to ``end`` (inclusive), by item; a line filter and
    the lines to add for :func:`cloudkeep.restore.restore`."""

    def __init__(self, store: Store, dataset: str, start: datetime, end: datetime, *,
                 keyring: Keyring | None, recorded: Mapping[str, Any]) -> None:
        self.recorded = dict(recorded)
        self.final: dict[bytes, tuple[tuple[datetime, str], Change]] = {}
        self.changes = 0
        self.replaced = 0  # base lines left out (their item changed); thread-safe
        self._lock = threading.Lock()
        held_bytes = 0
        for change in changes_between(store, dataset, start - SLACK, end, keyring=keyring):
            self.changes += 1
            order = (change.time, change.sequence)
            kb = key_bytes(change.key)
            held = self.final.get(kb)
            if held is None or held[0] < order:
                held_bytes += len(change.line or b"") - (
                    len(held[1].line or b"") if held is not None else -len(kb) - 100)
                if held_bytes > MAX_REPLAY_BYTES:
                    raise ReplayTooLargeError(
                        f"{dataset}: the items changed from {start:%Y-%m-%dT%H:%M:%SZ} to "
                        f"{end:%Y-%m-%dT%H:%M:%SZ} exceed replay's {MAX_REPLAY_BYTES >> 20} MiB "
                        "in memory; restore from a base snapshot nearer the moment")
                self.final[kb] = (order, change)

    def keep(self, line: bytes) -> bool:
        """Whether a base snapshot's line stays (its item was not changed in the span)."""
        if not self.final:
            return True
        key = key_of(self.recorded, json.loads(line))
        if key is None or key_bytes(key) not in self.final:
            return True
        with self._lock:
            self.replaced += 1
        return False

    def write(self, writer: RestoreWriter, chunk: int = 500) -> int:
        """Write the final lines (after the base snapshot); how many were written. A writer
        that deletes (``DeletesItems``: an ``--overwrite`` into a target that may hold them)
        also deletes the items removed in the span."""
        deleter = able(writer, DeletesItems)
        if deleter is not None:
            removed = [c.key for _, c in self.final.values() if c.line is None]
            for start in range(0, len(removed), chunk):
                deleter.delete_keys(removed[start:start + chunk])
        batch: list[bytes] = []
        written = 0
        for line in self.lines():
            batch.append(line)
            if len(batch) >= chunk:
                writer.write(batch)
                written += len(batch)
                batch = []
        if batch:
            writer.write(batch)
            written += len(batch)
        return written

    def lines(self) -> Iterator[bytes]:
        """The final lines of the items the span changed and did not remove."""
        for _, change in self.final.values():
            if change.line is not None:
                yield change.line

    @property
    def removed(self) -> int:
        return sum(1 for _, c in self.final.values() if c.line is None)

    def as_dict(self) -> dict[str, int]:
        return {"changes_read": self.changes, "items_changed": len(self.final),
                "items_removed": self.removed}
