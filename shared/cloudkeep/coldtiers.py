"""Cold tiers at work: moving parts to colder classes, lifecycle rules, bytes and cost per class,
and the ``validate`` warnings about minimum storage durations (docs/cold-tiers.md).

Who moves a snapshot's parts depends on the store (its spec's ``TRANSITIONS_BY``):

- ``lifecycle`` (S3, GCS): the cloud's own lifecycle rules, one per dataset, written from the
  policy by ``cloudkeep lifecycle --apply`` (an administrator's act: the functions' roles may not
  change the bucket). Changing an S3 object's class in place would be a copy over itself — an
  overwrite the create-only vault refuses — so cloudkeep never does it. S3 rules select parts by
  the object tag every part is written with (``cloudkeep-data=part``); GCS rules by the parts'
  name suffix. Ages count from each part's creation (within a run of the capture time).
- ``prune`` (Azure Blob): the pruner (the only identity that changes existing objects) sets each
  part's tier with Set Blob Tier on its schedule (:func:`transition`); the blob is not rewritten.
  Ages count from the snapshot's capture time; a snapshot rehydrated less than
  ``REARCHIVE_AFTER`` ago is left where it is.
- ``none`` (file): no classes; ``validate`` warns.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

from . import layout, pricing, rehydrate, timeline
from .capabilities import SetsStorageClass, able
from .catalog import scan
from .errors import CloudkeepError
from .policy import Policy, format_duration
from .registry import store_spec
from .storageclass import CLASSES, class_at, colder
from .stores import Store
from .trust import expect_for

log = logging.getLogger(__name__)

REARCHIVE_AFTER = timedelta(days=rehydrate.DAYS)
"""A rehydrated snapshot stays online this long after its rehydration started."""

SpanOf = Callable[[Any, timedelta], timedelta]
"""How far back retention rules reach at a run interval (``advice.retention_span``)."""


def _spec_class(policy: Policy, store_name: str) -> Any:
    return store_spec(policy.stores[store_name].type)


def store_class_of(policy: Policy, store_name: str, name: str | None) -> str:
    """The store's own class for cloudkeep's class ``name`` (None: its default class)."""
    spec = _spec_class(policy, store_name)
    return str(spec.DEFAULT_CLASS if name is None else spec.STORAGE_CLASSES.get(name, spec.DEFAULT_CLASS))


def stores_of(policy: Policy, dataset: str) -> list[str]:
    """The stores holding ``dataset``'s snapshots: its store and its copies."""
    spec = policy.dataset(dataset)
    tier = policy.tiers[spec.tier]
    copies = spec.copy_to if spec.copy_to is not None else tier.copy_to
    return [spec.store, *[c for c in copies if c != spec.store]]


# --- lifecycle rules (S3, GCS) ----------------------------------------------------------------


def lifecycle_plans(policy: Policy, store_name: str) -> dict[str, list[tuple[int, str]]]:
    """``{dataset snapshots prefix: [(days, store class), ...]}`` for every dataset of the policy
    whose snapshots (or copies) are in ``store_name`` and whose tier has transitions. Days are
    whole (rounded up): lifecycle rules count in days."""
    spec = _spec_class(policy, store_name)
    plans: dict[str, list[tuple[int, str]]] = {}
    for name in sorted(policy.datasets):
        tier = policy.tiers[policy.dataset(name).tier]
        if not tier.transition or store_name not in stores_of(policy, name):
            continue
        steps = [(max(1, math.ceil(t.after / timedelta(days=1))), spec.STORAGE_CLASSES[t.to])
                 for t in tier.transition if t.to in spec.STORAGE_CLASSES]
        if steps:
            plans[layout.snapshots_prefix(name)] = steps
    return plans


# --- transitions by the pruner (Azure Blob) ---------------------------------------------------


