"""Prune, legal holds and copies: deletion order, grace for crashed runs' parts, Object Lock
refusals on moto, and copies that restore from each store."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tools.sample_data import ORDERS_TABLE_SCHEMA, seed

from cloudkeep import clock, layout
from cloudkeep.catalog import snapshot_ids
from cloudkeep.engine import backup
from cloudkeep.errors import StoreError
from cloudkeep.policy import parse_policy
from cloudkeep.prune import prune
from cloudkeep.stores.memory import MemoryStore
from conftest import REGION, unique
from helpers import cli, cli_json, scan_all
from test_engine import ScriptedSource

Z = UTC
POLICY = parse_policy("""
version: 1
stores: {mem: {type: file, path: /unused}, far: {type: file, path: /unused-far}}
tiers:
  t: {schedule: "0 * * * *", rpo: 2h, retention: {last: 2}}
  copied: {schedule: "0 * * * *", rpo: 2h, retention: {last: 1}, copy_to: [far], min_copies: 1}
datasets:
  a: {source: {type: dynamodb, table: aaa, region: us-east-1}, tier: t, store: mem}
  c: {source: {type: dynamodb, table: ccc, region: us-east-1}, tier: copied, store: mem}
""")


def take(store: MemoryStore, dataset: str, n: int) -> list[str]:
    """``n`` hourly snapshots, each taken (captured) at the time its id names."""
    ids = []
    for i in range(n):
        at = datetime(2026, 1, 1, tzinfo=Z) + timedelta(hours=i)
        sid = layout.snapshot_id_for(at, f"{i:06x}")
        with clock.simulated(at):
            backup(POLICY, dataset, store=store, source=ScriptedSource(), snapshot_id=sid)
        ids.append(sid)
    return ids


NOW = datetime(2026, 1, 2, tzinfo=Z)


def test_dry_run_reports_and_deletes_nothing() -> None:
    store = MemoryStore()
    ids = take(store, "a", 4)
    before = dict(store.objects)
    report = prune(POLICY, "a", NOW, dry_run=True, store=store)
    assert report.decision.keep == [ids[3], ids[2]] and report.decision.remove == [ids[1], ids[0]]
    assert store.objects == before
    rows = {r["snapshot_id"]: r for r in report.as_dict()["snapshots"]}
    assert rows[ids[3]]["reasons"] == ["last", "newest"]
    assert rows[ids[0]] == {"snapshot_id": ids[0], "action": "remove", "reasons": ["no rule keeps it"],
                            "time": rows[ids[0]]["time"]}
    assert rows[ids[0]]["time"] < rows[ids[1]]["time"] < rows[ids[3]]["time"]  # capture times


def test_prune_removes_manifest_first_then_parts() -> None:
    store = MemoryStore()
    ids = take(store, "a", 3)
    order: list[str] = []
    real_delete = store.delete

    def recording_delete(keys: Any) -> None:
        keys = list(keys)
        order.extend(keys)
        real_delete(keys)

    store.delete = recording_delete  # type: ignore[method-assign]
    report = prune(POLICY, "a", NOW, store=store)
    assert report.removed == [ids[0]]
    mine = [k for k in order if k.startswith(layout.snapshot_prefix("a", ids[0]))]
    manifest_at = mine.index(layout.manifest_key("a", ids[0]))
    assert mine[:manifest_at] == [layout.run_state_key("a", ids[0])], \
        "only the plan goes before the manifest (so no leftover looks resumable)"
    assert not [k for k in mine[manifest_at + 1:] if layout.parse_part_name(k.rsplit("/", 1)[1]) is None
                and "/checkpoints/" not in k], mine
    # its hold ledger (prune's deletion marker) goes only after the snapshot is gone
    ledger = [i for i, k in enumerate(order) if k.startswith(layout.hold_ledger_prefix("a", ids[0]))]
    assert ledger and min(ledger) > order.index(layout.manifest_key("a", ids[0])), order
    assert any(layout.parse_part_name(k.rsplit("/", 1)[1]) for k in mine[manifest_at + 1:])
    assert snapshot_ids(store, "a") == ids[1:]
    # only its run-index entry stays: the run history outlives the snapshot (runs.py)
    assert [k for k in store.objects if ids[0] in k] == [
        k for k in store.objects if k.startswith(layout.runs_prefix("a")) and ids[0] in k]
    assert len([k for k in store.objects if ids[0] in k]) == 1


def test_a_crash_between_manifest_and_parts_leaves_no_visible_snapshot() -> None:
    store = MemoryStore()
    ids = take(store, "a", 3)
    real_delete = store.delete
    calls = {"n": 0}

    def crashing_delete(keys: Any) -> None:
        keys = list(keys)
        if calls["n"] == 1 and ids[0] in keys[0]:  # the first delete after the manifest went
            raise StoreError("crash")
        if keys == [layout.manifest_key("a", ids[0])]:
            calls["n"] = 1
        real_delete(keys)

    store.delete = crashing_delete  # type: ignore[method-assign]
    report = prune(POLICY, "a", NOW, store=store)
    assert report.errors and snapshot_ids(store, "a") == ids[1:]
    assert [k for k in store.objects if ids[0] in k], "the crash left parts behind"
    store.delete = real_delete  # type: ignore[method-assign]
    # The leftover has no plan and no manifest: nothing can resume it, the next prune removes it.
    later = prune(POLICY, "a", NOW, store=store)
    assert later.orphans == [ids[0]]
    assert not [k for k in store.objects if ids[0] in k and not k.startswith(layout.runs_prefix("a"))]


def test_unfinished_runs_go_once_not_resumable_and_never_while_a_run_holds_the_lock() -> None:
    from cloudkeep.checkpoint import RESUME_WITHIN
    from cloudkeep.lock import DatasetLock

    store = MemoryStore()
    take(store, "a", 1)
    # A run that crashed: its plan and a part (as a killed run leaves them).
    crashed = ScriptedSource(fail_segment=0)
    with pytest.raises(Exception, match="broke"):
        backup(POLICY, "a", store=store, source=crashed)
    (sid,) = [s for s in {k.split("/")[2] for k in store.objects if k.startswith("a/snapshots/")}
              if s not in snapshot_ids(store, "a")]
    assert prune(POLICY, "a", datetime.now(Z), store=store).orphans == []  # still resumable
    with DatasetLock(store, "a", "a-run"):
        held = prune(POLICY, "a", datetime.now(Z) + RESUME_WITHIN * 2, store=store)
    assert held.orphans == [] and held.errors and "a-run" in held.errors[0], "prune keeps out"
    assert [k for k in store.objects if sid in k]
    later = prune(POLICY, "a", datetime.now(Z) + RESUME_WITHIN * 2, store=store)
    assert later.orphans == [sid]
    assert not [k for k in store.objects if sid in k]
    # A folder without a plan (no run can resume it: a crashed prune's leftover) goes at once.
    orphan = layout.part_key("a", "20260101T050000Z-dead01", layout.part_name(0, 0))
    store.put(orphan, b"partial", if_absent=True)
    assert prune(POLICY, "a", datetime.now(Z), store=store).orphans == ["20260101T050000Z-dead01"]
    assert store.stat(orphan) is None


def test_min_copies_keeps_snapshots_without_their_copies() -> None:
    store = MemoryStore()
    ids = take(store, "c", 2)
    report = prune(POLICY, "c", NOW, dry_run=True, store=store)
    assert report.decision.remove == []
    assert report.decision.reasons[ids[0]] == ["only 0 verified copies of 1 required"]


def test_verified_snapshot_and_uncertain_input() -> None:
    store = MemoryStore()
    ids = take(store, "a", 4)
    from cloudkeep.catalog import load_manifest
    from cloudkeep.verify import record, verify_integrity

    record(store, verify_integrity(store, load_manifest(store, "a", ids[0])))
    report = prune(POLICY, "a", NOW, dry_run=True, store=store)
    assert report.decision.reasons[ids[0]] == ["newest verified"]
    assert report.decision.remove == [ids[1]]

    real_get = store.get

    def failing_get(key: str) -> bytes:
        if "/verifications/" in key:
            raise StoreError("read timed out")
        return real_get(key)

    store.get = failing_get  # type: ignore[method-assign]
    uncertain = prune(POLICY, "a", NOW, store=store)
    assert uncertain.removed == [] and "read timed out" in uncertain.errors[0]
    assert snapshot_ids(store, "a") == ids


@pytest.fixture
def table(ddb_resource: Any) -> str:
    name = unique("orders")
    created = ddb_resource.create_table(TableName=name, **ORDERS_TABLE_SCHEMA)
    created.wait_until_exists()
    seed(created, 60)
    return name


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "cloudkeep.yaml"
    path.write_text(text)
    return str(path)


@pytest.mark.emulator
def test_holds_through_the_cli(tmp_path: Path, table: str, capsys: Any) -> None:
    policy = write(tmp_path, f"""
