"""RDS source on moto server: a tagged native snapshot waited for across runs, a cross-region copy
encrypted with a KMS key there, snapshot ARNs in the manifest, retention that deletes only the
snapshots cloudkeep made (found by tag), and a restore drill that always deletes its instance."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from cloudkeep.catalog import resolve
from cloudkeep.policy import load_policy
from cloudkeep.sources.rds import RdsSource, snapshot_identifier
from conftest import REGION
from helpers import cli, cli_json

pytestmark = pytest.mark.emulator

COPY_REGION = "eu-west-1"


@pytest.fixture
def rds(moto_server: Any) -> Any:
    import boto3

    return boto3.client("rds", region_name=REGION)


def _instance(rds: Any, name: str) -> None:
    rds.create_db_instance(
        DBInstanceIdentifier=name, DBInstanceClass="db.t3.micro", Engine="postgres",
        AllocatedStorage=20, MasterUsername="admin", MasterUserPassword="not-a-secret-1",
    )


def _policy(tmp_path: Path, source: dict[str, Any], retention: dict[str, int] | None = None) -> Path:
    policy = {
        "version": 1,
        "stores": {"vault": {"type": "file", "path": str(tmp_path / "vault")}},
        "tiers": {"standard": {"schedule": "0 2 * * *", "rpo": "26h",
                               "retention": retention or {"daily": 7}}},
        "datasets": {"db": {"source": {"type": "rds", "region": REGION, **source},
                            "tier": "standard", "store": "vault"}},
    }
    path = tmp_path / "cloudkeep.yaml"
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    return path


def _tags(client: Any, arn: str) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in client.list_tags_for_resource(ResourceName=arn)["TagList"]}


def test_snapshot_and_cross_region_copy_span_runs(rds: Any, tmp_path: Path, capsys: Any) -> None:
    import boto3

    _instance(rds, "shop-db")
    kms = boto3.client("kms", region_name=COPY_REGION).create_key()["KeyMetadata"]["Arn"]
    policy = _policy(tmp_path, {"instance": "shop-db",
                                "copy_to": {"region": COPY_REGION, "kms_key_id": kms}})

    run = ["--policy", str(policy), "run", "db"]
    first = cli_json(capsys, *run)[0]
    assert first["status"] == "pending" and first["job"]["state"] == "started"
    sid = first["snapshot_id"]
    ident = snapshot_identifier("db", sid)
    primary = rds.describe_db_snapshots(DBSnapshotIdentifier=ident)["DBSnapshots"][0]
    assert _tags(rds, primary["DBSnapshotArn"]) == {
        "cloudkeep:dataset": "db", "cloudkeep:snapshot": sid, "cloudkeep:managed": "true"}

    code, out, err = cli(capsys, *run)  # the snapshot is available: the copy starts
    assert code == 0, err
    assert "pending" in out and sid in out and "run again" in out
    from cloudkeep.jobs import read_job
    from cloudkeep.stores.file import FileStore

    record = read_job(FileStore(tmp_path / "vault"), "db", sid) or {}
    assert record["state"] == "polling" and record["polls"] == 1 and "copying" in record["progress"]
    assert [s["role"] for s in record["job"]["snapshots"]] == ["primary", "copy"]
    third = cli_json(capsys, *run)[0]
    assert (third["status"], third["snapshot_id"]) == ("committed", sid)

    show = cli_json(capsys, "--policy", str(policy), "show", "db@latest")
    snaps = show["native"]["snapshots"]
    assert [(s["role"], s["region"]) for s in snaps] == [("primary", REGION), ("copy", COPY_REGION)]
    assert snaps[0]["arn"] == primary["DBSnapshotArn"]
    assert show["native"]["snapshot_arns"] == [s["arn"] for s in snaps]
    assert snaps[1]["arn"].startswith(f"arn:aws:rds:{COPY_REGION}:") and snaps[1]["kms_key_id"] == kms
    assert show["method"] == "snapshot" and show["consistency"]["mode"] == "point-in-time"
    assert show["source"]["engine"] == "postgres" and show["parts"] == []
    copy_client = boto3.client("rds", region_name=COPY_REGION)
    copy = copy_client.describe_db_snapshots(DBSnapshotIdentifier=ident)["DBSnapshots"][0]
    assert copy["KmsKeyId"] == kms
    assert _tags(copy_client, copy["DBSnapshotArn"])["cloudkeep:snapshot"] == sid

    code, out, err = cli(capsys, "--policy", str(policy), "show", "db@latest")
    assert code == 0 and f"rds-instance-snapshot: snapshot_arns={snaps[0]['arn']}, {snaps[1]['arn']}" in out
    code, out, err = cli(capsys, "--policy", str(policy), "verify", "db@latest")
    assert code == 0, out + err
    copy_client.delete_db_snapshot(DBSnapshotIdentifier=ident)
    code, out, _ = cli(capsys, "--policy", str(policy), "verify", "db@latest")
    assert code == 1 and "no longer exists" in out


def test_retention_deletes_only_the_snapshots_it_tagged(rds: Any, tmp_path: Path, capsys: Any) -> None:
    import boto3

    _instance(rds, "keep-db")
    policy = _policy(tmp_path, {"instance": "keep-db", "copy_to": {"region": COPY_REGION}},
                     retention={"last": 1})
    sids = []
    for _ in range(2):
        time.sleep(1.1)  # snapshot ids sort by their start second
        row = cli_json(capsys, "--policy", str(policy), "run", "db", "--wait", "--poll-interval", "0")[0]
        assert row["status"] == "committed", row
        sids.append(row["snapshot_id"])
    rds.create_db_snapshot(DBInstanceIdentifier="keep-db", DBSnapshotIdentifier="hand-made")
    rds.create_db_snapshot(DBInstanceIdentifier="keep-db", DBSnapshotIdentifier="other-dataset",
                           Tags=[{"Key": "cloudkeep:dataset", "Value": "other"},
                                 {"Key": "cloudkeep:snapshot", "Value": "20200101T000000Z-abcd"},
                                 {"Key": "cloudkeep:managed", "Value": "true"}])
    # Tagged by cloudkeep for a snapshot that never committed (a run that crashed after starting).
    rds.create_db_snapshot(DBInstanceIdentifier="keep-db", DBSnapshotIdentifier="crashed-start",
                           Tags=[{"Key": "cloudkeep:dataset", "Value": "db"},
                                 {"Key": "cloudkeep:snapshot", "Value": "20200101T000000Z-abcd"},
                                 {"Key": "cloudkeep:managed", "Value": "true"}])

    def ids(region: str) -> set[str]:
        client = boto3.client("rds", region_name=region)
        return {s["DBSnapshotIdentifier"] for s in client.describe_db_snapshots(
            DBInstanceIdentifier="keep-db", SnapshotType="manual")["DBSnapshots"]}

    old, new = (snapshot_identifier("db", s) for s in sids)
    report = cli_json(capsys, "--policy", str(policy), "prune")[0]
    assert report["removed"] == [sids[0]]
    assert len(report["native_deleted"]) == 2  # the primary snapshot and its copy
    assert ids(REGION) == {new, "hand-made", "other-dataset", "crashed-start"}
    assert ids(COPY_REGION) == {new}

    # Past the grace period, the sweep finds the leftover by its tags — and nothing else.
    later = cli_json(capsys, "--policy", str(policy), "prune", "--now", "2099-01-01T00:00:00Z")[0]
    assert [a.rsplit(":", 1)[-1] for a in later["native_deleted"]] == ["crashed-start"]
    assert ids(REGION) == {new, "hand-made", "other-dataset"}
    assert old not in ids(COPY_REGION)


def test_drill_restores_a_temporary_instance_and_deletes_it(rds: Any, tmp_path: Path, capsys: Any) -> None:
    _instance(rds, "drill-db")
    policy = _policy(tmp_path, {"instance": "drill-db"})
    assert cli(capsys, "--policy", str(policy), "run", "db", "--wait", "--poll-interval", "0")[0] == 0

    def drills() -> list[str]:
        return [d["DBInstanceIdentifier"] for d in rds.describe_db_instances()["DBInstances"]
                if d["DBInstanceIdentifier"].startswith("ck-drill-")]

    report = cli_json(capsys, "--policy", str(policy), "verify", "db@latest", "--level", "drill")
    assert report["ok"] and report["level"] == "drill"
    from cloudkeep.function import invoke as handle

    status, body = handle(load_policy(str(policy)).policy,
                          {"action": "verify", "ref": "db@latest", "level": "drill"})
    assert status == 200 and body["ok"] and body["drill"]["deleted"]
    assert report["drill"]["status"] == "available" and report["drill"]["deleted"]
    assert report["drill"]["restored"].startswith("ck-drill-")
    assert drills() == []

    # A drill that fails once the instance is up still deletes it.
    loaded = load_policy(str(policy)).policy
    _, manifest = resolve(loaded, "db@latest")
    seen: list[str] = []

    def broken_check(name: str) -> None:
        seen.append(name)
        assert name in drills()
        raise RuntimeError("the smoke query failed")

    outcome = RdsSource(REGION, instance="drill-db").drill(manifest, on_available=broken_check)
    assert not outcome["ok"] and "the smoke query failed" in outcome["problems"][0]
    assert seen and drills() == []


def test_drill_of_a_snapshot_that_is_gone_reports_it(rds: Any, tmp_path: Path, capsys: Any) -> None:
    _instance(rds, "gone-db")
    policy = _policy(tmp_path, {"instance": "gone-db"})
    row = cli_json(capsys, "--policy", str(policy), "run", "db", "--wait", "--poll-interval", "0")[0]
    rds.delete_db_snapshot(DBSnapshotIdentifier=snapshot_identifier("db", row["snapshot_id"]))
    code, out, _ = cli(capsys, "--policy", str(policy), "verify", "db@latest", "--level", "drill")
    assert code == 1 and "drill failed" in out


def test_cluster_snapshots_and_policy_errors(rds: Any, tmp_path: Path, capsys: Any) -> None:
    rds.create_db_cluster(DBClusterIdentifier="aurora-1", Engine="aurora-postgresql",
                          MasterUsername="admin", MasterUserPassword="not-a-secret-1")
    policy = _policy(tmp_path, {"cluster": "aurora-1"})
    row = cli_json(capsys, "--policy", str(policy), "run", "db", "--wait", "--poll-interval", "0")[0]
    assert row["status"] == "committed"
    show = cli_json(capsys, "--policy", str(policy), "show", "db@latest")
    assert show["native"]["snapshots"][0]["arn"].startswith("arn:aws:rds:")
    assert show["native"]["kind"] == "rds-cluster-snapshot"
    report = cli_json(capsys, "--policy", str(policy), "verify", "db@latest", "--level", "drill")
    assert report["ok"] and report["drill"]["target"] == "cluster"
    assert not [c for c in rds.describe_db_clusters()["DBClusters"]
                if c["DBClusterIdentifier"].startswith("ck-drill-")]

    both = _policy(tmp_path, {"cluster": "aurora-1", "instance": "x"})
    code, _, err = cli(capsys, "--policy", str(both), "validate")
    assert code == 2 and "datasets.db.source" in err and "exactly one" in err


def test_the_scheduled_tick_continues_the_snapshot_job(rds: Any, tmp_path: Path) -> None:
    from datetime import datetime

    from cloudkeep.runtime import tick

    _instance(rds, "tick-db")
    policy = load_policy(str(_policy(tmp_path, {"instance": "tick-db", "copy_to": {"region": COPY_REGION}}))).policy
    statuses = []
    for now in ("2026-03-01T02:20:00+00:00", "2026-03-01T02:35:00+00:00", "2026-03-01T02:50:00+00:00",
                "2026-03-01T03:05:00+00:00"):
        outcome = tick(policy, datetime.fromisoformat(now))
        statuses.append([(r.status, r.snapshot_id) for r in outcome.results] or ["not-due"])
    sid = statuses[0][0][1]
    assert sid and sid.startswith("20260301T020000Z-")
    assert statuses == [[("pending", sid)], [("pending", sid)], [("committed", sid)], ["not-due"]]


def test_a_snapshot_left_by_an_earlier_attempt_is_adopted(rds: Any, tmp_path: Path) -> None:
    """A run that crashed after CreateDBSnapshot but before writing its job record: the next
    attempt of that snapshot adopts the RDS snapshot instead of failing on its name."""
    from cloudkeep.engine import RunOptions, backup

    _instance(rds, "crash-db")
    policy = load_policy(str(_policy(tmp_path, {"instance": "crash-db"}))).policy
    sid = "20260301T020000Z-abcd12"
    ident = snapshot_identifier("db", sid)
    rds.create_db_snapshot(DBInstanceIdentifier="crash-db", DBSnapshotIdentifier=ident,
                           Tags=[{"Key": "cloudkeep:dataset", "Value": "db"}])
    result = backup(policy, "db", snapshot_id=sid, options=RunOptions(wait=30, poll_interval=0))
    assert result.status == "committed" and result.manifest is not None
    assert result.manifest.native is not None
    assert result.manifest.native["snapshots"][0]["identifier"] == ident
    assert [s["DBSnapshotIdentifier"] for s in rds.describe_db_snapshots(
        DBInstanceIdentifier="crash-db", SnapshotType="manual")["DBSnapshots"]] == [ident]
