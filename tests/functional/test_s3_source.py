"""S3 source on moto server: content-addressed blobs, incremental forever, dedup, restore byte
for byte with metadata, verify of blobs, garbage collection with a grace period — into a file
store (the streamed path) and into an S3 store (the server-side path)."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from cloudkeep import layout
from cloudkeep.catalog import load_manifest, snapshot_ids
from cloudkeep.engine import backup
from cloudkeep.lock import DatasetLock
from cloudkeep.manifest import Manifest
from cloudkeep.policy import Policy, load_policy
from cloudkeep.registry import open_store
from cloudkeep.sources import s3 as s3mod
from cloudkeep.sources.s3 import S3Source
from conftest import REGION
from helpers import cli, cli_json

BIG = 9 * 1024 * 1024  # above the streamed path's in-memory limit (8 MiB)


@pytest.fixture
def s3(moto_server: Any) -> Any:
    import boto3

    return boto3.client("s3", region_name=REGION)


def new_bucket(s3: Any, prefix: str = "src") -> str:
    name = f"{prefix}-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=name)
    return name


def seed(s3: Any, bucket: str, *, big: bool = False) -> dict[str, bytes]:
    """Varied objects: metadata, content types, headers, tags, a storage class, an empty object,
    binary, a unicode key, identical content under two keys, and optionally a 9 MiB object."""
    bodies = {
        "docs/readme.txt": b"hello world\n",
        "docs/copy-of-readme.txt": b"hello world\n",
        "data/blob.bin": bytes(range(256)) * 40,
        "data/empty": b"",
        "images/caf\u00e9 \u2615.png": b"\x89PNG\r\n\x1a\n" + os.urandom(3000),
        "logs/2026/01/01.log": b"line\n" * 1000,
        "tmp/scratch.tmp": b"scratch",
    }
    if big:
        bodies["data/big.bin"] = os.urandom(BIG)
    for key, body in bodies.items():
        extra: dict[str, Any] = {}
        if key.endswith(".txt"):
            extra = {"ContentType": "text/plain; charset=utf-8", "Metadata": {"owner": "ops", "x-note": "two words"},
                     "CacheControl": "max-age=60", "Tagging": "team=data&tier=gold"}
        elif key.endswith(".png"):
            extra = {"ContentType": "image/png", "ContentDisposition": "inline", "StorageClass": "STANDARD_IA"}
        elif key.endswith(".log"):
            extra = {"ContentEncoding": "identity", "ContentLanguage": "en", "Tagging": "kind=log"}
        s3.put_object(Bucket=bucket, Key=key, Body=body, **extra)
    return bodies


def write_policy(tmp_path: Path, bucket: str, store: dict[str, Any], **source: Any) -> str:
    policy = {
        "version": 1,
        "stores": {"vault": store},
        "tiers": {"standard": {"schedule": "0 2 * * *", "rpo": "26h", "retention": {"last": 1}}},
        "datasets": {"files": {"source": {"type": "s3", "bucket": bucket, "region": REGION, **source},
                               "tier": "standard", "store": "vault"}},
    }
    path = tmp_path / "cloudkeep.yaml"
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    return str(path)


def file_store(tmp_path: Path, s3: Any) -> dict[str, Any]:
    return {"type": "file", "path": str(tmp_path / "vault")}


def s3_store(tmp_path: Path, s3: Any) -> dict[str, Any]:
    return {"type": "s3", "bucket": new_bucket(s3, "vault"), "prefix": "backups", "region": REGION}


STORES = {"file": file_store, "s3": s3_store}


def snapshot(policy_path: str, i: int = 0, dataset: str = "files") -> Manifest:
    """One snapshot through the engine, with an id that sorts after the earlier ones."""
    policy = load_policy(policy_path).policy
    at = datetime.now(UTC) + timedelta(seconds=i)
    result = backup(policy, dataset, snapshot_id=layout.snapshot_id_for(at, f"{i:06x}"))
    assert result.status == "committed" and result.manifest is not None
    return result.manifest


def the_store(policy_path: str) -> Any:
    policy: Policy = load_policy(policy_path).policy
    return open_store(policy.stores["vault"])


def blob_shas(store: Any, dataset: str = "files") -> set[str]:
    return {sha for i in store.list(layout.blobs_prefix(dataset))
            if (sha := layout.parse_blob_key(dataset, i.key))}


def assert_same_objects(s3: Any, src: str, dst: str, dst_prefix: str, keys: list[str]) -> None:
    listed = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=dst).get("Contents", []))
    assert listed == sorted(f"{dst_prefix}{k}" for k in keys)
    for key in keys:
        a = s3.get_object(Bucket=src, Key=key)
        b = s3.get_object(Bucket=dst, Key=f"{dst_prefix}{key}")
        assert b["Body"].read() == a["Body"].read(), key
        for field in ("Metadata", "ContentType", "CacheControl", "ContentDisposition",
                      "ContentEncoding", "ContentLanguage"):
            assert b.get(field) == a.get(field), (key, field)
        assert b.get("StorageClass", "STANDARD") == a.get("StorageClass", "STANDARD"), key
        assert (s3.get_object_tagging(Bucket=dst, Key=f"{dst_prefix}{key}")["TagSet"]
                == s3.get_object_tagging(Bucket=src, Key=key)["TagSet"]), key


@pytest.mark.parametrize("kind", ["file", "s3"])
def test_round_trip_byte_for_byte_with_metadata(tmp_path: Path, s3: Any, capsys: Any, kind: str) -> None:
    bucket = new_bucket(s3)
    bodies = seed(s3, bucket, big=True)
    policy = write_policy(tmp_path, bucket, STORES[kind](tmp_path, s3))
    [row] = cli_json(capsys, "--policy", policy, "run", "files")
    assert row["status"] == "committed" and row["items"] == len(bodies)
    manifest = load_manifest(the_store(policy), "files", row["snapshot_id"])
    assert manifest.method == ("server-side-copy" if kind == "s3" else "stream")
    blobs = manifest.source["blobs"]
    assert blobs["objects"] == len(bodies) and blobs["bytes"] == sum(map(len, bodies.values()))
    # identical content (the two readme files) is one blob
    assert blob_shas(the_store(policy)) == {hashlib.sha256(b).hexdigest() for b in bodies.values()}

    report = cli_json(capsys, "--policy", policy, "verify", f"files@{row['snapshot_id']}")
    assert report["ok"], report["problems"]

    target = new_bucket(s3, "restored")
    out = cli_json(capsys, "--policy", policy, "restore", f"files@{row['snapshot_id']}",
                   "--into", f"{target}/again")
    assert out["items"] == len(bodies) and out["content_digest_ok"]
    assert_same_objects(s3, bucket, target, "again/", list(bodies))
    # the restored bucket, read the way a backup reads it, has the manifest's content digest
    source = S3Source(bucket, REGION)
    assert source.scan_digest(f"{target}/again") == (len(bodies), manifest.content_digest.value)


@pytest.mark.parametrize("kind", ["file", "s3"])
def test_second_snapshot_of_unchanged_bucket_copies_nothing(tmp_path: Path, s3: Any, kind: str) -> None:
    bucket = new_bucket(s3)
    bodies = seed(s3, bucket)
    policy = write_policy(tmp_path, bucket, STORES[kind](tmp_path, s3))
    first = snapshot(policy, 0)
    assert first.source["blobs"]["copied_bytes"] > 0
    stored = {i.key: i for i in the_store(policy).list(layout.blobs_prefix("files"))}

    second = snapshot(policy, 1)
    stats = second.source["blobs"]
    assert stats["copied_bytes"] == 0 and stats["copied_objects"] == 0 and stats["hashed_bytes"] == 0
    assert stats["reused_objects"] == len(bodies) and second.source["reused_from"] == first.snapshot_id
    assert second.content_digest.value == first.content_digest.value
    assert {i.key: i for i in the_store(policy).list(layout.blobs_prefix("files"))} == stored
    from cloudkeep.engine import RunResult
    from cloudkeep.metrics import backup_metrics

    metrics = {m.name: m.value for m in backup_metrics(
        load_policy(policy).policy, RunResult("files", "committed", second.snapshot_id, second))}
    assert metrics["BlobBytesCopied"] == 0 and metrics["ObjectsReused"] == len(bodies)

    # one object changes, one is added with content the bucket already has, one is deleted
    s3.put_object(Bucket=bucket, Key="data/blob.bin", Body=b"new content")
    s3.put_object(Bucket=bucket, Key="docs/third-readme.txt", Body=b"hello world\n")
    s3.delete_object(Bucket=bucket, Key="tmp/scratch.tmp")
    third = snapshot(policy, 2)
    stats = third.source["blobs"]
    assert stats["copied_objects"] == 1 and stats["copied_bytes"] == len(b"new content")
    assert stats["deduplicated_objects"] == 1
    assert stats["reused_objects"] == len(bodies) - 2
    assert third.totals.items == len(bodies)


def test_metadata_rewritten_in_place_is_picked_up_without_copying(tmp_path: Path, s3: Any) -> None:
    bucket = new_bucket(s3)
    s3.put_object(Bucket=bucket, Key="a.txt", Body=b"same", Metadata={"v": "1"})
    policy = write_policy(tmp_path, bucket, file_store(tmp_path, s3))
    snapshot(policy, 0)
    import time

    time.sleep(1.1)  # LastModified has one-second precision
    s3.copy_object(Bucket=bucket, Key="a.txt", CopySource={"Bucket": bucket, "Key": "a.txt"},
                   MetadataDirective="REPLACE", Metadata={"v": "2"})
    second = snapshot(policy, 1)
    assert second.source["blobs"]["copied_bytes"] == 0
    store = the_store(policy)
    from cloudkeep.blobs import listing_records

    [record] = list(listing_records(store, second))
    assert record["metadata"] == {"v": "2"}


def test_include_exclude_and_prefix(tmp_path: Path, s3: Any) -> None:
    bucket = new_bucket(s3)
    seed(s3, bucket)
    policy = write_policy(tmp_path, bucket, file_store(tmp_path, s3),
                          prefix="docs/", include=["*.txt", "*.md"], exclude=["copy-*"])
    manifest = snapshot(policy)
    from cloudkeep.blobs import listing_records

    keys = [r["key"] for r in listing_records(the_store(policy), manifest)]
    assert keys == ["docs/readme.txt"]

    policy = write_policy(tmp_path, bucket, file_store(tmp_path, s3), exclude=["tmp/*", "logs/*"])
    manifest = snapshot(policy, 1)
    keys = [r["key"] for r in listing_records(the_store(policy), manifest)]
    assert keys == sorted(["docs/readme.txt", "docs/copy-of-readme.txt", "data/blob.bin",
                           "data/empty", "images/caf\u00e9 \u2615.png"])


def test_restore_refuses_non_empty_target_unless_overwrite(tmp_path: Path, s3: Any, capsys: Any) -> None:
    bucket = new_bucket(s3)
    bodies = seed(s3, bucket)
    policy = write_policy(tmp_path, bucket, file_store(tmp_path, s3))
    sid = snapshot(policy).snapshot_id
    target = new_bucket(s3, "busy")
    s3.put_object(Bucket=target, Key="keep/me", Body=b"precious")
    code, _, err = cli(capsys, "--policy", policy, "restore", f"files@{sid}", "--into", target)
    assert code == 1 and "not empty" in err and "--overwrite" in err and "Traceback" not in err
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=target)["Contents"]] == ["keep/me"]
    # another prefix of the same bucket is empty: allowed
    assert cli(capsys, "--policy", policy, "restore", f"files@{sid}", "--into", f"{target}/r")[0] == 0
    code, _, err = cli(capsys, "--policy", policy, "restore", f"files@{sid}", "--into", target, "--overwrite")
    assert code == 0, err
    assert s3.get_object(Bucket=target, Key="keep/me")["Body"].read() == b"precious"
    assert s3.get_object(Bucket=target, Key="data/blob.bin")["Body"].read() == bodies["data/blob.bin"]
    # a missing bucket is created
    fresh = f"fresh-{secrets.token_hex(4)}"
    assert cli(capsys, "--policy", policy, "restore", f"files@{sid}", "--into", fresh)[0] == 0
    assert len(s3.list_objects_v2(Bucket=fresh)["Contents"]) == len(bodies)


def test_verify_reports_missing_and_damaged_blobs(tmp_path: Path, s3: Any, capsys: Any) -> None:
    bucket = new_bucket(s3)
    bodies = seed(s3, bucket)
    policy = write_policy(tmp_path, bucket, file_store(tmp_path, s3))
    sid = snapshot(policy).snapshot_id
    vault = tmp_path / "vault"
    missing = hashlib.sha256(bodies["data/blob.bin"]).hexdigest()
    damaged = hashlib.sha256(bodies["logs/2026/01/01.log"]).hexdigest()
    (vault / layout.blob_key("files", missing)).unlink()
    (vault / layout.blob_key("files", damaged)).write_bytes(b"line\n" * 999 + b"lime\n")
    code, out, _ = cli(capsys, "--policy", policy, "verify", f"files@{sid}")
    assert code == 1
    assert f"blob {missing} is missing" in out and f"blob {damaged} is damaged" in out
    target = new_bucket(s3, "r")
    code, _, err = cli(capsys, "--policy", policy, "restore", f"files@{sid}", "--into", target)
    assert code == 1 and f"blob {missing} is missing" in err and "nothing was written" in err
    assert "Contents" not in s3.list_objects_v2(Bucket=target)
    # a blob that is there but damaged is caught while writing, naming it
    (vault / layout.blob_key("files", missing)).write_bytes(bodies["data/blob.bin"])
    code, _, err = cli(capsys, "--policy", policy, "restore", f"files@{sid}", "--into", f"{target}/x")
    assert code == 1 and f"blob {damaged}" in err and "damaged" in err


@pytest.mark.parametrize("kind", ["file", "s3"])
def test_gc_removes_unreferenced_blobs_only_after_the_grace_period(
        tmp_path: Path, s3: Any, capsys: Any, kind: str) -> None:
    bucket = new_bucket(s3)
    s3.put_object(Bucket=bucket, Key="a", Body=b"first a")
    s3.put_object(Bucket=bucket, Key="b", Body=b"stays")
    policy = write_policy(tmp_path, bucket, STORES[kind](tmp_path, s3))
    snapshot(policy, 0)
    s3.put_object(Bucket=bucket, Key="a", Body=b"second a")
    latest = snapshot(policy, 1)
    store = the_store(policy)
    old = hashlib.sha256(b"first a").hexdigest()
    assert old in blob_shas(store)

    now = datetime.now(UTC) + timedelta(seconds=5)
    [report] = cli_json(capsys, "--policy", policy, "prune", "--now", now.isoformat())
    assert len(report["removed"]) == 1  # retention keeps the last snapshot only
    assert report["blobs"]["unreferenced"] == 1 and report["blobs"]["removed"] == 0
    assert report["blobs"]["kept_within_grace"] == 1
    assert old in blob_shas(store)  # younger than the grace period: a run may still need it

    later = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    [dry] = cli_json(capsys, "--policy", policy, "prune", "--dry-run", "--now", later)
    assert dry["blobs"]["removed"] == 1 and old in blob_shas(store)
    code, out, _ = cli(capsys, "--policy", policy, "prune", "--dry-run", "--now", later)
    assert code == 0 and "blobs: would remove 1 unreferenced" in out

    with DatasetLock(store, "files", "some-run"):  # a run in progress: prune (and gc) keep out
        code, out, _ = cli(capsys, "--policy", policy, "--format", "json", "prune", "--now", later)
        [busy] = json.loads(out)
        assert code == 1 and "some-run" in busy["errors"][0] and old in blob_shas(store)

    [done] = cli_json(capsys, "--policy", policy, "prune", "--now", later)
    assert done["blobs"]["removed"] == 1 and done["blobs"]["removed_bytes"] == len(b"first a")
    assert blob_shas(store) == {hashlib.sha256(b).hexdigest() for b in (b"second a", b"stays")}
    assert snapshot_ids(store, "files") == [latest.snapshot_id]
    assert cli_json(capsys, "--policy", policy, "verify", f"files@{latest.snapshot_id}")["ok"]


def test_server_side_multipart_copy_and_s3_checksum(tmp_path: Path, s3: Any, capsys: Any,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Objects above the copy threshold go through UploadPartCopy (threshold lowered for the
    test); an object uploaded with a SHA-256 checksum is not read to hash it."""
    monkeypatch.setattr(s3mod.servercopy, "MULTIPART_COPY_THRESHOLD", 6 * 1024 * 1024)
    monkeypatch.setattr(s3mod.servercopy, "COPY_PART_SIZE", 5 * 1024 * 1024)
    bucket = new_bucket(s3)
    large = os.urandom(11 * 1024 * 1024 + 17)
    s3.put_object(Bucket=bucket, Key="large.bin", Body=large, Metadata={"k": "v"}, Tagging="a=b")
    checked = b"checksummed content"
    s3.put_object(Bucket=bucket, Key="checked.txt", Body=checked, ChecksumAlgorithm="SHA256")
    policy = write_policy(tmp_path, bucket, s3_store(tmp_path, s3))
    manifest = snapshot(policy)
    assert manifest.method == "server-side-copy"
    assert manifest.source["blobs"]["hashed_bytes"] == len(large)  # not the checksummed one
    store = the_store(policy)
    assert store.get(layout.blob_key("files", hashlib.sha256(large).hexdigest())) == large
    assert store.get(layout.blob_key("files", hashlib.sha256(checked).hexdigest())) == checked
    target = new_bucket(s3, "restored")
    assert cli(capsys, "--policy", policy, "restore", f"files@{manifest.snapshot_id}", "--into", target)[0] == 0
    assert_same_objects(s3, bucket, target, "", ["checked.txt", "large.bin"])


