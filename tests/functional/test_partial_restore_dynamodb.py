"""Partial restore on DynamoDB Local through the CLI (issue #22 §3-5): three items corrupted in
the live table are repaired by ``restore --keys`` from an encrypted snapshot while two other
live items changed since are left untouched; ``--dry-run`` changes nothing (the table is
byte-identical); missing keys, ``--delete-missing``, ``--where``, bad input, the audit record
and the function's ``invoke`` action."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from cloudkeep.function import invoke
from cloudkeep.keys.local import create_key_file
from cloudkeep.policy import load_policy
from conftest import REGION, unique
from helpers import cli, cli_json

pytestmark = pytest.mark.emulator

ITEMS = 40


def key(i: int) -> dict[str, Any]:
    return {"pk": {"S": f"user#{i:03d}"}, "sk": {"N": str(i % 3)}}


def item(i: int) -> dict[str, Any]:
    return key(i) | {"name": {"S": f"name {i}"}, "total": {"N": str(i * 10)},
                     "status": {"S": "open" if i % 2 else "closed"},
                     "tags": {"SS": ["a", f"t{i}"]}, "blob": {"B": bytes([i, 0, 255])}}


def dump(client: Any, table: str) -> bytes:
    """The whole table, canonically: byte-identical iff nothing changed."""
    items = []
    params: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    while True:
        page = client.scan(**params)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            break
        params["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    items.sort(key=lambda it: (it["pk"]["S"], it["sk"]["N"]))
    return json.dumps(items, sort_keys=True, default=repr).encode()


def get(client: Any, i: int) -> dict[str, Any] | None:
    return client.get_item(TableName=TABLE[0], Key=key(i), ConsistentRead=True).get("Item")


TABLE: list[str] = [""]


@pytest.fixture
def live(ddb_client: Any, tmp_path: Path) -> Any:
    """A table of ITEMS items, an encrypted policy (local key) and one committed snapshot."""
    table = unique("partial")
    TABLE[0] = table
    ddb_client.create_table(
        TableName=table, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "N"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                   {"AttributeName": "sk", "KeyType": "RANGE"}])
    for i in range(ITEMS):
        ddb_client.put_item(TableName=table, Item=item(i))
    create_key_file(tmp_path / "one.key")
    policy = tmp_path / "cloudkeep.yaml"
    policy.write_text(yaml.safe_dump({
        "version": 1,
        "keys": {"one": {"provider": "local", "path": "one.key"}},
        "encryption": {"keys": ["one"]},
        "stores": {"vault": {"type": "file", "path": str(tmp_path / "vault")}},
        "tiers": {"standard": {"schedule": "0 2 * * *", "rpo": "26h", "retention": {"last": 5}}},
        "datasets": {"orders": {"source": {"type": "dynamodb", "table": table, "region": REGION},
                                "tier": "standard", "store": "vault"}},
    }, sort_keys=False))
    yield policy, table
    ddb_client.delete_table(TableName=table)


def run(capsys: Any, policy: Path, *args: str) -> tuple[int, str, str]:
    return cli(capsys, "--policy", str(policy), *args)


def test_three_corrupted_items_are_repaired_and_two_changed_since_are_untouched(
        ddb_client: Any, live: Any, capsys: Any, tmp_path: Path) -> None:
    policy, table = live
    assert run(capsys, policy, "run", "orders")[0] == 0
    ref = cli_json(capsys, "--policy", str(policy), "list", "orders")[0]["ref"]
    # after the snapshot: a bug corrupts three items, two others change legitimately
    for i in (3, 7, 11):
        ddb_client.put_item(TableName=table, Item=key(i) | {"name": {"S": "CORRUPT"}})
    for i in (4, 8):
        ddb_client.put_item(TableName=table, Item=item(i) | {"total": {"N": "999"}})
    keys = tmp_path / "keys.txt"
    keys.write_text("".join(json.dumps(key(i)) + "\n" for i in (3, 7, 11)))

    before = dump(ddb_client, table)
    plan = cli_json(capsys, "--policy", str(policy), "restore", ref, "--into", table,
                    "--keys", str(keys), "--overwrite", "--dry-run")
    assert dump(ddb_client, table) == before, "--dry-run wrote something"
    assert plan["dry_run"] is True and plan["partial"] is True and plan["needs_overwrite"] is True
    assert (plan["selected"], plan["put"], plan["changed"], plan["new"], plan["unchanged"],
            plan["missing"], plan["deleted"]) == (3, 3, 3, 0, 0, 0, 0)
    assert sorted(json.dumps(i["key"], sort_keys=True) for i in plan["items"]) == sorted(
        json.dumps(key(i), sort_keys=True) for i in (3, 7, 11))
    assert {(i["action"], i["change"]) for i in plan["items"]} == {("put", "changed")}

    # into the live table without --overwrite: refused, nothing written
    code, _, err = run(capsys, policy, "restore", ref, "--into", table, "--keys", str(keys))
    assert code == 1 and "--overwrite" in err and "Traceback" not in err
    assert dump(ddb_client, table) == before

    done = cli_json(capsys, "--policy", str(policy), "restore", ref, "--into", table,
                    "--keys", str(keys), "--overwrite")
    assert (done["dry_run"], done["put"], done["missing"], done["deleted"]) == (False, 3, 0, 0)
    for i in (3, 7, 11):
        assert get(ddb_client, i) == item(i), "repaired from the snapshot"
    for i in (4, 8):
        assert get(ddb_client, i) == item(i) | {"total": {"N": "999"}}, "changed since: untouched"
    rest = [i for i in range(ITEMS) if i not in (3, 7, 11, 4, 8)]
    assert all(get(ddb_client, i) == item(i) for i in rest)
    assert ddb_client.scan(TableName=table, Select="COUNT")["Count"] == ITEMS

    again = cli_json(capsys, "--policy", str(policy), "restore", ref, "--into", table,
                     "--keys", str(keys), "--overwrite", "--dry-run")
    assert (again["unchanged"], again["changed"]) == (3, 0)

    # the audit log records the selection (count and digest of the keys file), not the keys
    audit = cli_json(capsys, "--policy", str(policy), "audit")
    partial = [r for r in audit if r.get("event") == "restore"
               and (r.get("detail") or {}).get("partial")]
    assert len(partial) == 4  # two dry runs, one refused, one done
    last = partial[-1]["detail"] if partial[-1]["outcome"] == "ok" else partial[0]["detail"]
    ok = [r["detail"] for r in partial if r["outcome"] == "ok" and not r["detail"]["dry_run"]]
    assert len(ok) == 1 and ok[0]["selection"]["keys"] == 3 and ok[0]["put"] == 3
    assert ok[0]["selection"]["keys_file"] == str(keys)
    assert len(ok[0]["selection"]["keys_sha256"]) == 64 and last["selection"]["where"] is None
    assert "user#003" not in json.dumps(audit)


def test_missing_keys_are_reported_and_deleted_only_with_delete_missing(
        ddb_client: Any, live: Any, capsys: Any) -> None:
    policy, table = live
    assert run(capsys, policy, "run", "orders")[0] == 0
    ddb_client.put_item(TableName=table, Item=key(100) | {"name": {"S": "added since"}})
    ddb_client.delete_item(TableName=table, Key=key(5))
    args = ["restore", "orders@latest", "--into", table, "--overwrite",
            "--key", json.dumps(key(100)), "--key", json.dumps(key(5)),
            "--key", json.dumps(key(200))]
    plan = cli_json(capsys, "--policy", str(policy), *args, "--dry-run")
    by_key = {i["key"]["pk"]["S"]: i for i in plan["items"]}
    assert by_key["user#005"] == {"key": key(5), "action": "put", "change": "new"}
    assert by_key["user#100"] == {"key": key(100), "action": "missing", "live": True}
    assert by_key["user#200"] == {"key": key(200), "action": "missing", "live": False}
    assert (plan["missing"], plan["deleted"]) == (2, 0)
    plan = cli_json(capsys, "--policy", str(policy), *args, "--dry-run", "--delete-missing")
    assert plan["deleted"] == 1 and get(ddb_client, 100) is not None

    code, out, _ = run(capsys, policy, *args, "--dry-run")  # the text answer, item by item
    assert code == 0 and "missing from the snapshot" in out and "nothing written" in out
    assert '  missing {"pk": {"S": "user#100"}, "sk": {"N": "1"}} (in the target)' in out
    assert '  put     {"pk": {"S": "user#005"}, "sk": {"N": "2"}} (new)' in out
    # a dry run into a table that does not exist: every item new, and no table made
    other = unique("nothere")
    plan = cli_json(capsys, "--policy", str(policy), "restore", "orders@latest", "--into", other,
                    "--key", json.dumps(key(5)), "--key", json.dumps(key(200)), "--dry-run")
    assert (plan["new"], plan["missing"], plan["needs_overwrite"]) == (1, 1, False)
    assert other not in ddb_client.list_tables()["TableNames"]
    none = cli_json(capsys, "--policy", str(policy), "restore", "orders@latest", "--into", other,
                    "--where", 'name = "no such name"')
    assert (none["selected"], none["put"]) == (0, 0)
    assert other not in ddb_client.list_tables()["TableNames"], "nothing selected: nothing made"

    done = cli_json(capsys, "--policy", str(policy), *args)
    assert (done["put"], done["missing"], done["deleted"]) == (1, 2, 0)
    assert get(ddb_client, 5) == item(5) and get(ddb_client, 100) is not None
    done = cli_json(capsys, "--policy", str(policy), *args, "--delete-missing")
    assert (done["put"], done["missing"], done["deleted"]) == (1, 2, 1)
    assert get(ddb_client, 100) is None
    assert ddb_client.scan(TableName=table, Select="COUNT")["Count"] == ITEMS


def test_where_selects_by_attribute_and_the_function_takes_the_same_options(
        ddb_client: Any, live: Any, capsys: Any) -> None:
    policy, table = live
    assert run(capsys, policy, "run", "orders")[0] == 0
    for i in range(ITEMS):  # everything corrupted after the snapshot
        ddb_client.put_item(TableName=table, Item=key(i) | {"name": {"S": "CORRUPT"}})
    where = 'status = "open" and total >= 100 and pk startswith "user#0"'
    wanted = [i for i in range(ITEMS) if i % 2 and i * 10 >= 100]
    loaded = load_policy(str(policy)).policy
    status, body = invoke(loaded, {"action": "restore", "ref": "orders@latest", "into": table,
                                   "overwrite": True, "where": where, "dry_run": True})
    assert status == 200, body
    assert body["ok"] and body["dry_run"] and body["selected"] == len(wanted) == body["changed"]
    assert all(get(ddb_client, i) == key(i) | {"name": {"S": "CORRUPT"}} for i in range(ITEMS))
    status, body = invoke(loaded, {"action": "restore", "ref": "orders@latest", "into": table,
                                   "overwrite": True, "where": where,
                                   "keys": [key(1), json.dumps(key(11)), key(12)]})
    assert status == 200, body
    # keys AND where: 1 is too small, 12 is closed; neither is missing from the snapshot
    assert (body["put"], body["selected"], body["missing"]) == (1, 1, 0)
    assert get(ddb_client, 11) == item(11) and get(ddb_client, 1) == key(1) | {"name": {"S": "CORRUPT"}}
    status, body = invoke(loaded, {"action": "restore", "ref": "orders@latest", "into": table,
                                   "overwrite": True, "where": "total >"})
    assert status == 400 and "bad --where" in body["error"]

    done = cli_json(capsys, "--policy", str(policy), "restore", "orders@latest", "--into", table,
                    "--where", where, "--overwrite")
    assert done["put"] == len(wanted)
    for i in range(ITEMS):
        assert get(ddb_client, i) == (item(i) if i in wanted else key(i) | {"name": {"S": "CORRUPT"}})


@pytest.mark.parametrize("args, words", [
    (["--keys", "KEYS", "--key", '{"pk": {"S": "a"}, "sk": {"N": "1"}}'], "not both"),
    (["--keys", "KEYS"], "k.txt:2: a key of this table names exactly pk, sk"),
    (["--key", '{"pk": {"S": "a"}}'], "bad --key #1: a key of this table names exactly pk, sk"),
    (["--where", "status = "], "bad --where: expected a value"),
    (["--where", "a = 1" + " and a = 1" * 200], "more than 128 tests"),
    (["--where", "(" * 40 + "a = 1" + ")" * 40], "nested deeper than 32"),
    (["--delete-missing", "--where", "a = 1"], "--delete-missing needs the keys"),
    (["--keys", "NOFILE"], "bad --keys"),
])
def test_bad_selections_are_one_line_usage_errors_before_anything_is_written(
        ddb_client: Any, live: Any, capsys: Any, tmp_path: Path, args: list[str], words: str) -> None:
    policy, table = live
    assert run(capsys, policy, "run", "orders")[0] == 0
    keys = tmp_path / "k.txt"
    keys.write_text('{"pk": {"S": "user#001"}, "sk": {"N": "1"}}\n{"pk": {"S": "x"}}\n')
    args = [str(keys) if a == "KEYS" else str(tmp_path / "none") if a == "NOFILE" else a
            for a in args]
    before = dump(ddb_client, table)
    code, out, err = run(capsys, policy, "restore", "orders@latest", "--into", table,
                         "--overwrite", *args)
    assert code == 2, (out, err)
    assert words in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert dump(ddb_client, table) == before


def test_a_damaged_part_restores_nothing(
        ddb_client: Any, live: Any, capsys: Any, tmp_path: Path) -> None:
    policy, table = live
    assert run(capsys, policy, "run", "orders")[0] == 0
    parts = sorted((tmp_path / "vault").rglob("part-*.ndjson.zst.enc"))
    assert parts, list((tmp_path / "vault").rglob("*"))
    for damaged in parts:  # whichever part the key index points at is damaged
        data = bytearray(damaged.read_bytes())
        data[len(data) // 2] ^= 0xFF
        damaged.write_bytes(bytes(data))
    ddb_client.put_item(TableName=table, Item=key(3) | {"name": {"S": "CORRUPT"}})
    before = dump(ddb_client, table)
    for extra in (["--key", json.dumps(key(3))], ["--key", json.dumps(key(3)), "--dry-run"],
                  ["--where", 'name = "nothing"']):
        code, out, err = run(capsys, policy, "restore", "orders@latest", "--into", table,
                             "--overwrite", *extra)
        assert code == 1, (out, err)
        assert "sha256" in err and "nothing was written" in err and "Traceback" not in err, err
        assert dump(ddb_client, table) == before


def test_the_key_index_skips_parts_that_cannot_hold_the_keys(
        ddb_client: Any, live: Any, capsys: Any, tmp_path: Path) -> None:
    policy, table = live
    assert run(capsys, policy, "run", "orders")[0] == 0
    parts = len(list((tmp_path / "vault").rglob("part-*.ndjson.zst.enc")))
    assert parts >= 2
    ddb_client.put_item(TableName=table, Item=key(9) | {"name": {"S": "CORRUPT"}})
    done = cli_json(capsys, "--policy", str(policy), "restore", "orders@latest", "--into", table,
                    "--overwrite", "--key", json.dumps(key(9)))
    assert (done["put"], done["parts_read"], done["parts_skipped"]) == (1, 1, parts - 1)
    assert done["content_digest_ok"] is None  # not every part was read: each one read was checked
    assert get(ddb_client, 9) == item(9)
    whole = cli_json(capsys, "--policy", str(policy), "restore", "orders@latest", "--into", table,
                     "--overwrite", "--where", "total = 90", "--dry-run")
    assert (whole["selected"], whole["unchanged"], whole["parts_read"]) == (1, 1, parts)
    assert whole["content_digest_ok"] is True
