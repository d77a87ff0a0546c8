"""The run index: what ran, kept when retention prunes what it made.

Every committed snapshot gets one create-only entry
``<dataset>/runs/<yyyy>/<mm>/<dd>/<capture time>-<snapshot_id>.json`` (``layout.run_index_key``),
written right after the commit. Prune never deletes it, so the history of successful runs
survives retention: the report draws RPO breaches from it, where a pruned gap is not an outage
and a real outage shows exactly. Its key alone carries the capture time (to the second) and the
snapshot id: the history of a year of hourly runs is a listing of 8,760 keys, no object read.

A store written by an earlier release has no index: the history is then the union of the index
and the snapshots still committed (which also covers a run that crashed between its commit and
its index entry).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from . import catalog, layout, timeline
from .errors import CloudkeepError, ObjectExistsError

if TYPE_CHECKING:
    from .manifest import Manifest
    from .stores import Store

log = logging.getLogger(__name__)


def record(store: Store, manifest: Manifest) -> str | None:
    """Add the committed ``manifest`` to the run index (create-only; an entry already there is
    left as it is). Best effort: returns the key, or None when the store refused (logged)."""
    captured = timeline.remember(store, manifest)
    key = layout.run_index_key(manifest.dataset, captured, manifest.snapshot_id)
    body = {
        "format": 1,
        "dataset": manifest.dataset,
        "snapshot_id": manifest.snapshot_id,
        "captured_at": captured.isoformat(),
        "slot": manifest.slot.isoformat() if manifest.slot else None,
        "trigger": manifest.trigger,
        "started_at": manifest.started_at.isoformat(),
        "finished_at": manifest.finished_at.isoformat(),
        "method": manifest.method,
        "consistency": manifest.consistency.mode,
        "items": manifest.totals.items,
        "stored_bytes": manifest.totals.stored_bytes,
    }
    try:
        store.put(key, json.dumps(body, indent=2).encode(), if_absent=True)
    except ObjectExistsError:
        pass
    except CloudkeepError as exc:
        log.warning("dataset %s: could not add %s to the run index: %s", manifest.dataset,
                    manifest.snapshot_id, exc)
        return None
    return key


@dataclass(frozen=True)
class Run:
    """One successful run: the snapshot it committed and when its data was captured."""

    snapshot_id: str
    captured_at: datetime
    pruned: bool = False  # in the index, no longer committed

    @property
    def id_time(self) -> datetime:
        return timeline.id_time(self.snapshot_id)


def indexed(store: Store, dataset: str) -> dict[str, datetime]:
    """snapshot id → capture time (to the second) of every run-index entry of ``dataset``."""
    out: dict[str, datetime] = {}
    for info in store.list(layout.runs_prefix(dataset)):
        parsed = layout.parse_run_index_key(dataset, info.key)
        if parsed is not None:
            out[parsed[1]] = parsed[0]
    return out


def history(store: Store, dataset: str, *, as_of: datetime | None = None,
            committed: list[timeline.Captured] | None = None) -> list[Run]:
    """Every successful run of ``dataset``, oldest capture first: the run index, plus the
    committed snapshots it lacks (an earlier release's, or a run that stopped right after its
    commit). With ``as_of``, only runs that count at that time (their id's time not after it)."""
    entries = indexed(store, dataset)
    if committed is None:
        committed = catalog.committed(store, dataset)
    live = {c.snapshot_id: c.captured_at for c in committed}
    runs = [Run(sid, at, pruned=sid not in live) for sid, at in entries.items()]
    runs += [Run(sid, at) for sid, at in live.items() if sid not in entries]
    if as_of is not None:
        runs = [r for r in runs if r.id_time <= as_of]
    runs.sort(key=lambda r: (r.captured_at, r.snapshot_id))
    return runs
