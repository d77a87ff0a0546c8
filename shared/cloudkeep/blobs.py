"""Content-addressed blobs of the S3 source (``<dataset>/blobs/<sha256[:2]>/<sha256>``).

A blob belongs to no single snapshot: every snapshot's listing names the blobs it needs. So:

- verify checks that every blob a snapshot references exists, has the recorded size and hashes
  to its name;
- copies to further stores carry the blobs a snapshot references (create-only, hash checked);
- garbage collection (``cloudkeep prune``) deletes blobs that no committed snapshot references.
  It never deletes a blob younger than :data:`BLOB_GRACE` (a run in progress may have written it
  and not yet committed its manifest), and it runs holding the dataset's lock, so no run can
  reuse a blob while it is being deleted.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from . import layout, registry
from .catalog import scan
from .changelog import prune as changelog_prune
from .codec import HashingReader, PartLimitError, listing_records
from .errors import CloudkeepError, LockedError, ObjectExistsError, ObjectNotFoundError, VerificationError
from .lock import DatasetLock, FencedStore
from .manifest import Manifest
from .stores import Store

log = logging.getLogger(__name__)

BLOB_GRACE = timedelta(hours=24)
MAX_REPORTED = 20


def uses_blobs(manifest: Manifest) -> bool:
    """Whether the snapshot's source type keeps content-addressed blobs beside its parts."""
    spec = registry.source_spec(manifest.source.get("type"))
    return spec is not None and spec.USES_BLOBS


def referenced(store: Store, manifests: Iterable[Manifest]) -> set[str]:
    """The sha256 of every blob the given snapshots reference."""
    out: set[str] = set()
    for manifest in manifests:
        if uses_blobs(manifest):
            out.update(str(r.get("sha256")) for r in listing_records(store, manifest))
    return out


def distinct_blobs(store: Store, manifest: Manifest) -> dict[str, int]:
    """sha256 → size of the blobs one snapshot references."""
    return {str(r["sha256"]): int(r.get("size", 0)) for r in listing_records(store, manifest)
            if isinstance(r.get("sha256"), str)}


# ---------------------------------------------------------------------------- verify


def check_blobs(store: Store, manifest: Manifest, *, workers: int = 8, rehash: bool = True
                ) -> list[str]:
    """Problems with the blobs a snapshot references: missing, wrong size, or (``rehash``)
    content that does not hash to the blob's name. Every blob is checked; messages are capped."""
    try:
        wanted = distinct_blobs(store, manifest)
    except Exception as exc:  # noqa: BLE001 - the part checks report the listing's damage
        return [f"blobs not checked: the listing cannot be read ({exc})"]

    def one(item: tuple[str, int]) -> str | None:
        sha, size = item
        key = layout.blob_key(manifest.dataset, sha)
        try:
            if not rehash:
                info = store.stat(key)
                if info is None:
                    return f"blob {sha} is missing"
                return None if info.size == size else f"blob {sha} has {info.size} bytes, listing says {size}"
            with store.open(key) as stream:
                reader = HashingReader(stream, limit=size)  # never reads past the listed size
                reader.drain()
                reader.check_size()
        except PartLimitError:
            return f"blob {sha} has more bytes than the {size} its listing says"
        except ObjectNotFoundError:
            return f"blob {sha} is missing"
        except CloudkeepError as exc:
            return f"blob {sha} cannot be read: {exc}"
        if reader.size != size:
            return f"blob {sha} has {reader.size} bytes, listing says {size}"
        if reader.sha256.hexdigest() != sha:
            return f"blob {sha} is damaged: its content hashes to {reader.sha256.hexdigest()}"
        return None

    with ThreadPoolExecutor(max_workers=workers) as pool:
        problems = [p for p in pool.map(one, sorted(wanted.items())) if p]
    if len(problems) > MAX_REPORTED:
        problems = problems[:MAX_REPORTED] + [f"{len(problems)} blob problems in all"]
    return problems


# ---------------------------------------------------------------------------- copies


