"""``cloudkeep init``: a commented starter that validates, never overwriting a file without
--force; ``--discover`` proposes datasets for what the credentials see in DynamoDB Local, the
Firestore emulator and the Cosmos DB server, and reports a failing or unconfigured cloud without
giving up on the others."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from cloudkeep.policy import load_policy
from conftest import unique
from helpers import cli

pytestmark = pytest.mark.emulator

CLOUD_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_REGION",
              "AWS_DEFAULT_REGION", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_SHARED_CREDENTIALS_FILE",
              "AWS_CONFIG_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
              "AWS_CONTAINER_CREDENTIALS_FULL_URI", "FIRESTORE_EMULATOR_HOST",
              "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT",
              "CLOUDSDK_CORE_PROJECT", "COSMOS_ENDPOINT")


@pytest.fixture
def bare_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No cloud configured: no credential variables, an empty home."""
    for name in CLOUD_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def test_starter_policy_is_commented_and_valid(bare_env: Any, tmp_path: Path, capsys: Any) -> None:
    code, out, err = cli(capsys, "init")
    assert code == 0, err
    path = tmp_path / "cloudkeep.yaml"
    text = path.read_text()
    assert text.count("\n#") + text.count("  #") > 15  # it explains itself
    policy = load_policy(str(path)).policy
    assert set(policy.tiers) == {"critical", "standard"} and "orders" in policy.datasets
    code, out, err = cli(capsys, "validate")  # ./cloudkeep.yaml by default
    assert code == 0 and ": OK" in out, err


def test_init_refuses_to_overwrite_without_force(bare_env: Any, tmp_path: Path, capsys: Any) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("precious: true\n")
    code, _, err = cli(capsys, "init", "--output", str(path))
    assert code == 2 and "already exists" in err and "--force" in err
    assert path.read_text() == "precious: true\n"
    code, _, err = cli(capsys, "init", "--output", str(path), "--force")
    assert code == 0, err
    assert "version: 1" in path.read_text()


def test_discover_without_any_cloud_configured_says_so(bare_env: Any, tmp_path: Path,
                                                       capsys: Any) -> None:
    code, out, err = cli(capsys, "--format", "json", "init", "--discover")
    assert code == 0, err
    report = json.loads(out)
    assert [(c["cloud"], c["attempted"]) for c in report["discovery"]] == [
        ("aws", False), ("gcp", False), ("azure", False)]
    assert report["datasets"] == []
    load_policy(report["written"])  # still a valid policy


def test_discover_proposes_tables_collections_and_containers(
        bare_env: pytest.MonkeyPatch, tmp_path: Path, capsys: Any, ddb_local: Any,
        firestore_emulator: Any, firestore_rest: Any, gcp_project: str, cosmos_server: Any,
        cosmos_client: Any, cosmos_database: str) -> None:
    for key, value in {**ddb_local.env(), **firestore_emulator.env(), **cosmos_server.env()}.items():
        bare_env.setenv(key, value)
    bare_env.setenv("AWS_REGION", "us-east-1")
    import boto3

    table = unique("init_orders")
    boto3.client("dynamodb", region_name="us-east-1").create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
    firestore_rest.write({"profiles/a": {"n": {"integerValue": "1"}},
                          "audit log/b": {"n": {"integerValue": "2"}}})
    from azure.cosmos import PartitionKey

    cosmos_client.get_database_client(cosmos_database).create_container(
        "carts", partition_key=PartitionKey(path="/user"))
    code, out, err = cli(capsys, "init", "--discover", "--gcp-project", gcp_project,
                         "--cosmos-endpoint", cosmos_server.endpoint)
    assert code == 0, err
    assert "aws: " in out and "gcp: 2 found" in out and "azure: " in out
    path = tmp_path / "cloudkeep.yaml"
    policy = load_policy(str(path)).policy
    sources = {name: d.source for name, d in policy.datasets.items()}
    assert sources[table].type == "dynamodb" and sources[table].table == table  # type: ignore[union-attr]
    assert sources["profiles"].collections == ["profiles"]  # type: ignore[union-attr]
    assert sources["audit-log"].collections == ["audit log"]  # type: ignore[union-attr]
    carts = sources[f"{cosmos_database}-carts"]
    assert carts.type == "cosmos" and carts.container == "carts"  # type: ignore[union-attr]
    assert carts.verify_tls is False  # type: ignore[union-attr]  # the emulator's certificate
    raw = yaml.safe_load(path.read_text())
    assert all(d["tier"] == "standard" and d["store"] == "local" for d in raw["datasets"].values())


def test_discover_reports_a_failing_cloud_and_proposes_the_others(
        bare_env: pytest.MonkeyPatch, tmp_path: Path, capsys: Any, firestore_emulator: Any,
        firestore_rest: Any, gcp_project: str) -> None:
    bare_env.setenv("AWS_ACCESS_KEY_ID", "testing")
    bare_env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    bare_env.setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:9")  # nothing listens there
    bare_env.setenv("AWS_REGION", "us-east-1")
    bare_env.setenv("COSMOS_ENDPOINT", "https://127.0.0.1:9")
    bare_env.setenv("COSMOS_KEY", "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw==")
    for key, value in firestore_emulator.env().items():
        bare_env.setenv(key, value)
    firestore_rest.write({"users/u1": {"n": {"integerValue": "1"}}})
    code, out, err = cli(capsys, "--format", "json", "init", "--discover", "--gcp-project", gcp_project)
    assert code == 0, err
    report = json.loads(out)
    by_cloud = {c["cloud"]: c for c in report["discovery"]}
    assert by_cloud["aws"]["attempted"] and by_cloud["aws"]["error"]
    assert by_cloud["azure"]["attempted"] and by_cloud["azure"]["error"]
    assert by_cloud["gcp"]["error"] is None and report["datasets"] == ["users"]
    text = Path(report["written"]).read_text()
    assert "# DynamoDB: could not list" in text and "# Cosmos DB: could not list" in text
    assert "C2y6yDjf5" not in text + out  # no secret in the file or the output
