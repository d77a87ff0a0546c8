"""`make bench`: continuous capture on DynamoDB Local (issue #21).

1. **Capture throughput and lag at 1,000 changes/s.** A writer puts and updates items at a paced
   1,000 changes a second (BatchWriteItem) into a table with a NEW_AND_OLD_IMAGES stream; a
   consumer reads the stream with GetRecords as Lambda's event source mapping does, shapes each
   batch as a Lambda event and hands it to the capture handler's use case
   (``services.capture_aws.capture_dynamodb_stream``: convert, ingest into the change log in a
   file store). Each item carries its write time, so the lag of every change — written by the
   table to committed in the log — is measured exactly (DynamoDB Local stamps stream records to
   the minute only). The target is a lag of at most 60 s.
2. **``restore --at`` against a snapshot alone.** A table of 10,000 items, a base snapshot, then
   10,000 changes over 2,500 of its items captured (``cloudkeep capture --once``), then a
   snapshot of the final state: ``restore --at`` (base + replay) of the final moment against
   ``restore`` of the final snapshot, each into a new table, as whole processes. The target is a
   ratio of at most 1.5x.

Prints figures only — no assertions.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "shared"))

from tools.emulators import DynamoDBLocal  # noqa: E402

REGION = "us-east-1"
RATE = 1_000  # changes a second
SECONDS = 20
WRITERS = 4  # DynamoDB Local takes ~500 items/s from one BatchWriteItem caller here
BATCH = 1_000  # records per Lambda batch (the mapping's BatchSize)
WINDOW = 1.0  # seconds the consumer gathers records (MaximumBatchingWindowInSeconds)
ITEMS = 10_000
CHANGES = 10_000
HOT = 2_500
BENCH = ROOT / ".bench" / "capture"
CLOUDKEEP = ROOT / ".venv" / "bin" / "cloudkeep"

SCHEMA: dict[str, Any] = {
    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
    "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
    "BillingMode": "PAY_PER_REQUEST",
    "StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
}


def policy_text(table: str, vault: Path) -> str:
    return (f"version: 1\nstores:\n  vault: {{type: file, path: {vault}}}\n"
            "tiers:\n  standard: {schedule: \"0 2 * * *\", rpo: 26h, retention: {last: 10}}\n"
            f"datasets:\n  orders:\n    source: {{type: dynamodb, table: {table}, region: {REGION}}}\n"
            "    tier: standard\n    store: vault\n    continuous: true\n")


def client(kind: str, endpoint: str) -> Any:
    import boto3

    return boto3.client(kind, region_name=REGION, endpoint_url=endpoint)


def put_batch(ddb: Any, table: str, items: list[dict[str, Any]]) -> None:
    requests = [{"PutRequest": {"Item": it}} for it in items]
    while requests:
        out = ddb.batch_write_item(RequestItems={table: requests})
        requests = out.get("UnprocessedItems", {}).get(table, [])


def lambda_record(record: dict[str, Any], arn: str) -> dict[str, Any]:
    body = dict(record["dynamodb"])
    body["ApproximateCreationDateTime"] = body["ApproximateCreationDateTime"].timestamp()
    return {**{k: v for k, v in record.items() if k != "dynamodb"}, "dynamodb": body,
            "eventSourceARN": arn}


def wait_next_minute() -> None:
    start = datetime.now(UTC).replace(second=0, microsecond=0)
    while datetime.now(UTC).replace(second=0, microsecond=0) == start:
        time.sleep(0.2)


def throughput_and_lag(endpoint: str) -> dict[str, float]:
    """Part 1: paced writes, a polling consumer, the handler's use case."""
    from cloudkeep.policy import load_policy
    from cloudkeep.services.capture_aws import capture_dynamodb_stream

    work = BENCH / "lag"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    table = f"lag_{int(time.time())}"
    ddb, streams = client("dynamodb", endpoint), client("dynamodbstreams", endpoint)
    ddb.create_table(TableName=table, **SCHEMA)
    arn = ddb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    (work / "cloudkeep.yaml").write_text(policy_text(table, work / "vault"))
    policy = load_policy(str(work / "cloudkeep.yaml")).policy
    total = RATE * SECONDS
    write_started = time.time()

    def writer(lane: int) -> None:
        # WRITERS lanes of 25-item BatchWriteItem calls, each paced to RATE / WRITERS a second
        per_tick = 25
        for n in range(lane * per_tick, total, per_tick * WRITERS):
            due = write_started + n / RATE
            if (pause := due - time.time()) > 0:
                time.sleep(pause)
            now = f"{time.time():.6f}"
            put_batch(ddb, table, [{"pk": {"S": f"k{(n + i) % 5000}"}, "w": {"N": now},
                                    "v": {"N": str(n + i)}, "pad": {"S": "x" * 200}}
                                   for i in range(per_tick)])
        finished.append(time.time())

    finished: list[float] = []
    threads = [threading.Thread(target=writer, args=(lane,), daemon=True) for lane in range(WRITERS)]
    for thread in threads:
        thread.start()
    lags: list[float] = []
    captured = 0
    busy = 0.0
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard,
                                          ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    pending: list[dict[str, Any]] = []
    gathered_since = time.monotonic()
    while captured < total:
        page = streams.get_records(ShardIterator=iterator, Limit=BATCH)
        iterator = page["NextShardIterator"]
        pending.extend(lambda_record(r, arn) for r in page["Records"])
        if len(pending) < BATCH and time.monotonic() - gathered_since < WINDOW:
            if not page["Records"]:
                time.sleep(0.25)  # Lambda polls a shard about 4 times a second
            continue
        while pending:
            batch, pending = pending[:BATCH], pending[BATCH:]
            t0 = time.perf_counter()
            reply = capture_dynamodb_stream(policy, {"Records": batch})
            busy += time.perf_counter() - t0
            assert not reply["batchItemFailures"], reply
            committed = time.time()
            lags.extend(committed - float(r["dynamodb"]["NewImage"]["w"]["N"]) for r in batch)
            captured += len(batch)
        gathered_since = time.monotonic()
    elapsed = time.time() - write_started
    for thread in threads:
        thread.join()
    lags.sort()
    return {"changes": captured, "seconds": elapsed, "rate": captured / elapsed,
            "write_rate": total / (max(finished) - write_started),
            "ingest_rate": captured / busy, "p50": statistics.median(lags),
            "p99": lags[int(len(lags) * 0.99) - 1], "max": lags[-1]}


