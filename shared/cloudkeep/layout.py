"""Every object key cloudkeep writes, in one place (snapshot format version 1, DESIGN.md §4).

Keys are relative to the store's root (a store applies its own ``prefix``)::

    <dataset>/snapshots/<snapshot_id>/part-<segment>-<n>.ndjson.zst[.enc]  (.enc: encrypted)
    <dataset>/snapshots/<snapshot_id>/manifest.json       written last, create-only
    <dataset>/snapshots/<snapshot_id>/checkpoints/run.json                 the run's plan (create-only)
    <dataset>/snapshots/<snapshot_id>/checkpoints/segment-<n>.json         a segment's cursor and parts
    <dataset>/snapshots/<snapshot_id>/checkpoints/segment-<n>.done.json    finished (create-only)
    <dataset>/snapshots/<snapshot_id>/checkpoints/segment-<n>.lock         a worker's lease
    <dataset>/verifications/<snapshot_id>/<timestamp>.json
    <dataset>/holds/<snapshot_id>.json                   legal holds
    <dataset>/copies/<snapshot_id>/<store>.json          verified copies in other stores
    <dataset>/jobs/<snapshot_id>.json                    native jobs (export, backup, RDS snapshot)
    <dataset>/lock.json
    <dataset>/alerts/state.json                          open alerts (the watchdog's memory)
    <dataset>/runs/<yyyy>/<mm>/<dd>/<capture time>-<snapshot_id>.json
                                                         run index: one per committed snapshot,
                                                         create-only, kept when it is pruned
    <dataset>/verify-slots/<level>/<slot>.json           a scheduled drill/sample slot claimed
    <dataset>/verify-slots/<level>/<slot>.outcome.json   ... and what it found (both create-only,
                                                         kept when the snapshot is pruned)
    _audit/<yyyy>/<mm>/<dd>/<timestamp>-<event>.json      audit log, create-only
    _audit/policy.json                                   digest of the last policy the tick saw
    <dataset>/blobs/<sha256[:2]>/<sha256>               S3 source: object content, by its sha256
"""

from __future__ import annotations

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
    """Checkpoints of an unfinished snapshot; removed once its manifest is committed."""
    return f"{snapshot_prefix(dataset, snapshot_id)}{CHECKPOINTS_DIR}/"


def run_state_key(dataset: str, snapshot_id: str) -> str:
    return f"{checkpoints_prefix(dataset, snapshot_id)}{RUN_STATE_NAME}"


def checkpoint_key(dataset: str, snapshot_id: str, segment: int) -> str:
    return f"{checkpoints_prefix(dataset, snapshot_id)}segment-{segment:05d}.json"


def segment_done_key(dataset: str, snapshot_id: str, segment: int) -> str:
    return f"{checkpoints_prefix(dataset, snapshot_id)}segment-{segment:05d}.done.json"


def segment_lock_key(dataset: str, snapshot_id: str, segment: int) -> str:
    return f"{checkpoints_prefix(dataset, snapshot_id)}segment-{segment:05d}.lock"


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
    return f"{dataset}/holds/{snapshot_id}.json"


def holds_prefix(dataset: str) -> str:
    return f"{dataset}/holds/"


def copy_record_key(dataset: str, snapshot_id: str, store: str) -> str:
    """Where the primary store records a verified copy of a snapshot in another store."""
    return f"{dataset}/copies/{snapshot_id}/{store}.json"


def copies_prefix(dataset: str, snapshot_id: str) -> str:
    return f"{dataset}/copies/{snapshot_id}/"


def job_key(dataset: str, snapshot_id: str) -> str:
    """The record of a native job (started → polling → finished) that makes a snapshot."""
    return f"{dataset}/jobs/{snapshot_id}.json"


def jobs_prefix(dataset: str) -> str:
    return f"{dataset}/jobs/"


def parse_job_key(dataset: str, key: str) -> str | None:
    """The snapshot id if ``key`` is a job record of ``dataset``, else None."""
    head = jobs_prefix(dataset)
    if not key.startswith(head) or not key.endswith(".json"):
        return None
    snapshot_id = key[len(head) : -len(".json")]
    return snapshot_id if SNAPSHOT_ID_RE.match(snapshot_id) else None


def lock_key(dataset: str) -> str:
    return f"{dataset}/lock.json"


def lock_takeover_key(dataset: str, holder_run_id: str) -> str:
    return f"{dataset}/lock-takeover-{holder_run_id}.json"


def verification_key(dataset: str, snapshot_id: str, at: datetime) -> str:
    return f"{dataset}/verifications/{snapshot_id}/{format_time(at)}.json"


def verifications_prefix(dataset: str, snapshot_id: str) -> str:
    return f"{dataset}/verifications/{snapshot_id}/"


def all_verifications_prefix(dataset: str) -> str:
    """Every verification record of ``dataset`` (of every snapshot)."""
    return f"{dataset}/verifications/"


def alert_state_key(dataset: str) -> str:
    """Open alerts of a dataset (rewritten by each tick; the alerts themselves are audited)."""
    return f"{dataset}/alerts/state.json"


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
    return f"{AUDIT_PREFIX}policy.json"


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
