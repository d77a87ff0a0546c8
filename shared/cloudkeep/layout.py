"""Every object key cloudkeep writes, in one place (snapshot format version 1, DESIGN.md §4).

Keys are relative to the store's root (a store applies its own ``prefix``)::

    <dataset>/snapshots/<snapshot_id>/part-<segment>-<n>.ndjson.zst[.enc]  (.enc: encrypted)
    <dataset>/snapshots/<snapshot_id>/part-<segment>-<n>.ndjson.zst[.enc].keys  the part's key
                                                          index (create-only; sha256 in the manifest)
    <dataset>/snapshots/<snapshot_id>/manifest.json       written last, create-only
    <dataset>/snapshots/<snapshot_id>/endorsement.json    tag of a manifest written unsigned
                                                          (cloudkeep keys endorse; create-only)
    <dataset>/snapshots/<snapshot_id>/checkpoints/run.json                 the run's plan (create-only)
    <dataset>/snapshots/<snapshot_id>/checkpoints/abandoned.json           the plan can't be resumed
    <dataset>/snapshots/<snapshot_id>/checkpoints/segment-<n>/<seq>.json   a segment's cursor and parts
    <dataset>/snapshots/<snapshot_id>/checkpoints/segment-<n>.done.json    finished (create-only)
    <dataset>/snapshots/<snapshot_id>/checkpoints/lease-<n>/<generation>.json  a worker's lease
    <dataset>/verifications/<snapshot_id>/<timestamp>.json
    <dataset>/holds/<snapshot_id>.json                   a legal hold (single record, earlier releases)
    <dataset>/holds/<snapshot_id>/<hold_id>.json         a legal hold (create-only; they stack)
    <dataset>/holds/<snapshot_id>/<hold_id>.released.json  its release (create-only)
    <dataset>/holds/<snapshot_id>/deleting-<prune_id>.json  prune is deleting the snapshot
    <dataset>/holds/<snapshot_id>/deleting-<prune_id>.cancelled.json  ... and then did not
    <dataset>/copies/<snapshot_id>/<store>.json          verified copies in other stores
    <dataset>/jobs/<snapshot_id>/<seq>.json              native jobs (export, backup, RDS snapshot)
    <dataset>/lock/<generation>.json                     the dataset's lock, a generation sequence
    <dataset>/alerts/state/<seq>.json                    open alerts (the watchdog's memory)
    <dataset>/runs/<yyyy>/<mm>/<dd>/<capture time>-<snapshot_id>.json
                                                         run index: one per committed snapshot,
                                                         create-only, kept when it is pruned
    <dataset>/verify-slots/<level>/<slot>.json           a scheduled drill/sample slot claimed
    <dataset>/verify-slots/<level>/<slot>.outcome.json   ... and what it found (both create-only,
                                                         kept when the snapshot is pruned)
    _audit/<yyyy>/<mm>/<dd>/<timestamp>-<event>.json      audit log, create-only
    _audit/policy/<seq>.json                             digest of the last policy the tick saw
    <dataset>/blobs/<sha256[:2]>/<sha256>               S3 source: object content, by its sha256
    <dataset>/rehydrations/<snapshot_id>/<seq>.json     rehydration of archived parts (s16-cold)

The backup path (runs, ticks, fan-out workers, copies) only ever *creates* objects. State that
changes — a lock, a checkpoint, a job record, the alert state, the policy digest — is an
append-only sequence of create-only entries named by a zero-padded number (``<generation>``:
12 digits, ``<seq>``: 12 digits), so the newest entry sorts last and is the current value; a
writer that finds the next number taken has lost a race (a lock: it is fenced) or moves on.
Only prune deletes: superseded entries (it keeps the newest few), parts no committed manifest
references, checkpoints of committed snapshots and abandoned unfinished snapshots.

Keys of the previous release that are still read: ``<dataset>/jobs/<snapshot_id>.json`` and
``<dataset>/alerts/state.json`` and ``_audit/policy.json`` (the value when no sequence entry
exists yet), ``checkpoints/segment-<n>.json`` (a segment's checkpoint when it has no entry).
``<dataset>/lock.json``, ``<dataset>/lock-takeover-*.json`` and ``checkpoints/segment-<n>.lock``
are stale: prune removes them.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime

MANIFEST_NAME = "manifest.json"
PART_SUFFIX = ".ndjson.zst"
ENCRYPTED_SUFFIX = ".enc"
SNAPSHOT_ID_RE = re.compile(r"^\d{8}T\d{6}Z-[0-9a-z]{4,32}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
DATASET_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def dataset_prefix(dataset: str) -> str:
    return f"{dataset}/"


def snapshots_prefix(dataset: str) -> str:
    return f"{dataset}/snapshots/"


def snapshot_prefix(dataset: str, snapshot_id: str) -> str:
    return f"{dataset}/snapshots/{snapshot_id}/"


def manifest_key(dataset: str, snapshot_id: str) -> str:
    return f"{snapshot_prefix(dataset, snapshot_id)}{MANIFEST_NAME}"


def part_name(segment: int, index: int, *, encrypted: bool = False) -> str:
    """The part's file name; zero-padded so names sort in read order."""
    return f"part-{segment:05d}-{index:06d}{PART_SUFFIX}{ENCRYPTED_SUFFIX if encrypted else ''}"


