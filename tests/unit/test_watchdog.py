"""The tick's watchdog on the in-memory store with the in-memory source (our protocols, no
cloud): freshness against the RPO, alerts raised once and cleared by one recovery, scheduled
drills once per slot, metrics through the sink protocol, and the audit trail of it all."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cloudkeep import alerts, audit, clock
from cloudkeep.alerts import MemoryChannel, Notifier
from cloudkeep.errors import SourceError
from cloudkeep.metrics import MemorySink
from cloudkeep.policy import parse_policy
from cloudkeep.runtime import tick
from cloudkeep.sources import memory
from cloudkeep.stores.memory import MemoryStore

POLICY = parse_policy("""
version: 1
stores: {mem: {type: file, path: /unused}}
tiers:
  hourly:
    schedule: "0 * * * *"
    rpo: 2h
    rto: 30m
    retention: {last: 50}
    verify: {drill: "30 3 * * *"}
datasets:
  orders: {source: {type: dynamodb, table: orders, region: us-east-1}, tier: hourly, store: mem, offset: 0m}
""")

T0 = datetime(2026, 3, 2, 0, 5, tzinfo=UTC)


class MemorySource(memory.MemorySource):
    """The in-memory source (cloudkeep.sources.memory) with switches for trouble: ``failing``
    (it cannot be described), ``corrupt_restores`` (restores write altered items),
    ``write_delay`` (seconds each restore write takes); ``dropped`` lists dropped targets."""

    def __init__(self, items: int = 40) -> None:
        super().__init__(memory.MemoryWorld(), "orders", segments=1, page_size=1000)
        for i in range(items):
            self.put(f"k{i}", {"v": "v"})
        self.dropped: list[str] = []
        self.failing = False
        self.corrupt_restores = False
        self.write_delay = 0.0

    @property
    def targets(self) -> dict[str, dict[str, Any]]:
        """The restore targets that exist (every table but the source's own)."""
        return {name: self.world.items(name) for name in list(self.world.tables)
                if name != self.table}

    def describe(self) -> dict[str, Any]:
        if self.failing:
            raise SourceError("table orders is unreachable (AccountKey=s3cr3tValue;)")
        return super().describe()

    def open_restore(self, target: str, recorded: dict[str, Any], *,
                     overwrite: bool) -> memory.MemoryWriter:
        source = self

        class Writer(memory.MemoryWriter):
            def write(self, lines: list[bytes]) -> int:
                time.sleep(source.write_delay)
                if source.corrupt_restores:
                    lines = [memory.encode(memory.decode(one)[0], {"v": "lost"}) for one in lines]
                return super().write(lines)

        super().open_restore(target, recorded, overwrite=overwrite)
        return Writer(self.world, target)

    def drop_target(self, target: str, recorded: dict[str, Any]) -> None:
        super().drop_target(target, recorded)
        self.dropped.append(target)


@pytest.fixture
def world() -> Iterator[dict[str, Any]]:
    store, source, channel, sink = MemoryStore(), MemorySource(), MemoryChannel(), MemorySink()
    notifier = Notifier([channel], secrets=["s3cr3tValue"])
    simulated = clock.SimulatedClock(T0)

    def run(at: datetime) -> Any:
        simulated.set(at)  # every time the tick records comes from this clock (as under --now)
        return tick(POLICY, at, store_for=lambda _n: store, source_for=lambda _n: source,
                    sink=sink, notifier=notifier)

    with clock.simulated(simulated):
        yield {"store": store, "source": source, "channel": channel, "sink": sink, "run": run}


def sent(world: dict[str, Any]) -> list[tuple[str, str]]:
    return [(a.status, a.kind) for a in world["channel"].sent]


def test_a_breach_raises_one_alert_across_ticks_and_one_recovery(world: dict[str, Any]) -> None:
    run, source, store = world["run"], world["source"], world["store"]
    first = run(T0)
    assert [r.status for r in first.results] == ["committed"]
    assert first.freshness[0]["rpo_met"] is True
    assert sent(world) == []

    source.failing = True
    for hour in range(1, 6):  # five failing hourly ticks; the RPO (2h) is passed at the third
        run(T0 + timedelta(hours=hour))
    assert sent(world) == [("alert", "backup_failed"), ("alert", "rpo_breach")]
    state = alerts.load_state(store, "orders")
    assert {a["kind"] for a in state["open"]} == {"backup_failed", "rpo_breach"}
    breach = next(a for a in state["open"] if a["kind"] == "rpo_breach")
    assert breach["since"] == (T0 + timedelta(hours=3)).isoformat()
    assert "RPO is 2h" in breach["message"]

    source.failing = False
    run(T0 + timedelta(hours=6))
    assert sent(world)[2:] == [("recovery", "backup_failed"), ("recovery", "rpo_breach")]
    assert alerts.load_state(store, "orders")["open"] == []
    run(T0 + timedelta(hours=7))
    assert len(sent(world)) == 4, "nothing more once recovered"


def test_alerts_are_redacted(world: dict[str, Any]) -> None:
    world["run"](T0)
    world["source"].failing = True
    world["run"](T0 + timedelta(hours=1))
    [alert] = world["channel"].sent
    assert alert.kind == "backup_failed"
    assert "s3cr3tValue" not in alert.text and "[redacted]" in alert.text


def test_an_unsent_alert_is_retried_by_the_next_tick_and_sent_once(world: dict[str, Any]) -> None:
    class Flaky:
        name = "flaky"

        def __init__(self) -> None:
            self.fail = True
            self.got: list[Any] = []

        def send(self, alert: Any) -> None:
            if self.fail:
                raise ConnectionError("down")
            self.got.append(alert)

    flaky = Flaky()
    store = MemoryStore()
    # a dataset with no snapshot at all is past its RPO
    alerts.update(store, "orders", {"rpo_breach": "no snapshot"}, Notifier([flaky]), now=T0)
    assert flaky.got == [] and not alerts.open_alerts(store, "orders")[0]["notified"]
    flaky.fail = False
    for minutes in (15, 30, 45):
        alerts.update(store, "orders", {"rpo_breach": "no snapshot"}, Notifier([flaky]),
                      now=T0 + timedelta(minutes=minutes))
    assert [(a.status, a.kind) for a in flaky.got] == [("alert", "rpo_breach")]
    assert flaky.got[0].since == T0.isoformat()


def test_scheduled_drill_runs_once_per_slot_and_a_bad_restore_alerts(world: dict[str, Any]) -> None:
    run, source, store = world["run"], world["source"], world["store"]
    run(T0)  # 00:05: backup; the drill's first slot (yesterday 03:30) has never been drilled
    drills = [v for v in run(T0 + timedelta(minutes=10)).verifications]
    assert drills == [], "the first tick already drilled this slot"
    records = [json.loads(store.get(i.key)) for i in store.list("orders/verifications/")]
    assert [(r["level"], r["ok"], r["trigger"]) for r in records] == [("drill", True, "schedule")]
    assert records[0]["rto_seconds"] == 1800 and records[0]["rto_met"] is True
    assert records[0]["restore_seconds"] >= 0
    assert source.targets == {} and len(source.dropped) == 1, "the scratch target is deleted"

    source.corrupt_restores = True
    report = [v for v in run(T0 + timedelta(hours=4)).verifications]  # 04:05: after 03:30's slot
    assert [(r["level"], r["ok"]) for r in report] == [("drill", False)]
    assert any("digest" in p["message"] for p in report[0]["problems"])
    assert source.targets == {} and len(source.dropped) == 2
    assert ("alert", "verification_failed") in sent(world)
    source.corrupt_restores = False
    run(T0 + timedelta(days=1, hours=4))  # the next day's drill passes: recovery
    assert sent(world)[-1] == ("recovery", "verification_failed")


def test_the_tick_emits_the_documented_metrics(world: dict[str, Any]) -> None:
    world["run"](T0)
    world["source"].failing = True
    world["run"](T0 + timedelta(hours=3))
    by_name: dict[str, list[Any]] = {}
    for metric in world["sink"].metrics:
        by_name.setdefault(metric.name, []).append(metric)
        assert metric.dimensions == {"dataset": "orders", "tier": "hourly"}
    assert set(by_name) == {"BackupSucceeded", "BackupFailed", "ItemsBackedUp", "BytesStored",
                            "BackupDurationSeconds", "SnapshotAgeSeconds", "RpoBreached",
                            "VerificationFailed", "RestoreDrillSeconds"}
    assert by_name["ItemsBackedUp"][0].value == 40
    assert [m.value for m in by_name["RpoBreached"]] == [0, 1]
    # the age of the data: from its capture (the simulated clock's time at the snapshot's
    # start, a few milliseconds after the first tick's time) to the last tick
    assert 3 * 3600 - 60 < by_name["SnapshotAgeSeconds"][-1].value <= 3 * 3600
    assert [m.value for m in by_name["VerificationFailed"]] == [0]


def test_the_tick_audits_backups_drills_and_policy_changes(world: dict[str, Any]) -> None:
    store = world["store"]
    with audit.acting_as("schedule", platform="test"):
        world["run"](T0)
        world["run"](T0 + timedelta(minutes=10))
    records = list(audit.read(store))
    assert [(r["event"], r["outcome"]) for r in records] == [
        ("policy_change", "first-seen"), ("backup", "committed"), ("verify", "ok")]
    assert all(r["actor"] == {"kind": "schedule", "platform": "test"} for r in records)
    assert all(r["key"].startswith("_audit/") and r["key"].endswith(f"-{r['event']}.json")
               for r in records)
    changed = POLICY.model_copy(update={"timezone": "Europe/Paris"})
    tick(changed, T0 + timedelta(minutes=20), store_for=lambda _n: store,
         source_for=lambda _n: world["source"], notifier=Notifier([]))
    tick(changed, T0 + timedelta(minutes=25), store_for=lambda _n: store,
         source_for=lambda _n: world["source"], notifier=Notifier([]))
    events = [r["event"] for r in audit.read(store)]
    assert events.count("policy_change") == 2
    last = [r for r in audit.read(store) if r["event"] == "policy_change"][-1]
    assert last["outcome"] == "changed" and last["detail"]["previous_digest"]
    assert last["actor"]["kind"] == "cli"


def test_audit_since_filters_and_records_never_overwrite() -> None:
    store = MemoryStore()
    at = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    keys = {audit.write(store, "hold_add", outcome="ok", dataset="d", at=at) for _ in range(20)}
    assert len(keys) == 20, "twenty records of the same microsecond, twenty keys"
    audit.write(store, "prune", outcome="ok", dataset="d", at=at + timedelta(days=2))
    since = list(audit.read(store, at + timedelta(days=1)))
    assert [r["event"] for r in since] == ["prune"]
    assert audit.parse_since("2026-03-02T00:00:00Z") == datetime(2026, 3, 2, tzinfo=UTC)
    assert audit.parse_since("2h", datetime(2026, 3, 2, tzinfo=UTC)) == datetime(2026, 3, 1, 22, tzinfo=UTC)


def test_redact_removes_credentials() -> None:
    text = ("AccountEndpoint=https://x/;AccountKey=abcd1234==; url https://user:pw@host/x?sig=SIGN&a=1 "
            "Bearer eyJhbGciOiJIUzI1NiJ9.x.y AKIAABCDEFGHIJKLMNOP https://hooks.slack.com/services/T/B/C")
    out = alerts.redact(text, ["topsecretvalue"])
    for secret in ("abcd1234", "pw@", "SIGN", "eyJhbGci", "AKIAABCDEFGHIJKLMNOP", "services/T/B/C"):
        assert secret not in out, secret
    assert alerts.redact("the topsecretvalue leaked", ["topsecretvalue"]) == "the [redacted] leaked"


def test_a_drill_slower_than_the_rto_fails_and_still_cleans_up() -> None:
    from cloudkeep.drills import verify_drill
    from cloudkeep.engine import backup

    policy = POLICY.model_copy(update={"tiers": {"hourly": POLICY.tiers["hourly"].model_copy(
        update={"rto": timedelta(seconds=1)})}})
    store, source = MemoryStore(), MemorySource()
    manifest = backup(policy, "orders", store=store, source=source).manifest
    assert manifest is not None
    source.write_delay = 1.05  # the restore cannot take less than this
    report = verify_drill(policy, store, manifest, source=source)
    assert report.restore_seconds is not None and report.restore_seconds > 1
    assert report.rto_met is False and not report.ok
    assert [p.check for p in report.problems] == ["rto"]
    assert report.as_dict()["rto_seconds"] == 1 and source.targets == {} and report.cleaned_up


def test_audit_records_are_redacted() -> None:
    store = MemoryStore()
    key = audit.write(store, "restore", outcome="failed", dataset="d",
                      detail={"error": "refused: AccountKey=abc123==; sig=XYZ"})
    assert key is not None
    raw = store.get(key).decode()
    assert "abc123" not in raw and "XYZ" not in raw and json.loads(raw)["outcome"] == "failed"
