"""Native jobs spanning invocations (cloudkeep.jobs), with the in-memory native-job source (our
own protocol ``sources.NativeJobSource``, cloudkeep.sources.memory) and the in-memory store: start → pending, poll → pending / failed,
finish → committed; the scheduled tick continues a pending job instead of starting another."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from cloudkeep import layout
from cloudkeep.catalog import snapshot_ids
from cloudkeep.engine import RunOptions, backup
from cloudkeep.jobs import pending_jobs, read_job
from cloudkeep.policy import parse_policy
from cloudkeep.prune import prune
from cloudkeep.runtime import tick
from cloudkeep.sources import NativeJobSource
from cloudkeep.sources.memory import MemoryNativeSource, MemoryWorld
from cloudkeep.stores.memory import MemoryStore

POLICY = """
version: 1
stores: {vault: {type: file, path: /nonexistent}}
tiers:
  daily: {schedule: "0 2 * * *", rpo: 26h, retention: {last: 1}}
datasets:
  orders: {source: {type: dynamodb, table: orders, region: us-east-1, method: native}, tier: daily, store: vault}
"""


class ScriptedJobs(MemoryNativeSource):
    """The in-memory native-job source (cloudkeep.sources.memory): each job copies the table into
    a native backup; its polls report the scripted states, one per poll (then ``done``)."""

    def __init__(self, script: list[str]) -> None:
        super().__init__(MemoryWorld(), "orders", script=script)
        self.fill(5)


def _policy() -> Any:
    return parse_policy(POLICY)


def test_scripted_source_satisfies_the_protocol() -> None:
    assert isinstance(ScriptedJobs([]), NativeJobSource)


def test_a_job_spans_invocations_started_polling_finished() -> None:
    store, source, policy = MemoryStore(), ScriptedJobs(["running", "running", "done"]), _policy()

    first = backup(policy, "orders", store=store, source=source)  # type: ignore[arg-type]
    assert first.status == "pending" and first.snapshot_id
    sid = first.snapshot_id
    record = read_job(store, "orders", sid)
    assert record is not None and record["state"] == "started" and record["polls"] == 0
    assert source.polls == 0, "starting a job must not wait for it"
    assert snapshot_ids(store, "orders") == []

    second = backup(policy, "orders", store=store, source=source)  # type: ignore[arg-type]
    assert (second.status, second.snapshot_id) == ("pending", sid), "an on-demand run continues the job"
    record = read_job(store, "orders", sid)
    assert record is not None and record["state"] == "polling" and record["polls"] == 1
    assert second.as_dict()["job"]["state"] == "polling"

    assert backup(policy, "orders", store=store, source=source).status == "pending"  # type: ignore[arg-type]
    done = backup(policy, "orders", store=store, source=source)  # type: ignore[arg-type]
    assert done.status == "committed" and done.snapshot_id == sid and done.manifest is not None
    native = done.manifest.native or {}
    assert native["kind"] == "memory-backup" and native["backup_id"] in source.world.backups
    assert native["backup_id"].startswith(f"orders.{sid}.") and native["items"] == 5
    assert done.manifest.consistency.mode == "point-in-time"
    assert done.manifest.method == "native" and done.manifest.parts == []
    assert source.started == [sid], "one job only"
    record = read_job(store, "orders", sid)
    assert record is not None and record["state"] == "finished"
    assert snapshot_ids(store, "orders") == [sid]
    assert pending_jobs(store, "orders") == []
    # The next on-demand run starts a new job.
    assert backup(policy, "orders", store=store, source=source).snapshot_id != sid  # type: ignore[arg-type]
    assert len(source.started) == 2


def test_wait_polls_in_process_until_done() -> None:
    store, source = MemoryStore(), ScriptedJobs(["running", "running", "done"])
    result = backup(_policy(), "orders", store=store, source=source,  # type: ignore[arg-type]
                    options=RunOptions(wait=60, poll_interval=0))
    assert result.status == "committed" and source.polls == 3


def test_a_failed_job_is_reported_then_started_afresh() -> None:
    store, source, policy = MemoryStore(), ScriptedJobs(["failed"]), _policy()
    sid = backup(policy, "orders", store=store, source=source).snapshot_id  # type: ignore[arg-type]
    failed = backup(policy, "orders", store=store, source=source, snapshot_id=sid)  # type: ignore[arg-type]
    assert failed.status == "failed" and failed.exit_code == 1
    assert failed.error and "the memory backup failed (scripted)" in failed.error
    record = read_job(store, "orders", str(sid))
    assert record is not None and record["state"] == "failed" and record["attempt"] == 1
    again = backup(policy, "orders", store=store, source=source, snapshot_id=sid)  # type: ignore[arg-type]
    assert again.status == "pending" and source.started == [sid, sid]
    record = read_job(store, "orders", str(sid))
    assert record is not None and record["state"] == "started" and record["attempt"] == 2


def test_the_tick_continues_a_pending_job_before_starting_another() -> None:
    store, source, policy = MemoryStore(), ScriptedJobs(["running", "done"]), _policy()

    def run(now: str) -> Any:
        return tick(policy, datetime.fromisoformat(now), store_for=lambda _: store,
                    source_for=lambda _: source)  # type: ignore[arg-type,return-value]

    first = run("2026-01-01T03:00:00+00:00")  # due: the 02:00 slot
    assert [r.status for r in first.results] == ["pending"]
    sid = first.results[0].snapshot_id
    assert sid and sid.startswith("20260101T020000Z-")
    # A day later a new slot is due — the pending job is continued instead of a new one started.
    second = run("2026-01-02T03:00:00+00:00")
    assert [(r.status, r.snapshot_id) for r in second.results] == [("pending", sid)]
    third = run("2026-01-02T03:15:00+00:00")
    assert [(r.status, r.snapshot_id) for r in third.results] == [("committed", sid)]
    assert third.results[0].manifest is not None and third.results[0].manifest.trigger == "schedule"
    assert source.started == [sid]
    # Then the day-2 slot is still due and starts its own job.
    fourth = run("2026-01-02T03:30:00+00:00")
    assert fourth.results[0].status == "pending" and fourth.results[0].snapshot_id != sid
    assert len(source.started) == 2


def test_prune_keeps_a_running_exports_folder_and_deletes_recorded_backups() -> None:
    store, policy = MemoryStore(), _policy()
    source = ScriptedJobs([])
    old = backup(policy, "orders", store=store, source=source,  # type: ignore[arg-type]
                 snapshot_id="20260101T020000Z-aaaa", options=RunOptions(wait=10, poll_interval=0))
    new = backup(policy, "orders", store=store, source=source,  # type: ignore[arg-type]
                 snapshot_id="20260102T020000Z-bbbb", options=RunOptions(wait=10, poll_interval=0))
    assert old.status == new.status == "committed"
    # A job still running has files in its snapshot folder (an export in progress).
    running = backup(policy, "orders", store=store, source=ScriptedJobs(["running"]))  # type: ignore[arg-type]
    assert running.status == "pending" and running.snapshot_id
    store.put(layout.part_key("orders", running.snapshot_id, "export/data/0.json.gz"), b"x")

    report = prune(policy, "orders", datetime(2030, 1, 1, tzinfo=UTC), store=store, source=source)
    assert report.removed == [old.snapshot_id]
    assert old.manifest is not None and new.manifest is not None
    old_backup = (old.manifest.native or {})["backup_id"]
    assert report.native_deleted == [old_backup]
    assert set(source.world.backups) == {(new.manifest.native or {})["backup_id"]}
    assert read_job(store, "orders", str(old.snapshot_id)) is None
    assert store.stat(layout.part_key("orders", running.snapshot_id, "export/data/0.json.gz")) is not None, \
        "the folder of a running job is not an orphan"
    assert (read_job(store, "orders", running.snapshot_id) or {})["state"] == "started"


def test_gzip_parts_multi_member_and_truncated() -> None:
    """DynamoDB's export files are gzip (possibly several members); a cut file is reported."""
    import gzip
    import io

    import pytest

    from cloudkeep.codec import TruncatedPartError, iter_part_lines

    body = gzip.compress(b'{"Item":{"a":{"S":"1"}}}\n{"Item":{"a":{"S":"2"}}}\n') + gzip.compress(b'{"Item":{}}\n')
    lines = list(iter_part_lines(io.BytesIO(body), "gzip"))
    assert lines == [b'{"Item":{"a":{"S":"1"}}}', b'{"Item":{"a":{"S":"2"}}}', b'{"Item":{}}']
    assert list(iter_part_lines(io.BytesIO(b""), "gzip")) == []
    with pytest.raises(TruncatedPartError):
        list(iter_part_lines(io.BytesIO(body[:-12]), "gzip"))
    with pytest.raises(TruncatedPartError):
        list(iter_part_lines(io.BytesIO(b"not gzip at all"), "gzip"))


