"""Use cases of cold tiers (docs/cold-tiers.md): :func:`lifecycle` — the lifecycle rules that
move parts to colder classes in the stores where the cloud does it (S3, GCS), shown or applied."""

from __future__ import annotations

from typing import Any

from .. import coldtiers, extras
from ..capabilities import LifecycleRules, able
from ..errors import UsageError
from ..policy import Policy
from ..registry import open_store, store_spec


@extras.translating
def lifecycle(policy: Policy, store_names: list[str] | None = None, *,
              apply: bool = False) -> list[dict[str, Any]]:
    """For each store (every store of the policy if none is named): how its parts move —
    ``by`` ``lifecycle`` (with ``rules``, the bucket's whole configuration: cloudkeep's rules
    for the policy's transitions plus the bucket's other rules, kept), ``prune`` (the pruner
    sets tiers) or ``none`` (no classes). With ``apply``, writes the rules of each lifecycle
    store (an administrator's act: it replaces cloudkeep's earlier rules, keeps the others).
    Unknown store names are a UsageError before anything is read."""
    names = list(store_names or sorted(policy.stores))
    unknown = [n for n in names if n not in policy.stores]
    if unknown:
        known = ", ".join(sorted(policy.stores)) or "none"
        raise UsageError(f"unknown store {unknown[0]!r} (known: {known})")
    out: list[dict[str, Any]] = []
    for name in names:
        spec = policy.stores[name]
        by = (store_spec(spec.type) or type(spec)).TRANSITIONS_BY
        entry: dict[str, Any] = {"store": name, "type": spec.type, "by": by, "applied": False}
        plans = coldtiers.lifecycle_plans(policy, name) if by == "lifecycle" else {}
        entry["datasets"] = sorted(p.rstrip("/").rsplit("/", 1)[0] for p in plans)
        if by == "lifecycle":
            rules = able(open_store(spec), LifecycleRules)
            if rules is not None:
                entry["rules"] = rules.lifecycle_rules(plans)
                if apply:
                    rules.apply_lifecycle(entry["rules"])
                    entry["applied"] = True
        out.append(entry)
    return out
