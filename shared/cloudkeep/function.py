"""The work every cloud's function does, so that the handlers stay thin.

``load()`` finds the policy (``$CLOUDKEEP_POLICY`` — a path or an s3:// / gs:// / az:// URL —
else the ``cloudkeep.yaml`` bundled with the function). One entry per scheduled function, each
run by its own identity (docs/threat-model.md): ``scheduled_tick()`` backs up (creates objects
only), ``scheduled_prune()`` applies retention (the only one that deletes), and
``scheduled_verify()`` runs the scheduled drills and samples. Each raises
:class:`TickFailedError` when a dataset failed, so the platform records an error (alarms,
retries) after every dataset has had its turn.

:func:`invoke` runs one on-demand action. A payload is ``{"action": "backup"|"verify"|"restore"|
"plan", ...}``:

- backup: ``datasets`` (list, default all)
- verify: ``ref`` (``DATASET@ID`` / ``DATASET@latest``), optional ``level`` (integrity, sample,
  drill) and ``sample`` (items, default 100)
- restore: ``ref``, ``into``, optional ``overwrite``; optional ``region``, ``profile``,
  ``role_arn``, ``external_id``, ``project``, ``endpoint``, ``key_env`` (another place) and
  ``max_rate``, ``capacity_share`` (the rate), ``settings`` (``all``, ``data``, ``none``; default
  ``all``), as the CLI's options; a partial restore (docs/partial-restore.md) with ``keys`` (list
  of keys in the source's own form; ``keys_file`` is refused), ``where``, ``dry_run``,
  ``delete_missing``; any other field is refused
- plan: optional ``now`` (ISO 8601)
- diff: ``ref_a``, ``ref_b``, optional ``keys`` (bool: list the keys, at most 10,000)
- find: ``dataset``, ``key`` (the key as JSON text, or as a JSON value)

It returns ``(http_status, body)``; the body always has ``ok``, and ``error`` when not ok.
Statuses: 200 ok, 400 bad request or policy, 404 no such snapshot, 409 locked, 422 the
operation failed (verification, restore refused), 502 a store or source unreachable.

Every entry point calls the use cases of :mod:`cloudkeep.services`, as the CLI does.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from . import audit, extras, services
from .checkpoint import Deadline
from .engine import RunOptions, RunResult
from .errors import (
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    CloudkeepError,
    LockedError,
    SnapshotNotFoundError,
    UsageError,
)
from .fanout import WorkItem, WorkItemError, run_work_item
from .memory import bound_malloc
from .metrics import MetricsSink, backup_metrics
from .place import OPTION_NAMES, Place
from .policy import POLICY_ENV, Policy, load_policy
from .queues import queue_from_env
from .redaction import redact, redact_obj
from .runtime import parse_now
from .services.restoring import SelectionRequest

# Cold start: a handler imports this module at init, so the use cases (cloudkeep.services and
# the core behind them) load on an entry point's first call, not here (bench/, test_imports).

log = logging.getLogger(__name__)


class TickFailedError(CloudkeepError):
    """At least one dataset failed in a scheduled tick (the reply lists which)."""

    def __init__(self, reply: dict[str, Any]) -> None:
        self.reply = reply
        failed = [d["dataset"] for d in reply["datasets"] if d.get("status") == "failed"]
        copies = sorted({f"{c.get('dataset')}→{c.get('store')}" for c in reply.get("copy_failed", [])})
        pruned = [p["dataset"] for p in reply.get("prunes", []) if p.get("failed")]
        checked = sorted({str(v.get("dataset")) for v in reply.get("verifications", [])
                          if not v.get("ok")})
        what = [f"backup failed for {', '.join(failed)}"] if failed else []
        what += [f"copy failed for {', '.join(copies)}"] if copies else []
        what += [f"prune failed for {', '.join(pruned)}"] if pruned else []
        what += [f"verification failed for {', '.join(checked)}"] if checked and not what else []
        super().__init__(f"tick {reply['run_id']}: {'; '.join(what) or 'failed'}")


def load(bundled: str | Path | None = None) -> Policy:

    bound_malloc()  # flat memory over long runs (see memory.py)
    location = os.environ.get(POLICY_ENV) or (str(bundled) if bundled else None)
    if not location:
        raise CloudkeepError(f"no policy: set {POLICY_ENV} or bundle cloudkeep.yaml with the function")
    policy = load_policy(location).policy  # also remembers the policy's secrets for redaction
    for name in sorted(policy.datasets):
        if not policy.encryption_keys(name):
            # deployed policies are meant to encrypt (docs/deploy.md); say so on every load
            log.warning("dataset %s is backed up without client-side encryption "
                        "(set encryption: {keys: [...]} in the policy)", name)
    return policy


def scheduled_tick(policy: Policy, now: datetime | None, sink: MetricsSink | None = None,
                   deadline: Deadline | None = None, *, notifier: Any = None,
                   duties: tuple[str, ...] = ("backup",)) -> dict[str, Any]:
    """The scheduled tick of a cloud's backup function: back up what is due at ``now`` (the
    trigger's own time, so a redelivered trigger lands on the same slot), with the freshness
    watchdog, metrics to ``sink``, alerts and the audit log (records attributed to the
    schedule). It only creates objects: retention is the pruner's (:func:`scheduled_prune`),
    drills and samples the verifier's (:func:`scheduled_verify`). Returns the reply; raises
    TickFailedError if any dataset failed.

    With ``$CLOUDKEEP_WORK_QUEUE`` set, snapshots fan out as work items on that queue; without
    it, a snapshot nearing ``deadline`` (the function's remaining time) stops after its current
    parts and the next tick resumes it."""

    options = RunOptions(deadline=deadline, queue=queue_from_env())
    return _scheduled(policy, now, sink, notifier, duties, options)


def scheduled_prune(policy: Policy, now: datetime | None, sink: MetricsSink | None = None, *,
                    notifier: Any = None) -> dict[str, Any]:
    """The pruner function's run: retention of every dataset at ``now`` (the only scheduled
    work that deletes; its identity is the only one that may). Raises TickFailedError when a
    dataset's prune could not run at all (objects still locked are reported, not failures)."""
    return _scheduled(policy, now, sink, notifier, ("prune",), None)


