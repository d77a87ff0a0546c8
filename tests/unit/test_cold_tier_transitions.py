"""The pruner's transitions (Azure Blob's Set Blob Tier) on cloudkeep's in-memory store with the
SetsStorageClass capability: one part the cloud refuses to move (a blob under a hold the service
will not tier, a transient error) does not stop the other snapshots from moving, and parts never
move warmer."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from cloudkeep import clock, coldtiers, layout
from cloudkeep.engine import backup
from cloudkeep.errors import StoreError
from cloudkeep.policy import parse_policy
from cloudkeep.stores import ObjectInfo
from cloudkeep.stores.memory import MemoryStore
from test_engine import ScriptedSource

D = datetime(2026, 3, 4, tzinfo=UTC)
POLICY = """
version: 1
stores: {az: {type: azure_blob, container: vault}}
tiers: {t: {schedule: "0 * * * *", rpo: 2h, retention: {last: 50},
            transition: [{after: 1d, to: cool}, {after: 3d, to: archive}]}}
datasets: {orders: {source: {type: dynamodb, table: orders, region: us-east-1}, tier: t, store: az}}
"""


class TieredMemoryStore(MemoryStore):
    """Our in-memory store with per-object tiers; ``refuse`` keys fail Set Blob Tier."""

    def __init__(self) -> None:
        super().__init__()
        self.tiers: dict[str, str] = {}
        self.refuse: set[str] = set()

    def set_storage_class(self, key: str, store_class: str) -> None:
        if key in self.refuse:
            raise StoreError(f"{key}: This operation is not permitted on an immutable blob")
        self.tiers[key] = store_class

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        for info in super().list(prefix):
            yield ObjectInfo(info.key, info.size, info.modified, self.tiers.get(info.key, "Hot"))


def _take(policy: object, store: TieredMemoryStore, at: datetime, suffix: str) -> list[str]:
    sid = layout.snapshot_id_for(at, suffix)
    with clock.simulated(at):
        result = backup(policy, "orders", store=store, source=ScriptedSource(segments=1, per_segment=5),
                        snapshot_id=sid, trigger="schedule", slot=at)
    assert result.status == "committed" and result.manifest is not None
    return [layout.part_key("orders", sid, p.name) for p in result.manifest.parts]


def test_one_refused_part_does_not_stop_the_other_snapshots_moving() -> None:
    policy = parse_policy(POLICY)
    store = TieredMemoryStore()
    old = _take(policy, store, D, "aaaaaa")
    older = _take(policy, store, D + timedelta(hours=1), "bbbbbb")
    store.refuse.add(old[0])
    moved = coldtiers.transition(policy, "orders", store, D + timedelta(days=5))
    assert all(store.tiers.get(k) == "Archive" for k in older)
    assert moved["moved"] >= len(older)
    assert moved["errors"] and old[0] in moved["errors"][0]
    # never warmer: a later, shorter transition list leaves archived parts where they are
    warmer = parse_policy(POLICY.replace(", {after: 3d, to: archive}", ""))
    again = coldtiers.transition(warmer, "orders", store, D + timedelta(days=6))
    assert again["moved"] == 0 and all(store.tiers.get(k) == "Archive" for k in older)
