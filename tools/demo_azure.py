"""The Azure part of `make demo`: a Cosmos DB container → cloudkeep run → verify → restore --into a
new container → compare, with the snapshot in Azure Blob Storage (Azurite).

``main()`` returns True when the restored container equals the source item by item (and its
content digest equals the manifest's), False otherwise. Run it alone with
``.venv/bin/python tools/demo_azure.py``.

Both emulators keep their data only while the demo runs (the Cosmos DB server in memory, Azurite in
a temporary folder). The policy is left in ``.demo/azure/cloudkeep.yaml`` to read.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools.emulators import EmulatorError  # noqa: E402
from tools.emulators_azure import Azurite, CosmosServer  # noqa: E402

DEMO = ROOT / ".demo" / "azure"
DATABASE = "shop"
CONTAINER = "carts"
RESTORED = "carts_restored"
BLOB_CONTAINER = "cloudkeep-vault"
ITEMS = 400
SYSTEM_PROPERTIES = ("_rid", "_self", "_etag", "_attachments", "_ts")


def policy_text(endpoint: str) -> str:
    return f"""\
# The Azure demo's policy: a Cosmos DB container backed up into an Azure Blob container.
# Both are emulators here: the Cosmos DB server (its key in $COSMOS_KEY, never in this file) and
# Azurite (its connection string in $AZURE_STORAGE_CONNECTION_STRING).
version: 1
stores:
  vault: {{type: azure_blob, container: {BLOB_CONTAINER}, prefix: backups}}
tiers:
  standard:
    schedule: "0 2 * * *"
    rpo: 26h
    retention: {{daily: 7, weekly: 4, monthly: 6}}
datasets:
  carts:
    source:
      type: cosmos
      endpoint: {endpoint}
      database: {DATABASE}
      container: {CONTAINER}
      verify_tls: false          # the local emulator's certificate is self-signed
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


def documents(count: int) -> list[dict[str, Any]]:
    """Carts with nested lines, unicode, nulls, booleans, floats, integers up to 2^53 and ids
    with special characters; a few without a partition key value."""
    rng = random.Random(42)
    names = ["Ada", "Grace", "Zoë", "José", "李雷", "Åsa", "Ωmega", "🚀 Rocket"]
    docs = []
    for i in range(count):
        doc: dict[str, Any] = {
            "id": f"cart-{i:04d}" if i % 10 else f"cart {i} ü+%&;:=@ 🚀",
            "customer": f"c{i % 37:03d}",
            "owner": rng.choice(names),
            "total_cents": rng.randint(0, 2**53) if i % 25 == 0 else rng.randint(0, 10**6),
            "discount": rng.random(),
            "paid": rng.random() < 0.7,
            "coupon": None if i % 3 else f"SAVE{i % 50}",
            "lines": [{"sku": f"SKU-{rng.randint(1, 999)}", "qty": rng.randint(1, 5),
                       "price": round(rng.uniform(0.5, 99.0), 2), "note": rng.choice([None, "gift 🎁", ""])}
                      for _ in range(rng.randint(0, 4))],
            "address": {"city": rng.choice(["Zürich", "Paris", "東京", "São Paulo"]), "zip": None},
        }
        if i % 97 == 0:
            del doc["customer"]  # no partition key value: the "undefined" partition
        docs.append(doc)
    return docs


def items(container: Any) -> dict[tuple[str, str], dict[str, Any]]:
    out = {}
    for doc in container.query_items("SELECT * FROM c", enable_cross_partition_query=True):
        out[(doc["id"], json.dumps(doc.get("customer")))] = {
            k: v for k, v in doc.items() if k not in SYSTEM_PROPERTIES}
    return out