version: 1
stores: {{vault: {{type: file, path: vault}}}}
tiers: {{t: {{schedule: "0 * * * *", rpo: 2h, retention: {{last: 1}}}}}}
datasets: {{orders: {{source: {{type: dynamodb, table: {table}, region: us-east-1}}, tier: t, store: vault}}}}
""")
    for _ in range(3):
        assert cli(capsys, "--policy", policy, "run", "orders")[0] == 0
    first, second, third = [r["snapshot_id"] for r in cli_json(capsys, "--policy", policy, "list")]
    code, out, err = cli(capsys, "--policy", policy, "hold", "add", f"orders@{first}", "--reason", "audit 2026")
    assert code == 0, err
    listed = {r["snapshot_id"]: r for r in cli_json(capsys, "--policy", policy, "list")}
    assert listed[first]["hold"] == "audit 2026" and listed[second]["hold"] is None
    shown = cli_json(capsys, "--policy", policy, "show", f"orders@{first}")
    assert shown["hold"]["reason"] == "audit 2026"
    holds = cli_json(capsys, "--policy", policy, "hold", "list")
    assert [(h["snapshot_id"], h["reason"]) for h in holds] == [(first, "audit 2026")]

    dry = cli_json(capsys, "--policy", policy, "prune", "--dry-run")
    actions = {r["snapshot_id"]: (r["action"], r["reasons"]) for r in dry[0]["snapshots"]}
    assert actions[first] == ("keep", ["legal hold: audit 2026"])
    assert actions[second] == ("remove", ["no rule keeps it"])
    assert actions[third] == ("keep", ["last", "newest"])

    assert cli(capsys, "--policy", policy, "prune")[0] == 0
    assert [r["snapshot_id"] for r in cli_json(capsys, "--policy", policy, "list")] == [first, third]
    assert cli(capsys, "--policy", policy, "hold", "remove", f"orders@{first}")[0] == 0
    code, _, err = cli(capsys, "--policy", policy, "hold", "remove", f"orders@{first}")
    assert code == 1 and "not under a legal hold" in err
    assert cli(capsys, "--policy", policy, "prune")[0] == 0
    assert [r["snapshot_id"] for r in cli_json(capsys, "--policy", policy, "list")] == [third]


@pytest.mark.emulator
def test_object_lock_refuses_the_delete_and_prune_reports_it(
    tmp_path: Path, table: str, capsys: Any, moto_server: Any
) -> None:
    import boto3

    bucket = f"locked-{secrets.token_hex(4)}"
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    policy = write(tmp_path, f"""
version: 1
stores:
  vault: {{type: s3, bucket: {bucket}, region: us-east-1, object_lock: {{mode: COMPLIANCE}}}}
