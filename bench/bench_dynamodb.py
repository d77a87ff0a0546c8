"""`make bench`: cloudkeep vs a bare parallel Scan vs dynamodump, on DynamoDB Local; and cloudkeep
with envelope encryption (a local key file) vs without.

Seeds 20,000 items of about 400 bytes into an in-memory DynamoDB Local, then times each tool as a
whole process (interpreter start-up included on every side) and reads the child's peak RSS from
``os.wait4``. Prints figures only — no assertions; the targets are shown next to the ratios.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools.emulators import DynamoDBLocal  # noqa: E402
from tools.sample_data import bench_item  # noqa: E402

ITEMS = 20_000
SEED_THREADS = 4
SEGMENTS = 4
REPEATS = 5
TABLE = "bench_users"
DATASET = "users"
REGION = "us-east-1"

BENCH = ROOT / ".bench"
VAULT = BENCH / "vault"
DUMP = BENCH / "dynamodump"
CLOUDKEEP = ROOT / ".venv" / "bin" / "cloudkeep"
PYTHON = ROOT / ".venv" / "bin" / "python"
DYNAMODUMP = ROOT / ".venv-bench" / "bin" / "dynamodump"
BARE_SCAN = Path(__file__).resolve().parent / "bare_scan.py"

TABLE_SCHEMA: dict[str, Any] = {
    "KeySchema": [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ],
    "AttributeDefinitions": [
        {"AttributeName": "pk", "AttributeType": "S"},
        {"AttributeName": "sk", "AttributeType": "S"},
    ],
    "BillingMode": "PAY_PER_REQUEST",
}

POLICY = f"""\
version: 1
stores:
  vault: {{type: file, path: {json.dumps(str(VAULT))}}}
tiers:
  bench:
    schedule: "0 2 * * *"
    rpo: 26h
    retention: {{last: 3}}
datasets:
  {DATASET}:
    source: {{type: dynamodb, table: {TABLE}, region: {REGION}, segments: {SEGMENTS}}}
    tier: bench
    store: vault
"""

# The same dataset with envelope encryption: a fresh data key per snapshot, wrapped by a key file.
POLICY_ENCRYPTED = POLICY + """\
keys:
  offline: {provider: local, path: bench.key}
encryption: {keys: [offline]}
"""


def say(text: str) -> None:
    print(f"== {text}", flush=True)


# ------------------------------------------------------------------------------------ measuring


@dataclass
class Sample:
    wall: float  # seconds
    rss_mb: float  # peak resident set size of the child, MiB
    stored: int | None = None  # bytes the tool left on disk
    items: int | None = None
    cpu: float | None = None  # user + system seconds of the child (steadier than wall on a busy machine)


@dataclass
class Series:
    name: str
    samples: list[Sample] = field(default_factory=list)

    def median(self, attr: str) -> float | None:
        values = [getattr(s, attr) for s in self.samples if getattr(s, attr) is not None]
        return statistics.median(values) if values else None


def measure(argv: list[str], env: dict[str, str], cwd: Path, label: str) -> tuple[Sample, str]:
    """Run ``argv`` as one child process; wall time from just before the fork to its reaping,
    peak RSS from the child's own rusage. Returns the sample and the child's stdout."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        stderr = err.read().decode("utf-8", "replace")
    if proc.returncode != 0:
        raise SystemExit(
            f"bench: {label} exited {proc.returncode}\n$ {' '.join(argv)}\n"
            f"--- stdout\n{stdout[-4000:]}\n--- stderr\n{stderr[-4000:]}"
        )
    return (Sample(wall=wall, rss_mb=usage.ru_maxrss / 1024, cpu=usage.ru_utime + usage.ru_stime),
            stdout)  # ru_maxrss is KiB on Linux


def tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# ------------------------------------------------------------------------------------ the runs


