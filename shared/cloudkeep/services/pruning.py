"""Use cases that delete: :func:`prune` (retention). The only deleting use case; scheduled, it
runs as the pruner identity."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import datetime

from .. import audit, clock, extras
from ..policy import Policy
from ..prune import PruneReport
from ..prune import prune as prune_dataset
from ..registry import store_for_dataset
from .backing_up import dataset_names


@extras.translating
def prune(policy: Policy, datasets: Sequence[str] | None = None, now: datetime | None = None, *,
          dry_run: bool = False, replay: bool = False) -> list[PruneReport]:
    """Apply retention at ``now`` to each dataset (every dataset if none is named): keep or
    remove each snapshot with its reasons; the real run deletes manifests first, then parts,
    and parts left by crashed runs, and audits each dataset's prune. Snapshots under a legal
    hold are kept. ``dry_run`` only reports; with ``replay``, every time the prune records
    comes from a simulated clock starting at ``now``."""
    names = dataset_names(policy, datasets)
    at = now or clock.now()
    with clock.simulated(at) if replay else contextlib.nullcontext():
        reports = [prune_dataset(policy, name, at, dry_run=dry_run) for name in names]
        if not dry_run:
            for report in reports:
                audit.write(store_for_dataset(policy, report.dataset), "prune",
                            outcome="failed" if report.errors else "ok", dataset=report.dataset,
                            detail={"removed": report.removed, "errors": report.errors})
    return reports
