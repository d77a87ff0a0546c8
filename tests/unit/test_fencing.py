"""Fenced locks (#17 item 1): a run that lost its lock writes nothing more; lock generations are
compare-and-set; the backup path only ever creates objects. Over an in-memory store and an
explicit clock (no sleeping): a "freeze" is the clock jumping past the lease."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from cloudkeep import layout
from cloudkeep.errors import LockedError
from cloudkeep.lock import FencedError, FencedStore, Lease, _process_namespace
from cloudkeep.stores.memory import MemoryStore

LEASE = timedelta(seconds=10)


class FakeClock:
    """Wall time and elapsed time that move only when told (a frozen process: ``advance``)."""

    def __init__(self) -> None:
        self.t = 0.0
        self.start = datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self.start + timedelta(seconds=self.t)

    def elapsed(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def lease(store: MemoryStore, run_id: str, clock: FakeClock) -> Lease:
    return Lease(store, "a", run_id, lease=LEASE, clock=clock, heartbeat=False)


def generations(store: MemoryStore) -> list[dict[str, object]]:
    prefix = layout.lock_prefix("a")
    return [json.loads(store.get(k)) for k in sorted(store.objects) if k.startswith(prefix)]


def test_a_writer_frozen_past_its_lease_and_taken_over_writes_nothing_more() -> None:
    store, clock = MemoryStore(), FakeClock()
    a = lease(store, "run-a", clock)
    a.acquire()
    writer = FencedStore(store, a)
    writer.put("a/snapshots/x/part-00000-000000.ndjson.zst", b"one", if_absent=True)

    clock.advance(LEASE.total_seconds() + 1)  # A is frozen (SIGSTOP) past its lease...
    b = lease(store, "run-b", clock)
    b.acquire()  # ... and B takes the lock over
    before = dict(store.objects)

    with pytest.raises(FencedError, match="lost the lock"):
        writer.put("a/snapshots/x/part-00000-000001.ndjson.zst", b"two", if_absent=True)
    with pytest.raises(FencedError):
        writer.delete(["a/snapshots/x/part-00000-000000.ndjson.zst"])
    with pytest.raises(FencedError):  # fenced for good, even once the clock looks fine again
        writer.put("a/other", b"three", if_absent=True)
    a.release()
    assert store.objects == before, "the fenced run wrote, deleted and released nothing"
    assert a.fenced is not None
    assert [g["run_id"] for g in generations(store)] == ["run-a", "run-b"]
    FencedStore(store, b).put("a/snapshots/x/part-00000-000001.ndjson.zst", b"b's", if_absent=True)
    b.release()
    assert generations(store)[-1]["state"] == "released"


def test_a_frozen_writer_nobody_took_over_reconfirms_and_goes_on() -> None:
    store, clock = MemoryStore(), FakeClock()
    a = lease(store, "run-a", clock)
    a.acquire()
    clock.advance(LEASE.total_seconds() * 3)  # frozen past its lease; nobody wanted the lock
    FencedStore(store, a).put("a/x", b"1", if_absent=True)  # re-confirmed by a renewal first
    assert store.get("a/x") == b"1"
    assert [g["generation"] for g in generations(store)] == [1, 2]
    a.release()


def test_within_the_safety_margin_a_write_needs_no_renewal() -> None:
    store, clock = MemoryStore(), FakeClock()
    a = lease(store, "run-a", clock)
    a.acquire()
    clock.advance(LEASE.total_seconds() * 0.4)
    FencedStore(store, a).put("a/x", b"1", if_absent=True)
    assert len(generations(store)) == 1
    a.release()


def test_renewal_is_a_compare_and_set_and_survives_pruned_generations() -> None:
    store, clock = MemoryStore(), FakeClock()
    a = lease(store, "run-a", clock)
    a.acquire()  # generation 1
    clock.advance(LEASE.total_seconds() + 1)
    b = lease(store, "run-b", clock)
    b.acquire()  # generation 2
    for _ in range(5):
        assert b.renew()  # generations 3..7
    # Prune removed the old generations (it keeps the newest few): A could re-create number 2.
    store.delete([layout.generation_key(layout.lock_prefix("a"), n) for n in (1, 2, 3)])
    assert not a.renew(), "a newer generation exists: still fenced"
    assert a.fenced is not None and "generation 7" in a.fenced
    with pytest.raises(FencedError):
        a.check()
    b.check()  # B is unaffected
    b.release()


def test_a_live_holder_refuses_and_an_expired_or_released_one_is_taken_over() -> None:
    store, clock = MemoryStore(), FakeClock()
    a = lease(store, "run-a", clock)
    a.acquire()
    with pytest.raises(LockedError, match="run-a"):
        lease(store, "run-b", clock).acquire()
    a.release()
    b = lease(store, "run-b", clock)
    b.acquire()  # released: free at once
    clock.advance(LEASE.total_seconds() + 0.001)
    c = lease(store, "run-c", clock)
    c.acquire()  # expired: taken over
    assert [g["run_id"] for g in generations(store)] == ["run-a", "run-a", "run-b", "run-c"]
    assert generations(store)[1]["state"] == "released"
    c.release()


def test_a_dead_holder_in_our_pid_namespace_is_taken_over_at_once() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    store = MemoryStore()
    dead = {"state": "held", "run_id": "killed", "pid": proc.pid, "process_ns": _process_namespace(),
            "expires_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat()}
    store.put(layout.generation_key(layout.lock_prefix("a"), 1), json.dumps(dead).encode())
    live = dead | {"pid": os.getppid(), "run_id": "alive"}  # a process that is alive
    other = MemoryStore()
    other.put(layout.generation_key(layout.lock_prefix("a"), 1), json.dumps(live).encode())
    with pytest.raises(LockedError, match="alive"):
        Lease(other, "a", "me", heartbeat=False).acquire()
    taker = Lease(store, "a", "me", heartbeat=False)
    taker.acquire()
    assert taker.generation == 2
    taker.release()


def test_a_released_or_never_acquired_lease_refuses_writes() -> None:
    store, clock = MemoryStore(), FakeClock()
    a = lease(store, "run-a", clock)
    with pytest.raises(FencedError, match="does not hold"):
        FencedStore(store, a).put("a/x", b"1")
    a.acquire()
    a.release()
    with pytest.raises(FencedError):
        FencedStore(store, a).put("a/x", b"1")
    assert "a/x" not in store.objects


def test_the_previous_releases_lock_object_is_not_honoured() -> None:
    store = MemoryStore()
    store.put(layout.lock_key("a"), json.dumps(
        {"run_id": "old", "expires_at": "2999-01-01T00:00:00+00:00"}).encode())
    with Lease(store, "a", "new", heartbeat=False) as held:
        assert held.generation == 1


def test_prune_removes_superseded_state_and_the_previous_releases_objects() -> None:
    from cloudkeep import alerts, audit, sequences
    from cloudkeep.policy import parse_policy
    from cloudkeep.prune import prune

    policy = parse_policy("""
