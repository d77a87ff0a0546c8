"""A restore drill of continuous capture (issue #21): restore a random moment of a dataset's
recoverable window into a scratch target, and check the log against a point-in-time snapshot.

:func:`drill_moment` guarantees:

- the moment is drawn uniformly from the window (``changelog.window``), avoiding its gaps (a
  moment inside a gap is drawn again, at most :data:`DRAWS` times); ``at`` fixes it instead;
- it is restored as ``restore --at`` restores it (base snapshot + replay) into a scratch target
  of the source (``ScratchTargets``), timed (the measured RTO of a point-in-time restore) and
  counted; the target is deleted, also on failure;
- where a **point-in-time** snapshot was taken later in the window (its consistency time after
  the moment), the moment of that snapshot is rebuilt from an *earlier* base plus the log, and
  the scratch target's content digest must equal the snapshot's: the log, replayed, gives
  exactly what the service's own consistent read saw. A fuzzy (scan) snapshot has no single
  moment and is not compared.

The outcome is a :class:`~cloudkeep.verify.VerifyReport` of level ``drill`` whose ``details``
say the moment, the base and, when compared, the snapshot.
"""

from __future__ import annotations

import logging
import random
import secrets
import time
from datetime import datetime, timedelta
from typing import Any

from . import catalog, chain
from . import clock as _clock
from .capabilities import ScratchTargets, able
from .changelog import window as _window
from .changelog.at import OutsideWindowError, parse_moment, restore_at
from .changelog.format import format_time
from .changelog.replay import Replay
from .errors import CloudkeepError, UsageError
from .keys import keyring_for
from .manifest import Manifest
from .policy import Policy
from .registry import open_source, store_for_dataset
from .restore import restore as restore_snapshot
from .trust import expect_for
from .verify import Problem, VerifyReport

log = logging.getLogger(__name__)

DRAWS = 20


def pick_moment(win: _window.Window, rng: random.Random) -> tuple[datetime | None, str | None]:
    """A moment of the window outside its gaps (whole microseconds), or None and why."""
    start, end = win.start, win.end
    if start is None or end is None or end < start:
        return None, f"{win.dataset} has no recoverable window yet (a base snapshot and a log)"
    why = None
    for _ in range(DRAWS):
        offset = timedelta(microseconds=rng.randrange(int((end - start) / timedelta(microseconds=1)) + 1))
        moment = start + offset
        if moment.microsecond == 0:
            moment += timedelta(microseconds=1)  # a whole second would mean its whole second
        if moment > end:
            moment = end
        base, why = win.locate(moment)
        if base is not None:
            return moment, None
    return None, f"no moment of the window outside its gaps was found ({why})"


def drill_moment(policy: Policy, dataset: str, *, at: str | None = None,
                 rng: random.Random | None = None, source: Any = None,
                 trigger: str = "manual") -> VerifyReport:
    """Restore a moment of ``dataset``'s window (``at``, ISO 8601, or a random one) into a
    scratch target, and compare a later point-in-time snapshot's moment with its digest."""
    policy.dataset(dataset)
    tier = policy.tiers[policy.dataset(dataset).tier]
    report = VerifyReport(dataset, "", "drill", _clock.now(), trigger=trigger,
                          tier=policy.dataset(dataset).tier, rto=tier.rto)
    store = store_for_dataset(policy, dataset)
    win = _window.compute(store, dataset)
    if at is None:
        moment, why = pick_moment(win, rng or random.Random())
        if moment is None:
            report.problems.append(Problem(None, "drill", str(why)))
            report.finished_at = _clock.now()
            return report
    else:
        moment = parse_moment(at)[1]
    source = source or open_source(policy.dataset(dataset).source)
    scratch = able(source, ScratchTargets)
    if scratch is None:
        raise UsageError(f"{source.kind} sources have no scratch targets to drill into")
    details: dict[str, Any] = {"moment": format_time(moment)}
    report.details = details
    target = scratch.scratch_target(secrets.token_hex(4))
    report.target = target
    try:
        t0 = time.monotonic()
        result = restore_at(policy, dataset, format_time(moment), target, source=source)
        report.restore_seconds = time.monotonic() - t0
        report.items = result.restore.items
        report.snapshot_id = result.base
        details |= {"base": result.base, "replay": result.replay}
    except OutsideWindowError:
        _drop(scratch, target, report)
        raise  # a moment the user named outside the window: bad usage (exit 2)
    except CloudkeepError as exc:
        report.problems.append(Problem(None, "restore", str(exc)))
        report.cleaned_up = _drop(scratch, target, report)
    else:
        report.cleaned_up = _drop(scratch, target, report)
    checkpoint = _later_point_in_time(policy, store, dataset, win, moment)
    if checkpoint is not None:
        details["compared_with"] = checkpoint.snapshot_id
        _compare(policy, store, dataset, win, checkpoint, scratch, source, report)
    if report.rto is not None and report.restore_seconds is not None and not report.rto_met:
        report.problems.append(Problem(None, "rto", f"the restore took {report.restore_seconds:.1f}s, "
                                       f"longer than the tier's RTO of {int(report.rto.total_seconds())}s"))
    report.finished_at = _clock.now()
    return report


