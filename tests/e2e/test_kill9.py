"""kill -9 at random points of ``run``, ``prune`` and copies (#17 "Done when"): a process
running the CLI — backing up a DynamoDB Local table into a file store, with a copy store — killed
at least 50 times. The kill points are random but seeded (after a random number of objects
written or deleted); the assertions hold for any of them: no committed snapshot is ever lost
(each verifies in every store), and after the next run and prune no orphan remains in any store.

Each process is forked from the test (the CLI's ``entrypoint`` with the command line), so no
interpreter start-up is paid per kill; it is a real process, killed with a real SIGKILL."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from cloudkeep import layout
from cloudkeep.catalog import list_manifests, snapshot_ids
from cloudkeep.stores.file import FileStore
from cloudkeep.timeline import capture_time
from cloudkeep.verify import verify_integrity
from helpers import cli
from test_backup_path import make_table, restores_exactly, write_policy

SEED = 1717
KILLS = int(os.environ.get("T1A_KILLS", "50"))
KEEP = 3  # the tier's retention: last 3


def spawn(argv: list[str]) -> int:
    """Run the CLI with ``argv`` in a forked process (output discarded); returns its pid."""
    pid = os.fork()
    if pid:
        return pid
    code = 70
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        from cloudkeep.cli import entrypoint

        code = entrypoint(argv)
    finally:
        os._exit(code)


def count(*roots: Path) -> int:
    """Objects (and temporaries) in the stores: what a run adds and prune removes."""
    return sum(len(files) for root in roots for _, _, files in os.walk(root))


def table_digest(ddb_client: Any, table: str) -> tuple[int, str]:
    from cloudkeep.sources.dynamodb import DynamoDBSource

    source = DynamoDBSource(table, "us-east-1", client=ddb_client)
    return source.scan_digest(table)


def committed_are_whole(store: FileStore, expected: tuple[int, str]) -> dict[str, Any]:
    """Every committed snapshot in ``store`` verifies and holds exactly the table. Returns each
    id with the snapshot's capture time (what retention orders snapshots by)."""
    manifests = list_manifests(store, "orders")
    for manifest in manifests:
        report = verify_integrity(store, manifest)
        assert report.ok, (store.describe(), manifest.snapshot_id, report.problems)
        assert (manifest.totals.items, manifest.content_digest.value) == expected
    return {m.snapshot_id: capture_time(m) for m in manifests}


def test_kill_9_in_run_prune_and_copies_loses_nothing_and_leaves_no_orphan(
    ddb_client: Any, tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLOUDKEEP_DYNAMODB_PAGE_SIZE", "20")
    table = make_table(ddb_client, 160)
    expected = table_digest(ddb_client, table)
    vault, offsite = tmp_path / "vault", tmp_path / "offsite"
    policy = write_policy(tmp_path, table, offsite=offsite, last=KEEP)
    run = ["--policy", str(policy), "-q", "run", "orders", "--part-size", "700",
           "--workers", "2", "--checkpoint-every", "1"]
    prune = ["--policy", str(policy), "-q", "prune"]
    rng = random.Random(SEED)
    kills = {"run": 0, "prune": 0, "copy": 0}
    ever: dict[str, Any] = {}  # every snapshot ever committed, with its capture time
    rounds = 0
    while sum(kills.values()) < KILLS:
        rounds += 1
        assert rounds < 150, f"only {kills} kills landed in {rounds} rounds"
        # Prune only when there is something to remove, so its kills land mid-work.
        action = "prune" if len(ever) > KEEP + 1 and rng.random() < 0.35 else "run"
        after = rng.randint(1, 4) if action == "prune" else rng.randint(1, 40)
        base, copies_before = count(vault, offsite), count(offsite)
        pid = spawn(run if action == "run" else prune)
        while os.waitpid(pid, os.WNOHANG) == (0, 0):  # until it exits, or the kill point
            if abs(count(vault, offsite) - base) >= after:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                copying = action == "run" and count(offsite) != copies_before
                kills["copy" if copying else action] += 1
                break
            time.sleep(0.001)
        # After every round: every committed snapshot is whole, in every store, and the newest
        # ones retention keeps are all still there.
        ids = committed_are_whole(FileStore(vault), expected)
        committed_are_whole(FileStore(offsite), expected)
        ever |= ids
        # the newest by capture time (two snapshots started in one second share their id's time)
        newest = sorted(ever, key=lambda i: (ever[i], i))[-KEEP:]
        assert set(newest) <= set(ids), f"a committed snapshot was lost (seed {SEED})"
    assert kills["run"] >= 10 and kills["prune"] >= 5 and kills["copy"] >= 5, kills

    # The next run and prune leave no orphan in any store.
    code, out, err = cli(capsys, "--policy", str(policy), "run", "orders", "--part-size", "700")
    assert code == 0, out + err
    code, out, err = cli(capsys, "--policy", str(policy), "prune")
    assert code == 0, out + err
    captured = committed_are_whole(FileStore(vault), expected)
    ever |= captured
    ids = sorted(captured)
    assert ids == sorted(sorted(ever, key=lambda i: (ever[i], i))[-KEEP:]), \
        "retention kept exactly the newest"
    assert committed_are_whole(FileStore(offsite), expected) == captured, "every snapshot is copied"
    for root in (vault, offsite):
        store = FileStore(root)
        for manifest in list_manifests(store, "orders"):
            folder = root / "orders" / "snapshots" / manifest.snapshot_id
            assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) \
                == sorted(["manifest.json"] + [p.name for p in manifest.parts]
                          + [layout.key_index_name(p.name) for p in manifest.parts if p.key_index]), \
                f"orphans in {folder}: no unreferenced part, checkpoint or temporary remains"
        # (A process killed between creating a folder and its first file may leave an empty
        # folder: not an object in any store, and nothing to remove.)
        folders = [p for p in (root / "orders" / "snapshots").iterdir()
                   if any(f.is_file() for f in p.rglob("*"))]
        left = {p.name: sorted(str(f.relative_to(p)) for f in p.rglob("*"))
                for p in folders if p.name not in ids}
        assert sorted(p.name for p in folders) == ids, \
            f"no unfinished snapshot or partial copy remains in {root}: {left}"
    for sub in ("lock", "copies"):
        assert not [p for p in (vault / "orders" / sub).rglob(".tmp-*")], sub
    copies = {p.parent.name for p in (vault / "orders" / "copies").rglob("offsite.json")}
    assert copies == set(ids), "every snapshot has its verified copy record, and only they do"
    assert snapshot_ids(FileStore(vault), "orders") == ids
    assert len([k for k in FileStore(vault).list(layout.lock_prefix("orders"))]) <= KEEP + 2
    for sid in ids:
        restores_exactly(capsys, policy, ddb_client, table, f"orders@{sid}")
    restores_exactly(capsys, policy, ddb_client, table, f"orders@{ids[-1]}", "--store", "offsite")
