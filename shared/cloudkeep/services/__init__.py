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
from .checking import LEVELS, verify
from .holding import hold_add, hold_list, hold_remove
from .key_admin import check_keys, create_key, endorse
from .pruning import prune
from .reporting import plan, report, write_html
from .restoring import restore
from .retaining import retention_check, retention_plan
from .tiering import lifecycle

__all__ = [
    "LEVELS",
    "audit_log",
    "backup",
    "check_keys",
    "copy",
    "create_key",
    "dataset_names",
    "endorse",
    "hold_add",
    "hold_list",
    "hold_remove",
    "lifecycle",
    "list_snapshots",
    "plan",
    "prune",
    "report",
    "restore",
    "retention_check",
    "retention_plan",
    "run",
    "run_reply",
    "show_snapshot",
    "tick",
    "verify",
    "work",
    "write_html",
]
