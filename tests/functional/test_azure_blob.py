"""The Azure Blob store in use (Azurite): a DynamoDB dataset backed up into it, verified (a
corrupted blob is caught), copied there from a file store and restored from the copy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tools.sample_data import ORDERS_TABLE_SCHEMA, seed

from cloudkeep import layout
from conftest import unique
from helpers import cli, cli_json, scan_all

pytestmark = pytest.mark.emulator


@pytest.fixture
def table(ddb_resource: Any) -> str:
    name = unique("orders")
    created = ddb_resource.create_table(TableName=name, **ORDERS_TABLE_SCHEMA)
    created.wait_until_exists()
    seed(created, 150)
    return name


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "cloudkeep.yaml"
    path.write_text(text)
    return str(path)


def test_backup_verify_and_a_corrupted_blob(tmp_path: Path, table: str, azure_container: str,
                                            azurite: Any, capsys: Any) -> None:
    from azure.storage.blob import BlobServiceClient

    policy = write(tmp_path, f"""
version: 1
stores: {{vault: {{type: azure_blob, container: {azure_container}, prefix: backups}}}}
tiers: {{t: {{schedule: "0 * * * *", rpo: 2h, retention: {{last: 3}}}}}}
datasets: {{orders: {{source: {{type: dynamodb, table: {table}, region: us-east-1}}, tier: t, store: vault}}}}
""")
    code, _, err = cli(capsys, "--policy", policy, "run", "orders")
    assert code == 0, err
    [row] = cli_json(capsys, "--policy", policy, "list")
    assert row["items"] == 150
    assert cli(capsys, "--policy", policy, "verify", "orders@latest")[0] == 0

    shown = cli_json(capsys, "--policy", policy, "show", "orders@latest")
    part = shown["parts"][0]["name"]
    blob = BlobServiceClient.from_connection_string(azurite.connection_string).get_blob_client(
        azure_container, "backups/" + layout.part_key("orders", row["snapshot_id"], part))
    data = bytearray(blob.download_blob().readall())
    data[len(data) // 3] ^= 0x40
    blob.upload_blob(bytes(data), overwrite=True)
    code, out, _ = cli(capsys, "--policy", policy, "--format", "json", "verify", "orders@latest")
    assert code == 1
    problems = json.loads(out)["problems"]
    assert (part, "sha256") in {(p["part"], p["check"]) for p in problems}


def test_a_copy_to_azure_blob_restores(tmp_path: Path, table: str, azure_container: str,
                                       capsys: Any, ddb_client: Any) -> None:
    policy = write(tmp_path, f"""
version: 1
stores:
  local: {{type: file, path: vault}}
  azure: {{type: azure_blob, container: {azure_container}, prefix: copies}}
tiers: {{t: {{schedule: "0 * * * *", rpo: 2h, retention: {{last: 1}}, copy_to: [azure]}}}}
datasets: {{orders: {{source: {{type: dynamodb, table: {table}, region: us-east-1}}, tier: t, store: local}}}}
""")
    code, out, err = cli(capsys, "--policy", policy, "--format", "json", "run", "orders")
    assert code == 0, err
    assert [(c["store"], c["verified"]) for c in json.loads(out)[0]["copies"]] == [("azure", True)]
    [row] = cli_json(capsys, "--policy", policy, "list")
    assert row["copies"] == ["azure"]
    target = unique("from_azure")
    code, _, err = cli(capsys, "--policy", policy, "restore", "orders@latest", "--store", "azure",
                       "--into", target)
    assert code == 0, err
    assert scan_all(ddb_client, target) == scan_all(ddb_client, table)


def test_missing_container_or_credentials_is_unreachable(tmp_path: Path, azurite: Any) -> None:
    policy = write(tmp_path, """
version: 1
stores: {vault: {type: azure_blob, container: no-such-container}}
tiers: {t: {schedule: "0 * * * *", rpo: 2h, retention: {last: 3}}}
datasets: {orders: {source: {type: dynamodb, table: some_table, region: us-east-1}, tier: t, store: vault}}
""")
    exe = str(Path(sys.executable).parent / "cloudkeep")
    listed = subprocess.run([exe, "--policy", policy, "list"], capture_output=True, text=True,
                            timeout=120)
    assert listed.returncode == 3 and "container not found" in listed.stderr
    assert "Traceback" not in listed.stderr
    env = {k: v for k, v in os.environ.items() if k != "AZURE_STORAGE_CONNECTION_STRING"}
    bare = subprocess.run([exe, "--policy", policy, "list"], capture_output=True, text=True,
                          timeout=120, env=env)
    assert bare.returncode == 3 and "AZURE_STORAGE_CONNECTION_STRING" in bare.stderr
    assert "AccountKey" not in listed.stderr + bare.stderr  # the secret never shows


def test_immutability_where_the_container_lacks_it_fails_clearly(
        tmp_path: Path, table: str, azure_container: str, azurite: Any, capsys: Any) -> None:
    """Azurite accepts a blob's immutability policy and drops it (and answers 501 to setting one
    later): cloudkeep must say so, not pass the blobs off as immutable."""
    from datetime import UTC, datetime, timedelta

    from cloudkeep.errors import StoreError
    from cloudkeep.stores.azure_blob import AzureBlobStore

    store = AzureBlobStore(azure_container, "imm", connection_string=azurite.connection_string,
                           immutability_mode="Unlocked")
    assert store.capabilities.object_lock
    until = datetime.now(UTC) + timedelta(days=30)
    with pytest.raises(StoreError, match="does not support version-level immutability"):
        store.put("a/part", b"data", if_absent=True, retain_until=until)
    assert list(store.list("")) == []  # the unprotected blob was not left behind
    store.put("a/plain", b"data")  # without a retain-until date: an ordinary write
    for operation in (lambda: store.extend_retention("a/plain", until),
                      lambda: store.set_legal_hold("a/plain", True)):
        with pytest.raises(StoreError, match="does not support version-level immutability"):
            operation()

    policy = write(tmp_path, f"""
version: 1
stores: {{vault: {{type: azure_blob, container: {azure_container}, prefix: locked,
                  immutability: {{mode: Unlocked}}}}}}
tiers: {{t: {{schedule: "0 * * * *", rpo: 2h, retention: {{last: 3}}}}}}
datasets: {{orders: {{source: {{type: dynamodb, table: {table}, region: us-east-1}}, tier: t, store: vault}}}}
""")
    code, _, err = cli(capsys, "--policy", policy, "run", "orders")
    assert code == 1 and "does not support version-level immutability" in err
    assert "Traceback" not in err
    assert cli_json(capsys, "--policy", policy, "list") == []
    leftovers = [i.key for i in AzureBlobStore(azure_container, "locked",
                 connection_string=azurite.connection_string).list("orders/snapshots/")]
    # No part was written; only the run's plan (the backup path never deletes: prune removes it).
    assert [k.rsplit("/", 2)[-2:] for k in leftovers] == [["checkpoints", "run.json"]]
