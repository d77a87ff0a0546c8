"""The file store never leaves its root (issue #17.8): symbolic links planted anywhere under it
are never followed — not by put, open, get, stat, list or delete — and ``prune`` leaves the
files outside the store intact."""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cloudkeep import clock, layout
from cloudkeep.catalog import snapshot_ids
from cloudkeep.engine import backup
from cloudkeep.errors import ObjectExistsError, ObjectNotFoundError, StoreError
from cloudkeep.policy import parse_policy
from cloudkeep.stores.file import FileStore
from helpers import cli
from test_engine import ScriptedSource


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """Precious files outside the store."""
    folder = tmp_path / "outside"
    (folder / "deep").mkdir(parents=True)
    (folder / "precious.txt").write_text("do not delete")
    (folder / "deep" / "also.txt").write_text("nor this")
    return folder


def snapshot_of(outside: Path) -> dict[str, str]:
    return {str(p.relative_to(outside)): p.read_text() for p in sorted(outside.rglob("*")) if p.is_file()}


def test_open_get_and_stat_refuse_a_linked_file(tmp_path: Path, outside: Path) -> None:
    store = FileStore(tmp_path / "vault")
    store.put("ds/real.json", b"{}")
    os.symlink(outside / "precious.txt", tmp_path / "vault" / "ds" / "link.json")
    with pytest.raises(StoreError, match="symbolic link"):
        store.open("ds/link.json")
    with pytest.raises(StoreError, match="symbolic link"):
        store.get("ds/link.json")
    assert store.stat("ds/link.json") is None
    assert store.stat("ds/real.json") is not None


def test_nothing_is_read_through_a_linked_folder(tmp_path: Path, outside: Path) -> None:
    store = FileStore(tmp_path / "vault")
    store.put("ds/real.json", b"{}")
    os.symlink(outside, tmp_path / "vault" / "ds" / "linked")
    os.symlink(outside, tmp_path / "vault" / "other")
    with pytest.raises(ObjectNotFoundError):
        store.open("ds/linked/precious.txt")
    assert store.stat("ds/linked/precious.txt") is None
    assert store.stat("other/deep/also.txt") is None
    assert [i.key for i in store.list("")] == ["ds/real.json"]
    assert [i.key for i in store.list("ds/")] == ["ds/real.json"]
    assert list(store.list("ds/linked/")) == []
    assert list(store.list("other/")) == []


def test_list_neither_reports_links_nor_descends_into_linked_folders(tmp_path: Path, outside: Path) -> None:
    store = FileStore(tmp_path / "vault")
    for key in ("a/snapshots/1/part-0", "a/snapshots/1/manifest.json", "a/z"):
        store.put(key, b"x")
    root = tmp_path / "vault"
    os.symlink(outside / "precious.txt", root / "a" / "snapshots" / "1" / "part-1")
    os.symlink(outside, root / "a" / "snapshots" / "2")
    os.symlink(root / "a" / "z", root / "a" / "inside-link")  # even a link inside the root
    keys = [i.key for i in store.list("a/")]
    assert keys == ["a/snapshots/1/manifest.json", "a/snapshots/1/part-0", "a/z"]


def test_put_never_writes_through_a_link(tmp_path: Path, outside: Path) -> None:
    store = FileStore(tmp_path / "vault")
    store.put("ds/x", b"x")
    root = tmp_path / "vault"
    os.symlink(outside / "precious.txt", root / "ds" / "file-link")
    os.symlink(outside, root / "ds" / "dir-link")
    with pytest.raises(ObjectExistsError):  # create-only: the name is taken (by the link)
        store.put("ds/file-link", b"overwritten", if_absent=True)
    store.put("ds/file-link", b"replaced")  # a plain put replaces the link itself
    assert store.get("ds/file-link") == b"replaced" and not (root / "ds" / "file-link").is_symlink()
    with pytest.raises(StoreError, match="symbolic link"):
        store.put("ds/dir-link/new.txt", b"x")
    with pytest.raises(StoreError, match="symbolic link"):
        store.put("ds/dir-link/precious.txt", b"x", if_absent=True)
    assert snapshot_of(outside) == {"deep/also.txt": "nor this", "precious.txt": "do not delete"}
    assert sorted(os.listdir(outside)) == ["deep", "precious.txt"]  # no temporary files either


