"""Use cases that read what the stores hold: :func:`list_snapshots`, :func:`show_snapshot` and
:func:`audit_log`. They never write."""

from __future__ import annotations

from typing import Any

from .. import audit, copies, extras, holds, timeline
from .. import verify as verifications
from ..catalog import resolve, scan, store_named
from ..changelog import window
from ..policy import Policy
from ..registry import open_store
from ..results import AuditLog, SnapshotDetail, SnapshotListing
from ..stores import Store
from ..trust import expect_for


@extras.translating
def list_snapshots(policy: Policy, dataset: str | None = None, *,
                   store_name: str | None = None) -> SnapshotListing:
    """The committed snapshots of ``dataset`` (or of every dataset; in the copy store
    ``store_name`` if given), oldest capture first, each with its capture time, legal holds,
    verified copies, last verification and drill. A manifest that cannot be trusted (forged,
    replayed, tampered, downgraded) or read is never listed: it is in ``refused``."""
    names = [dataset] if dataset else sorted(policy.datasets)
    listing = SnapshotListing([])
    for name in names:
        store = store_named(policy, name, store_name)
        found = scan(store, name, expect=expect_for(policy, name, store_name))
        listing.refused.extend(found.refused)
        ledger_problems: list[str] = []
        held = holds.all_for(store, name, ledger_problems)
        listing.problems.extend(ledger_problems)
        record_problems: list[str] = []
        checked = verifications.by_snapshot(store, name, record_problems)
        for manifest in sorted(found.manifests,
                               key=lambda m: (timeline.capture_time(m), m.snapshot_id)):
            row = manifest.summary()
            row["captured_at"] = timeline.capture_time(manifest).isoformat()
            active = held.get(manifest.snapshot_id, [])
            row["hold"] = holds.reasons(active)
            row["holds"] = [h.as_dict() for h in active]
            row["copies"] = copies.verified_stores(store, name, manifest.snapshot_id,
                                                   record_problems)
            records = checked.get(manifest.snapshot_id, [])
            drills = [r for r in records if r.get("level") == "drill"]
            row["last_verification"] = verifications.brief(records[-1]) if records else None
            row["last_drill"] = verifications.brief(drills[-1]) if drills else None
            row["authentic"] = True  # every manifest listed passed cloudkeep.trust
            row["signed"] = manifest.authentication is not None
            mine = [p for p in [*ledger_problems, *record_problems]
                    if f"{name}@{manifest.snapshot_id}" in p or f"/{manifest.snapshot_id}/" in p]
            if mine:
                row["problems"] = mine
            listing.rows.append(row)
        listing.problems.extend(record_problems)
        if store_name is None:  # continuous capture: the window and gaps (s16-capture)
            summary = window.summary(policy, name, store)
            if summary is not None:
                listing.windows[name] = summary
                for row in listing.rows:
                    if row.get("dataset") == name:
                        row["continuous"] = summary
    return listing


@extras.translating
def show_snapshot(policy: Policy, ref: str, *, store_name: str | None = None,
                  allow_unsigned: bool = False) -> SnapshotDetail:
    """The snapshot ``ref``: its manifest (JSON form) with its ref, capture time, store
    location, legal holds, copies and verifications. Only a trusted manifest is shown."""
    store, manifest = resolve(policy, ref, store_name=store_name, allow_unsigned=allow_unsigned)
    problems: list[str] = []
    ledger = holds.ledger(store, manifest.dataset, manifest.snapshot_id)
    problems.extend(ledger.problems)
    active = [h.as_dict() for h in ledger.active]
    data = manifest.model_dump(mode="json") | {
        "ref": f"{manifest.dataset}@{manifest.snapshot_id}",
        "captured_at": timeline.capture_time(manifest).isoformat(),
        "store_location": store.describe(),
        "hold": active[0] if active else None,
        "holds": active,
        "copies": copies.records(store, manifest.dataset, manifest.snapshot_id, problems),
        "verifications": [verifications.brief(r) | {"problems": r.get("problems", [])}
                          for r in verifications.records_of(store, manifest.dataset,
                                                            manifest.snapshot_id)],
        "problems": problems,
    }
    checked = data["verifications"]
    data["last_verification"] = checked[-1] if checked else None
    drills = [r for r in checked if r.get("level") == "drill"]
    data["last_drill"] = drills[-1] if drills else None
    return SnapshotDetail(data, problems)


@extras.translating
def audit_log(policy: Policy, *, since: str | None = None, dataset: str | None = None) -> AuditLog:
    """The audit records of every store the datasets (or ``dataset``) use, oldest first:
    backups, verifications, restores, prunes, holds, policy changes, with who or what
    triggered each. ``since``: an ISO 8601 time or a duration back (``24h``, ``7d``)."""
    after = audit.parse_since(since)
    if dataset:
        policy.dataset(dataset)
    stores: dict[str, Store] = {}
    for name in [dataset] if dataset else sorted(policy.datasets):
        store = open_store(policy.stores[policy.dataset(name).store])
        stores.setdefault(store.describe(), store)
    rows: list[dict[str, Any]] = []
    for store in stores.values():
        for record in audit.read(store, after):
            if dataset and record.get("dataset") not in (dataset, None):
                continue
            rows.append(record)
    rows.sort(key=lambda r: str(r.get("at")))
    return AuditLog(rows, since=after)
