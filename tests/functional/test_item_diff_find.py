"""`cloudkeep diff` and `cloudkeep find` on DynamoDB Local (file and S3 stores), with the
per-part key index every new snapshot carries (cloudkeep.keyindex): counts, keys and fields,
find newest first, parts skipped by the index, verify covering the index, a forged or missing
index never hiding an item, a snapshot without indexes still searched, encrypted snapshots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from cloudkeep import layout
from cloudkeep.keys.local import create_key_file
from cloudkeep.manifest import Manifest
from conftest import unique, write_policy
from helpers import cli, cli_json

pytestmark = pytest.mark.emulator

ITEMS = 60


def make_table(client: Any, name: str) -> None:
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                   {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "N"}],
        BillingMode="PAY_PER_REQUEST")
    client.get_waiter("table_exists").wait(TableName=name)


def item(i: int, version: int = 1) -> dict[str, Any]:
    return {"pk": {"S": f"user#{i:03d}"}, "sk": {"N": str(i % 3)},
            "name": {"S": f"name {i}"}, "version": {"N": str(version)},
            "pad": {"S": "x" * 300}}


def key_json(i: int) -> str:
    return json.dumps({"pk": {"S": f"user#{i:03d}"}, "sk": {"N": str(i % 3)}})


def snapshots(policy: Path, capsys: Any) -> list[str]:
    return [r["snapshot_id"] for r in cli_json(capsys, "--policy", str(policy), "list", "orders")]


def run(policy: Path, capsys: Any, *extra: str) -> str:
    before = set(snapshots(policy, capsys))
    code, _, err = cli(capsys, "--policy", str(policy), "run", "orders", "--part-size", "4KiB", *extra)
    assert code == 0, err
    (new,) = set(snapshots(policy, capsys)) - before
    return new


def two_snapshots(ddb_client: Any, tmp_path: Path, capsys: Any,
                  store: dict[str, Any] | None = None, *, encrypt: bool = False) -> tuple[Path, str, str]:
    """A table snapshotted, then 11 items changed, 5 deleted and 13 inserted, snapshotted again."""
    table = unique("diff")
    make_table(ddb_client, table)
    for i in range(ITEMS):
        ddb_client.put_item(TableName=table, Item=item(i))
    policy = write_policy(tmp_path, table=table, store=store)
    if encrypt:
        create_key_file(tmp_path / "one.key")
        doc = yaml.safe_load(policy.read_text())
        doc["keys"] = {"one": {"provider": "local", "path": str(tmp_path / "one.key")}}
        doc["encryption"] = {"keys": ["one"]}
        policy.write_text(yaml.safe_dump(doc))
    first = run(policy, capsys)
    for i in range(11):  # changed
        ddb_client.put_item(TableName=table, Item=item(i, version=2))
    for i in range(11, 16):  # deleted
        ddb_client.delete_item(TableName=table, Key={"pk": {"S": f"user#{i:03d}"}, "sk": {"N": str(i % 3)}})
    for i in range(ITEMS, ITEMS + 13):  # inserted
        ddb_client.put_item(TableName=table, Item=item(i))
    second = run(policy, capsys)
    return policy, first, second


def manifest_of(tmp_path: Path, sid: str) -> Manifest:
    path = tmp_path / "vault" / layout.manifest_key("orders", sid)
    return Manifest.from_bytes(path.read_bytes(), where=str(path))


def test_diff_counts_keys_and_find_newest_first(ddb_client: Any, tmp_path: Path, capsys: Any) -> None:
    policy, first, second = two_snapshots(ddb_client, tmp_path, capsys)
    p = ("--policy", str(policy))
    out = cli_json(capsys, *p, "diff", f"orders@{first}", f"orders@{second}")
    assert (out["added"], out["removed"], out["changed"], out["unchanged"]) == (13, 5, 11, 44)
    assert out["items"] == []
    # --format after the command, --keys: each key and what changed
    code, text, err = cli(capsys, *p, "diff", f"orders@{first}", "orders@latest", "--keys",
                          "--format", "json")
    assert code == 0, err
    listed = json.loads(text)
    assert (listed["added"], listed["removed"], listed["changed"]) == (13, 5, 11)
    by_change: dict[str, list[dict[str, Any]]] = {}
    for entry in listed["items"]:
        by_change.setdefault(entry["change"], []).append(entry)
    assert {k: len(v) for k, v in by_change.items()} == {"added": 13, "removed": 5, "changed": 11}
    assert all(e["fields"] == ["Item.version"] for e in by_change["changed"])
    assert {json.dumps(e["key"]) for e in by_change["removed"]} == {
        json.dumps(json.loads(key_json(i)), sort_keys=True) for i in range(11, 16)}
    # the other way round: additions and removals swap
    back = cli_json(capsys, *p, "diff", f"orders@{second}", f"orders@{first}")
    assert (back["added"], back["removed"], back["changed"]) == (5, 13, 11)
    # table output
    code, text, _ = cli(capsys, *p, "diff", f"orders@{first}", f"orders@{second}", "--keys")
    assert code == 0 and "13 added, 5 removed, 11 changed, 44 unchanged" in text
    assert "Item.version" in text

    found = cli_json(capsys, *p, "find", "orders", "--key", key_json(3))
    assert [f["snapshot_id"] for f in found] == [second, first]  # newest first
    assert [f["item"]["Item"]["version"] for f in found] == [{"N": "2"}, {"N": "1"}]
    assert set(found[0]) == {"snapshot_id", "time", "item"}
    deleted = cli_json(capsys, *p, "find", "orders", "--key", key_json(12))
    assert [f["snapshot_id"] for f in deleted] == [first]
    inserted = cli_json(capsys, *p, "find", "orders", "--format", "json", "--key", key_json(ITEMS + 1))
    assert [f["snapshot_id"] for f in inserted] == [second]
    # a number key in another spelling is the same key
    spelled = json.dumps({"pk": {"S": "user#003"}, "sk": {"N": "0.0E0"}})
    assert [f["snapshot_id"] for f in cli_json(capsys, *p, "find", "orders", "--key", spelled)] == [second, first]
    assert cli_json(capsys, *p, "find", "orders", "--key", key_json(999)) == []


def test_key_index_is_written_covered_and_skips_parts(ddb_client: Any, tmp_path: Path,
                                                     capsys: Any) -> None:
    policy, first, second = two_snapshots(ddb_client, tmp_path, capsys)
    p = ("--policy", str(policy))
    manifest = manifest_of(tmp_path, second)
    assert len(manifest.parts) > 3 and all(part.key_index for part in manifest.parts)
    vault = tmp_path / "vault"
    for part in manifest.parts:
        assert (vault / layout.key_index_key("orders", second, part.name)).exists()
    from cloudkeep.catalog import resolve
    from cloudkeep.itemkeys import parse_key
    from cloudkeep.keyindex import candidate_parts
    from cloudkeep.policy import load_policy
    loaded = load_policy(str(policy)).policy
    store, m = resolve(loaded, f"orders@{second}")
    key = parse_key(m.source, key_json(3))
    assert len(candidate_parts(store, m, [key])) == 1  # 4 KiB parts: one holds the item
    assert len(candidate_parts(store, m, [])) == 0
    code, out, err = cli(capsys, *p, "verify", f"orders@{second}")
    assert code == 0, out + err

    # a forged index (it would hide the item): verify reports it; find falls back and finds it
    index_path = vault / layout.key_index_key("orders", second, manifest.parts[0].name)
    holder = next(part for part in manifest.parts
                  if candidate_parts(store, m, [key]) == [part])
    forged = vault / layout.key_index_key("orders", second, holder.name)
    body = bytearray(forged.read_bytes())
    body[-8:] = b"\xff" * 8
    forged.write_bytes(bytes(body))
    code, out, err = cli(capsys, *p, "verify", f"orders@{second}")
    assert code == 1 and "key index" in out
    code, text, err = cli(capsys, *p, "--format", "json", "find", "orders", "--key", key_json(3))
    assert code == 0, err
    assert [f["snapshot_id"] for f in json.loads(text)] == [second, first]
    assert "fails its sha256 check" in err and "reading every part" in err
    # a missing index: the same
    forged.unlink()
    index_path.unlink(missing_ok=True)
    found = cli_json(capsys, *p, "find", "orders", "--key", key_json(3))
    assert [f["snapshot_id"] for f in found] == [second, first]


def test_snapshot_without_index_still_found_and_diffed(ddb_client: Any, tmp_path: Path,
                                                       capsys: Any) -> None:
    """A snapshot of the previous release (no key_index in its parts, no index objects)."""
    policy, first, second = two_snapshots(ddb_client, tmp_path, capsys)
    p = ("--policy", str(policy))
    vault = tmp_path / "vault"
    for index in vault.glob(f"orders/snapshots/{first}/*.keys"):
        index.unlink()
    path = vault / layout.manifest_key("orders", first)
    doc = json.loads(path.read_text())
    for part in doc["parts"]:
        del part["key_index"]
    path.write_text(json.dumps(doc))  # unsigned, unencrypted: still a valid manifest
    found = cli_json(capsys, *p, "find", "orders", "--key", key_json(3))
    assert [f["snapshot_id"] for f in found] == [second, first]
    out = cli_json(capsys, *p, "diff", f"orders@{first}", f"orders@{second}")
    assert (out["added"], out["removed"], out["changed"]) == (13, 5, 11)


def test_encrypted_snapshots_diff_and_find(ddb_client: Any, tmp_path: Path, capsys: Any) -> None:
    policy, first, second = two_snapshots(ddb_client, tmp_path, capsys, encrypt=True)
    p = ("--policy", str(policy))
    manifest = manifest_of(tmp_path, second)
    assert manifest.codec.encryption is not None and all(x.key_index for x in manifest.parts)
    # the keyed index does not hold the plain key hashes
    from cloudkeep.itemkeys import key_hash, parse_key
    plain = key_hash(parse_key(manifest.source, key_json(3)))
    blobs = b"".join(f.read_bytes() for f in (tmp_path / "vault").glob(f"orders/snapshots/{second}/*.keys"))
    assert plain not in blobs
    out = cli_json(capsys, *p, "diff", f"orders@{first}", f"orders@{second}")
    assert (out["added"], out["removed"], out["changed"]) == (13, 5, 11)
    found = cli_json(capsys, *p, "find", "orders", "--key", key_json(3))
    assert [f["snapshot_id"] for f in found] == [second, first]
    code, out_text, err = cli(capsys, *p, "verify", f"orders@{second}")
    assert code == 0, out_text + err
    # without the key nothing is searched (never an empty answer): exit 3, one line
    (tmp_path / "one.key").rename(tmp_path / "elsewhere.key")
    for args in (("find", "orders", "--key", key_json(3)),
                 ("diff", f"orders@{first}", f"orders@{second}")):
        code, out_text, err = cli(capsys, *p, *args)
        assert code == 3 and out_text == "" and err.startswith("error: "), (args, out_text, err)


def test_diff_on_s3_store_and_bad_input(ddb_client: Any, tmp_path: Path, capsys: Any,
                                        s3_bucket: str) -> None:
    store = {"type": "s3", "bucket": s3_bucket, "prefix": "diff", "region": "us-east-1"}
    policy, first, second = two_snapshots(ddb_client, tmp_path, capsys, store)
    p = ("--policy", str(policy))
    out = cli_json(capsys, *p, "diff", f"orders@{first}", f"orders@{second}")
    assert (out["added"], out["removed"], out["changed"], out["unchanged"]) == (13, 5, 11, 44)
    found = cli_json(capsys, *p, "find", "orders", "--key", key_json(5))
    assert [f["snapshot_id"] for f in found] == [second, first]
    for args, words in [
        (("find", "orders", "--key", '{"pk": {"S": "a"}}'), "exactly pk, sk"),
        (("find", "orders", "--key", "{nope"), "not valid JSON"),
        (("find", "nosuch", "--key", key_json(1)), "unknown dataset"),
        (("diff", f"orders@{first}", "other@latest"), "one dataset"),
        (("diff", "orders@bad", f"orders@{second}"), "bad snapshot id"),
    ]:
        code, text, err = cli(capsys, *p, *args)
        assert code == 2, (args, text, err)
        assert words in err and "Traceback" not in err and err.count("\n") == 1, err
