"""Use cases that read a snapshot back: :func:`restore` into a target."""

from __future__ import annotations

from .. import audit, extras, restore_settings
from ..catalog import resolve
from ..errors import CloudkeepError, UsageError
from ..policy import Policy
from ..progress import Progress
from ..registry import open_source
from ..restore import RestoreResult
from ..restore import restore as restore_snapshot
from ..sources import check_restore_target


@extras.translating
def restore(policy: Policy, ref: str, into: str, *, overwrite: bool = False,
            store_name: str | None = None, allow_unsigned: bool = False,
            progress: Progress | None = None, settings: str = restore_settings.DEFAULT_MODE,
            dry_run: bool = False) -> RestoreResult:
    """Restore the snapshot ``ref`` (``DATASET@SNAPSHOT_ID`` or ``DATASET@latest``; from the
    copy store ``store_name`` if given) into the target ``into``. Refuses a bad target name
    (UsageError) before anything is read or written, a non-empty target unless ``overwrite``,
    and a manifest that cannot be trusted (forged, replayed, tampered, downgraded). The
    restored content's digest is checked against the manifest; the outcome, ok or failed, is
    audited. The recorded settings ``settings`` selects (``all``, ``data``, ``none``) are applied
    after the items; with ``dry_run`` nothing is written and the result lists the settings that
    would be applied (``settings.to_apply``) and those that could not be."""
    try:
        restore_settings.check_mode(settings)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    store, manifest = resolve(policy, ref, store_name=store_name, allow_unsigned=allow_unsigned)
    source = open_source(policy.dataset(manifest.dataset).source)
    check_restore_target(source, manifest, into)  # exit 2 before anything is read or written
    if dry_run:
        return RestoreResult(manifest.dataset, manifest.snapshot_id, into, manifest.totals.items,
                             0.0, None, dry_run=True,
                             settings=restore_settings.plan(
                                 source, manifest.source, settings, target=into,
                                 authenticated=manifest.authentication is not None))
    try:
        result = restore_snapshot(policy, store, manifest, into, overwrite=overwrite,
                                  progress=progress, source=source,
                                  allow_unsigned=allow_unsigned, settings=settings)
    except CloudkeepError as exc:
        audit.write(store, "restore", outcome="failed", dataset=manifest.dataset,
                    snapshot_id=manifest.snapshot_id, detail={"target": into, "error": str(exc)})
        raise
    audit.write(store, "restore", outcome="ok", dataset=manifest.dataset,
                snapshot_id=manifest.snapshot_id, detail=result.as_dict())
    return result
