"""Finding committed snapshots: listing manifests and resolving ``DATASET@ID`` references.

Every manifest read here passes ``cloudkeep.trust`` (bound to its key and store, authentic, meeting
the policy); :func:`scan` reports the ones that do not instead of failing the whole listing."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from . import layout, timeline, trust
from .errors import (
    CloudkeepError,
    KeyUnavailableError,
    ObjectNotFoundError,
    SnapshotNotFoundError,
    TamperedError,
    UsageError,
)
from .manifest import Manifest, ManifestError
from .policy import Policy
from .registry import open_store
from .stores import Store
from .trust import Expect

if TYPE_CHECKING:
    from .keys import Keyring

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SnapshotRef:
    dataset: str
    snapshot_id: str  # or "latest"

    def __str__(self) -> str:
        return f"{self.dataset}@{self.snapshot_id}"


def parse_ref(text: str) -> SnapshotRef | str:
    """``DATASET@SNAPSHOT_ID`` / ``DATASET@latest`` → SnapshotRef; a bare snapshot id → str.
    ``latest`` is the snapshot with the newest capture time (``timeline.py``)."""
    if "@" in text:
        dataset, _, snap = text.partition("@")
        if not dataset or not snap:
            raise UsageError(f"bad snapshot reference {text!r} (use DATASET@SNAPSHOT_ID or DATASET@latest)")
        if snap != "latest" and not layout.SNAPSHOT_ID_RE.match(snap):
            raise UsageError(f"bad snapshot id {snap!r} in {text!r} (expected e.g. 20260101T020000Z-1a2b3c)")
        return SnapshotRef(dataset, snap)
    if layout.SNAPSHOT_ID_RE.match(text):
        return text
    raise UsageError(f"bad snapshot reference {text!r} (use DATASET@SNAPSHOT_ID or DATASET@latest)")


def snapshot_ids(store: Store, dataset: str) -> list[str]:
    """Ids of snapshots with a manifest object, oldest first — whether or not the manifest can be
    trusted (:func:`scan` says which can)."""
    ids = []
    for info in store.list(layout.snapshots_prefix(dataset)):
        snapshot_id = layout.parse_manifest_key(dataset, info.key)
        if snapshot_id:
            ids.append(snapshot_id)
    return sorted(ids)


def load_manifest(store: Store, dataset: str, snapshot_id: str, *,
                  keyring: Keyring | None = None, expect: Expect | None = None) -> Manifest:
    """The committed manifest stored as ``dataset@snapshot_id``, checked by ``cloudkeep.trust``:
    always bound to its key (ForgedManifestError if it names another dataset or id); with
    ``expect``, also to the dataset's store and the policy's requirements (DowngradeError); with
    a keyring (``keyring`` or ``expect.keyring``), authenticated (TamperedError if it was edited,
    KeyUnavailableError if no policy key unwraps it). ManifestError if it cannot be parsed."""
    key = layout.manifest_key(dataset, snapshot_id)
    try:
        data = store.get(key)
    except ObjectNotFoundError:
        raise SnapshotNotFoundError(f"no committed snapshot {dataset}@{snapshot_id}") from None
    where = f"{store.describe()}/{key}"
    manifest = Manifest.from_bytes(data, where=where)
    trust.check(store, manifest, dataset, snapshot_id, expect, keyring=keyring, where=where)
    return manifest


@dataclass(frozen=True)
class Refusal:
    """A manifest a reader did not accept: ``kind`` is ``forged`` (not bound to its key or
    store), ``tampered`` (its tag fails), ``downgrade`` (unencrypted or unsigned against the
    policy), ``unreadable`` (not a manifest) or ``key-unavailable`` (no policy key could check
    it). ``manifest`` is the parsed manifest when there is one (evidence: prune keeps what it
    points at)."""

    dataset: str
    snapshot_id: str
    kind: str
    message: str
    manifest: Manifest | None = None

    @property
    def tampering(self) -> bool:
        """Evidence that someone wrote to the store (not damage or a missing key)."""
        return self.kind in ("forged", "tampered", "downgrade")

    def as_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "snapshot_id": self.snapshot_id,
                "ref": f"{self.dataset}@{self.snapshot_id}", "kind": self.kind,
                "problem": self.message}


@dataclass
class Listing:
    """A dataset's manifests as one reader sees them: the trusted ones (oldest first) and every
    one refused, with why."""

    dataset: str
    manifests: list[Manifest] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        return [m.snapshot_id for m in self.manifests]


def _judge(store: Store, dataset: str, snapshot_id: str, expect: Expect | None,
           keyring: Keyring | None) -> Manifest | Refusal:
    key = layout.manifest_key(dataset, snapshot_id)
    where = f"{store.describe()}/{key}"
    try:
        data = store.get(key)
    except ObjectNotFoundError:  # deleted since it was listed (prune)
        return Refusal(dataset, snapshot_id, "unreadable", f"{where} disappeared while listing")
    try:
        manifest = Manifest.from_bytes(data, where=where)
    except ManifestError as exc:
        return Refusal(dataset, snapshot_id, "unreadable", str(exc))
    try:
        trust.check(store, manifest, dataset, snapshot_id, expect, keyring=keyring, where=where)
    except trust.ForgedManifestError as exc:
        return Refusal(dataset, snapshot_id, "forged", str(exc), manifest)
    except trust.DowngradeError as exc:
        return Refusal(dataset, snapshot_id, "downgrade", str(exc), manifest)
    except TamperedError as exc:
        return Refusal(dataset, snapshot_id, "tampered", str(exc), manifest)
    except KeyUnavailableError as exc:
        return Refusal(dataset, snapshot_id, "key-unavailable", str(exc), manifest)
    return manifest


def scan(store: Store, dataset: str, *, expect: Expect | None = None,
         keyring: Keyring | None = None) -> Listing:
    """Read and check every manifest of ``dataset`` (as :func:`load_manifest` does); a manifest
    that fails is reported in ``refused``, never raised, so one bad record never hides the
    others. Only an unreachable store raises."""
    ids = snapshot_ids(store, dataset)
    listing = Listing(dataset)

    def judge(snapshot_id: str) -> Manifest | Refusal:
        return _judge(store, dataset, snapshot_id, expect, keyring)

    if len(ids) <= 1:
        outcomes = [judge(i) for i in ids]
    else:
        with ThreadPoolExecutor(max_workers=8) as pool:
            outcomes = list(pool.map(judge, ids))
    for outcome in outcomes:
        if isinstance(outcome, Refusal):
            listing.refused.append(outcome)
        else:
            listing.manifests.append(outcome)
    return listing


def list_manifests(store: Store, dataset: str, *, keyring: Keyring | None = None,
                   expect: Expect | None = None) -> list[Manifest]:
    """The manifests :func:`scan` trusts, oldest first (each refused one is logged)."""
    listing = scan(store, dataset, expect=expect, keyring=keyring)
    for refusal in listing.refused:
        log.warning("%s", refusal.message)
    return listing.manifests


def latest(store: Store, dataset: str, *, expect: Expect | None = None,
           keyring: Keyring | None = None, not_after: datetime | None = None,
           by_capture: bool = True) -> Manifest | None:
    """The newest manifest of ``dataset`` that passes every check (whose id's time is not after
    ``not_after``): the newest capture time (``timeline.py``), or with ``by_capture=False`` the
    newest id (slot). Newer ones that fail are skipped with a warning — a forged manifest never
    becomes ``@latest``, nor hides the real one. KeyUnavailableError is raised, not skipped."""
    ids = snapshot_ids(store, dataset)
    if not_after is not None:
        cutoff = layout.format_time(not_after)
        ids = [i for i in ids if i[:16] <= cutoff]
    order = list(reversed(ids))
    if by_capture and len(ids) > 1:
        # capture order of the readable ones first; the rest (judged, so reported) after
        timed = [c.snapshot_id for c in reversed(committed(store, dataset, ids=ids))]
        order = timed + [i for i in order if i not in set(timed)]
    for snapshot_id in order:
        outcome = _judge(store, dataset, snapshot_id, expect, keyring)
        if isinstance(outcome, Manifest):
            return outcome
        if outcome.kind == "key-unavailable":
            raise KeyUnavailableError(outcome.message)
        log.warning("skipping %s@%s: %s", dataset, snapshot_id, outcome.message)
    return None


def store_named(policy: Policy, dataset: str, name: str | None) -> Store:
    """The dataset's own store, or the store ``name`` (a copy) when given."""
    spec = policy.dataset(dataset)
    if name is None:
        return open_store(policy.stores[spec.store])
    if name not in policy.stores:
        known = ", ".join(sorted(policy.stores))
        raise UsageError(f"unknown store {name!r} (known: {known})")
    return open_store(policy.stores[name])


