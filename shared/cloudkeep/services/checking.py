"""Use cases that check snapshots: :func:`verify` one snapshot at a level (integrity, sample,
drill), recorded under ``verifications/`` and audited."""

from __future__ import annotations

from .. import extras, rehydrate
from ..catalog import resolve
from ..drills import run_level
from ..policy import Policy
from ..progress import Progress
from ..verify import VerifyReport, record_and_audit

LEVELS = ("integrity", "sample", "drill")


@extras.translating
def verify(policy: Policy, ref: str, *, level: str = "integrity", sample_items: int = 100,
           store_name: str | None = None, allow_unsigned: bool = False,
           progress: Progress | None = None, trigger: str = "manual") -> VerifyReport:
    """Check the snapshot ``ref`` (``DATASET@SNAPSHOT_ID`` or ``DATASET@latest``; in the copy
    store ``store_name`` if given) at ``level``; the report is recorded and audited whatever it
    finds (``report.ok``, ``report.problems``). A manifest that is forged, replayed or tampered
    is reported as a problem, never trusted; ``allow_unsigned`` accepts an unsigned or
    unencrypted one where the policy requires signatures or encryption."""
    # the manifest's tag is checked (and reported) by verify itself
    store, manifest = resolve(policy, ref, store_name=store_name, authenticate=False)
    # archived parts: start their rehydration (recorded), finish in a later invocation; only
    # for a manifest that passes the trust checks (a forged one must not cause retrieval
    # charges: it is verified as it is, and its problems reported)
    if rehydrate.authentic(policy, store, manifest, store_name=store_name,
                           allow_unsigned=allow_unsigned):
        rehydrate.ensure_readable(store, [manifest], purpose="verify")
    report = run_level(policy, store, manifest, level, sample_items=sample_items,
                       progress=progress, trigger=trigger, allow_unsigned=allow_unsigned)
    record_and_audit(store, report)
    return report
