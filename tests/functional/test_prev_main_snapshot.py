"""A snapshot written by the previous main (commit 3d89ddb, before #20) verifies and restores with
this code: tests/fixtures/prev-main holds its file store (one DynamoDB dataset encrypted with a
local key and signed, one unencrypted but signed), the policy and key it was written with, and
the items it was written from (README.md there tells how it was made). The fixture is copied to
``tmp_path`` first: verify records its reports in the store, and the key file must be 0600."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from cloudkeep.sources.dynamodb import DynamoDBSource
from conftest import REGION, unique
from helpers import cli, cli_json, scan_all

pytestmark = pytest.mark.emulator

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "prev-main"


def _bytes(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__b64__"}:
            return base64.b64decode(value["__b64__"])
        return {k: _bytes(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_bytes(v) for v in value]
    return value


@pytest.fixture
def prev(tmp_path: Path) -> Path:
    copy = tmp_path / "prev-main"
    shutil.copytree(FIXTURE, copy, ignore=shutil.ignore_patterns("*.py", "README.md", "__pycache__"))
    (copy / "local.key").chmod(0o600)
    return copy


@pytest.mark.parametrize("dataset", ["orders", "catalog"])
def test_a_previous_main_snapshot_verifies_and_restores(
    prev: Path, dataset: str, ddb_client: Any, capsys: Any,
) -> None:
    expected = json.loads((prev / "expected.json").read_text())[dataset]
    policy = str(prev / "cloudkeep.yaml")
    ref = f"{dataset}@{expected['snapshot_id']}"

    shown = cli_json(capsys, "--policy", policy, "show", ref)
    assert json.dumps(shown).count(expected["content_digest"]) >= 1
    report = cli_json(capsys, "--policy", policy, "verify", ref)
    reports = report if isinstance(report, list) else [report]
    assert [r["ok"] for r in reports] == [True] and reports[0]["items"] == expected["items"]

    target = unique("prevmain")
    cli_json(capsys, "--policy", policy, "restore", ref, "--into", target)
    # The oracle: the items written before the backup, put into a table of their own (so
    # DynamoDB normalizes numbers the same way), read back independently of cloudkeep.
    oracle = unique("oracle")
    ddb_client.create_table(
        TableName=oracle, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "N"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                   {"AttributeName": "sk", "KeyType": "RANGE"}])
    for item in expected["written"]:
        ddb_client.put_item(TableName=oracle, Item=_bytes(item))
    want = scan_all(ddb_client, oracle)
    assert len(want) == expected["items"]
    assert scan_all(ddb_client, target) == want
    assert DynamoDBSource(target, REGION).scan_digest(target) == (
        expected["items"], expected["content_digest"])

    # and a restore still refuses the now non-empty target
    code, _, err = cli(capsys, "--policy", policy, "restore", ref, "--into", target)
    assert code != 0 and "not empty" in err


def test_the_fixture_was_written_by_the_previous_main() -> None:
    made = json.loads((FIXTURE / "expected.json").read_text())["made_with"]
    assert made["commit"].startswith("3d89ddb")
    manifest = json.loads(next((FIXTURE / "store" / "orders" / "snapshots").glob("*/manifest.json"))
                          .read_text())
    assert manifest["codec"]["encryption"]["algorithm"] == "AES-256-GCM"
    assert manifest["authentication"]["algorithm"] == "HMAC-SHA256"
