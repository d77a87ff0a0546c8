"""The Source contract (``cloudkeep.sources`` and ``cloudkeep.capabilities``), run over every source.

One set of test bodies, parametrized like the store suite (tests/test_store_contract.py): the
``rig`` fixture gives a source with seeded items — the in-memory sources (sources/memory.py), and
every real source on its emulator through the real SDK: DynamoDB (DynamoDB Local), S3 (moto
server), Firestore (its emulator), Cosmos DB (its emulator), RDS (moto server). A body for an
optional ability runs on the sources that declare it (``capabilities.able``); the others are
deselected at collection, never skipped. Each source is judged by its own answers
(``scan_digest`` of the live data and of a restored target), so no body knows a source type.
"""

from __future__ import annotations

import io
import json
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from cloudkeep import layout
from cloudkeep.capabilities import (
    CopiesObjects,
    Description,
    Drillable,
    Incremental,
    NativeCheck,
    NativeRestore,
    NativeRetention,
    Resumable,
    SampleCheck,
    Summarizes,
    able,
)
from cloudkeep.checkpoint import Deadline
from cloudkeep.codec import ContentDigest, iter_lines
from cloudkeep.engine import RunOptions, RunResult, backup
from cloudkeep.errors import RestoreError
from cloudkeep.manifest import Manifest
from cloudkeep.policy import Policy, parse_policy
from cloudkeep.registry import open_source
from cloudkeep.restore import restore
from cloudkeep.sources import NativeJobSource, native_method
from cloudkeep.sources.memory import (
    MemoryIncrementalSource,
    MemoryNativeSource,
    MemoryObjectSource,
    MemorySource,
    MemoryWorld,
)
from cloudkeep.stores.memory import MemoryStore
from cloudkeep.verify import verify_integrity
from conftest import REGION

ITEMS = 36


@dataclass
class Rig:
    """A source under test: ``make()`` builds a fresh adapter (a new invocation) over the same
    live data; ``live`` names that data as a restore target would (``scan_digest(live)``);
    ``mutate()`` changes one item and deletes another (each seeded item keeps its own key)."""

    name: str
    policy: Policy
    make: Callable[[], Any]
    live: str
    mutate: Callable[[], None]
    store: MemoryStore = field(default_factory=MemoryStore)
    dataset: str = "d"

    def source(self) -> Any:
        source = self.make()
        copies = able(source, CopiesObjects)
        if copies is not None:
            copies.attach_store(self.store, self.dataset)
        return source

    def backup(self, **options: Any) -> RunResult:
        opts = RunOptions(**({"part_size": 800, "workers": 2} | options))
        return backup(self.policy, self.dataset, store=self.store, source=self.source(),
                      options=opts)


def _policy(source: dict[str, Any]) -> Policy:
    return parse_policy(yaml.safe_dump({
        "version": 1,
        "stores": {"mem": {"type": "file", "path": "/unused"}},
        "tiers": {"t": {"schedule": "0 2 * * *", "rpo": "26h", "retention": {"last": 5}}},
        "datasets": {"d": {"source": source, "tier": "t", "store": "mem"}},
    }))


# The memory sources stand in for a DynamoDB dataset in the policy: the engine reads the injected
# source; the manifest records the source's own type ("memory").
MEMORY_POLICY = {"type": "dynamodb", "table": "items", "region": REGION}


def _memory(cls: type[MemorySource], **kwargs: Any) -> Rig:
    world = MemoryWorld()
    seeded = cls(world, "items", segments=3, page_size=4, **kwargs)
    seeded.fill(ITEMS, pad=20)

    def mutate() -> None:
        seeded.put("k00000", {"changed": True})
        seeded.delete("k00001")

    native = {"method": "native"} if cls is MemoryNativeSource else {}
    return Rig(cls.__name__, _policy(MEMORY_POLICY | native),
               lambda: cls(world, "items", segments=3, page_size=4, **kwargs), "items", mutate)


