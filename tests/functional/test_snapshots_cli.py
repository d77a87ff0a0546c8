"""The CLI over committed snapshots: list, show, verify (damage detection), restore refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tools.sample_data import ORDERS_TABLE_SCHEMA, seed

from conftest import REGION, unique, write_policy
from helpers import cli, cli_json, scan_all

pytestmark = pytest.mark.emulator

CLOUDKEEP = str(Path(sys.executable).parent / "cloudkeep")


@pytest.fixture
def backed_up(ddb_resource: Any, tmp_path: Path, capsys: Any) -> dict[str, Any]:
    """A seeded table with one committed snapshot in a file store."""
    table = unique("orders")
    resource_table = ddb_resource.create_table(TableName=table, **ORDERS_TABLE_SCHEMA)
    resource_table.wait_until_exists()
    seed(resource_table, 400)
    policy = write_policy(tmp_path, table=table, segments=4)
    code, _, err = cli(capsys, "--policy", str(policy), "run", "orders")
    assert code == 0, err
    [row] = cli_json(capsys, "--policy", str(policy), "list", "orders")
    snap_dir = tmp_path / "vault" / "orders" / "snapshots" / row["snapshot_id"]
    manifest = json.loads((snap_dir / "manifest.json").read_text())
    return {"table": table, "policy": str(policy), "row": row, "dir": snap_dir,
            "manifest": manifest, "ref": f"orders@{row['snapshot_id']}"}


def test_list_json_has_the_documented_fields(backed_up: dict[str, Any]) -> None:
    row = backed_up["row"]
    for key in ("snapshot_id", "dataset", "started_at", "finished_at", "items", "bytes_stored"):
        assert key in row, key
    assert row["dataset"] == "orders"
    assert row["items"] == 400
    assert row["bytes_stored"] == sum(p.stat().st_size for p in backed_up["dir"].glob("part-*.zst"))
    assert row["started_at"] <= row["finished_at"]


def test_show_latest_and_by_id(backed_up: dict[str, Any], capsys: Any) -> None:
    policy = backed_up["policy"]
    by_id = cli_json(capsys, "--policy", policy, "show", backed_up["ref"])
    latest = cli_json(capsys, "--policy", policy, "show", "orders@latest")
    assert by_id["snapshot_id"] == latest["snapshot_id"] == backed_up["row"]["snapshot_id"]
    assert by_id["source"]["table"] == backed_up["table"]
    assert by_id["source"]["key_schema"] == ORDERS_TABLE_SCHEMA["KeySchema"]
    assert by_id["totals"]["items"] == 400
    assert len(by_id["parts"]) == by_id["totals"]["parts"] >= 1
    code, out, _ = cli(capsys, "--policy", policy, "show", backed_up["ref"])
    assert code == 0 and "content digest" in out and backed_up["table"] in out


def _first_part(backed_up: dict[str, Any]) -> Path:
    name = backed_up["manifest"]["parts"][0]["name"]
    return backed_up["dir"] / name


def test_verify_detects_a_flipped_byte(backed_up: dict[str, Any], capsys: Any) -> None:
    part = _first_part(backed_up)
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0x01
    part.write_bytes(bytes(data))
    code, out, _ = cli(capsys, "--policy", backed_up["policy"], "verify", backed_up["ref"])
    assert code == 1
    assert "FAILED" in out and part.name in out and "sha256" in out


def test_verify_detects_a_truncated_part(backed_up: dict[str, Any], capsys: Any) -> None:
    part = _first_part(backed_up)
    part.write_bytes(part.read_bytes()[:-20])
    code, out, _ = cli(capsys, "--policy", backed_up["policy"], "--format", "json", "verify",
                       backed_up["ref"])
    assert code == 1
    report = json.loads(out)
    assert not report["ok"]
    checks = {(p["part"], p["check"]) for p in report["problems"]}
    assert (part.name, "truncated") in checks
    assert (part.name, "size") in checks


def test_verify_detects_a_missing_part(backed_up: dict[str, Any], capsys: Any) -> None:
    part = _first_part(backed_up)
    part.unlink()
    code, out, _ = cli(capsys, "--policy", backed_up["policy"], "verify", "--latest", "orders")
    assert code == 1
    assert f"part {part.name}: missing" in out


def test_verify_reports_every_damaged_part(backed_up: dict[str, Any], capsys: Any) -> None:
    parts = sorted(backed_up["dir"].glob("part-*.zst"))
    assert len(parts) >= 2
    parts[0].unlink()
    parts[1].write_bytes(b"not zstd at all")
    code, out, _ = cli(capsys, "--policy", backed_up["policy"], "verify", backed_up["ref"])
    assert code == 1
    assert parts[0].name in out and parts[1].name in out


def test_verify_records_its_result_in_the_store(backed_up: dict[str, Any], capsys: Any) -> None:
    assert cli(capsys, "--policy", backed_up["policy"], "verify", backed_up["ref"])[0] == 0
    recorded = list((backed_up["dir"].parent.parent / "verifications").rglob("*.json"))
    assert len(recorded) == 1
    assert json.loads(recorded[0].read_text())["ok"] is True


def test_a_deleted_manifest_makes_the_snapshot_disappear(
    backed_up: dict[str, Any], capsys: Any
) -> None:
    (backed_up["dir"] / "manifest.json").unlink()
    assert cli_json(capsys, "--policy", backed_up["policy"], "list") == []
    code, _, err = cli(capsys, "--policy", backed_up["policy"], "verify", backed_up["ref"])
    assert code == 2 and "no committed snapshot" in err
    code, _, err = cli(capsys, "--policy", backed_up["policy"], "show", "orders@latest")
    assert code == 2 and "no committed snapshot" in err


def test_restore_refuses_a_non_empty_target(
    backed_up: dict[str, Any], capsys: Any, ddb_client: Any
) -> None:
    table = backed_up["table"]
    ddb_client.put_item(TableName=table, Item={"pk": {"S": "extra"}, "sk": {"S": "x"},
                                               "status": {"S": "new"}})
    before = scan_all(ddb_client, table)
    code, _, err = cli(capsys, "--policy", backed_up["policy"], "restore", backed_up["ref"],
                       "--into", table)
    assert code == 1
    assert "not empty" in err and "--overwrite" in err
    assert scan_all(ddb_client, table) == before

    # With --overwrite the snapshot's items are written over it; extra items stay.
    ddb_client.update_item(TableName=table, Key={"pk": {"S": "customer#000"}, "sk": {"S": "order#00000000"}},
                           UpdateExpression="SET note = :n", ExpressionAttributeValues={":n": {"S": "changed"}})
    code, _, err = cli(capsys, "--policy", backed_up["policy"], "restore", backed_up["ref"],
                       "--into", table, "--overwrite")
    assert code == 0, err
    after = scan_all(ddb_client, table)
    assert len(after) == 401
    restored = [v for v in after.values() if v["sk"] == {"S": "order#00000000"}][0]
    assert restored["note"] != {"S": "changed"}


def test_restore_refuses_a_target_with_another_key_schema(
    backed_up: dict[str, Any], capsys: Any, ddb_client: Any
) -> None:
    other = unique("other")
    ddb_client.create_table(
        TableName=other, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
    )
    code, _, err = cli(capsys, "--policy", backed_up["policy"], "restore", backed_up["ref"],
                       "--into", other)
    assert code == 1 and "key schema" in err
    assert ddb_client.scan(TableName=other)["Count"] == 0


def test_restore_refuses_a_damaged_snapshot_before_writing(
    backed_up: dict[str, Any], capsys: Any, ddb_client: Any
) -> None:
    _first_part(backed_up).unlink()
    target = unique("never")
    code, _, err = cli(capsys, "--policy", backed_up["policy"], "restore", backed_up["ref"],
                       "--into", target)
    assert code == 1 and "missing" in err and "nothing was written" in err
    assert target not in ddb_client.list_tables()["TableNames"]


def test_restore_stops_on_a_corrupted_part(
    backed_up: dict[str, Any], capsys: Any
) -> None:
    part = _first_part(backed_up)
    data = bytearray(part.read_bytes())
    data[-10] ^= 0xFF
    part.write_bytes(bytes(data))
    code, _, err = cli(capsys, "--policy", backed_up["policy"], "restore", backed_up["ref"],
                       "--into", unique("partial"))
    assert code == 1
    assert part.name in err


def test_errors_are_one_line_without_traceback(tmp_path: Path, ddb_local: Any) -> None:
    """Real processes: a missing table is 'unreachable' (3), a bad reference is usage (2)."""
    policy = write_policy(tmp_path, table="no_such_table_here")
    env = {**os.environ, "AWS_DEFAULT_REGION": REGION}
    run = subprocess.run([CLOUDKEEP, "--policy", str(policy), "run", "orders"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 3, run.stderr
    assert "no_such_table_here" in run.stderr and "Traceback" not in run.stderr + run.stdout
    bad = subprocess.run([CLOUDKEEP, "--policy", str(policy), "show", "orders@yesterday"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and "bad snapshot id" in bad.stderr
    assert "Traceback" not in bad.stderr
    unknown = subprocess.run([CLOUDKEEP, "--policy", str(policy), "run", "nope"],
                             capture_output=True, text=True, env=env, timeout=120)
    assert unknown.returncode == 2 and "unknown dataset 'nope'" in unknown.stderr


def test_run_without_credentials_or_endpoint_is_unreachable(tmp_path: Path) -> None:
    policy = write_policy(tmp_path, table="some_table")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:9", AWS_ACCESS_KEY_ID="x",
               AWS_SECRET_ACCESS_KEY="y", AWS_MAX_ATTEMPTS="1")
    run = subprocess.run([CLOUDKEEP, "--policy", str(policy), "run", "orders"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 3, run.stderr
    assert "cannot reach DynamoDB" in run.stderr and "Traceback" not in run.stderr