def _drop(scratch: Any, target: str, report: VerifyReport) -> bool:
    try:
        scratch.drop_target(target, {})
        return True
    except Exception as exc:  # noqa: BLE001 - reported; cleanup never hides the outcome
        report.problems.append(Problem(None, "cleanup", f"could not delete the scratch target "
                                       f"{target}: {exc}"))
        return False


def _later_point_in_time(policy: Policy, store: Any, dataset: str, win: _window.Window,
                         moment: datetime) -> Manifest | None:
    """The first point-in-time snapshot captured after ``moment`` inside the window, with an
    earlier base to rebuild it from."""
    end = win.end
    for captured in win.bases:
        if captured.captured_at <= moment or (end is not None and captured.captured_at > end):
            continue
        if not any(b.captured_at < captured.captured_at for b in win.bases):
            continue
        manifest = catalog.load_manifest(store, dataset, captured.snapshot_id,
                                         expect=expect_for(policy, dataset, None))
        if manifest.consistency.mode == "point-in-time" and chain.previous_of(manifest) is None:
            return manifest
    return None


def _compare(policy: Policy, store: Any, dataset: str, win: _window.Window, checkpoint: Manifest,
             scratch: Any, source: Any, report: VerifyReport) -> None:
    """Rebuild ``checkpoint``'s moment from the base before it plus the log; its digest must be
    the checkpoint's."""
    moment = checkpoint.consistency.time or checkpoint.started_at
    base = [b for b in win.bases if b.captured_at < moment][-1]
    for closed in win.gaps:
        if closed.gap.start <= moment and (closed.end is None or closed.end > base.captured_at):
            report.details = (report.details or {}) | {"compared": "skipped: a gap lies between "
                                                       "the base and the snapshot"}
            return
    manifest = catalog.load_manifest(store, dataset, base.snapshot_id,
                                     expect=expect_for(policy, dataset, None))
    keyring = keyring_for(policy)
    replay = Replay(store, dataset, base.captured_at, moment, keyring=keyring,
                    recorded=manifest.source)
    target = scratch.scratch_target(secrets.token_hex(4))
    try:
        restore_snapshot(policy, store, manifest, target, source=source, keyring=keyring,
                         replay=replay)
        count, digest = scratch.scan_digest(target)
        if count != checkpoint.totals.items or digest != checkpoint.content_digest.value:
            report.problems.append(Problem(None, "change log", (
                f"{base.snapshot_id} + the log up to {format_time(moment)} gives {count} items "
                f"(digest {digest[:12]}), snapshot {checkpoint.snapshot_id} taken then holds "
                f"{checkpoint.totals.items} (digest {checkpoint.content_digest.value[:12]})")))
    except CloudkeepError as exc:
        report.problems.append(Problem(None, "change log", f"rebuilding {checkpoint.snapshot_id}'s "
                                       f"moment failed: {exc}"))
    finally:
        _drop(scratch, target, report)
