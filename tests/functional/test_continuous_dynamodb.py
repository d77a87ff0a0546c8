"""Continuous capture on DynamoDB Local (issue #21): a base snapshot, `capture --once` after two
phases of puts, updates and deletes, `restore --at` a moment between them and now, `history`,
and a lost stream position → a recorded gap, an alert and a refused `--at`.

Phases are separated by waiting for the next whole second on the clock, never by sleeping a
fixed time. DynamoDB Local stamps stream records to the minute (DynamoDB: to the second), so a
capture runs between the phases: a record first read by a later capture is no older than the
earlier capture's drained read (docs/continuous.md, "Time resolution")."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from cloudkeep import layout
from cloudkeep.stores.file import FileStore
from conftest import unique, write_policy
from helpers import cli, cli_json, scan_all


def make_streamed_table(client: Any, name: str) -> None:
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})
    client.get_waiter("table_exists").wait(TableName=name)


def continuous_policy(tmp_path: Path, table: str, **extra: Any) -> Path:
    path = write_policy(tmp_path, table=table)
    doc = yaml.safe_load(path.read_text())
    doc["datasets"]["orders"]["continuous"] = True
    doc["datasets"]["orders"].update(extra)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def put(client: Any, table: str, pk: str, value: str) -> None:
    client.put_item(TableName=table, Item={"pk": {"S": pk}, "v": {"S": value},
                                           "b": {"B": pk.encode()}, "n": {"N": "1.50"}})


def delete(client: Any, table: str, pk: str) -> None:
    client.delete_item(TableName=table, Key={"pk": {"S": pk}})


def next_second() -> datetime:
    """Wait for the next whole second on the clock to begin; returns it."""
    start = datetime.now(UTC)
    boundary = start.replace(microsecond=0) + timedelta(seconds=1)
    while datetime.now(UTC) < boundary:
        time.sleep(0.01)
    return boundary


def iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def test_restore_at_a_moment_and_now_and_history(ddb_client: Any, tmp_path: Path, capsys: Any) -> None:
    table = unique("cont")
    make_streamed_table(ddb_client, table)
    policy = str(continuous_policy(tmp_path, table))
    for n in range(10):
        put(ddb_client, table, f"k{n}", "v0")
    assert cli(capsys, "--policy", policy, "run", "orders")[0] == 0  # the base snapshot
    next_second()
    # phase 1: puts, updates, deletes
    for n in range(10, 14):
        put(ddb_client, table, f"k{n}", "v1")
    put(ddb_client, table, "k1", "v1")
    put(ddb_client, table, "k2", "v1")
    delete(ddb_client, table, "k3")
    phase1 = scan_all(ddb_client, table)
    second_phase = next_second()
    first = cli_json(capsys, "--policy", policy, "capture", "orders", "--once")
    assert first["changes"] == 10 + 4 + 3 and first["gaps"] == []
    # phase 2
    put(ddb_client, table, "k14", "v2")
    put(ddb_client, table, "k1", "v2")
    put(ddb_client, table, "k4", "v2")
    delete(ddb_client, table, "k2")
    delete(ddb_client, table, "k10")
    live = scan_all(ddb_client, table)

    done = cli_json(capsys, "--policy", policy, "capture", "orders", "--once")
    assert done["changes"] == 5 and done["written"] == done["changes"]
    assert done["gaps"] == [] and done["caught_up"] is not None
    again = cli_json(capsys, "--policy", policy, "capture", "orders", "--once")
    assert again["changes"] == 0  # continues from the recorded position

    before = (second_phase - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    restored = cli_json(capsys, "--policy", policy, "restore", "orders", "--at", before,
                        "--into", f"{table}-then")
    assert restored["replay"]["changes_read"] >= 7
    assert scan_all(ddb_client, f"{table}-then") == phase1
    cli_json(capsys, "--policy", policy, "restore", "orders", "--at", done["caught_up"],
             "--into", f"{table}-now")
    assert scan_all(ddb_client, f"{table}-now") == live

    versions = cli_json(capsys, "--policy", policy, "history", "orders", "--key",
                        '{"pk": {"S": "k1"}}')
    logged = [v for v in versions if v["event"] != "snapshot"]
    assert [v["event"] for v in logged] == ["insert", "modify", "modify"]
    assert [v["item"]["Item"]["v"]["S"] for v in logged] == ["v0", "v1", "v2"]
    assert all(v["source"].startswith("log shardId-") for v in logged)
    snaps = [v for v in versions if v["event"] == "snapshot"]
    assert len(snaps) == 1 and snaps[0]["source"].startswith("orders@")
    assert snaps[0]["item"]["Item"]["v"]["S"] == "v0"
    assert [v["time"] for v in versions] == sorted(v["time"] for v in versions)
    gone = cli_json(capsys, "--policy", policy, "history", "orders", "--key", '{"pk": {"S": "k2"}}',
                    "--since", before)
    # (DynamoDB Local stamps stream records to the minute, so the phase-1 update may carry a
    # stamp after `before`: the versions since then end with the removal, and hold no snapshot)
    assert gone[-1]["event"] == "remove" and gone[-1]["item"] is None
    assert {v["event"] for v in gone} <= {"modify", "remove"} and len(gone) <= 2

    # a moment after the last capture is refused (exit 2), naming the end of the window
    later = iso(datetime.now(UTC) + timedelta(minutes=5))
    code, _, err = cli(capsys, "--policy", policy, "restore", "orders", "--at", later,
                       "--into", f"{table}-later")
    assert code == 2 and "after the end of the recoverable window" in err


def test_a_lost_stream_position_is_a_gap_an_alert_and_a_refused_moment(
        ddb_client: Any, tmp_path: Path, capsys: Any) -> None:
    table = unique("gap")
    make_streamed_table(ddb_client, table)
    policy = str(continuous_policy(tmp_path, table))
    put(ddb_client, table, "a", "v0")
    assert cli(capsys, "--policy", policy, "run", "orders")[0] == 0
    assert cli_json(capsys, "--policy", policy, "capture", "orders", "--once")["changes"] == 1
    # The recorded position is forged to a shard the stream no longer has (as after 24 hours
    # without a capture: its records are trimmed) ...
    store = FileStore(str(tmp_path / "vault"))
    stream_id = f"dynamodb-us-east-1-{table}"
    prefix = layout.changelog_positions_prefix("orders", stream_id)
    newest = sorted(i.key for i in store.list(prefix))[-1]
    doc = json.loads(store.get(newest))
    lost_at = datetime.now(UTC).replace(microsecond=0)
    doc["position"]["shards"] = {"shardId-00000000000000000000-gone": {
        "after": "1".rjust(21, "0"), "done": False, "time": lost_at.isoformat()}}
    store.put(layout.sequence_key(prefix, 999), json.dumps(doc).encode(), if_absent=True)
    next_second()
    put(ddb_client, table, "b", "v1")
    done = cli_json(capsys, "--policy", policy, "capture", "orders", "--once")
    assert len(done["gaps"]) == 1 and "trimmed" in done["gaps"][0]["reason"]
    state = json.loads(store.get(sorted(i.key for i in store.list(layout.alert_states_prefix("orders")))[-1]))
    assert [a["kind"] for a in state["open"]] == ["capture_gap"]
    code, _, err = cli(capsys, "--policy", policy, "restore", "orders", "--at",
                       iso(datetime.now(UTC) - timedelta(milliseconds=200)), "--into", f"{table}-x")
    assert code == 2 and "inside a gap" in err, err
    listed = cli_json(capsys, "--policy", policy, "list", "orders")
    window = listed[0]["continuous"]
    assert window["open_gaps"] == 1 and "trimmed" in window["gaps"][0]["reason"]
    assert window["start"] is not None and window["end"] is not None
    planned = cli_json(capsys, "--policy", policy, "plan")
    assert planned[0]["continuous"]["open_gaps"] == 1
    reported = cli_json(capsys, "--policy", policy, "report")
    assert reported["datasets"][0]["continuous"]["gaps"][0]["open"] is True
    code, out, _ = cli(capsys, "--policy", policy, "list", "orders")
    assert code == 0 and "orders: continuous: recoverable" in out and "1 open" in out
    # the next base snapshot closes the gap: a moment after it restores again
    assert cli(capsys, "--policy", policy, "run", "orders")[0] == 0
    put(ddb_client, table, "c", "v2")
    done = cli_json(capsys, "--policy", policy, "capture", "orders", "--once")
    assert done["gaps"] == []
    window = cli_json(capsys, "--policy", policy, "list", "orders")[0]["continuous"]
    assert window["open_gaps"] == 0 and window["gaps"][0]["closed_by"] is not None
    cli_json(capsys, "--policy", policy, "restore", "orders", "--at", done["caught_up"],
             "--into", f"{table}-after")
    assert scan_all(ddb_client, f"{table}-after") == scan_all(ddb_client, table)
    state = json.loads(store.get(sorted(i.key for i in store.list(layout.alert_states_prefix("orders")))[-1]))
    assert state["open"] == []  # the gap alert is closed once no gap is open


def test_encrypted_log_restores_from_a_copy_and_verify_finds_damage(
        ddb_client: Any, tmp_path: Path, capsys: Any) -> None:
    from cloudkeep.keys.local import create_key_file

    table = unique("enc")
    make_streamed_table(ddb_client, table)
    create_key_file(tmp_path / "one.key")
    path = continuous_policy(tmp_path, table, copy_to=["far"])
    doc = yaml.safe_load(path.read_text())
    doc["stores"]["far"] = {"type": "file", "path": str(tmp_path / "far")}
    doc["keys"] = {"one": {"provider": "local", "path": str(tmp_path / "one.key")}}
    doc["encryption"] = {"keys": ["one"]}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    policy = str(path)
    for n in range(5):
        put(ddb_client, table, f"k{n}", "secret-v0")
    assert cli(capsys, "--policy", policy, "run", "orders")[0] == 0
    next_second()
    put(ddb_client, table, "k1", "secret-v1")
    delete(ddb_client, table, "k2")
    done = cli_json(capsys, "--policy", policy, "capture", "orders", "--once")
    assert done["changes"] == 7
    store = FileStore(str(tmp_path / "vault"))
    segments = [i.key for i in store.list(layout.changelog_segments_prefix("orders"))]
    assert segments and all(k.endswith(".ndjson.zst.enc") for k in segments)
    for key in segments:  # sealed: no item value in the stored bytes
        assert b"secret-v" not in store.get(key)
    entry = json.loads(store.get(next(iter(store.list(layout.changelog_index_prefix("orders")))).key))
    assert entry["keys"] is None and entry["encryption"]["keys"][0]["key"] == "one"

    restored = cli_json(capsys, "--policy", policy, "restore", "orders", "--at", done["caught_up"],
                        "--into", f"{table}-far", "--store", "far")
    assert restored["log_store"].endswith("vault")  # bases from the copy, the log from the primary
    assert scan_all(ddb_client, f"{table}-far") == scan_all(ddb_client, table)
    versions = cli_json(capsys, "--policy", policy, "history", "orders", "--key", '{"pk": {"S": "k1"}}')
    assert [v["item"]["Item"]["v"]["S"] for v in versions if v["event"] != "snapshot"] == \
        ["secret-v0", "secret-v1"]

    assert cli_json(capsys, "--policy", policy, "verify", "--log", "orders")["ok"] is True
    damaged = segments[0]
    body = bytearray(store.get(damaged))
    body[-5] ^= 1
    (tmp_path / "vault" / damaged).write_bytes(bytes(body))
    code, out, _ = cli(capsys, "--policy", policy, "--format", "json", "verify", "--log", "orders")
    report = json.loads(out)
    assert code == 1 and report["ok"] is False and "sha256" in report["problems"][0]
    code, _, err = cli(capsys, "--policy", policy, "restore", "orders", "--at", done["caught_up"],
                       "--into", f"{table}-bad")
    assert code == 1 and "sha256" in err
    assert f"{table}-bad" not in ddb_client.list_tables()["TableNames"]