def part_key(dataset: str, snapshot_id: str, name: str) -> str:
    return f"{snapshot_prefix(dataset, snapshot_id)}{name}"


def blobs_prefix(dataset: str) -> str:
    return f"{dataset}/blobs/"


def blob_key(dataset: str, sha256: str) -> str:
    """Where the S3 source stores an object's content: content-addressed, so identical content
    is stored once and an unchanged object is never copied again."""
    if not _SHA256_RE.match(sha256):
        raise ValueError(f"not a sha256 hex digest: {sha256!r}")
    return f"{dataset}/blobs/{sha256[:2]}/{sha256}"


def parse_blob_key(dataset: str, key: str) -> str | None:
    """The sha256 if ``key`` is a blob of ``dataset``, else None."""
    head = blobs_prefix(dataset)
    if not key.startswith(head):
        return None
    rest = key[len(head):]
    fan, _, sha = rest.partition("/")
    return sha if _SHA256_RE.match(sha) and fan == sha[:2] else None


CHECKPOINTS_DIR = "checkpoints"
RUN_STATE_NAME = "run.json"


def checkpoints_prefix(dataset: str, snapshot_id: str) -> str:
    """Checkpoints of a snapshot; prune removes them once its manifest is committed."""
    return f"{snapshot_prefix(dataset, snapshot_id)}{CHECKPOINTS_DIR}/"


def run_state_key(dataset: str, snapshot_id: str) -> str:
    return f"{checkpoints_prefix(dataset, snapshot_id)}{RUN_STATE_NAME}"


def checkpoint_key(dataset: str, snapshot_id: str, segment: int) -> str:
    """The previous release's single, rewritten checkpoint of a segment (read, never written)."""
    return f"{checkpoints_prefix(dataset, snapshot_id)}segment-{segment:05d}.json"


def segment_checkpoints_prefix(dataset: str, snapshot_id: str, segment: int) -> str:
    """The segment's checkpoints, an append-only sequence (``sequence_key``): newest is current."""
    return f"{checkpoints_prefix(dataset, snapshot_id)}segment-{segment:05d}/"


def abandoned_key(dataset: str, snapshot_id: str) -> str:
    """Marks an unfinished snapshot whose plan can no longer be resumed (create-only): no run
    resumes or commits it, and prune removes it."""
    return f"{checkpoints_prefix(dataset, snapshot_id)}abandoned.json"


def segment_done_key(dataset: str, snapshot_id: str, segment: int) -> str:
    return f"{checkpoints_prefix(dataset, snapshot_id)}segment-{segment:05d}.done.json"


def segment_lock_key(dataset: str, snapshot_id: str, segment: int) -> str:
    """The previous release's lease object of a fan-out worker (stale; prune removes it)."""
    return f"{checkpoints_prefix(dataset, snapshot_id)}segment-{segment:05d}.lock"


def segment_lease_prefix(dataset: str, snapshot_id: str, segment: int) -> str:
    """The lease of the worker reading one segment of a fan-out snapshot: a lock generation
    sequence like the dataset's (``generation_key``)."""
    return f"{checkpoints_prefix(dataset, snapshot_id)}lease-{segment:05d}/"


PART_NAME_RE = re.compile(r"^part-(\d{5})-(\d{6,})\.ndjson\.zst(\.enc)?$")


def parse_part_name(name: str) -> tuple[int, int] | None:
    """(segment, index) if ``name`` is a part's file name (as ``part_name`` makes it), else None."""
    m = PART_NAME_RE.match(name)
    return (int(m.group(1)), int(m.group(2))) if m else None


