"""What prune keeps and removes of a continuously captured dataset (prune is the only deleter).

- Retention keeps, besides its own choices, the **base** of the point-in-time window: the newest
  snapshot captured at or before the window's start (``continuous.window``, default: as long as
  the tier's retention keeps snapshots), so every moment in the window still has a base.
- The log older than the oldest kept snapshot (less replay's slack) restores nothing: its index
  entries go first (uncommitting the segment), then the segments. Segments no entry references
  (a capture that crashed before its entry) go once older than :data:`ORPHAN_GRACE`. Gap
  records that end before the oldest kept snapshot go; superseded position entries go (the
  newest few stay).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from .. import layout, sequences
from ..advice import retention_span
from ..errors import CloudkeepError
from ..policy import Policy
from ..retention import Decision, SnapshotInfo
from ..schedule import Schedule
from ..stores import Store
from .format import parse_entry
from .gaps import list_gaps
from .replay import SLACK
from .window import compute

log = logging.getLogger(__name__)

ORPHAN_GRACE = timedelta(days=1)


def window_length(policy: Policy, dataset: str, now: datetime) -> timedelta | None:
    """How far back point-in-time restore reaches: ``continuous.window``, else about as long as
    the tier's retention keeps snapshots (None: the dataset is not continuous)."""
    settings = policy.continuous(dataset)
    if settings is None:
        return None
    if settings.window is not None:
        return settings.window
    tier = policy.tiers[policy.dataset(dataset).tier]
    interval = Schedule.parse(tier.schedule, policy.timezone).typical_interval(now)
    return retention_span(tier.retention, interval)


def keep_base(policy: Policy, dataset: str, decision: Decision, infos: list[SnapshotInfo],
              now: datetime) -> Decision:
    """``decision`` with the window's base kept (see the module docstring)."""
    length = window_length(policy, dataset, now)
    if length is None or not infos:
        return decision
    start = now - length
    ordered = sorted(infos, key=lambda i: (i.time, i.id))
    before = [i for i in ordered if i.time <= start]
    base = before[-1] if before else None
    if base is None or base.id not in decision.remove:
        return decision
    reasons = dict(decision.reasons)
    reasons[base.id] = [*reasons.get(base.id, []), "continuous: base of the point-in-time window"]
    return Decision([*decision.keep, base.id], [s for s in decision.remove if s != base.id],
                    reasons)


def collect(store: Store, dataset: str, kept: list[SnapshotInfo], now: datetime
            ) -> dict[str, int]:
    """Remove what the log no longer needs (see the module docstring); counts by kind."""
    out = {"changelog_entries": 0, "changelog_segments": 0, "changelog_gaps": 0,
           "changelog_positions": 0}
    if not any(True for _ in store.list(layout.changelog_prefix(dataset))):
        return out
    try:
        win = compute(store, dataset)
    except CloudkeepError as exc:
        log.warning("%s: change log left alone: %s", dataset, exc)
        return out
    referenced: set[str] = set()
    doomed_entries: list[str] = []
    doomed_segments: list[str] = []
    cutoff = (min(i.time for i in kept) - SLACK) if kept else None
    unreadable = False
    prefix = layout.changelog_index_prefix(dataset)
    for info in store.list(prefix):
        try:
            entry = parse_entry(store.get(info.key), info.key,
                                layout.changelog_segments_prefix(dataset))
        except (ValueError, CloudkeepError):
            unreadable = True  # left alone (verify reports it); its segment is unknown
            continue
        if cutoff is not None and entry.last_time < cutoff:
            doomed_entries.append(entry.key)
            doomed_segments.append(entry.segment)
        else:
            referenced.add(entry.segment)
    # an old (or forged) entry naming a segment a needed entry also names: the segment stays
    doomed_segments = [s for s in dict.fromkeys(doomed_segments) if s not in referenced]
    for info in store.list(layout.changelog_segments_prefix(dataset)):
        if unreadable:
            break  # which segments are orphans is unknown while an entry cannot be read
        if info.key in referenced or info.key in doomed_segments:
            continue
        if info.modified is not None and now - info.modified >= ORPHAN_GRACE:
            doomed_segments.append(info.key)
    gaps = []
    if cutoff is not None:
        ends = {g.gap.key: g.end for g in win.gaps}
        gaps = [g.key for g in list_gaps(store, dataset)
                if ends.get(g.key) is not None and ends[g.key] < cutoff]  # type: ignore[operator]
    positions_head = f"{layout.changelog_prefix(dataset)}positions/"
    streams = {i.key[len(positions_head):].split("/", 1)[0] for i in store.list(positions_head)}
    superseded = [k for s in sorted(streams)
                  for k in sequences.superseded(store, f"{positions_head}{s}/")]
    if doomed_entries:
        store.delete(doomed_entries)  # uncommit first: a crash leaves orphans, never dangling entries
    if doomed_segments:
        store.delete(doomed_segments)
    if gaps:
        store.delete(gaps)
    if superseded:
        store.delete(superseded)
    out.update(changelog_entries=len(doomed_entries), changelog_segments=len(doomed_segments),
               changelog_gaps=len(gaps), changelog_positions=len(superseded))
    return out


def log_blobs(store: Store, dataset: str) -> set[str] | None:
    """The blobs the change log's committed segments reference; None when an entry cannot be
    read (then which blobs the log needs is unknown: collect none)."""
    found: set[str] = set()
    for info in store.list(layout.changelog_index_prefix(dataset)):
        try:
            entry = parse_entry(store.get(info.key), info.key,
                                layout.changelog_segments_prefix(dataset))
        except (ValueError, CloudkeepError):
            return None
        found.update(entry.blobs)
    return found


