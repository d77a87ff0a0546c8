"""cloudkeep's use cases, one function each: the Python API (docs/python-api.md).

The CLI, the function's ``invoke`` action and its scheduled entry points all call these; each
takes a loaded :class:`~cloudkeep.policy.Policy` and typed arguments and returns a typed result
(:mod:`cloudkeep.results`, or the core's own result types: ``engine.RunResult``,
``verify.VerifyReport``, ``restore.RestoreResult``, ``prune.PruneReport``, ``holds.Hold``,
``runtime.TickResult``). Errors are :class:`~cloudkeep.errors.CloudkeepError` subclasses
carrying an exit code.

Back up, verify and restore from a script::

    from cloudkeep.policy import load_policy
    from cloudkeep import services

    policy = load_policy("cloudkeep.yaml").policy
    run = services.backup(policy, ["orders"])
    report = services.verify(policy, "orders@latest")
    services.restore(policy, "orders@latest", "orders-restored")
"""

from __future__ import annotations

from .backing_up import backup, copy, dataset_names, run, run_reply, tick, work
from .browsing import audit_log, list_snapshots, show_snapshot
from .capturing import (
    capture,
    describe_window,
    history,
    recovery_window,
    restore_at,
    verify_log,
)
from .checking import LEVELS, verify
from .holding import hold_add, hold_list, hold_remove
from .key_admin import check_keys, create_key, endorse
from .pruning import prune
from .reporting import plan, report, write_html
from .restoring import restore

__all__ = [
    "LEVELS",
    "audit_log",
    "backup",
    "capture",
    "check_keys",
    "copy",
    "create_key",
    "dataset_names",
    "describe_window",
    "endorse",
    "history",
    "hold_add",
    "hold_list",
    "hold_remove",
    "list_snapshots",
    "plan",
    "prune",
    "recovery_window",
    "report",
    "restore",
    "restore_at",
    "run",
    "run_reply",
    "show_snapshot",
    "tick",
    "verify",
    "verify_log",
    "work",
    "write_html",
]