def segment_parts_prefix(dataset: str, snapshot_id: str, segment: int) -> str:
    """Every part of one segment starts with this (see ``part_name``)."""
    return f"{snapshot_prefix(dataset, snapshot_id)}part-{segment:05d}-"


def parse_run_state_key(dataset: str, key: str) -> str | None:
    """The snapshot id if ``key`` is the run state of a (possibly unfinished) snapshot."""
    head = snapshots_prefix(dataset)
    tail = f"/{CHECKPOINTS_DIR}/{RUN_STATE_NAME}"
    if not key.startswith(head) or not key.endswith(tail):
        return None
    snapshot_id = key[len(head) : -len(tail)]
    return snapshot_id if SNAPSHOT_ID_RE.match(snapshot_id) else None


def hold_key(dataset: str, snapshot_id: str) -> str:
    """The single hold record of earlier releases (read as one hold with id ``legacy``)."""
    return f"{dataset}/holds/{snapshot_id}.json"


def holds_prefix(dataset: str) -> str:
    return f"{dataset}/holds/"


HOLD_ID_RE = re.compile(r"^(h-[0-9a-f]{8}|legacy)$")
_PRUNE_ID_RE = re.compile(r"^[0-9a-f]{8,32}$")


def hold_ledger_prefix(dataset: str, snapshot_id: str) -> str:
    """A snapshot's hold ledger: its holds, their releases and prune's deletion markers, each a
    create-only record."""
    return f"{dataset}/holds/{snapshot_id}/"


def _ledger_key(dataset: str, snapshot_id: str, ident: str, pattern: re.Pattern[str], what: str,
                name: str) -> str:
    """``name`` in the snapshot's hold ledger, once ``ident`` (a hold or prune id) is checked."""
    if not pattern.match(ident):
        raise ValueError(f"not a {what}: {ident!r}")
    return f"{hold_ledger_prefix(dataset, snapshot_id)}{name}"


def hold_record_key(dataset: str, snapshot_id: str, hold_id: str) -> str:
    return _ledger_key(dataset, snapshot_id, hold_id, HOLD_ID_RE, "hold id", f"{hold_id}.json")


def hold_release_key(dataset: str, snapshot_id: str, hold_id: str) -> str:
    return _ledger_key(dataset, snapshot_id, hold_id, HOLD_ID_RE, "hold id",
                       f"{hold_id}.released.json")


def deleting_marker_key(dataset: str, snapshot_id: str, prune_id: str) -> str:
    """Written (create-only) by prune before it deletes a snapshot; a hold added while it is
    there withdraws itself."""
    return _ledger_key(dataset, snapshot_id, prune_id, _PRUNE_ID_RE, "prune id",
                       f"deleting-{prune_id}.json")


def deleting_cancel_key(dataset: str, snapshot_id: str, prune_id: str) -> str:
    """Written by prune when it did not delete the snapshot after all (it was held)."""
    return _ledger_key(dataset, snapshot_id, prune_id, _PRUNE_ID_RE, "prune id",
                       f"deleting-{prune_id}.cancelled.json")


def parse_ledger_key(dataset: str, key: str) -> tuple[str, str, str] | None:
    """``(snapshot_id, kind, id)`` of a key under ``holds/``: kind is ``legacy`` (the old single
    record), ``hold``, ``released``, ``deleting`` or ``cancelled``; None for anything else."""
    head = holds_prefix(dataset)
    if not key.startswith(head):
        return None
    rest = key[len(head):]
    if "/" not in rest:
        sid = rest.removesuffix(".json")
        return (sid, "legacy", "legacy") if rest.endswith(".json") and SNAPSHOT_ID_RE.match(sid) else None
    sid, _, name = rest.partition("/")
    if not SNAPSHOT_ID_RE.match(sid) or "/" in name or not name.endswith(".json"):
        return None
    stem = name[: -len(".json")]
    for suffix, kind in ((".released", "released"), (".cancelled", "cancelled")):
        if stem.endswith(suffix):
            ident = stem[: -len(suffix)]
            if kind == "cancelled":
                ident = ident.removeprefix("deleting-")
                return (sid, kind, ident) if _PRUNE_ID_RE.match(ident) else None
            return (sid, kind, ident) if HOLD_ID_RE.match(ident) else None
    if stem.startswith("deleting-"):
        ident = stem.removeprefix("deleting-")
        return (sid, "deleting", ident) if _PRUNE_ID_RE.match(ident) else None
    return (sid, "hold", stem) if HOLD_ID_RE.match(stem) else None