def _dynamodb(request: pytest.FixtureRequest) -> Rig:
    client = request.getfixturevalue("ddb_client")
    table = f"contract-{secrets.token_hex(4)}"
    client.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
    for i in range(ITEMS):
        client.put_item(TableName=table, Item={
            "pk": {"S": f"k{i:05d}"}, "n": {"N": f"{10**30 + i}"}, "b": {"B": bytes([i, 0, 255])},
            "ss": {"SS": ["a", f"caf\u00e9 {i}"]}, "m": {"M": {"l": {"L": [{"NULL": True}]}}}})

    def mutate() -> None:
        client.put_item(TableName=table, Item={"pk": {"S": "k00000"}, "changed": {"BOOL": True}})
        client.delete_item(TableName=table, Key={"pk": {"S": "k00001"}})

    policy = _policy({"type": "dynamodb", "table": table, "region": REGION, "segments": 3})

    def make() -> Any:
        source = open_source(policy.dataset("d").source)
        source.page_size = 5  # small Scan pages: many cursors
        return source

    return Rig("dynamodb", policy, make, table, mutate)


def _s3(request: pytest.FixtureRequest) -> Rig:
    import boto3

    request.getfixturevalue("moto_server")
    client = boto3.client("s3", region_name=REGION)
    bucket = f"contract-{secrets.token_hex(4)}"
    client.create_bucket(Bucket=bucket)
    for i in range(ITEMS):
        client.put_object(Bucket=bucket, Key=f"k{i:05d}/caf\u00e9.bin", Body=bytes([i]) * (i + 1),
                          Metadata={"n": str(i)}, ContentType="application/octet-stream")

    def mutate() -> None:
        client.put_object(Bucket=bucket, Key="k00000/caf\u00e9.bin", Body=b"changed")
        client.delete_object(Bucket=bucket, Key="k00001/caf\u00e9.bin")

    policy = _policy({"type": "s3", "bucket": bucket, "region": REGION})
    return Rig("s3", policy, lambda: open_source(policy.dataset("d").source), bucket, mutate)


def _firestore(request: pytest.FixtureRequest) -> Rig:
    from fixtures_gcp import FirestoreRest

    rest: FirestoreRest = request.getfixturevalue("firestore_rest")
    project = request.getfixturevalue("gcp_project")
    docs: dict[str, dict[str, Any]] = {}
    for i in range(ITEMS):
        docs[f"users/k{i:05d}"] = {"i": {"integerValue": str(2**62 + i)},
                                   "t": {"stringValue": f"caf\u00e9 {i}"},
                                   "b": {"bytesValue": "AAEC"}, "n": {"nullValue": None}}
        if i % 6 == 0:
            docs[f"users/k{i:05d}/orders/o1"] = {"parent": {"integerValue": str(i)}}
    rest.write(docs)

    def mutate() -> None:
        rest.write({"users/k00000": {"changed": {"booleanValue": True}}})
        rest.delete("users/k00001")

    policy = _policy({"type": "firestore", "project": project, "collections": ["users"],
                      "segments": 3})
    return Rig("firestore", policy, lambda: open_source(policy.dataset("d").source), "", mutate)


def _cosmos(request: pytest.FixtureRequest) -> Rig:
    from concurrent.futures import ThreadPoolExecutor

    from azure.cosmos import PartitionKey

    server = request.getfixturevalue("cosmos_server")
    client = request.getfixturevalue("cosmos_client")
    database = request.getfixturevalue("cosmos_database")
    container = client.get_database_client(database).create_container(
        "contract", partition_key=PartitionKey(path="/pk"))
    docs = [{"id": f"k{i:05d}", "pk": f"p{i % 5}", "n": 2**53 + i, "t": f"caf\u00e9 {i}",
             "nested": {"l": [1, None, {"x": i}]}} for i in range(ITEMS)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(container.upsert_item, docs))

    def mutate() -> None:
        container.upsert_item({"id": "k00000", "pk": "p0", "changed": True})
        container.delete_item("k00001", partition_key="p1")

    policy = _policy({"type": "cosmos", "endpoint": server.endpoint, "database": database,
                      "container": "contract", "verify_tls": False})

    def make() -> Any:
        source = open_source(policy.dataset("d").source)
        source.page_size = 5  # small query pages: many continuations
        return source

    return Rig("cosmos", policy, make, "contract", mutate)