def run_cloudkeep(env: dict[str, str], workdir: Path, policy: Path) -> Sample:
    shutil.rmtree(VAULT, ignore_errors=True)
    argv = [str(CLOUDKEEP), "-q", "--policy", str(policy), "run", DATASET]
    sample, _ = measure(argv, env, workdir, "cloudkeep run")
    manifests = list((VAULT / DATASET / "snapshots").glob("*/manifest.json"))
    if len(manifests) != 1:
        raise SystemExit(f"bench: expected one committed snapshot in {VAULT}, found {len(manifests)}")
    snapshot = manifests[0].parent
    sample.stored = tree_bytes(snapshot)
    sample.items = int(json.loads(manifests[0].read_text())["totals"]["items"])
    return sample


def run_bare_scan(env: dict[str, str], workdir: Path) -> Sample:
    argv = [str(PYTHON), str(BARE_SCAN), TABLE, str(SEGMENTS)]
    sample, stdout = measure(argv, env, workdir, "bare scan")
    sample.items = int(stdout.strip())
    return sample


def dynamodump_sleep_seconds() -> float | None:
    """dynamodump starts MAX_NUMBER_BACKUP_WORKERS threads THREAD_START_DELAY seconds apart before
    it queues the table (even for one ``-s`` table): idle time inside its wall time."""
    probe = "from dynamodump import dynamodump as d; print(d.MAX_NUMBER_BACKUP_WORKERS * d.THREAD_START_DELAY)"
    try:
        out = subprocess.run([str(DYNAMODUMP.parent / "python"), "-c", probe], capture_output=True,
                             text=True, timeout=60, check=True).stdout
        return float(out.strip())
    except (subprocess.SubprocessError, OSError, ValueError):
        return None


def run_dynamodump(env: dict[str, str], workdir: Path, port: int) -> Sample:
    shutil.rmtree(DUMP, ignore_errors=True)
    DUMP.mkdir(parents=True)
    # DynamoDB Local keeps one database per access key and region: use the same ones as the seed.
    argv = [
        str(DYNAMODUMP), "-m", "backup", "-r", env["AWS_DEFAULT_REGION"], "-s", TABLE,
        "--host", "127.0.0.1", "--port", str(port),
        "--accessKey", env["AWS_ACCESS_KEY_ID"], "--secretKey", env["AWS_SECRET_ACCESS_KEY"],
        "--dumpPath", str(DUMP), "--log", "WARNING",
    ]
    sample, _ = measure(argv, env, workdir, "dynamodump backup")
    sample.stored = tree_bytes(DUMP)
    sample.items = sum(
        len(json.loads(p.read_text())["Items"]) for p in (DUMP / TABLE / "data").glob("*.json")
    )
    return sample


# ------------------------------------------------------------------------------------ seeding


def seed_table(table_name: str) -> float:
    """Create the table and write ITEMS items with SEED_THREADS parallel batch writers.
    Items are made in one deterministic sequence (as ``sample_data.seed`` would), then split."""
    import boto3

    resource = boto3.resource("dynamodb", region_name=REGION)
    table = resource.create_table(TableName=table_name, **TABLE_SCHEMA)
    table.wait_until_exists()
    rng = random.Random(7)
    items = [bench_item(i, rng) for i in range(ITEMS)]

    def write(chunk: list[dict[str, Any]]) -> int:
        # boto3 resources are not thread-safe: one session per thread.
        own = boto3.session.Session().resource("dynamodb", region_name=REGION).Table(table_name)
        with own.batch_writer() as batch:
            for item in chunk:
                batch.put_item(Item=item)
        return len(chunk)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=SEED_THREADS) as pool:
        written = sum(pool.map(write, [items[i::SEED_THREADS] for i in range(SEED_THREADS)]))
    elapsed = time.perf_counter() - t0
    count = resource.meta.client.scan(TableName=table_name, Select="COUNT")
    total = count["Count"]
    while "LastEvaluatedKey" in count:
        count = resource.meta.client.scan(
            TableName=table_name, Select="COUNT", ExclusiveStartKey=count["LastEvaluatedKey"]
        )
        total += count["Count"]
    if written != ITEMS or total != ITEMS:
        raise SystemExit(f"bench: seeded {written} items but the table holds {total}")
    return elapsed