def resolve(policy: Policy, text: str, *, store_name: str | None = None,
            authenticate: bool = True, allow_unsigned: bool = False) -> tuple[Store, Manifest]:
    """The store and manifest a reference names (in the dataset's store, or in the copy store
    ``store_name``). The manifest is always bound to where it is stored (ForgedManifestError);
    unless ``authenticate`` is False (verify checks the tag and the policy's requirements itself,
    to report them) it is authenticated with the policy's keys and must meet the policy
    (DowngradeError; ``allow_unsigned`` lets an unsigned or unencrypted one through). ``@latest``
    is the newest snapshot that passes. Raises SnapshotNotFoundError if none."""
    ref = parse_ref(text)
    if isinstance(ref, str):
        if store_name:
            raise UsageError("with --store, name the snapshot as DATASET@SNAPSHOT_ID")
        return _find_bare(policy, ref, authenticate, allow_unsigned)
    store = store_named(policy, ref.dataset, store_name)
    expect = trust.expect_for(policy, ref.dataset, store_name, authenticate=authenticate,
                              allow_unsigned=allow_unsigned)
    if ref.snapshot_id == "latest":
        # the same snapshot for every command: the newest that passes every check
        chooser = trust.expect_for(policy, ref.dataset, store_name, allow_unsigned=allow_unsigned)
        newest = latest(store, ref.dataset, expect=chooser)
        if newest is None:
            raise SnapshotNotFoundError(f"dataset {ref.dataset!r} has no committed snapshot"
                                        + (" that can be trusted" if snapshot_ids(store, ref.dataset)
                                           else ""))
        return store, newest
    return store, load_manifest(store, ref.dataset, ref.snapshot_id, expect=expect)


