"""``plan --retention`` and ``report`` show, for a dataset's real snapshots, what ``cloudkeep
retention check`` shows for times: every snapshot kept with its reasons (restic's rules and
cloudkeep's safety rules — newest, newest verified, legal holds — each its own reason) or
removed. Snapshots are taken by the tick into a file store (our in-memory source)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from tests.helpers import cli

from cloudkeep import clock, holds, services
from cloudkeep.catalog import load_manifest, snapshot_ids
from cloudkeep.metrics import MemorySink
from cloudkeep.policy import parse_policy
from cloudkeep.runtime import tick
from cloudkeep.stores.file import FileStore
from test_watchdog import T0, MemorySource

POLICY = """
version: 1
stores: {vault: {type: file, path: VAULT}}
tiers:
  hourly:
    schedule: "0 * * * *"
    rpo: 2h
    retention: {last: 2, daily: 10}
datasets:
  orders: {source: {type: dynamodb, table: orders, region: us-east-1}, tier: hourly, store: vault, offset: 0m}
"""


def _world(tmp_path: Path, hours: int) -> tuple[Path, FileStore, list[str]]:
    vault = tmp_path / "vault"
    vault.mkdir()
    text = POLICY.replace("VAULT", str(vault))
    policy_file = tmp_path / "cloudkeep.yaml"
    policy_file.write_text(text, encoding="utf-8")
    policy = parse_policy(text)
    store, source = FileStore(vault), MemorySource()
    simulated = clock.SimulatedClock(T0)
    with clock.simulated(simulated):
        for hour in range(hours):
            at = T0 + timedelta(hours=hour)
            simulated.set(at)
            tick(policy, at, store_for=lambda _n: store, source_for=lambda _n: source,
                 duties=("backup",), sink=MemorySink())
    return policy_file, store, snapshot_ids(store, "orders")


def test_plan_retention_lists_every_snapshot_with_its_reasons(tmp_path: Path, capsys: Any) -> None:
    policy_file, store, ids = _world(tmp_path, 5)  # 00:05 ... 04:05 on 2026-03-02
    assert len(ids) == 5
    holds.add(store, load_manifest(store, "orders", ids[1]), "case 42")
    now = (T0 + timedelta(hours=5)).isoformat()
    code, out, err = cli(capsys, "plan", "--retention", "--policy", str(policy_file), "--now", now,
                         "--format", "json")
    assert code == 0, err
    [row] = json.loads(out)
    retention = row["retention"]
    assert retention["rules"] == "last: 2, daily: 10" and retention["errors"] == []
    by_id = {s["snapshot_id"]: s for s in retention["snapshots"]}
    assert set(by_id) == set(ids)
    assert by_id[ids[4]]["reasons"] == ["last", "daily", "newest"]
    assert by_id[ids[3]]["reasons"] == ["last"]
    assert by_id[ids[2]]["action"] == "remove"
    assert by_id[ids[1]]["reasons"] == ["legal hold: case 42"]
    # one day, ten days to count: the oldest snapshot is kept too (restic >= 0.16)
    assert by_id[ids[0]]["reasons"] == ["oldest daily"]
    assert by_id[ids[0]]["time"].startswith("2026-03-02T00:0")
    # the simulator says the same of the same times
    times = tmp_path / "times.txt"
    times.write_text("\n".join(s["time"] for s in retention["snapshots"]) + "\n", encoding="utf-8")
    code, out, err = cli(capsys, "retention", "check", "--policy", str(policy_file), "--tier",
                         "hourly", "--times", str(times), "--now", now, "--format", "json")
    assert code == 0, err
    simulated = json.loads(out)
    assert {e["time"]: e["reasons"] for e in simulated["keep"]} == {
        by_id[i]["time"]: by_id[i]["reasons"] for i in (ids[4], ids[3], ids[0])}
    assert [e["time"] for e in simulated["remove"]] == [by_id[ids[2]]["time"], by_id[ids[1]]["time"]]
    # and the table names them too
    code, out, err = cli(capsys, "plan", "--retention", "--policy", str(policy_file), "--now", now)
    assert code == 0, err
    assert "orders: retention last: 2, daily: 10" in out and "oldest daily" in out


def test_report_shows_the_reasons(tmp_path: Path, capsys: Any) -> None:
    policy_file, _store, ids = _world(tmp_path, 3)
    policy = parse_policy(policy_file.read_text(encoding="utf-8"))
    data = services.report(policy, T0 + timedelta(hours=3)).data
    [row] = data["datasets"]
    snapshots = {s["snapshot_id"]: s for s in row["retention"]["snapshots"]}
    assert snapshots[ids[2]]["reasons"] == ["last", "daily", "newest"]
    assert snapshots[ids[1]]["reasons"] == ["last"]
    assert snapshots[ids[0]]["reasons"] == ["oldest daily"]
    assert row["retention"]["keep"] == sorted(ids, reverse=True) and row["retention"]["remove"] == []


def test_prune_breaks_ties_of_capture_time_by_the_larger_id(tmp_path: Path) -> None:
    """Two snapshots captured at the same instant (a slot's retry): restic walks ties in the
    order given; prune gives them larger id first, so the later slot counts as the newer one,
    as before this release."""
    from datetime import UTC, datetime

    from cloudkeep import layout
    from cloudkeep.manifest import Codec, Consistency, ContentDigestEntry, Manifest, Totals
    from cloudkeep.prune import prune

    vault = tmp_path / "vault"
    vault.mkdir()
    policy = parse_policy(POLICY.replace("VAULT", str(vault)).replace("last: 2, daily: 10", "daily: 1"))
    store = FileStore(vault)
    at = datetime(2026, 3, 2, 10, tzinfo=UTC)
    ids = []
    for slot, suffix in ((at, "aaaaaa"), (at + timedelta(hours=1), "bbbbbb")):
        sid = layout.snapshot_id_for(slot, suffix)
        manifest = Manifest(
            snapshot_id=sid, dataset="orders", run_id="r", trigger="schedule", slot=slot,
            tier="hourly", store="vault", source={"type": "dynamodb"}, method="scan",
            consistency=Consistency(mode="fuzzy"), started_at=at, finished_at=at, segments=1,
            parts=[], totals=Totals(items=0, parts=0, raw_bytes=0, stored_bytes=0), codec=Codec(),
            content_digest=ContentDigestEntry(value="0" * 64), cloudkeep_version="test")
        store.put(layout.manifest_key("orders", sid), manifest.to_bytes())
        ids.append(sid)
    report = prune(policy, "orders", at + timedelta(hours=2), dry_run=True, store=store)
    assert report.decision.reasons[ids[1]] == ["daily", "newest"]
    assert report.decision.remove == [ids[0]]


def test_the_html_report_says_why_each_snapshot_is_kept(tmp_path: Path) -> None:
    policy_file, _store, ids = _world(tmp_path, 3)
    policy = parse_policy(policy_file.read_text(encoding="utf-8"))
    html = tmp_path / "report.html"
    services.report(policy, T0 + timedelta(hours=3), html=html)
    text = html.read_text(encoding="utf-8")
    assert f"{ids[2]}: last, daily, newest; {ids[1]}: last; {ids[0]}: oldest daily" in text
