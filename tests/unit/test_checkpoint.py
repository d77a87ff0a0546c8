"""Checkpoints, resume, the time budget and in-process fan-out, over our own protocols: an
in-memory store and the in-memory source (cloudkeep.sources.memory; cursor = the last key read)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from cloudkeep import checkpoint, layout
from cloudkeep.catalog import snapshot_ids
from cloudkeep.checkpoint import Deadline
from cloudkeep.codec import iter_lines
from cloudkeep.engine import RunOptions, backup
from cloudkeep.fanout import WorkItem, WorkItemError, drain, run_work_item
from cloudkeep.lock import DatasetLock
from cloudkeep.manifest import Manifest
from cloudkeep.policy import parse_policy
from cloudkeep.prune import prune
from cloudkeep.queues.inprocess import InProcessQueue
from cloudkeep.sources.memory import MemorySource, MemoryWorld
from cloudkeep.stores.memory import MemoryStore
from cloudkeep.verify import verify_integrity

POLICY = parse_policy("""
version: 1
stores: {mem: {type: file, path: /unused}}
tiers: {t: {schedule: "0 * * * *", rpo: 2h, retention: {last: 3}}}
datasets:
  a: {source: {type: dynamodb, table: aaa, region: us-east-1}, tier: t, store: mem}
