"""Three weeks of scheduled life, replayed (issue 19): hourly ticks through ``runtime.tick`` under
a simulated clock, a DynamoDB Local table as the source (unreachable for four hours in the second
week), a copy store, retention (hourly 24, daily 7, weekly 4), a weekly restore drill and a
sample every six hours. The tick, the report, ``plan`` and the metrics must then agree with
what happened: one drill per drill slot, one sample per sample slot, one alert and one recovery
per incident, RPO breaches exactly the outage, and one age for the newest snapshot."""

from __future__ import annotations

import json
import shutil
import socket
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tools.sample_data import ORDERS_TABLE_SCHEMA, seed

from cloudkeep import audit, clock, layout
from cloudkeep.alerts import MemoryChannel, Notifier
from cloudkeep.awsconfig import client_config
from cloudkeep.catalog import snapshot_ids
from cloudkeep.metrics import MemorySink
from cloudkeep.policy import parse_policy
from cloudkeep.report import dataset_report
from cloudkeep.runtime import plan, tick
from cloudkeep.schedule import Schedule
from cloudkeep.sources.dynamodb import DynamoDBSource, make_client
from cloudkeep.stores.file import FileStore
from conftest import REGION, unique

pytestmark = pytest.mark.emulator

START = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)  # a Monday
HOURS = 21 * 24 + 1  # three weeks of hourly ticks, through Monday 2026-03-23 00:00
OUTAGE = [datetime(2026, 3, 11, h, 0, tzinfo=UTC) for h in (9, 10, 11, 12)]  # a Wednesday
RPO = timedelta(hours=2)
DRILL, SAMPLE = "0 4 * * 0", "30 */6 * * *"


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def fast_path(tmp_path: Path) -> Iterator[Path]:
    """The stores' folder: in memory-backed /dev/shm where there is one (a file store syncs
    every object it writes, which a disk shared with other jobs makes slow), else tmp_path."""
    shm = Path("/dev/shm")
    if not shm.is_dir():
        yield tmp_path
        return
    path = Path(tempfile.mkdtemp(prefix="cloudkeep-replay-", dir=shm))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def replayed(ddb_resource: Any, fast_path: Path) -> dict[str, Any]:
    import botocore.session

    tmp_path = fast_path
    table = unique("orders")
    handle = ddb_resource.create_table(TableName=table, **ORDERS_TABLE_SCHEMA)
    handle.wait_until_exists()
    seed(handle, 30)
    policy = parse_policy(f"""
version: 1
stores:
  vault: {{type: file, path: {tmp_path / "vault"}}}
  offsite: {{type: file, path: {tmp_path / "offsite"}}}
tiers:
  hourly:
    schedule: "0 * * * *"
    rpo: 2h
    retention: {{hourly: 24, daily: 7, weekly: 4}}
    copy_to: [offsite]
    verify: {{drill: "{DRILL}", sample: "{SAMPLE}", sample_items: 5}}
datasets:
  orders: {{source: {{type: dynamodb, table: {table}, region: {REGION}}}, tier: hourly, store: vault, offset: 0m}}
""")
    store = FileStore(tmp_path / "vault")
    # The outage: the table's endpoint stops answering (a closed port, one attempt per call).
    dead = botocore.session.get_session().create_client(
        "dynamodb", region_name=REGION, endpoint_url=f"http://127.0.0.1:{closed_port()}",
        config=client_config(retries={"mode": "standard", "total_max_attempts": 1}))
    live = make_client(REGION)  # one client for the whole replay (a client takes ~0.1 s to make)
    channel, sink = MemoryChannel(), MemorySink()
    notifier = Notifier([channel])
    simulated = clock.SimulatedClock(START)
    ticks = []
    with clock.simulated(simulated):
        for hour in range(HOURS):
            now = START + timedelta(hours=hour)
            simulated.set(now)
            down = now in OUTAGE

            def source_for(_name: str, down: bool = down) -> DynamoDBSource:
                return DynamoDBSource(table, REGION, client=dead if down else live)

            with audit.acting_as("schedule"):
                ticks.append(tick(policy, now, store_for=lambda _n: store, source_for=source_for,
                                  sink=sink, notifier=notifier))
        end = START + timedelta(hours=HOURS - 1, minutes=30)
        simulated.set(end)
        last = tick(policy, end, store_for=lambda _n: store, sink=sink, notifier=notifier,
                    source_for=lambda _n: DynamoDBSource(table, REGION, client=live))
    return {"policy": policy, "store": store, "ticks": ticks, "last": last, "end": end,
            "channel": channel, "sink": sink, "table": table}


