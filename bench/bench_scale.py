"""`make bench` (scale part): cloudkeep on 20,000 and 200,000 items of DynamoDB Local.

For each size: one `cloudkeep run` as a whole process — items/s, MB/s (raw NDJSON), peak RSS
(the child's own rusage), checkpoints and the time per checkpoint (from the run's log line) —
then the same table read by several `cloudkeep work` processes taking fan-out work items from
one SQS queue (moto server), all sharing the one DynamoDB Local. Prints figures only; the target
(peak RSS at 200,000 items within 1.2x of that at 20,000) is shown as met or not.

Seeding 200,000 items takes about 90 s (DynamoDB Local writes about 2,200 items/s here).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools.emulators import DynamoDBLocal, MotoServer  # noqa: E402
from tools.sample_data import bench_item  # noqa: E402

SIZES = (20_000, 200_000)
SEED_THREADS = 4
SEGMENTS = 4
FANOUT_SEGMENTS = 8
FANOUT_PROCESSES = 3
PART_SIZE = "1MiB"  # small parts, so both sizes write many and memory is at its bound
CHECKPOINT_EVERY = 1
REGION = "us-east-1"

BENCH = ROOT / ".bench" / "scale"
CLOUDKEEP = ROOT / ".venv" / "bin" / "cloudkeep"

_CHECKPOINT_RE = re.compile(r"\((\d+) checkpoints, ([\d.]+) ms each\)")


def say(text: str) -> None:
    print(f"== {text}", flush=True)


@dataclass
class Figures:
    label: str
    items: int
    wall: float
    rss_mb: float
    raw_bytes: int
    stored_bytes: int
    parts: int
    checkpoints: int | None = None
    checkpoint_ms: float | None = None

    def row(self) -> list[str]:
        return [
            self.label, f"{self.items:,}", f"{self.wall:.1f}", f"{self.items / self.wall:,.0f}",
            f"{self.raw_bytes / self.wall / 1e6:.1f}", f"{self.rss_mb:.0f}", f"{self.parts}",
            "—" if self.checkpoints is None else str(self.checkpoints),
            "—" if self.checkpoint_ms is None else f"{self.checkpoint_ms:.1f}",
        ]


def policy_text(vault: Path, table: str) -> str:
    return f"""\
version: 1
stores:
  vault: {{type: file, path: {json.dumps(str(vault))}}}
tiers:
  bench: {{schedule: "0 2 * * *", rpo: 26h, retention: {{last: 3}}}}
datasets:
  single:
    source: {{type: dynamodb, table: {table}, region: {REGION}, segments: {SEGMENTS}}}
    tier: bench
    store: vault
  fanout:
    source: {{type: dynamodb, table: {table}, region: {REGION}, segments: {FANOUT_SEGMENTS}}}
    tier: bench
    store: vault
"""


def spawn(argv: list[str], env: dict[str, str], out: Any, err: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, env=env, stdout=out, stderr=err)


def reap(proc: subprocess.Popen[bytes], label: str, err: Any) -> float:
    """Wait for ``proc``; returns its peak RSS in MiB (ru_maxrss is KiB on Linux)."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        err.seek(0)
        raise SystemExit(f"bench: {label} exited {proc.returncode}\n{err.read().decode()[-4000:]}")
    return float(usage.ru_maxrss) / 1024


def manifest_of(vault: Path, dataset: str) -> dict[str, Any]:
    found = list((vault / dataset / "snapshots").glob("*/manifest.json"))
    if len(found) != 1:
        raise SystemExit(f"bench: expected one committed snapshot of {dataset}, found {len(found)}")
    return dict(json.loads(found[0].read_text()))


def run_single(env: dict[str, str], policy: Path, vault: Path, items: int) -> Figures:
    shutil.rmtree(vault / "single", ignore_errors=True)
    argv = [str(CLOUDKEEP), "--policy", str(policy), "run", "single", "--part-size", PART_SIZE,
            "--checkpoint-every", str(CHECKPOINT_EVERY)]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = spawn(argv, env, out, err)
        rss = reap(proc, "cloudkeep run", err)
        wall = time.perf_counter() - t0
        err.seek(0)
        log = err.read().decode("utf-8", "replace")
    manifest = manifest_of(vault, "single")
    if manifest["totals"]["items"] != items:
        raise SystemExit(f"bench: the snapshot holds {manifest['totals']['items']} items, not {items}")
    match = _CHECKPOINT_RE.search(log)
    return Figures(
        f"{items:,} items, 1 process", items, wall, rss, manifest["totals"]["raw_bytes"],
        manifest["totals"]["stored_bytes"], manifest["totals"]["parts"],
        int(match.group(1)) if match else None, float(match.group(2)) if match else None,
    )