# ------------------------------------------------------------------------------------ report


def codec_throughput(size: int = 64 << 20) -> float:
    """MiB/s through encrypt_part and DecryptingReader (one 64 MiB part, in this process)."""
    import io

    from cloudkeep.codec import DecryptingReader, encrypt_part

    key, body = os.urandom(32), os.urandom(size)
    t0 = time.perf_counter()
    stored = encrypt_part(key, "bench", "part", body)
    reader = DecryptingReader(io.BytesIO(stored), key, "bench", "part")
    while reader.read(1 << 20):
        pass
    return (size >> 20) / (time.perf_counter() - t0)


def fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def report(ck: Series, bare: Series, dump: Series, seeded_bytes: int, dump_sleep: float | None,
           enc: Series) -> None:
    rows = []
    for series in (ck, enc, bare, dump):
        n = len(series.samples)
        rows.append([
            series.name,
            f"{n}" if n == 1 else f"median of {n}",
            fmt(series.median("wall"), ".2f"),
            fmt(series.median("rss_mb"), ".1f"),
            fmt(series.median("stored"), ",.0f"),
            fmt(None if series.median("wall") is None else ITEMS / series.median("wall"), ",.0f"),
        ])
    head = ["tool", "runs", "wall s", "peak RSS MiB", "bytes stored", "items/s"]
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            str(c).ljust(w) if i == 0 or i == 1 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    print()
    print(f"DynamoDB Local, {ITEMS:,} items (~{seeded_bytes / ITEMS:.0f} B of JSON each), "
          f"{SEGMENTS} scan segments; each figure is a whole process")
    print(line(head))
    print(line(["-" * w for w in widths]))
    for row in rows:
        print(line(row))

    print("\nall runs (wall s / CPU s / peak RSS MiB):")
    for series in (ck, enc, bare, dump):
        runs = ", ".join(f"{s.wall:.2f}/{s.cpu or 0:.2f}/{s.rss_mb:.0f}" for s in series.samples)
        print(f"  {series.name:<24} {runs}")

    ck_wall, bare_wall, dump_wall = ck.median("wall"), bare.median("wall"), dump.median("wall")
    ck_bytes, dump_bytes = ck.median("stored"), dump.median("stored")
    assert ck_wall and bare_wall and dump_wall and ck_bytes and dump_bytes
    enc_wall, enc_cpu, ck_cpu = enc.median("wall"), enc.median("cpu"), ck.median("cpu")
    assert enc_wall and enc_cpu and ck_cpu
    enc_min, ck_min = min(x.wall for x in enc.samples), min(x.wall for x in ck.samples)
    ratios = [
        ("cloudkeep / bare scan, wall", ck_wall / bare_wall, "<= 1.25", ck_wall / bare_wall <= 1.25),
        ("encrypted / unencrypted cloudkeep, wall", enc_wall / ck_wall, "<= 1.15", enc_wall / ck_wall <= 1.15),
        ("encrypted / unencrypted, fastest wall", enc_min / ck_min, "", None),
        ("encrypted / unencrypted, CPU seconds", enc_cpu / ck_cpu, "", None),
        ("cloudkeep / dynamodump, wall", ck_wall / dump_wall, "<= 0.15", ck_wall / dump_wall <= 0.15),
        ("dynamodump / cloudkeep, bytes", dump_bytes / ck_bytes, "", None),
        *([(f"cloudkeep / dynamodump less {dump_sleep:.0f} s sleep", ck_wall / (dump_wall - dump_sleep),
             "", None)] if dump_sleep and dump_wall > dump_sleep else []),
        ("cloudkeep / bare scan, peak RSS", (ck.median("rss_mb") or 0) / (bare.median("rss_mb") or 1),
         "", None),
    ]
    print("\nratios:")
    for name, value, target, ok in ratios:
        verdict = "" if ok is None else ("  met" if ok else "  NOT met")
        print(f"  {name:<40} {value:8.2f}  {('target ' + target) if target else '':<15}{verdict}")
    if dump_sleep:
        print(f"  (dynamodump's wall time includes {dump_sleep:.0f} s of thread-start sleeps: "
              f"MAX_NUMBER_BACKUP_WORKERS x THREAD_START_DELAY)")
    print(f"encryption in-process: {codec_throughput():,.0f} MiB/s of compressed part bytes "
          "(AES-256-GCM in 1 MiB chunks, encrypt + decrypt)")
    print(f"\ncloudkeep: {ITEMS / ck_wall:,.0f} items/s end to end "
          f"(bare scan {ITEMS / bare_wall:,.0f} items/s; cloudkeep's overhead over it "
          f"{ck_wall - bare_wall:+.2f} s)")


