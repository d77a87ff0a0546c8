"""Cross-checks a field alone cannot make: references between sections (tiers, stores, keys),
copies that are real redundancy, stores inside stores, exports into the right store type,
signing that has keys, residency."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .. import registry
from ..layout import DATASET_NAME_RE
from ..specs import StoreLocation
from .model import Policy

Found = Iterator[tuple[tuple[str, ...], str]]


def cross_check(data: dict[str, Any]) -> Found:
    """References between sections; runs on the raw data so it reports alongside type errors."""
    stores, tiers = data.get("stores"), data.get("tiers")
    datasets = data.get("datasets")
    if not isinstance(datasets, dict):
        return
    for name, spec in datasets.items():
        if not DATASET_NAME_RE.match(str(name)):
            yield (("datasets", str(name)),
                   f"bad dataset name {name!r} (letters, digits, '_', '.', '-'; up to 128)")
        if not isinstance(spec, dict):
            continue
        tier = spec.get("tier")
        if isinstance(tier, str) and isinstance(tiers, dict) and tier not in tiers:
            known = ", ".join(sorted(map(str, tiers))) or "none defined"
            yield (("datasets", str(name), "tier"), f"unknown tier {tier!r} (known: {known})")
        store = spec.get("store")
        if isinstance(store, str) and isinstance(stores, dict) and store not in stores:
            known = ", ".join(sorted(map(str, stores))) or "none defined"
            yield (("datasets", str(name), "store"), f"unknown store {store!r} (known: {known})")
        yield from _check_copies(("datasets", str(name)), spec.get("copy_to"), stores, store)
        yield from _check_export_store(str(name), spec.get("source"), stores, store)
        yield from _check_continuous(str(name), spec, tiers)
        yield from _check_encryption(("datasets", str(name)), spec.get("encryption"), data.get("keys"))
        yield from _check_encryption(("datasets", str(name)), spec.get("signing"), data.get("keys"),
                                     "signing")
    if isinstance(tiers, dict):
        for tier_name, tier_spec in tiers.items():
            if isinstance(tier_spec, dict):
                yield from _check_copies(("tiers", str(tier_name)), tier_spec.get("copy_to"), stores, None)
                yield from _check_encryption(("tiers", str(tier_name)), tier_spec.get("encryption"),
                                             data.get("keys"))
                yield from _check_encryption(("tiers", str(tier_name)), tier_spec.get("signing"),
                                             data.get("keys"), "signing")
    yield from _check_encryption((), data.get("encryption"), data.get("keys"))
    yield from _check_encryption((), data.get("signing"), data.get("keys"), "signing")
    yield from _check_residency(data)


def _check_continuous(name: str, spec: dict[str, Any], tiers: Any) -> Found:
    """A continuously captured dataset (its own ``continuous`` or its tier's) needs a source
    type whose changes can be captured (s16-capture)."""
    wanted = spec.get("continuous")
    where = ("datasets", name, "continuous")
    if wanted is None and isinstance(tiers, dict):
        tier = tiers.get(spec.get("tier"))
        wanted = tier.get("continuous") if isinstance(tier, dict) else None
        where = ("datasets", name, "tier")
    source = spec.get("source")
    kind = source.get("type") if isinstance(source, dict) else None
    model = registry.source_spec(kind)
    if wanted not in (None, False) and model is not None and model.continuous_requirements() is None:
        yield (where, f"{kind} sources cannot be captured continuously (continuous: false on "
               "this dataset, or a tier without continuous)")


def _check_copies(where: tuple[str, ...], copies: Any, stores: Any,
                  own: Any) -> Found:
    if not isinstance(copies, list) or not isinstance(stores, dict):
        return
    for i, target in enumerate(copies):
        path = (*where, "copy_to", str(i))
        if isinstance(target, str) and target not in stores:
            known = ", ".join(sorted(map(str, stores))) or "none defined"
            yield (path, f"unknown store {target!r} (known: {known})")
        elif isinstance(target, str) and target == own:
            yield (path, f"store {target!r} is the dataset's own store; copy_to names other stores")


def check_copy_stores(policy: Policy) -> Found:
    """Copies are real redundancy: no copy store at the location of the dataset's primary store
    or of another copy store (:meth:`StoreLocation.overlaps`), and a tier's ``min_copies`` never
    more than the copy stores at distinct locations its datasets copy to (else retention could
    never remove anything)."""
    where = {name: spec.location() for name, spec in policy.stores.items()}

    def distinct(path: tuple[str, ...], copies: list[str]) -> tuple[list[str], list[tuple[tuple[str, ...], str]]]:
        kept: list[str] = []
        found: list[tuple[tuple[str, ...], str]] = []
        for i, name in enumerate(copies):
            if name not in where:
                continue  # reported by the cross check
            twin = next((k for k in kept if where[k].overlaps(where[name])), None)
            if twin == name:
                found.append(((*path, str(i)), f"store {name!r} is listed twice"))
            elif twin is not None:
                found.append(((*path, str(i)), f"store {name!r} {_same_place(where[name], repr(twin), where[twin])}: "
                              "a copy there is no second copy"))
            else:
                kept.append(name)
        return kept, found

    users: dict[str, list[str]] = {}
    for ds_name, ds in policy.datasets.items():
        users.setdefault(ds.tier, []).append(ds_name)
    for tier_name, tier in policy.tiers.items():
        path = ("tiers", tier_name, "copy_to")
        kept, found = distinct(path, list(tier.copy_to))
        yield from found
        inherit = [d for d in users.get(tier_name, []) if policy.datasets[d].copy_to is None]
        if tier.min_copies > len(kept) and (inherit or not users.get(tier_name)):
            yield (("tiers", tier_name, "min_copies"),
                   f"min_copies: {tier.min_copies} needs as many copy stores at distinct locations, "
                   f"but copy_to names {len(kept)}: retention could never remove a snapshot")
    for ds_name, ds in policy.datasets.items():
        tier = policy.tiers[ds.tier]
        own = where.get(ds.store)
        if ds.copy_to is not None:
            path = ("datasets", ds_name, "copy_to")
            kept, found = distinct(path, list(ds.copy_to))
            yield from found
        else:
            path = ("tiers", ds.tier, "copy_to")
            kept, _ = distinct(path, list(tier.copy_to))  # its problems are the tier's, above
        copies = list(ds.copy_to if ds.copy_to is not None else tier.copy_to)
        for name in list(kept):
            if own is None or not where[name].overlaps(own):
                continue
            kept.remove(name)
            if name == ds.store and ds.copy_to is not None:
                continue  # "the dataset's own store": reported by the cross check
            whose = "the dataset's store" if ds.copy_to is not None else f"the store of dataset {ds_name!r}"
            if name == ds.store:
                what = f"is {whose}"
            elif where[name] == own:
                what = f"is at the same location as {ds.store!r}, {whose} ({own})"
            else:
                what = f"({where[name]}) overlaps {ds.store!r}, {whose} ({own}), one inside the other"
            yield ((*path, str(copies.index(name))), f"store {name!r} {what}: a copy there is no "
                   "second copy")
        if tier.min_copies > len(kept) and (ds.copy_to is not None or kept != distinct(path, list(tier.copy_to))[0]):
            yield ((*path,) if ds.copy_to is not None else ("tiers", ds.tier, "min_copies"),
                   f"tier {ds.tier!r} needs {tier.min_copies} verified copies (min_copies) but dataset "
                   f"{ds_name!r} copies to {len(kept)} store(s) at distinct locations: retention "
                   "could never remove its snapshots")


def check_nested_stores(policy: Policy) -> Found:
    """No store inside another (one's folder, bucket prefix or container prefix under the
    other's): the outer store's prune would take the inner store's objects for its own
    leftovers. Two names for one location are allowed (keys are per dataset)."""
    where = {name: spec.location() for name, spec in policy.stores.items()}
    reported = set()  # a dataset's copy store inside its own store: the copy check says so
    for ds in policy.datasets.values():
        targets = ds.copy_to if ds.copy_to is not None else policy.tiers[ds.tier].copy_to
        reported |= {frozenset((ds.store, c)) for c in targets}
    for name, mine in where.items():
        for other, theirs in where.items():
            if frozenset((name, other)) in reported:
                continue
            if other != name and mine != theirs and mine.overlaps(theirs) and \
                    len(str(mine)) > len(str(theirs)):
                yield (("stores", name), f"store {name!r} ({mine}) lies inside store {other!r} "
                       f"({theirs}): prune of one would remove the other's objects; give each "
                       "store a location of its own")


def _same_place(mine: StoreLocation, other: str, theirs: StoreLocation) -> str:
    if mine == theirs:
        return f"is at the same location as store {other} ({mine})"
    return f"({mine}) overlaps store {other} ({theirs}), one inside the other"


# An export written by the service itself lands in the dataset's own store bucket.
def _check_export_store(name: str, source: Any, stores: Any, store: Any) -> Found:
    if not isinstance(source, dict) or source.get("method") != "export" or not isinstance(stores, dict):
        return
    spec_class = registry.source_spec(source.get("type"))
    need = spec_class.EXPORT_STORE if spec_class is not None else None
    target = stores.get(store) if isinstance(store, str) else None
    if need is None or not isinstance(target, dict):
        return
    kind, why = need
    if target.get("type") != kind:
        yield (("datasets", name, "source", "method"),
               f"method: export needs the dataset's store to be of type {kind} ({why}, under the "
               f"snapshot's folder); store {store!r} is of type {target.get('type')!r}")


def _check_encryption(where: tuple[str, ...], setting: Any, keys: Any,
                      field: str = "encryption") -> Found:
    if not isinstance(setting, dict) or not isinstance(setting.get("keys"), list):
        return
    for i, name in enumerate(setting["keys"]):
        if isinstance(name, str) and (not isinstance(keys, dict) or name not in keys):
            known = ", ".join(sorted(map(str, keys))) if isinstance(keys, dict) and keys else "none defined"
            yield ((*where, field, "keys", str(i)), f"unknown key {name!r} (known: {known})")


def check_signing(policy: Policy) -> Found:
    """A dataset whose signing is required needs a key that signs it."""
    for name in policy.datasets:
        setting = policy._signing_setting(name)
        if setting is not None and setting.required and not policy.signing_keys(name):
            yield (("datasets", name),
                   "signing is required (signing.required) but no key signs this dataset's "
                   "manifests: list signing.keys, or give it encryption keys")


def _check_residency(data: dict[str, Any]) -> Found:
    """Every store and source in an allowed region (a local file store has none to check)."""
    residency = data.get("residency")
    if not isinstance(residency, dict) or not isinstance(residency.get("allowed_regions"), list):
        return
    allowed = [str(r) for r in residency["allowed_regions"]]
    shown = ", ".join(allowed)
    places: list[tuple[tuple[str, ...], Any, str]] = []
    for name, spec in (data.get("stores") or {}).items() if isinstance(data.get("stores"), dict) else ():
        places.append((("stores", str(name)), spec, "store"))
    for name, spec in (data.get("datasets") or {}).items() if isinstance(data.get("datasets"), dict) else ():
        if isinstance(spec, dict):
            places.append((("datasets", str(name), "source"), spec.get("source"), "source"))
    for path, spec, what in places:
        kinds = registry.STORES if what == "store" else registry.SOURCES
        spec_class = kinds.get(str(spec.get("type"))) if isinstance(spec, dict) else None
        if not isinstance(spec, dict) or spec_class is None or not spec_class.HAS_REGION:
            continue  # a file store, or a spec with its own errors
        region = spec.get("region")
        if region is None:
            yield ((*path, "region"), f"residency is set but this {what} declares no region "
                                      f"(add region: one of {shown})")
        elif str(region) not in allowed:
            yield ((*path, "region"), f"{what} region {region!r} is outside residency.allowed_regions "
                                      f"({shown})")
