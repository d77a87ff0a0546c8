"""Verification at three levels, each collecting every problem into one report.

- ``integrity``: re-read every part and check it against the manifest (below).
- ``sample``: re-read N random items of the snapshot from the live source by key; an item
  the source shows unchanged since the snapshot must be identical (``drills.verify_sample``).
- ``drill``: restore into a scratch target, compare the target's content digest with the
  manifest's, measure the restore (the measured RTO), delete the target even on failure
  (``drills.verify_drill``).

Every report is stored under ``verifications/`` (:func:`record`).

Integrity checks, first: an encrypted snapshot's manifest authenticates (its tag matches its content
under the data key, unwrapped with the policy's keys). Per part: the object exists; its size and
sha256 match the manifest; an encrypted part decrypts (every chunk authenticates against the
snapshot id and the part's name, so a part swapped, moved or altered fails); it decompresses
completely — reading stops at once past the part's ``stored_bytes``, past its ``raw_bytes``
decompressed, or at a line longer than any item (``codec.open_part``), so a decompression bomb
costs neither time nor memory; every line decodes as an item of the snapshot's source type; the item count matches.
Then for the snapshot: totals add up, the order-independent content digest recomputed from
every line equals the manifest's, an incremental snapshot's previous snapshot is still there,
and (S3 source) every blob the listing references exists and hashes to its sha256.
Verification never stops at the first problem.
"""

from __future__ import annotations

import hashlib
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import zstandard

from . import __version__, audit, blobs, chain, keyindex, layout, registry
from . import clock as _clock
from .codec import (
    ContentDigest,
    DecryptionError,
    PartLimitError,
    TruncatedPartError,
    open_part,
)
from .errors import (
    CloudkeepError,
    KeyUnavailableError,
    ObjectExistsError,
    ObjectNotFoundError,
    TamperedError,
)
from .manifest import Manifest, PartEntry
from .progress import NullProgress, Progress
from .redaction import redact
from .stores import Store
from .trust import check_policy

if TYPE_CHECKING:
    from .keys import Keyring
    from .trust import Expect

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
    trigger: str = "manual"
    tier: str | None = None
    restore_seconds: float | None = None  # drill: the measured RTO
    rto: timedelta | None = None  # drill: the tier's RTO
    target: str | None = None  # drill: the scratch target
    cleaned_up: bool | None = None  # drill: the scratch target was deleted
    sample: dict[str, int] | None = None  # sample: requested, compared, matched, changed, ...
    slot: datetime | None = None  # a scheduled verification: the schedule slot it ran for
    details: dict[str, Any] | None = None  # a drill's outcome (what was restored, how long)
    settings: dict[str, Any] | None = None  # drill: the settings restored (s16-settings)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def rto_met(self) -> bool | None:
        if self.rto is None or self.restore_seconds is None:
            return None
        return self.restore_seconds <= self.rto.total_seconds()

    def as_dict(self) -> dict[str, Any]:
        """The report as the CLI prints it (``problems`` as objects: part, check, message)."""
        extra: dict[str, Any] = {}
        if self.level == "drill":
            extra = {
                "target": self.target,
                "restore_seconds": None if self.restore_seconds is None else round(self.restore_seconds, 3),
                "cleaned_up": self.cleaned_up,
            }
            if self.rto is not None:
                extra["rto_seconds"] = int(self.rto.total_seconds())
                extra["rto_met"] = self.rto_met
            if self.settings is not None:
                extra["settings"] = self.settings
        if self.sample is not None:
            extra["sample"] = self.sample
        if self.slot is not None:
            extra["slot"] = self.slot.isoformat()
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
            "trigger": self.trigger,
            "tier": self.tier,
            **extra,
            "cloudkeep_version": __version__,
        } | ({"drill": self.details} if self.details is not None else {})

    def record_dict(self) -> dict[str, Any]:
        """The stored form: ``problems`` as one line each, the details in ``problem_details``."""
        data = self.as_dict()
        data["problem_details"] = data["problems"]
        data["problems"] = [str(p) for p in self.problems]
        return data


def _line_checker(source_type: str) -> Any:
    """The line check of a source type (its spec's ``check_line``; any JSON object for a type
    this cloudkeep does not know)."""
    return registry.line_check(source_type)


