"""Operating correctness (issue 19) on the file store with in-memory sources (our protocols):
one capture time for a snapshot (list, show, @latest, retention, plan, report), the replayed
clock in every record, the run index outliving pruned snapshots, scheduled verifications
remembered per slot, everything a tick did in ``run --due --format json``, and ``list`` never
cutting a snapshot ref."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from cloudkeep import audit, clock, layout, runs, sequences, timeline
from cloudkeep.catalog import resolve, snapshot_ids
from cloudkeep.engine import backup
from cloudkeep.policy import parse_policy
from cloudkeep.prune import prune
from cloudkeep.report import dataset_report
from cloudkeep.runtime import _due_verifications, dataset_plan, tick
from cloudkeep.stores.file import FileStore
from helpers import cli, cli_json
from test_engine import ScriptedSource
from test_watchdog import MemorySource

D = datetime(2026, 3, 4, tzinfo=UTC)


def policy_file(tmp_path: Path, *, dataset: str = "orders", verify: dict[str, Any] | None = None,
                retention: dict[str, Any] | None = None, copies: bool = False) -> Path:
    tier: dict[str, Any] = {"schedule": "0 * * * *", "rpo": "2h",
                            "retention": retention or {"last": 100}}
    if verify:
        tier["verify"] = verify
    stores: dict[str, Any] = {"vault": {"type": "file", "path": str(tmp_path / "vault")}}
    if copies:
        stores["offsite"] = {"type": "file", "path": str(tmp_path / "offsite")}
        tier["copy_to"] = ["offsite"]
    data = {"version": 1, "stores": stores, "tiers": {"hourly": tier},
            "datasets": {dataset: {"source": {"type": "dynamodb", "table": "orders",
                                              "region": "us-east-1"},
                                   "tier": "hourly", "store": "vault", "offset": "0m"}}}
    path = tmp_path / "cloudkeep.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def take(policy: Any, store: FileStore, dataset: str, named: datetime, captured: datetime,
         suffix: str) -> str:
    """A snapshot whose id names ``named`` and whose data is read at ``captured``."""
    sid = layout.snapshot_id_for(named, suffix)
    with clock.simulated(captured):
        result = backup(policy, dataset, store=store, source=ScriptedSource(segments=1, per_segment=5),
                        snapshot_id=sid, trigger="schedule", slot=named)
    assert result.status == "committed" and result.manifest is not None
    runs.record(store, result.manifest)
    return sid


def test_capture_time_is_the_consistency_time_else_the_start() -> None:
    from cloudkeep.manifest import Manifest

    base = {"snapshot_id": "20260304T020000Z-abcdef", "dataset": "a", "run_id": "r",
            "trigger": "schedule", "slot": "2026-03-04T02:00:00+00:00", "tier": "t", "store": "s",
            "source": {}, "method": "scan", "started_at": "2026-03-05T01:00:00+00:00",
            "finished_at": "2026-03-05T01:10:00+00:00", "segments": 1, "parts": [],
            "totals": {"items": 0, "parts": 0, "raw_bytes": 0, "stored_bytes": 0}, "codec": {},
            "content_digest": {"value": "0" * 64}, "cloudkeep_version": "0"}
    fuzzy = Manifest.model_validate(base | {"consistency": {"mode": "fuzzy"}})
    pit = Manifest.model_validate(base | {"consistency": {"mode": "point-in-time",
                                                          "time": "2026-03-05T00:59:30+00:00"}})
    assert timeline.capture_time(fuzzy) == datetime(2026, 3, 5, 1, tzinfo=UTC)
    assert timeline.capture_time(pit) == datetime(2026, 3, 5, 0, 59, 30, tzinfo=UTC)
    assert timeline.id_time(fuzzy.snapshot_id) == datetime(2026, 3, 4, 2, tzinfo=UTC)
    assert timeline.age(datetime(2026, 3, 5, 2, tzinfo=UTC), datetime(2026, 3, 5, 1, tzinfo=UTC)) \
        == timedelta(0), "never negative"


def test_list_show_latest_retention_and_plan_go_by_capture_time(tmp_path: Path, capsys: Any) -> None:
    path = policy_file(tmp_path, retention={"last": 1})
    policy = parse_policy(path.read_text())
    store = FileStore(tmp_path / "vault")
    # The nightly slot of the 4th, run late on the 5th at 01:00; an on-demand snapshot at 10:00
    # on the 4th. By name the on-demand one is newer; by the data it holds the late one is.
    late = take(policy, store, "orders", D.replace(hour=2), D + timedelta(days=1, hours=1), "aaaaaa")
    manual = take(policy, store, "orders", D.replace(hour=10), D.replace(hour=10), "bbbbbb")
    assert snapshot_ids(store, "orders") == [late, manual]  # ids sort by name

    _, latest = resolve(policy, "orders@latest")
    assert latest.snapshot_id == late
    rows = cli_json(capsys, "--policy", str(path), "list", "orders")
    assert [r["snapshot_id"] for r in rows] == [manual, late]
    assert [r["captured_at"][:16] for r in rows] == ["2026-03-04T10:00", "2026-03-05T01:00"]
    shown = cli_json(capsys, "--policy", str(path), "show", "orders@latest")
    assert shown["snapshot_id"] == late and shown["captured_at"].startswith("2026-03-05T01:00")
    code, out, _ = cli(capsys, "--policy", str(path), "show", "orders@latest")
    assert code == 0 and "captured" in out and "2026-03-05T01:00" in out

    now = D + timedelta(days=1, hours=2)
    decision = prune(policy, "orders", now, dry_run=True, store=store).decision
    assert decision.keep == [late] and decision.remove == [manual]  # "last 1" = newest capture
    state = dataset_plan(policy, "orders", now, store)
    # its age counts from its capture (01:00 and the few milliseconds the run took to start)
    assert state.latest_snapshot == late and state.age is not None
    assert timedelta(hours=1) - timedelta(seconds=60) < state.age <= timedelta(hours=1)
    row = dataset_report(policy, "orders", now, store=store)
    assert row["newest_snapshot"] == late and row["age_seconds"] == int(state.age.total_seconds())


def test_the_run_index_outlives_pruned_snapshots_and_breaches_come_from_it(tmp_path: Path) -> None:
    path = policy_file(tmp_path, retention={"last": 2})
    policy = parse_policy(path.read_text())
    store = FileStore(tmp_path / "vault")
    hours = [h for h in range(12) if h not in (5, 6, 7)]  # no run at 05, 06, 07: a real outage
    ids = [take(policy, store, "orders", D + timedelta(hours=h), D + timedelta(hours=h, minutes=1),
                f"{h:06x}") for h in hours]
    now = D + timedelta(hours=11, minutes=30)
    report = prune(policy, "orders", now, store=store)
    assert sorted(report.removed) == sorted(ids[:-2])
    assert snapshot_ids(store, "orders") == ids[-2:]
    assert set(runs.indexed(store, "orders")) == set(ids)  # prune deleted no run-index entry
    row = dataset_report(policy, "orders", now, store=store)
    # 04:01 -> 08:01 with a 2h RPO: breached 06:01 to 08:01, and nothing else although only
    # 10:01 and 11:01 are still stored
    assert [(b["from"][11:16], b["to"][11:16]) for b in row["rpo_breaches"]] == [("06:01", "08:01")]
    assert row["runs"] == len(hours) and row["snapshot_count"] == 2


def test_a_store_without_run_index_still_reports_from_its_snapshots(tmp_path: Path) -> None:
    path = policy_file(tmp_path)
    policy = parse_policy(path.read_text())
    store = FileStore(tmp_path / "vault")
    for h in (0, 1, 5):
        take(policy, store, "orders", D + timedelta(hours=h), D + timedelta(hours=h), f"{h:06x}")
    for info in list(store.list(layout.runs_prefix("orders"))):  # as an earlier release left it
        store.delete([info.key])
    history = runs.history(store, "orders")
    assert [r.captured_at.hour for r in history] == [0, 1, 5] and not any(r.pruned for r in history)
    row = dataset_report(policy, "orders", D + timedelta(hours=5, minutes=10), store=store)
    assert [(b["from"][11:16], b["to"][11:16]) for b in row["rpo_breaches"]] == [("03:00", "05:00")]
    # prune completes the index before it removes a snapshot
    prune(policy, "orders", D + timedelta(hours=6), store=store)
    assert len(runs.indexed(store, "orders")) == 0  # last: 100 removed nothing
    policy2 = parse_policy(path.read_text().replace("last: 100", "last: 1"))
    prune(policy2, "orders", D + timedelta(hours=6), store=store)
    assert len(snapshot_ids(store, "orders")) == 1 and len(runs.indexed(store, "orders")) == 2


def test_a_scheduled_drill_runs_once_per_slot_even_after_its_snapshot_is_pruned(tmp_path: Path) -> None:
    path = policy_file(tmp_path, verify={"drill": "0 4 * * *", "sample": "30 */6 * * *"},
                       retention={"last": 1})
    policy = parse_policy(path.read_text())
    store, source = FileStore(tmp_path / "vault"), MemorySource()
    drills: list[str] = []
    simulated = clock.SimulatedClock(D)
    with clock.simulated(simulated):
        for hour in range(4, 30):  # 04:00 on the 4th to 05:00 on the 5th: two drill slots
            now = D + timedelta(hours=hour)
            simulated.set(now)
            result = tick(policy, now, store_for=lambda _n: store, source_for=lambda _n: source)
            drills += [v["snapshot_id"] for v in result.verifications if v["level"] == "drill"]
            # retention keeps the newest and the newest verified snapshot, no more
            assert len(snapshot_ids(store, "orders")) <= 2
    assert len(drills) == 2 and drills[0] not in snapshot_ids(store, "orders")
    assert not list(store.list(layout.verifications_prefix("orders", drills[0])))
    # a second invocation for the same time (a trigger delivered twice) finds the slots claimed
    with clock.simulated(D + timedelta(hours=29)):
        again = _due_verifications(policy, "orders", D + timedelta(hours=29), store,
                                   lambda _n: source)
    assert again == []
    claims = [i.key for i in store.list(layout.verify_slots_prefix("orders", "drill"))]
    assert sorted(claims) == [layout.verify_slot_key("orders", "drill", D.replace(hour=4)),
                              layout.verify_slot_outcome_key("orders", "drill", D.replace(hour=4)),
                              layout.verify_slot_key("orders", "drill", D + timedelta(days=1, hours=4)),
                              layout.verify_slot_outcome_key("orders", "drill",
                                                             D + timedelta(days=1, hours=4))]


def test_a_verification_by_hand_after_the_slot_counts_for_it(tmp_path: Path, capsys: Any) -> None:
    path = policy_file(tmp_path, verify={"sample": "0 3 * * *"})
    policy = parse_policy(path.read_text())
    store, source = FileStore(tmp_path / "vault"), MemorySource()
    take(policy, store, "orders", D.replace(hour=2), D.replace(hour=2), "aaaaaa")
    from cloudkeep.drills import verify_sample
    from cloudkeep.verify import record_and_audit

    _, manifest = resolve(policy, "orders@latest")
    with clock.simulated(D.replace(hour=3, minute=20)):
        record_and_audit(store, verify_sample(policy, store, manifest, items=3, source=source))
        ran = _due_verifications(policy, "orders", D.replace(hour=3, minute=30), store,
                                 lambda _n: source)
    assert ran == []
    claim = json.loads(store.get(layout.verify_slot_key("orders", "sample", D.replace(hour=3))))
    assert claim["satisfied_by"]["trigger"] == "manual"


def test_prune_now_stamps_its_audit_record_with_the_replayed_time(tmp_path: Path,
                                                                 capsys: Any) -> None:
    path = policy_file(tmp_path, retention={"last": 1})
    policy = parse_policy(path.read_text())
    store = FileStore(tmp_path / "vault")
    take(policy, store, "orders", D.replace(hour=1), D.replace(hour=1), "aaaaaa")
    take(policy, store, "orders", D.replace(hour=2), D.replace(hour=2), "bbbbbb")
    out = cli_json(capsys, "--policy", str(path), "prune", "--now", "2026-03-04T02:30:00Z")
    assert out[0]["removed"]
    prunes = [r for r in audit.read(store) if r["event"] == "prune"]
    assert len(prunes) == 1 and prunes[0]["at"].startswith("2026-03-04T02:30")


def test_run_due_format_json_has_every_section(tmp_path: Path, capsys: Any,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from cloudkeep import runtime

    path = policy_file(tmp_path, copies=True, retention={"last": 1},
                       verify={"sample": "30 */6 * * *"})
    source = MemorySource()
    real_tick = runtime.tick

    def tick_with_memory_source(policy: Any, now: Any = None, **kwargs: Any) -> Any:
        return real_tick(policy, now, source_for=lambda _n: source, **kwargs)

    monkeypatch.setattr(runtime, "tick", tick_with_memory_source)
    replies = [cli_json(capsys, "--policy", str(path), "run", "--due", "--now", f"2026-03-04T0{h}:00:00Z")
               for h in (1, 2, 3)]
    source.failing = True
    code, out, _ = cli(capsys, "--policy", str(path), "--format", "json", "run", "--due", "--now",
                       "2026-03-04T04:00:00Z")
    replies.append(json.loads(out))
    assert code == 1 and [b["status"] for b in replies[-1]["backups"]] == ["failed"]
    first, second, third, fourth = replies
    for reply in replies:
        assert set(reply) >= {"datasets", "backups", "copies", "drills", "samples", "prunes",
                              "alerts", "verifications", "freshness"}
    assert [b["status"] for b in first["backups"]] == ["committed"]
    assert [c["store"] for c in first["copies"]] == ["offsite"] and first["copies"][0]["verified"]
    assert [s["slot"][:16] for s in first["samples"]] == ["2026-03-04T00:30"]
    assert second["samples"] == []  # the 00:30 slot ran at 01:00
    # retention (last 1, and the newest verified: the first) removes the 02:00 snapshot at 03:00
    assert [p["removed"] for p in (first, second, third) for p in p["prunes"]] == [
        [], [], [second["backups"][0]["snapshot_id"]]]
    assert third["prunes"][0]["after"] == third["backups"][0]["snapshot_id"]
    assert [(a["status"], a["kind"]) for a in fourth["alerts"]] == [("alert", "backup_failed")]
    store = FileStore(tmp_path / "vault")
    manifest = json.loads(store.get(layout.manifest_key("orders", third["backups"][0]["snapshot_id"])))
    assert manifest["started_at"].startswith("2026-03-04T03:00")
    assert manifest["finished_at"].startswith("2026-03-04T03:00")
    stamps = [str(r["at"]) for r in audit.read(store)]
    assert stamps and all(s.startswith("2026-03-04T0") for s in stamps)
    sample = json.loads(next(store.get(i.key) for i in store.list("orders/verifications/")))
    assert sample["started_at"].startswith("2026-03-04T01:00")
    newest = sequences.newest(store, layout.alert_states_prefix("orders"), lambda b, _k: json.loads(b))
    assert newest is not None
    alert_state = newest[1]
    assert alert_state["updated_at"].startswith("2026-03-04T04:00")


@pytest.mark.parametrize("columns", [80, 120])
def test_list_never_cuts_the_snapshot_ref(tmp_path: Path, capsys: Any,
                                          monkeypatch: pytest.MonkeyPatch, columns: int) -> None:
    dataset = "customer-orders-eu-west-1"
    path = policy_file(tmp_path, dataset=dataset, copies=True)
    policy = parse_policy(path.read_text())
    store = FileStore(tmp_path / "vault")
    ids = [take(policy, store, dataset, D + timedelta(hours=h), D + timedelta(hours=h), f"{h:06x}")
           for h in range(3)]
    monkeypatch.setenv("COLUMNS", str(columns))
    code, out, err = cli(capsys, "--policy", str(path), "list")
    assert code == 0, err
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= columns
    for sid in ids:
        ref = f"{dataset}@{sid}"
        assert any(ref in line for line in lines), f"{ref} cut at {columns} columns:\n{out}"
    assert re.search(r"2026-03-04 0[0-2]:00", out), "the capture time is shown"
    # JSON is not shaped by the terminal
    data = cli_json(capsys, "--policy", str(path), "list")
    assert [r["ref"] for r in data] == [f"{dataset}@{sid}" for sid in ids]


def test_plan_remembers_the_last_drill_after_its_snapshot_is_pruned(tmp_path: Path) -> None:
    from cloudkeep.runtime import plan

    path = policy_file(tmp_path, verify={"drill": "0 4 * * *"}, retention={"last": 1})
    policy = parse_policy(path.read_text())
    store, source = FileStore(tmp_path / "vault"), MemorySource()
    simulated = clock.SimulatedClock(D)
    with clock.simulated(simulated):
        for hour in (4, 5, 6):
            simulated.set(D + timedelta(hours=hour))
            tick(policy, D + timedelta(hours=hour), store_for=lambda _n: store,
                 source_for=lambda _n: source)
        # a later snapshot verified: the drilled one is no longer the newest verified, and goes
        from cloudkeep.verify import record_and_audit, verify_integrity

        _, newest = resolve(policy, "orders@latest")
        record_and_audit(store, verify_integrity(store, newest))
        prune(policy, "orders", D + timedelta(hours=6, minutes=10), store=store)
    drilled = json.loads(store.get(layout.verify_slot_outcome_key("orders", "drill", D.replace(hour=4))))
    assert drilled["snapshot_id"] not in snapshot_ids(store, "orders")
    assert not list(store.list(layout.verifications_prefix("orders", drilled["snapshot_id"])))
    [state] = plan(policy, D + timedelta(hours=6, minutes=30), store_for=lambda _n: store)
    assert state.last_drill is not None and state.last_drill["ok"] is True
    assert str(state.last_drill["started_at"]).startswith("2026-03-04T04:00")


def test_a_replayed_run_that_fails_leaves_the_wall_clock(tmp_path: Path, capsys: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from cloudkeep import runtime
    from cloudkeep.errors import StoreUnreachableError

    path = policy_file(tmp_path)
    seen: list[bool] = []

    def broken_tick(*_args: Any, **_kwargs: Any) -> Any:
        seen.append(clock.is_simulated())
        raise StoreUnreachableError("the store is gone")

    monkeypatch.setattr(runtime, "tick", broken_tick)
    code, _, err = cli(capsys, "--policy", str(path), "run", "--due", "--now", "2026-03-04T01:00:00Z")
    assert code == 3 and "the store is gone" in err
    assert seen == [True] and not clock.is_simulated()
    monkeypatch.undo()
    code, _, err = cli(capsys, "--policy", str(path), "run", "nope", "--due", "--now",
                       "2026-03-04T01:00:00Z")
    assert code == 2 and "nope" in err
    assert not clock.is_simulated()
    code, _, _ = cli(capsys, "--policy", str(path / "missing.yaml"), "run", "--due", "--now",
                     "2026-03-04T01:00:00Z")
    assert code == 2 and not clock.is_simulated()
