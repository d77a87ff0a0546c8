"""`make bench`: a cloudkeep restore vs a bare parallel BatchWriteItem of the same items into a new
table, on DynamoDB Local (issue #23 §4: the restore stays within 1.25x; it was 1.09x).

Seeds ITEMS items of about 400 bytes, backs them up once (a file store), then per round, in this
process, alternately: the bare writer (a new client and table, then WORKERS threads of 25-item
BatchWriteItem calls over the items read back by a Scan beforehand, unprocessed items retried),
``services.restore`` into a new table (the governor unset), and the same with ``max_rate`` set
far above what the target takes (the token bucket's own cost). Both sides include creating the
table. Prints the medians and the ratios — figures only, no assertions.
"""

from __future__ import annotations

import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools.emulators import DynamoDBLocal  # noqa: E402
from tools.sample_data import bench_item  # noqa: E402

ITEMS = 20_000
ROUNDS = 3
WORKERS = 8  # the restore's default parallelism (cloudkeep.restore.DEFAULT_WORKERS)
SEGMENTS = 8  # so the snapshot has parts enough for every restore thread
TABLE = "bench_restore_src"
REGION = "us-east-1"
TARGET_RATIO = 1.25
SCHEMA: dict[str, Any] = {
    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"},
                  {"AttributeName": "sk", "KeyType": "RANGE"}],
    "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"},
                             {"AttributeName": "sk", "AttributeType": "S"}],
    "BillingMode": "PAY_PER_REQUEST",
}


def say(text: str) -> None:
    print(f"-- {text}", flush=True)


def client() -> Any:
    """A new client of a new session, as a fresh program makes it (the restore makes its own)."""
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client("dynamodb", region_name=REGION,
                                          config=Config(max_pool_connections=WORKERS * 2))


def seed(ddb: Any) -> None:
    import boto3

    table = boto3.resource("dynamodb", region_name=REGION).create_table(TableName=TABLE, **SCHEMA)
    table.wait_until_exists()
    rng = random.Random(7)
    with table.batch_writer() as batch:
        for i in range(ITEMS):
            batch.put_item(Item=bench_item(i, rng))


def scan_items(ddb: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for page in ddb.get_paginator("scan").paginate(TableName=TABLE):
        items += page["Items"]
    return items


def bare_restore(items: list[dict[str, Any]], target: str) -> float:
    """A new client, a new table, then WORKERS threads of BatchWriteItem (25 items each);
    seconds."""
    t0 = time.monotonic()
    ddb = client()
    ddb.create_table(TableName=target, **SCHEMA)
    ddb.get_waiter("table_exists").wait(TableName=target, WaiterConfig={"Delay": 1})

    def write(chunk: list[dict[str, Any]]) -> int:
        pending: dict[str, Any] = {target: [{"PutRequest": {"Item": item}} for item in chunk]}
        while pending:
            pending = ddb.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
        return len(chunk)

    batches = [items[i:i + 25] for i in range(0, len(items), 25)]
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        written = sum(pool.map(write, batches))
    assert written == len(items)
    return time.monotonic() - t0


def count(ddb: Any, table: str) -> int:
    total, kwargs = 0, {}
    while True:
        page = ddb.scan(TableName=table, Select="COUNT", **kwargs)
        total += page["Count"]
        if "LastEvaluatedKey" not in page:
            return total
        kwargs = {"ExclusiveStartKey": page["LastEvaluatedKey"]}


def main() -> int:
    from cloudkeep import services
    from cloudkeep.policy import load_policy

    say("starting DynamoDB Local")
    with DynamoDBLocal() as local, tempfile.TemporaryDirectory(prefix="cloudkeep-bench-") as tmp:
        import os

        os.environ.update(local.env())
        ddb = client()
        say(f"seeding {TABLE} with {ITEMS:,} items")
        seed(ddb)
        policy_path = Path(tmp) / "cloudkeep.yaml"
        policy_path.write_text(json.dumps({
            "version": 1,
            "stores": {"vault": {"type": "file", "path": str(Path(tmp) / "vault")}},
            "tiers": {"bench": {"schedule": "0 2 * * *", "rpo": "26h", "retention": {"last": 3}}},
            "datasets": {"users": {"source": {"type": "dynamodb", "table": TABLE, "region": REGION,
                                              "segments": SEGMENTS},
                                   "tier": "bench", "store": "vault"}},
        }))
        policy = load_policy(str(policy_path)).policy
        services.backup(policy, ["users"])
        items = scan_items(ddb)
        assert len(items) == ITEMS

        runs: dict[str, list[float]] = {"bare": [], "restore": [], "restore --max-rate 1e9": []}

        def restore(target: str, **kwargs: Any) -> float:
            t0 = time.monotonic()
            result = services.restore(policy, "users@latest", target, **kwargs)
            seconds = time.monotonic() - t0
            assert result.items == ITEMS and result.digest_ok
            return seconds

        say("warm-up (not counted)")
        bare_restore(items, "bench_warm_bare")
        restore("bench_warm_ck")
        for r in range(ROUNDS):
            say(f"round {r + 1}/{ROUNDS}")
            for name, run in (
                ("bare", lambda t: bare_restore(items, t)),
                ("restore", lambda t: restore(t)),
                ("restore --max-rate 1e9", lambda t: restore(t, max_rate=1e9)),
            ):
                target = f"bench_{name.split()[0]}_{r}_{len(runs[name])}_{random.randrange(10**6)}"
                seconds = run(target)
                if count(ddb, target) != ITEMS:
                    raise SystemExit(f"bench: {name} left {count(ddb, target)} items in {target}")
                runs[name].append(seconds)
                print(f"   {name:<24} {seconds:6.2f} s  {ITEMS / seconds:8,.0f} items/s", flush=True)
        say("stopping DynamoDB Local")

    bare = statistics.median(runs["bare"])
    print(f"\nrestore of {ITEMS:,} items into a new table, DynamoDB Local, median of {ROUNDS}:")
    for name, samples in runs.items():
        median = statistics.median(samples)
        print(f"  {name:<24} {median:6.2f} s  {ITEMS / median:8,.0f} items/s  "
              f"{median / bare:5.2f}x bare")
    ratio = statistics.median(runs["restore"]) / bare
    governed = statistics.median(runs["restore --max-rate 1e9"]) / statistics.median(runs["restore"])
    print(f"\nratios:\n  restore / bare BatchWriteItem   {ratio:5.2f}x  (target <= {TARGET_RATIO}x: "
          f"{'ok' if ratio <= TARGET_RATIO else 'MISSED'})")
    print(f"  governor set (1e9/s) / unset   {governed:5.2f}x  (the bucket's own cost)")
    return 0


if __name__ == "__main__":
    if shutil.which("java") is None:
        sys.exit("bench: java is needed for DynamoDB Local (Java 17+)")
    sys.exit(main())
