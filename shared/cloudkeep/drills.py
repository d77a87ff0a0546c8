"""Verification by reading the live source: the ``sample`` and ``drill`` levels, and
:func:`run_level`, which runs any level (``integrity`` is ``verify.verify_integrity``).

- ``sample``: re-read N random items of the snapshot from the live source by key; an item
  the source shows unchanged since the snapshot must be identical (see :func:`verify_sample`).
- ``drill``: restore into a scratch target, compare the target's content digest with the
  manifest's, measure the restore (the measured RTO), delete the target even on failure
  (see :func:`verify_drill`); a native snapshot (RDS) is drilled by its source (:func:`drill`).

What a source can do here it declares (``capabilities``: ``SampleCheck``, ``ScratchTargets``,
``Drillable``, ``NativeCheck``); the reports are ``verify.VerifyReport``.
"""

from __future__ import annotations

import logging
import random
import secrets
import time
from typing import TYPE_CHECKING, Any

import zstandard

from . import clock as _clock
from . import layout, restore_settings
from .capabilities import Drillable, NativeCheck, SampleCheck, ScratchTargets, able
from .codec import DecryptionError, PartLimitError, TruncatedPartError, open_part
from .errors import CloudkeepError, ObjectNotFoundError, UsageError
from .keys import keyring_for
from .manifest import Manifest
from .progress import Progress
from .registry import open_source
from .restore import restore
from .stores import Store
from .trust import check_policy, expect_for
from .verify import Problem, VerifyReport, _item_label, verify_integrity

if TYPE_CHECKING:
    from .keys import Keyring
    from .policy import Policy
    from .trust import Expect

log = logging.getLogger(__name__)


def native_problems(policy: Policy, manifest: Manifest) -> list[Problem]:
    """For a snapshot made by a native job: is what it recorded (a backup, RDS snapshots and
    their copies) still there and available? Asked of the dataset's source."""
    if not manifest.native:
        return []
    source = open_source(policy.dataset(manifest.dataset).source)
    checker = able(source, NativeCheck)
    if checker is None or manifest.source.get("type") != source.kind:
        return []
    try:
        return [Problem(None, "native", message) for message in checker.check_native(manifest)]
    except CloudkeepError as exc:
        return [Problem(None, "native", f"cannot check: {exc}")]


def drill(policy: Policy, manifest: Manifest, **options: Any) -> VerifyReport:
    """A restore drill: restore a temporary copy from the snapshot, wait until it is usable,
    then delete it (even on failure). Sources that offer it: rds (``RdsSource.drill``)."""
    source = open_source(policy.dataset(manifest.dataset).source)
    drillable = able(source, Drillable)
    if drillable is None or manifest.source.get("type") != source.kind:
        raise UsageError(f"--level drill is available for rds datasets; {manifest.dataset!r} is "
                         f"{manifest.source.get('type')}")
    report = VerifyReport(manifest.dataset, manifest.snapshot_id, "drill", _clock.now())
    outcome = drillable.drill(manifest, **options)
    report.details = outcome
    report.problems = [Problem(None, "drill", p) for p in outcome.get("problems", [])]
    report.finished_at = _clock.now()
    return report


def _tier_of(policy: Any, dataset: str) -> tuple[str | None, Any]:
    spec = policy.datasets.get(dataset) if policy is not None else None
    if spec is None:
        return None, None
    return spec.tier, policy.tiers.get(spec.tier)


# ------------------------------------------------------------------------------------------ drill


