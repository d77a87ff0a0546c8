"""Use cases that look at items inside snapshots: :func:`diff` two snapshots and :func:`find`
the snapshots that hold an item (docs/item-recovery.md). They only read."""

from __future__ import annotations

from .. import extras
from ..catalog import parse_ref, resolve, scan, store_named
from ..errors import KeyUnavailableError, UsageError
from ..itemdiff import DiffResult
from ..itemdiff import diff as diff_snapshots
from ..itemfind import FindResult
from ..itemfind import find as find_item
from ..itemread import trusted_chain
from ..keys import keyring_for
from ..policy import Policy
from ..trust import expect_for


@extras.translating
def diff(policy: Policy, ref_a: str, ref_b: str, *, keys: bool = False,
         store_name: str | None = None, allow_unsigned: bool = False) -> DiffResult:
    """Items added, removed, changed and unchanged from snapshot ``ref_a`` to ``ref_b``
    (``DATASET@SNAPSHOT_ID`` or ``DATASET@latest``, of one dataset; from the copy store
    ``store_name`` if given). Incremental snapshots are compared by what their chains hold.
    Both snapshots (every link of their chains) must be trusted; every part is checked before
    it is used. With ``keys`` the result also lists each key that differs
    (``result.items()``); close the result (or use it as a context manager) to free its
    temporary file. Memory stays flat whatever the snapshots' size."""
    datasets = {_dataset_of(ref_a), _dataset_of(ref_b)} - {None}
    if len(datasets) > 1:
        raise UsageError(f"diff compares two snapshots of one dataset (got {ref_a} and {ref_b})")
    store_a, manifest_a = resolve(policy, ref_a, store_name=store_name, allow_unsigned=allow_unsigned)
    store_b, manifest_b = resolve(policy, ref_b, store_name=store_name, allow_unsigned=allow_unsigned)
    if manifest_a.dataset != manifest_b.dataset:
        raise UsageError(f"diff compares two snapshots of one dataset ({manifest_a.dataset} and "
                         f"{manifest_b.dataset} are two)")
    expect = expect_for(policy, manifest_a.dataset, store_name, allow_unsigned=allow_unsigned)
    keyring = keyring_for(policy)
    cache: dict[str, bytes | None] = {}
    chain_a = trusted_chain(store_a, manifest_a, expect, keyring, cache)
    chain_b = trusted_chain(store_b, manifest_b, expect, keyring, cache)
    return diff_snapshots(store_a, chain_a, store_b, chain_b, keys=keys)


@extras.translating
def find(policy: Policy, dataset: str, key: str, *, store_name: str | None = None,
         allow_unsigned: bool = False) -> FindResult:
    """The snapshots of ``dataset`` (in the copy store ``store_name`` if given) that hold the
    item whose key is ``key`` (JSON in the source's own form, as ``--key`` takes it), newest
    capture first, each with the item as it holds it. Only trusted snapshots are searched (a
    refused manifest is logged); parts that cannot hold the key are skipped by their key
    index."""
    if dataset not in policy.datasets:
        known = ", ".join(sorted(policy.datasets))
        raise UsageError(f"unknown dataset {dataset!r} (known: {known})")
    store = store_named(policy, dataset, store_name)
    expect = expect_for(policy, dataset, store_name, allow_unsigned=allow_unsigned)
    listing = scan(store, dataset, expect=expect)
    for refusal in listing.refused:
        if refusal.kind == "key-unavailable":  # searching without the keys would hide items
            raise KeyUnavailableError(refusal.message)
    result = find_item(store, dataset, listing.manifests, key, expect=expect,
                       keyring=keyring_for(policy))
    result.problems[:0] = [refusal.message for refusal in listing.refused]
    return result


def _dataset_of(ref: str) -> str | None:
    parsed = parse_ref(ref)
    return None if isinstance(parsed, str) else parsed.dataset