class CreateOnly(MemoryStore):
    """A memory store that refuses deletes and overwriting writes (the backup identity)."""

    def put(self, key: str, data: Any, *, if_absent: bool = False, retain_until: Any = None) -> Any:
        assert if_absent, f"an overwriting write of {key}"
        return super().put(key, data, if_absent=if_absent, retain_until=retain_until)

    def delete(self, keys: Any) -> None:
        keys = list(keys)
        assert not keys, f"a delete of {keys}"


def test_job_steps_only_create_and_a_stale_step_is_refused() -> None:
    from cloudkeep.errors import ObjectExistsError
    from cloudkeep.jobs import _write, read_job_entry

    store, policy = CreateOnly(), _policy()
    source = ScriptedJobs(["running", "failed", "running", "done"])
    results = [backup(policy, "orders", store=store, source=source)  # type: ignore[arg-type]
               for _ in range(6)]
    assert [r.status for r in results] == ["pending", "pending", "failed", "pending", "pending",
                                           "committed"]
    failed = read_job_entry(store, "orders", results[0].snapshot_id or "")
    assert failed is not None and failed[0] == 2 and failed[1]["state"] == "failed"
    entry = read_job_entry(store, "orders", results[-1].snapshot_id or "")
    assert entry is not None and entry[0] == 2 and entry[1]["state"] == "finished", \
        "one entry per step: started, polling, finished"
    # A step computed from an older entry (a run that read the record before another advanced
    # it) cannot land: the number it would take is taken.
    with pytest.raises(ObjectExistsError):
        _write(store, dict(entry[1]), after=entry[0] - 1)
