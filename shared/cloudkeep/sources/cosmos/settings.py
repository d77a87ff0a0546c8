"""A Cosmos DB container's settings: recorded in the manifest (``source["settings"]``), given to
the container a restore creates, checked (or replaced, where Cosmos DB allows it) on an existing
target, and read back for a drill's comparison.

Recorded, as the service reports them: ``partition_key``, ``unique_keys`` (the unique key policy),
``conflict_resolution`` (the conflict resolution policy, null where the account does not expose
it), ``indexing_policy``, ``default_ttl`` (null: off; -1: on without a default) and ``throughput``
(``{"scope": "container"|"database", "manual_throughput"|"autoscale_max_throughput": n}``, or
``"unreadable: <reason>"`` where the account does not report it — serverless accounts, the local
emulator, data-plane-only roles). A manifest written before settings were recorded still has them
at the top level of ``source``; they are read from there.

The partition key, unique keys and conflict resolution are fixed when a container is created: on
an existing target (``--overwrite``) they are compared and listed as not applied when they differ.
The indexing policy and default TTL are replaced; container throughput is replaced when recorded.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ...restore_settings import unreadable

ORDER = ("partition_key", "unique_keys", "conflict_resolution", "indexing_policy", "default_ttl",
         "throughput")
DATA_SETTINGS = frozenset({"partition_key", "unique_keys", "conflict_resolution", "indexing_policy",
                           "default_ttl"})
FIXED = ("partition_key", "unique_keys", "conflict_resolution")


def from_properties(props: Mapping[str, Any]) -> dict[str, Any]:
    """A container's settings from its properties (``container.read()``), throughput aside."""
    return {
        "partition_key": props.get("partitionKey"),
        "unique_keys": props.get("uniqueKeyPolicy") or {"uniqueKeys": []},
        "conflict_resolution": props.get("conflictResolutionPolicy"),
        "indexing_policy": props.get("indexingPolicy"),
        "default_ttl": props.get("defaultTtl"),
    }


def throughput_setting(described: Mapping[str, Any]) -> Any:
    """The recorded form of the throughput ``describe()`` found (or why it found none)."""
    if described.get("throughput"):
        return dict(described["throughput"])
    return unreadable(str(described.get("throughput_note") or "not reported"))


def recorded_settings(recorded: Mapping[str, Any]) -> dict[str, Any]:
    """The settings of a manifest's ``source``: its ``settings``, or for a manifest written
    before they were recorded there, the same settings from the top level of ``source``."""
    settings = recorded.get("settings")
    if isinstance(settings, dict):
        return dict(settings)
    return {
        "partition_key": recorded.get("partition_key"),
        "unique_keys": recorded.get("unique_key_policy") or {"uniqueKeys": []},
        "conflict_resolution": recorded.get("conflict_resolution_policy"),
        "indexing_policy": recorded.get("indexing_policy"),
        "default_ttl": recorded.get("default_ttl"),
        "throughput": throughput_setting(recorded),
    }


#: The highest RU/s a restored container is given (Cosmos DB's per-container limit without a
#: support request): a recorded throughput above it (a damaged or forged record) is refused.
MAX_THROUGHPUT = 1_000_000


def throughput_problem(throughput: Mapping[str, Any]) -> str | None:
    """Why a recorded container throughput must not be applied (absurd or not a number), or None."""
    value = throughput.get("autoscale_max_throughput") or throughput.get("manual_throughput")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_THROUGHPUT:
        return (f"the recorded throughput {str(value)[:40]} is outside 1..{MAX_THROUGHPUT} RU/s; "
                "the container keeps the account's default")
    return None


def create_kwargs(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``create_container`` keyword arguments for the selected ``settings`` (partition key
    aside, which every container needs and the caller gives)."""
    from azure.cosmos import ThroughputProperties

    out: dict[str, Any] = {}
    if isinstance(settings.get("indexing_policy"), dict) and settings["indexing_policy"]:
        out["indexing_policy"] = settings["indexing_policy"]
    if isinstance(settings.get("default_ttl"), int) and not isinstance(settings["default_ttl"], bool):
        out["default_ttl"] = settings["default_ttl"]
    unique = settings.get("unique_keys")
    if isinstance(unique, dict) and isinstance(unique.get("uniqueKeys"), list) and unique["uniqueKeys"]:
        out["unique_key_policy"] = unique
    if isinstance(settings.get("conflict_resolution"), dict) and settings["conflict_resolution"]:
        out["conflict_resolution_policy"] = settings["conflict_resolution"]
    throughput = settings.get("throughput")
    if isinstance(throughput, dict) and throughput.get("scope") == "container" \
            and throughput_problem(throughput) is None:
        if throughput.get("autoscale_max_throughput"):
            out["offer_throughput"] = ThroughputProperties(
                auto_scale_max_throughput=throughput["autoscale_max_throughput"])
        elif throughput.get("manual_throughput"):
            out["offer_throughput"] = throughput["manual_throughput"]
    return out


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _same(name: str, have: Any, want: Any) -> bool:
    if name == "indexing_policy" and isinstance(have, dict) and isinstance(want, dict):
        # the service lower-cases or adds defaults inconsistently across versions: compare the
        # parts a policy sets
        return all(canonical(have.get(k)) == canonical(v) for k, v in want.items())
    return canonical(have) == canonical(want)


def differences(settings: Mapping[str, Any], live: Mapping[str, Any]) -> dict[str, str | None]:
    """Per setting of ``settings`` that has a counterpart in ``live``: None when the live
    container has it, else why not (in words)."""
    out: dict[str, str | None] = {}
    for name in ORDER:
        if name not in settings or name not in live:
            continue
        if _same(name, live[name], settings[name]):
            out[name] = None
        else:
            out[name] = (f"the target has {canonical(live[name])[:200]}, the snapshot "
                         f"{canonical(settings[name])[:200]}")
    return out