def endorsement_key(dataset: str, snapshot_id: str) -> str:
    return f"{snapshot_prefix(dataset, snapshot_id)}endorsement.json"


def copy_record_key(dataset: str, snapshot_id: str, store: str) -> str:
    """Where the primary store records a verified copy of a snapshot in another store."""
    return f"{dataset}/copies/{snapshot_id}/{store}.json"


def copies_prefix(dataset: str, snapshot_id: str) -> str:
    return f"{dataset}/copies/{snapshot_id}/"


def all_copies_prefix(dataset: str) -> str:
    """Every copy record of ``dataset`` (of every snapshot)."""
    return f"{dataset}/copies/"


def job_key(dataset: str, snapshot_id: str) -> str:
    """The previous release's single, rewritten job record (read when no entry exists)."""
    return f"{dataset}/jobs/{snapshot_id}.json"


def job_records_prefix(dataset: str, snapshot_id: str) -> str:
    """The record of a native job (started → polling → finished) that makes a snapshot: an
    append-only sequence (``sequence_key``), newest is current."""
    return f"{dataset}/jobs/{snapshot_id}/"


def jobs_prefix(dataset: str) -> str:
    return f"{dataset}/jobs/"


def parse_job_key(dataset: str, key: str) -> str | None:
    """The snapshot id if ``key`` is a job record (an entry, or an old single record) of
    ``dataset``, else None."""
    head = jobs_prefix(dataset)
    if not key.startswith(head) or not key.endswith(".json"):
        return None
    rest = key[len(head) : -len(".json")]
    snapshot_id, slash, entry = rest.partition("/")
    if slash and parse_sequence_name(entry + ".json") is None:
        return None
    return snapshot_id if SNAPSHOT_ID_RE.match(snapshot_id) else None


def lock_key(dataset: str) -> str:
    """The previous release's lock object (stale: never honoured; prune removes it)."""
    return f"{dataset}/lock.json"


def lock_takeover_key(dataset: str, holder_run_id: str) -> str:
    """The previous release's takeover markers (stale; prune removes them)."""
    return f"{lock_takeover_prefix(dataset)}{holder_run_id}.json"


def lock_takeover_prefix(dataset: str) -> str:
    return f"{dataset}/lock-takeover-"


def lock_prefix(dataset: str) -> str:
    """The dataset's lock: a sequence of generations (``generation_key``); the newest says who
    holds it, until when, or that it was released."""
    return f"{dataset}/lock/"


def generation_key(prefix: str, generation: int) -> str:
    """One generation of a lock or lease whose sequence lives under ``prefix``."""
    return f"{prefix}{generation:012d}.json"


def sequence_key(prefix: str, seq: int) -> str:
    """One entry of an append-only state sequence under ``prefix`` (newest sorts last)."""
    return f"{prefix}{seq:012d}.json"


_SEQUENCE_RE = re.compile(r"^(\d{12})\.json$")


def parse_sequence_name(name: str) -> int | None:
    """The number of a sequence entry (or lock generation) from its file name, else None."""
    m = _SEQUENCE_RE.match(name)
    return int(m.group(1)) if m else None


def verification_key(dataset: str, snapshot_id: str, at: datetime) -> str:
    return f"{dataset}/verifications/{snapshot_id}/{format_time(at)}.json"


def verifications_prefix(dataset: str, snapshot_id: str) -> str:
    return f"{dataset}/verifications/{snapshot_id}/"


def all_verifications_prefix(dataset: str) -> str:
    """Every verification record of ``dataset`` (of every snapshot)."""
    return f"{dataset}/verifications/"


def alert_state_key(dataset: str) -> str:
    """The previous release's alert state (read when the sequence has no entry yet)."""
    return f"{dataset}/alerts/state.json"


def alert_states_prefix(dataset: str) -> str:
    """Open alerts of a dataset: an append-only sequence (``sequence_key``), one entry per tick
    that changed them; newest is current (the alerts themselves are audited)."""
    return f"{dataset}/alerts/state/"


def runs_prefix(dataset: str) -> str:
    """The run index of ``dataset``: one entry per committed snapshot, never pruned."""
    return f"{dataset}/runs/"


def runs_day_prefix(dataset: str, day: datetime) -> str:
    return f"{runs_prefix(dataset)}{day.astimezone(UTC):%Y/%m/%d}/"