def scheduled_verify(policy: Policy, now: datetime | None, sink: MetricsSink | None = None, *,
                     notifier: Any = None) -> dict[str, Any]:
    """The verifier function's run: the drills and samples the tiers schedule, due at ``now``,
    recorded and audited, with their metrics and alerts (run with the restore/drill identity).
    Raises TickFailedError when a verification failed."""
    reply = _scheduled(policy, now, sink, notifier, ("verify",), None)
    if any(not v.get("ok") for v in reply["verifications"]):
        raise TickFailedError(reply)
    return reply


def _scheduled(policy: Policy, now: datetime | None, sink: MetricsSink | None, notifier: Any,
               duties: tuple[str, ...], options: Any) -> dict[str, Any]:

    with audit.acting_as("schedule", **audit.function_actor()):
        outcome = services.tick(policy, now, sink=sink, notifier=notifier, options=options,
                                duties=duties)
    reply: dict[str, Any] = redact_obj(outcome.as_dict())  # the platform logs replies
    if not outcome.ok:
        raise TickFailedError(reply)
    return reply


def work_item(policy: Policy, body: Any, deadline: Deadline | None = None,
              sink: MetricsSink | None = None) -> dict[str, Any]:
    """One fan-out work item from the cloud's queue (``fanout.py``), run as the backup identity:
    it creates objects only (the pruner function prunes). Raises when the item failed
    (the queue redelivers it, then dead-letters it); a message that is no work item is logged
    and dropped (redelivering it cannot help)."""

    try:
        item = WorkItem.parse(body)
    except WorkItemError as exc:
        log.error("%s; dropping it", exc)
        return {"status": "dropped", "error": str(exc)}
    outcome = run_work_item(policy, item, deadline=deadline, queue=queue_from_env(), prune=False)
    if outcome.manifest is not None and outcome.status == "committed" and sink is not None:
        result = RunResult(item.dataset, "committed", item.snapshot_id, outcome.manifest)
        for metric in backup_metrics(policy, result):
            sink.emit(metric)
    reply: dict[str, Any] = redact_obj(outcome.as_dict())
    return reply


def parse_time(text: Any) -> datetime | None:
    """A trigger's ISO 8601 time, or None (then the tick uses the current time)."""
    if not isinstance(text, str) or not text:
        return None

    try:
        return parse_now(text)
    except CloudkeepError:
        log.warning("ignoring unparsable trigger time %r", text)
        return None


ACTIONS = ("backup", "verify", "restore", "plan", "diff", "find")
RESTORE_FIELDS = ("action", "ref", "into", "overwrite", "keys", "key", "keys_file", "where",
                  "dry_run", "delete_missing", "settings", "max_rate", "capacity_share",
                  *OPTION_NAMES)
"""The fields a restore payload may have; any other is refused (400), not ignored."""
DIFF_ITEMS_MAX = 10_000  # keys a diff reply lists at most (``items_truncated`` says when more)


def status_of(exc: CloudkeepError) -> int:
    """The HTTP status of an action that raised ``exc``."""
    if isinstance(exc, SnapshotNotFoundError):
        return 404
    if isinstance(exc, LockedError):
        return 409
    return {EXIT_USAGE: 400, EXIT_UNREACHABLE: 502}.get(exc.exit_code, 422)