def verify_drill(policy: Any, store: Store, manifest: Manifest, *, source: Any = None,
                 trigger: str = "manual", allow_unsigned: bool = False) -> VerifyReport:
    """Restore ``manifest`` into a scratch target of the dataset's source (a new table, a
    collection prefix, a new container), compare the target's content digest and item count with
    the manifest's, and delete the target — also when the restore or the comparison fails. The
    restore's duration is the measured RTO, checked against the tier's ``rto``."""
    tier_name, tier = _tier_of(policy, manifest.dataset)
    report = VerifyReport(manifest.dataset, manifest.snapshot_id, "drill", _clock.now(),
                          trigger=trigger, tier=tier_name, rto=tier.rto if tier is not None else None)
    source = source or open_source(policy.dataset(manifest.dataset).source)
    scratch = able(source, ScratchTargets)
    if scratch is None:
        report.problems.append(Problem(None, "drill", f"{source.kind} sources cannot be drilled"))
        report.finished_at = _clock.now()
        return report
    target = scratch.scratch_target(secrets.token_hex(4))
    report.target = target
    log.info("drill %s@%s: restoring into scratch target %s", manifest.dataset,
             manifest.snapshot_id, target)
    try:
        t0 = time.monotonic()
        try:
            result = restore(policy, store, manifest, target, source=source,
                             allow_unsigned=allow_unsigned)
        except CloudkeepError as exc:
            report.problems.append(Problem(None, "restore", str(exc)))
        else:
            report.restore_seconds = time.monotonic() - t0
            report.items = result.items
            report.parts_checked = sum(1 for _ in manifest.parts)
            if result.chain:
                # An incremental snapshot's own digest covers only its changes: the restore
                # checked every link of the chain; here the target is counted, not digested.
                log.info("drill: %s replayed a chain of %d snapshots", target, len(result.chain))
            else:
                count, digest = scratch.scan_digest(target)
                if count != manifest.totals.items:
                    report.problems.append(Problem(None, "item count", f"the scratch target holds "
                                                   f"{count} items, manifest says {manifest.totals.items}"))
                if digest != manifest.content_digest.value:
                    report.problems.append(Problem(None, "content digest", "the digest of the "
                                                   "restored items differs from the manifest's"))
            if result.settings is not None:  # the settings restored must be the manifest's
                report.settings = result.settings.as_dict()
                for name, why in result.settings.failed():
                    report.problems.append(Problem(None, "settings", f"setting {name} was not "
                                                   f"restored: {why}"))
                for mismatch in restore_settings.compare(source, manifest.source, target,
                                                         result.settings):
                    report.problems.append(Problem(None, "settings", f"setting {mismatch}"))
    except CloudkeepError as exc:
        report.problems.append(Problem(None, "drill", str(exc)))
    finally:
        try:
            scratch.drop_target(target, manifest.source)
            report.cleaned_up = True
        except Exception as exc:  # noqa: BLE001 - reported; cleanup never hides the outcome
            report.cleaned_up = False
            report.problems.append(Problem(None, "cleanup", f"could not delete the scratch "
                                           f"target {target}: {exc}"))
    if report.rto is not None and report.restore_seconds is not None and not report.rto_met:
        report.problems.append(Problem(None, "rto", f"the restore took {report.restore_seconds:.1f}s, "
                                       f"longer than the tier's RTO of {int(report.rto.total_seconds())}s"))
    report.finished_at = _clock.now()
    return report


# ----------------------------------------------------------------------------------------- sample