def test_copy_to_another_store_carries_the_blobs(tmp_path: Path, s3: Any, capsys: Any) -> None:
    bucket = new_bucket(s3)
    bodies = seed(s3, bucket)
    path = write_policy(tmp_path, bucket, file_store(tmp_path, s3))
    doc = yaml.safe_load(Path(path).read_text())
    doc["stores"]["far"] = {"type": "file", "path": str(tmp_path / "far")}
    doc["datasets"]["files"]["copy_to"] = ["far"]
    Path(path).write_text(yaml.safe_dump(doc))
    [row] = cli_json(capsys, "--policy", path, "run", "files")
    assert row["copies"][0]["verified"]
    target = new_bucket(s3, "fromcopy")
    code, _, err = cli(capsys, "--policy", path, "restore", f"files@{row['snapshot_id']}",
                       "--store", "far", "--into", target)
    assert code == 0, err
    assert_same_objects(s3, bucket, target, "", list(bodies))

    # a later snapshot without one object; once the first is pruned, its blob goes in both stores
    s3.delete_object(Bucket=bucket, Key="data/blob.bin")
    import time

    time.sleep(1.1)  # snapshot ids order by their second
    [row2] = cli_json(capsys, "--policy", path, "run", "files")
    assert row2["copies"][0]["verified"]
    gone = hashlib.sha256(bodies["data/blob.bin"]).hexdigest()
    later = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    [report] = cli_json(capsys, "--policy", path, "prune", "--now", later)
    assert report["removed"] == [row["snapshot_id"]]
    assert report["blobs"]["removed"] == 1 and report["copy_blobs"]["far"]["removed"] == 1
    for folder in ("vault", "far"):
        store = open_store(load_policy(path).policy.stores["vault" if folder == "vault" else "far"])
        assert gone not in blob_shas(store) and len(blob_shas(store)) == len(set(bodies.values())) - 1


