"""The memory of scheduled verifications, independent of the snapshots they checked.

A tier's ``verify: {drill: CRON, sample: CRON}`` asks for one drill per drill slot and one
sample per sample slot. Before a tick runs one, it *claims* the slot with a create-only record
``<dataset>/verify-slots/<level>/<slot>.json`` (``layout.verify_slot_key``); after, it adds the
outcome ``<slot>.outcome.json``. Prune never deletes either, so pruning the verified snapshot (and
its records under ``verifications/``) does not make the tick forget the slot ran, and two ticks
delivered at once cannot both run it: the second finds the claim taken.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from . import clock, layout
from .errors import CloudkeepError, ObjectExistsError, ObjectNotFoundError
from .stores import Store

log = logging.getLogger(__name__)


def claimed(store: Store, dataset: str, level: str, slot: datetime) -> bool:
    """Whether the slot was claimed (ran, runs, or was satisfied otherwise)."""
    return store.stat(layout.verify_slot_key(dataset, level, slot)) is not None


def claim(store: Store, dataset: str, level: str, slot: datetime, *, snapshot_id: str | None,
          run_id: str, satisfied_by: dict[str, Any] | None = None) -> bool:
    """Claim the slot, create-only. True: this caller owns it (and runs it unless
    ``satisfied_by`` says an earlier verification already counts); False: already claimed.
    Raises CloudkeepError when the store refuses the write."""
    body = {
        "format": 1,
        "dataset": dataset,
        "level": level,
        "slot": slot.isoformat(),
        "snapshot_id": snapshot_id,
        "claimed_at": clock.now().isoformat(),
        "run_id": run_id,
        "satisfied_by": satisfied_by,
    }
    try:
        store.put(layout.verify_slot_key(dataset, level, slot), json.dumps(body, indent=2).encode(),
                  if_absent=True)
    except ObjectExistsError:
        return False
    return True


def record_outcome(store: Store, report: Any, slot: datetime, record_key: str | None) -> None:
    """The outcome of a claimed slot (create-only, best effort)."""
    data = report.as_dict()
    body = {k: data.get(k) for k in ("dataset", "snapshot_id", "level", "ok", "started_at",
                                      "finished_at", "trigger", "restore_seconds", "rto_seconds",
                                      "rto_met", "items") if k in data}
    body |= {"format": 1, "slot": slot.isoformat(), "record": record_key,
             "problems": [str(p) for p in report.problems][:20]}
    try:
        store.put(layout.verify_slot_outcome_key(report.dataset, report.level, slot),
                  json.dumps(body, indent=2).encode(), if_absent=True)
    except ObjectExistsError:
        pass
    except CloudkeepError as exc:
        log.warning("dataset %s: could not record the outcome of the %s slot %s: %s",
                    report.dataset, report.level, slot.isoformat(), exc)


def outcomes(store: Store, dataset: str, level: str) -> list[str]:
    """Keys of the recorded outcomes of ``level``, oldest slot first."""
    suffix = ".outcome.json"
    return sorted(i.key for i in store.list(layout.verify_slots_prefix(dataset, level))
                  if i.key.endswith(suffix))


def latest_outcome(store: Store, dataset: str, level: str) -> dict[str, Any] | None:
    """The outcome of the newest scheduled ``level`` slot that ran, or None."""
    for key in reversed(outcomes(store, dataset, level)):
        try:
            data = json.loads(store.get(key))
        except (ObjectNotFoundError, CloudkeepError, ValueError):
            continue
        if isinstance(data, dict):
            return data
    return None
