"""Partial restore on the Firestore, Cosmos DB and S3 (moto) emulators: the selection semantics
tested on DynamoDB Local (test_partial_restore_dynamodb.py) — ``--keys`` / ``--key`` in each
source's own form, ``--where`` on each source's attributes, ``--dry-run`` writing nothing,
missing keys reported and deleted only with ``--delete-missing``, every other item of the live
dataset untouched — plus an incremental Cosmos DB chain restored item by item from its replayed
state."""

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
from test_cosmos import ScriptedFeed, create_container, snapshot_at
from test_s3_source import new_bucket, snapshot
from test_s3_source import write_policy as s3_policy

pytestmark = [pytest.mark.emulator,
              pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")]


def changes(plan: dict[str, Any]) -> dict[str, str]:
    """key (as JSON) → "put:new" / "put:changed" / "put:unchanged" / "delete" / "missing"."""
    return {json.dumps(i["key"], sort_keys=True):
            f"put:{i['change']}" if i["action"] == "put" else i["action"] for i in plan["items"]}


def test_firestore_documents_and_subcollections_restored_in_place(
    firestore_rest: FirestoreRest, gcp_project: str, tmp_path: Path, capsys: Any,
) -> None:
    original = {f"users/u{i:02d}": {"n": {"integerValue": str(i)},
                                    "status": {"stringValue": "open" if i % 2 else "closed"}}
                for i in range(20)}
    original["users/u01/orders/o1"] = {"total": {"integerValue": "5"}}
    original["users/u01/orders/o2"] = {"total": {"integerValue": "7"}}
    firestore_rest.write(original)
    policy = gcp_policy(tmp_path, project=gcp_project, collections=["users"])
    p = ("--policy", str(policy))
    ref = f"profiles@{cli_json(capsys, *p, 'run', 'profiles')[0]['snapshot_id']}"
    bad = {"n": {"stringValue": "CORRUPT"}}
    firestore_rest.write({"users/u02": bad, "users/u03": bad, "users/u01/orders/o1": bad,
                          "users/u05": {"n": {"integerValue": "500"}}})  # u05: a change since
    firestore_rest.delete("users/u04")
    keys = tmp_path / "keys.txt"
    keys.write_text('users/u02\n"users/u01/orders/o1"\n\n# a comment\nusers/u04\nusers/gone\n')

    before = firestore_rest.documents()
    plan = cli_json(capsys, *p, "restore", ref, "--into", "", "--keys", str(keys), "--dry-run")
    assert firestore_rest.documents() == before, "--dry-run wrote something"
    assert changes(plan) == {'"users/u02"': "put:changed", '"users/u01/orders/o1"': "put:changed",
                             '"users/u04"': "put:new", '"users/gone"': "missing"}
    code, _, err = cli(capsys, *p, "restore", ref, "--into", "", "--keys", str(keys))
    assert code == 1 and "--overwrite" in err

    done = cli_json(capsys, *p, "restore", ref, "--into", "", "--keys", str(keys), "--overwrite")
    assert (done["put"], done["missing"], done["deleted"]) == (3, 1, 0)
    after = firestore_rest.documents()
    for name in ("users/u02", "users/u01/orders/o1", "users/u04"):
        assert after[name] == original[name]
    assert after["users/u03"] == bad and after["users/u05"] == {"n": {"integerValue": "500"}}
    assert len(after) == len(original)

    # --where on fields and on the document path: a document's subcollection, by prefix
    firestore_rest.write({"users/u01/orders/o2": bad, "users/u01": bad})
    plan = cli_json(capsys, *p, "restore", ref, "--into", "", "--overwrite", "--dry-run",
                    "--where", '__name__ startswith "users/u01/"')
    assert changes(plan) == {'"users/u01/orders/o1"': "put:unchanged",
                             '"users/u01/orders/o2"': "put:changed"}
    done = cli_json(capsys, *p, "restore", ref, "--into", "", "--overwrite",
                    "--where", 'n >= 3 and n < 4 or status = "open" and n = 1')
    assert done["selected"] == 2  # u03 and u01
    after = firestore_rest.documents()
    assert after["users/u03"] == original["users/u03"] and after["users/u01"] == original["users/u01"]
    assert after["users/u01/orders/o2"] == bad and after["users/u05"] == {"n": {"integerValue": "500"}}


def test_cosmos_items_restored_from_an_incremental_chain(
    cosmos_server: Any, cosmos_client: Any, cosmos_database: str, tmp_path: Path, capsys: Any,
) -> None:
    container = create_container(cosmos_client, cosmos_database, "partial")
    feed = ScriptedFeed(container)
    for i in range(30):
        feed.upsert({"id": f"c{i:02d}", "pk": f"p{i % 3}", "v": i, "kind": "cart"})
    policy_path = cosmos_policy(tmp_path, endpoint=cosmos_server.endpoint, database=cosmos_database,
                                container="partial", incremental=True, full_every=5)
    policy = load_policy(str(policy_path)).policy
    p = ("--policy", str(policy_path))

    def take(minutes: int) -> str:
        source = CosmosSource(cosmos_server.endpoint, cosmos_database, "partial",
                              key=cosmos_server.key, verify_tls=False, incremental=True,
                              full_every=5, change_feed=feed)
        result = backup(policy, "carts", source=source, snapshot_id=snapshot_at(minutes))
        assert result.status == "committed" and result.manifest is not None
        return result.manifest.snapshot_id

    take(0)
    feed.upsert({"id": "c01", "pk": "p1", "v": "updated", "kind": "cart"})
    feed.delete("c02", "p2")
    feed.upsert({"id": "n01", "pk": "p0", "v": "new", "kind": "cart"})
    ref = f"carts@{take(10)}"  # an incremental snapshot: its chain is replayed
    # after the snapshot: corruption, a deletion, a legitimate change, an item that is not in it
    container.upsert_item({"id": "c01", "pk": "p1", "v": "CORRUPT"})
    container.upsert_item({"id": "n01", "pk": "p0", "v": "CORRUPT"})
    container.delete_item("c04", partition_key="p1")
    container.upsert_item({"id": "c05", "pk": "p2", "v": "changed since", "kind": "cart"})
    container.upsert_item({"id": "c02", "pk": "p2", "v": "came back"})

    def key(item_id: str, pk: str) -> str:
        return json.dumps({"id": item_id, "partition_key": pk})

    args = [*p, "restore", ref, "--into", "partial", "--overwrite", "--key", key("c01", "p1"),
            "--key", key("n01", "p0"), "--key", key("c04", "p1"), "--key", key("c02", "p2"),
            "--key", key("c06", "p1")]  # c06 is in partition p0: no such item
    before = sorted((r["id"], json.dumps(r, sort_keys=True)) for r in container.read_all_items())
    plan = cli_json(capsys, *args, "--dry-run")
    assert sorted((r["id"], json.dumps(r, sort_keys=True)) for r in container.read_all_items()) == before
    assert changes(plan) == {
        json.dumps({"id": "c01", "partition_key": ["p1"]}, sort_keys=True): "put:changed",
        json.dumps({"id": "n01", "partition_key": ["p0"]}, sort_keys=True): "put:changed",
        json.dumps({"id": "c04", "partition_key": ["p1"]}, sort_keys=True): "put:new",
        json.dumps({"id": "c02", "partition_key": ["p2"]}, sort_keys=True): "missing",
        json.dumps({"id": "c06", "partition_key": ["p1"]}, sort_keys=True): "missing"}
    done = cli_json(capsys, *args, "--delete-missing")
    assert (done["put"], done["missing"], done["deleted"]) == (3, 2, 1)
    assert done["chain"] and len(done["chain"]) == 2
    items = {r["id"]: r for r in container.read_all_items()}
    assert items["c01"]["v"] == "updated" and items["n01"]["v"] == "new" and items["c04"]["v"] == 4
    assert "c02" not in items, "deleted in the snapshot: deleted with --delete-missing"
    assert items["c05"]["v"] == "changed since" and len(items) == 30

    plan = cli_json(capsys, *p, "restore", ref, "--into", "partial", "--overwrite", "--dry-run",
                    "--where", 'kind = "cart" and (v > 25 or v = "updated")')
    assert sorted(i["key"]["id"] for i in plan["items"]) == ["c01", "c26", "c27", "c28", "c29"]
    assert plan["unchanged"] == 5


def test_s3_objects_restored_by_key_and_by_prefix(tmp_path: Path, moto_server: Any, capsys: Any) -> None:
    import boto3

    s3 = boto3.client("s3", region_name="us-east-1")
    bucket = new_bucket(s3)
    for i in range(12):
        s3.put_object(Bucket=bucket, Key=f"docs/{i:02d}.txt", Body=f"body {i}".encode(),
                      Metadata={"owner": "ann" if i % 2 else "bob"}, ContentType="text/plain")
    s3.put_object(Bucket=bucket, Key="img/a.png", Body=b"\x89PNG" * 100)
    policy = s3_policy(tmp_path, bucket, {"type": "file", "path": str(tmp_path / "vault")})
    ref = f"files@{snapshot(policy, 0).snapshot_id}"
    s3.put_object(Bucket=bucket, Key="docs/00.txt", Body=b"CORRUPT")
    s3.put_object(Bucket=bucket, Key="docs/01.txt", Body=b"CORRUPT")
    s3.put_object(Bucket=bucket, Key="docs/02.txt", Body=b"changed since")
    s3.delete_object(Bucket=bucket, Key="docs/03.txt")
    s3.put_object(Bucket=bucket, Key="docs/new.txt", Body=b"added since")

    def bodies() -> dict[str, bytes]:
        listed = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
        return {o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed}

    p = ("--policy", policy)
    before = bodies()
    args = [*p, "restore", ref, "--into", bucket, "--overwrite", "--key", "docs/00.txt",
            "--key", '"docs/03.txt"', "--key", "docs/new.txt", "--key", "docs/04.txt"]
    plan = cli_json(capsys, *args, "--dry-run", "--delete-missing")
    assert bodies() == before, "--dry-run wrote something"
    assert changes(plan) == {'"docs/00.txt"': "put:changed", '"docs/03.txt"': "put:new",
                             '"docs/new.txt"': "delete", '"docs/04.txt"': "put:unchanged"}
    done = cli_json(capsys, *args)
    assert (done["put"], done["missing"], done["deleted"]) == (3, 1, 0)
    after = bodies()
    assert after["docs/00.txt"] == b"body 0" and after["docs/03.txt"] == b"body 3"
    assert after["docs/01.txt"] == b"CORRUPT" and after["docs/02.txt"] == b"changed since"
    assert after["docs/new.txt"] == b"added since"
    assert s3.head_object(Bucket=bucket, Key="docs/00.txt")["Metadata"] == {"owner": "bob"}

    # a prefix and the object's own attributes: size and metadata
    done = cli_json(capsys, *p, "restore", ref, "--into", bucket, "--overwrite",
                    "--where", 'key startswith "docs/" and metadata.owner = "ann" and size <= 6')
    assert done["selected"] == 5  # docs/01 03 05 07 09 (6 bytes each; 11 is 7)
    assert bodies()["docs/01.txt"] == b"body 1" and bodies()["docs/02.txt"] == b"changed since"
