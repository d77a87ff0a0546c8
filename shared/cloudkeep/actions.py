"""On-demand actions shared by every cloud's ``invoke`` entry point.

A payload is ``{"action": "backup"|"verify"|"restore"|"plan", ...}``:

- backup: ``datasets`` (list, default all)
- verify: ``ref`` (``DATASET@ID`` / ``DATASET@latest``), optional ``level`` (integrity, sample,
  drill) and ``sample`` (items, default 100)
- restore: ``ref``, ``into``, optional ``overwrite``
- plan: optional ``now`` (ISO 8601)

:func:`handle` returns ``(http_status, body)``; the body always has ``ok``, and ``error`` when
not ok. Statuses: 200 ok, 400 bad request or policy, 404 no such snapshot, 409 locked, 422 the
operation failed (verification, restore refused), 502 a store or source unreachable.
"""

from __future__ import annotations

import logging
from typing import Any

from .errors import (
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    CloudkeepError,
    LockedError,
    SnapshotNotFoundError,
    UsageError,
)
from .policy import Policy

log = logging.getLogger(__name__)

ACTIONS = ("backup", "verify", "restore", "plan")


def status_of(exc: CloudkeepError) -> int:
    if isinstance(exc, SnapshotNotFoundError):
        return 404
    if isinstance(exc, LockedError):
        return 409
    return {EXIT_USAGE: 400, EXIT_UNREACHABLE: 502}.get(exc.exit_code, 422)


def handle(policy: Policy, payload: Any) -> tuple[int, dict[str, Any]]:
    from . import audit
    from .redaction import redact, redact_obj

    with audit.acting_as("function", **audit.function_actor()):
        try:
            return 200, redact_obj(run_action(policy, payload))  # replies never carry secrets
        except CloudkeepError as exc:
            return status_of(exc), {"ok": False, "error": redact(str(exc))}


def _field(payload: dict[str, Any], name: str, kind: type, *, required: bool = True) -> Any:
    value = payload.get(name)
    if value is None:
        if required:
            raise UsageError(f"payload: '{name}' is required for action {payload.get('action')!r}")
        return None
    if not isinstance(value, kind):
        raise UsageError(f"payload: '{name}' must be a {kind.__name__}")
    return value


def run_action(policy: Policy, payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise UsageError("payload must be a JSON object with an 'action'")
    action = payload.get("action")
    if action not in ACTIONS:
        raise UsageError(f"payload: unknown action {action!r} (known: {', '.join(ACTIONS)})")
    if action == "backup":
        from .engine import backup_many

        names = _field(payload, "datasets", list, required=False) or sorted(policy.datasets)
        for name in names:
            policy.dataset(str(name))
        from .runtime import after_backup, audit_backup

        results = backup_many(policy, [str(n) for n in names])
        for result in results:
            after_backup(policy, result)
            audit_backup(policy, result)
        ok = all(r.status != "failed" and not r.copy_failures for r in results)
        return {"ok": ok, "datasets": [r.as_dict() for r in results]}
    if action == "plan":
        from .runtime import parse_now, plan

        now = parse_now(_field(payload, "now", str, required=False))
        return {"ok": True, "now": now.isoformat(), "datasets": [p.as_dict() for p in plan(policy, now)]}
    from .catalog import resolve

    # verify checks (and reports) the manifest's tag itself; restore refuses a tampered one
    store, manifest = resolve(policy, _field(payload, "ref", str), authenticate=action != "verify")
    if action == "verify":
        from .drills import run_level
        from .verify import record_and_audit

        level = _field(payload, "level", str, required=False) or "integrity"
        sample = _field(payload, "sample", int, required=False) or 100
        report = run_level(policy, store, manifest, level, sample_items=sample, trigger="function")
        record_and_audit(store, report)
        return report.as_dict()
    from . import audit
    from .registry import open_source
    from .restore import restore
    from .sources import check_restore_target

    into = _field(payload, "into", str)
    overwrite = bool(_field(payload, "overwrite", bool, required=False))
    source = open_source(policy.dataset(manifest.dataset).source)
    check_restore_target(source, manifest, into)  # a bad name: 400, nothing read or written
    try:
        restored = restore(policy, store, manifest, into, overwrite=overwrite, source=source)
    except CloudkeepError as exc:
        audit.write(store, "restore", outcome="failed", dataset=manifest.dataset,
                    snapshot_id=manifest.snapshot_id, detail={"target": into, "error": str(exc)})
        raise
    audit.write(store, "restore", outcome="ok", dataset=manifest.dataset,
                snapshot_id=manifest.snapshot_id, detail=restored.as_dict())
    return {"ok": True, **restored.as_dict()}