tiers: {{t: {{schedule: "0 * * * *", rpo: 2h, retention: {{last: 1, daily: 3}}}}}}
datasets: {{orders: {{source: {{type: dynamodb, table: {table}, region: us-east-1}}, tier: t, store: vault}}}}
""")
    assert cli(capsys, "--policy", policy, "run", "orders")[0] == 0
    assert cli(capsys, "--policy", policy, "run", "orders")[0] == 0
    first, second = [r["snapshot_id"] for r in cli_json(capsys, "--policy", policy, "list")]
    head = s3.head_object(Bucket=bucket, Key=layout.manifest_key("orders", first))
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ObjectLockRetainUntilDate"] > datetime.now(Z) + timedelta(days=3)

    # Both are on the same day: "daily" keeps only the newer; the older one is locked.
    code, out, _ = cli(capsys, "--policy", policy, "--format", "json", "prune")
    assert code == 0
    [report] = json.loads(out)
    # (two runs in the same second tie on capture time: which one counts as older is prune's
    # tie-break, so the test asks prune which one it tried to remove)
    locked = report["locked"][0]["snapshot_id"]
    assert report["removed"] == [] and locked in (first, second)
    assert "locked" in report["locked"][0]["detail"]
    assert [r["snapshot_id"] for r in cli_json(capsys, "--policy", policy, "list")] == [first, second]
    assert cli(capsys, "--policy", policy, "verify", f"orders@{locked}")[0] == 0


@pytest.mark.emulator
def test_a_copy_to_s3_restores_when_the_primary_is_gone(
    tmp_path: Path, table: str, capsys: Any, s3_bucket: str, ddb_client: Any
) -> None:
    policy = write(tmp_path, f"""