def test_policy_errors_name_the_field(tmp_path: Path, capsys: Any) -> None:
    path = write_policy(tmp_path, "Bad_Bucket", {"type": "file", "path": "v"}, versions=True,
                        include=[""])
    code, _, err = cli(capsys, "--policy", path, "validate")
    assert code == 2
    assert "datasets.files.source.bucket: bad S3 bucket name 'Bad_Bucket'" in err
    assert "datasets.files.source.versions: versions: true" in err
    assert "datasets.files.source.include" in err


def test_missing_source_bucket_is_unreachable(tmp_path: Path, s3: Any, capsys: Any) -> None:
    path = write_policy(tmp_path, f"nope-{secrets.token_hex(4)}", file_store(tmp_path, s3))
    code, out, err = cli(capsys, "--policy", path, "run", "files")
    assert code == 3 and "not found" in out + err


def test_pure_helpers() -> None:
    import base64

    from cloudkeep.errors import RestoreError
    from cloudkeep.sources.s3 import Cursor, full_object_sha256, same_endpoint, split_target

    digest = hashlib.sha256(b"x").digest()
    assert full_object_sha256({"ChecksumSHA256": base64.b64encode(digest).decode()}) == digest.hex()
    assert full_object_sha256({"ChecksumSHA256": base64.b64encode(digest).decode() + "-3"}) is None
    assert full_object_sha256({"ChecksumSHA256": base64.b64encode(digest).decode(),
                               "ChecksumType": "COMPOSITE"}) is None
    assert full_object_sha256({}) is None
    assert split_target("restored") == ("restored", "")
    assert split_target("restored/a/b/") == ("restored", "a/b")
    with pytest.raises(RestoreError, match="BUCKET"):
        split_target("Not_A_Bucket/x")
    assert same_endpoint("https://s3.eu-west-1.amazonaws.com", "https://s3.us-east-1.amazonaws.com")
    assert same_endpoint("http://127.0.0.1:5000/", "http://127.0.0.1:5000")
    assert not same_endpoint("http://127.0.0.1:5000", "https://s3.us-east-1.amazonaws.com")

    cursor = Cursor(iter([{"key": k} for k in ["a", "c", "d", "f"]]))
    assert [cursor.find(k) for k in ["a", "b", "c", "e", "f", "g"]] == [
        {"key": "a"}, None, {"key": "c"}, None, {"key": "f"}, None]

    source = S3Source("bucket", REGION, prefix="p/", include=["*.txt"], exclude=["tmp/*"])
    assert source.wanted("p/a.txt") and source.wanted("p/deep/a.txt")
    assert not source.wanted("p/tmp/a.txt") and not source.wanted("p/a.bin")
    assert not source.wanted("other/a.txt")
    assert not S3Source("b", REGION, prefix="p/", exclude=["p/tmp/*"]).wanted("p/tmp/a.txt")
    assert S3Source("b", REGION, prefix="p/", include=["p/*.txt"]).wanted("p/a.txt")


