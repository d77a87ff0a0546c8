"""Legal holds stack (issue 19 item 1), prune and ``hold add`` are serialised (issue 17 item 4),
and bad hold, verification and copy records never break listing (issue 17 item 10). Over our own
protocols: the file store through the CLI, the memory store for the races (driven in both orders
by a store that runs the other side at a chosen write — no timing)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cloudkeep import clock, holds, layout
from cloudkeep.catalog import snapshot_ids
from cloudkeep.engine import backup
from cloudkeep.holds import HoldRefusedError
from cloudkeep.manifest import Manifest
from cloudkeep.policy import Policy, parse_policy
from cloudkeep.prune import prune
from cloudkeep.stores import Data, ObjectInfo
from cloudkeep.stores.file import FileStore
from cloudkeep.stores.memory import MemoryStore
from helpers import cli, cli_json
from test_engine import ScriptedSource

Z = UTC
NOW = datetime(2026, 1, 2, tzinfo=Z)


def make_policy(tmp: Path, retention: str = "{last: 1}") -> Policy:
    text = f"""
version: 1
stores: {{vault: {{type: file, path: vault}}}}
tiers: {{t: {{schedule: "0 * * * *", rpo: 2h, retention: {retention}}}}}
datasets:
  a: {{source: {{type: dynamodb, table: aaa, region: us-east-1}}, tier: t, store: vault}}