def verify_sample(policy: Any, store: Store, manifest: Manifest, *, items: int = 100,
                  source: Any = None, seed: int | None = None, trigger: str = "manual",
                  keyring: Keyring | None = None, expect: Expect | None = None) -> VerifyReport:
    """Pick ``items`` random lines of the snapshot (one pass, reservoir sampling: memory holds
    only the sample), read the same items from the live source by key and compare. An item the
    source shows unchanged since the snapshot (same version: Firestore's update time, Cosmos DB's
    etag) must be identical; changed and deleted items are counted, not failed. DynamoDB keeps no
    item version, so a differing DynamoDB item counts as changed."""
    tier_name, _ = _tier_of(policy, manifest.dataset)
    report = VerifyReport(manifest.dataset, manifest.snapshot_id, "sample", _clock.now(),
                          trigger=trigger, tier=tier_name)
    if items < 1:
        raise UsageError("--sample needs at least 1 item")
    rng = random.Random(seed)
    reservoir: list[bytes] = []
    seen = 0
    data_key: bytes | None = None
    if manifest.codec.encryption is not None or manifest.authentication is not None:
        if keyring is None:
            keyring = keyring_for(policy)
        data_key = keyring.authenticate(manifest)
    if expect is not None:
        check_policy(store, manifest, expect, keyring or keyring_for(policy))
    for part in manifest.parts:
        key = layout.part_key(manifest.dataset, manifest.snapshot_id, part.name)
        report.parts_checked += 1
        try:
            with store.open(key) as stream:
                hashing, lines = open_part(stream, compression=manifest.codec.compression,
                                           stored_bytes=part.stored_bytes,
                                           raw_bytes=part.raw_bytes, data_key=data_key,
                                           snapshot_id=manifest.snapshot_id, part_name=part.name)
                for line in lines:
                    if b'"delete":true' in line:
                        continue  # an incremental snapshot's deletion: nothing to compare
                    seen += 1
                    if len(reservoir) < items:
                        reservoir.append(line)
                    else:
                        j = rng.randrange(seen)
                        if j < items:
                            reservoir[j] = line
                hashing.drain()
            hashing.check_size()
            if hashing.sha256.hexdigest() != part.sha256:
                report.problems.append(Problem(part.name, "sha256", "checksum of the stored bytes "
                                               "differs from the manifest's"))
        except ObjectNotFoundError:
            report.problems.append(Problem(part.name, "missing", f"{key} is not in the store"))
        except PartLimitError as exc:
            report.problems.append(Problem(part.name, exc.check, str(exc)))
        except (CloudkeepError, TruncatedPartError, DecryptionError, zstandard.ZstdError) as exc:
            report.problems.append(Problem(part.name, "unreadable", str(exc)))
    report.items = len(reservoir)
    counts = {"requested": items, "compared": 0, "matched": 0, "changed": 0, "deleted": 0,
              "differs": 0}
    source = source or open_source(policy.dataset(manifest.dataset).source)
    sampler = able(source, SampleCheck)
    if sampler is None:
        report.problems.append(Problem(None, "sample", f"{source.kind} sources cannot be sampled"))
    elif reservoir:
        try:
            statuses = sampler.sample_check(reservoir)
        except CloudkeepError as exc:
            report.problems.append(Problem(None, "sample", f"reading the live source: {exc}"))
            statuses = []
        for line, status in zip(reservoir, statuses, strict=False):
            counts["compared"] += 1
            counts[status] = counts.get(status, 0) + 1
            if status == "differs" and counts["differs"] <= 5:
                report.problems.append(Problem(None, "sample", f"item {_item_label(line)} is "
                                               "unchanged in the source since the snapshot but "
                                               "differs from the snapshot's copy"))
        if counts["differs"] > 5:
            report.problems.append(Problem(None, "sample", f"{counts['differs']} items differ in all"))
    report.sample = counts
    report.finished_at = _clock.now()
    return report


def run_level(policy: Any, store: Store, manifest: Manifest, level: str, *, sample_items: int = 100,
              source: Any = None, trigger: str = "manual",
              progress: Progress | None = None, keyring: Keyring | None = None,
              allow_unsigned: bool = False) -> VerifyReport:
    """Run one verification level and return its report (not yet recorded). The manifest must
    meet the policy's encryption and signing requirements (``allow_unsigned`` lets an unsigned
    or unencrypted one be checked)."""
    expect: Expect | None = None
    if policy is not None:
        keyring = keyring or keyring_for(policy)
        expect = expect_for(policy, manifest.dataset, allow_unsigned=allow_unsigned)
    if level == "integrity":
        report = verify_integrity(store, manifest, progress=progress, keyring=keyring,
                                  expect=expect)
        report.problems.extend(native_problems(policy, manifest))
        report.trigger = trigger
        report.tier = _tier_of(policy, manifest.dataset)[0]
        return report
    if level == "sample":
        return verify_sample(policy, store, manifest, items=sample_items, source=source,
                             trigger=trigger, keyring=keyring, expect=expect)
    if level == "drill":
        if manifest.native:  # a native snapshot (RDS): the source restores a temporary database
            tier_name, tier = _tier_of(policy, manifest.dataset)
            report = drill(policy, manifest)
            report.trigger, report.tier = trigger, tier_name
            report.rto = tier.rto if tier is not None else None
            details = report.details or {}
            report.target = details.get("restored")
            report.cleaned_up = details.get("deleted")
            if details.get("seconds") is not None:
                report.restore_seconds = float(details["seconds"])
            return report
        return verify_drill(policy, store, manifest, source=source, trigger=trigger,
                            allow_unsigned=allow_unsigned)
    raise UsageError(f"unknown verification level {level!r} (integrity, sample, drill)")
