"""Risky choices in a valid policy: ``cloudkeep validate`` prints them as warnings (exit 0).

- ``rpo-below-interval``: a tier's RPO is shorter than the time between two scheduled runs, so
  the RPO is missed before every run even when every run succeeds.
- ``retention-below-rpo``: the longest the tier's retention can keep a snapshot is shorter than
  the RPO: by the time a backup is late, the older snapshots may already be gone.
- ``no-drill``: a critical tier (named ``critical``, or with an RPO of one hour or less) has no
  restore drill scheduled (``verify: {drill: CRON}``): nobody knows how long a restore takes.
- ``no-encryption``: a dataset's snapshots are not encrypted (neither the policy nor the
  dataset/tier names ``encryption``): anyone who can read the store can read the data.
- ``retention-below-lock``: a tier's retention keeps snapshots for less time than its
  ``immutability.days`` lock: prune cannot delete them before the lock runs out (they stay,
  and are paid for, that long).
- ``store-has-no-classes``, ``early-deletion`` and ``lifecycle-refuses``: cold tiers (``cloudkeep.coldtiers``): a
  tier's ``transition`` where the store has no classes; retention or the next transition moving
  parts on before their class's minimum storage duration (docs/cold-tiers.md).
- ``continuous-setup``: a dataset is captured continuously (``continuous:``): what its source
  needs for it (a stream, versioning, triggers — the source type's ``continuous_requirements()``).
- ``store-cannot-lock``: a tier asks for ``immutability`` but a dataset of it is stored where
  cloudkeep cannot lock objects (a store without ``object_lock``; GCS, Azure and file stores: lock
  the bucket or container itself — docs/threat-model.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from . import coldtiers
from .policy import Policy, format_duration
from .retention import WITHIN_RULES
from .schedule import Schedule
from .spans import Span
from .specs import MAX_DURATION

CRITICAL_RPO = timedelta(hours=1)
_PERIOD = {"hourly": timedelta(hours=1), "daily": timedelta(days=1), "weekly": timedelta(weeks=1),
           "monthly": timedelta(days=30), "yearly": timedelta(days=365)}


@dataclass(frozen=True)
class PolicyWarning:
    code: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "path": self.path, "message": self.message}


def retention_span(retention: Any, interval: timedelta) -> timedelta:
    """How far back the retention rules can reach when a snapshot is taken every ``interval``:
    ``last N`` covers N intervals, ``daily N`` N days (or N intervals if runs are rarer), etc."""
    spans = [timedelta(0)]
    last = getattr(retention, "last", None)
    if last == "unlimited":
        return MAX_DURATION  # nothing ages out
    if last:
        spans.append(interval * last)
    for name, period in _PERIOD.items():
        count = getattr(retention, name, None)
        if count == "unlimited":
            return MAX_DURATION
        if count:
            spans.append(max(period, interval) * count)
    for name in ("within", *WITHIN_RULES):
        within = getattr(retention, name, None)
        if isinstance(within, timedelta):
            spans.append(within)
        elif isinstance(within, Span):
            spans.append(min(within.approximate(), MAX_DURATION))
    return max(spans)


def _drill_of(tier: Any) -> Any:
    verify = getattr(tier, "verify", None)
    if verify is None:
        return None
    if isinstance(verify, dict):
        return verify.get("drill")
    return getattr(verify, "drill", None)


def _encryption_on(value: Any) -> bool | None:
    """True/False when ``value`` says, None when it says nothing."""
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    keys = value.get("keys") if isinstance(value, dict) else getattr(value, "keys", None)
    if callable(keys):  # a plain mapping's .keys method, not a `keys:` field
        keys = value.get("keys") if isinstance(value, dict) else None
    return bool(keys) if keys is not None else True


def warnings(policy: Policy, now: datetime | None = None) -> list[PolicyWarning]:
    """Every risky choice in ``policy``, in the order tiers, then datasets."""
    now = now or datetime.now(UTC)
    out: list[PolicyWarning] = []
    for name, tier in sorted(policy.tiers.items()):
        where = f"tiers.{name}"
        interval = Schedule.parse(tier.schedule, policy.timezone).typical_interval(now)
        if tier.rpo < interval:
            out.append(PolicyWarning(
                "rpo-below-interval", f"{where}.rpo",
                f"RPO {format_duration(tier.rpo)} is shorter than the schedule's interval "
                f"({format_duration(interval)} between runs of {tier.schedule!r}): the RPO is "
                "missed before every run; run more often or allow a longer RPO"))
        span = retention_span(tier.retention, interval)
        if span < tier.rpo:
            out.append(PolicyWarning(
                "retention-below-rpo", f"{where}.retention",
                f"retention keeps snapshots for at most about {format_duration(span)}, less than "
                f"the RPO {format_duration(tier.rpo)}: keep more (e.g. daily: 7)"))
        for rule in ("within", *WITHIN_RULES):
            window = getattr(tier.retention, rule, None)
            if isinstance(window, Span) and window.looks_like_months():
                out.append(PolicyWarning(
                    "retention-window-minutes", f"{where}.retention.{rule}",
                    f"{rule}: {window} {window.why_months()} — m is minutes in cloudkeep; months "
                    "(restic's m) are written mo, e.g. 6mo"))
        lock = getattr(tier, "immutability", None)
        if lock is not None and lock.days and span < timedelta(days=lock.days):
            out.append(PolicyWarning(
                "retention-below-lock", f"{where}.immutability.days",
                f"retention keeps snapshots for at most about {format_duration(span)}, less than "
                f"their lock of {lock.days} day(s): prune cannot delete them until the lock runs "
                "out; lock less or keep more"))
        critical = name == "critical" or tier.rpo <= CRITICAL_RPO
        if critical and not _drill_of(tier):
            why = "named critical" if name == "critical" else f"RPO {format_duration(tier.rpo)} ≤ 1h"
            out.append(PolicyWarning(
                "no-drill", where,
                f"critical tier ({why}) has no restore drill scheduled: add verify: {{drill: "
                "\"0 4 * * 0\"} to measure restores against the RTO"))
    for name, dataset in sorted(policy.datasets.items()):
        wants_lock = getattr(policy.tiers.get(dataset.tier), "immutability", None) is not None
        store = policy.stores.get(dataset.store)
        if wants_lock and not (store is not None and store.locks_objects()):
            kind = store.type if store is not None else "?"
            out.append(PolicyWarning(
                "store-cannot-lock", f"datasets.{name}.store",
                f"tier {dataset.tier!r} asks for immutability, but store {dataset.store!r} ({kind}) "
                "locks no objects: use an s3 store with object_lock (a bucket with Object Lock), "
                "or lock the bucket / container itself (GCS retention lock, Azure locked "
                "immutability)"))
    out += [PolicyWarning(*w) for w in coldtiers.warnings(  # s16-cold: cold tiers
        policy, lambda t: Schedule.parse(policy.tiers[t].schedule, policy.timezone).typical_interval(now),
        retention_span)]
    for name, dataset in sorted(policy.datasets.items()):
        if policy.continuous(name) is not None:
            needs = type(dataset.source).continuous_requirements()
            if needs:
                out.append(PolicyWarning("continuous-setup", f"datasets.{name}.continuous",
                                         f"continuous capture needs {needs}"))
    policy_on = _encryption_on(getattr(policy, "encryption", None))
    keys_of = getattr(policy, "encryption_keys", None)  # the policy's own answer, where it has one
    for name, dataset in sorted(policy.datasets.items()):
        if callable(keys_of):
            decided = bool(keys_of(name))
        else:
            own_tier = policy.tiers.get(dataset.tier)
            says = [_encryption_on(getattr(dataset, "encryption", None)),
                    _encryption_on(getattr(own_tier, "encryption", None)), policy_on]
            decided = next((v for v in says if v is not None), False)
        if not decided:
            out.append(PolicyWarning(
                "no-encryption", f"datasets.{name}",
                "no encryption: snapshots are stored as plain compressed JSON that anyone who can "
                "read the store can read (add keys: and encryption: to the policy)"))
    return out
