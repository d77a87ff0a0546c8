"""Drills of continuous capture (issue #21): restore a moment of the recoverable window."""

from __future__ import annotations

import random

from .. import extras
from ..moment_drill import drill_moment as _drill_moment
from ..policy import Policy
from ..verify import VerifyReport


@extras.translating
def drill_moment(policy: Policy, dataset: str, *, at: str | None = None,
                 seed: int | None = None, trigger: str = "manual") -> VerifyReport:
    """Restore ``dataset`` at ``at`` (ISO 8601; None or ``random``: a random moment of its
    window, outside gaps) into a scratch target, time it and delete it; where a point-in-time
    snapshot was taken later in the window, rebuild that snapshot's moment from an earlier base
    plus the log and compare digests. ``seed`` makes the random moment reproducible."""
    moment = None if at in (None, "random") else at
    return _drill_moment(policy, dataset, at=moment, rng=random.Random(seed), trigger=trigger)
