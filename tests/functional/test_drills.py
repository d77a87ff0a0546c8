"""Verification levels on DynamoDB Local: restore drills (scratch table, digest, measured RTO,
cleanup even on failure) and samples against the live table; the CLI shows them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
import zstandard
from tools.sample_data import ORDERS_TABLE_SCHEMA, seed

from conftest import unique, write_policy
from helpers import cli, cli_json

pytestmark = pytest.mark.emulator


def drill_tables(client: Any, table: str) -> list[str]:
    return [t for t in client.list_tables(Limit=100)["TableNames"]
            if t.startswith(f"{table}-cloudkeep-drill-")]


@pytest.fixture
def backed_up(ddb_resource: Any, tmp_path: Path, capsys: Any) -> dict[str, Any]:
    table = unique("orders")
    created = ddb_resource.create_table(TableName=table, **ORDERS_TABLE_SCHEMA)
    created.wait_until_exists()
    seed(created, 300)
    path = write_policy(tmp_path, table=table, segments=2)
    policy = yaml.safe_load(path.read_text())
    policy["tiers"]["standard"]["rto"] = "30m"
    path.write_text(yaml.safe_dump(policy))
    code, _, err = cli(capsys, "--policy", str(path), "run", "orders")
    assert code == 0, err
    [row] = cli_json(capsys, "--policy", str(path), "list", "orders")
    snap_dir = tmp_path / "vault" / "orders" / "snapshots" / row["snapshot_id"]
    return {"table": table, "policy": str(path), "dir": snap_dir, "id": row["snapshot_id"],
            "vault": tmp_path / "vault"}


def stored_verifications(b: dict[str, Any]) -> list[dict[str, Any]]:
    folder = b["vault"] / "orders" / "verifications" / b["id"]
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def test_drill_restores_compares_measures_and_cleans_up(backed_up: dict[str, Any], capsys: Any,
                                                         ddb_client: Any) -> None:
    report = cli_json(capsys, "--policy", backed_up["policy"], "verify", "--latest", "orders",
                      "--level", "drill")
    assert report["ok"], report["problems"]
    assert report["level"] == "drill" and report["items"] == 300
    assert report["target"].startswith(f"{backed_up['table']}-cloudkeep-drill-")
    assert report["restore_seconds"] > 0
    assert report["rto_seconds"] == 1800 and report["rto_met"] is True
    assert report["cleaned_up"] is True
    assert drill_tables(ddb_client, backed_up["table"]) == []
    [stored] = stored_verifications(backed_up)
    for key in ("dataset", "snapshot_id", "level", "ok", "started_at", "finished_at", "problems",
                "restore_seconds", "rto_seconds", "rto_met"):
        assert key in stored, key
    assert stored["problems"] == [] and stored["level"] == "drill" and stored["ok"] is True

    rows = cli_json(capsys, "--policy", backed_up["policy"], "list", "orders")
    assert rows[0]["last_drill"]["ok"] is True and rows[0]["last_drill"]["restore_seconds"] > 0
    shown = cli_json(capsys, "--policy", backed_up["policy"], "show", "orders@latest")
    assert shown["last_drill"]["level"] == "drill"
    [planned] = cli_json(capsys, "--policy", backed_up["policy"], "plan")
    assert planned["last_drill"]["ok"] is True and planned["rto_seconds"] == 1800
    code, out, _ = cli(capsys, "--policy", backed_up["policy"], "list", "orders")
    assert code == 0 and "drill" in out and "OK" in out


def test_a_tampered_snapshot_fails_its_drill_and_the_scratch_table_is_deleted(
        backed_up: dict[str, Any], capsys: Any, ddb_client: Any) -> None:
    # Rewrite one part as valid zstd with one item changed, and make the manifest's size and
    # sha256 agree: only the content comparison can notice.
    manifest_path = backed_up["dir"] / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    part = next(p for p in manifest["parts"] if p["items"] > 0)
    path = backed_up["dir"] / part["name"]
    lines = zstandard.ZstdDecompressor().decompressobj().decompress(path.read_bytes()).split(b"\n")
    doc = json.loads(lines[0])
    doc["Item"]["status"] = {"S": "tampered"}
    lines[0] = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
    data = zstandard.ZstdCompressor().compress(b"\n".join(lines))
    path.chmod(0o644)
    path.write_bytes(data)
    import hashlib

    part["sha256"] = hashlib.sha256(data).hexdigest()
    manifest["totals"]["stored_bytes"] += len(data) - part["stored_bytes"]
    part["stored_bytes"] = len(data)
    raw = len(b"\n".join(lines))  # the uncompressed size too: readers stop past raw_bytes
    manifest["totals"]["raw_bytes"] += raw - part["raw_bytes"]
    part["raw_bytes"] = raw
    manifest_path.chmod(0o644)
    manifest_path.write_text(json.dumps(manifest))

    code, out, _ = cli(capsys, "--policy", backed_up["policy"], "--format", "json", "verify",
                       "--latest", "orders", "--level", "drill")
    report = json.loads(out)
    assert code == 1 and report["ok"] is False
    assert any("digest" in p["message"] for p in report["problems"]), report["problems"]
    assert report["cleaned_up"] is True
    assert drill_tables(ddb_client, backed_up["table"]) == []
    [stored] = stored_verifications(backed_up)
    assert stored["ok"] is False and any("digest" in p for p in stored["problems"])


def test_a_damaged_part_fails_the_drill_before_anything_is_written(
        backed_up: dict[str, Any], capsys: Any, ddb_client: Any) -> None:
    part = sorted(backed_up["dir"].glob("part-*.zst"))[0]
    part.chmod(0o644)
    part.write_bytes(part.read_bytes()[:-10])
    code, out, _ = cli(capsys, "--policy", backed_up["policy"], "verify", "--latest", "orders",
                       "--level", "drill")
    assert code == 1 and "FAILED" in out and "restore" in out
    assert drill_tables(ddb_client, backed_up["table"]) == []


def test_the_rto_is_checked_against_the_measured_restore(backed_up: dict[str, Any], capsys: Any) -> None:
    policy = yaml.safe_load(Path(backed_up["policy"]).read_text())
    policy["tiers"]["standard"]["rto"] = "1s"
    Path(backed_up["policy"]).write_text(yaml.safe_dump(policy))
    # DynamoDB Local needs well over a second to create a table and load 300 items? Not always:
    # what is asserted is the comparison, whichever way it goes.
    report = json.loads(cli(capsys, "--policy", backed_up["policy"], "--format", "json", "verify",
                            "--latest", "orders", "--level", "drill")[1])
    assert report["rto_seconds"] == 1
    assert report["rto_met"] is (report["restore_seconds"] <= 1)
    assert report["ok"] is report["rto_met"]


def test_sample_compares_live_items_and_counts_changes(backed_up: dict[str, Any], capsys: Any,
                                                       ddb_client: Any) -> None:
    report = cli_json(capsys, "--policy", backed_up["policy"], "verify", "--latest", "orders",
                      "--level", "sample", "--sample", "50")
    assert report["ok"] and report["sample"]["compared"] == 50 and report["sample"]["matched"] == 50

    # change one item and delete another, then sample everything
    page = ddb_client.scan(TableName=backed_up["table"], Limit=2)["Items"]
    keys = [{k: item[k] for k in ("pk", "sk")} for item in page]
    ddb_client.update_item(TableName=backed_up["table"], Key=keys[0],
                           UpdateExpression="SET #s = :v", ExpressionAttributeNames={"#s": "status"},
                           ExpressionAttributeValues={":v": {"S": "changed-later"}})
    ddb_client.delete_item(TableName=backed_up["table"], Key=keys[1])
    report = cli_json(capsys, "--policy", backed_up["policy"], "verify", "--latest", "orders",
                      "--level", "sample", "--sample", "1000")
    assert report["ok"], report["problems"]
    assert report["sample"] == {"requested": 1000, "compared": 300, "matched": 298, "changed": 1,
                                "deleted": 1, "differs": 0}
    levels = [v["level"] for v in stored_verifications(backed_up)]
    assert levels == ["sample", "sample"]


def test_audit_log_records_every_operation_with_its_actor(backed_up: dict[str, Any], capsys: Any) -> None:
    policy = backed_up["policy"]
    ref = f"orders@{backed_up['id']}"
    assert cli(capsys, "--policy", policy, "verify", ref)[0] == 0
    assert cli(capsys, "--policy", policy, "hold", "add", ref, "--reason", "litigation 42")[0] == 0
    assert cli(capsys, "--policy", policy, "hold", "remove", ref)[0] == 0
    assert cli(capsys, "--policy", policy, "restore", ref, "--into", unique("restored"))[0] == 0
    code, _, _ = cli(capsys, "--policy", policy, "restore", ref, "--into", backed_up["table"])
    assert code == 1  # refused: not empty — audited as failed
    assert cli(capsys, "--policy", policy, "prune")[0] == 0
    records = cli_json(capsys, "--policy", policy, "audit", "--since", "1h")
    assert [(r["event"], r["outcome"]) for r in records] == [
        ("backup", "committed"), ("verify", "ok"), ("hold_add", "ok"), ("hold_remove", "ok"),
        ("restore", "ok"), ("restore", "failed"), ("prune", "ok")]
    assert {r["actor"]["kind"] for r in records} == {"cli"}
    assert all(r["dataset"] == "orders" and r["at"] for r in records)
    assert records[2]["detail"]["reason"] == "litigation 42"
    files = sorted((backed_up["vault"] / "_audit").rglob("*.json"))
    assert len(files) == 7 and all(f.name.endswith(("-backup.json", "-verify.json", "-hold_add.json",
                                                    "-hold_remove.json", "-restore.json",
                                                    "-prune.json")) for f in files)
    assert cli_json(capsys, "--policy", policy, "audit", "--since", "2999-01-01T00:00:00Z") == []
    code, _, err = cli(capsys, "--policy", policy, "audit", "--since", "yesterday-ish")
    assert code == 2 and "--since" in err
    code, out, _ = cli(capsys, "--policy", policy, "audit")
    assert code == 0 and "hold_add" in out and "cli (" in out


def test_an_invoked_drill_is_audited_as_the_function(backed_up: dict[str, Any],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from cloudkeep import audit
    from cloudkeep.function import invoke as handle
    from cloudkeep.policy import load_policy
    from cloudkeep.stores.file import FileStore

    monkeypatch.setenv("K_SERVICE", "cloudkeep-invoke")
    policy = load_policy(backed_up["policy"]).policy
    status, body = handle(policy, {"action": "verify", "ref": "orders@latest", "level": "drill"})
    assert status == 200 and body["ok"] and body["level"] == "drill" and body["trigger"] == "function"
    status, body = handle(policy, {"action": "verify", "ref": "orders@latest", "level": "bogus"})
    assert status == 400 and "unknown verification level" in body["error"]
    [record] = [r for r in audit.read(FileStore(str(backed_up["vault"]))) if r["event"] == "verify"]
    assert record["actor"] == {"kind": "function", "platform": "gcp", "function": "cloudkeep-invoke"}
    assert record["detail"]["level"] == "drill"