version: 1
stores:
  local: {{type: file, path: vault}}
  offsite: {{type: s3, bucket: {s3_bucket}, prefix: copies, region: us-east-1}}
tiers:
  t: {{schedule: "0 * * * *", rpo: 2h, retention: {{last: 1}}, copy_to: [offsite], min_copies: 1}}
datasets: {{orders: {{source: {{type: dynamodb, table: {table}, region: us-east-1}}, tier: t, store: local}}}}
""")
    code, out, err = cli(capsys, "--policy", policy, "--format", "json", "run", "orders")
    assert code == 0, err
    [result] = json.loads(out)
    assert [(c["store"], c["verified"]) for c in result["copies"]] == [("offsite", True)]
    [row] = cli_json(capsys, "--policy", policy, "list")
    assert row["copies"] == ["offsite"]
    copied = cli_json(capsys, "--policy", policy, "list", "--store", "offsite")
    assert [r["snapshot_id"] for r in copied] == [row["snapshot_id"]]
    assert cli(capsys, "--policy", policy, "verify", "orders@latest", "--store", "offsite")[0] == 0

    import shutil

    shutil.rmtree(tmp_path / "vault")  # the primary store is lost
    target = unique("from_copy")
    code, _, err = cli(capsys, "--policy", policy, "restore", f"orders@{row['snapshot_id']}",
                       "--store", "offsite", "--into", target)
    assert code == 0, err
    assert scan_all(ddb_client, target) == scan_all(ddb_client, table)


def test_prune_dry_run_over_a_long_history_matches_restic(tmp_path: Path, capsys: Any) -> None:
    """Three months of hourly snapshots (with gaps) in a file store, through the CLI."""
    from cloudkeep.manifest import Codec, Consistency, ContentDigestEntry, Manifest, Totals
    from cloudkeep.retention import Rules, SnapshotInfo
    from cloudkeep.stores.file import FileStore
    from test_retention import restic_reference

    policy = write(tmp_path, """
version: 1
timezone: Europe/Berlin
stores: {vault: {type: file, path: vault}}
tiers: {t: {schedule: "0 * * * *", rpo: 2h, retention: {last: 5, hourly: 48, daily: 14, weekly: 6, monthly: 3}}}
datasets: {orders: {source: {type: dynamodb, table: orders, region: us-east-1}, tier: t, store: vault}}
""")
    store = FileStore(tmp_path / "vault")
    start = datetime(2026, 8, 1, tzinfo=Z)
    infos = []
    for h in range(24 * 92):
        if (h * 7919) % 13 == 0:
            continue  # a gap now and then
        at = start + timedelta(hours=h)
        sid = layout.snapshot_id_for(at, f"{h:06x}")
        manifest = Manifest(
            snapshot_id=sid, dataset="orders", run_id="r", trigger="schedule", slot=at, tier="t",
            store="vault", source={"type": "dynamodb"}, method="scan",
            consistency=Consistency(mode="fuzzy"), started_at=at, finished_at=at, segments=1,
            parts=[], totals=Totals(items=0, parts=0, raw_bytes=0, stored_bytes=0), codec=Codec(),
            content_digest=ContentDigestEntry(value="0" * 64), cloudkeep_version="test",
        )
        store.put(layout.manifest_key("orders", sid), manifest.to_bytes())
        infos.append(SnapshotInfo(sid, at))
    now = start + timedelta(days=92)
    [report] = cli_json(capsys, "--policy", policy, "prune", "--dry-run", "--now", now.isoformat())
    kept = {r["snapshot_id"] for r in report["snapshots"] if r["action"] == "keep"}
    rules = Rules(last=5, hourly=48, daily=14, weekly=6, monthly=3)
    from zoneinfo import ZoneInfo

    assert kept == restic_reference(infos, rules, ZoneInfo("Europe/Berlin"), now)
    assert len(report["snapshots"]) == len(infos) and report["removed"] == []
    newest = max(kept)
    reasons = {r["snapshot_id"]: r["reasons"] for r in report["snapshots"]}
    assert reasons[newest] == ["last", "hourly", "daily", "weekly", "monthly", "newest"]
    assert len(list((tmp_path / "vault" / "orders" / "snapshots").iterdir())) == len(infos)