def invoke(policy: Policy, payload: Any) -> tuple[int, dict[str, Any]]:
    """Run the on-demand action ``payload`` names (see the module's docstring), attributed to
    the function in the audit log; returns ``(http_status, body)``. Replies never carry
    secrets."""

    with audit.acting_as("function", **audit.function_actor()):
        try:
            with extras.translated():  # a missing cloud SDK: 400 naming the extra to install
                return 200, redact_obj(run_action(policy, payload))
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
    """The body of a successful action; raises CloudkeepError for a bad payload or a failed
    operation (a verification that finds problems is a reply with ``ok`` false)."""
    if not isinstance(payload, dict):
        raise UsageError("payload must be a JSON object with an 'action'")
    action = payload.get("action")
    if action not in ACTIONS:
        raise UsageError(f"payload: unknown action {action!r} (known: {', '.join(ACTIONS)})")

    if action == "backup":
        names = _field(payload, "datasets", list, required=False)
        done = services.backup(policy, [str(n) for n in names] if names else None)
        return {"ok": done.ok, "datasets": [r.as_dict() for r in done.results]}
    if action == "plan":
        now = parse_now(_field(payload, "now", str, required=False))
        return {"ok": True, "now": now.isoformat(),
                "datasets": [p.as_dict() for p in services.plan(policy, now)]}
    if action in ("diff", "find"):
        return _item_action(policy, action, payload)
    ref = _field(payload, "ref", str)
    if action == "verify":
        report = services.verify(policy, ref,
                                 level=_field(payload, "level", str, required=False) or "integrity",
                                 sample_items=_field(payload, "sample", int, required=False) or 100,
                                 trigger="function")
        return report.as_dict()
    unknown = sorted(str(k) for k in payload if k not in RESTORE_FIELDS)
    if unknown:  # a misspelt "dry_run" or "where" must not become a whole --overwrite restore
        raise UsageError(f"payload: unknown field(s) for action 'restore': {', '.join(unknown)} "
                         f"(known: {', '.join(RESTORE_FIELDS)})")
    into = _field(payload, "into", str)
    overwrite = bool(_field(payload, "overwrite", bool, required=False))
    # another place and a governed rate (docs/emergency-restore.md), as the CLI's options
    place = Place(**{name: _field(payload, name, str, required=False) for name in OPTION_NAMES})
    restored = services.restore(
        policy, ref, into, overwrite=overwrite, place=place,
        max_rate=_rate_field(payload, "max_rate"),
        capacity_share=_rate_field(payload, "capacity_share"), selection=_selection(payload),
        dry_run=bool(_field(payload, "dry_run", bool, required=False)),
        delete_missing=bool(_field(payload, "delete_missing", bool, required=False)),
        settings=_field(payload, "settings", str, required=False) or "all")
    return {"ok": True, **restored.as_dict()}


def _rate_field(payload: dict[str, Any], name: str) -> float | None:
    """An optional number of the payload (a bool is not one)."""
    value = payload.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UsageError(f"payload: '{name}' must be a number")
    try:
        return float(value)
    except OverflowError:  # an integer beyond any float (JSON allows 10**400)
        raise UsageError(f"payload: '{name}' is out of range") from None


def _selection(payload: dict[str, Any]) -> SelectionRequest:
    """A restore payload's partial selection: ``keys`` (a list; ``key``: one or a list), each
    key JSON text or the JSON value itself; ``where`` (an expression). ``keys_file`` is refused
    (400): it would name a file of the function's own host (``/proc/self/environ`` holds its
    credentials), whose lines a reply lists back as missing keys."""
    if payload.get("keys_file") is not None:
        raise UsageError("payload: 'keys_file' is not accepted by the function (it would read a "
                         "file of the function's host); give the keys as a list in 'keys'")
    given: list[Any] = []
    for name in ("keys", "key"):
        value = payload.get(name)
        if value is None:
            continue
        if name == "keys" and not isinstance(value, list):
            raise UsageError("payload: 'keys' must be a list of keys")
        given.extend(value if isinstance(value, list) else [value])
        if value == []:  # an empty list selects no key: never "no selection", a whole restore
            raise UsageError(f"payload: '{name}' is an empty list (no item to restore); leave "
                             "it out to restore the whole snapshot")
    keys = tuple(k if isinstance(k, str) else json.dumps(k) for k in given)
    return SelectionRequest(keys=keys, where=_field(payload, "where", str, required=False))


def _item_action(policy: Policy, action: str, payload: dict[str, Any]) -> dict[str, Any]:
    """``diff`` and ``find`` (docs/item-recovery.md)."""
    if action == "diff":
        with services.diff(policy, _field(payload, "ref_a", str), _field(payload, "ref_b", str),
                           keys=bool(_field(payload, "keys", bool, required=False))) as result:
            return {"ok": True, **result.as_dict(limit=DIFF_ITEMS_MAX)}
    key = payload.get("key")
    if key is None:
        raise UsageError("payload: 'key' is required for action 'find'")
    text = key if isinstance(key, str) else json.dumps(key)
    found = services.find(policy, _field(payload, "dataset", str), text)
    return {"ok": not found.problems, "snapshots": found.as_list(),
            **({"problems": found.problems} if found.problems else {})}
