"""What an adversarial pass over the trust work found, each shown failing safely: a replay time
outside any calendar, terminal controls planted in store records, a lock or a deletion mark
dated far in the future, a store inside another store, and `report --output` pointed at a file
that is not a report (the policy, a manifest, a link)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from cloudkeep import holds, layout
from cloudkeep.lock import Lease
from cloudkeep.stores.file import FileStore
from cloudkeep.stores.memory import MemoryStore
from helpers import cli
from test_holds import make_policy, take

FAR = "9999-12-31T00:00:00+00:00"


@pytest.mark.parametrize("now", ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"])
@pytest.mark.parametrize("command", [["plan"], ["run", "--due"], ["prune", "--dry-run"], ["report"]])
def test_a_replay_time_out_of_range_is_one_line_and_exit_2(tmp_path: Path, capsys: Any,
                                                           now: str, command: list[str]) -> None:
    make_policy(tmp_path)
    code, out, err = cli(capsys, "--policy", str(tmp_path / "cloudkeep.yaml"), *command, "--now", now)
    assert code == 2, (out, err)
    assert err.count("\n") == 1 and "bad --now" in err and "Traceback" not in err + out


def test_terminal_controls_in_store_records_never_reach_the_screen(tmp_path: Path,
                                                                   capsys: Any) -> None:
    policy = make_policy(tmp_path)
    store = FileStore(tmp_path / "vault")
    [snap] = take(policy, store, 1)
    evil = {"dataset": "a", "snapshot_id": snap.snapshot_id, "hold_id": "h-0badc0de",
            "reason": "ok\x1b[2J\x1b]0;pwned\x07\r\nFAKE LINE", "created_by": "x\x1b[31m",
            "created_at": "2026-01-01T00:00:00+00:00"}
    store.put(f"a/holds/{snap.snapshot_id}/h-0badc0de.json", json.dumps(evil).encode(), if_absent=True)
    p = str(tmp_path / "cloudkeep.yaml")
    for args in (["hold", "list"], ["show", f"a@{snap.snapshot_id}"], ["list"]):
        code, out, err = cli(capsys, "--policy", p, *args)
        assert code == 0, err
        assert "\x1b" not in out + err and "\x07" not in out and "\r" not in out, args
        assert "\nFAKE LINE" not in out, args
    assert "\\x1b[2J" in cli(capsys, "--policy", p, "hold", "list")[1]  # shown, escaped


def test_a_lock_dated_far_ahead_is_taken_over() -> None:
    store = MemoryStore()
    planted = {"format": 1, "generation": 5, "state": "held", "run_id": "evil", "host": "elsewhere",
               "pid": 1, "at": FAR, "expires_at": FAR, "lease_seconds": 300}
    store.put(layout.generation_key(layout.lock_prefix("a"), 5), json.dumps(planted).encode(),
              if_absent=True)
    lease = Lease(store, "a", "mine", heartbeat=False)
    lease.acquire()  # would raise LockedError "being backed up by run evil" if it were live
    lease.release()


def test_a_deletion_mark_dated_far_ahead_does_not_block_holds(tmp_path: Path) -> None:
    policy = make_policy(tmp_path)
    store = MemoryStore()
    [snap] = take(policy, store, 1)
    store.put(layout.deleting_marker_key("a", snap.snapshot_id, "0123456789abcdef"),
              json.dumps({"created_at": FAR}).encode(), if_absent=True)
    placed = holds.add(store, snap, "planted mark")
    assert [h.hold_id for h in holds.active(store, "a", snap.snapshot_id)] == [placed.hold_id]


def test_a_store_inside_another_store_is_refused(tmp_path: Path, capsys: Any) -> None:
    (tmp_path / "p.yaml").write_text("""
version: 1
stores:
  a: {type: file, path: ./vault}
  b: {type: file, path: ./vault/orders/snapshots}
  c: {type: file, path: ./vault}
tiers:
  t: {schedule: "0 * * * *", rpo: 2h, retention: {last: 3}}
datasets:
  orders: {source: {type: dynamodb, table: orders, region: us-east-1}, tier: t, store: a}
  users: {source: {type: dynamodb, table: users, region: us-east-1}, tier: t, store: b}
""")
    code, _, err = cli(capsys, "--policy", str(tmp_path / "p.yaml"), "validate")
    assert code == 2
    assert "stores.b: store 'b'" in err and "lies inside store 'a'" in err
    assert "stores.c" not in err  # two names for one location are allowed


def test_report_output_overwrites_only_an_earlier_report(tmp_path: Path, capsys: Any) -> None:
    policy = make_policy(tmp_path)
    store = FileStore(tmp_path / "vault")
    [snap] = take(policy, store, 1)
    p = str(tmp_path / "cloudkeep.yaml")
    manifest = tmp_path / "vault" / layout.manifest_key("a", snap.snapshot_id)
    before = {f: f.read_bytes() for f in (Path(p), manifest)}
    os.symlink(manifest, tmp_path / "link.html")
    for target in (p, str(manifest), str(tmp_path / "link.html")):
        code, _, err = cli(capsys, "--policy", p, "report", "--output", target)
        assert code == 2 and err.count("\n") == 1 and "bad --output" in err, (target, err)
    assert {f: f.read_bytes() for f in before} == before
    report = tmp_path / "r.html"
    for _ in range(2):  # a new file, then its own earlier report
        code, _, err = cli(capsys, "--policy", p, "report", "--output", str(report))
        assert code == 0, err
    assert "<title>cloudkeep report</title>" in report.read_text()
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".cloudkeep-report-")]


def test_a_file_store_path_with_a_nul_byte_is_a_policy_error(tmp_path: Path, capsys: Any) -> None:
    (tmp_path / "p.yaml").write_text(
        'version: 1\nstores:\n  a: {type: file, path: "./v\\0x"}\n'
        'tiers:\n  t: {schedule: "0 * * * *", rpo: 2h, retention: {last: 3}}\n'
        "datasets:\n  orders: {source: {type: dynamodb, table: orders, region: us-east-1}, tier: t, store: a}\n")
    code, _, err = cli(capsys, "--policy", str(tmp_path / "p.yaml"), "validate")
    assert code == 2 and "stores.a.path: a folder path may not contain control characters" in err
    assert "unexpected" not in err
