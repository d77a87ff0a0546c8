"""Encryption end to end, as a user runs it: DynamoDB Local → an S3 store (moto server), the data
key made by AWS KMS (moto server's GenerateDataKey / Encrypt / Decrypt) and also wrapped by a local
key file; restore with either key alone; tampered manifests through every command; wrong and
missing keys (exit 3, no traceback); and secret hygiene: after a run with known secrets, none of
them appears in the logs, the command output, the manifests, the stored objects, the error
messages or the metrics."""

from __future__ import annotations

import base64
import json
import random
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from tools.sample_data import ORDERS_TABLE_SCHEMA, order_item

from cloudkeep.catalog import load_manifest
from cloudkeep.keys import Keyring
from cloudkeep.keys.local import read_key_file
from cloudkeep.policy import load_policy
from cloudkeep.registry import open_store
from conftest import REGION, unique
from helpers import cli, cli_json, scan_all

pytestmark = pytest.mark.emulator

MARKERS = ["ZEBRA-7c1e-plaintext", "customer#0", "order#000", "Zürich"]
AWS_SECRET = "SecretAccessKey-d41d8cd98f00b204e9800998ecf8427e"
COSMOS_SECRET = "CosmosKey-9a0364b9e99bb480dd25e1f0284c8555=="


def marked_item(i: int, rng: random.Random) -> dict[str, Any]:
    item = order_item(i, rng)
    item["note"] = f"{MARKERS[0]} {i} {item['note']}"
    item["secretish"] = {"memo": MARKERS[0], "n": Decimal(i)}
    item["raw"] = MARKERS[0].encode() + b"\x00"
    return item


@pytest.fixture
def env(moto_server: Any, ddb_resource: Any, tmp_path: Path, capsys: Any,
        monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    import boto3

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)  # moto and DynamoDB Local take any
    monkeypatch.setenv("COSMOS_KEY", COSMOS_SECRET)
    table = unique("orders")
    resource_table = ddb_resource.create_table(TableName=table, **ORDERS_TABLE_SCHEMA)
    resource_table.wait_until_exists()
    rng = random.Random(3)
    with resource_table.batch_writer() as batch:
        for i in range(300):
            batch.put_item(Item=marked_item(i, rng))
    kms = boto3.client("kms", region_name=REGION)
    key_id = kms.create_key(Description="cloudkeep test")["KeyMetadata"]["KeyId"]
    alias = f"alias/{unique('ck')}"
    kms.create_alias(AliasName=alias, TargetKeyId=key_id)
    bucket = f"vault-{unique('e').replace('_', '-')}"
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=bucket)
    code, out, err = cli(capsys, "keys", "create", "--path", str(tmp_path / "cloudkeep.key"))
    assert code == 0, err
    keys = {"main": {"provider": "aws_kms", "key_id": alias, "region": REGION},
            "offline": {"provider": "local", "path": "./cloudkeep.key"}}
    policy = write(tmp_path / "cloudkeep.yaml", table, bucket, keys, ["main", "offline"])
    return {"table": table, "bucket": bucket, "alias": alias, "tmp": tmp_path, "policy": str(policy),
            "keys": keys, "outputs": [out, err]}


def write(path: Path, table: str, bucket: str, keys: dict[str, Any], use: list[str]) -> Path:
    policy = {
        "version": 1,
        "keys": keys,
        "encryption": {"keys": use},
        "residency": {"allowed_regions": [REGION]},
        "stores": {"vault": {"type": "s3", "bucket": bucket, "region": REGION}},
        "tiers": {"standard": {"schedule": "0 2 * * *", "rpo": "26h", "retention": {"daily": 7}}},
        "datasets": {"orders": {"source": {"type": "dynamodb", "table": table, "region": REGION,
                                           "segments": 3},
                                "tier": "standard", "store": "vault"}},
    }
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    return path


def stored_objects(bucket: str) -> dict[str, bytes]:
    import boto3

    s3 = boto3.client("s3", region_name=REGION)
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            out[obj["Key"]] = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
    return out


