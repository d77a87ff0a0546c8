"""Backup → verify → restore of DynamoDB tables (DynamoDB Local) into file and S3 (moto) stores.

The corpus covers every DynamoDB type and the edges: 38-digit numbers, binary with NUL bytes,
empty strings and binary, all three set types, deep nesting, unicode keys and values, and items
near the 400 KB limit. Source and restored tables are compared item by item.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from cloudkeep.catalog import resolve
from cloudkeep.engine import RunOptions, backup
from cloudkeep.policy import load_policy
from cloudkeep.restore import restore
from cloudkeep.verify import verify_integrity
from conftest import REGION, unique, write_policy
from helpers import cli, cli_json, scan_all

pytestmark = pytest.mark.emulator


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"S": "bottom"}
    for i in range(depth):
        value = {"M": {f"level{i}": value, "list": {"L": [value, {"N": str(i)}]}}} if i < 3 else {"M": {f"level{i}": value}}
    return value


def corpus() -> list[dict[str, Any]]:
    """Items in low-level (typed) form."""
    items: list[dict[str, Any]] = [
        {"pk": {"S": "numbers"}, "sk": {"S": "0"},
         "big": {"N": "99999999999999999999999999999999999999"},
         "neg": {"N": "-99999999999999999999999999999999999999"},
         "tiny": {"N": "1E-130"},
         "huge": {"N": "9.9999999999999999999999999999999999999E+125"},
         "frac": {"N": "0.12345678901234567890123456789012345678"},
         "zero": {"N": "0"}},
        {"pk": {"S": "binary"}, "sk": {"S": "0"},
         "nul": {"B": b"\x00\x00abc\x00\xff\xfe"},
         "empty": {"B": b""},
         "all": {"B": bytes(range(256))}},
        {"pk": {"S": "strings"}, "sk": {"S": "0"},
         "empty": {"S": ""},
         "newline": {"S": "line1\nline2\r\n\ttab \"quoted\" \\ backslash"},
         "nul_char": {"S": "a\u0000b"},
         "unicode": {"S": "東京 café naïve κόσμε 🚀 \u200b"}},
        {"pk": {"S": "sets"}, "sk": {"S": "0"},
         "ss": {"SS": ["b", "a", "ü", "🚀"]},
         "ns": {"NS": ["3", "-1", "99999999999999999999999999999999999999", "0.5"]},
         "bs": {"BS": [b"\x00", b"\xff\x00", b"abc"]}},
        {"pk": {"S": "misc"}, "sk": {"S": "0"},
         "t": {"BOOL": True}, "f": {"BOOL": False}, "null": {"NULL": True},
         "empty_list": {"L": []}, "empty_map": {"M": {}},
         "mixed": {"L": [{"S": "x"}, {"N": "1"}, {"B": b"\x00"}, {"NULL": True},
                         {"SS": ["q"]}, {"M": {"k": {"BOOL": False}}}]}},
        {"pk": {"S": "nested"}, "sk": {"S": "0"}, "deep": _nested(28)},
        {"pk": {"S": "ключ-юникод"}, "sk": {"S": "名前"},
         "名前": {"S": "値"}, "ключ": {"N": "42"}, "emoji🚀": {"SS": ["🚀", "✨"]}},
        {"pk": {"S": "large"}, "sk": {"S": "0"}, "blob": {"S": "x" * 399_000}},
        {"pk": {"S": "large"}, "sk": {"S": "1"}, "bin": {"B": random.Random(1).randbytes(398_000)}},
    ]
    rng = random.Random(3)
    for i in range(300):
        items.append({
            "pk": {"S": f"bulk#{i % 17}"}, "sk": {"S": f"{i:06d}"},
            "n": {"N": str(rng.randint(-10**20, 10**20))},
            "s": {"S": "".join(rng.choice("abcé東🚀") for _ in range(rng.randint(0, 40)))},
            "l": {"L": [{"N": str(rng.random())} for _ in range(rng.randint(0, 5))]},
        })
    return items


def make_table(client: Any, name: str, *, gsi: bool = True) -> None:
    params: dict[str, Any] = {
        "TableName": name,
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"},
                      {"AttributeName": "sk", "KeyType": "RANGE"}],
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"},
                                 {"AttributeName": "sk", "AttributeType": "S"}],
        "BillingMode": "PAY_PER_REQUEST",
    }
    if gsi:
        params["AttributeDefinitions"].append({"AttributeName": "g", "AttributeType": "N"})
        params["GlobalSecondaryIndexes"] = [{
            "IndexName": "by_g",
            "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
            "Projection": {"ProjectionType": "KEYS_ONLY"},
        }]
        params["LocalSecondaryIndexes"] = [{
            "IndexName": "by_pk_n",
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"},
                          {"AttributeName": "g", "KeyType": "RANGE"}],
            "Projection": {"ProjectionType": "ALL"},
        }]
    client.create_table(**params)
    client.get_waiter("table_exists").wait(TableName=name)


def fill(client: Any, name: str, items: list[dict[str, Any]]) -> None:
    for item in items:  # one by one: the large items would not fit a batch of 25
        client.put_item(TableName=name, Item=item)


@pytest.fixture(params=["file", "s3"])
def store_spec(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    if request.param == "file":
        return {"type": "file", "path": str(tmp_path / "vault")}
    bucket = request.getfixturevalue("s3_bucket")
    return {"type": "s3", "bucket": bucket, "prefix": "backups/cloudkeep", "region": REGION}


def test_round_trip_is_lossless_for_every_type(
    ddb_client: Any, tmp_path: Path, capsys: Any, store_spec: dict[str, Any]
) -> None:
    table = unique("corpus")
    make_table(ddb_client, table)
    items = corpus()
    fill(ddb_client, table, items)
    policy = write_policy(tmp_path, table=table, store=store_spec)

    code, out, err = cli(capsys, "--policy", str(policy), "run", "orders")
    assert code == 0, err
    listed = cli_json(capsys, "--policy", str(policy), "list", "orders")
    assert len(listed) == 1 and listed[0]["items"] == len(items)
    ref = f"orders@{listed[0]['snapshot_id']}"

    code, out, err = cli(capsys, "--policy", str(policy), "verify", ref)
    assert code == 0, out + err
    assert "OK" in out

    target = unique("restored")
    code, out, err = cli(capsys, "--policy", str(policy), "restore", ref, "--into", target)
    assert code == 0, err

    source_items = scan_all(ddb_client, table)
    restored_items = scan_all(ddb_client, target)
    assert len(source_items) == len(items)
    assert restored_items.keys() == source_items.keys()
    for key, item in source_items.items():
        assert restored_items[key] == item, f"item {key} differs after restore"

    # The target got the source's key schema and secondary indexes.
    desc = ddb_client.describe_table(TableName=target)["Table"]
    assert [i["IndexName"] for i in desc.get("GlobalSecondaryIndexes", [])] == ["by_g"]
    assert [i["IndexName"] for i in desc.get("LocalSecondaryIndexes", [])] == ["by_pk_n"]
    assert desc["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert desc["KeySchema"] == ddb_client.describe_table(TableName=table)["Table"]["KeySchema"]


def test_small_parts_split_segments_and_still_restore(ddb_client: Any, tmp_path: Path) -> None:
    table = unique("parts")
    make_table(ddb_client, table, gsi=False)
    items = [i for i in corpus() if i["pk"]["S"] != "large"]
    fill(ddb_client, table, items)
    policy_path = write_policy(tmp_path, table=table, segments=3)
    policy = load_policy(str(policy_path)).policy

    result = backup(policy, "orders", options=RunOptions(part_size=2048))
    manifest = result.manifest
    assert manifest is not None and result.status == "committed"
    assert manifest.segments == 3
    assert manifest.totals.items == len(items)
    assert manifest.totals.parts > 6, "a 4 KiB part size must split segments into several parts"
    assert sum(p.items for p in manifest.parts) == len(items)
    assert manifest.totals.stored_bytes < manifest.totals.raw_bytes

    store, loaded = resolve(policy, "orders@latest")
    assert loaded == manifest
    report = verify_integrity(store, loaded)
    assert report.ok, report.problems
    assert report.items == len(items)

    target = unique("parts_restored")
    done = restore(policy, store, loaded, target)
    assert done.items == len(items) and done.digest_ok
    assert scan_all(ddb_client, target) == scan_all(ddb_client, table)


def test_empty_table_gives_an_empty_snapshot_that_restores(
    ddb_client: Any, tmp_path: Path, capsys: Any
) -> None:
    table = unique("empty")
    make_table(ddb_client, table, gsi=False)
    policy = write_policy(tmp_path, table=table)
    assert cli(capsys, "--policy", str(policy), "run", "orders")[0] == 0
    listed = cli_json(capsys, "--policy", str(policy), "list")
    assert [r["items"] for r in listed] == [0]
    assert cli(capsys, "--policy", str(policy), "verify", "orders@latest")[0] == 0
    target = unique("empty_restored")
    code, _, err = cli(capsys, "--policy", str(policy), "restore", "orders@latest", "--into", target)
    assert code == 0, err
    assert ddb_client.describe_table(TableName=target)["Table"]["TableStatus"] == "ACTIVE"


def test_binary_keys_page_through_the_raw_scan(ddb_client: Any, tmp_path: Path) -> None:
    """Scan pages come unparsed: a binary LastEvaluatedKey must go back as bytes, not base64."""
    from cloudkeep.sources.dynamodb import DynamoDBSource

    table = unique("binkeys")
    ddb_client.create_table(
        TableName=table, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "B"}],
    )
    ddb_client.get_waiter("table_exists").wait(TableName=table)
    rng = random.Random(5)
    for i in range(60):
        ddb_client.put_item(TableName=table, Item={
            "k": {"B": bytes([0, i]) + rng.randbytes(8)}, "bs": {"BS": [b"\x00z", b"\xff", b"a"]},
        })
    policy = load_policy(str(write_policy(tmp_path, table=table, segments=2))).policy
    source = DynamoDBSource(table, REGION, segments=2, page_size=7)
    result = backup(policy, "orders", source=source)
    assert result.manifest is not None and result.manifest.totals.items == 60
    store, manifest = resolve(policy, "orders@latest")
    target = unique("binkeys_restored")
    restore(policy, store, manifest, target)
    assert scan_all(ddb_client, target) == scan_all(ddb_client, table)
    assert DynamoDBSource(table, REGION).scan_digest(table) == (60, manifest.content_digest.value)
