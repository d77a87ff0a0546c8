"""`make bench` (diff part): `cloudkeep diff` of two 20,000-item and two 200,000-item snapshots.

For each size, two snapshots of a DynamoDB-shaped table are written into a file store by the
real engine (parts, key indexes, manifests; the items are generated, not read from DynamoDB
Local: the diff reads only the store), about 1% of the items changed, 0.5% deleted and 1%
inserted between them. Then `cloudkeep diff` runs as a whole process — wall time and peak RSS
(the child's own rusage) — and `cloudkeep find` of one changed item (wall time, in process, and
how many parts the key indexes let it skip). Prints figures only; the target (peak RSS of the 200,000-item
diff within 1.2x of the 20,000-item one) is shown as met or not.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

if len(sys.argv) > 1:  # the child that writes the snapshots (the parent stays small, so its
    # image, copied by fork until exec, never counts in a measured child's peak RSS)
    from cloudkeep import services
    from cloudkeep.codec import canonical_json
    from cloudkeep.engine import RunOptions, backup
    from cloudkeep.policy import load_policy
    from cloudkeep.sources.memory import MemorySource, MemoryWorld
else:
    MemorySource = object

SIZES = (20_000, 200_000)
PART_SIZE = 1024 * 1024  # small parts: many of them, as a large table has
SEGMENTS = 4
BENCH = ROOT / ".bench" / "diff"
CLOUDKEEP = ROOT / ".venv" / "bin" / "cloudkeep"
WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india"]


def say(text: str) -> None:
    print(f"== {text}", flush=True)


def item(i: int, version: int) -> bytes:
    """One DynamoDB line (about 400 bytes), the same for the same (i, version)."""
    rng = random.Random(i * 7 + version)
    doc = {"Item": {
        "pk": {"S": f"user#{i:08d}"}, "sk": {"S": "profile"},
        "name": {"S": f"user {i} " + "".join(rng.choice("abcdefghij") for _ in range(20))},
        "email": {"S": f"user{i}@example.com"}, "age": {"N": str(rng.randint(18, 90))},
        "balance": {"N": f"{rng.randint(0, 10**7)}.{rng.randint(0, 99):02d}"},
        "bio": {"S": " ".join(rng.choice(WORDS) for _ in range(12))},
        "version": {"N": str(version)},
    }}
    return canonical_json(doc)


def plan(n: int, after: bool) -> Iterator[tuple[int, int]]:
    """(item number, version) of every item of the first (``after`` False) or second snapshot."""
    for i in range(n):
        if after and i % 200 == 1:
            continue  # deleted
        yield i, (2 if after and i % 100 == 0 else 1)
    if after:
        for i in range(n, n + n // 100):
            yield i, 1  # inserted


class Generated(MemorySource):  # type: ignore[misc,valid-type]
    """A DynamoDB-shaped table generated on the fly (nothing held in memory)."""

    def __init__(self, n: int, after: bool) -> None:
        super().__init__(MemoryWorld(), "bench", segments=SEGMENTS, page_size=1000)
        self.n, self.after = n, after

    def describe(self) -> dict[str, Any]:
        return super().describe() | {"type": "dynamodb",
                                     "key_schema": [{"AttributeName": "pk", "KeyType": "HASH"},
                                                    {"AttributeName": "sk", "KeyType": "RANGE"}]}

    def read_segment_from(self, segment: int, total: int, cursor: dict[str, Any] | None
                          ) -> Iterator[tuple[list[bytes], Callable[[int], Any] | None]]:
        page: list[bytes] = []
        for i, version in plan(self.n, self.after):
            if i % total != segment:
                continue
            page.append(item(i, version))
            if len(page) >= self.page_size:
                yield page, None
                page = []
        if page:
            yield page, None


def policy_text(vault: Path) -> str:
    return f"""
version: 1
stores: {{vault: {{type: file, path: {vault}}}}}
tiers: {{standard: {{schedule: "0 2 * * *", rpo: 26h, retention: {{last: 5}}}}}}
datasets:
  t: {{source: {{type: dynamodb, table: bench, region: us-east-1}}, tier: standard, store: vault}}