def test_scheduled_ticks_snapshot_incrementally_and_collect(tmp_path: Path, s3: Any) -> None:
    """Two scheduled ticks (the path the functions take): the second copies nothing, and the
    prune that follows each tick collects blobs (none old enough yet)."""
    from cloudkeep.runtime import tick

    bucket = new_bucket(s3)
    bodies = seed(s3, bucket)
    path = write_policy(tmp_path, bucket, s3_store(tmp_path, s3))
    doc = yaml.safe_load(Path(path).read_text())
    doc["tiers"]["standard"].update(schedule="0 * * * *", rpo="2h")
    Path(path).write_text(yaml.safe_dump(doc))
    policy = load_policy(path).policy
    first_at = datetime.now(UTC).replace(minute=30, second=0, microsecond=0)
    first = tick(policy, first_at)
    s3.put_object(Bucket=bucket, Key="data/blob.bin", Body=b"changed")
    second = tick(policy, first_at + timedelta(hours=1))
    [r1], [r2] = first.results, second.results
    assert r1.status == r2.status == "committed", (r1.error, r2.error)
    assert r1.manifest is not None and r2.manifest is not None
    assert r2.manifest.source["blobs"]["copied_bytes"] == len(b"changed")
    assert r2.manifest.source["blobs"]["reused_objects"] == len(bodies) - 1
    assert r2.pruned == [r1.snapshot_id]  # retention: last 1
    store = the_store(path)
    assert hashlib.sha256(bodies["data/blob.bin"]).hexdigest() in blob_shas(store)  # grace