version: 1
stores: {mem: {type: file, path: /unused}}
tiers: {t: {schedule: "0 * * * *", rpo: 2h, retention: {last: 3}}}
datasets:
  a: {source: {type: dynamodb, table: aaa, region: us-east-1}, tier: t, store: mem}
""")
    store = MemoryStore()
    old = [layout.lock_key("a"), layout.lock_takeover_key("a", "r1"), layout.alert_state_key("a"),
           layout.policy_digest_key()]
    for key in old:
        store.put(key, b'{"open": [], "digest": "x"}')
    for _ in range(6):
        with Lease(store, "a", "r", heartbeat=False):
            pass
    notifier = alerts.Notifier([])
    for i in range(6):
        alerts.update(store, "a", {"rpo_breach": "late" if i % 2 else None}, notifier)
        audit.note_policy(store, policy if i % 2 else policy.model_copy(update={"timezone": "Europe/Paris"}))
    report = prune(policy, "a", datetime.now(UTC), store=store)
    assert not report.errors, report.errors
    assert not [k for k in old if k in store.objects], "the previous release's objects are gone"
    assert len(sequences.numbers(store, layout.alert_states_prefix("a"))) == sequences.KEEP
    assert len(sequences.numbers(store, layout.policy_digests_prefix())) == sequences.KEEP
    # The lock keeps its newest generations: prune's own release is the newest now.
    gens = sequences.numbers(store, layout.lock_prefix("a"))
    assert len(gens) == sequences.KEEP + 1 and gens[-1] > 12
    assert generations(store)[-1]["state"] == "released"
    assert alerts.load_state(store, "a")["open"][0]["kind"] == "rpo_breach", "the current value stays"
