"""Use cases of retention that delete nothing: :func:`retention_check` (the simulator: rules
applied to a list of times) and :func:`retention_plan` (what retention would keep and remove of
a dataset's real snapshots now, with every reason)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .. import clock, extras
from ..errors import UsageError
from ..policy import Policy
from ..prune import prune
from ..retention_sim import Simulation, parse_rules, read_times, simulate, tier_rules, warnings_of


def retention_check(policy: Policy | None, times: Iterable[str], *, rules: str | None = None,
                    tier: str | None = None, now: datetime | None = None,
                    timezone: str | None = None,
                    warnings: list[str] | None = None) -> Simulation:
    """What ``rules`` (a YAML or JSON mapping, as a tier's ``retention``) — or the rules of the
    policy's ``tier`` — keep and remove of one snapshot per line of ``times`` at ``now`` (default:
    the current time), in ``timezone`` (default: the policy's with ``tier``, else UTC). Deletes
    nothing and reads no store. Rules probably not meant (a window in minutes) are added to
    ``warnings``. Bad input: a one-line UsageError."""
    if (rules is None) == (tier is None):
        raise UsageError("give either --rules MAPPING or --tier NAME (one of them)")
    if tier is not None:
        if policy is None:
            raise UsageError("--tier needs a policy (--policy FILE)")
        chosen = tier_rules(policy, tier)
    else:
        chosen = parse_rules(str(rules))
    zone_name = timezone or (policy.timezone if tier is not None and policy is not None else "UTC")
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(f"bad --timezone {zone_name!r}: unknown time zone (use an IANA name "
                         "such as Europe/Paris)") from None
    if warnings is not None:
        warnings.extend(warnings_of(chosen))
    return simulate(chosen, read_times(times, zone), now or clock.now(), zone_name)


@extras.translating
def retention_plan(policy: Policy, datasets: Sequence[str] | None = None,
                   now: datetime | None = None) -> list[dict[str, Any]]:
    """Per dataset (every one if none is named): what retention would keep and remove of its
    trusted snapshots at ``now``, newest first — ``{"dataset", "rules", "snapshots": [{"snapshot_id",
    "time", "action", "reasons"}], "errors"}``: the dry run of prune, safety rules included."""
    at = now or clock.now()
    out = []
    for name in datasets or sorted(policy.datasets):
        tier = policy.tiers[policy.dataset(name).tier]
        done = prune(policy, name, at, dry_run=True)
        rows = done.as_dict()
        out.append({"dataset": name, "tier": policy.dataset(name).tier,
                    "rules": tier_rules(policy, policy.dataset(name).tier).describe(),
                    "min_copies": tier.min_copies, "snapshots": rows["snapshots"],
                    "errors": rows["errors"]})
    return out
