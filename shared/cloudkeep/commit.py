"""The commit of a snapshot: its manifest, written last and create-only once every segment is
done — so of several workers finishing together exactly one commits, and a snapshot without a
manifest stays invisible. The checkpoints stay (prune removes them).
"""

from __future__ import annotations

import logging

from . import __version__, keys, layout
from . import clock as _clock
from .checkpoint import RunState, SegmentRecord
from .codec import ContentDigest
from .errors import ObjectExistsError, ObjectNotFoundError
from .keys import RESUME_KEYS, Keyring
from .manifest import (
    Codec,
    Consistency,
    ContentDigestEntry,
    Encryption,
    Manifest,
    PartEntry,
    Totals,
)
from .policy import Policy
from .runstate import data_key_of
from .stores import Store
from .trust import check_binding, sign_new

log = logging.getLogger(__name__)


def commit(policy: Policy, store: Store, state: RunState, records: dict[int, SegmentRecord],
           run_id: str, *, keyring: Keyring | None = None,
           summary: dict[str, object] | None = None) -> Manifest:
    """Write the manifest of a snapshot whose segments are all done — create-only, so of several
    workers finishing together exactly one commits. Its checkpoints stay (prune removes them)."""
    spec = policy.dataset(state.dataset)
    parts = sorted((p for r in records.values() for p in r.parts), key=lambda p: (p.segment, p.index))
    digest = ContentDigest()
    for record in records.values():
        digest.merge(record.digest(state.ignores))
    manifest = Manifest(
        snapshot_id=state.snapshot_id,
        dataset=state.dataset,
        run_id=run_id,
        trigger=state.trigger,  # type: ignore[arg-type]
        slot=state.slot_time,
        tier=spec.tier,
        store=spec.store,
        source=state.described | (summary or {}),
        method=state.method,
        consistency=Consistency(**state.consistency),
        started_at=state.started,
        finished_at=_clock.now(),
        segments=state.segments,
        parts=[PartEntry(**vars(p)) for p in parts],
        totals=Totals(
            items=sum(p.items for p in parts),
            parts=len(parts),
            raw_bytes=sum(p.raw_bytes for p in parts),
            stored_bytes=sum(p.stored_bytes for p in parts),
        ),
        codec=Codec(level=state.level, encryption=Encryption(**{
            k: v for k, v in state.encryption.items() if k != RESUME_KEYS}) if state.encryption else None),
        content_digest=ContentDigestEntry(value=digest.hexdigest(), ignores=state.ignores),
        cloudkeep_version=__version__,
    )
    keyring = keyring or keys.keyring_for(policy)
    manifest = sign_new(policy, manifest, keyring, data_key_of(keyring, state))
    key = layout.manifest_key(state.dataset, state.snapshot_id)
    try:
        store.put(key, manifest.to_bytes(), if_absent=True, retain_until=state.retain_until_time)
    except ObjectExistsError:
        committed = existing_manifest(store, state.dataset, state.snapshot_id)
        if committed is None:  # pragma: no cover - a create-only write refused, yet nothing there
            raise
        log.info("snapshot %s was committed by another worker", state.snapshot_id)
        return committed
    return manifest


def load_done(store: Store, state: RunState, segment: int) -> SegmentRecord | None:
    """The final record of a finished segment (None: the segment is not done)."""
    try:
        data = store.get(layout.segment_done_key(state.dataset, state.snapshot_id, segment))
    except ObjectNotFoundError:
        return None
    return SegmentRecord.from_bytes(data, f"segment {segment}")


def existing_manifest(store: Store, dataset: str, snapshot_id: str) -> Manifest | None:
    """The manifest committed under ``dataset@snapshot_id`` (ForgedManifestError if the one
    there names another snapshot: a run never takes a replayed manifest for its own)."""
    key = layout.manifest_key(dataset, snapshot_id)
    try:
        data = store.get(key)
    except ObjectNotFoundError:
        return None
    manifest = Manifest.from_bytes(data, where=key)
    check_binding(manifest, dataset, snapshot_id, where=key)
    return manifest