"""


@dataclass
class Figures:
    items: int
    write_seconds: float
    diff_seconds: float
    diff_rss_mb: float
    counts: dict[str, int]
    find_seconds: float
    parts_read: str


def child(argv: list[str]) -> tuple[float, float, str]:
    """Run ``argv``; (wall seconds, peak RSS MiB, stdout)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        if os.waitstatus_to_exitcode(status) != 0:
            err.seek(0)
            raise SystemExit(f"bench: {' '.join(argv[-4:])} failed\n{err.read().decode()[-4000:]}")
        out.seek(0)
        return wall, float(usage.ru_maxrss) / 1024, out.read().decode()


def write(n: int) -> None:
    """(child) Write the two snapshots of ``n`` items; print their ids and the time taken."""
    work = BENCH / str(n)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    policy_path = work / "cloudkeep.yaml"
    policy_path.write_text(policy_text(work / "vault"))
    policy = load_policy(str(policy_path)).policy
    t0 = time.perf_counter()
    ids = []
    for after in (False, True):
        result = backup(policy, "t", source=Generated(n, after), options=RunOptions(part_size=PART_SIZE),
                        snapshot_id=f"2026010{1 + after}T020000Z-bench{n}")
        assert result.manifest is not None
        ids.append(result.manifest.snapshot_id)
    print(json.dumps({"ids": ids, "seconds": time.perf_counter() - t0}))


def find(n: int) -> None:
    """(child) Find one changed item: time, and parts read of parts in the snapshots."""
    policy = load_policy(str(BENCH / str(n) / "cloudkeep.yaml")).policy
    key = json.dumps({"pk": {"S": f"user#{100:08d}"}, "sk": {"S": "profile"}})
    t0 = time.perf_counter()
    found = services.find(policy, "t", key)
    print(json.dumps({"seconds": time.perf_counter() - t0, "found": len(found.found),
                      "parts": f"{found.parts_read} of {found.parts_total}"}))


def one_size(n: int) -> Figures:
    work = BENCH / str(n)
    policy_path = work / "cloudkeep.yaml"
    _, _, out = child([sys.executable, __file__, "write", str(n)])
    wrote = json.loads(out)
    ids, written = wrote["ids"], wrote["seconds"]
    base = [str(CLOUDKEEP), "--policy", str(policy_path), "--format", "json", "--quiet"]
    seconds, rss, out = child([*base, "diff", f"t@{ids[0]}", f"t@{ids[1]}"])
    counts = {k: v for k, v in json.loads(out).items() if k in ("added", "removed", "changed", "unchanged")}
    wanted = {"added": n // 100, "removed": len([i for i in range(n) if i % 200 == 1]),
              "changed": len([i for i in range(n) if i % 100 == 0 and i % 200 != 1])}
    if {k: counts[k] for k in wanted} != wanted:
        raise SystemExit(f"bench: diff of {n} items counted {counts}, expected {wanted}")
    _, _, out = child([sys.executable, __file__, "find", str(n)])
    found = json.loads(out)
    if found["found"] != 2:
        raise SystemExit(f"bench: find of a changed item found it in {found['found']} snapshots")
    return Figures(n, written, seconds, rss, counts, found["seconds"], found["parts"])


def main() -> int:
    if len(sys.argv) > 1:
        {"write": write, "find": find}[sys.argv[1]](int(sys.argv[2]))
        return 0
    if not CLOUDKEEP.exists():
        raise SystemExit("bench: run `make setup` first")
    rows = []
    for n in SIZES:
        say(f"diff of two {n:,}-item snapshots")
        rows.append(one_size(n))
    print()
    print(f"{'items':>9} {'write s':>8} {'diff s':>7} {'items/s':>9} {'peak RSS MiB':>13} "
          f"{'added':>6} {'removed':>7} {'changed':>7} {'unchanged':>9} {'find s':>7} {'parts':>10}")
    for r in rows:
        c = r.counts
        print(f"{r.items:>9,} {r.write_seconds:>8.1f} {r.diff_seconds:>7.1f} "
              f"{2 * r.items / r.diff_seconds:>9,.0f} {r.diff_rss_mb:>13.0f} {c['added']:>6} "
              f"{c['removed']:>7} {c['changed']:>7} {c['unchanged']:>9} {r.find_seconds:>7.1f} "
              f"{r.parts_read:>10}")
    small, large = rows[0], rows[-1]
    ratio = large.diff_rss_mb / small.diff_rss_mb
    print(f"\npeak RSS {large.items:,} vs {small.items:,} items: {ratio:.2f}x "
          f"(target <= 1.2x: {'met' if ratio <= 1.2 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
