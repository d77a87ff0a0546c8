"""`make demo`: DynamoDB Local → cloudkeep run → list → verify → restore → compare, all local.

The vault is a `file` store in ./.demo/vault; it is emptied at the start of each demo and left in
place afterwards, so `cloudkeep --policy .demo/cloudkeep.yaml list` still works after the demo.
Snapshots are encrypted with a local key file, .demo/cloudkeep.key (made once, mode 0600).
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools.emulators import DynamoDBLocal  # noqa: E402
from tools.sample_data import ORDERS_TABLE_SCHEMA, seed  # noqa: E402

DEMO = ROOT / ".demo"
ITEMS = 3000
POLICY = """\
# The demo's policy: one DynamoDB table, backed up into a local folder, encrypted.
version: 1
keys:
  offline: {provider: local, path: cloudkeep.key}   # made by: cloudkeep keys create --path ...
encryption: {keys: [offline]}
stores:
  vault: {type: file, path: vault}        # relative to this file: .demo/vault
tiers:
  standard:
    schedule: "0 * * * *"
    rpo: 90m
    retention: {hourly: 24, daily: 7, weekly: 4}
datasets:
  orders:
    source: {type: dynamodb, table: demo_orders, region: us-east-1}
    tier: standard
    store: vault
    offset: 0m                           # no stagger in the demo: due at once
"""


def say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m" if sys.stdout.isatty() else f"\n== {text}", flush=True)


def cloudkeep(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [str(Path(sys.executable).parent / "cloudkeep"), "--policy", str(DEMO / "cloudkeep.yaml"), *args]
    print("$ cloudkeep " + " ".join(args), flush=True)
    proc = subprocess.run(cmd, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    print(proc.stdout.rstrip())
    if proc.returncode != 0:
        raise SystemExit(f"demo: `cloudkeep {' '.join(args)}` exited {proc.returncode}")
    return proc


def main() -> int:
    shutil.rmtree(DEMO / "vault", ignore_errors=True)
    DEMO.mkdir(exist_ok=True)
    (DEMO / "cloudkeep.yaml").write_text(POLICY)
    if not (DEMO / "cloudkeep.key").exists():
        say("creating the demo's key file")
        cloudkeep("keys", "create", "--path", str(DEMO / "cloudkeep.key"))
    say("starting DynamoDB Local")
    with DynamoDBLocal() as ddb:
        os.environ.update(ddb.env())
        print(f"DynamoDB Local on {ddb.endpoint}")
        import boto3

        from cloudkeep.sources.dynamodb import DynamoDBSource

        resource = boto3.resource("dynamodb", region_name="us-east-1")
        say(f"seeding table demo_orders with {ITEMS} varied items")
        table = resource.create_table(TableName="demo_orders", **ORDERS_TABLE_SCHEMA)
        table.wait_until_exists()
        t0 = time.monotonic()
        seed(table, ITEMS)
        print(f"seeded in {time.monotonic() - t0:.1f}s (strings, unicode, 38-digit numbers, sets, "
              "binary with NUL bytes, nested lists and maps, nulls, booleans)")

        say("a scheduled tick: what is due, then run it (as the functions do every 15 minutes)")
        cloudkeep("validate")
        cloudkeep("plan")
        cloudkeep("run", "--due")
        cloudkeep("run", "--due")  # a duplicated trigger: nothing more to do
        cloudkeep("list", "orders")
        cloudkeep("show", "orders@latest")
        say("verifying the newest snapshot (manifest tag, every part decrypted and checked)")
        cloudkeep("verify", "orders@latest")
        say("restoring it into a new table")
        cloudkeep("restore", "orders@latest", "--into", "demo_orders_restored")

        say("comparing source and restored tables")
        src = DynamoDBSource("demo_orders", "us-east-1")
        n1, d1 = src.scan_digest("demo_orders")
        n2, d2 = src.scan_digest("demo_orders_restored")
        same = (n1, d1) == (n2, d2)
        print(f"source:   {n1} items, content digest {d1[:16]}…")
        print(f"restored: {n2} items, content digest {d2[:16]}…")
        say("the weekly look: a report (terminal, and one self-contained HTML file)")
        cloudkeep("report", "--output", str(DEMO / "report.html"))
        vault = DEMO / "vault"
        size = sum(p.stat().st_size for p in vault.rglob("*") if p.is_file())
        plain = [p for p in vault.rglob("*.enc") if b"customer#" in p.read_bytes()]
        print(f"encrypted parts: {len(list(vault.rglob('*.enc')))}, with readable item text: {len(plain)}")
        same = same and not plain
        say("summary")
        print(f"{'OK' if same else 'MISMATCH'}: {n2} of {n1} items restored identically; "
              f"vault {vault.relative_to(ROOT)} holds {size / 1024:.0f} KiB")
        print("stopping DynamoDB Local")
    results = {"DynamoDB → file store": same}
    for name, module in (("Firestore → Cloud Storage", "tools.demo_gcp"),
                         ("Cosmos DB → Azure Blob", "tools.demo_azure")):
        try:
            other = importlib.import_module(module)
        except ModuleNotFoundError:
            continue
        outcome = other.main()
        if outcome is None:
            print(f"(skipped {name}: its emulator is not installed here — see above)")
            continue
        results[name] = bool(outcome)
    say("all clouds")
    for name, ok in results.items():
        print(f"{'OK      ' if ok else 'FAILED  '} {name}")
    return 0 if all(results.values()) else 1


if __name__ == "__main__":
    if shutil.which("java") is None:
        sys.exit("demo: java is needed for DynamoDB Local (Java 17+)")
    sys.exit(main())
