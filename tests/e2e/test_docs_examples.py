"""The shell examples of docs/ that touch the emulators, run as written (issue 19.8): so the
docs cannot drift from the code.

Every fenced ``sh`` block in docs/ that runs ``cloudkeep`` and needs no real cloud account
(nothing signs in, deploys or opens an editor) must be marked ``<!-- test: NAME -->`` (or
``<!-- runbook: NAME -->``, run by ``test_runbook.py``) right above it; each block marked in the
cloud pages (aws.md, gcp.md, azure.md) is run here with bash -euo pipefail, in a working folder
whose ``cloudkeep.yaml`` names the dataset the block uses, against the emulators, after a first
backup — and what it did is checked.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from tools.sample_data import ORDERS_TABLE_SCHEMA, seed

from conftest import REGION, unique
from helpers import scan_all

pytestmark = pytest.mark.emulator

DOCS = Path(__file__).resolve().parents[2] / "docs"
VENV_BIN = str(Path(sys.executable).parent)
MARK = re.compile(r"<!-- (test|runbook): ([\w ]+?) -->\s*\n\s*```(\w+)[^\n]*\n(.*?)```", re.S)
BLOCK = re.compile(r"^\s*```sh[^\n]*\n(.*?)^\s*```", re.S | re.M)
# What makes a block need a real cloud account (or a person): it is not for the emulators.
RUNS_CLOUDKEEP = re.compile(r"(?m)^\s*cloudkeep\s|\bfrom cloudkeep\b|\bimport cloudkeep\b")
REAL_CLOUD = re.compile(r"AWS_PROFILE=|\bgcloud\b|\baz\b|\bosls\b|aws lambda|\bcurl\b|\$EDITOR|"
                        r"\bpip\b|\bterraform\b|\bfunc\b")


def marked(doc: str) -> dict[str, str]:
    """NAME → script of the blocks of ``doc`` marked ``<!-- test: NAME -->``."""
    return {name: body for kind, name, _, body in MARK.findall((DOCS / doc).read_text())
            if kind == "test"}


def run_block(script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``script`` in bash -euo pipefail, in ``cwd``, with the emulators' environment and the
    project's virtualenv first on PATH (``cloudkeep`` and ``python`` as a user has them)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUDKEEP_", "PYTEST"))}
    env |= {"PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin", "HOME": str(cwd)}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=300)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def cloudkeep(cwd: Path, *args: str) -> Any:
    return json.loads(run_block(f"cloudkeep --format json {' '.join(args)}", cwd).stdout)


def test_every_emulator_example_in_docs_is_marked_and_run() -> None:
    unmarked = []
    for doc in sorted(DOCS.glob("*.md")):
        text = doc.read_text()
        covered = {body.strip() for _, _, _, body in MARK.findall(text)}
        for body in BLOCK.findall(text):
            if RUNS_CLOUDKEEP.search(body) and not REAL_CLOUD.search(body) \
                    and body.strip() not in covered:
                unmarked.append(f"{doc.name}: {body.strip().splitlines()[0]}")
    assert unmarked == []
    assert set(marked("aws.md")) == {"dynamodb restore"}
    assert set(marked("gcp.md")) == {"firestore restore", "firestore digest check"}
    assert set(marked("azure.md")) == {"cosmos restore"}
    assert set(marked("partial-restore.md")) == {"partial restore"}


def test_aws_restore_example(ddb_resource: Any, ddb_client: Any, tmp_path: Path) -> None:
    table = unique("orders")
    handle = ddb_resource.create_table(TableName=table, **ORDERS_TABLE_SCHEMA)
    handle.wait_until_exists()
    seed(handle, 60)
    (tmp_path / "cloudkeep.yaml").write_text(yaml.safe_dump({
        "version": 1, "stores": {"vault": {"type": "file", "path": "vault"}},
        "tiers": {"standard": {"schedule": "0 2 * * *", "rpo": "26h", "retention": {"daily": 7}}},
        "datasets": {"orders": {"source": {"type": "dynamodb", "table": table, "region": REGION},
                                "tier": "standard", "store": "vault"}}}))
    if "orders_restored" in ddb_client.list_tables()["TableNames"]:  # the example's fixed name
        ddb_client.delete_table(TableName="orders_restored")
        ddb_client.get_waiter("table_not_exists").wait(TableName="orders_restored")
    cloudkeep(tmp_path, "run", "orders")
    done = run_block(marked("aws.md")["dynamodb restore"], tmp_path)
    assert "restored orders@" in done.stdout
    assert scan_all(ddb_client, "orders_restored") == scan_all(ddb_client, table)


def test_partial_restore_example(ddb_client: Any, tmp_path: Path) -> None:
    """The three corrupted items of the live table ``orders`` are repaired from the snapshot by
    the example's commands; the dry run first changes nothing; every other item stays as it is."""
    if "orders" in ddb_client.list_tables()["TableNames"]:  # the example's fixed name
        ddb_client.delete_table(TableName="orders")
        ddb_client.get_waiter("table_not_exists").wait(TableName="orders")
    ddb_client.create_table(
        TableName="orders", BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                   {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "N"}])
    ddb_client.get_waiter("table_exists").wait(TableName="orders")

    def put(i: int, total: str) -> None:
        ddb_client.put_item(TableName="orders", Item={
            "pk": {"S": f"user#{i:03d}"}, "sk": {"N": str(i % 3)}, "total": {"N": total}})

    for i in range(20):
        put(i, str(i))
    (tmp_path / "cloudkeep.yaml").write_text(yaml.safe_dump({
        "version": 1, "stores": {"vault": {"type": "file", "path": "vault"}},
        "tiers": {"standard": {"schedule": "0 2 * * *", "rpo": "26h", "retention": {"daily": 7}}},
        "datasets": {"orders": {"source": {"type": "dynamodb", "table": "orders", "region": REGION},
                                "tier": "standard", "store": "vault"}}}))
    cloudkeep(tmp_path, "run", "orders")
    for i in (3, 7, 11):
        put(i, "-1")  # corrupted
    put(5, "500")  # changed since the snapshot, on purpose: must stay
    before = scan_all(ddb_client, "orders")
    done = run_block(marked("partial-restore.md")["partial restore"], tmp_path)
    dry, _ = json.JSONDecoder().raw_decode(done.stdout.lstrip())
    assert dry["dry_run"] is True and dry["changed"] == 3 and dry["put"] == 3
    assert "restored 3 selected items" in done.stdout
    after = {item["pk"]["S"]: item["total"]["N"] for item in scan_all(ddb_client, "orders").values()}
    assert after["user#003"] == "3" and after["user#007"] == "7" and after["user#011"] == "11"
    assert after["user#005"] == "500" and len(after) == len(before) == 20