def test_encrypted_backup_restore_and_secret_hygiene(env: dict[str, Any], ddb_client: Any,
                                                     capsys: Any) -> None:
    from cloudkeep.engine import backup
    from cloudkeep.metrics import LogSink, backup_metrics

    policy = env["policy"]
    outputs: list[str] = list(env["outputs"])

    def run(*args: str, expect: int = 0) -> str:
        code, out, err = cli(capsys, "--policy", policy, *args)
        outputs.extend([out, err])
        assert code == expect, err
        assert "Traceback" not in err
        return out

    run("validate")
    [row] = json.loads(run("--format", "json", "run", "orders"))
    ref = f"orders@{row['snapshot_id']}"
    assert row["status"] == "committed" and row["encrypted"] is True
    run("list")
    shown = json.loads(run("--format", "json", "show", ref))
    wrapped = shown["codec"]["encryption"]["keys"]
    assert [(k["key"], k["provider"]) for k in wrapped] == [("main", "aws_kms"), ("offline", "local")]
    assert wrapped[0]["key_id"] == env["alias"] and wrapped[0]["key_arn"].startswith("arn:aws:kms:")
    assert all(p["name"].endswith(".ndjson.zst.enc") for p in shown["parts"])
    run("show", ref)
    run("verify", ref)
    run("--debug", "verify", ref)
    target = unique("restored")
    run("restore", ref, "--into", target)
    assert scan_all(ddb_client, target) == scan_all(ddb_client, env["table"])

    # metrics of a run (as the functions emit them), through the log sink too
    loaded = load_policy(policy).policy
    result = backup(loaded, "orders")
    metrics = backup_metrics(loaded, result)
    for metric in metrics:
        LogSink().emit(metric)
    outputs.append(repr(metrics))
    outputs.append(capsys.readouterr().err)

    # a wrong key: exit 3, one clear line, still no secret
    other = env["tmp"] / "other"
    other.mkdir()
    code, out, err = cli(capsys, "keys", "create", "--path", str(other / "cloudkeep.key"))
    wrong = write(other / "cloudkeep.yaml", env["table"], env["bucket"],
                  {"offline": {"provider": "local", "path": "./cloudkeep.key"}}, ["offline"])
    code, out, err = cli(capsys, "--policy", str(wrong), "verify", ref)
    outputs.extend([out, err])
    assert code == 3, err
    assert "defines none of these keys" in err and "Traceback" not in err

    # what must never show: the AWS secret, the Cosmos key, the key file, the data keys
    key_file = (env["tmp"] / "cloudkeep.key").read_text()
    secrets = [AWS_SECRET, COSMOS_SECRET, key_file.split()[1]]
    raw_secrets = [read_key_file(env["tmp"] / "cloudkeep.key")]
    keyring = Keyring.from_policy(loaded)
    store = open_store(loaded.stores["vault"])
    for sid in (row["snapshot_id"], result.snapshot_id):
        data_key = keyring.data_key(load_manifest(store, "orders", str(sid)))
        assert data_key is not None
        raw_secrets.append(data_key)
        secrets += [data_key.hex(), base64.b64encode(data_key).decode()]
    objects = stored_objects(env["bucket"])
    assert any(k.endswith("manifest.json") for k in objects)
    for key, body in objects.items():
        for marker in MARKERS:
            assert marker.encode() not in body, f"plaintext {marker!r} in {key}"
        for secret in secrets:
            assert secret.encode() not in body, f"a secret in {key}"
        for secret_bytes in raw_secrets:
            assert secret_bytes not in body, f"a raw key in {key}"
    text = "\n".join(outputs)
    for secret in secrets:
        assert secret not in text, "a secret in the logs, output, errors or metrics"


