"""A snapshot's time, in one place: its *capture time* and its age.

The capture time is when the data was read: the consistency time of a point-in-time read
(``consistency.time``), else the start of the run (``started_at``: a fuzzy scan reads items
between its start and its end, so the start is the time its oldest item can be from). The
snapshot id keeps the schedule slot (so a retried trigger finds the same snapshot); everything a
user picks a restore point by — ``list``, ``show``, ``@latest``, retention, ``plan``,
``report``, the watchdog and its metrics — uses the capture time.

A snapshot counts *as of* a time ``now`` when its id's time (the slot of a scheduled run, the
start of an on-demand one) is not after ``now``; its age at ``now`` is ``now`` minus its capture
time, never negative (a point-in-time source's consistency time is the source's own clock, which
a replay with ``--now`` in the past does not move).

Capture times are read from the manifests and remembered per process (a committed manifest
never changes), so a warm function does not read the same manifest twice.
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from . import layout
from .errors import CloudkeepError

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from .manifest import Manifest
    from .stores import Store

_CACHE_LIMIT = 100_000
_cache: dict[tuple[str, str, str], datetime] = {}
_cache_lock = threading.Lock()


def capture_time(manifest: Manifest) -> datetime:
    """When the snapshot's data was read: ``consistency.time`` of a point-in-time read, else
    ``started_at`` (manifests of every release carry both fields)."""
    consistency = manifest.consistency
    at = consistency.time if consistency.mode == "point-in-time" and consistency.time else None
    return _utc(at or manifest.started_at)


def id_time(snapshot_id: str) -> datetime:
    """The time in a snapshot id: the slot of a scheduled run, the start of an on-demand one."""
    return datetime.strptime(snapshot_id[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def age(captured: datetime, now: datetime) -> timedelta:
    """The age at ``now`` of data captured at ``captured``; never negative."""
    return max(timedelta(0), now - captured)


@dataclass(frozen=True)
class Captured:
    """One committed snapshot on the timeline."""

    snapshot_id: str
    captured_at: datetime

    @property
    def id_time(self) -> datetime:
        return id_time(self.snapshot_id)


def remember(store: Store, manifest: Manifest) -> datetime:
    """The manifest's capture time, remembered for :func:`committed` (call after loading or
    committing a manifest, so it is not read again)."""
    at = capture_time(manifest)
    with _cache_lock:
        if len(_cache) >= _CACHE_LIMIT:
            _cache.clear()
        _cache[(_where(store), manifest.dataset, manifest.snapshot_id)] = at
    return at


def _where(store: Store) -> str:
    """The store's location as a cache key (a relative file-store path made absolute)."""
    where = store.describe()
    if where.startswith("file:") and not os.path.isabs(where[5:]):
        where = "file:" + os.path.abspath(where[5:])
    return where


def committed(store: Store, dataset: str, *, ids: list[str] | None = None,
              as_of: datetime | None = None) -> list[Captured]:
    """The dataset's committed snapshots (``ids``, or every one in ``store``) with their capture
    times, oldest capture first; with ``as_of``, only those that count at that time. A manifest
    that cannot be read or is not bound to its key is left out (with a warning): the trusted
    listings (``catalog.scan``) report it."""
    from .catalog import load_manifest, snapshot_ids

    if ids is None:
        ids = snapshot_ids(store, dataset)
    if as_of is not None:
        ids = [i for i in ids if id_time(i) <= as_of]
    where = _where(store)
    with _cache_lock:
        known = {i: _cache.get((where, dataset, i)) for i in ids}
    missing = [i for i, at in known.items() if at is None]

    def load(snapshot_id: str) -> tuple[str, datetime | None]:
        try:
            return snapshot_id, remember(store, load_manifest(store, dataset, snapshot_id))
        except CloudkeepError as exc:  # reported by the trusted listings (catalog.scan)
            log.warning("%s@%s: not on the timeline: %s", dataset, snapshot_id, exc)
            return snapshot_id, None

    if missing:
        if len(missing) == 1:
            known.update([load(missing[0])])
        else:
            with ThreadPoolExecutor(max_workers=8) as pool:
                known.update(pool.map(load, missing))
    out = [Captured(i, at) for i, at in known.items() if at is not None]
    out.sort(key=lambda c: (c.captured_at, c.snapshot_id))
    return out


def newest(store: Store, dataset: str, as_of: datetime | None = None) -> Captured | None:
    """The snapshot with the newest capture time (that counts at ``as_of``), or None."""
    found = committed(store, dataset, as_of=as_of)
    return found[-1] if found else None


def _utc(at: datetime) -> datetime:
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC)


def format_id_time(at: datetime) -> str:
    """``YYYYMMDDTHHMMSSZ`` (as in snapshot ids and run-index keys)."""
    return layout.format_time(at)