def run(argv: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    out = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=BENCH)
    if out.returncode:
        raise SystemExit(f"{' '.join(argv[1:])} failed: {out.stderr.strip()[-500:]}")
    return time.perf_counter() - t0


def restore_at_vs_snapshot(endpoint: str) -> dict[str, float]:
    """Part 2: restore --at the final moment vs restore the final snapshot."""
    work = BENCH / "restore"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    table = f"at_{int(time.time())}"
    ddb = client("dynamodb", endpoint)
    ddb.create_table(TableName=table, **SCHEMA)
    policy = work / "cloudkeep.yaml"
    policy.write_text(policy_text(table, work / "vault"))
    env = {**os.environ, "AWS_ENDPOINT_URL_DYNAMODB": endpoint}
    base = [f"{CLOUDKEEP}", "--policy", str(policy)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda start: put_batch(ddb, table, [
            {"pk": {"S": f"k{i}"}, "v": {"N": "0"}, "pad": {"S": "y" * 300}}
            for i in range(start, start + 25)]), range(0, ITEMS, 25)))
    run([*base, "capture", "orders", "--once"], env)
    run([*base, "run", "orders"], env)
    wait_next_minute()  # DynamoDB Local stamps changes to the minute: after the base snapshot's
    with ThreadPoolExecutor(4) as pool:  # (one batch never names an item twice)
        list(pool.map(lambda start: put_batch(ddb, table, [
            {"pk": {"S": f"k{(start + i) % HOT}"}, "v": {"N": str(start + i)},
             "pad": {"S": "z" * 300}} for i in range(25)]), range(0, CHANGES, 25)))
    # every change is written: the moment just before this capture, which completes the log
    at = (datetime.now(UTC) - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    run([*base, "capture", "orders", "--once"], env)
    run([*base, "run", "orders"], env)  # the final state, as a snapshot
    at_seconds = run([*base, "restore", "orders", "--at", at, "--into", f"{table}-at"], env)
    snap_seconds = run([*base, "restore", "orders@latest", "--target", f"{table}-snap"], env)
    return {"at": at_seconds, "snapshot": snap_seconds, "ratio": at_seconds / snap_seconds}


def main(argv: list[str]) -> int:
    """Both parts; ``lag`` or ``restore`` runs one."""
    BENCH.mkdir(parents=True, exist_ok=True)
    parts = set(argv) or {"lag", "restore"}
    # each part on a DynamoDB Local of its own (its in-memory stream slows down as it grows)
    if "lag" in parts:
        _lag_part()
    return _restore_part() if "restore" in parts else 0


def _lag_part() -> None:
    with DynamoDBLocal() as ddb:
        os.environ.update(ddb.env())
        print(f"DynamoDB Local on {ddb.endpoint}", flush=True)
        lag = throughput_and_lag(ddb.endpoint)
        print(f"\ncapture at {RATE:,} changes/s for {SECONDS} s (stream → Lambda-shaped batches of "
              f"≤{BATCH:,}, {WINDOW:.0f} s window → change log in a file store):")
        print(f"  written at {lag['write_rate']:,.0f} changes/s (target {RATE:,}); "
              f"captured {lag['changes']:,.0f} changes in {lag['seconds']:.1f} s "
              f"({lag['rate']:,.0f}/s end to end; ingest alone {lag['ingest_rate']:,.0f}/s)")
        verdict = "ok" if lag["max"] <= 60 else "MISSED"
        print(f"  lag (written → in the log): p50 {lag['p50']:.2f} s, p99 {lag['p99']:.2f} s, "
              f"max {lag['max']:.2f} s   target ≤ 60 s: {verdict}", flush=True)


def _restore_part() -> int:
    with DynamoDBLocal() as ddb:
        os.environ.update(ddb.env())
        at = restore_at_vs_snapshot(ddb.endpoint)
        print(f"\nrestore of {ITEMS:,} items after {CHANGES:,} changes over {HOT:,} of them "
              "(whole processes, into new tables):")
        print(f"  restore --at (base snapshot + log replay)   {at['at']:6.2f} s")
        print(f"  restore of the final snapshot alone          {at['snapshot']:6.2f} s")
        verdict = "ok" if at["ratio"] <= 1.5 else "MISSED"
        print(f"  ratio {at['ratio']:.2f}x   target ≤ 1.5x: {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