"""
    (tmp / "cloudkeep.yaml").write_text(text)
    return parse_policy(text, base_dir=tmp)


def take(policy: Policy, store: Any, n: int) -> list[Manifest]:
    out = []
    for i in range(n):
        at = datetime(2026, 1, 1, tzinfo=Z) + timedelta(hours=i)
        sid = layout.snapshot_id_for(at, f"{i:06x}")
        with clock.simulated(at):  # captured at its id's time (retention goes by capture time)
            result = backup(policy, "a", store=store, source=ScriptedSource(), snapshot_id=sid)
        assert result.manifest is not None
        out.append(result.manifest)
    return out


def test_holds_stack_and_release_one_by_one_through_the_cli(tmp_path: Path, capsys: Any) -> None:
    policy = make_policy(tmp_path)
    store = FileStore(tmp_path / "vault")
    first, second, third = (m.snapshot_id for m in take(policy, store, 3))
    p = str(tmp_path / "cloudkeep.yaml")
    ref = f"a@{first}"

    h1 = cli_json(capsys, "--policy", p, "hold", "add", ref, "--reason", "audit 2026")
    h2 = cli_json(capsys, "--policy", p, "hold", "add", ref, "--reason", "case 7")
    assert h1["hold_id"] != h2["hold_id"] and h1["hold_id"].startswith("h-")
    code, out, _ = cli(capsys, "--policy", p, "hold", "add", f"a@{second}", "--reason", "third")
    assert code == 0 and "hold id h-" in out
    ids = [h1["hold_id"], h2["hold_id"]]

    rows = {r["snapshot_id"]: r for r in cli_json(capsys, "--policy", p, "list")}
    assert rows[first]["hold"] == "audit 2026; case 7"
    assert [h["hold_id"] for h in rows[first]["holds"]] == ids
    assert [h["reason"] for h in rows[second]["holds"]] == ["third"] and rows[third]["holds"] == []
    assert "2 holds" in cli(capsys, "--policy", p, "list")[1]
    shown = cli_json(capsys, "--policy", p, "show", ref)
    assert [h["hold_id"] for h in shown["holds"]] == ids and shown["hold"]["reason"] == "audit 2026"
    code, out, _ = cli(capsys, "--policy", p, "show", ref)
    assert h1["hold_id"] in out and h2["hold_id"] in out
    listed = cli_json(capsys, "--policy", p, "hold", "list")
    assert [(h["snapshot_id"], h["hold_id"]) for h in listed] == [
        (first, ids[0]), (first, ids[1]), (second, listed[2]["hold_id"])]
    report = cli_json(capsys, "--policy", p, "report", "--now", "2026-01-01T03:00:00Z")
    assert {h["hold_id"] for h in report["datasets"][0]["holds"]} == {*ids, listed[2]["hold_id"]}
    audited = [r for r in cli_json(capsys, "--policy", p, "audit") if r["event"] == "hold_add"]
    assert [r["detail"]["hold_id"] for r in audited] == [*ids, listed[2]["hold_id"]]

    # releasing needs to say which hold when there are several
    code, _, err = cli(capsys, "--policy", p, "hold", "remove", ref)
    assert code == 2 and ids[0] in err and ids[1] in err and "--id" in err
    code, _, err = cli(capsys, "--policy", p, "hold", "remove", ref, "--id", "h-00000000")
    assert code == 2 and "no active hold" in err
    code, out, err = cli(capsys, "--policy", p, "hold", "remove", ref, "--id", ids[0])
    assert code == 0 and f"still held by 1 other hold(s): {ids[1]}" in out
    assert [h["reason"] for h in cli_json(capsys, "--policy", p, "show", ref)["holds"]] == ["case 7"]
    code, _, err = cli(capsys, "--policy", p, "hold", "remove", ref, "--id", ids[0])
    assert code == 1 and "already released" in err
    # the ledger is append-only: the released hold's record is still there, with its release
    assert store.stat(layout.hold_record_key("a", first, ids[0])) is not None
    assert store.stat(layout.hold_release_key("a", first, ids[0])) is not None

    dry = cli_json(capsys, "--policy", p, "prune", "--dry-run")[0]
    actions = {s["snapshot_id"]: (s["action"], s["reasons"]) for s in dry["snapshots"]}
    assert actions[first] == ("keep", ["legal hold: case 7"])
    assert actions[second] == ("keep", ["legal hold: third"])
    assert cli(capsys, "--policy", p, "hold", "remove", ref)[0] == 0  # the only one left
    assert cli(capsys, "--policy", p, "prune")[0] == 0
    assert snapshot_ids(store, "a") == [second, third]
    assert not list(store.list(layout.hold_ledger_prefix("a", first)))  # went with the snapshot
    removed = [r for r in cli_json(capsys, "--policy", p, "audit") if r["event"] == "hold_remove"]
    assert [r["detail"]["hold_id"] for r in removed] == ids


def test_a_hold_record_of_the_previous_release_reads_as_one_hold(tmp_path: Path,
                                                                 capsys: Any) -> None:
    policy = make_policy(tmp_path)
    store = FileStore(tmp_path / "vault")
    first, second = (m.snapshot_id for m in take(policy, store, 2))
    store.put(layout.hold_key("a", first), json.dumps({
        "dataset": "a", "snapshot_id": first, "reason": "litigation",
        "created_at": "2025-12-01T00:00:00+00:00", "created_by": "ops@host"}).encode())
    p = str(tmp_path / "cloudkeep.yaml")
    [row] = [r for r in cli_json(capsys, "--policy", p, "list") if r["snapshot_id"] == first]
    assert row["hold"] == "litigation" and row["holds"][0]["hold_id"] == "legacy"
    assert cli_json(capsys, "--policy", p, "hold", "list")[0]["hold_id"] == "legacy"
    cli_json(capsys, "--policy", p, "hold", "add", f"a@{first}", "--reason", "second one")
    assert cli(capsys, "--policy", p, "prune")[0] == 0
    assert snapshot_ids(store, "a") == [first, second]
    assert cli(capsys, "--policy", p, "hold", "remove", f"a@{first}", "--id", "legacy")[0] == 0
    assert store.stat(layout.hold_key("a", first)) is not None  # released, not deleted
    assert cli_json(capsys, "--policy", p, "show", f"a@{first}")["hold"]["reason"] == "second one"
    assert cli(capsys, "--policy", p, "hold", "remove", f"a@{first}")[0] == 0
    assert cli(capsys, "--policy", p, "prune")[0] == 0
    assert snapshot_ids(store, "a") == [second]
    assert store.stat(layout.hold_key("a", first)) is None  # compacted with its snapshot


# ---- prune racing hold add, both orders


class HookedStore(MemoryStore):
    """Runs ``hook`` once, right before or right after the first write of a key for which
    ``when`` is true."""

    def __init__(self) -> None:
        super().__init__()
        self.hook: Callable[[], None] | None = None
        self.when: Callable[[str], bool] = lambda key: False
        self.after = True

    def put(self, key: str, data: Data, *, if_absent: bool = False,
            retain_until: datetime | None = None) -> ObjectInfo:
        hook = self.hook if self.when(key) else None
        if hook is not None:
            self.hook = None
            if not self.after:
                hook()
        info = super().put(key, data, if_absent=if_absent, retain_until=retain_until)
        if hook is not None and self.after:
            hook()
        return info


def _race(tmp_path: Path, when: Callable[[str], bool], after: bool
          ) -> tuple[HookedStore, list[Manifest], dict[str, Any], Any]:
    policy = make_policy(tmp_path)
    store = HookedStore()
    snaps = take(policy, store, 2)
    outcome: dict[str, Any] = {}

    def hold_add() -> None:
        try:
            outcome["hold"] = holds.add(store, snaps[0], "placed during prune")
        except HoldRefusedError as exc:
            outcome["refused"] = str(exc)

    store.hook, store.when, store.after = hold_add, when, after
    report = prune(policy, "a", NOW, store=store)
    assert store.hook is None  # the race happened
    return store, snaps, outcome, report


def _is_marker(key: str) -> bool:
    return "/holds/" in key and "/deleting-" in key and not key.endswith(".cancelled.json")


def test_prune_marks_first_then_hold_add_withdraws_and_the_snapshot_goes(tmp_path: Path) -> None:
    store, snaps, outcome, report = _race(tmp_path, _is_marker, after=True)
    assert "prune run" in outcome["refused"] and "withdrawn" in outcome["refused"]
    assert report.removed == [snaps[0].snapshot_id]
    assert snapshot_ids(store, "a") == [snaps[1].snapshot_id]
    assert holds.all_for(store, "a") == {}  # no hold points at nothing


def test_hold_add_first_then_prune_rechecks_and_keeps_the_snapshot(tmp_path: Path) -> None:
    store, snaps, outcome, report = _race(tmp_path, _is_marker, after=False)
    placed = outcome["hold"]
    assert report.removed == []
    assert snaps[0].snapshot_id in report.decision.keep
    assert "legal hold: placed during prune" in report.decision.reasons[snaps[0].snapshot_id]
    assert snapshot_ids(store, "a") == [s.snapshot_id for s in snaps]
    assert [h.hold_id for h in holds.active(store, "a", snaps[0].snapshot_id)] == [placed.hold_id]
    # prune's marker is cancelled: more holds may come, and the next prune keeps it too
    holds.add(store, snaps[0], "another")
    assert prune(make_policy(tmp_path), "a", NOW, store=store).removed == []


def test_hold_written_then_prune_runs_whole_before_hold_add_checks(tmp_path: Path) -> None:
    # hold add has written its record; a whole prune runs before it reads the ledger back
    policy = make_policy(tmp_path)
    store = HookedStore()
    snaps = take(policy, store, 2)
    reports = []
    store.hook = lambda: reports.append(prune(policy, "a", NOW, store=store))
    store.when = lambda key: "/holds/" in key and key.endswith(".json") and "/h-" in key
    placed = holds.add(store, snaps[0], "just in time")
    assert reports[0].removed == [] and snapshot_ids(store, "a") == [s.snapshot_id for s in snaps]
    assert holds.active(store, "a", snaps[0].snapshot_id)[0].hold_id == placed.hold_id


def test_a_marker_left_by_a_dead_prune_stops_blocking_holds_after_its_ttl(tmp_path: Path) -> None:
    policy = make_policy(tmp_path)
    store = MemoryStore()
    [snap] = take(policy, store, 1)
    store.put(layout.deleting_marker_key("a", snap.snapshot_id, "deadbeefdeadbeef"), json.dumps(
        {"prune_id": "deadbeefdeadbeef", "created_at": datetime.now(Z).isoformat()}).encode())
    with pytest.raises(HoldRefusedError, match="deadbeefdeadbeef"):
        holds.add(store, snap, "too soon")
    assert holds.active(store, "a", snap.snapshot_id) == []  # withdrawn
    later = datetime.now(Z) + holds.MARKER_TTL + timedelta(minutes=1)
    placed = holds.add(store, snap, "later", clock=lambda: later)
    assert holds.active(store, "a", snap.snapshot_id) == [placed]


def test_prune_deletes_only_within_its_deletion_lease(tmp_path: Path, monkeypatch: Any) -> None:
    policy = make_policy(tmp_path)
    store = MemoryStore()
    snaps = take(policy, store, 2)
    monkeypatch.setattr(holds, "DELETE_LEASE", timedelta(seconds=-1))  # as if frozen past it
    report = prune(policy, "a", NOW, store=store)
    assert report.removed == [] and any("marked for deletion" in e for e in report.errors)
    assert snapshot_ids(store, "a") == [s.snapshot_id for s in snaps]
    holds.add(store, snaps[0], "after the frozen prune")  # its marker was cancelled


# ---- bad records


def test_bad_hold_verification_and_copy_records_never_break_listing(tmp_path: Path,
                                                                    capsys: Any) -> None:
    policy = make_policy(tmp_path)
    store = FileStore(tmp_path / "vault")
    first, second, third = (m.snapshot_id for m in take(policy, store, 3))
    store.put(layout.hold_record_key("a", first, "h-deadbeef"), b"{not json")
    store.put(layout.hold_ledger_prefix("a", first) + "h-feedface.json", b"[" * 50_000)
    store.put(layout.holds_prefix("a") + "README.txt", b"hello")
    store.put(layout.verification_key("a", second, NOW), b"\xff\xfe garbage")
    store.put(layout.copy_record_key("a", second, "elsewhere"), b"[1, 2")
    p = str(tmp_path / "cloudkeep.yaml")

    code, out, err = cli(capsys, "--policy", p, "--format", "json", "list")
    assert code == 0 and "Traceback" not in err
    rows = {r["snapshot_id"]: r for r in json.loads(out)}
    assert list(rows) == [first, second, third]
    assert {h["hold_id"] for h in rows[first]["holds"]} == {"h-deadbeef", "h-feedface"}
    assert all(h["reason"] == "(unreadable hold record)" for h in rows[first]["holds"])
    assert len(rows[second]["problems"]) == 2 and rows[second]["copies"] == []
    assert "warning: " in err and "h-deadbeef" in err and "README.txt" in err
    code, out, err = cli(capsys, "--policy", p, "--format", "json", "hold", "list")
    assert code == 0 and len(json.loads(out)) == 2 and "warning" in err
    assert cli(capsys, "--policy", p, "show", f"a@{third}")[0] == 0
    assert cli(capsys, "--policy", p, "show", f"a@{first}")[0] == 0
    report = cli_json(capsys, "--policy", p, "report", "--now", "2026-01-01T03:00:00Z")
    assert report["datasets"][0]["error"] is None and report["datasets"][0]["problems"]
    assert cli(capsys, "--policy", p, "plan", "--now", "2026-01-01T03:00:00Z")[0] == 0
    # prune: the snapshot with unreadable holds counts as held; nothing is deleted for a record
    # it could not read
    code, out, err = cli(capsys, "--policy", p, "--format", "json", "prune")
    [pruned] = json.loads(out)
    assert code == 0, err
    assert pruned["removed"] == [second]
    assert snapshot_ids(store, "a") == [first, third]
    assert any("h-deadbeef" in problem for problem in pruned["problems"])
    # an unreadable hold is released like any other, by its id
    for hold_id in ("h-deadbeef", "h-feedface"):
        assert cli(capsys, "--policy", p, "hold", "remove", f"a@{first}", "--id", hold_id)[0] == 0
    assert cli(capsys, "--policy", p, "prune")[0] == 0
    assert snapshot_ids(store, "a") == [third]


def test_hold_reason_limits_and_bad_ids(tmp_path: Path, capsys: Any) -> None:
    policy = make_policy(tmp_path)
    store = FileStore(tmp_path / "vault")
    [snap] = take(policy, store, 1)
    p = str(tmp_path / "cloudkeep.yaml")
    for args, message in ((["--reason", "  "], "bad --reason '  ': it is blank"),
                          (["--reason", "x" * 5000], "at most 2000")):
        code, _, err = cli(capsys, "--policy", p, "hold", "add", f"a@{snap.snapshot_id}", *args)
        assert code == 2 and message in err and err.count("\n") == 1
    code, _, err = cli(capsys, "--policy", p, "hold", "remove", f"a@{snap.snapshot_id}")
    assert code == 1 and "not under a legal hold" in err
    code, _, err = cli(capsys, "--policy", p, "hold", "remove", f"a@{snap.snapshot_id}",
                       "--id", "../../etc")
    assert code == 2 and "no active hold" in err


def test_prune_compacts_the_ledgers_of_snapshots_that_are_gone(tmp_path: Path) -> None:
    policy = make_policy(tmp_path, retention="{last: 5}")
    store = MemoryStore()
    snaps = take(policy, store, 2)
    # a hold add that lost to a prune: it finds the manifest gone and withdraws
    store.delete([layout.manifest_key("a", snaps[0].snapshot_id)])
    with pytest.raises(HoldRefusedError, match="it was deleted"):
        holds.add(store, snaps[0], "too late")
    assert len(list(store.list(layout.hold_ledger_prefix("a", snaps[0].snapshot_id)))) == 2
    # an active hold on a snapshot that does not exist (a hold add that died) is kept and reported
    ghost = layout.snapshot_id_for(datetime(2026, 1, 1, 9, tzinfo=Z), "0a0a0a")
    store.put(layout.hold_record_key("a", ghost, "h-0badf00d"), json.dumps({"reason": "x"}).encode())
    holds.add(store, snaps[1], "kept")
    report = prune(policy, "a", datetime.now(Z) + timedelta(days=1), store=store)
    assert not list(store.list(layout.hold_ledger_prefix("a", snaps[0].snapshot_id)))
    assert store.stat(layout.hold_record_key("a", ghost, "h-0badf00d")) is not None
    assert any(ghost in p and "does not exist" in p for p in report.problems)
    assert [h.reason for h in holds.active(store, "a", snaps[1].snapshot_id)] == ["kept"]


def test_prune_compacts_cancelled_marks_once_they_are_past_their_ttl(tmp_path: Path) -> None:
    store, snaps, outcome, _ = _race(tmp_path, _is_marker, after=False)  # hold first: cancelled
    sid = snaps[0].snapshot_id
    marks = [i.key for i in store.list(layout.hold_ledger_prefix("a", sid)) if "/deleting-" in i.key]
    assert len(marks) == 2  # the mark and its cancellation
    policy = make_policy(tmp_path)
    prune(policy, "a", NOW, store=store)  # held: kept by retention; young marks stay
    assert len([i for i in store.list(layout.hold_ledger_prefix("a", sid))
                if "/deleting-" in i.key]) == 2
    old = datetime.now(Z) - holds.MARKER_TTL - timedelta(minutes=5)
    for key in [i.key for i in store.list(layout.hold_ledger_prefix("a", sid))]:
        body, _ = store.objects[key]
        if "/deleting-" in key:  # as if written two hours ago
            doc = json.loads(body)
            for field in ("created_at", "cancelled_at"):
                if field in doc:
                    doc[field] = old.isoformat()
            store.objects[key] = (json.dumps(doc).encode(), old)
    report = prune(policy, "a", NOW, store=store)
    left = [i.key for i in store.list(layout.hold_ledger_prefix("a", sid)) if "/deleting-" in i.key]
    assert left == []
    assert sid in report.decision.keep
    assert [h.hold_id for h in holds.active(store, "a", sid)] == [outcome["hold"].hold_id]