def run_index_key(dataset: str, captured_at: datetime, snapshot_id: str) -> str:
    """The run-index entry of a committed snapshot, named by its capture time (to the second)
    and id, so a listing alone gives the run history in capture order."""
    at = captured_at.astimezone(UTC)
    return f"{runs_day_prefix(dataset, at)}{format_time(at)}-{snapshot_id}.json"


_RUN_INDEX_RE = re.compile(r"^\d{4}/\d{2}/\d{2}/(\d{8}T\d{6}Z)-(\d{8}T\d{6}Z-[0-9a-z]{4,32})\.json$")


def parse_run_index_key(dataset: str, key: str) -> tuple[datetime, str] | None:
    """(capture time, snapshot id) if ``key`` is a run-index entry of ``dataset``, else None."""
    head = runs_prefix(dataset)
    if not key.startswith(head):
        return None
    match = _RUN_INDEX_RE.match(key[len(head):])
    if not match:
        return None
    at = datetime.strptime(match.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    return at, match.group(2)


VERIFY_LEVELS = ("integrity", "sample", "drill")


def verify_slots_prefix(dataset: str, level: str) -> str:
    return f"{dataset}/verify-slots/{level}/"


def verify_slot_key(dataset: str, level: str, slot: datetime) -> str:
    """The claim of one scheduled verification slot (create-only: one run per slot)."""
    if level not in VERIFY_LEVELS:
        raise ValueError(f"unknown verification level {level!r}")
    return f"{verify_slots_prefix(dataset, level)}{format_time(slot)}.json"


def verify_slot_outcome_key(dataset: str, level: str, slot: datetime) -> str:
    """What the verification of a claimed slot found (create-only)."""
    return verify_slot_key(dataset, level, slot)[: -len(".json")] + ".outcome.json"


AUDIT_PREFIX = "_audit/"


def audit_key(at: datetime, event: str) -> str:
    """One audit record, named by its time to the microsecond (a writer that finds the name
    taken, create-only, takes the next microsecond: no record is ever overwritten)."""
    at = at.astimezone(UTC)
    return f"{AUDIT_PREFIX}{at:%Y/%m/%d}/{at:%Y%m%dT%H%M%S}.{at.microsecond:06d}Z-{event}.json"


def audit_day_prefix(at: datetime) -> str:
    return f"{AUDIT_PREFIX}{at.astimezone(UTC):%Y/%m/%d}/"


def policy_digest_key() -> str:
    """The previous release's policy digest (read when the sequence has no entry yet)."""
    return f"{AUDIT_PREFIX}policy.json"


def policy_digests_prefix() -> str:
    """Digests of the policies the tick saw: an append-only sequence (``sequence_key``)."""
    return f"{AUDIT_PREFIX}policy/"


def format_time(at: datetime) -> str:
    """UTC time as ``YYYYMMDDTHHMMSSZ`` (the time half of a snapshot id)."""
    return at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def snapshot_id_for(at: datetime, suffix: str) -> str:
    return f"{format_time(at)}-{suffix}"


def parse_manifest_key(dataset: str, key: str) -> str | None:
    """The snapshot id if ``key`` is a manifest of ``dataset``, else None."""
    head = snapshots_prefix(dataset)
    if not key.startswith(head) or not key.endswith("/" + MANIFEST_NAME):
        return None
    snapshot_id = key[len(head) : -len(MANIFEST_NAME) - 1]
    return snapshot_id if SNAPSHOT_ID_RE.match(snapshot_id) else None


# --- s16-cold: rehydration records (docs/cold-tiers.md) ---------------------------------------


def rehydrations_prefix(dataset: str) -> str:
    return f"{dataset}/rehydrations/"


def rehydration_records_prefix(dataset: str, snapshot_id: str) -> str:
    """The record of a snapshot's rehydration from an archive class (started → ready): an
    append-only sequence (``sequence_key``), newest is current; written by verify and restore
    (create-only), kept when the snapshot is pruned (small), never read to decide a deletion."""
    if not SNAPSHOT_ID_RE.match(snapshot_id):
        raise ValueError(f"not a snapshot id: {snapshot_id!r}")
    return f"{dataset}/rehydrations/{snapshot_id}/"


# --- change log (continuous capture, issue #21; branch s16-capture) -------------------------
#
#   <dataset>/changelog/index/<yyyy>/<mm>/<dd>/<first time>-<shard tag>-<first seq>-<last seq>.json
#        a committed segment: its record (written create-only, LAST — a segment without one
#        does not exist); the name is deterministic from the batch, so a batch delivered twice
#        finds its record and is not written again
#   <dataset>/changelog/segments/<yyyy>/<mm>/<dd>/<entry name>-<attempt>.ndjson.zst[.enc]
#        the segment's changes (one per line), immutable; a retried write takes the next attempt
#   <dataset>/changelog/gaps/<start time>-<id>.json      a gap in the log (create-only)
#   <dataset>/changelog/positions/<stream tag>/<seq>.json  where `capture` continues: an
#        append-only sequence (``sequence_key``), the newest entry is current

CHANGELOG_DIR = "changelog"
_SAFE_TOKEN_RE = re.compile(r"^[0-9A-Za-z._-]{1,64}$")
CHANGELOG_TIME_FORMAT = "%Y%m%dT%H%M%S%fZ"


def changelog_prefix(dataset: str) -> str:
    return f"{dataset}/{CHANGELOG_DIR}/"


def changelog_index_prefix(dataset: str) -> str:
    return f"{changelog_prefix(dataset)}index/"


def changelog_day(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y/%m/%d/")


def changelog_index_day_prefix(dataset: str, day: datetime) -> str:
    return f"{changelog_index_prefix(dataset)}{changelog_day(day)}"


def changelog_token(text: str) -> str:
    """A shard or sequence as it appears in a key: itself when short and plain, else a hash."""
    if _SAFE_TOKEN_RE.match(text):
        return text
    return "h" + hashlib.sha256(text.encode()).hexdigest()[:32]


def changelog_entry_name(first_time: datetime, shard: str, first_seq: str, last_seq: str) -> str:
    tag = hashlib.sha256(shard.encode()).hexdigest()[:16]
    return (f"{first_time.astimezone(UTC).strftime(CHANGELOG_TIME_FORMAT)}-{tag}-"
            f"{changelog_token(first_seq)}-{changelog_token(last_seq)}")


def changelog_entry_key(dataset: str, first_time: datetime, name: str) -> str:
    return f"{changelog_index_day_prefix(dataset, first_time)}{name}.json"


def changelog_segment_key(dataset: str, first_time: datetime, name: str, attempt: int, *,
                          encrypted: bool = False) -> str:
    return (f"{changelog_prefix(dataset)}segments/{changelog_day(first_time)}{name}-{attempt:03d}"
            f"{PART_SUFFIX}{ENCRYPTED_SUFFIX if encrypted else ''}")


def changelog_segments_prefix(dataset: str) -> str:
    return f"{changelog_prefix(dataset)}segments/"


def changelog_gaps_prefix(dataset: str) -> str:
    return f"{changelog_prefix(dataset)}gaps/"


def changelog_gap_key(dataset: str, start: datetime, gap_id: str) -> str:
    return f"{changelog_gaps_prefix(dataset)}{start.astimezone(UTC).strftime(CHANGELOG_TIME_FORMAT)}-{gap_id}.json"


def changelog_positions_prefix(dataset: str, stream: str) -> str:
    """Where ``capture`` continues reading one stream: an append-only sequence."""
    return f"{changelog_prefix(dataset)}positions/{changelog_token(stream)}/"


# --- s16-diff: per-part key indexes (cloudkeep.keyindex) ---------------------------------------

KEY_INDEX_SUFFIX = ".keys"


def key_index_name(part_name: str) -> str:
    """The file name of a part's key index (next to the part: ``<part name>.keys``)."""
    return f"{part_name}{KEY_INDEX_SUFFIX}"


def key_index_key(dataset: str, snapshot_id: str, part_name: str) -> str:
    return f"{snapshot_prefix(dataset, snapshot_id)}{key_index_name(part_name)}"


def parse_key_index_name(name: str) -> str | None:
    """The part's name if ``name`` is a part's key index file name, else None."""
    if not name.endswith(KEY_INDEX_SUFFIX):
        return None
    part = name[: -len(KEY_INDEX_SUFFIX)]
    return part if PART_NAME_RE.match(part) else None


def is_snapshots_prefix(rel: str) -> bool:
    """Whether ``rel`` (relative to a store) is some dataset's ``snapshots_prefix``: how a store
    tells its own lifecycle rules from those of another store sharing the bucket."""
    head, sep, tail = rel.partition("/")
    return bool(head) and sep == "/" and tail == "snapshots/"