def transition(policy: Policy, name: str, store: Store, now: datetime, *,
               store_name: str | None = None, dry_run: bool = False) -> dict[str, Any]:
    """Move the parts of ``name``'s committed, trusted snapshots in ``store`` to the class their
    age calls for (never warmer; only parts, listed in their manifests). A store that does not
    set classes itself (lifecycle rules, or none) is left alone. Returns ``{"moved": parts,
    "snapshots": [{"snapshot_id", "to", "parts"}], "errors": [part refused]}`` (a part the store
    refuses to move is logged and left; the others still move)."""
    store_name = store_name or policy.dataset(name).store
    tier = policy.tiers[policy.dataset(name).tier]
    spec = _spec_class(policy, store_name)
    setter = able(store, SetsStorageClass)
    out: dict[str, Any] = {"dataset": name, "moved": 0, "snapshots": [], "errors": []}
    if not tier.transition or setter is None or spec.TRANSITIONS_BY != "prune":
        return out
    listing = scan(store, name, expect=expect_for(policy, name))
    by_snapshot: dict[str, dict[str, str | None]] = defaultdict(dict)
    for info in store.list(layout.snapshots_prefix(name)):
        by_snapshot[info.key.split("/", 3)[2]][info.key] = info.storage_class
    reverse = {v: k for k, v in spec.STORAGE_CLASSES.items()}
    for manifest in listing.manifests:
        target = class_at(tier.transition, timeline.age(timeline.capture_time(manifest), now))
        if target is None:
            continue
        if _recently_rehydrated(store, manifest.dataset, manifest.snapshot_id, now):
            continue
        present = by_snapshot.get(manifest.snapshot_id, {})
        keys = [layout.part_key(name, manifest.snapshot_id, p.name) for p in manifest.parts]
        todo = [k for k in keys if k in present
                and colder(target, reverse.get(present[k] or "", None))]
        if not todo:
            continue
        moved = 0
        for key in todo:
            if dry_run:
                moved += 1
                continue
            try:  # one part refused (a hold, a transient error) does not stop the others
                setter.set_storage_class(key, spec.STORAGE_CLASSES[target])
                moved += 1
            except CloudkeepError as exc:
                log.warning("dataset %s: %s not moved to %s: %s", name, key, target, exc)
                out["errors"].append(f"{key}: {exc}")
        out["moved"] += moved
        if moved:
            out["snapshots"].append({"snapshot_id": manifest.snapshot_id, "to": target,
                                     "store_class": spec.STORAGE_CLASSES[target], "parts": moved})
    if out["moved"]:
        log.info("dataset %s: %d part(s) moved to colder classes", name, out["moved"])
    return out


def _recently_rehydrated(store: Store, dataset: str, snapshot_id: str, now: datetime) -> bool:
    record = rehydrate.latest(store, dataset, snapshot_id)
    if not record:
        return False
    try:
        started = datetime.fromisoformat(str(record.get("started_at")))
    except ValueError:
        return True  # unreadable: leave the snapshot online (the safe side)
    return started.tzinfo is None or now - started < REARCHIVE_AFTER


# --- bytes and cost per class (report) ---------------------------------------------------------


def storage_by_class(policy: Policy, name: str, store: Store, store_name: str | None = None
                     ) -> dict[str, Any]:
    """Bytes of everything under ``name``'s prefix in ``store``, per storage class (an object
    whose listing names no class counts in the store's default class), and what keeping them a
    month costs (``cloudkeep.pricing``, with the policy's ``pricing`` overrides)."""
    store_name = store_name or policy.dataset(name).store
    spec = _spec_class(policy, store_name)
    sizes: dict[str, int] = defaultdict(int)
    for info in store.list(layout.dataset_prefix(name)):
        sizes[info.storage_class or spec.DEFAULT_CLASS] += info.size
    return pricing.monthly_storage(spec.type_name(), dict(sizes), policy.pricing)


# --- validate: minimum storage durations --------------------------------------------------------


