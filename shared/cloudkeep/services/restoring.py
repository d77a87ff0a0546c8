"""Use cases that read a snapshot back: :func:`restore` into a target."""

from __future__ import annotations

from .. import audit, extras
from ..catalog import resolve
from ..errors import CloudkeepError, UsageError
from ..governor import Governor
from ..place import OPTION_NAMES, Place
from ..policy import Policy
from ..progress import Progress
from ..restore import RestoreResult
from ..restore import restore as restore_snapshot
from ..sources import check_restore_target
from ..target import check_target_location, open_target, placed_spec


@extras.translating
def restore(policy: Policy, ref: str, into: str, *, overwrite: bool = False,
            store_name: str | None = None, allow_unsigned: bool = False,
            progress: Progress | None = None, place: Place | None = None,
            max_rate: float | None = None, capacity_share: float | None = None,
            **place_options: str | None) -> RestoreResult:
    """Restore the snapshot ``ref`` (``DATASET@SNAPSHOT_ID`` or ``DATASET@latest``; from the
    copy store ``store_name`` if given) into the target ``into``. Refuses a bad target name
    (UsageError) before anything is read or written, a non-empty target unless ``overwrite``,
    and a manifest that cannot be trusted (forged, replayed, tampered, downgraded). The
    restored content's digest is checked against the manifest; the outcome, ok or failed, is
    audited.

    ``place`` restores into another region, account, project or endpoint (``cloudkeep.place``):
    refused (UsageError) before anything is written when the source type does not take an
    option or the target's region is outside the policy's residency. ``max_rate`` (items/s)
    and ``capacity_share`` (of a provisioned target's write capacity) govern the rate; a
    throttled target is backed off, not failed (``cloudkeep.governor``). The place's options may
    also be given one by one (``region=``, ``role_arn=``, ...: ``cloudkeep.place.OPTION_NAMES``)."""
    place = _place_of(place, place_options)
    governor = Governor(max_rate=max_rate, capacity_share=capacity_share)  # checks them: exit 2
    store, manifest = resolve(policy, ref, store_name=store_name, allow_unsigned=allow_unsigned)
    spec = placed_spec(policy, manifest, place)  # exit 2 before anything is read or written
    if capacity_share is not None and not spec.WRITE_CAPACITY:
        raise UsageError(f"--capacity-share applies to provisioned DynamoDB tables, not to a "
                         f"{spec.type_name()} target; use --max-rate")
    source = open_target(policy, manifest, place)
    check_restore_target(source, manifest, into)  # exit 2 before anything is read or written
    check_target_location(policy, source, into)  # an existing target elsewhere: exit 2, unwritten
    try:
        result = restore_snapshot(policy, store, manifest, into, overwrite=overwrite,
                                  progress=progress, source=source,
                                  allow_unsigned=allow_unsigned, governor=governor)
    except CloudkeepError as exc:
        audit.write(store, "restore", outcome="failed", dataset=manifest.dataset,
                    snapshot_id=manifest.snapshot_id, detail={"target": into, "error": str(exc)}
                    | ({"place": place.describe()} if not place.is_here() else {}))
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
