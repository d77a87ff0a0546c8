"""The docs' commands, run as written: docs/snapshot-format.md (zstd, jq, sha256sum; and its Python
reader with only the standard library and zstandard) and docs/emergency-restore.md (find the last
good snapshot, restore it) against stores seeded by real backups — from S3 (moto) and from a copy
of the store on disk, into DynamoDB Local — in a fresh working folder with a clean environment.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from tools.sample_data import ORDERS_TABLE_SCHEMA, seed

from conftest import REGION, unique
from helpers import cli, cli_json

pytestmark = pytest.mark.emulator

DOCS = Path(__file__).resolve().parents[2] / "docs"
VENV_BIN = str(Path(sys.executable).parent)


def blocks(doc: str) -> dict[str, str]:
    """The fenced code blocks preceded by ``<!-- runbook: NAME -->`` / ``<!-- test: NAME -->``."""
    text = (DOCS / doc).read_text()
    found = dict(re.findall(r"<!-- (?:runbook|test): ([\w ]+?) -->\s*```\w+\n(.*?)```", text, re.S))
    assert found, f"no marked blocks in {doc}"
    return found


def run_bash(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``script`` in bash with -euo pipefail, in a clean environment (PATH: the venv's cloudkeep
    and the system's tools; HOME: the working folder; plus ``env``)."""
    clean = {"PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin", "HOME": str(cwd), "LANG": "C.UTF-8",
             **env}
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=clean, text=True,
                          capture_output=True, timeout=300)


@pytest.fixture
def two_snapshots(ddb_resource: Any, tmp_path: Path, capsys: Any, request: Any) -> dict[str, Any]:
    """A table backed up twice (the second time with one more item), in the store the test asks
    for (``file`` or ``s3``)."""
    table = unique("orders")
    handle = ddb_resource.create_table(TableName=table, **ORDERS_TABLE_SCHEMA)
    handle.wait_until_exists()
    seed(handle, 250)
    kind = getattr(request, "param", "file")
    if kind == "s3":
        bucket = request.getfixturevalue("s3_bucket")
        store = {"type": "s3", "bucket": bucket, "prefix": "cloudkeep", "region": REGION}
    else:
        store = {"type": "file", "path": str(tmp_path / "vault")}
    policy = {"version": 1, "stores": {"vault": store},
              "tiers": {"standard": {"schedule": "0 2 * * *", "rpo": "26h",
                                     "retention": {"daily": 7}}},
              "datasets": {"orders": {"source": {"type": "dynamodb", "table": table,
                                                 "region": REGION, "segments": 2},
                                      "tier": "standard", "store": "vault"}}}
    path = tmp_path / "cloudkeep.yaml"
    path.write_text(yaml.safe_dump(policy))
    code, _, err = cli(capsys, "--policy", str(path), "run", "orders", "--due",
                       "--now", "2026-03-01T02:30:00Z")  # scheduled runs: ids sort by slot
    assert code == 0, err
    handle.put_item(Item={"pk": "late", "sk": "1", "note": "written after the first backup"})
    code, _, err = cli(capsys, "--policy", str(path), "run", "orders", "--due",
                       "--now", "2026-03-02T02:30:00Z")
    assert code == 0, err
    rows = cli_json(capsys, "--policy", str(path), "list", "orders")
    assert len(rows) == 2
    return {"table": table, "policy": str(path), "rows": rows, "store": store, "kind": kind}