def copy_blobs(source: Store, target: Store, manifest: Manifest, *,
               retain_until: datetime | None = None) -> int:
    """Copy the blobs a snapshot references into ``target`` (those it lacks); each copied blob's
    sha256 is checked, and a blob already there must have the recorded size. Returns how many
    were copied."""
    copied = 0
    for sha, size in sorted(distinct_blobs(source, manifest).items()):
        key = layout.blob_key(manifest.dataset, sha)
        there = target.stat(key)
        if there is not None:
            if there.size != size:
                raise VerificationError(f"blob {sha} in {target.describe()} has {there.size} "
                                        f"bytes, not {size}; prune removes it once unreferenced")
            continue
        with source.open(key) as stream:
            reader = HashingReader(stream, limit=size)  # never reads past the listed size
            try:
                target.put(key, reader, if_absent=True, retain_until=retain_until)  # type: ignore[arg-type]
            except ObjectExistsError:
                continue
        if reader.sha256.hexdigest() != sha or reader.exceeded:
            # A copy never deletes (only prune does): the damaged blob is unreferenced in the copy
            # store (no copied manifest names it yet) and prune's blob collection removes it.
            raise VerificationError(f"blob {sha} in {source.describe()} is damaged; not copied")
        copied += 1
    return copied


# ---------------------------------------------------------------------------- garbage collection


@dataclass
class GcReport:
    referenced: int = 0
    unreferenced: int = 0
    removed: list[str] = field(default_factory=list)
    removed_bytes: int = 0
    too_young: int = 0
    skipped: str | None = None  # why nothing was collected

    def as_dict(self) -> dict[str, Any]:
        return {
            "referenced": self.referenced,
            "unreferenced": self.unreferenced,
            "removed": len(self.removed),
            "removed_bytes": self.removed_bytes,
            "kept_within_grace": self.too_young,
            "skipped": self.skipped,
        }


def collect(store: Store, dataset: str, now: datetime, *, keep_ids: Iterable[str] | None = None,
            dry_run: bool = False, grace: timedelta = BLOB_GRACE, fence: Any = None) -> GcReport:
    """Delete the dataset's blobs that no committed snapshot references and that are older than
    ``grace``. ``keep_ids`` (dry run): the snapshots that would remain; default: every committed
    snapshot. The real run holds the dataset's lock: ``fence`` when the caller (prune) holds it
    already, else its own (skipped, and said so, if a run holds it)."""
    report = GcReport()
    if not any(True for _ in store.list(layout.blobs_prefix(dataset))):
        return report
    if dry_run:
        _collect(store, dataset, now, keep_ids, True, grace, report)
        return report
    if fence is not None:
        _collect(FencedStore(store, fence), dataset, now, None, False, grace, report)
        return report
    try:
        with DatasetLock(store, dataset, f"gc-{secrets.token_hex(6)}") as lock:
            _collect(FencedStore(store, lock), dataset, now, None, False, grace, report)
    except LockedError as exc:
        report.skipped = f"a run holds the dataset's lock ({exc})"
    return report


def _collect(store: Store, dataset: str, now: datetime, keep_ids: Iterable[str] | None,
             dry_run: bool, grace: timedelta, report: GcReport) -> None:
    # Every manifest counts, trusted or not (a forged or replayed one is evidence: what it
    # points at stays); one that cannot be read at all leaves its blobs unknown: collect nothing.
    listing = scan(store, dataset)
    unreadable = [r for r in listing.refused if r.manifest is None]
    if unreadable:
        report.skipped = (f"{len(unreadable)} manifest(s) cannot be read, so the blobs they "
                          f"reference are unknown ({unreadable[0].message})")
        return
    manifests = listing.manifests
    if keep_ids is not None:
        keep = set(keep_ids)
        manifests = [m for m in manifests if m.snapshot_id in keep]
    manifests += [r.manifest for r in listing.refused if r.manifest is not None]
    used = referenced(store, manifests)
    logged = changelog_prune.log_blobs(store, dataset)  # the change log's too (s16-capture)
    if logged is None:
        report.skipped = "a change-log index entry cannot be read, so the blobs it references are unknown"
        return
    used |= logged
    report.referenced = len(used)
    doomed: list[str] = []
    for info in store.list(layout.blobs_prefix(dataset)):
        sha = layout.parse_blob_key(dataset, info.key)
        if sha is None or sha in used:
            continue
        report.unreferenced += 1
        if info.modified is None or now - info.modified < grace:
            report.too_young += 1
            continue
        doomed.append(info.key)
        report.removed.append(sha)
        report.removed_bytes += info.size
    if doomed and not dry_run:
        store.delete(doomed)
    if doomed:
        log.info("%s %d unreferenced blob(s) of %s (%d bytes)",
                 "would remove" if dry_run else "removed", len(doomed), dataset, report.removed_bytes)

