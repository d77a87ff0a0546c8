"""Use cases that read a snapshot back: :func:`restore` into a target."""

from __future__ import annotations

from .. import audit, chain, extras, rehydrate
from ..catalog import resolve
from ..errors import CloudkeepError
from ..policy import Policy
from ..progress import Progress
from ..registry import open_source
from ..restore import RestoreResult
from ..restore import restore as restore_snapshot
from ..sources import check_restore_target


@extras.translating
def restore(policy: Policy, ref: str, into: str, *, overwrite: bool = False,
            store_name: str | None = None, allow_unsigned: bool = False,
            progress: Progress | None = None) -> RestoreResult:
    """Restore the snapshot ``ref`` (``DATASET@SNAPSHOT_ID`` or ``DATASET@latest``; from the
    copy store ``store_name`` if given) into the target ``into``. Refuses a bad target name
    (UsageError) before anything is read or written, a non-empty target unless ``overwrite``,
    and a manifest that cannot be trusted (forged, replayed, tampered, downgraded). The
    restored content's digest is checked against the manifest; the outcome, ok or failed, is
    audited."""
    store, manifest = resolve(policy, ref, store_name=store_name, allow_unsigned=allow_unsigned)
    source = open_source(policy.dataset(manifest.dataset).source)
    check_restore_target(source, manifest, into)  # exit 2 before anything is read or written
    try:
        if manifest.parts:  # archived parts: start their rehydration, finish in a later run
            rehydrate.ensure_readable(store, chain.load_chain(store, manifest), purpose="restore")
        result = restore_snapshot(policy, store, manifest, into, overwrite=overwrite,
                                  progress=progress, source=source,
                                  allow_unsigned=allow_unsigned)
    except rehydrate.RehydrationPendingError as exc:
        audit.write(store, "restore", outcome="rehydrating", dataset=manifest.dataset,
                    snapshot_id=manifest.snapshot_id, detail={"target": into, "wait": str(exc)})
        raise
    except CloudkeepError as exc:
        audit.write(store, "restore", outcome="failed", dataset=manifest.dataset,
                    snapshot_id=manifest.snapshot_id, detail={"target": into, "error": str(exc)})
        raise
    audit.write(store, "restore", outcome="ok", dataset=manifest.dataset,
                snapshot_id=manifest.snapshot_id, detail=result.as_dict())
    return result
