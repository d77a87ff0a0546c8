"""Legal holds: records in the store that keep a snapshot from retention, whatever the rules
(and, in a store with its own legal holds, that store's hold on every object of the snapshot).

Holds stack. Each ``hold add`` writes its own create-only record with its own id, reason, who and
when (``<dataset>/holds/<snapshot_id>/<hold_id>.json``); ``hold remove`` releases one by writing a
create-only release record beside it (``<hold_id>.released.json``) — nothing in the ledger is
rewritten or deleted, except by prune together with the snapshot. A snapshot is held while any
of its holds is unreleased. The single record of earlier releases (``holds/<snapshot_id>.json``)
still reads as one hold, with id ``legacy``.

Prune and ``hold add`` are serialised through the ledger, with no lock and no timing:

- prune, right before it deletes a snapshot, creates a ``deleting-<prune_id>.json`` marker, then
  re-reads the snapshot's holds: if one is active it cancels its marker
  (``deleting-<prune_id>.cancelled.json``) and keeps the snapshot;
- ``hold add`` creates its record, then reads the ledger: if a deletion marker is there (or the
  manifest is gone) it withdraws its hold (a release record) and fails.

Whichever of the two creates comes first, the other sees it: a hold that ``hold add`` reports as
placed is seen by every later deletion decision, and prune never deletes a held snapshot. A
marker left by a prune that died stops blocking holds after :data:`MARKER_TTL`; a prune deletes
only within :data:`DELETE_LEASE` of its marker (by a monotonic clock, so a prune frozen past it
stops), which is far shorter.

Every record is read with a size limit; an unreadable hold record counts as an active hold (it
keeps the snapshot), an unreadable release as no release, and each is reported as a problem.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from . import layout
from .audit import cli_user
from .capabilities import LegalHolds, able
from .errors import CloudkeepError, ObjectExistsError, ObjectNotFoundError, UsageError
from .lock import unwrap
from .manifest import Manifest
from .stores import Store

RECORD_MAX_BYTES = 64 * 1024
REASON_MAX_CHARS = 2000
MARKER_TTL = timedelta(hours=1)
# A marker dated further ahead than this is not a prune's (clocks agree to minutes): a record
# forged into the future must not block holds for ever.
MARKER_SKEW = timedelta(minutes=5)
DELETE_LEASE = timedelta(minutes=5)

Clock = Callable[[], datetime]


def _now() -> datetime:
    return datetime.now(UTC)


class HoldRefusedError(CloudkeepError):
    """A hold could not be placed because prune is deleting the snapshot (it was withdrawn)."""


who = cli_user  # who places or releases a hold from this machine


@dataclass
class Hold:
    dataset: str
    snapshot_id: str
    hold_id: str
    reason: str
    created_at: str | None = None
    created_by: str | None = None
    problem: str | None = None  # the record could not be read (the hold still counts)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "dataset": self.dataset,
            "snapshot_id": self.snapshot_id,
            "ref": f"{self.dataset}@{self.snapshot_id}",
            "hold_id": self.hold_id,
            "reason": self.reason,
            "created_at": self.created_at,
            "created_by": self.created_by,
        }
        if self.problem:
            out["problem"] = self.problem
        return out


@dataclass
class Marker:
    prune_id: str
    created: datetime | None
    cancelled: bool = False


@dataclass
class Ledger:
    """One snapshot's holds, releases and deletion markers as read now."""

    dataset: str
    snapshot_id: str
    holds: dict[str, Hold] = field(default_factory=dict)
    released: set[str] = field(default_factory=set)
    markers: dict[str, Marker] = field(default_factory=dict)
    keys: list[str] = field(default_factory=list)  # every record of the ledger
    problems: list[str] = field(default_factory=list)

    @property
    def active(self) -> list[Hold]:
        """Unreleased holds, oldest first."""
        live = [h for i, h in self.holds.items() if i not in self.released]
        return sorted(live, key=lambda h: (str(h.created_at or ""), h.hold_id))

    def deleting(self, now: datetime) -> list[Marker]:
        """Deletion markers neither cancelled nor older than MARKER_TTL."""
        return [m for m in self.markers.values()
                if not m.cancelled and m.created is not None
                and -MARKER_SKEW < now - m.created < MARKER_TTL]


