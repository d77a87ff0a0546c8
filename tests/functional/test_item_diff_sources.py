"""`cloudkeep diff` and `cloudkeep find` on the Firestore, Cosmos DB and S3 (moto) emulators: the
same semantics as on DynamoDB (test_item_diff_find.py) — counts, keys in each source's own form,
newest first — plus an incremental Cosmos DB chain diffed and searched by its replayed state."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cloudkeep.engine import backup
from cloudkeep.policy import load_policy
from cloudkeep.sources.cosmos import CosmosSource
from fixtures_azure import cosmos_policy
from fixtures_gcp import FirestoreRest, gcp_policy
from helpers import cli, cli_json
from test_cosmos import SPECIAL_IDS, ScriptedFeed, create_container, snapshot_at
from test_s3_source import new_bucket, snapshot
from test_s3_source import write_policy as s3_policy

pytestmark = [pytest.mark.emulator,
              pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")]


def counts(out: dict[str, Any]) -> tuple[int, int, int, int]:
    return out["added"], out["removed"], out["changed"], out["unchanged"]


def found_ids(capsys: Any, policy: Any, dataset: str, key: str) -> list[str]:
    rows = cli_json(capsys, "--policy", str(policy), "find", dataset, "--key", key)
    return [r["snapshot_id"] for r in rows]


def test_firestore_diff_and_find_by_document_path(
    firestore_rest: FirestoreRest, gcp_project: str, tmp_path: Path, capsys: Any,
) -> None:
    firestore_rest.write({f"users/u{i:02d}": {"n": {"integerValue": str(i)}} for i in range(20)})
    firestore_rest.write({"users/u01/orders/o1": {"total": {"integerValue": "5"}}})
    policy = gcp_policy(tmp_path, project=gcp_project, collections=["users"])
    p = ("--policy", str(policy))
    [first] = [r["snapshot_id"] for r in cli_json(capsys, *p, "run", "profiles")]
    firestore_rest.write({"users/u02": {"n": {"integerValue": "200"}},        # changed
                          "users/u01/orders/o1": {"total": {"integerValue": "6"}},  # changed
                          "users/u03": {"n": {"integerValue": "3"}},          # rewritten, same
                          "users/new": {"n": {"integerValue": "-1"}}})        # added
    firestore_rest.delete("users/u04", "users/u05")                           # removed
    [second] = [r["snapshot_id"] for r in cli_json(capsys, *p, "run", "profiles")]
    out = cli_json(capsys, *p, "diff", f"profiles@{first}", f"profiles@{second}", "--keys")
    # update_time is not content: u03 rewritten with the same fields is unchanged
    assert counts(out) == (1, 2, 2, 21 - 2 - 2)
    changed = {e["key"]: e.get("fields") for e in out["items"] if e["change"] == "changed"}
    assert changed == {"users/u02": ["fields.n"], "users/u01/orders/o1": ["fields.total"]}
    assert found_ids(capsys, policy, "profiles", "users/u02") == [second, first]
    assert found_ids(capsys, policy, "profiles", '"users/u01/orders/o1"') == [second, first]
    assert found_ids(capsys, policy, "profiles", "users/u04") == [first]
    rows = cli_json(capsys, *p, "find", "profiles", "--key", "users/u02")
    assert [r["item"]["fields"]["n"] for r in rows] == [{"integerValue": "200"}, {"integerValue": "2"}]
    code, _, err = cli(capsys, *p, "find", "profiles", "--key", "users")
    assert code == 2 and "not a document path" in err


def test_cosmos_incremental_chain_diffed_and_found_by_its_replayed_state(
    cosmos_server: Any, cosmos_client: Any, cosmos_database: str, tmp_path: Path, capsys: Any,
) -> None:
    container = create_container(cosmos_client, cosmos_database, "diffed")
    feed = ScriptedFeed(container)
    for i in range(40):
        feed.upsert({"id": SPECIAL_IDS[i] if i < len(SPECIAL_IDS) else f"c{i:02d}",
                     "pk": f"p{i % 4}", "v": i})
    policy_path = cosmos_policy(tmp_path, endpoint=cosmos_server.endpoint, database=cosmos_database,
                                container="diffed", incremental=True, full_every=5)
    policy = load_policy(str(policy_path)).policy
    p = ("--policy", str(policy_path))

    def take(minutes: int) -> str:
        source = CosmosSource(cosmos_server.endpoint, cosmos_database, "diffed", key=cosmos_server.key,
                              verify_tls=False, incremental=True, full_every=5, change_feed=feed)
        result = backup(policy, "carts", source=source, snapshot_id=snapshot_at(minutes))
        assert result.status == "committed" and result.manifest is not None
        return result.manifest.snapshot_id

    full = take(0)
    feed.upsert({"id": "c20", "pk": "p0", "v": "updated"})
    feed.upsert({"id": "c20", "pk": "p0", "v": "updated twice"})
    feed.upsert({"id": "c21", "pk": "p1", "v": 21})  # rewritten with the same content
    feed.upsert({"id": "c22", "pk": "p2", "v": "changed"})
    feed.delete(SPECIAL_IDS[1], "p1")
    feed.delete("c30", "p2")
    feed.upsert({"id": "new-1", "pk": "p9", "v": None})
    feed.upsert({"id": "short-lived", "pk": "p0"})
    feed.delete("short-lived", "p0")
    first = take(10)
    feed.upsert({"id": "c23", "pk": "p3", "v": "later"})
    feed.delete("new-1", "p9")
    feed.upsert({"id": SPECIAL_IDS[1], "pk": "p1", "v": "back"})
    second = take(20)

    def diff(a: str, b: str) -> dict[str, Any]:
        return cli_json(capsys, *p, "diff", f"carts@{a}", f"carts@{b}", "--keys")

    one = diff(full, first)  # the incremental snapshot holds 7 lines; its state is compared
    assert counts(one) == (1, 2, 2, 36)  # c21 rewritten with the same content: unchanged
    assert {e["key"]["id"] for e in one["items"]} == {"new-1", SPECIAL_IDS[1], "c30", "c20", "c22"}
    assert counts(diff(full, second)) == (0, 1, 4, 35)  # c20 c22 c23 and the one back, changed
    assert counts(diff(first, second)) == (1, 1, 1, 37)
    assert counts(diff(second, second)) == (0, 0, 0, 39)

    key = json.dumps({"id": "c20", "partition_key": "p0"})
    rows = cli_json(capsys, *p, "find", "carts", "--key", key)
    assert [r["snapshot_id"] for r in rows] == [second, first, full]
    assert [r["item"]["item"]["v"] for r in rows] == ["updated twice", "updated twice", 20]
    assert found_ids(capsys, policy_path, "carts", '{"id": "new-1", "partition_key": "p9"}') == [first]
    assert found_ids(capsys, policy_path, "carts", '{"id": "c30", "partition_key": ["p2"]}') == [full]
    assert found_ids(capsys, policy_path, "carts", json.dumps(
        {"id": SPECIAL_IDS[1], "partition_key": "p1"})) == [second, full]
    assert found_ids(capsys, policy_path, "carts", '{"id": "c20", "partition_key": "p1"}') == []


def test_s3_diff_and_find_by_object_key(tmp_path: Path, moto_server: Any, capsys: Any) -> None:
    import boto3

    s3 = boto3.client("s3", region_name="us-east-1")
    bucket = new_bucket(s3)
    for i in range(12):
        s3.put_object(Bucket=bucket, Key=f"docs/{i:02d}.txt", Body=f"body {i}".encode())
    policy = s3_policy(tmp_path, bucket, {"type": "file", "path": str(tmp_path / "vault")})
    first = snapshot(policy, 0).snapshot_id
    s3.put_object(Bucket=bucket, Key="docs/00.txt", Body=b"body 0, edited")   # changed
    s3.put_object(Bucket=bucket, Key="docs/01.txt", Body=b"body 1")           # same bytes again
    s3.delete_object(Bucket=bucket, Key="docs/02.txt")                       # removed
    s3.put_object(Bucket=bucket, Key="new/a.bin", Body=b"\x00\x01")           # added
    s3.put_object(Bucket=bucket, Key="new/b.bin", Body=b"\x02")               # added
    second = snapshot(policy, 1).snapshot_id
    out = cli_json(capsys, "--policy", policy, "diff", f"files@{first}", f"files@{second}", "--keys")
    assert counts(out) == (2, 1, 1, 10)
    assert {(e["key"], e["change"]) for e in out["items"]} == {
        ("new/a.bin", "added"), ("new/b.bin", "added"), ("docs/02.txt", "removed"),
        ("docs/00.txt", "changed")}
    assert found_ids(capsys, policy, "files", "docs/00.txt") == [second, first]
    rows = cli_json(capsys, "--policy", policy, "find", "files", "--key", '"docs/00.txt"')
    assert rows[0]["item"]["size"] == len(b"body 0, edited") and rows[1]["item"]["size"] == len(b"body 0")
    assert found_ids(capsys, policy, "files", "docs/02.txt") == [first]
    assert found_ids(capsys, policy, "files", "new/b.bin") == [second]
