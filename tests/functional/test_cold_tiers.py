"""Cold tiers on the emulators (#24 §3): S3 on moto server (parts tagged for lifecycle rules,
the rules applied beside a bucket's own, archived parts rehydrated by RestoreObject before a
restore or verify can read them, bytes and cost per storage class in the report) and Azure Blob on
Azurite (the pruner sets each part's tier by the snapshot's age; an archived snapshot is
rehydrated by Set Blob Tier and not archived again right away).

moto never runs lifecycle rules, so the S3 tests move parts to DEEP_ARCHIVE themselves, as an
administrator (CopyObject in place) — what the rule would do after 180 days.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from tools.sample_data import ORDERS_TABLE_SCHEMA, seed

from cloudkeep import layout
from cloudkeep.duties import prune_one
from cloudkeep.policy import load_policy
from cloudkeep.runtime import parse_now
from conftest import REGION, unique
from helpers import cli, cli_json, scan_all

pytestmark = pytest.mark.emulator


@pytest.fixture
def table(ddb_resource: Any) -> str:
    name = unique("orders")
    created = ddb_resource.create_table(TableName=name, **ORDERS_TABLE_SCHEMA)
    created.wait_until_exists()
    seed(created, 120)
    return name


def _policy(tmp_path: Path, table: str, store: str, *, transition: str, extra: str = "",
            tier_extra: str = "", stores_extra: str = "") -> str:
    path = tmp_path / "cloudkeep.yaml"
    path.write_text(f"""
version: 1
stores: {{vault: {store}{stores_extra}}}
tiers:
  t:
    schedule: "0 * * * *"
    rpo: 2h
    retention: {{last: 5}}
    transition: {transition}
    {tier_extra}