@dataclass
class _PartResult:
    part: PartEntry
    items: int = 0
    digest: ContentDigest = field(default_factory=ContentDigest)
    problems: list[Problem] = field(default_factory=list)
    readable: bool = True
    index_sha: str | None = None  # sha256 of the key index rebuilt from the part's lines


def verify_integrity(store: Store, manifest: Manifest, *, workers: int = 8,
                     progress: Progress | None = None, keyring: Keyring | None = None,
                     expect: Expect | None = None) -> VerifyReport:
    """Check every part of ``manifest`` in ``store``; returns a report listing every problem.
    An encrypted or signed snapshot needs ``keyring``; a key that cannot be used raises
    KeyUnavailableError (nothing can be checked without it). With ``expect`` (and a keyring),
    a manifest that lacks the encryption or tag the policy requires is a problem too."""
    report = VerifyReport(manifest.dataset, manifest.snapshot_id, "integrity",
                          _clock.now())
    checker = _line_checker(str(manifest.source.get("type", "")))
    bar = progress or NullProgress()
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
    if expect is not None and keyring is not None:
        try:
            check_policy(store, manifest, expect, keyring)
        except TamperedError as exc:  # a downgrade, or an endorsement that does not match
            report.problems.append(Problem(None, "manifest authentication", str(exc)))

    def check(part: PartEntry) -> _PartResult:
        result = _check_part(store, manifest, part, checker, data_key)
        index_problem = keyindex.check(store, manifest, part)
        if index_problem is None and part.key_index is not None and result.readable \
                and result.index_sha != part.key_index:  # an index forged under an unsigned manifest
            index_problem = f"the key index of part {part.name} does not list its items' keys"
        if index_problem is not None:  # a part's key index is covered by the manifest too
            result.problems.append(Problem(part.name, "key index", index_problem))
        bar.advance(result.items, part.raw_bytes)
        return result

    bar.start(f"verify {manifest.dataset}@{manifest.snapshot_id}", manifest.totals.items)
    try:
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(manifest.parts) or 1))) as pool:
            results = list(pool.map(check, manifest.parts))
    finally:
        bar.finish()

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
    if blobs.uses_blobs(manifest) and all_readable:
        # The objects' content: every blob the listing names exists and hashes to its name.
        report.problems.extend(Problem(None, "blobs", message)
                               for message in blobs.check_blobs(store, manifest, workers=workers))
    if manifest.codec.framing == "opaque":
        pass  # files of a service's own format: sizes and sha256 are all there is to check
    elif all_readable:
        if report.items != totals.items:
            report.problems.append(Problem(None, "item count", f"read {report.items} items, manifest says {totals.items}"))
        if digest.hexdigest() != manifest.content_digest.value:
            report.problems.append(Problem(None, "content digest", "the digest of the items read differs from the manifest's"))
    else:
        report.problems.append(Problem(None, "content digest", "not checked: some parts could not be read in full"))
    report.finished_at = _clock.now()
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
    # Read within the manifest's limits: stored_bytes, raw_bytes, a sane line length.
    hashing, lines = open_part(stream, compression=manifest.codec.compression,
                               stored_bytes=part.stored_bytes, raw_bytes=part.raw_bytes,
                               data_key=data_key, snapshot_id=manifest.snapshot_id,
                               part_name=part.name)
    bad_lines = 0
    opaque = manifest.codec.framing == "opaque"  # a service's own export file: bytes only
    rebuilt = (keyindex.IndexBuilder(manifest.source, data_key
                                     if manifest.codec.encryption is not None else None)
               if part.key_index is not None and not opaque else None)
    try:
        with stream:
            try:
                for line in () if opaque else lines:
                    result.items += 1
                    result.digest.add_line(line)
                    if rebuilt is not None:
                        rebuilt.add_lines((line,))
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
            except PartLimitError as exc:
                problem(exc.check, str(exc))
                result.readable = False
            hashing.drain()
    except CloudkeepError as exc:
        problem("unreadable", str(exc))
        result.readable = False
        return result
    if bad_lines > 3:
        problem("decode", f"{bad_lines} undecodable lines in all")
    if hashing.exceeded:  # reading stopped at the manifest's size
        problem("size", f"more than {part.stored_bytes} bytes in the store, manifest says "
                f"{part.stored_bytes}; reading stopped there")
    elif hashing.size != part.stored_bytes:
        problem("size", f"{hashing.size} bytes in the store, manifest says {part.stored_bytes}")
    if hashing.sha256.hexdigest() != part.sha256:
        problem("sha256", "checksum of the stored bytes differs from the manifest's")
    if result.readable and result.items != part.items:
        problem("item count", f"read {result.items} items, manifest says {part.items}")
    body = rebuilt.finish(part.sha256) if rebuilt is not None else None
    result.index_sha = hashlib.sha256(body).hexdigest() if body is not None else None
    return result