def _horizons(retention: Any, interval: timedelta, span_of: SpanOf
              ) -> Iterable[tuple[str, timedelta]]:
    """``(rule, about how old a snapshot kept only by that rule gets)`` for each rule set: every
    form a rule takes (a count, a duration or calendar span such as ``1y2mo``), through the same
    reach the other advice uses (``span_of``: ``advice.retention_span`` of that rule alone). An
    ``unlimited`` rule deletes nothing by age: no horizon."""
    for field, value in retention:
        if value is None or value is False or value == 0 or value == "unlimited":
            continue
        horizon = span_of(SimpleNamespace(**{field: value}), interval)
        if timedelta(0) < horizon:
            yield f"{field}: {value}", horizon


def warnings(policy: Policy, interval_of: Callable[[str], timedelta], span_of: SpanOf
             ) -> list[tuple[str, str, str]]:
    """``(code, path, message)`` of the cold-tier risks (``advice`` prints them):

    - ``store-has-no-classes``: a tier has transitions but a dataset of it is kept in a store
      without storage classes (file);
    - ``early-deletion``: retention deletes snapshots kept only by one of its rules before the
      class they were moved to has been paid for (its minimum storage duration), or the next
      transition moves them on before that.
    """
    out: list[tuple[str, str, str]] = []
    for name, dataset in sorted(policy.datasets.items()):
        tier = policy.tiers.get(dataset.tier)
        if tier is None or not tier.transition:
            continue
        for store_name in stores_of(policy, name):
            if store_name in policy.stores and not _spec_class(policy, store_name).STORAGE_CLASSES:
                out.append(("store-has-no-classes", f"datasets.{name}.store",
                            f"tier {dataset.tier!r} moves snapshots to colder classes, but store "
                            f"{store_name!r} ({policy.stores[store_name].type}) has no storage "
                            "classes: its snapshots stay where they are"))
    seen: set[tuple[str, str]] = set()
    for tier_name, tier in sorted(policy.tiers.items()):
        if not tier.transition:
            continue
        types = sorted({policy.stores[s].type for n, d in policy.datasets.items() if d.tier == tier_name
                        for s in stores_of(policy, n) if s in policy.stores})
        horizons = list(_horizons(tier.retention, interval_of(tier_name), span_of))
        for store_type in types:
            spec = store_spec(store_type)
            if spec is None or not spec.STORAGE_CLASSES:
                continue
            for i, step in enumerate(tier.transition):
                cls = spec.STORAGE_CLASSES[step.to]
                minimum = timedelta(days=spec.MIN_STORAGE_DAYS.get(cls, 0))
                paid_until = step.after + minimum
                leaves = tier.transition[i + 1].after if i + 1 < len(tier.transition) else None
                path = f"tiers.{tier_name}.transition[{i}]"
                if spec.LIFECYCLE_MIN_DAYS.get(cls, 0) > step.after.days:
                    out.append(("lifecycle-refuses", path,
                                f"{store_type} lifecycle rules move objects to {cls} only after at "
                                f"least {spec.LIFECYCLE_MIN_DAYS[cls]} days: "
                                f"`cloudkeep lifecycle --apply` will be refused; move them later"))
                if leaves is not None and leaves < paid_until and (path, store_type) not in seen:
                    seen.add((path, store_type))
                    out.append(("early-deletion", path,
                                f"{store_type} {cls} is billed for at least {minimum.days} days, "
                                f"but the next transition moves parts on after "
                                f"{format_duration(leaves - step.after)} there (early-deletion "
                                "charge): move them later"))
                for rule, horizon in horizons:
                    if step.after < horizon < paid_until and (leaves is None or horizon < leaves):
                        out.append(("early-deletion", f"tiers.{tier_name}.retention",
                                    f"snapshots kept only by {rule} are deleted at about "
                                    f"{format_duration(horizon)} old, "
                                    f"{format_duration(horizon - step.after)} after moving to "
                                    f"{step.to} ({store_type} {cls}), which is billed for at least "
                                    f"{minimum.days} days: keep them longer or move them later"))
    return out


__all__ = ["CLASSES", "lifecycle_plans", "storage_by_class", "store_class_of", "transition",
           "warnings"]
