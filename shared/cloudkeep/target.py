"""A restore target elsewhere: the source opened at a :class:`~cloudkeep.place.Place`, residency
checked first.

``restore ... --into NAME --region R --role-arn ARN`` writes into another region or account
(``cloudkeep.place``). Before anything is read from the target or written to it:

- the source type must take every option given (``SourceModel.PLACE_OPTIONS``; else UsageError
  naming the option and the ones it takes);
- with ``residency.allowed_regions`` in the policy, the target's region must be one of them, and
  known (a place that changes the account but not the region keeps the source's region; an
  endpoint or project of unknown location needs ``--region``): else UsageError, exit 2, one line,
  nothing written;
- a snapshot the service itself restores (a native on-demand backup) only restores where it was
  taken, so a place elsewhere is refused for it.

The secret a place points at (``--key-env``'s value) is redacted from every output from then on.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from . import redaction
from .capabilities import LocatesTargets, able
from .errors import UsageError
from .manifest import Manifest
from .place import Place, place_option_names
from .policy import Policy

if TYPE_CHECKING:
    from .sources import Source
    from .specs import SourceModel

log = logging.getLogger(__name__)

#: manifest methods whose snapshot is restored by the service from its own backup
NATIVE_METHODS = frozenset({"native"})


def placed_spec(policy: Policy, manifest: Manifest, place: Place) -> SourceModel:
    """The dataset's source spec with ``place`` applied, after every check above (UsageError
    otherwise). Reads and writes nothing."""
    spec = policy.dataset(manifest.dataset).source
    placed = spec.placed(place)
    if not place.is_here() and manifest.method in NATIVE_METHODS:
        raise UsageError(
            f"{manifest.dataset}@{manifest.snapshot_id} is a native {manifest.method} backup, which "
            f"the service restores only in its own account and region; "
            f"{place_option_names(place.given())} cannot move it")
    check_residency(policy, placed, place)
    redaction.remember(os.environ.get(name, "") for name in placed.secret_envs())
    redaction.remember([place.external_id or ""])  # not a secret, but never ours to print
    return placed


def check_residency(policy: Policy, placed: SourceModel, place: Place) -> None:
    """Refuse a target outside ``residency.allowed_regions`` (UsageError, exit 2): its region
    is the place's ``--region``, else the one its spec declares."""
    residency = policy.residency
    if residency is None or not placed.HAS_REGION:
        return
    allowed = list(residency.allowed_regions)
    region = placed.region_name()
    if region is None:
        raise UsageError(
            "refusing to restore: the target's region is unknown and the policy sets "
            f"residency.allowed_regions ({', '.join(allowed)}); name it with --region "
            "(nothing was written)")
    if region not in allowed:
        raise UsageError(
            f"refusing to restore into region {region!r}: outside residency.allowed_regions "
            f"({', '.join(allowed)}); nothing was written")


def open_target(policy: Policy, manifest: Manifest, place: Place) -> Source:
    """The adapter a restore at ``place`` writes through (the source's own when the place is
    empty), after :func:`placed_spec`'s checks."""
    placed_spec(policy, manifest, place)
    spec = policy.dataset(manifest.dataset).source
    if not place.is_here():
        log.debug("restoring %s@%s at %s", manifest.dataset, manifest.snapshot_id, place.describe())
    return spec.open_at(place)


def check_target_location(policy: Policy, source: Source, into: str) -> None:
    """With ``residency.allowed_regions``, refuse a target that already exists in a region outside
    it (an S3 bucket keeps its own region, whatever ``--region`` says): UsageError, exit 2,
    before anything is written. Reads the target's location only when residency is set."""
    residency = policy.residency
    locates = able(source, LocatesTargets)
    if residency is None or locates is None:
        return
    region = locates.target_region(into)
    allowed = list(residency.allowed_regions)
    if region is not None and region not in allowed:
        raise UsageError(
            f"refusing to restore into {into!r}: it exists in region {region!r}, outside "
            f"residency.allowed_regions ({', '.join(allowed)}); nothing was written")