def test_show_names_the_bucket(tmp_path: Path, s3: Any, capsys: Any) -> None:
    bucket = new_bucket(s3)
    s3.put_object(Bucket=bucket, Key="k", Body=b"v")
    path = write_policy(tmp_path, bucket, file_store(tmp_path, s3), prefix="")
    sid = snapshot(path).snapshot_id
    code, out, _ = cli(capsys, "--policy", path, "show", f"files@{sid}")
    assert code == 0 and f"s3 {bucket} {REGION}" in out


def test_object_lock_covers_blobs_and_prune_extends_it(tmp_path: Path, s3: Any, capsys: Any) -> None:
    vault = f"locked-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=vault, ObjectLockEnabledForBucket=True)
    bucket = new_bucket(s3)
    s3.put_object(Bucket=bucket, Key="small", Body=b"tiny")
    path = write_policy(tmp_path, bucket, {"type": "s3", "bucket": vault, "region": REGION,
                                          "object_lock": {"mode": "GOVERNANCE"}})
    doc = yaml.safe_load(Path(path).read_text())
    doc["tiers"]["standard"]["retention"] = {"daily": 7}
    Path(path).write_text(yaml.safe_dump(doc))
    manifest = snapshot(path)
    blob = layout.blob_key("files", hashlib.sha256(b"tiny").hexdigest())
    first = s3.head_object(Bucket=vault, Key=blob)
    assert first["ObjectLockMode"] == "GOVERNANCE" and first["ObjectLockRetainUntilDate"] > datetime.now(UTC)
    import time

    time.sleep(1.1)
    [report] = cli_json(capsys, "--policy", path, "prune")
    assert report["retention_extended"] == [manifest.snapshot_id]
    assert s3.head_object(Bucket=vault, Key=blob)["ObjectLockRetainUntilDate"] > first["ObjectLockRetainUntilDate"]