def _read(store: Store, key: str, size: int | None) -> dict[str, Any] | str:
    """A ledger record, or what is wrong with it."""
    if size is not None and size > RECORD_MAX_BYTES:
        return f"{key} is {size} bytes (a hold record is at most {RECORD_MAX_BYTES})"
    try:
        data = store.get(key)
    except ObjectNotFoundError:
        return f"{key} disappeared while it was read"
    if len(data) > RECORD_MAX_BYTES:
        return f"{key} is {len(data)} bytes (a hold record is at most {RECORD_MAX_BYTES})"
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        return f"{key} is not JSON"
    if not isinstance(doc, dict):
        return f"{key} is not a JSON object"
    return doc


def _time(value: Any) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _text(value: Any, limit: int = REASON_MAX_CHARS) -> str | None:
    return None if value is None else str(value)[:limit]


def _apply(store: Store, ledger: Ledger, kind: str, ident: str, key: str, size: int | None,
           modified: datetime | None) -> None:
    """Add one record of the ledger."""
    ledger.keys.append(key)
    doc = _read(store, key, size) if kind != "cancelled" else {}
    if kind in ("hold", "legacy"):
        if isinstance(doc, str):
            ledger.holds[ident] = Hold(ledger.dataset, ledger.snapshot_id, ident,
                                       "(unreadable hold record)", problem=doc)
            ledger.problems.append(f"hold {ident} of {ledger.dataset}@{ledger.snapshot_id}: {doc} "
                                   "(counted as an active hold)")
            return
        ledger.holds[ident] = Hold(ledger.dataset, ledger.snapshot_id, ident,
                                   _text(doc.get("reason")) or "(no reason recorded)",
                                   _text(doc.get("created_at"), 64), _text(doc.get("created_by"), 256))
    elif kind == "released":
        if isinstance(doc, str):
            ledger.problems.append(f"release of hold {ident} of {ledger.dataset}@"
                                   f"{ledger.snapshot_id}: {doc} (the hold still counts)")
            return
        ledger.released.add(ident)
    elif kind == "deleting":
        created = None if isinstance(doc, str) else _time(doc.get("created_at"))
        if created is None:
            ledger.problems.append(f"deletion marker {key}: unreadable (ignored)")
        elif modified is not None and modified > created:
            created = modified  # the later of the writer's and the store's clock: never shorter
        ledger.markers.setdefault(ident, Marker(ident, None)).created = created
    elif kind == "cancelled":
        ledger.markers.setdefault(ident, Marker(ident, None)).cancelled = True


def _ledgers(store: Store, dataset: str, prefix: str) -> dict[str, Ledger]:
    out: dict[str, Ledger] = {}
    unknown: list[str] = []
    for info in store.list(prefix):
        parsed = layout.parse_ledger_key(dataset, info.key)
        if parsed is None:
            unknown.append(info.key)
            continue
        sid, kind, ident = parsed
        _apply(store, out.setdefault(sid, Ledger(dataset, sid)), kind, ident, info.key, info.size,
               info.modified)
    if unknown:
        out.setdefault("", Ledger(dataset, "")).problems.extend(
            f"{key}: not a hold record (ignored)" for key in unknown)
    return out


def ledger(store: Store, dataset: str, snapshot_id: str) -> Ledger:
    """The hold ledger of one snapshot (its records and the old single record)."""
    found = _ledgers(store, dataset, layout.hold_ledger_prefix(dataset, snapshot_id))
    state = found.get(snapshot_id, Ledger(dataset, snapshot_id))
    legacy = store.stat(layout.hold_key(dataset, snapshot_id))
    if legacy is not None:
        _apply(store, state, "legacy", "legacy", layout.hold_key(dataset, snapshot_id), legacy.size,
               legacy.modified)
    state.problems.extend(found[""].problems if "" in found else [])
    return state