def _corrupt_newest(info: dict[str, Any], tmp_path: Path) -> None:
    """Flip a byte of the newest snapshot's first part: the runbook must fall back to the older."""
    newest = info["rows"][-1]["snapshot_id"]
    manifest_key = f"orders/snapshots/{newest}/manifest.json"
    if info["kind"] == "s3":
        import boto3

        s3 = boto3.client("s3", region_name=REGION)
        bucket, prefix = info["store"]["bucket"], info["store"]["prefix"]
        manifest = json.loads(s3.get_object(Bucket=bucket, Key=f"{prefix}/{manifest_key}")["Body"].read())
        key = f"{prefix}/orders/snapshots/{newest}/{manifest['parts'][0]['name']}"
        body = bytearray(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        body[len(body) // 2] ^= 0xFF
        s3.put_object(Bucket=bucket, Key=key, Body=bytes(body))
    else:
        vault = Path(info["store"]["path"])
        manifest = json.loads((vault / manifest_key).read_text())
        part = vault / "orders" / "snapshots" / newest / manifest["parts"][0]["name"]
        body = bytearray(part.read_bytes())
        body[len(body) // 2] ^= 0xFF
        part.write_bytes(bytes(body))


def _item_count(ddb_client: Any, table: str) -> int:
    total, params = 0, {"TableName": table, "Select": "COUNT"}
    while True:
        page = ddb_client.scan(**params)
        total += page["Count"]
        if "LastEvaluatedKey" not in page:
            return total
        params["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _runbook(policy_block: str) -> str:
    doc = blocks("emergency-restore.md")
    return "\n".join([doc[policy_block], doc["find"], doc["restore"]])


def test_runbook_variables_are_the_ones_the_blocks_use() -> None:
    doc = blocks("emergency-restore.md")
    assert set(doc) == {"variables", "policy aws", "policy gcp", "policy azure", "policy file",
                        "find", "restore"}
    names = set(re.findall(r"^(\w+)=", doc["variables"], re.M))
    assert names == {"DATASET", "TARGET"}
    for name in ("find", "restore"):
        assert set(re.findall(r"\$\{?(\w+)", doc[name])) <= names | {"REF", "GOOD"}


@pytest.mark.parametrize("two_snapshots", ["s3"], indirect=True)
def test_emergency_runbook_restores_the_last_good_snapshot_from_s3(
        two_snapshots: dict[str, Any], tmp_path: Path, ddb_client: Any, moto_server: Any,
        ddb_local: Any) -> None:
    info = two_snapshots
    _corrupt_newest(info, tmp_path)
    fresh = tmp_path / "fresh-machine"
    fresh.mkdir()
    target = unique("orders_restored")
    script = _runbook("policy aws").replace("BUCKET=acme-backups PREFIX=cloudkeep REGION=eu-west-1 "
                                            "TABLE=orders", "")  # values from the environment
    env = {**moto_server.env(), **ddb_local.env(), "DATASET": "orders", "TARGET": target,
           "BUCKET": info["store"]["bucket"], "PREFIX": "cloudkeep", "REGION": REGION,
           "TABLE": info["table"]}
    proc = run_bash(script, fresh, env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    older, newest = info["rows"][0], info["rows"][1]
    assert f"!! orders@{newest['snapshot_id']} failed verification" in proc.stderr
    assert f"last good snapshot: orders@{older['snapshot_id']}" in proc.stdout
    assert f"restored orders@{older['snapshot_id']} into {target}: 250 items" in proc.stdout
    assert _item_count(ddb_client, target) == 250 == older["items"]


def test_emergency_runbook_restores_from_a_copy_of_the_store_on_disk(
        two_snapshots: dict[str, Any], tmp_path: Path, ddb_client: Any, ddb_local: Any) -> None:
    info = two_snapshots
    usb = tmp_path / "usb" / "cloudkeep"
    shutil.copytree(info["store"]["path"], usb)
    os.chmod(usb, 0o555)  # read access is all this machine has
    fresh = tmp_path / "fresh-machine"
    fresh.mkdir()
    target = unique("orders_restored")
    script = _runbook("policy file").replace("STORE=/mnt/backups/cloudkeep REGION=eu-west-1 TABLE=orders",
                                             "")
    env = {**ddb_local.env(), "DATASET": "orders", "TARGET": target, "STORE": str(usb),
           "REGION": REGION, "TABLE": info["table"]}
    proc = run_bash(script, fresh, env)
    os.chmod(usb, 0o755)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    newest = info["rows"][1]
    assert f"last good snapshot: orders@{newest['snapshot_id']}" in proc.stdout
    assert _item_count(ddb_client, target) == 251 == newest["items"], proc.stdout


def test_snapshot_format_shell_commands_read_a_snapshot(two_snapshots: dict[str, Any],
                                                        tmp_path: Path) -> None:
    for tool in ("zstd", "jq", "sha256sum"):
        assert shutil.which(tool), f"{tool} is needed (make setup installs it)"
    script = blocks("snapshot-format.md")["shell"]
    vault = Path(two_snapshots["store"]["path"])
    newest = two_snapshots["rows"][-1]
    proc = run_bash(script, tmp_path, {"STORE": str(vault), "DATASET": "orders"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"newest snapshot: {newest['snapshot_id']}" in proc.stdout
    assert f"{newest['items']} items, as the manifest says" in proc.stdout
    assert proc.stdout.count(": OK") == newest["parts"]  # sha256sum --check, one line per part
    assert '"Item"' in proc.stdout
    _corrupt_newest(two_snapshots, tmp_path)
    proc = run_bash(script, tmp_path, {"STORE": str(vault), "DATASET": "orders"})
    assert proc.returncode != 0 and "FAILED" in proc.stdout


def test_snapshot_format_python_reader_needs_only_stdlib_and_zstandard(
        two_snapshots: dict[str, Any], tmp_path: Path) -> None:
    reader = tmp_path / "read_snapshot.py"
    reader.write_text(blocks("snapshot-format.md")["python"])
    vault = Path(two_snapshots["store"]["path"])
    newest = two_snapshots["rows"][-1]
    # Run it where cloudkeep and its other dependencies cannot be imported.
    blocker = tmp_path / "only_stdlib_and_zstandard.py"
    blocker.write_text(
        "import sys\n"
        "for name in ('cloudkeep', 'pydantic', 'yaml', 'boto3', 'click', 'rich'):\n"
        "    sys.modules[name] = None\n"
        "sys.argv = sys.argv[1:]\n"
        "exec(compile(open(sys.argv[0]).read(), sys.argv[0], 'exec'))\n")
    proc = subprocess.run([sys.executable, "-I", str(blocker), str(reader), str(vault), "orders"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert f"orders@{newest['snapshot_id']}: {newest['items']} items" in proc.stdout
    lines = (tmp_path / f"orders-{newest['snapshot_id']}.ndjson").read_text().splitlines()
    assert len(lines) == newest["items"] and all("Item" in json.loads(line) for line in lines)
    _corrupt_newest(two_snapshots, tmp_path)
    proc = subprocess.run([sys.executable, "-I", str(blocker), str(reader), str(vault), "orders"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "wrong sha256" in proc.stderr


def test_emergency_runbook_restores_firestore_from_cloud_storage(
        firestore_emulator: Any, fake_gcs: Any, firestore_rest: Any, gcp_project: str,
        gcs_bucket: str, tmp_path: Path, capsys: Any) -> None:
    from fixtures_gcp import gcp_policy

    firestore_rest.write({f"users/u{i}": {"v": {"integerValue": str(i)}} for i in range(30)})
    firestore_rest.write({"users/u1/orders/o1": {"v": {"integerValue": "10"}}})
    policy = gcp_policy(tmp_path, project=gcp_project, bucket=gcs_bucket, collections=["users"],
                        dataset="profiles")
    assert cli(capsys, "--policy", str(policy), "run", "profiles")[0] == 0
    fresh = tmp_path / "fresh-machine"
    fresh.mkdir()
    script = _runbook("policy gcp").replace("BUCKET=acme-backups PREFIX=cloudkeep PROJECT=acme-prod", "")
    env = {**firestore_emulator.env(), **fake_gcs.env(), "DATASET": "profiles", "TARGET": "restored_",
           "BUCKET": gcs_bucket, "PREFIX": "backups/cloudkeep", "PROJECT": gcp_project}
    proc = run_bash(script, fresh, env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "last good snapshot: profiles@" in proc.stdout
    docs = firestore_rest.documents(under="restored_users")
    assert len(docs) == 31 and docs["restored_users/u1/orders/o1"] == {"v": {"integerValue": "10"}}


def test_emergency_runbook_restores_cosmos_from_blob_storage(
        azurite: Any, azure_container: str, cosmos_server: Any, cosmos_client: Any,
        cosmos_database: str, tmp_path: Path, capsys: Any) -> None:
    from azure.cosmos import PartitionKey

    from fixtures_azure import cosmos_policy

    container = cosmos_client.get_database_client(cosmos_database).create_container(
        "carts", partition_key=PartitionKey(path="/user"))
    for i in range(40):
        container.upsert_item({"id": f"c{i}", "user": f"u{i % 7}", "n": i})
    policy = cosmos_policy(tmp_path, endpoint=cosmos_server.endpoint, database=cosmos_database,
                           container="carts", store={"type": "azure_blob", "container": azure_container,
                                                     "prefix": "cloudkeep"})
    assert cli(capsys, "--policy", str(policy), "run", "carts")[0] == 0
    fresh = tmp_path / "fresh-machine"
    fresh.mkdir()
    doc = _runbook("policy azure")
    script = (doc.replace("ACCOUNT_URL=https://acmebackups.blob.core.windows.net CONTAINER=backups "
                          "PREFIX=cloudkeep", "")
                 .replace("COSMOS_ENDPOINT=https://acme.documents.azure.com:443/ DATABASE=shop "
                          "SOURCE_CONTAINER=carts", "")
                 # the emulator's self-signed certificate (a real account needs no such line)
                 .replace("container: $SOURCE_CONTAINER}", "container: $SOURCE_CONTAINER, verify_tls: false}"))
    assert "verify_tls: false" in script and "acmebackups" not in script
    env = {**azurite.env(), **cosmos_server.env(), "DATASET": "carts", "TARGET": "carts_restored",
           "ACCOUNT_URL": "http://127.0.0.1:1/unused", "CONTAINER": azure_container,
           "PREFIX": "cloudkeep", "COSMOS_ENDPOINT": cosmos_server.endpoint,
           "DATABASE": cosmos_database, "SOURCE_CONTAINER": "carts"}
    proc = run_bash(script, fresh, env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "last good snapshot: carts@" in proc.stdout
    restored = cosmos_client.get_database_client(cosmos_database).get_container_client("carts_restored")
    items = list(restored.read_all_items())
    assert sorted(i["n"] for i in items) == list(range(40))


def test_relative_links_in_the_docs_and_readme_resolve() -> None:
    root = DOCS.parent
    broken = []
    for page in [root / "README.md", *sorted(DOCS.glob("*.md"))]:
        text = re.sub(r"`[^`\n]*`", "", page.read_text())  # code spans hold no links
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (page.parent / target).exists():
                broken.append(f"{page.name}: {target}")
    assert broken == []