def main() -> bool:
    DEMO.mkdir(parents=True, exist_ok=True)
    say("Azure: starting Azurite and the Cosmos DB server")
    azurite, cosmos = Azurite(), CosmosServer()
    try:
        azurite.start()
        cosmos.start()
    except EmulatorError as exc:
        print(f"demo: {exc}")
        cosmos.stop()
        azurite.stop()
        return False
    saved = {k: os.environ.get(k) for k in (*azurite.env(), *cosmos.env())}
    try:
        os.environ.update(azurite.env())  # AZURE_STORAGE_CONNECTION_STRING, for the blob store
        os.environ.update(cosmos.env())  # COSMOS_KEY, for the Cosmos DB source
        (DEMO / "cloudkeep.yaml").write_text(policy_text(cosmos.endpoint))
        return _demo(azurite, cosmos)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        print("stopping Azurite and the Cosmos DB server")
        cosmos.stop()
        azurite.stop()


def _demo(azurite: Azurite, cosmos: CosmosServer) -> bool:
    from azure.cosmos import PartitionKey
    from azure.storage.blob import BlobServiceClient

    from cloudkeep.sources.cosmos import CosmosSource

    print(f"Azurite blob service on {azurite.endpoint}, Cosmos DB server on {cosmos.endpoint}")
    BlobServiceClient.from_connection_string(azurite.connection_string).create_container(BLOB_CONTAINER)
    client: Any = cosmos.client()
    database = client.create_database(DATABASE)
    container = database.create_container(
        CONTAINER, partition_key=PartitionKey(path="/customer"), default_ttl=60 * 60 * 24 * 90,
        unique_key_policy={"uniqueKeys": [{"paths": ["/order_no"]}]},
    )
    say(f"seeding Cosmos DB: {ITEMS} carts in {DATABASE}/{CONTAINER}")
    t0 = time.monotonic()
    docs = documents(ITEMS)
    for n, doc in enumerate(docs):
        doc["order_no"] = n
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(container.upsert_item, docs))
    print(f"seeded {len(docs)} items in {time.monotonic() - t0:.1f}s (nested lines, unicode, nulls, "
          "booleans, floats, integers up to 2^53, ids with spaces and symbols, items without a "
          "partition key value; unique keys and a default TTL on the container)")

    say("backing up the container into Azure Blob Storage")
    ok = cloudkeep("validate") and cloudkeep("run", "carts") and cloudkeep("list", "carts")
    say("verifying the snapshot")
    ok = ok and cloudkeep("verify", "carts@latest")
    say(f"restoring it into a new container, {RESTORED}")
    ok = ok and cloudkeep("restore", "carts@latest", "--into", RESTORED)
    if not ok:
        return False

    say("comparing source and restored containers item by item")
    source_items = items(container)
    restored_container = database.get_container_client(RESTORED)
    restored_items = items(restored_container)
    differing = [key for key, doc in source_items.items() if restored_items.get(key) != doc]
    extra = sorted(set(restored_items) - set(source_items))
    reader = CosmosSource(cosmos.endpoint, DATABASE, CONTAINER, key=cosmos.key, verify_tls=False)
    n1, d1 = reader.scan_digest(CONTAINER)
    n2, d2 = reader.scan_digest(RESTORED)
    settings = restored_container.read()
    same_settings = (settings["partitionKey"]["paths"] == ["/customer"]
                     and settings.get("defaultTtl") == 60 * 60 * 24 * 90
                     and settings.get("uniqueKeyPolicy", {}).get("uniqueKeys") == [{"paths": ["/order_no"]}])
    print(f"source:   {n1} items, content digest {d1[:16]}…")
    print(f"restored: {n2} items, content digest {d2[:16]}…")
    print(f"restored container settings (partition key, default TTL, unique keys): "
          f"{'same' if same_settings else 'DIFFERENT'}")
    for key in (differing + extra)[:5]:
        print(f"  differs: {key}")
    blobs = [b.name for b in BlobServiceClient.from_connection_string(azurite.connection_string)
             .get_container_client(BLOB_CONTAINER).list_blobs(name_starts_with="backups/carts/snapshots/")]
    same = (not differing and not extra and (n1, d1) == (n2, d2) and n1 == len(source_items) == ITEMS
            and same_settings)
    say("summary (Azure)")
    print(f"{'OK' if same else 'MISMATCH'}: {len(restored_items)} of {len(source_items)} Cosmos DB items "
          f"restored identically from {len(blobs)} blobs in Azurite container {BLOB_CONTAINER}/backups")
    return same


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