def test_a_drill_restores_into_a_scratch_prefix_compares_and_deletes_it(
    tmp_path: Path, s3: Any, capsys: Any
) -> None:
    bucket = new_bucket(s3)
    seed(s3, bucket)
    policy = write_policy(tmp_path, bucket, file_store(tmp_path, s3))
    manifest = snapshot(policy)
    before = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"])

    report = cli_json(capsys, "--policy", policy, "verify", "files@latest", "--level", "drill")
    assert report["ok"] is True, report
    assert report["target"].startswith(f"{bucket}/{s3mod.DRILL_PREFIX}")
    assert report["cleaned_up"] is True and report["restore_seconds"] >= 0
    after = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"])
    assert after == before, "the scratch prefix is gone and nothing else was touched"

    # A tampered blob (its content no longer what the listing says) fails the drill, which
    # still leaves the source bucket as it was.
    store = the_store(policy)
    sha = sorted(blob_shas(store))[0]
    path = tmp_path / "vault" / layout.blob_key("files", sha)
    path.chmod(0o644)
    path.write_bytes(b"not what was backed up")
    code, out, err = cli(capsys, "--policy", policy, "verify", "files@latest", "--level", "drill")
    assert code == 1 and "FAILED (drill" in out, out + err
    assert manifest.snapshot_id in out
    after = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"])
    assert after == before


def test_backups_skip_a_drill_scratch_prefix() -> None:
    source = S3Source("bucket", REGION, client=object())
    assert source.wanted("docs/a.txt")
    assert not source.wanted(f"{s3mod.DRILL_PREFIX}ab12cd34/docs/a.txt")
    with pytest.raises(Exception, match="not a drill's scratch prefix"):
        source.drop_target("bucket/docs", {})