def test_either_key_alone_restores(env: dict[str, Any], ddb_client: Any, capsys: Any) -> None:
    row = cli_json(capsys, "--policy", env["policy"], "run", "orders")[0]
    ref = f"orders@{row['snapshot_id']}"
    for name in ("main", "offline"):
        alone = write(env["tmp"] / f"{name}.yaml", env["table"], env["bucket"],
                      {name: env["keys"][name]}, [name])
        target = unique(f"via_{name}")
        code, _, err = cli(capsys, "--policy", str(alone), "restore", ref, "--into", target)
        assert code == 0, err
        assert len(scan_all(ddb_client, target)) == 300


def test_missing_key_file_and_denied_kms_fail_with_exit_3(env: dict[str, Any], capsys: Any) -> None:
    import boto3

    row = cli_json(capsys, "--policy", env["policy"], "run", "orders")[0]
    ref = f"orders@{row['snapshot_id']}"
    (env["tmp"] / "cloudkeep.key").unlink()
    only_local = write(env["tmp"] / "local.yaml", env["table"], env["bucket"],
                       {"offline": env["keys"]["offline"]}, ["offline"])
    for command in (["verify", ref], ["restore", ref, "--into", unique("never")], ["show", ref],
                    ["run", "orders"]):
        code, out, err = cli(capsys, "--policy", str(only_local), *command)
        assert code == 3, (command, out, err)
        assert "cloudkeep.key not found" in (err + out) and "Traceback" not in err
    # the KMS alias deleted: KMS refuses (the local key is gone too)
    boto3.client("kms", region_name=REGION).delete_alias(AliasName=env["alias"])
    code, _, err = cli(capsys, "--policy", env["policy"], "verify", ref)
    assert code == 3 and "aws_kms" in err and "NotFoundException" in err and "Traceback" not in err
    assert "cloudkeep.key not found" in err  # every key tried is named


def test_tampered_manifest_is_refused_or_reported_by_every_command(env: dict[str, Any],
                                                                  capsys: Any) -> None:
    import boto3

    policy = env["policy"]
    row = cli_json(capsys, "--policy", policy, "run", "orders")[0]
    ref = f"orders@{row['snapshot_id']}"
    key = f"orders/snapshots/{row['snapshot_id']}/manifest.json"
    s3 = boto3.client("s3", region_name=REGION)
    doc = json.loads(s3.get_object(Bucket=env["bucket"], Key=key)["Body"].read())
    doc["totals"]["items"] += 1
    doc["parts"][0]["items"] += 1
    s3.put_object(Bucket=env["bucket"], Key=key, Body=json.dumps(doc).encode())

    code, out, err = cli(capsys, "--policy", policy, "verify", ref)
    assert code == 1 and "manifest authentication" in out and "failed authentication" in out
    code, out, err = cli(capsys, "--policy", policy, "list")
    assert code == 1 and "TAMPERED" in out and "failed authentication" in err
    for command in (["show", ref], ["restore", ref, "--into", unique("never")]):
        code, out, err = cli(capsys, "--policy", policy, *command)
        assert code == 1, (command, err)
        assert "failed authentication" in err and "Traceback" not in err
    code, out, err = cli(capsys, "--policy", policy, "--format", "json", "prune", "--dry-run")
    report = json.loads(out)[0]
    assert code == 1 and any("failed authentication" in e for e in report["errors"])
    assert row["snapshot_id"] not in [s["snapshot_id"] for s in report["snapshots"]
                                      if s["action"] == "remove"]


def test_validate_checks_residency_with_field_paths(env: dict[str, Any], capsys: Any) -> None:
    doc = yaml.safe_load(Path(env["policy"]).read_text())
    doc["residency"] = {"allowed_regions": ["eu-west-1"]}
    path = env["tmp"] / "eu.yaml"
    path.write_text(yaml.safe_dump(doc))
    code, out, err = cli(capsys, "--policy", str(path), "validate")
    assert code == 2
    assert f"stores.vault.region: store region '{REGION}' is outside residency.allowed_regions" in err
    assert f"datasets.orders.source.region: source region '{REGION}' is outside" in err