def test_three_weeks_of_hourly_ticks_agree_with_what_happened(replayed: dict[str, Any]) -> None:
    policy, store, ticks = replayed["policy"], replayed["store"], replayed["ticks"]
    end = replayed["end"]
    everything = [*ticks, replayed["last"]]

    # Backups: one per hour, except the four hours of the outage (failed, exit code 3).
    statuses = [(t.now, r.status) for t in ticks for r in t.results]
    failed = [at for at, status in statuses if status == "failed"]
    assert failed == OUTAGE
    assert sum(status == "committed" for _, status in statuses) == HOURS - len(OUTAGE)
    assert all(r.exit_code == 3 for t in ticks for r in t.failed)

    # One drill per drill slot and one sample per sample slot, however retention pruned the
    # verified snapshots (every drilled hourly snapshot is long gone by the end).
    for level, expr in (("drill", DRILL), ("sample", SAMPLE)):
        ran = [v for t in everything for v in t.verifications if v["level"] == level]
        slots = [v["slot"] for v in ran]
        schedule = Schedule.parse(expr)
        expected = sorted({schedule.previous(t.now).isoformat() for t in everything})
        assert slots == expected, level
        assert all(v["ok"] and v["trigger"] == "schedule" for v in ran), level
        claims = list(store.list(layout.verify_slots_prefix("orders", level)))
        assert len([c for c in claims if not c.key.endswith(".outcome.json")]) == len(expected)
    drills = [v for t in ticks for v in t.verifications if v["level"] == "drill"]
    assert len(drills) == 4  # Sundays 1, 8, 15 and 22 March
    assert not any(sid in snapshot_ids(store, "orders") for sid in (d["snapshot_id"] for d in drills[:2]))

    # One alert and one recovery per incident: the outage is two incidents (the backup failing
    # from its first hour, the RPO breached once the newest snapshot is older than 2h).
    sent = [(a.status, a.kind, a.at[:16]) for a in replayed["channel"].sent]
    assert sent == [
        ("alert", "backup_failed", "2026-03-11T09:00"),
        ("alert", "rpo_breach", "2026-03-11T11:00"),
        ("recovery", "backup_failed", "2026-03-11T13:00"),
        ("recovery", "rpo_breach", "2026-03-11T13:00"),
    ]

    # The report's RPO breaches come from the run history: exactly the outage, although
    # retention removed most hourly snapshots (their gaps are no outage).
    row = dataset_report(policy, "orders", end, store=store)
    assert row["snapshot_count"] < 50 and row["runs"] == HOURS - len(OUTAGE)
    [breach] = row["rpo_breaches"]
    last_good, back = datetime(2026, 3, 11, 8, tzinfo=UTC), datetime(2026, 3, 11, 13, tzinfo=UTC)
    assert abs(datetime.fromisoformat(breach["from"]) - (last_good + RPO)) < timedelta(seconds=60)
    assert abs(datetime.fromisoformat(breach["to"]) - back) < timedelta(seconds=60)
    assert row["last_drill"] is not None and row["last_drill"]["ok"]

    # One age: plan, report and the watchdog's metric agree, and no age was ever negative.
    [planned] = plan(policy, end, store_for=lambda _n: store)
    ages = [m.value for m in replayed["sink"].metrics if m.name == "SnapshotAgeSeconds"]
    assert min(ages) >= 0
    assert planned.age is not None
    assert int(planned.age.total_seconds()) == row["age_seconds"] == int(ages[-1])
    assert 30 * 60 - 60 <= row["age_seconds"] <= 30 * 60  # captured just after the tick time
    assert planned.latest_snapshot == row["newest_snapshot"]
    assert replayed["last"].freshness[0]["latest_snapshot"] == row["newest_snapshot"]

    # Every record of the replay carries simulated time: none after the replay's end (the last
    # tick's records come a few milliseconds after its time), none from the wall clock.
    bound = (end + timedelta(minutes=1)).isoformat()
    records = list(audit.read(store))
    assert records and all(str(r["at"]) <= bound for r in records)
    assert records[0]["at"].startswith("2026-03-02T00:00")
    assert sum(r["event"] == "verify" for r in records) == len(
        [v for t in everything for v in t.verifications])
    alerts_state = [json.loads(store.get(i.key)) for i in store.list("orders/alerts/")]
    assert alerts_state and all(str(s.get("updated_at", "")) <= bound for s in alerts_state)