def run_fanout(env: dict[str, str], policy: Path, vault: Path, items: int, queue_url: str) -> Figures:
    shutil.rmtree(vault / "fanout", ignore_errors=True)
    t0 = time.perf_counter()
    dispatch = subprocess.run(
        [str(CLOUDKEEP), "-q", "--policy", str(policy), "--format", "json", "run", "fanout",
         "--queue", f"sqs:{queue_url}", "--part-size", PART_SIZE,
         "--checkpoint-every", str(CHECKPOINT_EVERY)],
        env=env, capture_output=True, text=True, check=False,
    )
    if dispatch.returncode != 0 or json.loads(dispatch.stdout)[0]["status"] != "unfinished":
        raise SystemExit(f"bench: dispatch failed\n{dispatch.stdout}\n{dispatch.stderr}")
    argv = [str(CLOUDKEEP), "-q", "--policy", str(policy), "work", "--queue", f"sqs:{queue_url}",
            "--workers", str(FANOUT_SEGMENTS // FANOUT_PROCESSES + 1), "--wait", "1"]
    files = [(tempfile.TemporaryFile(), tempfile.TemporaryFile()) for _ in range(FANOUT_PROCESSES)]
    try:
        procs = [spawn(argv, env, out, err) for out, err in files]
        rss = max(reap(p, "cloudkeep work", err) for p, (_, err) in zip(procs, files, strict=True))
    finally:
        for out, err in files:
            out.close()
            err.close()
    wall = time.perf_counter() - t0
    manifest = manifest_of(vault, "fanout")
    if manifest["totals"]["items"] != items:
        raise SystemExit(f"bench: the fan-out snapshot holds {manifest['totals']['items']} items")
    return Figures(
        f"{items:,} items, {FANOUT_PROCESSES} workers", items, wall, rss,
        manifest["totals"]["raw_bytes"], manifest["totals"]["stored_bytes"],
        manifest["totals"]["parts"],
    )


def seed_table(name: str, items: int) -> float:
    import boto3

    resource = boto3.resource("dynamodb", region_name=REGION)
    table = resource.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    table.wait_until_exists()

    def write(lane: int) -> int:
        rng = random.Random(lane)
        own = boto3.session.Session().resource("dynamodb", region_name=REGION).Table(name)
        count = 0
        with own.batch_writer() as batch:
            for i in range(lane, items, SEED_THREADS):  # items made as they are written
                batch.put_item(Item=bench_item(i, rng))
                count += 1
        return count

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=SEED_THREADS) as pool:
        written = sum(pool.map(write, range(SEED_THREADS)))
    if written != items:
        raise SystemExit(f"bench: seeded {written} items, not {items}")
    return time.perf_counter() - t0


def table_out(rows: list[Figures]) -> None:
    head = ["run", "items", "wall s", "items/s", "MB/s raw", "peak RSS MiB", "parts",
            "checkpoints", "ms/checkpoint"]
    cells = [head] + [r.row() for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    for n, row in enumerate(cells):
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in
                        enumerate(zip(row, widths, strict=True))))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def main() -> int:
    if not CLOUDKEEP.exists():
        raise SystemExit(f"bench: {CLOUDKEEP} is missing: run `make setup`")
    shutil.rmtree(BENCH, ignore_errors=True)
    BENCH.mkdir(parents=True)
    say("starting DynamoDB Local and moto (SQS)")
    with DynamoDBLocal() as ddb, MotoServer() as moto:
        os.environ.update(moto.env())
        os.environ.update(ddb.env())
        env = {**os.environ, "CI": "1"}
        import boto3

        singles: list[Figures] = []
        fanouts: list[Figures] = []
        for items in SIZES:
            table = f"bench_scale_{items}"
            say(f"seeding {table} with {items:,} items ({SEED_THREADS} threads)")
            seconds = seed_table(table, items)
            print(f"seeded in {seconds:.1f}s ({items / seconds:,.0f} items/s)", flush=True)
            vault = BENCH / f"vault-{items}"
            policy = BENCH / f"cloudkeep-{items}.yaml"
            policy.write_text(policy_text(vault, table))
            say(f"cloudkeep run, {items:,} items ({SEGMENTS} segments, {PART_SIZE} parts)")
            singles.append(run_single(env, policy, vault, items))
            print("   " + "  ".join(singles[-1].row()), flush=True)
            queue_url = boto3.client("sqs", region_name=REGION).create_queue(
                QueueName=f"bench-work-{items}", Attributes={"VisibilityTimeout": "600"})["QueueUrl"]
            say(f"fan-out: {FANOUT_SEGMENTS} work items on SQS, {FANOUT_PROCESSES} `cloudkeep work` "
                "processes")
            fanouts.append(run_fanout(env, policy, vault, items, queue_url))
            print("   " + "  ".join(fanouts[-1].row()), flush=True)
            boto3.client("dynamodb", region_name=REGION).delete_table(TableName=table)
        say("stopping the emulators")
    print(f"\nDynamoDB Local, items of about 400 B; {PART_SIZE} parts, a checkpoint after every "
          f"part; whole processes (start-up included); fan-out peak RSS is the largest worker's")
    table_out(singles + fanouts)
    small, large = singles[0], singles[-1]
    ratio = large.rss_mb / small.rss_mb
    verdict = "met" if ratio <= 1.2 else "NOT met"
    print(f"\npeak RSS {large.items:,} / {small.items:,} items: {ratio:.2f}  (target <= 1.2: {verdict})")
    return 0


if __name__ == "__main__":
    if shutil.which("java") is None:
        sys.exit("bench: java is needed for DynamoDB Local (Java 17+)")
    sys.exit(main())