""")


class ResumableSource(MemorySource):
    """The in-memory source (cloudkeep.sources.memory) over ``segments * per_segment`` items in
    pages of 10 (its cursor: the last key read). Every instance of the same size holds the same
    items. ``reads`` counts the lines handed out, so a test can see that a resume re-reads
    nothing; ``resumed_at`` the cursors it resumed from."""

    def __init__(self, segments: int = 3, per_segment: int = 200) -> None:
        super().__init__(MemoryWorld(), "aaa", segments=segments, page_size=10)
        self.fill(segments * per_segment)
        self.per_segment = per_segment
        self.reads = 0
        self.resumed_at: list[tuple[int, Any]] = []

    def read_segment_from(self, segment: int, total: int,
                          cursor: Any) -> Iterator[tuple[list[bytes], Any]]:
        if cursor:
            self.resumed_at.append((segment, cursor))
        for page, after in super().read_segment_from(segment, total, cursor):
            self.reads += len(page)
            yield page, after

    def expected(self) -> tuple[int, str]:
        return self.scan_digest(self.table)


def stored_lines(store: MemoryStore, manifest: Manifest) -> list[bytes]:
    import io

    out: list[bytes] = []
    for part in manifest.parts:
        key = layout.part_key(manifest.dataset, manifest.snapshot_id, part.name)
        out.extend(iter_lines(io.BytesIO(store.get(key))))
    return out


def assert_exact(store: MemoryStore, manifest: Manifest, source: ResumableSource) -> None:
    lines = stored_lines(store, manifest)
    assert len(lines) == len(set(lines)) == source.segments * source.per_segment
    assert (manifest.totals.items, manifest.content_digest.value) == source.expected()
    assert verify_integrity(store, manifest).ok


class Countdown:
    """A scripted clock: plenty of time for ``calls`` checks, then none."""

    def __init__(self, calls: int) -> None:
        self.calls = calls

    def __call__(self) -> float:
        self.calls -= 1
        return 1000.0 if self.calls >= 0 else 0.0


# A part is about 10 lines (one page) of ~80 bytes: close a part at every page.
SMALL = RunOptions(part_size=500, checkpoint_every=2, workers=2)


def opts(**kw: Any) -> RunOptions:
    return RunOptions(**{**vars(SMALL), **kw})


def test_a_run_out_of_budget_stops_after_its_part_and_the_next_run_resumes_it() -> None:
    store, source = MemoryStore(), ResumableSource()
    first = backup(POLICY, "a", store=store, source=source,
                   options=opts(deadline=Deadline(Countdown(4), reserve=1.0)))
    assert first.status == "unfinished" and first.segments == 3
    assert snapshot_ids(store, "a") == [], "nothing visible before the manifest"
    assert DatasetLock(store, "a", "probe").holder() is None, "the lock is released for the next run"
    saved = [checkpoint.load_segment(store, "a", first.snapshot_id or "", s) for s in range(3)]
    assert any(r is not None and r.parts and not r.done for r in saved)
    reads_before = source.reads

    rounds = 1
    result = first
    while result.status == "unfinished":
        result = backup(POLICY, "a", store=store, source=source,
                        options=opts(deadline=Deadline(Countdown(6), reserve=1.0)))
        assert result.snapshot_id == first.snapshot_id, "a manual run resumes the unfinished one"
        rounds += 1
        assert rounds < 50
    assert result.status == "committed" and result.manifest is not None
    assert rounds > 2
    assert source.resumed_at, "segments resumed from their cursors"
    # Resuming re-reads at most the pages after each segment's last checkpoint, not everything.
    assert source.reads - reads_before < 3 * 200
    assert_exact(store, result.manifest, source)
    assert list(store.list(layout.checkpoints_prefix("a", first.snapshot_id or ""))), \
        "checkpoints stay after the commit (the backup path never deletes)"
    prune(POLICY, "a", datetime.now(UTC), store=store)
    assert list(store.list(layout.checkpoints_prefix("a", first.snapshot_id or ""))) == [], \
        "prune removes the checkpoints of a committed snapshot"
    assert_exact(store, result.manifest, source)


def test_parts_written_after_the_last_checkpoint_are_skipped_on_resume_and_pruned() -> None:
    store, source = MemoryStore(), ResumableSource(segments=1, per_segment=100)
    first = backup(POLICY, "a", store=store, source=source,
                   options=opts(checkpoint_every=3, deadline=Deadline(Countdown(3), reserve=1.0)))
    sid = first.snapshot_id or ""
    record = checkpoint.load_segment(store, "a", sid, 0)
    assert record is not None and not record.done
    # A crashed writer left two parts the checkpoint does not know (one with other content).
    for index in (record.next_index, record.next_index + 1):
        store.put(layout.part_key("a", sid, layout.part_name(0, index)), b"garbage")
    strays = {layout.part_name(0, i) for i in (record.next_index, record.next_index + 1)}
    result = backup(POLICY, "a", store=store, source=source, options=opts())
    assert result.status == "committed" and result.manifest is not None
    assert_exact(store, result.manifest, source)
    names = [p.name for p in result.manifest.parts]
    assert not strays & set(names), "taken part names are never reused"
    assert [p.index for p in result.manifest.parts][record.next_index] == record.next_index + 2, \
        "the resumed segment continues past the taken indexes (a gap in the manifest)"
    assert store.get(layout.part_key("a", sid, sorted(strays)[0])) == b"garbage", "never overwritten"
    prune(POLICY, "a", datetime.now(UTC), store=store)
    assert not [k for k in store.objects if any(k.endswith(s) for s in strays)], \
        "prune removes the parts the manifest does not reference"
    assert_exact(store, result.manifest, source)


def test_a_failing_resumed_run_deletes_nothing_and_prune_collects_after_the_commit() -> None:
    store, source = MemoryStore(), ResumableSource(segments=2)
    first = backup(POLICY, "a", store=store, source=source,
                   options=opts(deadline=Deadline(Countdown(2), reserve=1.0)))

    class Broken(ResumableSource):
        def read_segment_from(self, segment: int, total: int, cursor: Any
                              ) -> Iterator[tuple[list[bytes], Any]]:
            raise RuntimeError("boom")

    before = set(store.objects)
    with pytest.raises(RuntimeError, match="boom"):
        backup(POLICY, "a", store=store, source=Broken(segments=2), options=opts())
    assert before <= set(store.objects), "the backup path never deletes"
    result = backup(POLICY, "a", store=store, source=ResumableSource(segments=2), options=opts())
    assert result.status == "committed" and result.snapshot_id == first.snapshot_id
    prune(POLICY, "a", datetime.now(UTC), store=store)
    assert result.manifest is not None
    left = {k for k in store.objects if k.startswith(f"a/snapshots/{first.snapshot_id}/")}
    assert left == {layout.manifest_key("a", first.snapshot_id or "")} | {
        layout.part_key("a", first.snapshot_id or "", p.name) for p in result.manifest.parts}


def test_many_work_items_with_duplicate_deliveries_commit_one_correct_snapshot() -> None:
    store, source = MemoryStore(), ResumableSource(segments=6, per_segment=120)
    queue = InProcessQueue()
    dispatched = backup(POLICY, "a", store=store, source=source, options=opts(queue=queue))
    assert dispatched.status == "unfinished" and dispatched.dispatched == 6 and len(queue) == 6
    assert snapshot_ids(store, "a") == []
    # Every item delivered three times.
    items = [d.body for d in queue.receive(100)]
    queue.send(items * 3)
    outcomes = drain(POLICY, queue, workers=4, store_for=lambda _: store,
                     source_for=lambda _: source)
    statuses = [o.status for o in outcomes]
    # exactly one commit wins, however the workers interleave (a lost race is its own status)
    assert statuses.count("committed") == 1, statuses
    assert set(statuses) <= {"committed", "committed-by-other", "segment-done", "already-done",
                             "exists", "busy"}
    assert snapshot_ids(store, "a") == [dispatched.snapshot_id]
    manifest = next(o.manifest for o in outcomes if o.manifest is not None)
    assert_exact(store, manifest, source)
    # A late redelivery after the commit changes nothing.
    late = run_work_item(POLICY, WorkItem.parse(items[0]), store=store, source=source)
    assert late.status == "exists"
    assert snapshot_ids(store, "a") == [dispatched.snapshot_id]


def test_a_worker_out_of_time_hands_its_segment_back_to_the_queue() -> None:
    store, source = MemoryStore(), ResumableSource(segments=2, per_segment=200)
    queue = InProcessQueue()
    dispatched = backup(POLICY, "a", store=store, source=source, options=opts(queue=queue))
    sid = dispatched.snapshot_id or ""
    item = WorkItem.parse(queue.receive(1)[0].body)
    outcome = run_work_item(POLICY, item, store=store, source=source, queue=queue,
                            deadline=Deadline(Countdown(2), reserve=1.0), options=opts())
    assert outcome.status == "requeued" and len(queue) == 2  # its own item is back, and the other
    record = checkpoint.load_segment(store, "a", sid, item.segment)
    assert record is not None and record.parts and not record.done
    outcomes = drain(POLICY, queue, workers=2, store_for=lambda _: store, source_for=lambda _: source)
    statuses = sorted(o.status for o in outcomes)
    # However the two workers interleave, exactly one commit wins; the other finished its
    # segment before (segment-done) or lost the create-only race (committed-by-other).
    assert statuses.count("committed") == 1, statuses
    assert set(statuses) <= {"committed", "segment-done", "committed-by-other"}, statuses
    manifest = next(o.manifest for o in outcomes if o.status == "committed")
    assert manifest is not None
    assert all(o.manifest == manifest for o in outcomes if o.manifest is not None)
    assert_exact(store, manifest, source)


def test_a_worker_that_loses_the_commit_race_reports_committed_by_other() -> None:
    """Every segment done, and another worker's commit lands just before this worker's
    create-only manifest write: this worker gets the winner's manifest back and says so. The race
    is staged by the store (the rival commits inside the write), not left to timing."""
    from cloudkeep.fanout import try_commit

    class RacingStore(MemoryStore):
        rival: Any = None

        def put(self, key: str, data: Any, **kwargs: Any) -> Any:
            if key.endswith("/" + layout.MANIFEST_NAME) and self.rival is not None:
                rival, self.rival = self.rival, None
                rival()
            return super().put(key, data, **kwargs)

    store, source = RacingStore(), ResumableSource(segments=2, per_segment=50)
    queue = InProcessQueue()
    sid = backup(POLICY, "a", store=store, source=source, options=opts(queue=queue)).snapshot_id or ""
    items = [WorkItem.parse(m.body) for m in queue.receive(2)]
    first = run_work_item(POLICY, items[0], store=store, source=source, options=opts())
    assert first.status == "segment-done"
    state = checkpoint.load_run_state(store, "a", sid)
    assert state is not None
    won: list[Any] = []
    store.rival = lambda: won.append(try_commit(POLICY, store, state, "rival-worker"))
    second = run_work_item(POLICY, items[1], store=store, source=source, options=opts())
    assert won and won[0] is not None and won[0].run_id == "rival-worker"
    assert second.status == "committed-by-other"
    assert second.manifest is not None and second.manifest.run_id == "rival-worker"
    assert_exact(store, second.manifest, source)
    assert run_work_item(POLICY, items[0], store=store, source=source).status == "exists"


def test_a_duplicate_while_the_segment_is_leased_is_dropped() -> None:
    store, source = MemoryStore(), ResumableSource(segments=1)
    queue = InProcessQueue()
    sid = backup(POLICY, "a", store=store, source=source, options=opts(queue=queue)).snapshot_id or ""
    item = WorkItem.parse(queue.receive(1)[0].body)
    with DatasetLock(store, "a", "other-worker", prefix=layout.segment_lease_prefix("a", sid, 0)):
        busy = run_work_item(POLICY, item, store=store, source=source, options=opts())
    assert busy.status == "busy"
    assert checkpoint.load_segment(store, "a", sid, 0) is None, "the duplicate wrote nothing"
    done = run_work_item(POLICY, item, store=store, source=source, options=opts())
    assert done.status == "committed"


def test_a_work_item_of_an_abandoned_snapshot_is_stale_and_garbage_is_refused() -> None:
    store, source = MemoryStore(), ResumableSource(segments=1)
    item = WorkItem("a", "20260101T000000Z-abcdef", 0)
    assert run_work_item(POLICY, item, store=store, source=source).status == "stale"
    for bad in ("not json", {"kind": "other"}, {"kind": "cloudkeep.segment", "dataset": "a"}):
        with pytest.raises(WorkItemError):
            WorkItem.parse(bad)


def test_the_tick_finishes_an_unfinished_scheduled_snapshot_before_a_new_slot() -> None:
    from datetime import UTC, datetime, timedelta

    from cloudkeep.runtime import tick

    store, source = MemoryStore(), ResumableSource()
    first_now = datetime(2026, 1, 1, 0, 5, tzinfo=UTC)

    def one(now: datetime) -> Any:
        outcome = tick(POLICY, now, store_for=lambda _: store, source_for=lambda _: source,
                       options=opts(deadline=Deadline(Countdown(3), reserve=1.0)))
        [result] = outcome.results
        return result

    started = one(first_now)
    assert started.status == "unfinished" and started.snapshot_id
    results = [started]
    for hour in range(1, 60):  # later ticks, past the next slots
        results.append(one(first_now + timedelta(hours=hour)))
        if results[-1].status == "committed":
            break
    assert results[-1].status == "committed"
    assert {r.snapshot_id for r in results} == {started.snapshot_id}, "the same snapshot, resumed"
    assert snapshot_ids(store, "a") == [started.snapshot_id]
    assert_exact(store, results[-1].manifest, source)


def test_a_plan_that_cannot_be_followed_is_abandoned_not_deleted_and_pruned() -> None:
    store = MemoryStore()
    first = backup(POLICY, "a", store=store, source=ResumableSource(),
                   options=opts(deadline=Deadline(Countdown(3), reserve=1.0)))
    assert first.status == "unfinished" and first.snapshot_id
    before = set(store.objects)

    class Resplit(ResumableSource):
        """The source now splits differently and cannot follow the recorded plan."""

        resume_plan = None  # type: ignore[assignment]

    result = backup(POLICY, "a", store=store, source=Resplit(segments=2), options=opts())
    assert result.status == "committed" and result.snapshot_id != first.snapshot_id
    assert (result.snapshot_id or "")[:16] == first.snapshot_id[:16], "the same time, a new id"
    assert before <= set(store.objects), "nothing of the old attempt was deleted"
    assert checkpoint.is_abandoned(store, "a", first.snapshot_id)
    assert checkpoint.unfinished_snapshots(store, "a") == []
    report = prune(POLICY, "a", datetime.now(UTC), store=store)
    assert report.orphans == [first.snapshot_id]
    assert not [k for k in store.objects if first.snapshot_id in k]
    assert snapshot_ids(store, "a") == [result.snapshot_id]