def _rds(request: pytest.FixtureRequest) -> Rig:
    import boto3

    request.getfixturevalue("moto_server")
    rds = boto3.client("rds", region_name=REGION)
    instance = f"contract-{secrets.token_hex(4)}"
    rds.create_db_instance(DBInstanceIdentifier=instance, DBInstanceClass="db.t3.micro",
                           Engine="postgres", AllocatedStorage=20, MasterUsername="admin",
                           MasterUserPassword="not-a-secret-1")
    policy = _policy({"type": "rds", "region": REGION, "instance": instance})

    def mutate() -> None:
        raise AssertionError("an RDS instance has no items to change")

    return Rig("rds", policy, lambda: open_source(policy.dataset("d").source), instance, mutate)


# Which abilities each source declares: the bodies below are parametrized with these lists, and
# test_declared_abilities checks them against the adapters themselves (capabilities.able).
BUILDERS: dict[str, Callable[[pytest.FixtureRequest], Rig]] = {
    "memory": lambda _r: _memory(MemorySource),
    "memory-incremental": lambda _r: _memory(MemoryIncrementalSource),
    "memory-objects": lambda _r: _memory(MemoryObjectSource),
    "memory-native": lambda _r: _memory(MemoryNativeSource),
    "dynamodb": _dynamodb,
    "s3": _s3,
    "firestore": _firestore,
    "cosmos": _cosmos,
    "rds": _rds,
}
EMULATED = {"dynamodb", "s3", "firestore", "cosmos", "rds"}
SCANNED = ["memory", "memory-incremental", "memory-objects", "dynamodb", "s3", "firestore", "cosmos"]
NATIVE = ["memory-native", "rds"]
ABLE: dict[str, list[str]] = {
    # Cosmos DB resumes a feed range by its continuation (read_segment_from) but records no plan
    # (plan_state/resume_plan): it does not match the Resumable protocol as it stands.
    "Resumable": ["memory", "memory-incremental", "memory-objects", "memory-native", "dynamodb",
                  "firestore"],
    "Incremental": ["memory-incremental", "s3", "cosmos"],
    "CopiesObjects": ["memory-objects", "s3"],
    "Summarizes": ["memory", "memory-incremental", "memory-objects", "memory-native", "s3"],
    "SampleCheck": ["memory", "memory-incremental", "memory-objects", "memory-native", "dynamodb",
                    "firestore", "cosmos"],
    "NativeCheck": ["memory-native", "dynamodb", "rds"],
    "NativeRestore": ["memory-native", "dynamodb", "firestore", "rds"],
    "NativeRetention": ["memory-native", "dynamodb", "rds"],
    "Drillable": ["memory-native", "rds"],
    # able to run a native job (the scanned ones only when their policy says method: native/export)
    "NativeJobSource": ["memory-native", "dynamodb", "firestore", "rds"],
}
CAPABILITIES = {c.__name__: c for c in (Resumable, Incremental, CopiesObjects, Summarizes,
                                         SampleCheck, NativeCheck, NativeRestore, NativeRetention,
                                         Drillable, NativeJobSource)}


def params(names: list[str]) -> list[Any]:
    return [pytest.param(n, marks=pytest.mark.emulator) if n in EMULATED else n for n in names]


@pytest.fixture
def rig(request: pytest.FixtureRequest) -> Rig:
    built = BUILDERS[request.param](request)
    built.name = request.param
    return built


def scanned(names: list[str]) -> list[Any]:
    return params([n for n in SCANNED if n in names])


def stored_lines(store: MemoryStore, manifest: Manifest) -> list[bytes]:
    out: list[bytes] = []
    for part in manifest.parts:
        data = store.get(layout.part_key(manifest.dataset, manifest.snapshot_id, part.name))
        out.extend(iter_lines(io.BytesIO(data)))
    return out


def committed(result: RunResult) -> Manifest:
    assert result.status == "committed", result
    assert result.manifest is not None
    return result.manifest


@pytest.fixture
def scratch() -> Iterator[list[tuple[Any, str]]]:
    """Restore targets to drop after the test (source, target)."""
    made: list[tuple[Any, str]] = []
    yield made
    for source, target in made:
        source.drop_target(target, {})


