"""Use cases of legal holds: :func:`hold_add`, :func:`hold_remove`, :func:`hold_list`. A held
snapshot is kept by retention whatever its rules say; holds stack, each with its own id."""

from __future__ import annotations

from .. import audit, extras, holds
from ..catalog import resolve
from ..holds import Hold
from ..policy import Policy
from ..registry import store_for_dataset
from ..results import HoldRelease, Rows


@extras.translating
def hold_add(policy: Policy, ref: str, reason: str) -> Hold:
    """Put the snapshot ``ref`` under a new legal hold with ``reason``; audited. Returns the
    hold (its ``hold_id`` releases it)."""
    store, manifest = resolve(policy, ref)
    hold = holds.add(store, manifest, reason)
    audit.write(store, "hold_add", outcome="ok", dataset=manifest.dataset,
                snapshot_id=manifest.snapshot_id,
                detail={"hold_id": hold.hold_id, "reason": hold.reason})
    return hold


@extras.translating
def hold_remove(policy: Policy, ref: str, hold_id: str | None = None) -> HoldRelease:
    """Release one legal hold of the snapshot ``ref`` (``hold_id`` is needed when it has
    several); the other holds stay. Audited."""
    store, manifest = resolve(policy, ref)
    released, rest = holds.remove(store, manifest, hold_id)
    audit.write(store, "hold_remove", outcome="ok", dataset=manifest.dataset,
                snapshot_id=manifest.snapshot_id,
                detail={"hold_id": released.hold_id, "reason": released.reason,
                        "still_held_by": [h.hold_id for h in rest]})
    return HoldRelease(f"{manifest.dataset}@{manifest.snapshot_id}", released.hold_id,
                       released.reason, list(rest))


@extras.translating
def hold_list(policy: Policy, dataset: str | None = None) -> Rows:
    """Every active legal hold (of ``dataset``, or of every dataset), one row per hold; a
    ledger that cannot be read is a problem, never hiding the others."""
    rows: Rows = Rows([])
    for name in [dataset] if dataset else sorted(policy.datasets):
        for held in holds.all_for(store_for_dataset(policy, name), name, rows.problems).values():
            rows.rows.extend(h.as_dict() for h in held)
    return rows
