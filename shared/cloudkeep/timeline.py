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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from . import layout

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


def remembered(store: Store, dataset: str, ids: list[str]) -> dict[str, datetime | None]:
    """The capture times this process remembers of ``ids`` (None: not read yet); the committed
    snapshots with their capture times are ``catalog.committed``."""
    where = _where(store)
    with _cache_lock:
        return {i: _cache.get((where, dataset, i)) for i in ids}


def _utc(at: datetime) -> datetime:
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC)


def format_id_time(at: datetime) -> str:
    """``YYYYMMDDTHHMMSSZ`` (as in snapshot ids and run-index keys)."""
    return layout.format_time(at)