def ledgers(store: Store, dataset: str, problems: list[str] | None = None) -> dict[str, Ledger]:
    """Every snapshot's hold ledger in ``dataset`` (one listing); unreadable records are added to
    ``problems`` (never raised)."""
    found = _ledgers(store, dataset, layout.holds_prefix(dataset))
    stray = found.pop("", None)
    if problems is not None:
        if stray is not None:
            problems.extend(stray.problems)
        for state in found.values():
            problems.extend(state.problems)
    return found


def all_for(store: Store, dataset: str, problems: list[str] | None = None) -> dict[str, list[Hold]]:
    """snapshot id → its active holds (oldest first), for every held snapshot of ``dataset``."""
    return {sid: state.active for sid, state in sorted(ledgers(store, dataset, problems).items())
            if state.active}


def active(store: Store, dataset: str, snapshot_id: str) -> list[Hold]:
    return ledger(store, dataset, snapshot_id).active


def reasons(held: list[Hold]) -> str | None:
    """The reasons of a snapshot's active holds, as one line (None: not held)."""
    return "; ".join(h.reason for h in held) if held else None


# ------------------------------------------------------------------------------ add and remove


def add(store: Store, manifest: Manifest, reason: str, *, by: str | None = None,
        clock: Clock = _now) -> Hold:
    """Place a new hold (create-only, its own id) on a committed snapshot. Raises
    HoldRefusedError (the hold withdrawn) if prune is deleting the snapshot."""
    reason = reason.strip()
    if not reason:
        raise UsageError("a legal hold needs a --reason")
    if len(reason) > REASON_MAX_CHARS:
        raise UsageError(f"--reason is {len(reason)} characters; at most {REASON_MAX_CHARS}")
    ds, sid = manifest.dataset, manifest.snapshot_id
    by = by or who()
    hold = Hold(ds, sid, "", reason, clock().isoformat(), by)
    for _ in range(8):
        hold.hold_id = f"h-{secrets.token_hex(4)}"
        body = {"dataset": ds, "snapshot_id": sid, "hold_id": hold.hold_id, "reason": reason,
                "created_at": hold.created_at, "created_by": by}
        try:
            store.put(layout.hold_record_key(ds, sid, hold.hold_id),
                      json.dumps(body, indent=2).encode(), if_absent=True)
            break
        except ObjectExistsError:
            continue
    else:  # pragma: no cover - eight random 32-bit ids taken
        raise CloudkeepError(f"could not find a free hold id for {ds}@{sid}")
    # Now that the hold is in the ledger, every later prune decision sees it. Whether an earlier
    # one is already deleting the snapshot, its marker (or the missing manifest) says.
    state = ledger(store, ds, sid)
    deleting = state.deleting(clock())
    gone = store.stat(layout.manifest_key(ds, sid)) is None
    if deleting or gone:
        _release(store, ds, sid, hold.hold_id, by, clock(),
                 "withdrawn: the snapshot was being deleted by prune")
        why = (f"prune run {deleting[0].prune_id} is deleting it" if deleting
               else "it was deleted")
        raise HoldRefusedError(
            f"cannot hold {ds}@{sid}: {why}; the hold ({hold.hold_id}) was withdrawn. "
            f"Check with: cloudkeep list {ds}")
    _storage_hold(store, manifest, True)
    return hold