def _find_bare(policy: Policy, snapshot_id: str, authenticate: bool,
               allow_unsigned: bool) -> tuple[Store, Manifest]:
    found = []
    for name, spec in policy.datasets.items():
        store = open_store(policy.stores[spec.store])
        if store.stat(layout.manifest_key(name, snapshot_id)) is not None:
            found.append((store, name))
    if not found:
        raise SnapshotNotFoundError(f"no committed snapshot {snapshot_id} in any dataset")
    if len(found) > 1:
        names = ", ".join(f"{n}@{snapshot_id}" for _, n in found)
        raise UsageError(f"snapshot id {snapshot_id} is ambiguous: {names}")
    store, name = found[0]
    expect = trust.expect_for(policy, name, authenticate=authenticate, allow_unsigned=allow_unsigned)
    return store, load_manifest(store, name, snapshot_id, expect=expect)


def committed(store: Store, dataset: str, *, ids: list[str] | None = None,
              as_of: datetime | None = None) -> list[timeline.Captured]:
    """The dataset's committed snapshots (``ids``, or every one in ``store``) with their capture
    times, oldest capture first; with ``as_of``, only those that count at that time. A manifest
    that cannot be read or is not bound to its key is left out (with a warning): the trusted
    listings (``catalog.scan``) report it."""
    if ids is None:
        ids = snapshot_ids(store, dataset)
    if as_of is not None:
        ids = [i for i in ids if timeline.id_time(i) <= as_of]
    known = timeline.remembered(store, dataset, ids)
    missing = [i for i, at in known.items() if at is None]

    def load(snapshot_id: str) -> tuple[str, datetime | None]:
        try:
            return snapshot_id, timeline.remember(store, load_manifest(store, dataset, snapshot_id))
        except CloudkeepError as exc:  # reported by the trusted listings (catalog.scan)
            log.warning("%s@%s: not on the timeline: %s", dataset, snapshot_id, exc)
            return snapshot_id, None

    if missing:
        if len(missing) == 1:
            known.update([load(missing[0])])
        else:
            with ThreadPoolExecutor(max_workers=8) as pool:
                known.update(pool.map(load, missing))
    out = [timeline.Captured(i, at) for i, at in known.items() if at is not None]
    out.sort(key=lambda c: (c.captured_at, c.snapshot_id))
    return out


def newest(store: Store, dataset: str, as_of: datetime | None = None) -> timeline.Captured | None:
    """The snapshot with the newest capture time (that counts at ``as_of``), or None."""
    found = committed(store, dataset, as_of=as_of)
    return found[-1] if found else None
