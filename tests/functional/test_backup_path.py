"""Trust I (#17 items 1 and 6) against DynamoDB Local and file stores: a run frozen (SIGSTOP)
past its lease while another run commits writes nothing more once thawed; the backup path (run,
``run --due``, fan-out workers, copies) never deletes or overwrites an object; a failed copy fails
``run``, raises one ``copy_failed`` alert, is retried by later ticks and recovers."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from cloudkeep import layout
from cloudkeep.alerts import MemoryChannel, Notifier
from cloudkeep.catalog import list_manifests, snapshot_ids
from cloudkeep.checkpoint import Deadline
from cloudkeep.engine import RunOptions, backup
from cloudkeep.lock import DatasetLock
from cloudkeep.policy import load_policy
from cloudkeep.runtime import after_backup, tick
from cloudkeep.stores.file import FileStore
from cloudkeep.verify import verify_integrity
from conftest import REGION, unique
from helpers import cli, cli_json, scan_all

HERE = Path(__file__).resolve().parents[1]  # tests/, where stall_child.py is
ITEMS = 240


@pytest.fixture(autouse=True)
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    """20-item Scan pages (for the subprocesses too): many small parts in a small table."""
    monkeypatch.setenv("CLOUDKEEP_DYNAMODB_PAGE_SIZE", "20")


def make_table(client: Any, items: int = ITEMS) -> str:
    name = unique("trust")
    client.create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                   {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "N"}],
    )
    client.get_waiter("table_exists").wait(TableName=name)
    for start in range(0, items, 25):
        client.batch_write_item(RequestItems={name: [
            {"PutRequest": {"Item": {"pk": {"S": f"c-{i % 13}"}, "sk": {"N": str(i)},
                                     "note": {"S": f"item {i} " + "x" * (i % 40)}}}}
            for i in range(start, min(items, start + 25))]})
    return name


def write_policy(tmp_path: Path, table: str, *, offsite: Path | None = None,
                 schedule: str = "0 * * * *", last: int = 2) -> Path:
    stores: dict[str, Any] = {"vault": {"type": "file", "path": str(tmp_path / "vault")}}
    dataset: dict[str, Any] = {"source": {"type": "dynamodb", "table": table, "region": REGION,
                                          "segments": 2},
                               "tier": "t", "store": "vault"}
    if offsite is not None:
        stores["offsite"] = {"type": "file", "path": str(offsite)}
        dataset["copy_to"] = ["offsite"]
    policy = {"version": 1, "stores": stores,
              "tiers": {"t": {"schedule": schedule, "rpo": "2h", "retention": {"last": last}}},
              "datasets": {"orders": dataset}}
    path = tmp_path / "cloudkeep.yaml"
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    return path


def files(root: Path) -> dict[str, str]:
    """Every file under ``root`` (temporaries included) → sha256 of its content."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def visible(found: dict[str, str]) -> dict[str, str]:
    """Without the file store's temporaries (never listed; not objects)."""
    return {k: v for k, v in found.items() if not k.rsplit("/", 1)[-1].startswith(".tmp-")}


def restores_exactly(capsys: Any, policy: Path, ddb_client: Any, table: str, ref: str,
                     *store: str) -> None:
    code, out, err = cli(capsys, "--policy", str(policy), "verify", ref, *store)
    assert code == 0, out + err
    target = unique("restored")
    code, out, err = cli(capsys, "--policy", str(policy), "restore", ref, "--into", target, *store)
    assert code == 0, out + err
    assert scan_all(ddb_client, target) == scan_all(ddb_client, table)


# ------------------------------------------------------------------------------ a stalled run


def _process_state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()[0]


