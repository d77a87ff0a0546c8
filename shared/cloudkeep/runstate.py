"""The start of a snapshot run: its plan (the run state), recorded before any part, and how a
source is prepared to read it — by the run that starts the snapshot, a later one resuming it, or a
fan-out worker.

The plan is created once, create-only (``layout.run_state_key``); whoever continues the snapshot
reads it and prepares the source to read exactly that plan. A plan that can no longer be followed
makes the snapshot abandoned (:class:`Unresumable`); the run then starts afresh under a new id.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from . import checkpoint, layout, sealed
from .capabilities import CopiesObjects, Description, Incremental, LockModes, RecordsPlan, able
from .catalog import load_manifest, snapshot_ids
from .checkpoint import CheckpointError, RunState
from .errors import CloudkeepError, TamperedError
from .keys import RESUME_KEYS
from .lock import unwrap
from .manifest import Manifest, ManifestError
from .policy import Policy
from .retention import Rules
from .segments import RunOptions
from .sources import Source
from .stores import Store
from .trust import expect_for

if TYPE_CHECKING:
    from .keys import Keyring

log = logging.getLogger(__name__)


@dataclass
class RunStart:
    """Everything a run knows before it reads: what to snapshot, where, under which id."""

    policy: Policy
    dataset: str
    store: Store
    source: Source
    snapshot_id: str
    trigger: Literal["manual", "schedule"]
    slot: datetime | None
    options: RunOptions
    started: datetime
    run_id: str
    keyring: Keyring


class Unresumable(CloudkeepError):
    """The recorded plan of an unfinished snapshot cannot be followed (it is abandoned)."""


def tier_store(policy: Policy, dataset: str, store: Store) -> Store:
    """``store`` writing the dataset's objects in its tier's Object Lock mode (``immutability``),
    where the store locks objects; else ``store`` itself."""
    immutability = policy.tiers[policy.dataset(dataset).tier].immutability
    modes = able(store, LockModes)
    if immutability is None or modes is None or not store.capabilities.object_lock:
        return store
    locked: Store = modes.with_lock_mode(immutability.mode)
    return locked


def unfinished_snapshot(store: Store, dataset: str, trigger: str,
                        now: datetime | None = None) -> RunState | None:
    """The dataset's latest unfinished, not abandoned snapshot started by a ``trigger`` run
    within ``checkpoint.RESUME_WITHIN`` of ``now`` (older ones are left to prune), if any."""
    now = now or datetime.now(UTC)
    for snapshot_id in reversed(checkpoint.unfinished_snapshots(store, dataset)):
        try:
            state = checkpoint.load_run_state(store, dataset, snapshot_id)
        except CheckpointError as exc:
            log.warning("dataset %s: %s", dataset, exc)
            continue
        if state is not None and state.trigger == trigger:
            if now - state.started > checkpoint.RESUME_WITHIN:
                return None
            return state
    return None


def load_or_plan(start: RunStart) -> RunState:
    """The snapshot's plan: the recorded one when an earlier invocation started it (the source is
    then prepared to read exactly that plan), else a new one, recorded before any part.
    Raises :class:`Unresumable` when a recorded plan cannot be followed (or was abandoned)."""
    policy, dataset, store, source = start.policy, start.dataset, start.store, start.source
    snapshot_id, keyring = start.snapshot_id, start.keyring
    if checkpoint.is_abandoned(store, dataset, snapshot_id):
        raise Unresumable("it was abandoned")
    try:
        state = checkpoint.load_run_state(store, dataset, snapshot_id)
        if state is not None:
            prepare_source(store, source, state, keyring, policy)
            log.info("dataset %s: resuming unfinished snapshot %s (started %s)", dataset,
                     snapshot_id, state.started_at)
            return state
    except CheckpointError as exc:
        raise Unresumable(str(exc)) from exc
    spec = policy.dataset(dataset)
    copier = able(source, CopiesObjects)
    # A fresh data key, wrapped by every key the dataset lists: a key that cannot be used
    # fails the run here, before anything is read or written.
    key_names = policy.encryption_keys(dataset)
    if key_names and copier is not None:
        # Sources that copy objects (S3) store them content-addressed, server-side copied and
        # deduplicated across snapshots: not client-side encrypted (README, encryption).
        log.warning("%s: the %s source's snapshots are not client-side encrypted (objects are "
                    "copied as they are); protect the store with SSE-KMS", dataset, source.kind)
        key_names = []
    encryption = None
    data_key: bytes | None = None
    if key_names:
        data_key, encryption = keyring.seal(key_names, dataset, snapshot_id)
        # ... and wrapped once more for this run state alone, under a purpose-bound context:
        # whoever resumes the snapshot (a later tick, a worker) unwraps that one (keys/).
        encryption = encryption | {RESUME_KEYS: keyring.wrap_for_resume(
            key_names, dataset, snapshot_id, data_key)}
    retain_until = start.options.retain_until
    if store.capabilities.object_lock:
        # Immutable for as long as the tier's retention could ever keep the snapshot.
        horizon = Rules.from_policy(policy.tiers[spec.tier].retention).horizon()
        immutability = policy.tiers[spec.tier].immutability
        if immutability is not None and immutability.days:
            horizon = max(horizon, timedelta(days=immutability.days))
        retain_until = start.started + horizon
    if copier is not None:
        # Sources that copy objects (S3) write content-addressed blobs into the store (the real
        # store: a blob is create-only and named by its content, so a late one harms nothing).
        copier.attach_store(unwrap(store), dataset, retain_until)
    # Sources that take incremental snapshots continue from the latest committed one; a source
    # may report its own read method and consistency (e.g. a point-in-time read), and top-level
    # keys of its lines that a restored copy cannot keep (codec.py).
    described = _describe(store, source, dataset, snapshot_id, keyring, policy)
    total = source.plan_segments(described.identity)
    planner = able(source, RecordsPlan)
    source_state = planner.plan_state() if planner is not None else None
    if source_state is not None and data_key is not None:
        # A source's plan can hold item keys (Firestore's segment bounds are document names):
        # data, stored sealed like a checkpoint's cursor (sealed.py).
        source_state = sealed.seal(data_key, sealed.plan_aad(snapshot_id), source_state)
    options = start.options
    state = RunState(
        snapshot_id=snapshot_id, dataset=dataset, run_id=start.run_id, trigger=start.trigger,
        slot=start.slot.isoformat() if start.slot else None,
        started_at=start.started.isoformat(), described=dict(described.identity),
        method=described.method, consistency=described.consistency,
        ignores=list(described.digest_ignores), segments=total, part_size=options.part_size,
        level=options.level, retain_until=retain_until.isoformat() if retain_until else None,
        source_state=source_state,
        fanout=options.queue is not None, checkpoint_every=options.checkpoint_every,
        encryption=encryption,
    )
    store.put(layout.run_state_key(dataset, snapshot_id), state.to_bytes(), if_absent=True)
    return state


def _describe(store: Store, source: Source, dataset: str, snapshot_id: str,
              keyring: Keyring | None, policy: Policy | None) -> Description:
    """What ``source`` says it reads (``Description``), told first about the dataset's latest
    committed snapshot where it takes incremental snapshots."""
    incremental = able(source, Incremental)
    if incremental is not None:
        incremental.set_previous(previous_manifest(store, dataset, snapshot_id, keyring, policy))
    return Description.coerce(source.describe())


def data_key_of(keyring: Keyring, state: RunState) -> bytes | None:
    """The snapshot's data key (None when it is not encrypted), unwrapped from the run state —
    its purpose-bound resume wrap where it has one, so the backup identity needs no right to
    unwrap committed snapshots' keys."""
    if not state.encryption:
        return None
    return keyring.unseal(state.dataset, state.snapshot_id, state.encryption)


