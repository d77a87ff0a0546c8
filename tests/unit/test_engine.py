"""The snapshot engine over our own protocols: an in-memory store and a scripted source."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cloudkeep import layout
from cloudkeep.catalog import list_manifests, snapshot_ids
from cloudkeep.engine import RunOptions, backup, backup_many
from cloudkeep.errors import LockedError, SourceError
from cloudkeep.lock import DatasetLock
from cloudkeep.policy import parse_policy
from cloudkeep.sources.memory import MemorySource, MemoryWorld
from cloudkeep.stores.memory import MemoryStore
from cloudkeep.verify import verify_integrity

POLICY = parse_policy("""
version: 1
stores: {mem: {type: file, path: /unused}}
tiers: {t: {schedule: "0 * * * *", rpo: 2h, retention: {last: 3}}}
datasets:
  a: {source: {type: dynamodb, table: aaa, region: us-east-1}, tier: t, store: mem}
  b: {source: {type: dynamodb, table: bbb, region: us-east-1}, tier: t, store: mem}
""")


class ScriptedSource(MemorySource):
    """The in-memory source (cloudkeep.sources.memory) over a table of ``segments *
    per_segment`` items in pages of 10; can fail after some pages of one segment."""

    def __init__(self, segments: int = 3, per_segment: int = 50, fail_segment: int | None = None,
                 fail_after_pages: int = 0) -> None:
        super().__init__(MemoryWorld(), "aaa", segments=segments, page_size=10)
        self.fill(segments * per_segment)
        self.fail_segment = fail_segment
        self.fail_after_pages = fail_after_pages

    def read_segment_from(self, segment: int, total: int, cursor: dict[str, Any] | None
                          ) -> Iterator[tuple[list[bytes], Any]]:
        pages = super().read_segment_from(segment, total, cursor)
        for page_no, (page, after) in enumerate(pages):
            if segment == self.fail_segment and page_no >= self.fail_after_pages:
                raise SourceError(f"segment {segment} broke")
            yield page, after


def test_backup_commits_manifest_last_with_totals_and_digest() -> None:
    store, source = MemoryStore(), ScriptedSource()
    result = backup(POLICY, "a", store=store, source=source, options=RunOptions(part_size=200))
    manifest = result.manifest
    assert result.status == "committed" and manifest is not None
    assert manifest.totals.items == 150
    assert manifest.totals.parts == len(manifest.parts) > 3
    assert (manifest.totals.items, manifest.content_digest.value) == source.scan_digest("aaa")
    assert snapshot_ids(store, "a") == [manifest.snapshot_id]
    assert DatasetLock(store, "a", "probe").holder() is None, "the lock is released"
    assert verify_integrity(store, manifest).ok


def test_a_failing_segment_leaves_nothing_visible_deletes_nothing_and_is_resumed() -> None:
    store = MemoryStore()
    first = backup(POLICY, "a", store=store, source=ScriptedSource())
    before = set(store.objects)
    with pytest.raises(SourceError, match="segment 1 broke"):
        backup(POLICY, "a", store=store, options=RunOptions(part_size=100),
               source=ScriptedSource(fail_segment=1, fail_after_pages=2))
    assert snapshot_ids(store, "a") == [first.snapshot_id]
    assert before <= set(store.objects), "a failing run deletes nothing (only prune deletes)"
    assert DatasetLock(store, "a", "probe").holder() is None
    # The next run resumes the unfinished snapshot and commits it, parts past the failed ones.
    again = backup(POLICY, "a", store=store, source=ScriptedSource(),
                   options=RunOptions(part_size=100))
    assert again.status == "committed" and again.manifest is not None
    assert again.snapshot_id != first.snapshot_id
    assert verify_integrity(store, again.manifest).ok


def test_an_existing_snapshot_id_is_not_taken_twice() -> None:
    store = MemoryStore()
    sid = "20260101T020000Z-abcdef"
    one = backup(POLICY, "a", store=store, source=ScriptedSource(), snapshot_id=sid, trigger="schedule")
    two = backup(POLICY, "a", store=store, source=ScriptedSource(), snapshot_id=sid, trigger="schedule")
    assert (one.status, two.status) == ("committed", "exists")
    assert two.manifest == one.manifest
    assert snapshot_ids(store, "a") == [sid]


def test_a_held_lock_refuses_a_second_run() -> None:
    store = MemoryStore()
    with DatasetLock(store, "a", "other-run"):
        with pytest.raises(LockedError, match="other-run"):
            backup(POLICY, "a", store=store, source=ScriptedSource())
    assert backup(POLICY, "a", store=store, source=ScriptedSource()).status == "committed"


def test_an_expired_lock_is_taken_over() -> None:
    store = MemoryStore()
    stale = {"run_id": "crashed", "state": "held",
             "expires_at": (datetime.now(UTC) - timedelta(seconds=1)).isoformat()}
    store.put(layout.generation_key(layout.lock_prefix("a"), 7), json.dumps(stale).encode())
    # The previous release's lock object is stale: never honoured.
    store.put(layout.lock_key("a"), json.dumps(stale | {"expires_at": "2999-01-01T00:00:00+00:00"}).encode())
    assert backup(POLICY, "a", store=store, source=ScriptedSource()).status == "committed"
    gens = sorted(k for k in store.objects if k.startswith(layout.lock_prefix("a")))
    assert gens[0] == layout.generation_key(layout.lock_prefix("a"), 7), "nothing deleted"
    assert json.loads(store.get(gens[-1]))["state"] == "released"


def test_only_one_of_many_concurrent_lockers_wins() -> None:
    store = MemoryStore()
    wins: list[str] = []
    barrier = threading.Barrier(8)

    def attempt(i: int) -> None:
        barrier.wait()
        try:
            DatasetLock(store, "a", f"run-{i}").acquire()
            wins.append(f"run-{i}")
        except LockedError:
            pass

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    holder = DatasetLock(store, "a", "probe").holder()
    assert holder is not None and holder["run_id"] == wins[0]


def test_one_failing_dataset_does_not_stop_the_others() -> None:
    store = MemoryStore()
    sources = {"a": ScriptedSource(fail_segment=0), "b": ScriptedSource()}
    results = backup_many(POLICY, ["a", "b"], store=store, source_for=sources.__getitem__)
    assert [r.status for r in results] == ["failed", "committed"]
    assert results[0].error == "segment 0 broke" and results[0].exit_code == 1
    assert list_manifests(store, "a") == []
    assert [m.totals.items for m in list_manifests(store, "b")] == [150]