def _wait_for(condition: Any, what: str, limit: float = 60.0) -> None:
    """Wait for a condition of the world (a bounded poll, not a sleep that hopes)."""
    end = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_a_run_frozen_past_its_lease_writes_nothing_after_another_run_committed(
    ddb_client: Any, tmp_path: Path, capsys: Any
) -> None:
    table = make_table(ddb_client)
    policy_path = write_policy(tmp_path, table)
    vault = tmp_path / "vault"
    lease = 1.5
    child = subprocess.Popen(
        [sys.executable, str(HERE / "stall_child.py"), str(policy_path), "orders", str(lease), "3",
         "600"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        _wait_for(lambda: child.poll() is not None or _process_state(child.pid) == "T",
                  "run A to freeze")
        assert child.poll() is None, child.communicate()
        (plan,) = vault.rglob("checkpoints/run.json")
        frozen_sid = plan.parent.parent.name
        store = FileStore(vault)
        # A stays frozen until its lease has run out (the lock says so, by the clock).
        _wait_for(lambda: DatasetLock(store, "orders", "probe").holder() is None,
                  "run A's lease to expire")

        # Run B takes the lock over, resumes A's snapshot and commits it.
        policy = load_policy(str(policy_path)).policy
        b = backup(policy, "orders", options=RunOptions(part_size=600, workers=2))
        assert b.status == "committed" and b.snapshot_id == frozen_sid, b.as_dict()
        before = files(vault)

        # A is thawed: it must notice it lost the lock and write nothing more.
        os.kill(child.pid, signal.SIGCONT)
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 1, out + err
    assert "lost the lock" in err, err
    after = files(vault)
    assert visible(after) == visible(before), "the frozen run wrote (or deleted) nothing after thawing"
    # (A lock renewal the heartbeat had under way at the freeze may have left the file store's
    # temporary, which the thawed put removes: its create-only write of a generation that the
    # other run had taken can never land.)
    assert set(after) - set(before) == set(), "not even a temporary was created after thawing"

    # Every committed snapshot verifies and restores exactly; prune then collects A's leftovers.
    restores_exactly(capsys, policy_path, ddb_client, table, f"orders@{frozen_sid}")
    code, out, err = cli(capsys, "--policy", str(policy_path), "prune")
    assert code == 0, out + err
    (manifest,) = list_manifests(FileStore(vault), "orders")
    folder = vault / "orders" / "snapshots" / frozen_sid
    # (each part with its key index; the frozen run's orphan parts and indexes are gone)
    assert all(p.key_index for p in manifest.parts)
    assert {p.name for p in folder.iterdir()} == {"manifest.json"} | {p.name for p in manifest.parts} \
        | {layout.key_index_name(p.name) for p in manifest.parts}
    restores_exactly(capsys, policy_path, ddb_client, table, f"orders@{frozen_sid}")


# ------------------------------------------------------------------------- the backup path only creates


class Guard:
    """Counts every delete and every write that is not create-only made through a FileStore,
    and where it came from: only prune may delete."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.violations: list[tuple[str, str]] = []
        self.prune_deletes = 0
        real_put, real_delete = FileStore.put, FileStore.delete
        self.real_put = real_put
        guard = self

        def put(store: FileStore, key: str, data: Any, *, if_absent: bool = False,
                retain_until: datetime | None = None) -> Any:
            if not if_absent:
                guard.violations.append(("overwriting put", key))
            return real_put(store, key, data, if_absent=if_absent, retain_until=retain_until)

        def delete(store: FileStore, keys: Any) -> None:
            keys = list(keys)
            if keys:
                if _in_prune():
                    guard.prune_deletes += len(keys)
                else:
                    guard.violations.append(("delete", ", ".join(keys)))
            real_delete(store, keys)

        monkeypatch.setattr(FileStore, "put", put)
        monkeypatch.setattr(FileStore, "delete", delete)


def _in_prune() -> bool:
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_filename.endswith(os.path.join("cloudkeep", "prune.py")):
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


class Countdown:
    """A scripted time budget: plenty for ``calls`` checks, then none."""

    def __init__(self, calls: int) -> None:
        self.calls = calls

    def __call__(self) -> float:
        self.calls -= 1
        return 1000.0 if self.calls >= 0 else 0.0


def test_run_tick_workers_and_copies_never_delete_or_overwrite(
    ddb_client: Any, tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = make_table(ddb_client)
    policy_path = write_policy(tmp_path, table, offsite=tmp_path / "offsite")
    policy = load_policy(str(policy_path)).policy
    guard = Guard(monkeypatch)
    vault = FileStore(tmp_path / "vault")

    # run: stopped by its time budget, then resumed past a part a crashed writer left behind.
    first = backup(policy, "orders", options=RunOptions(
        part_size=600, workers=2, checkpoint_every=1, deadline=Deadline(Countdown(3), reserve=1)))
    assert first.status == "unfinished" and first.snapshot_id
    stray = layout.part_key("orders", first.snapshot_id, layout.part_name(0, 40))
    guard.real_put(vault, stray, b"a crashed writer's part", if_absent=True)
    done = backup(policy, "orders", options=RunOptions(part_size=600, workers=2))
    assert done.status == "committed" and done.snapshot_id == first.snapshot_id
    after_backup(policy, done)  # its copy, under the lock
    assert done.copies and done.copies[0]["verified"], done.copies
    assert done.manifest is not None and verify_integrity(vault, done.manifest).ok

    # run --due: three scheduled slots (backup, copies, retention and leftovers by prune).
    start = datetime.now(UTC).replace(minute=5, second=0, microsecond=0)
    for hour in range(3):
        code, out, err = cli(capsys, "--policy", str(policy_path), "run", "--due", "--now",
                             (start + timedelta(hours=hour)).isoformat(), "--part-size", "600")
        assert code == 0, out + err

    # fan-out: the segments as work items, read by in-process workers.
    rows = cli_json(capsys, "--policy", str(policy_path), "run", "orders", "--queue", "inprocess",
                    "--part-size", "600")
    assert rows[0]["status"] == "committed", rows

    assert guard.violations == [], guard.violations
    assert guard.prune_deletes > 0, "the guard saw prune's deletes (it watches the real calls)"
    ids = snapshot_ids(vault, "orders")
    assert stray.rsplit("/", 1)[1] not in {p.name for m in list_manifests(vault, "orders")
                                           for p in m.parts}
    for manifest in list_manifests(vault, "orders"):
        assert verify_integrity(vault, manifest).ok
    assert ids, "snapshots are committed"


# ------------------------------------------------------------------------ copies: tracked, alerted


def test_a_failed_copy_fails_run_raises_one_alert_is_retried_and_recovers(
    ddb_client: Any, tmp_path: Path, capsys: Any
) -> None:
    table = make_table(ddb_client, 60)
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the copy store's folder should be: nothing can be written")
    policy_path = write_policy(tmp_path, table, offsite=blocked / "offsite", schedule="0 2 * * *")
    policy = load_policy(str(policy_path)).policy

    code, out, _ = cli(capsys, "--policy", str(policy_path), "--format", "json", "run", "orders")
    assert code == 1, out
    (row,) = json.loads(out)
    assert row["status"] == "committed", "the backup itself is committed; the copy is what failed"
    assert row["copy_failed"] == ["offsite"] and "offsite" in row["error"], row
    listed = cli_json(capsys, "--policy", str(policy_path), "list", "orders")
    assert [r["snapshot_id"] for r in listed] == [row["snapshot_id"]] and listed[0]["copies"] == []

    channel = MemoryChannel()
    notifier = Notifier([channel])
    slot = datetime(2026, 3, 2, 2, 5, tzinfo=UTC)
    first = tick(policy, slot, notifier=notifier)  # due: a new snapshot, its copy fails too
    assert [r.status for r in first.results] == ["committed"]
    assert not first.ok and {c["snapshot_id"] for c in first.copy_failures} == {
        row["snapshot_id"], first.results[0].snapshot_id}
    assert [(a.status, a.kind) for a in channel.sent] == [("alert", "copy_failed")]
    assert "offsite" in channel.sent[0].message

    second = tick(policy, slot + timedelta(minutes=15), notifier=notifier)  # not due: retried
    assert second.not_due == ["orders"] and second.copy_failures, second.as_dict()
    assert len(channel.sent) == 1, "an alert that stays is not sent again"

    blocked.unlink()  # the copy store works again
    third = tick(policy, slot + timedelta(minutes=30), notifier=notifier)
    assert third.ok and not third.copy_failures
    assert {c["snapshot_id"] for c in third.copies if c.get("verified")} == set(
        snapshot_ids(FileStore(tmp_path / "vault"), "orders"))
    assert [(a.status, a.kind) for a in channel.sent] == [("alert", "copy_failed"),
                                                          ("recovery", "copy_failed")]
    fourth = tick(policy, slot + timedelta(minutes=45), notifier=notifier)
    assert fourth.ok and fourth.copies == [] and len(channel.sent) == 2, "nothing left to copy"
    for sid in snapshot_ids(FileStore(tmp_path / "vault"), "orders"):
        restores_exactly(capsys, policy_path, ddb_client, table, f"orders@{sid}",
                         "--store", "offsite")
