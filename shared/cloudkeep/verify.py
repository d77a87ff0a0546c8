"""Integrity verification: re-read every part, check it against the manifest, report every problem.

Checks, first: an encrypted snapshot's manifest authenticates (its tag matches its content under
the data key, unwrapped with the policy's keys). Per part: the object exists; its size and sha256
match the manifest; an encrypted part decrypts (every chunk authenticates against the snapshot id
and the part's name, so a part swapped, moved or altered fails); it decompresses completely; every line decodes as an item of the snapshot's source type; the item count matches.
Then for the snapshot: totals add up, the order-independent content digest recomputed from
every line equals the manifest's, and an incremental snapshot's previous snapshot is still there.
Verification never stops at the first problem.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import zstandard

from . import __version__, chain, layout
from .codec import (
    ContentDigest,
    DecryptingReader,
    DecryptionError,
    HashingReader,
    TruncatedPartError,
    iter_lines,
)
from .errors import CloudkeepError, KeyUnavailableError, ObjectNotFoundError, TamperedError
from .manifest import Manifest, PartEntry
from .stores import Store

if TYPE_CHECKING:
    from .keys import Keyring

log = logging.getLogger(__name__)


@dataclass
class Problem:
    part: str | None
    check: str
    message: str

    def __str__(self) -> str:
        where = f"part {self.part}" if self.part else "snapshot"
        return f"{where}: {self.check}: {self.message}"


@dataclass
class VerifyReport:
    dataset: str
    snapshot_id: str
    level: str
    started_at: datetime
    finished_at: datetime | None = None
    parts_checked: int = 0
    items: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "ref": f"{self.dataset}@{self.snapshot_id}",
            "dataset": self.dataset,
            "snapshot_id": self.snapshot_id,
            "level": self.level,
            "ok": self.ok,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "parts_checked": self.parts_checked,
            "items": self.items,
            "problems": [asdict(p) for p in self.problems],
            "cloudkeep_version": __version__,
        }


def _line_checker(source_type: str) -> Any:
    def dynamodb(doc: Any) -> str | None:
        if not isinstance(doc, dict) or not isinstance(doc.get("Item"), dict):
            return "line is not a DynamoDB item ({\"Item\": {...}})"
        return None

    def firestore(doc: Any) -> str | None:
        if (not isinstance(doc, dict) or not isinstance(doc.get("name"), str)
                or not isinstance(doc.get("fields"), dict)):
            return "line is not a Firestore document ({\"name\": ..., \"fields\": {...}})"
        return None

    def cosmos(doc: Any) -> str | None:
        if not isinstance(doc, dict) or not isinstance(doc.get("partition_key"), list):
            return "line is not a Cosmos DB item ({\"item\": {...}, \"partition_key\": [...]})"
        if doc.get("delete") is True:
            return None if isinstance(doc.get("id"), str) else "deletion line without an id"
        item = doc.get("item")
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            return "line is not a Cosmos DB item ({\"item\": {\"id\": ...}, ...})"
        return None

    def generic(doc: Any) -> str | None:
        return None if isinstance(doc, dict) else "line is not a JSON object"

    return {"dynamodb": dynamodb, "firestore": firestore, "cosmos": cosmos}.get(source_type, generic)


@dataclass
class _PartResult:
    part: PartEntry
    items: int = 0
    digest: ContentDigest = field(default_factory=ContentDigest)
    problems: list[Problem] = field(default_factory=list)
    readable: bool = True


def verify_integrity(store: Store, manifest: Manifest, *, workers: int = 8,
                     keyring: Keyring | None = None) -> VerifyReport:
    """Check every part of ``manifest`` in ``store``; returns a report listing every problem.
    An encrypted snapshot needs ``keyring``; a key that cannot be used raises
    KeyUnavailableError (nothing can be checked without it)."""
    report = VerifyReport(manifest.dataset, manifest.snapshot_id, "integrity",
                          datetime.now(UTC))
    checker = _line_checker(str(manifest.source.get("type", "")))
    data_key: bytes | None = None
    if manifest.codec.encryption is not None or manifest.authentication is not None:
        if keyring is None:
            raise KeyUnavailableError(f"{manifest.dataset}@{manifest.snapshot_id} is encrypted: "
                                      "verifying it needs the policy's keys")
        try:
            keyring.authenticate(manifest)
        except TamperedError as exc:
            report.problems.append(Problem(None, "manifest authentication", str(exc)))
        data_key = keyring.data_key(manifest)

    def check(part: PartEntry) -> _PartResult:
        return _check_part(store, manifest, part, checker, data_key)

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(manifest.parts) or 1))) as pool:
        results = list(pool.map(check, manifest.parts))

    digest = ContentDigest()
    all_readable = True
    for result in results:
        report.parts_checked += 1
        report.items += result.items
        report.problems.extend(result.problems)
        all_readable &= result.readable
        digest.merge(result.digest)

    totals = manifest.totals
    if totals.parts != len(manifest.parts):
        report.problems.append(Problem(None, "totals", f"manifest lists {len(manifest.parts)} parts but its totals say {totals.parts}"))
    if totals.items != sum(p.items for p in manifest.parts):
        report.problems.append(Problem(None, "totals", "item counts of the parts do not add up to the total"))
    if totals.stored_bytes != sum(p.stored_bytes for p in manifest.parts):
        report.problems.append(Problem(None, "totals", "stored sizes of the parts do not add up to the total"))
    names = [p.name for p in manifest.parts]
    if len(set(names)) != len(names):
        report.problems.append(Problem(None, "parts", "a part is listed more than once"))
    previous = chain.previous_of(manifest)
    if previous is not None:
        try:
            if store.stat(layout.manifest_key(manifest.dataset, previous)) is None:
                report.problems.append(Problem(None, "chain", f"incremental snapshot: {previous}, "
                                               "the snapshot it continues, is not in the store"))
        except CloudkeepError as exc:
            report.problems.append(Problem(None, "chain", f"cannot check {previous}: {exc}"))
    if all_readable:
        if report.items != totals.items:
            report.problems.append(Problem(None, "item count", f"read {report.items} items, manifest says {totals.items}"))
        if digest.hexdigest() != manifest.content_digest.value:
            report.problems.append(Problem(None, "content digest", "the digest of the items read differs from the manifest's"))
    else:
        report.problems.append(Problem(None, "content digest", "not checked: some parts could not be read in full"))
    report.finished_at = datetime.now(UTC)
    return report


def _check_part(store: Store, manifest: Manifest, part: PartEntry, checker: Any,
                data_key: bytes | None = None) -> _PartResult:
    result = _PartResult(part, digest=ContentDigest(ignores=manifest.content_digest.ignores))
    key = layout.part_key(manifest.dataset, manifest.snapshot_id, part.name)

    def problem(check: str, message: str) -> None:
        result.problems.append(Problem(part.name, check, message))

    try:
        stream = store.open(key)
    except ObjectNotFoundError:
        problem("missing", f"{key} is not in the store")
        result.readable = False
        return result
    except CloudkeepError as exc:
        problem("unreadable", str(exc))
        result.readable = False
        return result
    hashing = HashingReader(stream)
    plain: Any = hashing
    if data_key is not None:
        plain = DecryptingReader(hashing, data_key, manifest.snapshot_id, part.name)  # type: ignore[arg-type]
    bad_lines = 0
    try:
        with stream:
            try:
                for line in iter_lines(plain):
                    result.items += 1
                    result.digest.add_line(line)
                    try:
                        message = checker(json.loads(line))
                    except ValueError as exc:
                        message = f"line is not valid JSON ({exc})"
                    if message:
                        bad_lines += 1
                        if bad_lines <= 3:
                            problem("decode", f"item {result.items}: {message}")
            except DecryptionError as exc:
                problem("decrypt", str(exc))
                result.readable = False
            except TruncatedPartError as exc:
                problem("truncated", str(exc))
                result.readable = False
            except zstandard.ZstdError as exc:
                problem("decompress", f"not valid zstd data ({exc})")
                result.readable = False
            hashing.drain()
    except CloudkeepError as exc:
        problem("unreadable", str(exc))
        result.readable = False
        return result
    if bad_lines > 3:
        problem("decode", f"{bad_lines} undecodable lines in all")
    if hashing.size != part.stored_bytes:
        problem("size", f"{hashing.size} bytes in the store, manifest says {part.stored_bytes}")
    if hashing.sha256.hexdigest() != part.sha256:
        problem("sha256", "checksum of the stored bytes differs from the manifest's")
    if result.readable and result.items != part.items:
        problem("item count", f"read {result.items} items, manifest says {part.items}")
    return result


def record(store: Store, report: VerifyReport) -> str:
    """Store the report under ``verifications/`` (best effort for read-only stores)."""
    key = layout.verification_key(report.dataset, report.snapshot_id, report.started_at)
    body = json.dumps(report.as_dict(), indent=2).encode()
    try:
        store.put(key, body, if_absent=True)
    except CloudkeepError as exc:
        log.warning("could not record the verification in the store: %s", exc)
    return key
