"""Use cases that read a snapshot back: :func:`restore` into a target (the whole snapshot, or
the items a :class:`SelectionRequest` selects: a :class:`PartialResult`)."""

from __future__ import annotations

from typing import Any

from .. import audit, extras
from ..catalog import resolve
from ..errors import CloudkeepError, UsageError
from ..partial import PartialResult, restore_partial
from ..policy import Policy
from ..progress import Progress
from ..registry import open_source
from ..restore import RestoreResult
from ..restore import restore as restore_snapshot
from ..selection import Selection, SelectionRequest
from ..sources import check_restore_target


@extras.translating
def restore(policy: Policy, ref: str, into: str, *, overwrite: bool = False,
            store_name: str | None = None, allow_unsigned: bool = False,
            progress: Progress | None = None, selection: SelectionRequest | None = None,
            dry_run: bool = False, delete_missing: bool = False) -> RestoreResult | PartialResult:
    """Restore the snapshot ``ref`` (``DATASET@SNAPSHOT_ID`` or ``DATASET@latest``; from the
    copy store ``store_name`` if given) into the target ``into``. Refuses a bad target name
    (UsageError) before anything is read or written, a non-empty target unless ``overwrite``,
    and a manifest that cannot be trusted (forged, replayed, tampered, downgraded). The
    restored content's digest is checked against the manifest; the outcome, ok or failed, is
    audited.

    A ``selection`` (``--keys FILE`` / ``--key JSON`` / ``--where EXPR``), ``dry_run`` or
    ``delete_missing`` makes it a partial restore (``cloudkeep.partial``): only the selected
    items are written, ``dry_run`` writes nothing and returns what would change item by item;
    the audit record carries the selection (key count, keys digest, where-expression)."""
    selection = selection or SelectionRequest()
    if delete_missing and selection.keys_file is None and not selection.keys:
        raise UsageError("--delete-missing needs the keys of the items (--keys FILE or --key JSON)")
    selection.check()  # exit 2 before anything is read
    store, manifest = resolve(policy, ref, store_name=store_name, allow_unsigned=allow_unsigned)
    source = open_source(policy.dataset(manifest.dataset).source)
    check_restore_target(source, manifest, into)  # exit 2 before anything is read or written
    if not selection.empty or dry_run or delete_missing:
        chosen = Selection.build(selection, manifest.source)
        detail: dict[str, Any] = {"target": into, "partial": True, "dry_run": dry_run,
                                  "selection": chosen.summary()}
        try:
            partial = restore_partial(policy, store, manifest, into, chosen, overwrite=overwrite,
                                      dry_run=dry_run, delete_missing=delete_missing,
                                      source=source, progress=progress,
                                      allow_unsigned=allow_unsigned)
        except CloudkeepError as exc:
            audit.write(store, "restore", outcome="failed", dataset=manifest.dataset,
                        snapshot_id=manifest.snapshot_id, detail=detail | {"error": str(exc)})
            raise
        summary = {k: v for k, v in partial.as_dict().items() if k not in ("items",)}
        audit.write(store, "restore", outcome="ok", dataset=manifest.dataset,
                    snapshot_id=manifest.snapshot_id, detail=detail | summary)
        return partial
    try:
        result = restore_snapshot(policy, store, manifest, into, overwrite=overwrite,
                                  progress=progress, source=source,
                                  allow_unsigned=allow_unsigned)
    except CloudkeepError as exc:
        audit.write(store, "restore", outcome="failed", dataset=manifest.dataset,
                    snapshot_id=manifest.snapshot_id, detail={"target": into, "error": str(exc)})
        raise
    audit.write(store, "restore", outcome="ok", dataset=manifest.dataset,
                snapshot_id=manifest.snapshot_id, detail=result.as_dict())
    return result


__all__ = ["PartialResult", "SelectionRequest", "restore"]