def remove(store: Store, manifest: Manifest, hold_id: str | None = None, *,
           by: str | None = None, clock: Clock = _now) -> tuple[Hold, list[Hold]]:
    """Release one hold (``hold_id``, or the only active one); returns it and the holds still
    active. Exit 1 if the snapshot is not held; 2 for an unknown id or when several holds are
    active and none is named."""
    ds, sid = manifest.dataset, manifest.snapshot_id
    state = ledger(store, ds, sid)
    live = state.active
    ids = ", ".join(h.hold_id for h in live)
    if hold_id is None:
        if not live:
            raise CloudkeepError(f"{ds}@{sid} is not under a legal hold")
        if len(live) > 1:
            raise UsageError(f"{ds}@{sid} has {len(live)} active holds ({ids}); name one with "
                             "--id HOLD_ID")
        target = live[0]
    else:
        match = [h for h in live if h.hold_id == hold_id]
        if not match:
            if hold_id in state.released:
                raise CloudkeepError(f"hold {hold_id} of {ds}@{sid} is already released")
            raise UsageError(f"{ds}@{sid} has no active hold {hold_id!r} (active: {ids or 'none'})")
        target = match[0]
    try:
        _release(store, ds, sid, target.hold_id, by or who(), clock(), "released")
    except ObjectExistsError:
        raise CloudkeepError(f"hold {target.hold_id} of {ds}@{sid} is already released") from None
    rest = [h for h in live if h.hold_id != target.hold_id]
    if not rest:
        _storage_hold(store, manifest, False)
    return target, rest


def _release(store: Store, dataset: str, snapshot_id: str, hold_id: str, by: str, at: datetime,
             note: str) -> None:
    body = {"dataset": dataset, "snapshot_id": snapshot_id, "hold_id": hold_id,
            "released_at": at.isoformat(), "released_by": by, "note": note}
    store.put(layout.hold_release_key(dataset, snapshot_id, hold_id),
              json.dumps(body, indent=2).encode(), if_absent=True)


def _storage_hold(store: Store, manifest: Manifest, hold: bool) -> None:
    """Where the store itself has legal holds (Azure Blob with immutability), set or clear them
    on every object of the snapshot too."""
    holding = able(unwrap(store), LegalHolds)
    if holding is None or not store.capabilities.object_lock:
        return
    keys = [layout.part_key(manifest.dataset, manifest.snapshot_id, p.name) for p in manifest.parts]
    for key in [*keys, layout.manifest_key(manifest.dataset, manifest.snapshot_id)]:
        holding.set_legal_hold(key, hold)


# ------------------------------------------------------------------------------------- prune side


def new_prune_id() -> str:
    return secrets.token_hex(8)


def begin_delete(store: Store, dataset: str, snapshot_id: str, prune_id: str, *,
                 clock: Clock = _now) -> list[Hold]:
    """Prune, right before deleting a snapshot: mark it as being deleted (create-only), then
    re-read its holds. Returns the active holds — empty: the delete may go ahead (within
    DELETE_LEASE); else the marker is cancelled and the snapshot must be kept."""
    body = {"dataset": dataset, "snapshot_id": snapshot_id, "prune_id": prune_id,
            "created_at": clock().isoformat(), "by": who()}
    store.put(layout.deleting_marker_key(dataset, snapshot_id, prune_id),
              json.dumps(body, indent=2).encode(), if_absent=True)
    live = active(store, dataset, snapshot_id)
    if live:
        cancel_delete(store, dataset, snapshot_id, prune_id, clock=clock)
    return live


def cancel_delete(store: Store, dataset: str, snapshot_id: str, prune_id: str, *,
                  clock: Clock = _now) -> None:
    """Prune did not delete the snapshot after all: its marker stops blocking holds."""
    body = {"prune_id": prune_id, "cancelled_at": clock().isoformat()}
    try:
        store.put(layout.deleting_cancel_key(dataset, snapshot_id, prune_id),
                  json.dumps(body).encode(), if_absent=True)
    except ObjectExistsError:
        pass


def ledger_keys(store: Store, dataset: str, snapshot_id: str) -> list[str]:
    """Every record of a snapshot's hold ledger (for prune, deleting it with the snapshot)."""
    keys = [i.key for i in store.list(layout.hold_ledger_prefix(dataset, snapshot_id))]
    if store.stat(layout.hold_key(dataset, snapshot_id)) is not None:
        keys.append(layout.hold_key(dataset, snapshot_id))
    return keys
