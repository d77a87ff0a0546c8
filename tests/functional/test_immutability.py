"""A tier's ``immutability``: Object Lock COMPLIANCE (its default) for the tier's objects in a
GOVERNANCE store, locked at least ``days``, kept in COMPLIANCE when prune extends a lock; and
``validate``'s warnings where the retention is shorter than the lock or the store cannot lock."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from cloudkeep import layout
from cloudkeep.stores.s3 import S3Store
from conftest import REGION
from helpers import cli, cli_json
from test_prune import table, write  # noqa: F401  (the table fixture)

pytestmark = pytest.mark.emulator


def test_a_compliance_tier_in_a_governance_store(tmp_path: Path, table: str,  # noqa: F811
                                                 capsys: Any, moto_server: Any) -> None:
    bucket = f"locked-{secrets.token_hex(4)}"
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    policy = write(tmp_path, f"""
version: 1
stores:
  vault: {{type: s3, bucket: {bucket}, region: us-east-1, object_lock: {{mode: GOVERNANCE}}}}
tiers:
  critical: {{schedule: "0 * * * *", rpo: 2h, retention: {{last: 3, daily: 2}}, immutability: {{days: 10}}}}
  standard: {{schedule: "0 * * * *", rpo: 2h, retention: {{last: 3, daily: 2}}}}
datasets:
  orders: {{source: {{type: dynamodb, table: {table}, region: us-east-1}}, tier: critical, store: vault}}
  plain: {{source: {{type: dynamodb, table: {table}, region: us-east-1}}, tier: standard, store: vault}}
""")
    assert cli(capsys, "--policy", policy, "run")[0] == 0
    [orders] = [r["snapshot_id"] for r in cli_json(capsys, "--policy", policy, "list", "orders")]
    [plain] = [r["snapshot_id"] for r in cli_json(capsys, "--policy", policy, "list", "plain")]
    store = S3Store(bucket, region=REGION, lock_mode="GOVERNANCE")
    keys = [i.key for i in store.list(layout.snapshot_prefix("orders", orders))]
    assert layout.manifest_key("orders", orders) in keys and any("/part-" in k for k in keys)
    for key in keys:
        if "/checkpoints/" in key:
            continue
        head = s3.head_object(Bucket=bucket, Key=key)
        assert head["ObjectLockMode"] == "COMPLIANCE", key  # the tier's default mode
        # at least the tier's 10 days, though its retention reaches only about 3 days
        assert head["ObjectLockRetainUntilDate"] > datetime.now(UTC) + timedelta(days=9, hours=23)
    head = s3.head_object(Bucket=bucket, Key=layout.manifest_key("plain", plain))
    assert head["ObjectLockMode"] == "GOVERNANCE"  # the store's own, for the other tier
    assert head["ObjectLockRetainUntilDate"] < datetime.now(UTC) + timedelta(days=4)

    # prune extends a kept snapshot's lock in its own mode (a COMPLIANCE lock stays COMPLIANCE)
    key = layout.manifest_key("orders", orders)
    assert store.extend_retention(key, datetime.now(UTC) + timedelta(days=20))
    after = s3.head_object(Bucket=bucket, Key=key)
    assert after["ObjectLockMode"] == "COMPLIANCE"
    assert after["ObjectLockRetainUntilDate"] > datetime.now(UTC) + timedelta(days=19)
    assert not store.extend_retention(key, datetime.now(UTC) + timedelta(days=5))  # never earlier


def test_validate_warns_of_a_lock_longer_than_retention_and_a_store_that_cannot_lock(
        tmp_path: Path, capsys: Any) -> None:
    policy = write(tmp_path, """
version: 1
stores:
  vault: {type: s3, bucket: acme-vault, region: us-east-1, object_lock: {mode: GOVERNANCE}}
  local: {type: file, path: backups}
tiers:
  hourly: {schedule: "0 * * * *", rpo: 2h, retention: {last: 24}, immutability: {mode: GOVERNANCE, days: 30}}
  safe: {schedule: "0 2 * * *", rpo: 26h, retention: {daily: 60}, immutability: {days: 30}}
datasets:
  orders: {source: {type: dynamodb, table: orders, region: us-east-1}, tier: hourly, store: vault}
  carts: {source: {type: dynamodb, table: carts, region: us-east-1}, tier: safe, store: local}
  users: {source: {type: dynamodb, table: users, region: us-east-1}, tier: safe, store: vault}
""")
    code, out, _ = cli(capsys, "--policy", policy, "--format", "json", "validate")
    assert code == 0
    found = {(w["code"], w["path"]) for w in json.loads(out)["warnings"]}
    assert ("retention-below-lock", "tiers.hourly.immutability.days") in found
    assert ("store-cannot-lock", "datasets.carts.store") in found
    assert not [w for w in found if w[0] in ("retention-below-lock", "store-cannot-lock")
                and w[1] in ("tiers.safe.immutability.days", "datasets.users.store", "datasets.orders.store")]
    code, _, err = cli(capsys, "--policy", write(tmp_path, """
version: 1
stores: {vault: {type: file, path: backups}}
tiers: {t: {schedule: "0 2 * * *", rpo: 26h, retention: {daily: 7}, immutability: {mode: FOREVER}}}
datasets: {orders: {source: {type: dynamodb, table: orders, region: us-east-1}, tier: t, store: vault}}
"""), "validate")
    assert code == 2 and "tiers.t.immutability.mode" in err and "Traceback" not in err
