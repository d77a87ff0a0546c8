"""Restore a dataset as it was at a moment: the newest base snapshot captured at or before it,
plus the change log replayed from the base's capture time up to the moment
(:mod:`.window` decides; :mod:`.replay` computes the final state; :func:`cloudkeep.restore.restore`
writes, checking the base snapshot's parts and content digest as always).

``at`` without a fraction of a second means the end of that second (a change stamped 14:06:59.4
is in ``--at 14:06:59``); it must be within the window and outside every gap.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .. import catalog, layout
from ..changes import utc
from ..errors import CloudkeepError, UsageError
from ..keys import keyring_for
from ..policy import Policy
from ..progress import Progress
from ..restore import RestoreResult
from ..restore import restore as restore_snapshot
from ..sources import Source
from ..stores import Store
from ..trust import expect_for
from . import window as _window
from .format import format_time
from .replay import Replay

log = logging.getLogger(__name__)


class OutsideWindowError(UsageError):
    """A moment the change log cannot restore (outside the window, or inside a gap): exit 2."""


def parse_moment(text: str, *, where: str = "--at") -> tuple[datetime, datetime]:
    """The moment a user gave (ISO 8601; no zone: UTC) and the last instant it covers (the end
    of its second when it has no fraction)."""
    try:
        at = utc(datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00")))
        end = at + timedelta(seconds=1) - timedelta(microseconds=1) if at.microsecond == 0 else at
    except ValueError:
        raise UsageError(f"bad {where}: {text[:60]!r} is not an ISO 8601 time "
                         "(e.g. 2026-12-07T14:06:59Z)") from None
    except OverflowError:  # year 1 with a positive offset, the last second of year 9999
        raise UsageError(f"bad {where}: {text[:60]!r} is out of range") from None
    return at, end


@dataclass
class AtResult:
    restore: RestoreResult
    at: datetime
    base: str
    base_captured_at: datetime
    replay: dict[str, int]
    log_store: str

    def as_dict(self) -> dict[str, Any]:
        return self.restore.as_dict() | {
            "at": format_time(self.at), "base": self.base,
            "base_captured_at": format_time(self.base_captured_at), "replay": self.replay,
            "log_store": self.log_store}


def log_store_for(policy: Policy, dataset: str, store: Store, store_name: str | None) -> Store:
    """Where the change log is read: the chosen copy store when it holds one, else the dataset's
    own store."""
    if store_name is None:
        return store
    for _ in store.list(layout.changelog_index_prefix(dataset)):
        return store
    return catalog.store_named(policy, dataset, None)


def restore_at(policy: Policy, dataset: str, at_text: str, into: str, *,
               overwrite: bool = False, store_name: str | None = None,
               allow_unsigned: bool = False, progress: Progress | None = None,
               source: Source | None = None) -> AtResult:
    """Restore ``dataset`` as it was at ``at_text`` into ``into``. OutsideWindowError (exit 2)
    for a moment outside the recoverable window or inside a gap, naming which, before anything
    is written."""
    if policy.continuous(dataset) is None and store_name is None:
        log.info("dataset %s is not continuous in the policy; using whatever log its store holds",
                 dataset)
    at, end = parse_moment(at_text)
    store = catalog.store_named(policy, dataset, store_name)
    log_store = log_store_for(policy, dataset, store, store_name)
    win = _window.compute(log_store, dataset)
    if log_store is not store:  # bases from the copy store, the log from the dataset's store
        copies = catalog.committed(store, dataset)
        win.bases = [b for b in copies if win.since is not None and b.captured_at >= win.since]
    base, why = win.locate(end)
    if base is None:
        raise OutsideWindowError(f"cannot restore {dataset} at {at_text}: {why}")
    expect = expect_for(policy, dataset, store_name, allow_unsigned=allow_unsigned)
    manifest = catalog.load_manifest(store, dataset, base.snapshot_id, expect=expect)
    keyring = keyring_for(policy)
    replay = Replay(log_store, dataset, base.captured_at, end, keyring=keyring,
                    recorded=manifest.source)
    log.info("restoring %s at %s: base %s (captured %s), %d logged changes replayed", dataset,
             format_time(end), base.snapshot_id, format_time(base.captured_at), replay.changes)
    try:
        result = restore_snapshot(policy, store, manifest, into, overwrite=overwrite,
                                  source=source, progress=progress, keyring=keyring,
                                  allow_unsigned=allow_unsigned, replay=replay)
    except CloudkeepError:
        raise
    return AtResult(result, end, base.snapshot_id, base.captured_at, replay.as_dict(),
                    log_store.describe())
