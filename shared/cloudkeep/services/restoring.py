"""Use cases that read a snapshot back: :func:`restore` into a target (the whole snapshot, or
the items a :class:`SelectionRequest` selects: a :class:`PartialResult`)."""

from __future__ import annotations

from typing import Any

from .. import audit, chain, extras, rehydrate, restore_settings
from ..catalog import resolve
from ..errors import CloudkeepError, UsageError
from ..governor import Governor
from ..partial import PartialResult, restore_partial
from ..place import OPTION_NAMES, Place
from ..policy import Policy
from ..progress import Progress
from ..restore import RestoreResult
from ..restore import restore as restore_snapshot
from ..selection import Selection, SelectionRequest
from ..sources import check_restore_target
from ..target import check_target_location, open_target, placed_spec


@extras.translating
def restore(policy: Policy, ref: str, into: str, *, overwrite: bool = False,
            store_name: str | None = None, allow_unsigned: bool = False,
            progress: Progress | None = None, place: Place | None = None,
            max_rate: float | None = None, capacity_share: float | None = None,
            selection: SelectionRequest | None = None, dry_run: bool = False,
            delete_missing: bool = False, settings: str = restore_settings.DEFAULT_MODE,
            **place_options: str | None) -> RestoreResult | PartialResult:
    """Restore the snapshot ``ref`` (``DATASET@SNAPSHOT_ID`` or ``DATASET@latest``; from the
    copy store ``store_name`` if given) into the target ``into``. Refuses a bad target name
    (UsageError) before anything is read or written, a non-empty target unless ``overwrite``,
    and a manifest that cannot be trusted (forged, replayed, tampered, downgraded). The
    restored content's digest is checked against the manifest; the outcome, ok or failed, is
    audited. The recorded settings ``settings`` selects (``all``, ``data``, ``none``) are applied
    after the items; with ``dry_run`` (and no selection) nothing is written and the result lists
    the settings that would be applied (``settings.to_apply``) and those that could not be.

    ``place`` restores into another region, account, project or endpoint (``cloudkeep.place``):
    refused (UsageError) before anything is written when the source type does not take an
    option or the target's region is outside the policy's residency. ``max_rate`` (items/s)
    and ``capacity_share`` (of a provisioned target's write capacity) govern the rate; a
    throttled target is backed off, not failed (``cloudkeep.governor``). The place's options may
    also be given one by one (``region=``, ``role_arn=``, ...: ``cloudkeep.place.OPTION_NAMES``).

    A ``selection`` (``--keys FILE`` / ``--key JSON`` / ``--where EXPR``), ``dry_run`` or
    ``delete_missing`` makes it a partial restore (``cloudkeep.partial``): only the selected
    items are written (the target's settings are left as they are), ``dry_run`` writes nothing
    and returns what would change item by item; the audit record carries the selection (key
    count, keys digest, where-expression)."""
    try:
        restore_settings.check_mode(settings)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    place = _place_of(place, place_options)
    governor = Governor(max_rate=max_rate, capacity_share=capacity_share)  # checks them: exit 2
    selection = selection or SelectionRequest()
    partial = not selection.empty or delete_missing
    if delete_missing and selection.keys_file is None and not selection.keys:
        raise UsageError("--delete-missing needs the keys of the items (--keys FILE or --key JSON)")
    if partial and (max_rate is not None or capacity_share is not None):
        raise UsageError("--max-rate and --capacity-share govern a whole-snapshot restore; a "
                         "partial restore writes only the selected items")
    selection.check()  # exit 2 before anything is read
    store, manifest = resolve(policy, ref, store_name=store_name, allow_unsigned=allow_unsigned)
    spec = placed_spec(policy, manifest, place)  # exit 2 before anything is read or written
    if capacity_share is not None and not spec.WRITE_CAPACITY:
        raise UsageError(f"--capacity-share applies to provisioned DynamoDB tables, not to a "
                         f"{spec.type_name()} target; use --max-rate")
    source = open_target(policy, manifest, place)
    check_restore_target(source, manifest, into)  # exit 2 before anything is read or written
    check_target_location(policy, source, into)  # an existing target elsewhere: exit 2, unwritten
    where_to = {"place": place.describe()} if not place.is_here() else {}
    if partial:
        chosen = Selection.build(selection, manifest.source)
        detail: dict[str, Any] = {"target": into, "partial": True, "dry_run": dry_run,
                                  "selection": chosen.summary()} | where_to
        try:
            if manifest.parts:  # archived parts: start their rehydration, finish in a later run
                rehydrate.ensure_readable(store, chain.load_chain(store, manifest), purpose="restore")
            done = restore_partial(policy, store, manifest, into, chosen, overwrite=overwrite,
                                   dry_run=dry_run, delete_missing=delete_missing,
                                   source=source, progress=progress,
                                   allow_unsigned=allow_unsigned)
        except rehydrate.RehydrationPendingError as exc:
            audit.write(store, "restore", outcome="rehydrating", dataset=manifest.dataset,
                        snapshot_id=manifest.snapshot_id, detail=detail | {"wait": str(exc)})
            raise
        except CloudkeepError as exc:
            audit.write(store, "restore", outcome="failed", dataset=manifest.dataset,
                        snapshot_id=manifest.snapshot_id, detail=detail | {"error": str(exc)})
            raise
        summary = {k: v for k, v in done.as_dict().items() if k not in ("items",)}
        audit.write(store, "restore", outcome="ok", dataset=manifest.dataset,
                    snapshot_id=manifest.snapshot_id, detail=detail | summary)
        return done
    if dry_run:  # a whole-snapshot dry run: what would be restored, with its settings
        return RestoreResult(manifest.dataset, manifest.snapshot_id, into, manifest.totals.items,
                             0.0, None, dry_run=True, place=place.describe() or None,
                             settings=restore_settings.plan(
                                 source, manifest.source, settings, target=into,
                                 authenticated=manifest.authentication is not None))
    try:
        if manifest.parts:  # archived parts: start their rehydration, finish in a later run
            rehydrate.ensure_readable(store, chain.load_chain(store, manifest), purpose="restore")
        result = restore_snapshot(policy, store, manifest, into, overwrite=overwrite,
                                  progress=progress, source=source,
                                  allow_unsigned=allow_unsigned, governor=governor,
                                  settings=settings)
    except rehydrate.RehydrationPendingError as exc:
        audit.write(store, "restore", outcome="rehydrating", dataset=manifest.dataset,
                    snapshot_id=manifest.snapshot_id, detail={"target": into, "wait": str(exc)})
        raise
    except CloudkeepError as exc:
        audit.write(store, "restore", outcome="failed", dataset=manifest.dataset,
                    snapshot_id=manifest.snapshot_id, detail={"target": into, "error": str(exc)}
                    | where_to)
        raise
    result.place = place.describe() or None
    result.rate = governor.as_dict() if (governor.rate or governor.throttled or governor.basis) else None
    audit.write(store, "restore", outcome="ok", dataset=manifest.dataset,
                snapshot_id=manifest.snapshot_id, detail=result.as_dict())
    return result


def _place_of(place: Place | None, options: dict[str, str | None]) -> Place:
    """``place``, or one made of the options given one by one (not both)."""
    unknown = sorted(set(options) - set(OPTION_NAMES))
    if unknown:
        raise TypeError(f"restore() got unexpected keyword arguments: {', '.join(unknown)}")
    given = {k: v for k, v in options.items() if v is not None}
    if place is not None and given:
        raise UsageError("give the target's place either as place= or option by option, not both")
    return place or Place(**given)


__all__ = ["PartialResult", "SelectionRequest", "restore"]
