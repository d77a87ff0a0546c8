"""The services layer as the Python API (docs/python-api.md): its examples run as written against
DynamoDB Local and a file store, and the use cases the CLI and the function's ``invoke`` share
give the same results through every front end."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from tools.sample_data import ORDERS_TABLE_SCHEMA, seed

from cloudkeep import services
from cloudkeep.errors import SnapshotNotFoundError, UsageError
from cloudkeep.function import invoke
from cloudkeep.policy import load_policy
from conftest import unique, write_policy
from helpers import cli_json, scan_all

pytestmark = pytest.mark.emulator

DOC = Path(__file__).resolve().parents[2] / "docs" / "python-api.md"
MARK = re.compile(r"<!-- test: (python [\w ]+?) -->\s*\n```python\n(.*?)```", re.S)
EXAMPLE_TARGET = "orders_from_python"  # the restore example's fixed target table


def examples() -> dict[str, str]:
    return dict(MARK.findall(DOC.read_text()))


def run_example(script: str, cwd: Path) -> str:
    """``script`` in a fresh interpreter in ``cwd`` (as a user runs it), with the emulators'
    environment; returns what it printed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUDKEEP_", "PYTEST"))}
    done = subprocess.run([sys.executable, "-c", script], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=300)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture
def orders(ddb_resource: Any, tmp_path: Path) -> str:
    table = unique("orders")
    handle = ddb_resource.create_table(TableName=table, **ORDERS_TABLE_SCHEMA)
    handle.wait_until_exists()
    seed(handle, 40)
    write_policy(tmp_path, table=table, store={"type": "file", "path": "vault"})
    return table


def test_every_python_example_is_marked() -> None:
    text = DOC.read_text()
    assert len(re.findall(r"^```python$", text, re.M)) == len(examples())
    assert set(examples()) == {"python backup", "python verify", "python restore", "python list",
                               "python holds", "python items"}


def test_python_api_examples_back_up_verify_and_restore(orders: str, ddb_client: Any,
                                                        tmp_path: Path, capsys: Any,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    if EXAMPLE_TARGET in ddb_client.list_tables()["TableNames"]:
        ddb_client.delete_table(TableName=EXAMPLE_TARGET)
        ddb_client.get_waiter("table_not_exists").wait(TableName=EXAMPLE_TARGET)
    docs = examples()
    out = run_example(docs["python backup"], tmp_path)
    assert re.search(r"^orders committed \S+$", out, re.M), out
    out = run_example(docs["python verify"], tmp_path)
    assert "OK 40 items" in out
    out = run_example(docs["python restore"], tmp_path)
    assert f"restored 40 items into {EXAMPLE_TARGET}" in out and "digest matches" in out
    assert scan_all(ddb_client, EXAMPLE_TARGET) == scan_all(ddb_client, orders)
    out = run_example(docs["python list"], tmp_path)
    assert out.startswith("orders@") and "'ok': True" in out  # the recorded verification
    out = run_example(docs["python holds"], tmp_path)
    assert "held orders@" in out and "still held by 0" in out
    out = run_example(docs["python items"], tmp_path)  # one snapshot: diffed with itself
    assert out.splitlines()[0] == "0 0 0 40", out
    assert re.search(r"^\['\S+'\] \[\]$", out, re.M), out  # the snapshot holding the item
    # what the scripts did is what the CLI sees: one snapshot, verified, no hold left
    monkeypatch.chdir(tmp_path)  # the policy's file store is relative to the working folder
    listed = cli_json(capsys, "--policy", str(tmp_path / "cloudkeep.yaml"), "list", "orders")
    assert len(listed) == 1
    assert listed[0]["last_verification"]["ok"] is True and listed[0]["holds"] == []
    ddb_client.delete_table(TableName=EXAMPLE_TARGET)


def test_cli_invoke_and_services_share_the_use_cases(orders: str, ddb_client: Any,
                                                     tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    policy = load_policy(str(tmp_path / "cloudkeep.yaml")).policy
    run = services.backup(policy)
    assert run.ok and [r.status for r in run.results] == ["committed"]
    sid = run.results[0].snapshot_id
    # the function's invoke action reaches the same snapshot through the same use case
    status, body = invoke(policy, {"action": "verify", "ref": "orders@latest"})
    assert status == 200 and body["ok"] is True and body["snapshot_id"] == sid
    assert body["items"] == 40
    status, body = invoke(policy, {"action": "verify", "ref": "orders@20990101T000000Z-none"})
    assert status == 404 and body["ok"] is False
    with pytest.raises(SnapshotNotFoundError):
        services.verify(policy, "orders@20990101T000000Z-none")
    # restore refuses a non-empty target without overwrite, through every front end
    target = unique("restored")
    first = services.restore(policy, f"orders@{sid}", target)
    assert first.items == 40 and first.digest_ok is True
    status, body = invoke(policy, {"action": "restore", "ref": "orders@latest", "into": target})
    assert status == 422 and "not empty" in body["error"]
    with pytest.raises(Exception, match="not empty"):
        services.restore(policy, "orders@latest", target)
    assert scan_all(ddb_client, target) == scan_all(ddb_client, orders)
    # a bad target name: UsageError (exit 2, HTTP 400) before anything is read or written
    with pytest.raises(UsageError):
        services.restore(policy, "orders@latest", " bad name")
    status, body = invoke(policy, {"action": "restore", "ref": "orders@latest", "into": " x"})
    assert status == 400
    # every use case left its audit record, read back through the service the CLI uses
    records = services.audit_log(policy, dataset="orders").rows
    events = [r["event"] for r in records]
    assert events.count("backup") == 1 and events.count("verify") >= 1
    # restored, then refused twice (invoke, service); a bad name is refused before any record
    assert [r["outcome"] for r in records if r["event"] == "restore"] == ["ok", "failed", "failed"]
    ddb_client.delete_table(TableName=target)


def test_copy_service_catches_up_and_is_idempotent(ddb_resource: Any, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    table = unique("orders")
    handle = ddb_resource.create_table(TableName=table, **ORDERS_TABLE_SCHEMA)
    handle.wait_until_exists()
    seed(handle, 10)
    path = write_policy(tmp_path, table=table, store={"type": "file", "path": "vault"})
    monkeypatch.chdir(tmp_path)
    run = services.backup(load_policy(str(path)).policy, ["orders"])  # no copy store yet
    sid = run.results[0].snapshot_id
    assert run.ok and run.results[0].copies == []
    doc = yaml.safe_load(path.read_text())
    doc["stores"]["offsite"] = {"type": "file", "path": "offsite"}
    doc["datasets"]["orders"]["copy_to"] = ["offsite"]
    path.write_text(yaml.safe_dump(doc))
    policy = load_policy(str(path)).policy
    made = services.copy(policy, "orders")  # the earlier snapshot is copied now
    assert [(c["snapshot_id"], c["store"], c["verified"]) for c in made] == [(sid, "offsite", True)]
    assert services.copy(policy, "orders") == []  # every snapshot has its verified copy
    copied = services.list_snapshots(policy, "orders", store_name="offsite")
    assert [r["snapshot_id"] for r in copied.rows] == [sid] and not copied.refused
    assert services.list_snapshots(policy, "orders").rows[0]["copies"] == ["offsite"]
