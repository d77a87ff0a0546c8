"""Restore drill and sample figures on DynamoDB Local (run by hand: `.venv/bin/python
bench/bench_drill.py [ITEMS]`). Seeds ITEMS items of about 400 bytes (default 20,000), backs them
up into a file store, then runs `cloudkeep verify --level drill` and `--level sample` through the
CLI in-process and prints the measured restore time (the RTO a drill records), the whole drill's
time and the sample's. Figures only — no assertions.
"""

from __future__ import annotations

import json
import os
import random
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_dynamodb import TABLE_SCHEMA  # noqa: E402
from tools.emulators import DynamoDBLocal  # noqa: E402
from tools.sample_data import bench_item  # noqa: E402

REGION = "us-east-1"
TABLE = "drill_users"


def run(args: list[str]) -> tuple[int, Any, float]:
    import contextlib
    import io

    from cloudkeep.cli import entrypoint

    out = io.StringIO()
    t0 = time.monotonic()
    with contextlib.redirect_stdout(out):
        code = entrypoint(args)
    seconds = time.monotonic() - t0
    text = out.getvalue()
    return code, json.loads(text) if text.strip().startswith(("{", "[")) else text, seconds


def main() -> None:
    items = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    with DynamoDBLocal() as ddb, tempfile.TemporaryDirectory() as tmp:
        os.environ.update(ddb.env())
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
        import boto3

        resource = boto3.resource("dynamodb", region_name=REGION, endpoint_url=ddb.endpoint)
        table = resource.create_table(TableName=TABLE, **TABLE_SCHEMA)
        table.wait_until_exists()
        rng = random.Random(7)
        rows = [bench_item(i, rng) for i in range(items)]

        def load(chunk: list[dict[str, Any]]) -> None:
            with table.batch_writer() as batch:
                for row in chunk:
                    batch.put_item(Item=row)

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(load, [rows[i::4] for i in range(4)]))
        policy = Path(tmp) / "cloudkeep.yaml"
        policy.write_text(f"""version: 1
stores: {{vault: {{type: file, path: {tmp}/vault}}}}
tiers: {{t: {{schedule: "0 2 * * *", rpo: 26h, rto: 30m, retention: {{daily: 7}}}}}}
datasets:
  users: {{source: {{type: dynamodb, table: {TABLE}, region: {REGION}, segments: 4}}, tier: t, store: vault}}
""")
        base = ["--policy", str(policy), "--format", "json", "-q"]
        code, _, backup_s = run([*base, "run", "users"])
        assert code == 0
        code, drill, drill_s = run([*base, "verify", "--latest", "users", "--level", "drill"])
        code2, sample, sample_s = run([*base, "verify", "--latest", "users", "--level", "sample",
                                       "--sample", "100"])
        print(f"items                         {items}")
        print(f"backup                        {backup_s:.2f} s")
        print(f"drill ok                      {drill['ok']} (cleaned up: {drill['cleaned_up']})")
        print(f"drill restore (measured RTO)  {drill['restore_seconds']:.2f} s "
              f"({items / drill['restore_seconds']:.0f} items/s; RTO 30m met: {drill['rto_met']})")
        print(f"drill in all                  {drill_s:.2f} s (restore, read back, digest, delete)")
        print(f"sample of 100 ok              {sample['ok']} {sample['sample']}")
        print(f"sample in all                 {sample_s:.2f} s (one pass over the snapshot)")


if __name__ == "__main__":
    main()
