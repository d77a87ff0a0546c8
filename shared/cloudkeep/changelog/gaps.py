"""Gaps in the change log: recorded, alerted, closed by the next base snapshot.

A gap is a time range whose changes the log may not hold (an expired stream position, a trimmed
shard, a batch that failed). It is recorded create-only as ``<dataset>/changelog/gaps/...`` with
``start``, ``end`` (None: still open — it ends where the next base snapshot's capture starts)
and ``reason``; :func:`record_gap` also raises the ``capture_gap`` alert. A moment inside a gap,
or after it with no base snapshot started after it, cannot be restored.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .. import alerts, layout
from .. import clock as _clock
from ..changes import utc
from ..errors import CloudkeepError, ObjectExistsError
from ..registry import store_for_dataset
from ..stores import Store
from .format import format_time, parse_time

if TYPE_CHECKING:
    from ..policy import Policy

log = logging.getLogger(__name__)

ALERT_KIND = "capture_gap"
MAX_GAP_BYTES = 64 * 1024
MAX_REASON = 500


@dataclass(frozen=True)
class Gap:
    start: datetime
    end: datetime | None
    reason: str
    recorded_at: str
    key: str

    def as_dict(self, closed_by: str | None = None, closed_at: datetime | None = None
                ) -> dict[str, Any]:
        return {"start": format_time(self.start),
                "end": None if self.end is None else format_time(self.end),
                "reason": self.reason, "recorded_at": self.recorded_at,
                "closed_by": closed_by,
                "closed_at": None if closed_at is None else format_time(closed_at)}


def record_gap(policy: Policy, dataset: str, *, start: datetime, end: datetime | None,
               reason: str, store: Store | None = None,
               notifier: alerts.Notifier | None = None) -> Gap:
    """Record that the log may miss changes from ``start`` to ``end`` (None: up to the next base
    snapshot) and raise the ``capture_gap`` alert. Recording the same gap twice writes it once.
    Only creates objects."""
    policy.dataset(dataset)
    store = store if store is not None else store_for_dataset(policy, dataset)
    start = utc(start)
    end = None if end is None else utc(end)
    if end is not None and end < start:
        start, end = end, start
    reason = " ".join(str(reason).split())[:MAX_REASON] or "unknown"
    body = {"format": 1, "start": format_time(start),
            "end": None if end is None else format_time(end), "reason": reason}
    gap_id = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
    key = layout.changelog_gap_key(dataset, start, gap_id)
    now = _clock.now()
    body["recorded_at"] = now.isoformat()
    try:
        store.put(key, json.dumps(body, indent=1).encode(), if_absent=True)
    except ObjectExistsError:
        pass  # recorded already (the same gap seen again)
    span = f"from {format_time(start)} to {'the next base snapshot' if end is None else format_time(end)}"
    message = f"change log gap {span}: {reason}"
    log.warning("dataset %s: %s", dataset, message)
    try:
        notify = notifier or alerts.Notifier(alerts.channels_for(policy),
                                             alerts.secret_values(policy))
        alerts.update(store, dataset, {ALERT_KIND: message}, notify,
                      tier=policy.dataset(dataset).tier, now=now)
    except CloudkeepError as exc:  # the gap is recorded; the alert is retried by the next one
        log.error("dataset %s: could not raise the gap alert: %s", dataset, exc)
    return Gap(start=start, end=end, reason=reason, recorded_at=now.isoformat(), key=key)


def _parse_gap(data: bytes, key: str) -> Gap:
    if len(data) > MAX_GAP_BYTES:
        raise ValueError("gap record too large")
    doc = json.loads(data)
    if not isinstance(doc, dict) or doc.get("format") != 1:
        raise ValueError("not a gap record")
    end = doc.get("end")
    return Gap(start=parse_time(doc.get("start")), end=None if end is None else parse_time(end),
               reason=str(doc.get("reason", ""))[:MAX_REASON],
               recorded_at=str(doc.get("recorded_at", "")), key=key)


def list_gaps(store: Store, dataset: str) -> list[Gap]:
    """Every recorded gap, oldest first. An unreadable record counts as a gap from the time in
    its name with no end (a damaged record must not hide a gap)."""
    out = []
    prefix = layout.changelog_gaps_prefix(dataset)
    for info in store.list(prefix):
        try:
            out.append(_parse_gap(store.get(info.key), info.key))
        except (ValueError, CloudkeepError) as exc:
            log.warning("%s: unreadable gap record (%s); treated as an open gap", info.key, exc)
            try:
                start = datetime.strptime(info.key[len(prefix):].split("-")[0],
                                          layout.CHANGELOG_TIME_FORMAT)
            except ValueError:
                start = datetime.min
            out.append(Gap(start=utc(start), end=None, reason=f"unreadable gap record ({exc})",
                           recorded_at="", key=info.key))
    return sorted(out, key=lambda g: g.start)
