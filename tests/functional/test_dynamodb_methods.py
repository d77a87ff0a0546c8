"""DynamoDB's three methods on moto server (DynamoDB Local has no PITR export and no backups):
scan, export (ExportTableToPointInTime into the S3 store, polled across runs) and native
(CreateBackup, restored with RestoreTableFromBackup) each round-trip the same corpus losslessly;
retention deletes the backups it made, and only those."""

from __future__ import annotations

import gzip
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import REGION, unique
from helpers import cli, cli_json, scan_all
from test_dynamodb_roundtrip import corpus, fill, make_table

pytestmark = pytest.mark.emulator


@pytest.fixture
def moto_ddb(moto_server: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A DynamoDB client on moto (not DynamoDB Local, which another fixture may have set)."""
    import boto3

    monkeypatch.delenv("AWS_ENDPOINT_URL_DYNAMODB", raising=False)
    return boto3.client("dynamodb", region_name=REGION)


def _policy(tmp_path: Path, table: str, method: str, bucket: str, *, retention: dict[str, int] | None = None,
            store: dict[str, Any] | None = None) -> Path:
    policy = {
        "version": 1,
        "stores": {"vault": store or {"type": "s3", "bucket": bucket, "prefix": "backups", "region": REGION}},
        "tiers": {"standard": {"schedule": "0 2 * * *", "rpo": "26h",
                               "retention": retention or {"daily": 7}}},
        "datasets": {"orders": {"source": {"type": "dynamodb", "table": table, "region": REGION,
                                           "method": method},
                                "tier": "standard", "store": "vault"}},
    }
    path = tmp_path / "cloudkeep.yaml"
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    return path


def _run(capsys: Any, policy: Path) -> dict[str, Any]:
    rows = cli_json(capsys, "--policy", str(policy), "run", "orders")
    assert len(rows) == 1
    return dict(rows[0])


@pytest.mark.parametrize("method", ["scan", "export", "native"])
def test_each_method_round_trips_the_same_corpus(
    method: str, moto_ddb: Any, s3_bucket: str, tmp_path: Path, capsys: Any
) -> None:
    table = unique("methods")
    make_table(moto_ddb, table)  # with a GSI and an LSI
    items = corpus()  # the scan round trip's corpus (tests/test_dynamodb_roundtrip.py)
    fill(moto_ddb, table, items)
    moto_ddb.update_continuous_backups(
        TableName=table, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True})
    policy = _policy(tmp_path, table, method, s3_bucket)

    first = _run(capsys, policy)
    if method == "scan":
        assert first["status"] == "committed"
    else:
        # A native job: the first run starts it and returns; the next run polls and commits.
        assert first["status"] == "pending", first
        assert first["job"]["state"] == "started"
        record = _job_record(policy, first["snapshot_id"])
        assert record["state"] == "started" and record["method"] == method
        assert cli_json(capsys, "--policy", str(policy), "list", "orders") == []
        for _ in range(20):  # moto's export thread takes about a second
            second = _run(capsys, policy)
            assert second["snapshot_id"] == first["snapshot_id"], "the same job is continued"
            if second["status"] != "pending":
                break
        assert second["status"] == "committed", second
        record = _job_record(policy, first["snapshot_id"])
        assert record["state"] == "finished"

    show = cli_json(capsys, "--policy", str(policy), "show", "orders@latest")
    assert show["method"] == method
    if method == "export":
        assert show["consistency"]["mode"] == "point-in-time" and show["consistency"]["time"]
        assert show["codec"]["compression"] == "gzip"
        assert show["totals"]["items"] == len(items)
        assert show["native"]["export_arn"].startswith("arn:aws:dynamodb:")
        for part in show["parts"]:
            assert part["name"].startswith("export/") and "/data/" in part["name"]
            body = _s3_get(s3_bucket, f"backups/orders/snapshots/{show['snapshot_id']}/{part['name']}")
            assert len(body) == part["stored_bytes"]
            assert hashlib.sha256(body).hexdigest() == part["sha256"]
            assert all(json.loads(line)["Item"] for line in gzip.decompress(body).splitlines())
    if method == "native":
        assert show["native"]["backup_arn"] and show["native"]["backup_name"].startswith("cloudkeep-orders-")
        assert show["parts"] == [] and show["consistency"]["mode"] == "point-in-time"

    code, out, err = cli(capsys, "--policy", str(policy), "verify", "orders@latest")
    assert code == 0, out + err

    target = unique("restored")
    code, out, err = cli(capsys, "--policy", str(policy), "restore", "orders@latest", "--into", target)
    assert code == 0, err
    source_items = scan_all(moto_ddb, table)
    assert len(source_items) == len(items)
    assert scan_all(moto_ddb, target) == source_items
    restored = moto_ddb.describe_table(TableName=target)["Table"]
    assert [i["IndexName"] for i in restored.get("GlobalSecondaryIndexes", [])] == ["by_g"]
    assert [i["IndexName"] for i in restored.get("LocalSecondaryIndexes", [])] == ["by_pk_n"]


def test_verify_sees_a_deleted_backup_and_a_damaged_export_file(
    moto_ddb: Any, s3_bucket: str, tmp_path: Path, capsys: Any
) -> None:
    import boto3

    table = unique("damaged")
    make_table(moto_ddb, table, gsi=False)
    fill(moto_ddb, table, corpus()[:20])
    moto_ddb.update_continuous_backups(
        TableName=table, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True})
    native = _policy(tmp_path, table, "native", s3_bucket)
    cli(capsys, "--policy", str(native), "run", "orders", "--wait", "--poll-interval", "0")
    show = cli_json(capsys, "--policy", str(native), "show", "orders@latest")
    moto_ddb.delete_backup(BackupArn=show["native"]["backup_arn"])
    code, out, _ = cli(capsys, "--policy", str(native), "verify", "orders@latest")
    assert code == 1 and "no longer exists" in out

    export_dir = tmp_path / "export"
    export_dir.mkdir()
    export = _policy(export_dir, table, "export", s3_bucket,
                     store={"type": "s3", "bucket": s3_bucket, "prefix": "exp", "region": REGION})
    code, out, err = cli(capsys, "--policy", str(export), "run", "orders", "--wait", "--poll-interval", "0.2",
                         "--wait-timeout", "30")
    assert code == 0, err
    show = cli_json(capsys, "--policy", str(export), "show", "orders@latest")
    key = f"exp/orders/snapshots/{show['snapshot_id']}/{show['parts'][0]['name']}"
    s3 = boto3.client("s3", region_name=REGION)
    s3.put_object(Bucket=s3_bucket, Key=key, Body=gzip.compress(b'{"Item":{"pk":{"S":"forged"}}}\n'))
    code, out, _ = cli(capsys, "--policy", str(export), "verify", "orders@latest")
    assert code == 1 and "sha256" in out


def test_export_needs_an_s3_store_and_point_in_time_recovery(
    moto_ddb: Any, s3_bucket: str, tmp_path: Path, capsys: Any
) -> None:
    table = unique("nopitr")
    make_table(moto_ddb, table, gsi=False)
    bad = _policy(tmp_path, table, "export", s3_bucket, store={"type": "file", "path": str(tmp_path / "v")})
    code, _, err = cli(capsys, "--policy", str(bad), "run", "orders")
    assert code == 2
    assert "datasets.orders.source.method" in err and "type s3" in err

    policy = _policy(tmp_path, table, "export", s3_bucket)
    code, out, err = cli(capsys, "--policy", str(policy), "run", "orders")
    assert code == 1
    assert "point-in-time recovery" in out + err


def test_retention_deletes_the_backups_it_made_and_only_those(
    moto_ddb: Any, s3_bucket: str, tmp_path: Path, capsys: Any
) -> None:
    table = unique("retention")
    make_table(moto_ddb, table, gsi=False)
    fill(moto_ddb, table, corpus()[:5])
    policy = _policy(tmp_path, table, "native", s3_bucket, retention={"last": 1})
    arns = []
    for _ in range(2):
        time.sleep(1.1)  # snapshot ids sort by their start second
        row = cli_json(capsys, "--policy", str(policy), "run", "orders", "--wait", "--poll-interval", "0")[0]
        assert row["status"] == "committed", row
        ref = f"orders@{row['snapshot_id']}"
        arns.append(cli_json(capsys, "--policy", str(policy), "show", ref)["native"]["backup_arn"])
    theirs = moto_ddb.create_backup(TableName=table, BackupName="someone-elses")["BackupDetails"]["BackupArn"]
    # A backup named like cloudkeep's for a snapshot that was never committed (a crashed start).
    stray = moto_ddb.create_backup(
        TableName=table, BackupName="cloudkeep-orders-20250101T000000Z-abcd")["BackupDetails"]["BackupArn"]

    report = cli_json(capsys, "--policy", str(policy), "prune")[0]
    assert len(report["removed"]) == 1
    assert report["native_deleted"] == [arns[0]], "the stray one is younger than the grace period"
    left = {b["BackupArn"] for b in moto_ddb.list_backups(TableName=table)["BackupSummaries"]}
    assert left == {arns[1], theirs, stray}

    later = cli_json(capsys, "--policy", str(policy), "prune", "--now", "2099-01-01T00:00:00Z")[0]
    assert later["native_deleted"] == [stray]
    left = {b["BackupArn"] for b in moto_ddb.list_backups(TableName=table)["BackupSummaries"]}
    assert left == {arns[1], theirs}, "someone else's backup is never touched"


def _job_record(policy: Path, snapshot_id: str) -> dict[str, Any]:
    """The job's current record (the newest entry of its append-only sequence)."""
    from cloudkeep.jobs import read_job
    from cloudkeep.policy import load_policy
    from cloudkeep.registry import store_for_dataset

    record = read_job(store_for_dataset(load_policy(str(policy)).policy, "orders"), "orders",
                      snapshot_id)
    assert record is not None
    return record


def _s3_get(bucket: str, key: str) -> bytes:
    import boto3

    return bytes(boto3.client("s3", region_name=REGION).get_object(Bucket=bucket, Key=key)["Body"].read())