def record(store: Store, report: VerifyReport) -> str:
    """Store the report under ``verifications/`` (best effort for read-only stores)."""
    body = redact(json.dumps(report.record_dict(), indent=2)).encode()  # no credential is stored
    at = report.started_at
    key = layout.verification_key(report.dataset, report.snapshot_id, at)
    for _ in range(30):
        key = layout.verification_key(report.dataset, report.snapshot_id, at)
        try:
            store.put(key, body, if_absent=True)
            return key
        except ObjectExistsError:
            at += timedelta(seconds=1)  # another verification of the same second: the next one
        except CloudkeepError as exc:
            log.warning("could not record the verification in the store: %s", exc)
            return key
    log.warning("could not find a free key for the verification record")
    return key


def _item_label(line: bytes) -> str:
    try:
        doc = json.loads(line)
    except ValueError:
        return "?"
    if isinstance(doc.get("name"), str):
        return str(doc["name"])
    if isinstance(doc.get("item"), dict):
        return f"id={doc['item'].get('id')!r}"
    return "(a DynamoDB item)"


# ---------------------------------------------------------------------------- stored verifications


def records_of(store: Store, dataset: str, snapshot_id: str) -> list[dict[str, Any]]:
    """Every stored verification of one snapshot, oldest first."""
    out = []
    for info in store.list(layout.verifications_prefix(dataset, snapshot_id)):
        try:
            data = json.loads(store.get(info.key))
        except (CloudkeepError, ValueError, RecursionError):
            continue
        if isinstance(data, dict):
            out.append(data)
    return sorted(out, key=lambda d: str(d.get("started_at")))


def latest_records(store: Store, dataset: str) -> dict[str, dict[str, Any]]:
    """The newest verification of each level across the dataset's snapshots: level → record."""
    prefix = f"{dataset}/verifications/"
    keys = sorted((info.key for info in store.list(prefix)), key=lambda k: k.rsplit("/", 1)[-1])
    out: dict[str, dict[str, Any]] = {}
    for key in reversed(keys):
        try:
            data = json.loads(store.get(key))
        except (CloudkeepError, ValueError, RecursionError):
            continue
        level = str(data.get("level")) if isinstance(data, dict) else ""
        if level and level not in out:
            out[level] = data
        if len(out) == 3:
            break
    return out


def record_and_audit(store: Store, report: VerifyReport) -> str:
    """Store the report (:func:`record`) and append its audit record."""
    key = record(store, report)
    audit.write(store, "verify", outcome="ok" if report.ok else "failed", dataset=report.dataset,
                snapshot_id=report.snapshot_id,
                detail={"level": report.level, "record": key,
                        "problems": [str(p) for p in report.problems][:20]})
    return key


def brief(record: dict[str, Any]) -> dict[str, Any]:
    """The fields of a stored verification that tables show."""
    keep = ("level", "ok", "started_at", "finished_at", "trigger", "restore_seconds", "rto_seconds",
            "rto_met")
    return {k: record.get(k) for k in keep if k in record}


def by_snapshot(store: Store, dataset: str,
                problems: list[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    """Every stored verification of ``dataset``, grouped by snapshot id, oldest first; an
    unreadable record is skipped (and added to ``problems``)."""
    prefix = f"{dataset}/verifications/"
    out: dict[str, list[dict[str, Any]]] = {}
    for info in store.list(prefix):
        snapshot_id = info.key[len(prefix):].split("/", 1)[0]
        try:
            data = json.loads(store.get(info.key))
        except (CloudkeepError, ValueError, RecursionError):
            data = None
        if isinstance(data, dict):
            out.setdefault(snapshot_id, []).append(data)
        elif problems is not None:
            problems.append(f"verification record {info.key} cannot be read (skipped)")
    for records in out.values():
        records.sort(key=lambda d: str(d.get("started_at")))
    return out
