"""Crash safety, resume and fan-out against real servers: a CLI backup of a DynamoDB Local table
killed with SIGKILL at random points and resumed; one dataset read as many work items on moto's
SQS, on Azurite's Storage Queues and on Google's Pub/Sub emulator, every item delivered more than
once; a time budget."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from cloudkeep import checkpoint, layout
from cloudkeep.catalog import snapshot_ids
from cloudkeep.engine import RunOptions, backup
from cloudkeep.fanout import drain
from cloudkeep.policy import load_policy
from cloudkeep.registry import open_source, open_store
from conftest import REGION, unique, write_policy
from helpers import cli, cli_json, scan_all

CLOUDKEEP = Path(sys.executable).parent / "cloudkeep"
ITEMS = 3000


def seeded_table(client: Any, items: int = ITEMS) -> str:
    import boto3

    name = unique("scale")
    client.create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                   {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "N"}],
    )
    client.get_waiter("table_exists").wait(TableName=name)
    table = boto3.resource("dynamodb", region_name=REGION,
                           endpoint_url=client.meta.endpoint_url).Table(name)
    with table.batch_writer() as batch:
        for i in range(items):
            batch.put_item(Item={"pk": f"customer-{i % 97}", "sk": i, "note": f"item {i} " + "z" * (i % 50),
                                 "tags": {f"t{i % 3}", "all"}, "blob": bytes([i % 256]) * 8})
    return name


@pytest.fixture(autouse=True)
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    """25-item Scan pages (also for the CLI subprocesses): many parts and checkpoints in a small
    table."""
    monkeypatch.setenv("CLOUDKEEP_DYNAMODB_PAGE_SIZE", "25")


def small_policy(tmp_path: Path, table: str) -> Path:
    """Four segments."""
    return write_policy(tmp_path, table=table, segments=4)


def source_digest(policy_path: Path) -> tuple[int, str]:
    policy = load_policy(str(policy_path)).policy
    spec = policy.dataset("orders")
    return open_source(spec.source).scan_digest(spec.source.table)  # type: ignore[union-attr]


def assert_restores_exactly(capsys: Any, policy: Path, ddb_client: Any, table: str,
                            snapshot_id: str) -> None:
    listed = cli_json(capsys, "--policy", str(policy), "list", "orders")
    assert [r["snapshot_id"] for r in listed] == [snapshot_id]
    items, digest = source_digest(policy)
    assert listed[0]["items"] == items == ITEMS, "no item missing or duplicated in the snapshot"
    shown = cli_json(capsys, "--policy", str(policy), "show", f"orders@{snapshot_id}")
    assert json.dumps(shown).count(digest) >= 1, "the snapshot's content digest is the table's"
    code, out, err = cli(capsys, "--policy", str(policy), "verify", f"orders@{snapshot_id}")
    assert code == 0, out + err
    target = unique("restored")
    code, out, err = cli(capsys, "--policy", str(policy), "restore", f"orders@{snapshot_id}",
                         "--into", target)
    assert code == 0, out + err
    assert scan_all(ddb_client, target) == scan_all(ddb_client, table)


def part_files(vault: Path) -> list[Path]:
    return [p for p in vault.rglob("part-*.ndjson.zst") if not p.name.startswith(".tmp-")]


def test_kill_9_at_random_points_then_resume_gives_exactly_the_source(
    ddb_client: Any, tmp_path: Path, capsys: Any
) -> None:
    table = seeded_table(ddb_client)
    policy = small_policy(tmp_path, table)
    vault = tmp_path / "vault"
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    # A checkpoint every 2 parts: a resumed segment writes past the parts already there (never
    # deleting them), so each run must write a couple of its own parts to leave a checkpoint.
    argv = [str(CLOUDKEEP), "--policy", str(policy), "-q", "run", "orders",
            "--part-size", "3KiB", "--workers", "2", "--checkpoint-every", "2"]
    env = dict(os.environ, CI="1")
    kills = resumed_with_checkpoints = 0
    for round_ in range(6):
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            if round_ == 0:
                # Before or while it writes its first parts.
                while not part_files(vault) and proc.poll() is None:
                    time.sleep(0.002)
            else:
                # After a random number of further parts.
                start, want = len(part_files(vault)), rng.randint(2, 10)
                while len(part_files(vault)) < start + want and proc.poll() is None:
                    time.sleep(0.002)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
        finally:
            proc.wait()
        assert not list(vault.rglob("manifest.json")) or proc.returncode == 0, \
            f"a killed run left a visible snapshot (seed {seed})"
        # a segment's checkpoint entry or its final record
        if list(vault.rglob("checkpoints/segment-*/0*.json")) or \
                list(vault.rglob("checkpoints/segment-*.done.json")):
            resumed_with_checkpoints += 1
    assert kills >= 4, f"only {kills} kills landed mid-run (seed {seed})"
    assert resumed_with_checkpoints >= 2, f"no checkpoint survived a kill (seed {seed})"
    unfinished = list(vault.rglob("checkpoints/run.json"))
    assert len(unfinished) == 1, "every resumed run continued the same snapshot"
    snapshot_id = unfinished[0].parent.parent.name

    final = subprocess.run([str(CLOUDKEEP), "--policy", str(policy), "--format", "json", "run",
                            "orders", "--part-size", "3KiB"],
                           env=env, capture_output=True, text=True, check=False)
    assert final.returncode == 0, final.stderr
    (result,) = json.loads(final.stdout)
    assert result["status"] == "committed" and result["snapshot_id"] == snapshot_id, result
    assert list(vault.rglob("checkpoints/*")), "a run deletes nothing (its checkpoints stay)"
    code, out, err = cli(capsys, "--policy", str(policy), "prune")
    assert code == 0, out + err
    left = [p for p in vault.rglob("checkpoints/*") if p.is_file()]
    assert not left, "prune removes the checkpoints (and killed writes' temporaries) after the commit"
    assert_restores_exactly(capsys, policy, ddb_client, table, snapshot_id)


def test_a_time_budget_stops_the_cli_cleanly_and_later_runs_resume(
    ddb_client: Any, tmp_path: Path, capsys: Any
) -> None:
    table = seeded_table(ddb_client)
    policy = small_policy(tmp_path, table)
    runs = []
    for _ in range(100):
        rows = cli_json(capsys, "--policy", str(policy), "run", "orders", "--budget", "1s",
                        "--part-size", "20KiB", "--workers", "1")
        runs.append(rows[0])
        if rows[0]["status"] == "committed":
            break
        assert rows[0]["status"] == "unfinished" and rows[0]["segments"] == 4
    assert runs[-1]["status"] == "committed"
    assert len({r["snapshot_id"] for r in runs}) == 1
    assert_restores_exactly(capsys, policy, ddb_client, table, runs[-1]["snapshot_id"])


def fan_out(policy_path: Path, queue: Any, duplicate: int) -> str:
    """Dispatch the snapshot's segments to ``queue``; deliver every item ``duplicate`` more times;
    drain it with four workers. Returns the snapshot id."""
    policy = load_policy(str(policy_path)).policy
    store = open_store(policy.stores["vault"])
    result = backup(policy, "orders", store=store,
                    options=RunOptions(queue=queue, part_size=3 * 1024))
    assert result.status == "unfinished" and result.dispatched == 4, result
    assert snapshot_ids(store, "orders") == []
    for _ in range(duplicate):
        queue.send([{"kind": "cloudkeep.segment", "v": 1, "dataset": "orders",
                     "snapshot_id": result.snapshot_id, "segment": s} for s in range(4)])
    outcomes = drain(policy, queue, workers=4, wait_seconds=1, idle_rounds=2)
    statuses = [o.status for o in outcomes]
    assert len(outcomes) == 4 * (1 + duplicate), statuses
    assert statuses.count("committed") == 1, statuses  # a lost commit race: committed-by-other
    assert set(statuses) <= {"committed", "committed-by-other", "segment-done", "already-done",
                             "exists", "busy"}
    assert snapshot_ids(store, "orders") == [result.snapshot_id]
    assert checkpoint.unfinished_snapshots(store, "orders") == []
    from datetime import UTC, datetime

    from cloudkeep.prune import prune

    assert not prune(policy, "orders", datetime.now(UTC), store=store).errors
    assert not list(store.list(layout.checkpoints_prefix("orders", result.snapshot_id or "")))
    return result.snapshot_id or ""


def test_fan_out_on_moto_sqs_with_duplicate_deliveries_commits_one_snapshot(
    ddb_client: Any, moto_server: Any, tmp_path: Path, capsys: Any
) -> None:
    import boto3

    from cloudkeep.queues import open_queue

    table = seeded_table(ddb_client)
    policy = small_policy(tmp_path, table)
    url = boto3.client("sqs", region_name=REGION).create_queue(
        QueueName=unique("work"), Attributes={"VisibilityTimeout": "120"})["QueueUrl"]
    snapshot_id = fan_out(policy, open_queue(f"sqs:{url}"), duplicate=2)
    assert_restores_exactly(capsys, policy, ddb_client, table, snapshot_id)


def test_fan_out_on_azurite_queues_with_duplicate_deliveries_commits_one_snapshot(
    ddb_client: Any, azurite: Any, tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from azure.storage.queue import QueueClient

    from cloudkeep.queues import open_queue

    table = seeded_table(ddb_client)
    policy = small_policy(tmp_path, table)
    name = unique("work").replace("_", "-").lower()
    QueueClient.from_connection_string(azurite.connection_string, name).create_queue()
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    snapshot_id = fan_out(policy, open_queue(f"azure_queue:{name}"), duplicate=1)
    assert_restores_exactly(capsys, policy, ddb_client, table, snapshot_id)


def test_fan_out_on_the_pubsub_emulator_with_duplicate_deliveries_commits_one_snapshot(
    ddb_client: Any, pubsub_emulator: Any, tmp_path: Path, capsys: Any
) -> None:
    from google.cloud import pubsub_v1

    from cloudkeep.queues import open_queue

    table = seeded_table(ddb_client)
    policy = small_policy(tmp_path, table)
    project = unique("proj").replace("_", "-")
    topic = pubsub_v1.PublisherClient().create_topic(name=f"projects/{project}/topics/work")
    subscription = pubsub_v1.SubscriberClient().create_subscription(
        name=f"projects/{project}/subscriptions/work-pull", topic=topic.name,
        ack_deadline_seconds=120)
    queue = open_queue(f"pubsub:{topic.name}?subscription={subscription.name}")
    snapshot_id = fan_out(policy, queue, duplicate=1)
    assert_restores_exactly(capsys, policy, ddb_client, table, snapshot_id)


def test_the_cli_runs_the_work_items_in_process(ddb_client: Any, tmp_path: Path, capsys: Any) -> None:
    table = seeded_table(ddb_client)
    policy = small_policy(tmp_path, table)
    rows = cli_json(capsys, "--policy", str(policy), "run", "orders", "--queue", "inprocess:",
                    "--part-size", "3KiB")
    assert rows[0]["status"] == "committed", rows
    assert_restores_exactly(capsys, policy, ddb_client, table, rows[0]["snapshot_id"])


def encrypted_policy(tmp_path: Path, table: str) -> Path:
    """The four-segment policy with every snapshot encrypted under a local key file."""
    import yaml

    from cloudkeep.keys.local import create_key_file

    path = small_policy(tmp_path, table)
    key_file = tmp_path / "cloudkeep.key"
    create_key_file(str(key_file))
    doc = yaml.safe_load(path.read_text())
    doc["keys"] = {"offline": {"provider": "local", "path": str(key_file)}}
    doc["encryption"] = {"keys": ["offline"]}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def assert_sealed(vault: Path, snapshot_id: str) -> None:
    """Every part is encrypted (no plaintext of the table in the store) under one data key: the
    manifest authenticates and every part decrypts (verify), whichever invocation wrote it."""
    parts = [p for p in vault.rglob("part-*") if snapshot_id in str(p) and not p.name.endswith(".keys")]
    assert parts and all(p.name.endswith(".ndjson.zst.enc") for p in parts)
    indexes = [p for p in vault.rglob("part-*.keys") if snapshot_id in str(p)]  # keyed hashes only
    assert len(indexes) == len(parts) and all(p.name.endswith(".ndjson.zst.enc.keys") for p in indexes)
    run_state = [p for p in vault.rglob("run.json")]
    assert run_state == [], "prune removes the run state (with the wrapped key) once committed"


def test_an_encrypted_snapshot_resumed_over_many_invocations_uses_one_data_key(
    ddb_client: Any, tmp_path: Path, capsys: Any
) -> None:
    """Encryption (#7) across checkpoints (#8): each CLI run out of budget leaves the wrapped
    data key in the run state; the next run unwraps it, so every part of the snapshot is sealed
    with the same key and the committed snapshot verifies and restores."""
    from cloudkeep.checkpoint import Deadline

    table = seeded_table(ddb_client)
    policy = encrypted_policy(tmp_path, table)
    loaded = load_policy(str(policy)).policy
    runs = []
    for _ in range(200):  # a budget that is always spent: each invocation writes a part or so
        result = backup(loaded, "orders", options=RunOptions(
            deadline=Deadline.after(0.0), part_size=20 * 1024, workers=1))
        runs.append({"status": result.status, "snapshot_id": result.snapshot_id})
        if result.status == "committed":
            break
        assert result.status == "unfinished"
    assert runs[-1]["status"] == "committed" and len(runs) > 4, "the budget split the run"
    assert len({r["snapshot_id"] for r in runs}) == 1
    assert cli(capsys, "--policy", str(policy), "prune")[0] == 0
    assert_sealed(tmp_path / "vault", runs[-1]["snapshot_id"])
    assert_restores_exactly(capsys, policy, ddb_client, table, runs[-1]["snapshot_id"])


def test_encrypted_work_items_in_process_commit_one_sealed_snapshot(
    ddb_client: Any, tmp_path: Path, capsys: Any
) -> None:
    table = seeded_table(ddb_client)
    policy = encrypted_policy(tmp_path, table)
    rows = cli_json(capsys, "--policy", str(policy), "run", "orders", "--queue", "inprocess:",
                    "--part-size", "3KiB")
    assert rows[0]["status"] == "committed", rows
    assert cli(capsys, "--policy", str(policy), "prune")[0] == 0
    assert_sealed(tmp_path / "vault", rows[0]["snapshot_id"])
    assert_restores_exactly(capsys, policy, ddb_client, table, rows[0]["snapshot_id"])