datasets: {{orders: {{source: {{type: dynamodb, table: {table}, region: {REGION}}}, tier: t, store: vault}}}}
{extra}
""")
    return str(path)


def _s3() -> Any:
    import boto3

    return boto3.client("s3", region_name=REGION)


def _archive_parts(bucket: str, prefix: str, snapshot_id: str, parts: list[str]) -> None:
    """What an S3 lifecycle rule does after 180 days: each part to DEEP_ARCHIVE."""
    s3 = _s3()
    for name in parts:
        key = f"{prefix}/{layout.part_key('orders', snapshot_id, name)}"
        s3.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": key},
                       StorageClass="DEEP_ARCHIVE", MetadataDirective="COPY")


def _backup(capsys: Any, policy: str) -> dict[str, Any]:
    code, _, err = cli(capsys, "--policy", policy, "run", "orders")
    assert code == 0, err
    [row] = cli_json(capsys, "--policy", policy, "list")
    shown: dict[str, Any] = cli_json(capsys, "--policy", policy, "show", f"orders@{row['snapshot_id']}")
    return shown


def test_s3_parts_are_tagged_and_lifecycle_rules_apply_beside_the_buckets_own(
        tmp_path: Path, table: str, s3_bucket: str, capsys: Any) -> None:
    policy = _policy(tmp_path, table, f"{{type: s3, bucket: {s3_bucket}, prefix: ck, region: {REGION}}}",
                     transition="[{after: 30d, to: cold}, {after: 180d, to: archive}]")
    shown = _backup(capsys, policy)
    s3 = _s3()
    sid = shown["snapshot_id"]
    part_key = f"ck/{layout.part_key('orders', sid, shown['parts'][0]['name'])}"
    tags = s3.get_object_tagging(Bucket=s3_bucket, Key=part_key)["TagSet"]
    assert tags == [{"Key": "cloudkeep-data", "Value": "part"}]
    manifest_tags = s3.get_object_tagging(Bucket=s3_bucket, Key=f"ck/{layout.manifest_key('orders', sid)}")
    assert manifest_tags["TagSet"] == []  # manifests stay in STANDARD: listing never waits

    foreign = {"ID": "expire-tmp", "Status": "Enabled", "Filter": {"Prefix": "tmp/"},
               "Expiration": {"Days": 3}}
    s3.put_bucket_lifecycle_configuration(Bucket=s3_bucket, LifecycleConfiguration={"Rules": [foreign]})

    [shown_rules] = cli_json(capsys, "--policy", policy, "lifecycle")
    assert shown_rules["by"] == "lifecycle" and shown_rules["applied"] is False
    assert shown_rules["datasets"] == ["orders"]
    # not applied yet: the bucket still has its own rule only
    assert [r["ID"] for r in s3.get_bucket_lifecycle_configuration(Bucket=s3_bucket)["Rules"]] == ["expire-tmp"]

    for _ in range(2):  # applying twice leaves one cloudkeep rule
        [applied] = cli_json(capsys, "--policy", policy, "lifecycle", "--apply", "vault")
        assert applied["applied"] is True
    rules = {r["ID"]: r for r in s3.get_bucket_lifecycle_configuration(Bucket=s3_bucket)["Rules"]}
    assert set(rules) == {"expire-tmp", "cloudkeep-ck-orders-snapshots"}
    ours = rules["cloudkeep-ck-orders-snapshots"]
    assert ours["Filter"]["And"]["Prefix"] == "ck/orders/snapshots/"
    assert ours["Filter"]["And"]["Tags"] == [{"Key": "cloudkeep-data", "Value": "part"}]
    assert [(t["Days"], t["StorageClass"]) for t in ours["Transitions"]] == [
        (30, "GLACIER_IR"), (180, "DEEP_ARCHIVE")]


def test_s3_restore_of_an_archived_snapshot_rehydrates_then_restores_later(
        tmp_path: Path, table: str, s3_bucket: str, capsys: Any, ddb_client: Any) -> None:
    policy = _policy(tmp_path, table, f"{{type: s3, bucket: {s3_bucket}, prefix: ck, region: {REGION}}}",
                     transition="[{after: 180d, to: archive}]",
                     extra="pricing: {storage_gb_month: {s3: {DEEP_ARCHIVE: 1000.0}}}")
    shown = _backup(capsys, policy)
    sid = shown["snapshot_id"]
    parts = [p["name"] for p in shown["parts"]]
    _archive_parts(s3_bucket, "ck", sid, parts)
    s3 = _s3()
    with pytest.raises(Exception, match="InvalidObjectState"):  # really offline on moto
        s3.get_object(Bucket=s3_bucket, Key=f"ck/{layout.part_key('orders', sid, parts[0])}")

    # the report: bytes per class and the monthly cost with the policy's price
    [row] = cli_json(capsys, "--policy", policy, "report")["datasets"]
    classes = {c["class"]: c for c in row["storage"]["classes"]}
    assert set(classes) == {"STANDARD", "DEEP_ARCHIVE"}
    assert classes["DEEP_ARCHIVE"]["bytes"] == sum(p["stored_bytes"] for p in shown["parts"])
    assert classes["DEEP_ARCHIVE"]["monthly_cost"] == pytest.approx(
        classes["DEEP_ARCHIVE"]["bytes"] / (1 << 30) * 1000.0, rel=1e-3)
    assert row["storage"]["currency"] == "USD" and row["storage"]["monthly_cost"] > 0
    code, out, _ = cli(capsys, "--policy", policy, "report", "--output", str(tmp_path / "r.html"))
    assert "orders: storage DEEP_ARCHIVE" in out and "USD a month" in out
    assert "DEEP_ARCHIVE" in (tmp_path / "r.html").read_text() and "storage classes" in (tmp_path / "r.html").read_text()

    target = unique("restored")
    code, out, err = cli(capsys, "--policy", policy, "restore", f"orders@{sid}", "--into", target)
    assert code == 1, out + err
    assert "being rehydrated" in err and "about 12 h" in err and "run the same restore again" in err
    assert "Traceback" not in err
    assert target not in ddb_client.list_tables()["TableNames"]  # nothing written yet
    head = s3.head_object(Bucket=s3_bucket, Key=f"ck/{layout.part_key('orders', sid, parts[0])}")
    assert "ongoing-request" in head.get("Restore", "")  # RestoreObject was asked
    records = [o["Key"] for o in s3.list_objects_v2(
        Bucket=s3_bucket, Prefix=f"ck/{layout.rehydration_records_prefix('orders', sid)}")["Contents"]]
    assert len(records) == 1
    first = json.loads(s3.get_object(Bucket=s3_bucket, Key=records[0])["Body"].read())
    assert (first["state"], first["purpose"], first["parts"]) == ("started", "restore", len(parts))
    assert first["classes"] == ["DEEP_ARCHIVE"]

    # a later invocation: moto finishes a restore at once, so the parts are readable now
    code, out, err = cli(capsys, "--policy", policy, "restore", f"orders@{sid}", "--into", target)
    assert code == 0, err
    assert len(scan_all(ddb_client, target)) == 120
    keys = [o["Key"] for o in s3.list_objects_v2(
        Bucket=s3_bucket, Prefix=f"ck/{layout.rehydration_records_prefix('orders', sid)}")["Contents"]]
    last = json.loads(s3.get_object(Bucket=s3_bucket, Key=sorted(keys)[-1])["Body"].read())
    assert len(keys) == 2 and last["state"] == "ready"
    assert cli(capsys, "--policy", policy, "verify", f"orders@{sid}")[0] == 0  # still ready


def test_s3_verify_of_an_archived_snapshot_starts_the_rehydration(
        tmp_path: Path, table: str, s3_bucket: str, capsys: Any) -> None:
    policy = _policy(tmp_path, table, f"{{type: s3, bucket: {s3_bucket}, prefix: ck, region: {REGION}}}",
                     transition="[{after: 180d, to: archive}]")
    shown = _backup(capsys, policy)
    sid = shown["snapshot_id"]
    _archive_parts(s3_bucket, "ck", sid, [p["name"] for p in shown["parts"]])
    code, _, err = cli(capsys, "--policy", policy, "verify", f"orders@{sid}")
    assert code == 1 and "cannot verify yet" in err
    # no verification was recorded for a snapshot that could not be read
    assert "Contents" not in _s3().list_objects_v2(
        Bucket=s3_bucket, Prefix=f"ck/{layout.verifications_prefix('orders', sid)}")
    assert cli(capsys, "--policy", policy, "verify", f"orders@{sid}")[0] == 0


def test_azure_pruner_moves_parts_by_age_and_a_rehydrated_snapshot_stays_online(
        tmp_path: Path, table: str, azure_container: str, azurite: Any, capsys: Any,
        ddb_client: Any) -> None:
    from azure.storage.blob import BlobServiceClient

    policy_path = _policy(tmp_path, table, f"{{type: azure_blob, container: {azure_container}, prefix: ck}}",
                          transition="[{after: 1d, to: cool}, {after: 2d, to: archive}]")
    shown = _backup(capsys, policy_path)
    sid = shown["snapshot_id"]
    policy = load_policy(policy_path).policy
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    container = service.get_container_client(azure_container)

    def tiers() -> dict[str, str]:
        return {b.name.rsplit("/", 1)[-1]: b.blob_tier
                for b in container.list_blobs(name_starts_with=f"ck/{layout.snapshot_prefix('orders', sid)}")}

    captured = parse_now(shown["captured_at"] if "captured_at" in shown else shown["started_at"])
    parts = {p["name"] for p in shown["parts"]}
    assert prune_one(policy, "orders", captured + timedelta(hours=12), None)["transitioned"] == 0
    assert {tiers()[p] for p in parts} == {"Hot"}

    assert prune_one(policy, "orders", captured + timedelta(days=1, hours=1), None)["transitioned"] == len(parts)
    now_tiers = tiers()
    assert {now_tiers[p] for p in parts} == {"Cool"}
    assert now_tiers["manifest.json"] == "Hot"  # only parts move

    assert prune_one(policy, "orders", captured + timedelta(days=3), None)["transitioned"] == len(parts)
    assert {tiers()[p] for p in parts} == {"Archive"}
    assert prune_one(policy, "orders", captured + timedelta(days=3), None)["transitioned"] == 0

    target = unique("restored")
    code, _, err = cli(capsys, "--policy", policy_path, "restore", f"orders@{sid}", "--into", target)
    assert code == 1 and "being rehydrated" in err and "about 15 h" in err
    assert {tiers()[p] for p in parts} == {"Cold"}  # Azurite rehydrates at once
    code, _, err = cli(capsys, "--policy", policy_path, "restore", f"orders@{sid}", "--into", target)
    assert code == 0, err
    assert len(scan_all(ddb_client, target)) == 120

    # just rehydrated (the record's start is the wall clock): the pruner leaves it online ...
    import datetime as _dt
    wall = _dt.datetime.now(_dt.UTC)
    assert prune_one(policy, "orders", wall + timedelta(days=1), None)["transitioned"] == 0
    assert {tiers()[p] for p in parts} == {"Cold"}
    # ... and archives it again once the rehydration is older than the grace period
    assert prune_one(policy, "orders", wall + timedelta(days=8), None)["transitioned"] == len(parts)
    assert {tiers()[p] for p in parts} == {"Archive"}


def test_gcs_lifecycle_rules_select_parts_by_suffix(tmp_path: Path, table: str, gcs_bucket: str,
                                                    capsys: Any) -> None:
    """fake-gcs-server accepts a bucket patch but keeps no lifecycle rules and no classes: the
    rules are checked as built (and --apply as accepted), not as applied."""
    policy = _policy(tmp_path, table, f"{{type: gcs, bucket: {gcs_bucket}, prefix: ck}}",
                     transition="[{after: 30d, to: cold}, {after: 400d, to: archive}]")
    [entry] = cli_json(capsys, "--policy", policy, "lifecycle")
    assert (entry["by"], entry["applied"], entry["datasets"]) == ("lifecycle", False, ["orders"])
    assert entry["rules"] == [
        {"action": {"type": "SetStorageClass", "storageClass": cls},
         "condition": {"age": days, "matchesPrefix": ["ck/orders/snapshots/"],
                       "matchesSuffix": [".ndjson.zst", ".ndjson.zst.enc"]}}
        for days, cls in ((30, "COLDLINE"), (400, "ARCHIVE"))]
    assert cli_json(capsys, "--policy", policy, "lifecycle", "--apply")[0]["applied"] is True
    shown = _backup(capsys, policy)
    [row] = cli_json(capsys, "--policy", policy, "report")["datasets"]
    [standard] = row["storage"]["classes"]
    assert standard["class"] == "STANDARD" and standard["bytes"] >= shown["totals"]["stored_bytes"]


def test_file_store_has_no_classes_and_costs_nothing(tmp_path: Path, table: str, capsys: Any) -> None:
    policy = _policy(tmp_path, table, f"{{type: file, path: {tmp_path / 'vault'}}}",
                     transition="[{after: 30d, to: archive}]")
    code, out, err = cli(capsys, "--policy", policy, "validate")
    assert code == 0 and "has no storage classes" in out + err
    _backup(capsys, policy)
    [row] = cli_json(capsys, "--policy", policy, "report")["datasets"]
    assert [(c["class"], c["monthly_cost"]) for c in row["storage"]["classes"]] == [("local", 0.0)]
    assert row["storage"]["monthly_cost"] == 0.0
    [entry] = cli_json(capsys, "--policy", policy, "lifecycle")
    assert entry["by"] == "none" and "rules" not in entry
    code, _, err = cli(capsys, "--policy", policy, "lifecycle", "nosuch")
    assert code == 2 and "unknown store 'nosuch'" in err and "Traceback" not in err
    # an archive-less store: restore simply restores
    assert cli(capsys, "--policy", policy, "restore", "orders@latest", "--into", unique("r"))[0] == 0


def _moto_restores_take_one_look(moto_server: Any, on: bool) -> None:
    """moto's state manager: with ``manual`` progression (times 1), an object's restore is
    reported in progress at the first HEAD after RestoreObject and done at the next one; unset,
    restores finish at once (moto's default)."""
    import urllib.request

    action = "set-transition" if on else "unset-transition"
    body = {"model_name": "s3::keyrestore"}
    if on:
        body["transition"] = {"progression": "manual", "times": 1}  # type: ignore[assignment]
    req = urllib.request.Request(f"{moto_server.endpoint}/moto-api/state-manager/{action}",
                                 method="POST", data=json.dumps(body).encode())
    urllib.request.urlopen(req, timeout=10).read()


def test_s3_a_restore_still_under_way_keeps_waiting_then_finishes(
        tmp_path: Path, table: str, s3_bucket: str, capsys: Any, ddb_client: Any,
        moto_server: Any) -> None:
    policy = _policy(tmp_path, table, f"{{type: s3, bucket: {s3_bucket}, prefix: ck, region: {REGION}}}",
                     transition="[{after: 180d, to: archive}]")
    shown = _backup(capsys, policy)
    sid = shown["snapshot_id"]
    _archive_parts(s3_bucket, "ck", sid, [p["name"] for p in shown["parts"]])
    target = unique("restored")
    records = f"ck/{layout.rehydration_records_prefix('orders', sid)}"
    _moto_restores_take_one_look(moto_server, True)
    try:
        code, _, err = cli(capsys, "--policy", policy, "restore", f"orders@{sid}", "--into", target)
        assert code == 1 and "being rehydrated" in err  # started
        code, _, again = cli(capsys, "--policy", policy, "restore", f"orders@{sid}", "--into", target)
        assert code == 1 and "being rehydrated" in again  # still under way: nothing asked twice
        # the same start time: the record of the first invocation is the one reported
        assert err.split("(started ")[1][:16] == again.split("(started ")[1][:16]
        assert len(_s3().list_objects_v2(Bucket=s3_bucket, Prefix=records)["Contents"]) == 1
        assert target not in ddb_client.list_tables()["TableNames"]
        code, _, err = cli(capsys, "--policy", policy, "restore", f"orders@{sid}", "--into", target)
        assert code == 0, err
    finally:
        _moto_restores_take_one_look(moto_server, False)
    assert len(scan_all(ddb_client, target)) == 120
    states = [json.loads(_s3().get_object(Bucket=s3_bucket, Key=o["Key"])["Body"].read())["state"]
              for o in _s3().list_objects_v2(Bucket=s3_bucket, Prefix=records)["Contents"]]
    assert states == ["started", "ready"]


def test_s3_scheduled_verification_of_an_archived_snapshot_waits_then_runs_in_a_later_tick(
        tmp_path: Path, table: str, s3_bucket: str, capsys: Any, moto_server: Any) -> None:
    from cloudkeep import verify_slots
    from cloudkeep.duties import due_verifications
    from cloudkeep.registry import open_store

    path = _policy(tmp_path, table, f"{{type: s3, bucket: {s3_bucket}, prefix: ck, region: {REGION}}}",
                   transition="[{after: 180d, to: archive}]",
                   tier_extra='verify: {sample: "0 * * * *", sample_items: 5}')
    shown = _backup(capsys, path)
    sid = shown["snapshot_id"]
    _archive_parts(s3_bucket, "ck", sid, [p["name"] for p in shown["parts"]])
    policy = load_policy(path).policy
    store = open_store(policy.stores["vault"])
    slot = (parse_now(shown["started_at"]) + timedelta(hours=2)).replace(minute=0, second=0,
                                                                          microsecond=0)
    now = slot + timedelta(minutes=5)  # every tick below is within this slot
    _moto_restores_take_one_look(moto_server, True)
    try:
        # the first tick asks for the rehydration and records it; nothing counts as verified
        # or failed, and the slot stays free for a later tick
        assert due_verifications(policy, "orders", now, store) == []
        assert not verify_slots.claimed(store, "orders", "sample", slot)
        head = _s3().head_object(Bucket=s3_bucket,
                                 Key=f"ck/{layout.part_key('orders', sid, shown['parts'][0]['name'])}")
        assert "ongoing-request" in head.get("Restore", "")
        [row] = cli_json(capsys, "--policy", path, "report", "--now", now.isoformat())["datasets"]
        assert [(r["snapshot_id"], r["purpose"]) for r in row["rehydrating"]] == [(sid, "verify")]
        assert row["last_verification"] is None
        # still under way: the next tick waits again (RestoreObject asked once)
        assert due_verifications(policy, "orders", now + timedelta(minutes=5), store) == []
        # back: the tick runs the slot's sample like any other, and it passes
        [report] = due_verifications(policy, "orders", now + timedelta(minutes=10), store)
        assert report.ok and report.level == "sample" and report.snapshot_id == sid
        assert verify_slots.claimed(store, "orders", "sample", slot)
    finally:
        _moto_restores_take_one_look(moto_server, False)
    [row] = cli_json(capsys, "--policy", path, "report", "--now",
                     (now + timedelta(minutes=11)).isoformat())["datasets"]
    assert row["rehydrating"] == []  # the record's newest entry is `ready`


def test_s3_copy_of_an_archived_snapshot_waits_for_the_rehydration_not_a_failure(
        tmp_path: Path, table: str, s3_bucket: str, capsys: Any, moto_server: Any) -> None:
    from cloudkeep import copies
    from cloudkeep.registry import open_store

    vault = f"{{type: s3, bucket: {s3_bucket}, prefix: ck, region: {REGION}}}"
    path = _policy(tmp_path, table, vault, transition="[{after: 180d, to: archive}]")
    shown = _backup(capsys, path)
    sid = shown["snapshot_id"]
    _archive_parts(s3_bucket, "ck", sid, [p["name"] for p in shown["parts"]])
    # a copy store added later: the catch-up must copy an archived snapshot
    text = Path(path).read_text().replace(
        "store: vault}", "store: vault, copy_to: [offsite]}").replace(
        f"stores: {{vault: {vault}}}",
        f"stores: {{vault: {vault}, offsite: {{type: s3, bucket: {s3_bucket}, prefix: spare, region: {REGION}}}}}")
    Path(path).write_text(text)
    policy = load_policy(path).policy
    store = open_store(policy.stores["vault"])
    _moto_restores_take_one_look(moto_server, True)
    try:
        [entry] = copies.catch_up(policy, store, "orders")
        assert entry["snapshot_id"] == sid and not entry["verified"]
        assert "being rehydrated" in entry["rehydrating"] and not copies.failures([entry])
        latest_record = json.loads(_s3().get_object(Bucket=s3_bucket, Key=sorted(
            o["Key"] for o in _s3().list_objects_v2(
                Bucket=s3_bucket, Prefix=f"ck/{layout.rehydration_records_prefix('orders', sid)}")["Contents"]
        )[-1])["Body"].read())
        assert (latest_record["state"], latest_record["purpose"]) == ("started", "copy")
        [entry] = copies.catch_up(policy, store, "orders")  # still under way
        assert "rehydrating" in entry and not copies.failures([entry])
        [entry] = copies.catch_up(policy, store, "orders")  # back: copied and verified
        assert entry["verified"] is True and "error" not in entry, entry
    finally:
        _moto_restores_take_one_look(moto_server, False)


def test_s3_verify_of_a_forged_archived_manifest_starts_no_rehydration(
        tmp_path: Path, table: str, s3_bucket: str, capsys: Any) -> None:
    from cloudkeep.keys.local import create_key_file

    create_key_file(tmp_path / "one.key")
    path = _policy(tmp_path, table, f"{{type: s3, bucket: {s3_bucket}, prefix: ck, region: {REGION}}}",
                   transition="[{after: 180d, to: archive}]",
                   extra="keys: {one: {provider: local, path: one.key}}\nsigning: {keys: [one]}")
    shown = _backup(capsys, path)
    sid = shown["snapshot_id"]
    parts = [p["name"] for p in shown["parts"]]
    _archive_parts(s3_bucket, "ck", sid, parts)
    s3 = _s3()
    # an attacker with write access to the bucket rewrites the manifest (its tag no longer fits)
    key = f"ck/{layout.manifest_key('orders', sid)}"
    doc = json.loads(s3.get_object(Bucket=s3_bucket, Key=key)["Body"].read())
    doc["started_at"] = doc["started_at"].replace(doc["started_at"][:4], "2001")
    s3.put_object(Bucket=s3_bucket, Key=key, Body=json.dumps(doc).encode())

    code, out, err = cli(capsys, "--policy", path, "verify", f"orders@{sid}")
    assert code == 1 and "Traceback" not in err and "being rehydrated" not in out + err
    assert "authentication" in out + err
    # no retrieval was asked (no charge) and no rehydration recorded
    head = s3.head_object(Bucket=s3_bucket, Key=f"ck/{layout.part_key('orders', sid, parts[0])}")
    assert "Restore" not in head
    assert "Contents" not in s3.list_objects_v2(
        Bucket=s3_bucket, Prefix=f"ck/{layout.rehydration_records_prefix('orders', sid)}")


def test_s3_lifecycle_apply_keeps_the_rules_of_another_store_in_the_same_bucket(
        tmp_path: Path, table: str, s3_bucket: str, capsys: Any) -> None:
    vault = f"{{type: s3, bucket: {s3_bucket}, prefix: ck, region: {REGION}}}"
    offsite = f"{{type: s3, bucket: {s3_bucket}, prefix: spare, region: {REGION}}}"
    path = _policy(tmp_path, table, vault, transition="[{after: 180d, to: archive}]",
                   stores_extra=f", offsite: {offsite}")
    Path(path).write_text(Path(path).read_text().replace("store: vault}", "store: vault, copy_to: [offsite]}"))
    for store in ("vault", "offsite", "vault"):  # each store's --apply, in any order, again
        [applied] = cli_json(capsys, "--policy", path, "lifecycle", "--apply", store)
        assert applied["applied"] is True
    rules = sorted(r["ID"] for r in _s3().get_bucket_lifecycle_configuration(Bucket=s3_bucket)["Rules"])
    assert rules == ["cloudkeep-ck-orders-snapshots", "cloudkeep-spare-orders-snapshots"]