def main() -> int:
    for exe in (CLOUDKEEP, PYTHON, DYNAMODUMP):
        if not exe.exists():
            raise SystemExit(f"bench: {exe} is missing: run `make bench` (it installs what is needed)")
    BENCH.mkdir(exist_ok=True)
    say("starting DynamoDB Local")
    with DynamoDBLocal() as ddb, tempfile.TemporaryDirectory(prefix="cloudkeep-bench-") as tmp:
        os.environ.update(ddb.env())
        env = {**os.environ, **ddb.env()}
        workdir = Path(tmp)
        policy = workdir / "cloudkeep.yaml"
        policy.write_text(POLICY)
        encrypted = workdir / "cloudkeep-encrypted.yaml"
        encrypted.write_text(POLICY_ENCRYPTED)
        from cloudkeep.keys.local import create_key_file

        create_key_file(workdir / "bench.key")
        print(f"DynamoDB Local on {ddb.endpoint}", flush=True)

        say(f"seeding {TABLE} with {ITEMS:,} items ({SEED_THREADS} threads of batch_writer)")
        seconds = seed_table(TABLE)
        print(f"seeded in {seconds:.1f}s ({ITEMS / seconds:,.0f} items/s)", flush=True)

        say("warm-up (not counted): one bare scan, one cloudkeep run, one encrypted run")
        run_bare_scan(env, workdir)
        run_cloudkeep(env, workdir, policy)
        run_cloudkeep(env, workdir, encrypted)

        ck, bare, dump = Series("cloudkeep run"), Series("bare 4-segment scan"), Series("dynamodump")
        enc = Series("cloudkeep run, encrypted")
        for i in range(REPEATS):
            say(f"round {i + 1}/{REPEATS}: cloudkeep run, encrypted run, bare scan")
            for series, runner in ((ck, lambda: run_cloudkeep(env, workdir, policy)),
                                   (enc, lambda: run_cloudkeep(env, workdir, encrypted)),
                                   (bare, lambda: run_bare_scan(env, workdir))):
                sample = runner()
                if sample.items != ITEMS:
                    raise SystemExit(f"bench: {series.name} read {sample.items} items, not {ITEMS}")
                series.samples.append(sample)
                print(f"   {series.name:<22} {sample.wall:6.2f} s  {sample.rss_mb:6.1f} MiB", flush=True)

        say("dynamodump backup (once; it is slow)")
        sample = run_dynamodump(env, workdir, ddb.port)
        if sample.items != ITEMS:
            raise SystemExit(f"bench: dynamodump dumped {sample.items} items, not {ITEMS}")
        dump.samples.append(sample)
        print(f"   {dump.name:<22} {sample.wall:6.2f} s  {sample.rss_mb:6.1f} MiB", flush=True)

        raw = json.loads(next((VAULT / DATASET / "snapshots").glob("*/manifest.json")).read_text())
        seeded_bytes = int(raw["totals"]["raw_bytes"])
        say("stopping DynamoDB Local")
    report(ck, bare, dump, seeded_bytes, dynamodump_sleep_seconds(), enc)
    return 0


if __name__ == "__main__":
    if shutil.which("java") is None:
        sys.exit("bench: java is needed for DynamoDB Local (Java 17+)")
    sys.exit(main())