def attach_source(source: Source, store: Store, state: RunState) -> None:
    """Sources that copy objects (S3) write their blobs into the store (with the snapshot's
    Object Lock date): told so by every invocation that reads a segment of the snapshot."""
    copier = able(source, CopiesObjects)
    if copier is not None:
        copier.attach_store(unwrap(store), state.dataset, state.retain_until_time)


def prepare_source(store: Store, source: Source, state: RunState,
                   keyring: Keyring | None = None, policy: Policy | None = None) -> None:
    """Make ``source`` read the plan of ``state`` (recorded by the invocation that started it)."""
    planner = able(source, RecordsPlan)
    if planner is not None:
        planner.resume_plan(_plan_of(keyring, state), state.segments)
        return
    described = _describe(store, source, state.dataset, state.snapshot_id, keyring, policy)
    total = source.plan_segments(described.identity)
    if total != state.segments:
        raise CheckpointError(
            f"the source now splits into {total} segments, the unfinished snapshot into "
            f"{state.segments}"
        )


def _plan_of(keyring: Keyring | None, state: RunState) -> dict[str, Any]:
    """The source's recorded plan, unsealed where the snapshot is encrypted. Raises
    :class:`CheckpointError` when a sealed plan does not open (no key, another snapshot's plan,
    altered bytes): the plan cannot be followed."""
    plan: dict[str, Any] = state.source_state or {}
    if not sealed.is_sealed(plan):
        return plan
    data_key = data_key_of(keyring, state) if keyring is not None else None
    if data_key is None:
        raise CheckpointError("the recorded plan is sealed and no key opens it")
    try:
        opened = sealed.unseal(data_key, sealed.plan_aad(state.snapshot_id), plan)
    except sealed.SealError as exc:
        raise CheckpointError(f"the recorded plan: {exc}") from exc
    if not isinstance(opened, dict):
        raise CheckpointError("the recorded plan is not an object")
    return opened


def previous_manifest(store: Store, dataset: str, snapshot_id: str,
                      keyring: Keyring | None = None, policy: Policy | None = None) -> Manifest | None:
    """The dataset's latest committed snapshot before ``snapshot_id`` (ids sort by time),
    authenticated, and — with ``policy`` — meeting its requirements (a forged, replayed or
    downgraded one never becomes the base of an incremental snapshot: the source starts afresh)."""
    earlier = [i for i in snapshot_ids(store, dataset) if i < snapshot_id]
    if not earlier:
        return None
    expect = expect_for(policy, dataset) if policy is not None else None
    try:
        return load_manifest(store, dataset, earlier[-1], keyring=keyring, expect=expect)
    except (ManifestError, TamperedError) as exc:  # the source then starts afresh (e.g. a full snapshot)
        log.warning("dataset %s: cannot read the previous snapshot: %s", dataset, exc)
        return None
