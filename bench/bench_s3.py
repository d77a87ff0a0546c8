"""`make bench` (S3 part): incremental-forever snapshots of a 5,000-object bucket on moto server.

Seeds a bucket with 5,000 objects (200 B to 8 KiB, a tenth with metadata and tags), then, for a
file store (objects streamed through cloudkeep) and an S3 store on the same endpoint (objects
copied server-side), times the first snapshot and a second snapshot of the unchanged bucket, and
compares the second (median of three) with a plain listing of the bucket (ListObjectsV2, all pages). Bytes copied
come from the manifest (``source.blobs``). Prints figures only — no assertions.
"""

from __future__ import annotations

import os
import random
import secrets
import shutil
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "shared"))

from tools.emulators import MotoServer  # noqa: E402

OBJECTS = 5_000
REGION = "us-east-1"
BENCH = ROOT / ".bench" / "s3"
LISTING_REPEATS = 3
REPEATS = 3  # snapshots of the unchanged bucket (median), and listings right after them


def seed(s3: Any, bucket: str) -> int:
    rng = random.Random(42)

    def put(i: int) -> int:
        body = rng.randbytes(rng.randint(200, 8192)) if i % 50 else b"shared content\n"
        extra: dict[str, Any] = {}
        if i % 10 == 0:
            extra = {"Metadata": {"n": str(i)}, "Tagging": f"batch={i // 1000}",
                     "ContentType": "application/x-bench"}
        s3.put_object(Bucket=bucket, Key=f"objects/{i // 100:03d}/{i:05d}.bin", Body=body, **extra)
        return len(body)

    with ThreadPoolExecutor(max_workers=16) as pool:
        return sum(pool.map(put, range(OBJECTS)))


def plain_listing(s3: Any, bucket: str) -> float:
    t0 = time.perf_counter()
    count = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        count += len(page.get("Contents", []))
    assert count == OBJECTS, count
    return time.perf_counter() - t0


def policy_for(bucket: str, store: dict[str, Any]) -> Any:
    from cloudkeep.policy import Policy

    return Policy.model_validate({
        "version": 1,
        "stores": {"vault": store},
        "tiers": {"t": {"schedule": "0 2 * * *", "rpo": "26h", "retention": {"last": 2}}},
        "datasets": {"files": {"source": {"type": "s3", "bucket": bucket, "region": REGION},
                               "tier": "t", "store": "vault"}},
    })


def snap(policy: Any, i: int) -> tuple[float, Any]:
    from cloudkeep import layout
    from cloudkeep.engine import backup

    sid = layout.snapshot_id_for(datetime.now(UTC) + timedelta(seconds=i), f"{i:06x}")
    t0 = time.perf_counter()
    result = backup(policy, "files", snapshot_id=sid)
    seconds = time.perf_counter() - t0
    assert result.manifest is not None, result.error
    return seconds, result.manifest


def mib(n: float) -> str:
    return f"{n / 1024 / 1024:.1f} MiB"


def main() -> int:
    import boto3

    shutil.rmtree(BENCH, ignore_errors=True)
    BENCH.mkdir(parents=True)
    with MotoServer() as moto:
        os.environ.update(moto.env())
        s3 = boto3.client("s3", region_name=REGION)
        bucket = f"bench-src-{secrets.token_hex(3)}"
        s3.create_bucket(Bucket=bucket)
        print(f"== moto server on {moto.endpoint}; seeding {OBJECTS:,} objects", flush=True)
        t0 = time.perf_counter()
        seeded = seed(s3, bucket)
        print(f"seeded {OBJECTS:,} objects ({mib(seeded)}) in {time.perf_counter() - t0:.1f}s",
              flush=True)
        listing = statistics.median(plain_listing(s3, bucket) for _ in range(LISTING_REPEATS))
        print(f"plain listing of the bucket (median of {LISTING_REPEATS}): {listing:.2f}s", flush=True)

        vault = f"bench-vault-{secrets.token_hex(3)}"
        s3.create_bucket(Bucket=vault)
        stores = {
            "file store (streamed)": {"type": "file", "path": str(BENCH / "vault")},
            "S3 store (server-side)": {"type": "s3", "bucket": vault, "prefix": "ck", "region": REGION},
        }
        rows = []
        listings = [listing]
        for name, store in stores.items():
            policy = policy_for(bucket, store)
            print(f"== {name}: first snapshot", flush=True)
            first_s, first = snap(policy, 0)
            print(f"== {name}: {REPEATS} more snapshots of the unchanged bucket", flush=True)
            again = [snap(policy, i) for i in range(1, REPEATS + 1)]
            second_s = statistics.median(t for t, _ in again)
            copied = max(m.source["blobs"]["copied_bytes"] for _, m in again)
            hashed = max(m.source["blobs"]["hashed_bytes"] for _, m in again)
            reused = min(m.source["blobs"]["reused_objects"] for _, m in again)
            listings.append(statistics.median(plain_listing(s3, bucket) for _ in range(REPEATS)))
            rows.append((name, first_s, first.source["blobs"], second_s,
                         {"copied_bytes": copied, "hashed_bytes": hashed, "reused_objects": reused},
                         listings[-1]))

    print()
    print(f"S3 source, {OBJECTS:,} objects ({mib(seeded)}), moto server; plain listing "
          f"{' / '.join(f'{x:.2f}' for x in listings)}s (medians: before, after each store)")
    head = ["store", "1st s", "1st copied", "1st blobs", "2nd s", "2nd copied", "2nd read",
            "2nd reused", "listing s", "2nd / listing"]
    print("  ".join(f"{h:>22}" if i == 0 else f"{h:>13}" for i, h in enumerate(head)))
    for name, first_s, b1, second_s, b2, list_s in rows:
        cells = [f"{first_s:.2f}", mib(b1["copied_bytes"]), str(b1["copied_objects"]),
                 f"{second_s:.2f}", f"{b2['copied_bytes']} B", f"{b2['hashed_bytes']} B",
                 str(b2["reused_objects"]), f"{list_s:.2f}", f"{second_s / list_s:.2f}x"]
        print(f"{name:>22}  " + "  ".join(f"{c:>13}" for c in cells))
    print(f"\n(1st blobs: distinct contents stored; identical content is stored once. 2nd: median "
          f"of {REPEATS} snapshots of the unchanged bucket, copied must be 0 B; read: bytes read "
          "to hash; listing s: median of a plain ListObjectsV2 walk right after them.)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