def target_for(rig: Rig, scratch: list[tuple[Any, str]]) -> tuple[Any, str]:
    source = rig.source()
    target = source.scratch_target(secrets.token_hex(4))
    scratch.append((source, target))
    return source, target


# ------------------------------------------------------------------------ what is declared


@pytest.mark.parametrize("rig", params(list(BUILDERS)), indirect=True)
def test_declared_abilities(rig: Rig) -> None:
    source = rig.make()
    declared = sorted(n for n, c in CAPABILITIES.items() if able(source, c) is not None)
    assert declared == sorted(n for n, users in ABLE.items() if rig.name in users)
    assert isinstance(source.kind, str) and source.kind
    assert (native_method(source) is not None) == (rig.name in NATIVE)


# ------------------------------------------------------------------------ the base protocol


@pytest.mark.parametrize("rig", scanned(SCANNED), indirect=True)
def test_describe_gives_the_identity_and_a_plan(rig: Rig) -> None:
    source = rig.source()
    described = Description.coerce(source.describe())
    assert described.identity["type"] == source.kind
    assert "method" not in described.identity and "consistency" not in described.identity
    json.dumps(described.identity)  # it goes into the manifest
    assert described.consistency["mode"] in ("fuzzy", "point-in-time")
    assert source.plan_segments(described.identity) >= 1


@pytest.mark.parametrize("rig", scanned(SCANNED), indirect=True)
def test_segments_partition_the_dataset_into_canonical_lines(rig: Rig) -> None:
    def read_all() -> tuple[list[bytes], tuple[str, ...]]:
        source = rig.source()
        described = Description.coerce(source.describe())
        total = source.plan_segments(described.identity)
        lines = [line for s in range(total) for page in source.read_segment(s, total)
                 for line in page]
        return lines, described.digest_ignores

    lines, ignores = read_all()
    assert lines, "the seeded items are read"
    for line in lines:
        assert b"\n" not in line and isinstance(json.loads(line), dict)
        assert line.decode("utf-8")
    assert len(set(lines)) == len(lines), "no item in two segments"
    again, _ = read_all()
    assert sorted(again) == sorted(lines), "the same items give the same bytes"
    digest = ContentDigest(ignores=ignores)
    for line in lines:
        digest.add_line(line)
    assert (digest.count, digest.hexdigest()) == rig.source().scan_digest(rig.live)


@pytest.mark.parametrize("rig", scanned(SCANNED), indirect=True)
def test_backup_restore_round_trip_keeps_every_item(rig: Rig, scratch: list[tuple[Any, str]]) -> None:
    manifest = committed(rig.backup())
    live = rig.source().scan_digest(rig.live)
    assert (manifest.totals.items, manifest.content_digest.value) == live
    assert manifest.source["type"] == rig.source().kind
    assert verify_integrity(rig.store, manifest).ok
    source, target = target_for(rig, scratch)
    result = restore(rig.policy, rig.store, manifest, target, source=source)
    assert result.items == live[0]
    assert source.scan_digest(target) == live


@pytest.mark.parametrize("rig", scanned(SCANNED), indirect=True)
def test_restore_refuses_a_non_empty_target(rig: Rig, scratch: list[tuple[Any, str]]) -> None:
    manifest = committed(rig.backup())
    source, target = target_for(rig, scratch)
    restore(rig.policy, rig.store, manifest, target, source=source)
    before = source.scan_digest(target)
    with pytest.raises(RestoreError, match="not empty|already hold"):
        restore(rig.policy, rig.store, manifest, target, source=rig.source())
    assert source.scan_digest(target) == before, "nothing written into the refused target"
    again = restore(rig.policy, rig.store, manifest, target, source=rig.source(), overwrite=True)
    assert again.items == manifest.totals.items
    assert source.scan_digest(target) == before


# ------------------------------------------------------------------------ Resumable


