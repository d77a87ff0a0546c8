"""Rehydration of archived snapshots: verify and restore start it, a later invocation finishes.

A part in an offline class (S3 ``DEEP_ARCHIVE`` / ``GLACIER``, Azure ``Archive``) cannot be read
until the cloud brings it back, which takes hours. Before reading a snapshot (and, for an
incremental one, its chain), :func:`ensure_readable` looks at every part:

- all online (or a restored copy is ready) → nothing to do, the command goes on;
- some offline → it asks the store to rehydrate each one not already under way (S3
  ``RestoreObject`` for :data:`DAYS` days at Standard retrieval; Azure Set Blob Tier to Cold at
  Standard priority), records it as the next create-only entry of
  ``<dataset>/rehydrations/<snapshot_id>/<seq>.json`` (state ``started``, the parts, when it
  expects them back) and raises :class:`RehydrationPendingError` (exit 1) saying how long to
  wait; the same command run again later finds the parts ready (state ``ready`` is recorded)
  and goes on, as a native job finishes in a later invocation.

Nothing is overwritten or deleted; a record never decides what is read (the store's own state
of every part does), so a forged or stale record can make cloudkeep wait, never read the wrong
bytes (every part is still checked against its manifest's sha256).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from . import clock, layout, sequences, trust
from .capabilities import Rehydrates, able
from .errors import CloudkeepError, KeyUnavailableError

if TYPE_CHECKING:
    from .manifest import Manifest
    from .policy import Policy
    from .stores import Store

log = logging.getLogger(__name__)

DAYS = 7
"""How long S3 keeps a restored copy readable (RestoreObject ``Days``)."""


class RehydrationPendingError(CloudkeepError):
    """Parts of a snapshot are in an archive class and being rehydrated: run again later."""

    def __init__(self, message: str, record: dict[str, Any]) -> None:
        self.record = record
        super().__init__(message)


def _parse(data: bytes, key: str) -> dict[str, Any]:
    record = json.loads(data)
    if not isinstance(record, dict):
        raise ValueError(f"{key} is not an object")
    return record


def latest(store: Store, dataset: str, snapshot_id: str) -> dict[str, Any] | None:
    """The newest rehydration record of a snapshot (None: never rehydrated)."""
    found = sequences.newest(store, layout.rehydration_records_prefix(dataset, snapshot_id), _parse)
    return found[1] if found else None


def authentic(policy: Policy, store: Store, manifest: Manifest, *, store_name: str | None = None,
              allow_unsigned: bool = False, without_key: bool = False) -> bool:
    """Whether ``manifest`` passes every trust check a restore makes (binding, tag, policy), so
    that asking the cloud for its parts (which costs) is asked only for a genuine snapshot: a
    forged or replayed manifest never starts a rehydration. ``without_key``: where the caller's
    identity cannot unwrap data keys (the backup role's copies), a manifest bound to its dataset,
    id and store is enough (its parts are the snapshot's own objects)."""
    expect = trust.expect_for(policy, manifest.dataset, store_name, allow_unsigned=allow_unsigned)
    try:
        trust.check(store, manifest, manifest.dataset, manifest.snapshot_id, expect)
    except KeyUnavailableError:
        if not without_key:
            return False
        try:
            trust.check(store, manifest, manifest.dataset, manifest.snapshot_id,
                        expect.without_keyring())
        except CloudkeepError:
            return False
    except CloudkeepError as exc:
        log.warning("%s@%s: no rehydration for a manifest that fails its checks: %s",
                    manifest.dataset, manifest.snapshot_id, exc)
        return False
    return True


def pending(store: Store, dataset: str) -> list[dict[str, Any]]:
    """The rehydrations of ``dataset`` under way (newest record ``started``), as shown by
    ``report``: ``{snapshot_id, purpose, started_at, expected_ready_at}`` (one listing; an
    unreadable record is skipped — records only inform)."""
    newest: dict[str, str] = {}
    prefix = layout.rehydrations_prefix(dataset)
    for info in store.list(prefix):
        sid = info.key[len(prefix):].split("/", 1)[0]
        if sid and info.key > newest.get(sid, ""):
            newest[sid] = info.key
    out = []
    for sid, key in sorted(newest.items()):
        try:
            record = _parse(store.get(key), key)
        except (CloudkeepError, ValueError) as exc:
            log.warning("skipping rehydration record %s: %s", key, exc)
            continue
        if record.get("state") == "started":
            out.append({"snapshot_id": sid, "purpose": str(record.get("purpose") or ""),
                        "started_at": str(record.get("started_at") or ""),
                        "expected_ready_at": str(record.get("expected_ready_at") or "")})
    return out


def offline_parts(store: Store, manifest: Manifest) -> list[tuple[str, str, str | None]]:
    """``(key, readiness, store class)`` of every part of ``manifest`` that is not ``online``
    (one listing of the snapshot, then a HEAD of each part whose class may be offline)."""
    rehydrates = able(store, Rehydrates)
    if rehydrates is None:
        return []
    wanted = {layout.part_key(manifest.dataset, manifest.snapshot_id, p.name) for p in manifest.parts}
    out = []
    for info in store.list(layout.snapshot_prefix(manifest.dataset, manifest.snapshot_id)):
        if info.key not in wanted:
            continue
        if info.storage_class is not None and not rehydrates.is_offline(info.storage_class):
            continue
        state, cls = rehydrates.readiness(info.key)
        if state != "online":
            out.append((info.key, state, cls))
    return out


def ensure_readable(store: Store, manifests: Sequence[Manifest], *, purpose: str) -> None:
    """Return when every part of ``manifests`` can be read now; otherwise start what still
    needs starting, record it, and raise :class:`RehydrationPendingError` (``purpose``:
    ``restore`` or ``verify``, named in the record and the message)."""
    rehydrates = able(store, Rehydrates)
    if rehydrates is None:
        return
    waiting: list[str] = []
    for manifest in manifests:
        parts = offline_parts(store, manifest)
        previous = latest(store, manifest.dataset, manifest.snapshot_id)
        pending = [p for p in parts if p[1] != "ready"]
        if not pending:
            if previous and previous.get("state") == "started":
                _record(store, manifest, "ready", purpose, parts, hours=0.0)
            continue
        started = 0
        for key, state, _cls in pending:
            if state == "archived":
                rehydrates.rehydrate(key, days=DAYS)
                started += 1
        hours = max(rehydrates.rehydration_hours(cls) for _k, _s, cls in pending)
        if started or previous is None or previous.get("state") != "started":
            record = _record(store, manifest, "started", purpose, pending, hours=hours)
        else:
            record = previous
        # a record read back from the store is shown as text only (never trusted as a type)
        expected = str(record.get("expected_ready_at") or "?")[:16].replace("T", " ")
        started_at = str(record.get("started_at") or "?")[:16].replace("T", " ")
        waiting.append(
            f"{manifest.dataset}@{manifest.snapshot_id}: {len(pending)} of "
            f"{len(manifest.parts)} part(s) in {_classes(pending)} are being rehydrated "
            f"(started {started_at} UTC), expected ready in about {hours:g} h (by {expected} UTC)")
    if waiting:
        raise RehydrationPendingError(
            f"cannot {purpose} yet: " + "; ".join(waiting)
            + f"; run the same {purpose} again then (it goes on where the parts are ready)",
            {"snapshots": waiting})


def _classes(parts: Sequence[tuple[str, str, str | None]]) -> str:
    return "/".join(sorted({cls or "?" for _k, _s, cls in parts}))


def _record(store: Store, manifest: Manifest, state: str, purpose: str,
            parts: Sequence[tuple[str, str, str | None]], *, hours: float) -> dict[str, Any]:
    """The next entry of the snapshot's rehydration record (create-only); a record that cannot
    be written is logged, not raised (the rehydration itself was asked of the store)."""
    at = clock.now()
    prefix = layout.rehydration_records_prefix(manifest.dataset, manifest.snapshot_id)
    previous = latest(store, manifest.dataset, manifest.snapshot_id) or {}
    record = {
        "dataset": manifest.dataset,
        "snapshot_id": manifest.snapshot_id,
        "state": state,
        "purpose": purpose,
        "started_at": previous.get("started_at") if state == "ready" and previous.get("started_at")
        else at.isoformat(),
        "recorded_at": at.isoformat(),
        "expected_ready_at": (at + timedelta(hours=hours)).isoformat(),
        "days": DAYS,
        "parts": len(parts),
        "classes": sorted({cls or "?" for _k, _s, cls in parts}),
    }
    try:
        sequences.append(store, prefix, json.dumps(record, sort_keys=True).encode())
    except CloudkeepError as exc:
        log.warning("%s@%s: rehydration not recorded: %s", manifest.dataset, manifest.snapshot_id, exc)
    return record