def test_gcp_restore_and_digest_check_examples(firestore_rest: Any, gcp_project: str,
                                                tmp_path: Path) -> None:
    """With ``rewrite_references: true`` the restored copy's references point at the copies;
    the digest check of the docs still finds the manifest's digest."""
    root = f"projects/{gcp_project}/databases/(default)/documents"
    firestore_rest.write({
        **{f"users/u{i}": {"n": {"integerValue": str(i)},
                           "team": {"referenceValue": f"{root}/teams/t{i % 2}"}} for i in range(6)},
        "teams/t0": {"name": {"stringValue": "zero"}},
        "teams/t1": {"name": {"stringValue": "one"}},
        "users/u1/orders/o1": {"total": {"doubleValue": 9.5}},
    })
    (tmp_path / "cloudkeep.yaml").write_text(yaml.safe_dump({
        "version": 1, "stores": {"vault": {"type": "file", "path": "vault"}},
        "tiers": {"standard": {"schedule": "0 2 * * *", "rpo": "26h", "retention": {"daily": 7}}},
        "datasets": {"profiles": {"source": {"type": "firestore", "project": gcp_project,
                                             "collections": ["users", "teams"],
                                             "rewrite_references": True},
                                  "tier": "standard", "store": "vault"}}}))
    cloudkeep(tmp_path, "run", "profiles")
    blocks = marked("gcp.md")
    run_block(blocks["firestore restore"], tmp_path)
    restored = firestore_rest.documents("restored_users")
    assert restored["restored_users/u3"]["team"] == {"referenceValue": f"{root}/restored_teams/t1"}
    checked = run_block(blocks["firestore digest check"], tmp_path)
    assert "the same digest as restored_" in checked.stdout


def test_azure_restore_example(cosmos_server: Any, cosmos_client: Any, cosmos_database: str,
                               azure_container: str, azurite: Any, tmp_path: Path) -> None:
    from fixtures_azure import cosmos_policy

    container = cosmos_client.get_database_client(cosmos_database).create_container(
        id="carts", partition_key={"paths": ["/pk"], "kind": "Hash"})
    for i in range(25):
        container.upsert_item({"id": f"c{i}", "pk": f"p{i % 3}", "total": i})
    path = cosmos_policy(tmp_path, endpoint=cosmos_server.endpoint, database=cosmos_database,
                         container="carts",
                         store={"type": "azure_blob", "container": azure_container,
                                "connection_string_env": "AZURE_STORAGE_CONNECTION_STRING"})
    policy = yaml.safe_load(path.read_text())
    policy["stores"]["offsite"] = {"type": "file", "path": "offsite"}
    policy["datasets"]["carts"]["copy_to"] = ["offsite"]
    path.write_text(yaml.safe_dump(policy))
    cloudkeep(tmp_path, "run", "carts")
    run_block(marked("azure.md")["cosmos restore"], tmp_path)
    database = cosmos_client.get_database_client(cosmos_database)

    def items(name: str) -> dict[str, Any]:
        return {d["id"]: d["total"] for d in
                database.get_container_client(name).read_all_items()}

    assert items("carts_restored") == items("carts") == items("carts_from_copy")
    assert len(items("carts")) == 25