@pytest.mark.parametrize("rig", scanned(ABLE["Resumable"]), indirect=True)
def test_a_segment_resumes_from_a_recorded_cursor(rig: Rig) -> None:
    source = rig.source()
    described = Description.coerce(source.describe())
    total = source.plan_segments(described.identity)
    resumable = able(source, Resumable)
    assert resumable is not None
    state = json.loads(json.dumps(resumable.plan_state()))  # recorded in the store as JSON
    checked = 0
    for segment in range(total):
        pages = list(resumable.read_segment_from(segment, total, None))
        lines = [line for page, _ in pages for line in page]
        for page_no, (page, after) in enumerate(pages):
            if after is None or not page:
                continue
            for i in sorted({0, len(page) - 1}):
                cursor = json.loads(json.dumps(after(i)))
                fresh = able(rig.source(), Resumable)  # another invocation, maybe another host
                assert fresh is not None
                fresh.resume_plan(state, total)
                rest = [line for p, _ in fresh.read_segment_from(segment, total, cursor) for line in p]
                done = sum(len(p) for p, _ in pages[:page_no]) + i + 1
                assert rest == lines[done:], f"segment {segment} resumed after line {done}"
                checked += 1
    assert checked >= 2


class Countdown:
    """A scripted clock: time enough for ``calls`` checks, then none."""

    def __init__(self, calls: int) -> None:
        self.calls = calls

    def __call__(self) -> float:
        self.calls -= 1
        return 1000.0 if self.calls >= 0 else 0.0


# Cosmos DB resumes mid-segment too (by continuation), without the Resumable plan methods.
@pytest.mark.parametrize("rig", scanned([*ABLE["Resumable"], "cosmos"]), indirect=True)
def test_a_run_stopped_by_its_budget_resumes_to_the_exact_content(rig: Rig) -> None:
    rounds = 0
    while True:
        rounds += 1
        assert rounds < 100
        result = rig.backup(checkpoint_every=1, part_size=300,
                            deadline=Deadline(Countdown(2), reserve=1.0))
        if result.status == "committed":
            break
        assert result.status == "unfinished"
    assert rounds >= 2, "the budget stopped it at least once"
    manifest = committed(result)
    lines = stored_lines(rig.store, manifest)
    assert len(lines) == len(set(lines)), "no item twice"
    assert (manifest.totals.items, manifest.content_digest.value) == \
        rig.source().scan_digest(rig.live)


# ------------------------------------------------------------------------ Incremental, Summarizes


@pytest.mark.parametrize("rig", scanned(ABLE["Incremental"]), indirect=True)
def test_a_later_snapshot_restores_the_source_as_it_was_then(
    rig: Rig, scratch: list[tuple[Any, str]],
) -> None:
    first = committed(rig.backup())
    rig.mutate()
    second = committed(rig.backup())
    assert second.snapshot_id != first.snapshot_id
    live = rig.source().scan_digest(rig.live)
    source, target = target_for(rig, scratch)
    restore(rig.policy, rig.store, second, target, source=source)
    assert source.scan_digest(target) == live
    source, old = target_for(rig, scratch)
    restore(rig.policy, rig.store, first, old, source=source)
    assert source.scan_digest(old) == (first.totals.items, first.content_digest.value)


@pytest.mark.parametrize("rig", scanned(ABLE["Summarizes"]), indirect=True)
def test_what_a_source_learns_while_reading_goes_into_the_manifest(rig: Rig) -> None:
    source = rig.source()
    manifest = committed(backup(rig.policy, rig.dataset, store=rig.store, source=source))
    summary = able(source, Summarizes)
    assert summary is not None
    said = summary.read_summary()
    assert said
    for key, value in said.items():
        assert manifest.source[key] == json.loads(json.dumps(value))


# ------------------------------------------------------------------------ SampleCheck


@pytest.mark.parametrize("rig", scanned(ABLE["SampleCheck"]), indirect=True)
def test_a_sample_check_tells_matched_changed_and_deleted_items(rig: Rig) -> None:
    manifest = committed(rig.backup())
    lines = stored_lines(rig.store, manifest)
    checker = able(rig.source(), SampleCheck)
    assert checker is not None
    assert checker.sample_check(lines) == ["matched"] * len(lines)
    rig.mutate()
    statuses = able(rig.source(), SampleCheck).sample_check(lines)  # type: ignore[union-attr]
    assert len(statuses) == len(lines)
    assert sorted(s for s in statuses if s != "matched") == ["changed", "deleted"]


