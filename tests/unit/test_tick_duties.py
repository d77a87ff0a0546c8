"""The tick's duties (backup, prune, verify), each run alone as the clouds run them — the tick,
the pruner and the verifier are separate functions with separate identities — and all three
together as ``run --due`` runs them. Our in-memory store and source (test_watchdog.py)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from cloudkeep import clock, function
from cloudkeep.catalog import snapshot_ids
from cloudkeep.errors import UsageError
from cloudkeep.metrics import MemorySink
from cloudkeep.policy import parse_policy
from cloudkeep.runtime import tick
from cloudkeep.stores.memory import MemoryStore
from test_watchdog import T0, MemorySource

POLICY = parse_policy("""
version: 1
stores: {mem: {type: file, path: /unused}}
tiers:
  hourly:
    schedule: "0 * * * *"
    rpo: 2h
    retention: {last: 2}
    verify: {drill: "30 3 * * *"}
datasets:
  orders: {source: {type: dynamodb, table: orders, region: us-east-1}, tier: hourly, store: mem, offset: 0m}
""")


@pytest.fixture
def world() -> Iterator[dict[str, Any]]:
    store, source = MemoryStore(), MemorySource()
    simulated = clock.SimulatedClock(T0)

    def run(hours: float, duties: tuple[str, ...]) -> Any:
        at = T0 + timedelta(hours=hours)
        simulated.set(at)  # every time the tick records comes from this clock (as under --now)
        return tick(POLICY, at, store_for=lambda _n: store, source_for=lambda _n: source,
                    duties=duties, sink=MemorySink())

    with clock.simulated(simulated):
        yield {"store": store, "source": source, "run": run, "clock": simulated}


def test_the_backup_duty_alone_never_prunes_nor_verifies(world: dict[str, Any]) -> None:
    for hour in range(5):
        outcome = world["run"](hour, ("backup",))
        assert [r.status for r in outcome.results] == ["committed"]
        assert not outcome.results[0].pruned and outcome.prunes == []
    assert len(snapshot_ids(world["store"], "orders")) == 5  # retention (last: 2) not applied
    drill = world["run"](4, ("backup",))  # past 03:30: a drill is due, but not this duty's
    assert drill.verifications == [] and drill.as_dict()["duties"] == ["backup"]


def test_the_prune_duty_alone_applies_retention_to_every_dataset(world: dict[str, Any]) -> None:
    for hour in range(4):
        world["run"](hour, ("backup",))
    ids = snapshot_ids(world["store"], "orders")
    outcome = world["run"](3.5, ("prune",))
    assert outcome.results == [] and outcome.not_due == [] and outcome.verifications == []
    [report] = outcome.prunes
    assert report["dataset"] == "orders" and not report["failed"]
    assert sorted(report["removed"]) == ids[:2]
    assert snapshot_ids(world["store"], "orders") == ids[2:]
    assert outcome.as_dict()["prunes"] == outcome.prunes and outcome.ok


def test_the_verify_duty_alone_runs_the_drill_due_and_backs_nothing_up(world: dict[str, Any]) -> None:
    world["run"](0, ("backup",))
    outcome = world["run"](4, ("verify",))  # 04:05: the 03:30 drill is due; an hourly slot too
    assert outcome.results == [] and outcome.prunes == []
    assert [(v["level"], v["ok"]) for v in outcome.verifications] == [("drill", True)]
    assert len(snapshot_ids(world["store"], "orders")) == 1
    assert world["run"](4.2, ("verify",)).verifications == []  # once per slot


def test_all_duties_together_prune_after_each_committed_backup(world: dict[str, Any]) -> None:
    pruned: list[str] = []
    for hour in range(4):
        outcome = world["run"](hour, ("backup", "prune", "verify"))
        pruned += outcome.results[0].pruned  # the pruned ids ride on the backup's result
        assert outcome.prunes == []
    # last: 2, and the drilled (verified) 00:00 snapshot is kept as the latest verified one
    assert [s[:13] for s in pruned] == ["20260302T0100"]
    assert len(snapshot_ids(world["store"], "orders")) == 3


def test_unknown_duties_are_refused(world: dict[str, Any]) -> None:
    with pytest.raises(UsageError, match="unknown tick duties"):
        world["run"](0, ("backup", "delete"))
    with pytest.raises(UsageError, match="none"):
        world["run"](0, ())


def test_function_entries_raise_when_their_duty_failed(world: dict[str, Any],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """scheduled_verify raises on a failed verification (the platform records an error); the
    reply names the duty that ran."""
    from cloudkeep import runtime

    world["run"](0, ("backup",))
    world["source"].corrupt_restores = True
    store, source = world["store"], world["source"]
    real_tick = runtime.tick
    monkeypatch.setattr(runtime, "tick", lambda *a, **k: real_tick(
        *a, **k, store_for=lambda _n: store, source_for=lambda _n: source))
    at = T0 + timedelta(hours=4)
    world["clock"].set(at)
    with pytest.raises(function.TickFailedError, match="verification failed for orders") as caught:
        function.scheduled_verify(POLICY, at, MemorySink())
    assert caught.value.reply["duties"] == ["verify"]
    reply = function.scheduled_prune(POLICY, at, MemorySink())
    assert reply["duties"] == ["prune"] and reply["prunes"][0]["dataset"] == "orders"
