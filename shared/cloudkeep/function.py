"""The work every cloud's function does, so that the handlers stay thin.

``load()`` finds the policy (``$CLOUDKEEP_POLICY`` — a path or an s3:// / gs:// / az:// URL —
else the ``cloudkeep.yaml`` bundled with the function); ``scheduled_tick()`` runs the tick for a
platform trigger and raises :class:`TickFailedError` when a dataset failed, so the platform
records an error (alarms, retries) after every dataset has had its turn.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from .errors import CloudkeepError
from .metrics import MetricsSink
from .policy import POLICY_ENV, Policy, load_policy

log = logging.getLogger(__name__)


class TickFailedError(CloudkeepError):
    """At least one dataset failed in a scheduled tick (the reply lists which)."""

    def __init__(self, reply: dict[str, Any]) -> None:
        self.reply = reply
        failed = [d["dataset"] for d in reply["datasets"] if d.get("status") == "failed"]
        super().__init__(f"tick {reply['run_id']}: backup failed for {', '.join(failed)}")


def load(bundled: str | Path | None = None) -> Policy:
    location = os.environ.get(POLICY_ENV) or (str(bundled) if bundled else None)
    if not location:
        raise CloudkeepError(f"no policy: set {POLICY_ENV} or bundle cloudkeep.yaml with the function")
    policy = load_policy(location).policy
    for name in sorted(policy.datasets):
        if not policy.encryption_keys(name):
            # deployed policies are meant to encrypt (docs/deploy.md); say so on every load
            log.warning("dataset %s is backed up without client-side encryption "
                        "(set encryption: {keys: [...]} in the policy)", name)
    return policy


def scheduled_tick(policy: Policy, now: datetime | None, sink: MetricsSink | None = None,
                   notifier: Any = None) -> dict[str, Any]:
    """Run what is due at ``now`` (the trigger's own time, so a redelivered trigger lands on the
    same slot), with the watchdog, scheduled drills, metrics to ``sink``, alerts and the audit log
    (records attributed to the schedule). Returns the reply; raises TickFailedError if any
    dataset failed."""
    from . import audit
    from .runtime import tick

    with audit.acting_as("schedule", **audit.function_actor()):
        outcome = tick(policy, now, sink=sink, notifier=notifier)
    reply = outcome.as_dict()
    if not outcome.ok:
        raise TickFailedError(reply)
    return reply


def parse_time(text: Any) -> datetime | None:
    """A trigger's ISO 8601 time, or None (then the tick uses the current time)."""
    if not isinstance(text, str) or not text:
        return None
    from .runtime import parse_now

    try:
        return parse_now(text)
    except CloudkeepError:
        log.warning("ignoring unparsable trigger time %r", text)
        return None