# ------------------------------------------------------------------------ native jobs


def native_backup(rig: Rig, source: Any) -> Manifest:
    result = backup(rig.policy, rig.dataset, store=rig.store, source=source,
                    options=RunOptions(wait=120, poll_interval=0))
    manifest = committed(result)
    assert manifest.native and manifest.method != "scan"
    return manifest


@pytest.mark.parametrize("rig", params(NATIVE), indirect=True)
def test_a_native_job_starts_without_waiting_and_is_polled_to_its_manifest(rig: Rig) -> None:
    source = rig.source()
    first = backup(rig.policy, rig.dataset, store=rig.store, source=source)
    assert first.status in ("pending", "committed") and first.snapshot_id
    rounds = 0
    result = first
    while result.status == "pending":
        rounds += 1
        assert rounds < 50
        result = backup(rig.policy, rig.dataset, store=rig.store, source=rig.source())
        assert result.snapshot_id == first.snapshot_id, "a later run continues the job"
    manifest = committed(result)
    assert manifest.native and manifest.source["type"] == source.kind
    assert manifest.consistency.mode == "point-in-time"
    checker = able(rig.source(), NativeCheck)
    assert checker is not None and checker.check_native(manifest) == []


@pytest.mark.parametrize("rig", params(NATIVE), indirect=True)
def test_native_retention_deletes_what_the_snapshot_made(rig: Rig) -> None:
    manifest = native_backup(rig, rig.source())
    retention = able(rig.source(), NativeRetention)
    assert retention is not None
    deleted = retention.delete_native(rig.dataset, manifest.snapshot_id, manifest.native or {})
    assert deleted
    problems = able(rig.source(), NativeCheck).check_native(manifest)  # type: ignore[union-attr]
    assert problems and all("gone" in p or "no longer exists" in p for p in problems)


@pytest.mark.parametrize("rig", params(NATIVE), indirect=True)
def test_a_native_restore_and_drill(rig: Rig) -> None:
    manifest = native_backup(rig, rig.source())
    restorer = able(rig.source(), NativeRestore)
    assert restorer is not None
    target = f"restored-{secrets.token_hex(3)}"
    outcome = restorer.restore_native(manifest, target, overwrite=False)
    assert outcome is not None and outcome.get("via")
    drill = able(rig.source(), Drillable)
    assert drill is not None
    report = drill.drill(manifest, poll_interval=0)
    assert report["problems"] == []


def test_memory_native_restore_refuses_a_non_empty_target_and_restores_the_backup() -> None:
    rig = _memory(MemoryNativeSource)
    manifest = native_backup(rig, rig.source())
    rig.mutate()  # after the backup: the restore gives the items as they were
    source = rig.source()
    result = restore(rig.policy, rig.store, manifest, "copy", source=source)
    assert result.via == "memory-backup" and result.items == ITEMS
    assert source.scan_digest("copy") == (ITEMS, (manifest.native or {})["digest"])
    assert source.scan_digest("copy") != source.scan_digest("items")
    with pytest.raises(RestoreError, match="not empty"):
        restore(rig.policy, rig.store, manifest, "copy", source=source)


# ------------------------------------------------------------------------ emulator-free extras


def test_memory_lines_are_lossless(tmp_path: Path) -> None:
    world = MemoryWorld()
    source = MemorySource(world, "items", segments=1)
    values = [2**80, -(2**70), 0.1, 1e-300, "\u0000\u2615\U0001f680", True, None, [], {},
              {"deep": [[[{"x": 1.5}]]]}]
    for i, value in enumerate(values):
        source.put(f"k{i}", value)
    with pytest.raises(ValueError):
        source.put("nan", float("nan"))
    manifest = committed(backup(_policy(MEMORY_POLICY), "d", store=(store := MemoryStore()),
                                source=source))
    copy = MemorySource(world, "items", segments=1)
    restore(_policy(MEMORY_POLICY), store, manifest, "copy", source=copy)
    assert world.items("copy") == world.items("items")
    copied = world.items("copy")
    assert [type(copied[f"k{i}"]) for i in range(len(values))] == [type(v) for v in values]