def test_delete_removes_at_most_the_link(tmp_path: Path, outside: Path) -> None:
    store = FileStore(tmp_path / "vault")
    store.put("ds/snap/x", b"x")
    root = tmp_path / "vault"
    os.symlink(outside / "precious.txt", root / "ds" / "snap" / "part")
    os.symlink(outside, root / "ds" / "linked")
    store.delete(["ds/snap/part", "ds/linked/precious.txt", "ds/linked/deep/also.txt"])
    assert not (root / "ds" / "snap" / "part").is_symlink()
    assert (root / "ds" / "linked").is_symlink()  # not walked through, not removed
    store.delete(["ds/linked"])  # the link itself, as a key: removed, not its target
    assert not (root / "ds" / "linked").exists() and outside.is_dir()
    assert snapshot_of(outside) == {"deep/also.txt": "nor this", "precious.txt": "do not delete"}


def test_a_fifo_under_the_root_is_refused_without_blocking(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "vault")
    store.put("ds/x", b"x")
    os.mkfifo(tmp_path / "vault" / "ds" / "fifo")
    outcome: list[Any] = []

    def read() -> None:
        try:
            store.open("ds/fifo")
        except StoreError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    thread.join(60)  # a generous bound: a blocking open never returns at all
    assert not thread.is_alive(), "open() of a FIFO blocked"
    assert outcome and "not a regular file" in str(outcome[0])
    assert store.stat("ds/fifo") is None and [i.key for i in store.list("ds/")] == ["ds/x"]


def test_the_root_may_itself_be_a_link(tmp_path: Path) -> None:
    real = tmp_path / "disk"
    real.mkdir()
    os.symlink(real, tmp_path / "vault")
    store = FileStore(tmp_path / "vault")
    store.put("ds/x", b"x", if_absent=True)
    assert store.get("ds/x") == b"x" and (real / "ds" / "x").is_file()
    assert [i.key for i in store.list("ds/")] == ["ds/x"]
    store.delete(["ds/x"])
    assert not (real / "ds").exists() and real.is_dir()  # empty folders pruned, never the root


POLICY = """
version: 1
stores: {{vault: {{type: file, path: {root}}}}}
tiers: {{t: {{schedule: "0 * * * *", rpo: 2h, retention: {{last: 1}}}}}}
datasets:
  a: {{source: {{type: dynamodb, table: aaa, region: us-east-1}}, tier: t, store: vault}}
  b: {{source: {{type: dynamodb, table: bbb, region: us-east-1}}, tier: t, store: vault}}
"""


def test_prune_leaves_files_outside_the_store_intact(tmp_path: Path, outside: Path, capsys: Any) -> None:
    root = tmp_path / "vault"
    policy_file = tmp_path / "cloudkeep.yaml"
    policy_file.write_text(POLICY.format(root=root))
    policy = parse_policy(policy_file.read_text())
    store = FileStore(root)
    ids = []
    for i in range(3):
        at = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=i)
        sid = layout.snapshot_id_for(at, f"{i:06x}")
        with clock.simulated(at):  # captured at its id's time (retention goes by capture time)
            backup(policy, "a", store=store, source=ScriptedSource(), snapshot_id=sid)
        ids.append(sid)
    # links planted under the dataset's folder, pointing outside the store:
    old = root / "a" / "snapshots" / ids[0]
    part = sorted(p for p in old.iterdir() if p.name.startswith("part-"))[0]
    part.unlink()
    os.symlink(outside / "precious.txt", part)  # a part of a snapshot prune removes
    os.symlink(outside, old / "deep")  # a folder inside a snapshot prune removes
    os.symlink(outside, root / "a" / "snapshots" / "20260101T090000Z-linked")  # a fake snapshot
    os.symlink(outside, root / "b")  # a whole dataset folder
    (root / "a" / "verifications").mkdir()
    os.symlink(outside, root / "a" / "verifications" / ids[0])  # a removed snapshot's records
    os.symlink(outside, root / "a" / "verifications" / ids[1])
    code, out, err = cli(capsys, "--policy", str(policy_file), "prune", "--now", "2026-01-02T00:00:00Z")
    assert code in (0, 1), err
    assert "Traceback" not in err
    assert snapshot_of(outside) == {"deep/also.txt": "nor this", "precious.txt": "do not delete"}
    assert snapshot_ids(store, "a") == [ids[2]]
    # what the store held of the removed snapshots is gone; links are not objects of the store
    assert [i.key for i in store.list(f"a/snapshots/{ids[0]}/")] == []
