"""Cosmos DB source: backup → verify → restore through the real CLI, against the Cosmos DB server
(``@vercel/cosmosdb-server``) and Azurite, compared item by item.

The emulator's change feed is not real (it returns the current documents once), so the
incremental-snapshot chain is tested through the ``ChangeFeed`` seam with a scripted feed (the
tests named ``..._with_scripted_feed_...``); the items themselves still come from, and go back
to, the emulator.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from tools.emulators import free_port

from cloudkeep import clock, layout, timeline
from cloudkeep.catalog import load_manifest, resolve
from cloudkeep.engine import backup
from cloudkeep.errors import EXIT_UNREACHABLE, RestoreError
from cloudkeep.policy import load_policy
from cloudkeep.prune import prune
from cloudkeep.restore import restore
from cloudkeep.sources.cosmos import (
    SYSTEM_PROPERTIES,
    Change,
    CosmosSource,
    CosmosWriter,
    canonical,
    decode_line,
    encode_item,
    partition_key_value,
    plan_incremental,
)
from cloudkeep.verify import verify_integrity
from fixtures_azure import cosmos_policy
from helpers import cli, cli_json

pytestmark = [pytest.mark.emulator,
              pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")]

SPECIAL_IDS = ["sp ace", "ünï©ødé 🚀", "plus+sign", "pct%20", "quote\"'", "amp&eq=x", "semi;colon",
               "colon:x", "at@host", "comma,", "star*", "brack[]{}", "dots..", " lead", "日本語-キー",
               "emoji👩‍👩‍👧", "tilde~`^", "dollar$", "pipe|", "less<more>"]


def corpus() -> list[dict[str, Any]]:
    """Documents covering nested JSON, unicode, nulls, booleans, floats, integers up to 2^53
    and ids with special characters; some without a partition key value, one with null."""
    docs: list[dict[str, Any]] = [
        {"id": "numbers", "pk": "edge", "max_safe": 2**53, "min_safe": -(2**53), "zero": 0,
         "one": 1, "neg": -42, "pi": math.pi, "tiny": 5e-324, "small": 1e-300, "big": 1.7976931348623157e308,
         "third": 1 / 3, "half": -0.5, "exp": 1.5e21, "ints": [0, 1, 2**31, 2**32 + 1, 2**53 - 1]},
        {"id": "strings", "pk": "edge", "empty": "", "newline": "a\nb\r\nc\ttab \"q\" \\ back",
         "unicode": "東京 café naïve κόσμε 🚀 \u200b", "nul": "a\u0000b", "escapes": "</script>&<>"},
        {"id": "literals", "pk": "edge", "t": True, "f": False, "none": None, "empty_list": [],
         "empty_map": {}, "mixed": [1, "two", None, True, 3.5, {"k": [False]}, []]},
        {"id": "nested", "pk": "edge", "deep": _nested(20), "ключ": {"名前": {"値": ["🚀", {"x": None}]}}},
        {"id": "no-partition-key", "value": "this document has no pk field"},
        {"id": "null-partition-key", "pk": None, "value": "pk is null"},
        {"id": "numeric-partition-key", "pk": 7, "value": "pk is a number"},
        {"id": "ttl-item", "pk": "edge", "ttl": 86400, "value": "own ttl"},
    ]
    for i, special in enumerate(SPECIAL_IDS):
        docs.append({"id": special, "pk": f"special-{i % 3}", "i": i, "name": special * 2})
    rng = random.Random(11)
    for i in range(60):
        docs.append({
            "id": f"bulk-{i:03d}", "pk": f"tenant-{i % 5}",
            "n": rng.randint(-(2**53), 2**53), "x": rng.random() * 10 ** rng.randint(-20, 20),
            "s": "".join(rng.choice("abcé東🚀 ") for _ in range(rng.randint(0, 30))),
            "tags": rng.sample(["a", "b", "c", "d"], rng.randint(0, 4)),
            "address": {"city": rng.choice(["Zürich", "Paris", "東京"]), "zip": None, "ok": i % 2 == 0},
        })
    for doc in docs:  # the container has a unique key on /name (unique within a partition)
        doc.setdefault("name", f"name of {doc['id']}")
    return docs


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"bottom": True}
    for i in range(depth):
        value = {f"level{i}": value, "list": [i, None]}
    return value


def create_container(client: Any, database: str, name: str, **options: Any) -> Any:
    from azure.cosmos import PartitionKey

    options.setdefault("partition_key", PartitionKey(path="/pk"))
    return client.get_database_client(database).create_container(name, **options)


def fill(container: Any, docs: list[dict[str, Any]]) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(container.upsert_item, docs))


def items(client: Any, database: str, name: str) -> dict[tuple[str, str], dict[str, Any]]:
    """Every document of a container without its system properties, by (id, partition key)."""
    container = client.get_database_client(database).get_container_client(name)
    paths = container.read()["partitionKey"]["paths"]
    out = {}
    for doc in container.query_items("SELECT * FROM c", enable_cross_partition_query=True):
        key = (doc["id"], json.dumps(partition_key_value(doc, paths)))
        assert key not in out, f"duplicate {key}"
        out[key] = {k: v for k, v in doc.items() if k not in SYSTEM_PROPERTIES}
    return out


@pytest.fixture
def database(cosmos_database: str) -> str:
    return cosmos_database


@pytest.fixture
def source_container(cosmos_client: Any, database: str) -> str:
    from azure.cosmos import PartitionKey

    create_container(
        cosmos_client, database, "carts", partition_key=PartitionKey(path="/pk"), default_ttl=86400,
        unique_key_policy={"uniqueKeys": [{"paths": ["/name"]}]},
        indexing_policy={"indexingMode": "consistent", "automatic": True,
                         "includedPaths": [{"path": "/*"}], "excludedPaths": [{"path": "/big/?"}]},
    )
    fill(cosmos_client.get_database_client(database).get_container_client("carts"), corpus())
    return "carts"


# --------------------------------------------------------------------------------------------
# Lines (pure)


def test_lines_are_canonical_and_keep_the_system_properties_apart() -> None:
    doc = {"id": "a", "pk": "p", "b": [1, {"z": 1, "a": None}], "é": "ü", "_rid": "r", "_ts": 5,
           "_etag": "\"e\"", "_self": "s", "_attachments": "att/"}
    line = encode_item(doc, ["/pk"])
    assert line == encode_item(dict(reversed(list(doc.items()))), ["/pk"])  # key order: no matter
    assert line == canonical(json.loads(line))
    assert "é".encode() in line  # UTF-8, not \u escapes
    parsed = json.loads(line)
    assert parsed["item"] == {"id": "a", "pk": "p", "b": [1, {"z": 1, "a": None}], "é": "ü"}
    assert parsed["_cloudkeep"] == {"_rid": "r", "_ts": 5, "_etag": "\"e\"", "_self": "s",
                                    "_attachments": "att/"}
    assert parsed["partition_key"] == ["p"]
    assert decode_line(line).doc == parsed["item"]
    # partition key values: nested and quoted paths, missing (undefined) and null values
    nested = {"id": "n", "t": {"id": 3, "a b": "x"}}
    assert partition_key_value(nested, ["/t/id", '/t/"a b"', "/missing"]) == [3, "x", {}]
    assert partition_key_value({"id": "x", "pk": None}, ["/pk"]) == [None]
    deletion = decode_line(canonical({"_cloudkeep": {}, "delete": True, "id": "gone", "partition_key": ["p"]}))
    assert (deletion.id, deletion.partition_key, deletion.doc) == ("gone", ["p"], None)
    with pytest.raises(ValueError):
        decode_line(b'{"item": {"id": 1}, "partition_key": []}')


# --------------------------------------------------------------------------------------------
# Round trip through the CLI


def test_round_trip_through_the_cli_is_lossless(
    cosmos_server: Any, cosmos_client: Any, database: str, source_container: str, azure_container: str,
    tmp_path: Path, capsys: Any,
) -> None:
    policy = cosmos_policy(tmp_path, endpoint=cosmos_server.endpoint, database=database,
                           container=source_container,
                           store={"type": "azure_blob", "container": azure_container, "prefix": "backups"})
    code, out, err = cli(capsys, "--policy", str(policy), "--debug", "run", "carts")
    assert code == 0, err
    assert cosmos_server.key not in out + err  # never logged, even with --debug
    [row] = cli_json(capsys, "--policy", str(policy), "list", "carts")
    assert row["items"] == len(corpus()) and row["consistency"] == "fuzzy"
    ref = f"carts@{row['snapshot_id']}"
    code, out, err = cli(capsys, "--policy", str(policy), "verify", ref)
    assert code == 0, out + err
    assert "OK" in out

    shown = cli_json(capsys, "--policy", str(policy), "show", ref)
    src = shown["source"]
    assert shown["method"] == "query"
    assert src["partition_key"]["paths"] == ["/pk"]
    assert src["unique_key_policy"] == {"uniqueKeys": [{"paths": ["/name"]}]}
    assert src["default_ttl"] == 86400
    assert src["indexing_policy"]["excludedPaths"] == [{"path": "/big/?"}]
    assert src["throughput"] is None and "not reported" in src["throughput_note"]  # the emulator
    assert shown["content_digest"]["ignores"] == ["_cloudkeep"]
    store, manifest = resolve(load_policy(str(policy)).policy, ref)
    raw = store.get(layout.manifest_key("carts", manifest.snapshot_id))
    assert cosmos_server.key.encode() not in raw and b"COSMOS_KEY" not in raw

    code, out, err = cli(capsys, "--policy", str(policy), "--debug", "restore", ref, "--into", "carts_restored")
    assert code == 0, err
    assert "carts_restored" in out and cosmos_server.key not in out + err

    source_items = items(cosmos_client, database, source_container)
    restored_items = items(cosmos_client, database, "carts_restored")
    assert len(source_items) == len(corpus())
    assert restored_items.keys() == source_items.keys()
    for key, doc in source_items.items():
        assert restored_items[key] == doc, f"item {key} differs after restore"
    for special in SPECIAL_IDS:
        assert any(k[0] == special for k in restored_items), special
    numbers = next(d for (i, _), d in restored_items.items() if i == "numbers")
    assert numbers["max_safe"] == 2**53 and isinstance(numbers["max_safe"], int)
    assert numbers["pi"] == math.pi and numbers["tiny"] == 5e-324

    # The target got the recorded settings; a fresh read digests to the manifest's digest.
    target = cosmos_client.get_database_client(database).get_container_client("carts_restored").read()
    assert target["partitionKey"]["paths"] == ["/pk"]
    assert target["uniqueKeyPolicy"] == {"uniqueKeys": [{"paths": ["/name"]}]}
    assert target["defaultTtl"] == 86400
    assert target["indexingPolicy"]["excludedPaths"] == [{"path": "/big/?"}]
    source = CosmosSource(cosmos_server.endpoint, database, source_container, key=cosmos_server.key,
                          verify_tls=False)
    assert source.scan_digest("carts_restored") == (len(corpus()), manifest.content_digest.value)


def test_restore_refuses_a_non_empty_target_unless_overwrite(
    cosmos_server: Any, cosmos_client: Any, database: str, tmp_path: Path, capsys: Any,
) -> None:
    from azure.cosmos import PartitionKey

    container = create_container(cosmos_client, database, "orders")
    docs = [{"id": f"o{i}", "pk": f"p{i % 3}", "v": i} for i in range(30)]
    fill(container, docs)
    policy = str(cosmos_policy(tmp_path, endpoint=cosmos_server.endpoint, database=database,
                               container="orders"))
    assert cli(capsys, "--policy", policy, "run", "carts")[0] == 0

    target = create_container(cosmos_client, database, "busy")
    target.upsert_item({"id": "o1", "pk": "p1", "v": "changed"})
    target.upsert_item({"id": "extra", "pk": "p9", "v": "not in the snapshot"})
    code, _, err = cli(capsys, "--policy", policy, "restore", "carts@latest", "--into", "busy")
    assert code == 1
    assert "not empty" in err and "--overwrite" in err and "Traceback" not in err
    assert len(items(cosmos_client, database, "busy")) == 2  # nothing was written

    code, _, err = cli(capsys, "--policy", policy, "restore", "carts@latest", "--into", "busy", "--overwrite")
    assert code == 0, err
    restored = items(cosmos_client, database, "busy")
    assert len(restored) == 31 and restored[("o1", '["p1"]')]["v"] == 1
    assert restored[("extra", '["p9"]')]["v"] == "not in the snapshot"  # left alone

    create_container(cosmos_client, database, "other_key", partition_key=PartitionKey(path="/tenant"))
    code, _, err = cli(capsys, "--policy", policy, "restore", "carts@latest", "--into", "other_key")
    assert code == 1 and "partition key" in err


def test_verify_detects_a_corrupted_blob_and_restore_refuses_it(
    cosmos_server: Any, cosmos_client: Any, database: str, azurite: Any, azure_container: str,
    tmp_path: Path, capsys: Any,
) -> None:
    from azure.storage.blob import BlobServiceClient

    fill(create_container(cosmos_client, database, "small"), [{"id": f"s{i}", "pk": "p"} for i in range(20)])
    policy = str(cosmos_policy(tmp_path, endpoint=cosmos_server.endpoint, database=database,
                               container="small",
                               store={"type": "azure_blob", "container": azure_container, "prefix": "k"}))
    assert cli(capsys, "--policy", policy, "run", "carts")[0] == 0
    shown = cli_json(capsys, "--policy", policy, "show", "carts@latest")
    part = shown["parts"][0]["name"]
    blob = BlobServiceClient.from_connection_string(azurite.connection_string).get_blob_client(
        azure_container, "k/" + layout.part_key("carts", shown["snapshot_id"], part))
    data = bytearray(blob.download_blob().readall())
    data[len(data) // 2] ^= 0x01
    blob.upload_blob(bytes(data), overwrite=True)

    code, out, _ = cli(capsys, "--policy", policy, "--format", "json", "verify", "carts@latest")
    assert code == 1
    checks = {(p["part"], p["check"]) for p in json.loads(out)["problems"]}
    assert (part, "sha256") in checks
    code, _, err = cli(capsys, "--policy", policy, "restore", "carts@latest", "--into", "never_written")
    assert code == 1 and ("sha256" in err or "damaged" in err), err


def test_unreachable_endpoint_missing_database_or_container_exit_3(
    cosmos_server: Any, cosmos_client: Any, database: str, tmp_path: Path, capsys: Any,
) -> None:
    cases = {
        "no server": (f"https://127.0.0.1:{free_port()}", database, "carts", "cannot reach"),
        "no database": (cosmos_server.endpoint, "no-such-db", "carts", "database 'no-such-db' not found"),
        "no container": (cosmos_server.endpoint, database, "no-such-container", "not found"),
    }
    for name, (endpoint, db, container, expected) in cases.items():
        policy = cosmos_policy(tmp_path, endpoint=endpoint, database=db, container=container)
        t0 = time.monotonic()
        code, out, err = cli(capsys, "--policy", str(policy), "run", "carts")
        assert code == EXIT_UNREACHABLE, (name, out, err)
        assert expected in err, (name, err)
        assert "Traceback" not in err and cosmos_server.key not in err, name
        assert time.monotonic() - t0 < 30, name


def test_tls_verification_on_by_default_names_the_setting(
    cosmos_server: Any, database: str, tmp_path: Path, capsys: Any,
) -> None:
    # The SDK itself never verifies certificates of "localhost" and "127.0.0.1": reach the same
    # server as 127.1 to see what a self-signed certificate does elsewhere.
    endpoint = cosmos_server.endpoint.replace("127.0.0.1", "127.1")
    policy = cosmos_policy(tmp_path, endpoint=endpoint, database=database, container="carts",
                           verify_tls=True)
    code, _, err = cli(capsys, "--policy", str(policy), "run", "carts")
    assert code == EXIT_UNREACHABLE and "verify_tls: false" in err


def test_a_transient_failure_resumes_the_feed_range_from_its_last_page(
    cosmos_server: Any, cosmos_client: Any, database: str,
) -> None:
    docs = [{"id": f"r{i:03d}", "pk": f"p{i % 4}"} for i in range(45)]
    fill(create_container(cosmos_client, database, "resume"), docs)
    source = CosmosSource(cosmos_server.endpoint, database, "resume", key=cosmos_server.key,
                          verify_tls=False, page_size=10)
    container = FlakyContainer(source.container_of(source.client), fail_on_page=3)
    pages = list(source._query_range(container, source.feed_ranges()[0]))
    read = [d["id"] for page in pages for d in page]
    assert sorted(read) == sorted(d["id"] for d in docs)  # no gap, no duplicate
    assert len(read) == len(set(read)) == 45
    assert container.failures == 1 and container.resumed_with is not None


class FlakyContainer:
    """Our stand-in around a real container proxy: the pager fails once, on one page, with the
    SDK's transient ``ServiceResponseError`` (a dropped connection)."""

    def __init__(self, container: Any, fail_on_page: int) -> None:
        self.container = container
        self.fail_on_page = fail_on_page
        self.failures = 0
        self.resumed_with: str | None = None

    def query_items(self, *args: Any, **kwargs: Any) -> Any:
        paged = self.container.query_items(*args, **kwargs)
        outer = self

        class Paged:
            def by_page(self, token: str | None = None) -> Iterator[Any]:
                if token is not None:
                    outer.resumed_with = token
                pager = paged.by_page(token)
                for number, page in enumerate(pager, start=1):
                    if number == outer.fail_on_page and outer.failures == 0:
                        from azure.core.exceptions import ServiceResponseError

                        outer.failures += 1
                        raise ServiceResponseError("connection dropped")
                    yield page

        return Paged()


def test_throttled_writes_wait_for_the_servers_retry_after() -> None:
    from azure.cosmos.exceptions import CosmosHttpResponseError

    class Throttling:
        """Our stand-in for a container that answers 429 twice (retry after 120 ms), then OK."""

        def __init__(self) -> None:
            self.calls: list[float] = []
            self.written: list[dict[str, Any]] = []

        def upsert_item(self, body: dict[str, Any]) -> None:
            self.calls.append(time.monotonic())
            if len(self.calls) <= 2:
                error = CosmosHttpResponseError(status_code=429, message="Request rate is large")
                error.headers = {"x-ms-retry-after-ms": "120"}
                raise error
            self.written.append(body)

    source = CosmosSource("https://cosmos.invalid", "db", "c", key="k")
    fake = Throttling()
    writer = CosmosWriter(source, fake, "c", workers=1)
    try:
        assert writer.write([encode_item({"id": "a", "pk": "p"}, ["/pk"])]) == 1
    finally:
        writer.close()
    assert fake.written == [{"id": "a", "pk": "p"}]
    gaps = [b - a for a, b in zip(fake.calls, fake.calls[1:], strict=False)]
    assert len(gaps) == 2 and all(g >= 0.11 for g in gaps), gaps


# --------------------------------------------------------------------------------------------
# Incremental snapshots


class ScriptedFeed:
    """A scripted change feed behind cloudkeep's ``ChangeFeed`` seam: the test's own writes, in
    order, every version (as the all-versions-and-deletes mode lists them). Each write also goes
    to the real container on the emulator, so the items backed up are real."""

    def __init__(self, container: Any, retention: timedelta | None = timedelta(days=1)) -> None:
        self.container = container
        self.log: list[Change] = []
        self._retention = retention
        self.reads: list[tuple[int, int]] = []

    def upsert(self, doc: dict[str, Any]) -> None:
        written = self.container.upsert_item(doc)
        self.log.append(Change(doc=dict(written), meta={"operationType": "replace"}))

    def delete(self, item_id: str, pk: Any) -> None:
        self.container.delete_item(item_id, partition_key=pk)
        self.log.append(Change(id=item_id, partition_key=[pk], meta={"operationType": "delete"}))

    def retention(self) -> timedelta | None:
        return self._retention

    def start(self, feed_range: dict[str, Any]) -> str:
        return str(len(self.log))

    def read(self, feed_range: dict[str, Any], continuation: str) -> Iterator[tuple[list[Change], str]]:
        position = start = int(continuation)
        while position < len(self.log):
            page = self.log[position : position + 7]
            position += len(page)
            yield page, str(position)
        self.reads.append((start, position))
        yield [], str(position)


def snapshot_at(minutes: int) -> str:
    return layout.snapshot_id_for(datetime(2026, 3, 1, 10, 0, tzinfo=UTC) + timedelta(minutes=minutes),
                                  f"t{minutes:04d}")


def test_incremental_chain_with_scripted_feed_restores_like_a_full_snapshot(
    cosmos_server: Any, cosmos_client: Any, database: str, tmp_path: Path, capsys: Any,
) -> None:
    container = create_container(cosmos_client, database, "live")
    feed = ScriptedFeed(container)
    for i in range(40):
        feed.upsert({"id": SPECIAL_IDS[i] if i < len(SPECIAL_IDS) else f"c{i:02d}", "pk": f"p{i % 4}",
                     "v": i, "nested": {"n": [i, None, True]}})
    policy_path = cosmos_policy(tmp_path, endpoint=cosmos_server.endpoint, database=database,
                                container="live", incremental=True, full_every=5,
                                extra_datasets={"live_full": {"incremental": False}})
    policy = load_policy(str(policy_path)).policy

    def take(minutes: int, dataset: str = "carts") -> Any:
        source = CosmosSource(cosmos_server.endpoint, database, "live", key=cosmos_server.key,
                              verify_tls=False, incremental=dataset == "carts", full_every=5,
                              change_feed=feed)
        result = backup(policy, dataset, source=source, snapshot_id=snapshot_at(minutes))
        assert result.status == "committed" and result.manifest is not None
        return result.manifest

    full = take(0)
    assert full.source["incremental"]["kind"] == "full" and full.method == "query"
    assert full.source["incremental"]["continuations"][0]["token"] == "40"
    assert full.totals.items == 40

    # Changes: updates (one twice), deletes (one with special characters), creates, a delete then
    # a re-create, a create then a delete.
    feed.upsert({"id": "c20", "pk": "p0", "v": "updated"})
    feed.upsert({"id": "c20", "pk": "p0", "v": "updated twice"})
    feed.upsert({"id": "c21", "pk": "p1", "v": "updated", "added": {"x": 1.25}})
    feed.delete(SPECIAL_IDS[1], "p1")
    feed.delete("c30", "p2")
    feed.upsert({"id": "new-1", "pk": "p9", "v": None})
    feed.delete("c31", "p3")
    feed.upsert({"id": "c31", "pk": "p3", "v": "re-created"})
    feed.upsert({"id": "short-lived", "pk": "p0"})
    feed.delete("short-lived", "p0")
    state_after_first = items(cosmos_client, database, "live")
    first = take(10)
    record = first.source["incremental"]
    assert (record["kind"], record["previous"], record["base"], record["sequence"]) == (
        "incremental", full.snapshot_id, full.snapshot_id, 1)
    assert first.method == "change-feed"
    assert first.totals.items == 7  # one line per changed item: c20 c21 ü… c30 new-1 c31 short-lived
    assert feed.reads[-1] == (40, 50)

    feed.upsert({"id": "c22", "pk": "p2", "v": "later"})
    feed.delete("new-1", "p9")
    feed.upsert({"id": SPECIAL_IDS[1], "pk": "p1", "v": "back"})
    second = take(20)
    assert second.source["incremental"]["previous"] == first.snapshot_id
    assert second.source["incremental"]["base"] == full.snapshot_id
    assert second.totals.items == 3
    reference = take(21, dataset="live_full")  # a full snapshot at the same moment

    for ref in (f"carts@{first.snapshot_id}", f"carts@{second.snapshot_id}"):
        code, out, err = cli(capsys, "--policy", str(policy_path), "verify", ref)
        assert code == 0, out + err
    code, out, err = cli(capsys, "--policy", str(policy_path), "--format", "json", "restore",
                         f"carts@{second.snapshot_id}", "--into", "from_chain")
    assert code == 0, err
    assert json.loads(out)["chain"] == [full.snapshot_id, first.snapshot_id, second.snapshot_id]
    code, _, err = cli(capsys, "--policy", str(policy_path), "restore", "live_full@latest",
                       "--into", "from_full")
    assert code == 0, err

    now = items(cosmos_client, database, "live")
    assert items(cosmos_client, database, "from_chain") == now
    assert items(cosmos_client, database, "from_full") == now
    source = CosmosSource(cosmos_server.endpoint, database, "live", key=cosmos_server.key, verify_tls=False)
    assert source.scan_digest("from_chain") == (reference.totals.items, reference.content_digest.value)

    # The middle of the chain restores the state it was taken at.
    code, _, err = cli(capsys, "--policy", str(policy_path), "restore", f"carts@{first.snapshot_id}",
                       "--into", "from_middle")
    assert code == 0, err
    assert items(cosmos_client, database, "from_middle") == state_after_first


def test_incremental_chain_with_scripted_feed_starts_over_and_prune_keeps_chains(
    cosmos_server: Any, cosmos_client: Any, database: str, tmp_path: Path, capsys: Any,
) -> None:
    container = create_container(cosmos_client, database, "rolling")
    feed = ScriptedFeed(container)
    for i in range(10):
        feed.upsert({"id": f"r{i}", "pk": "p"})
    policy_path = cosmos_policy(tmp_path, endpoint=cosmos_server.endpoint, database=database,
                                container="rolling", incremental=True, full_every=2)
    data = yaml.safe_load(policy_path.read_text())
    data["tiers"]["standard"]["retention"] = {"last": 1}
    policy_path.write_text(yaml.safe_dump(data))
    policy = load_policy(str(policy_path)).policy
    kinds = []
    for step in range(5):
        feed.upsert({"id": f"r{step}", "pk": "p", "step": step})
        source = CosmosSource(cosmos_server.endpoint, database, "rolling", key=cosmos_server.key,
                              verify_tls=False, incremental=True, full_every=2, change_feed=feed)
        with clock.simulated(timeline.id_time(snapshot_at(step))):  # taken when its id says
            manifest = backup(policy, "carts", source=source, snapshot_id=snapshot_at(step)).manifest
        assert manifest is not None
        kinds.append(manifest.source["incremental"]["kind"])
    assert kinds == ["full", "incremental", "incremental", "full", "incremental"]
    ids = [snapshot_at(step) for step in range(5)]

    report = prune(policy, "carts", datetime(2026, 3, 2, tzinfo=UTC), dry_run=True)
    assert report.decision.keep == [ids[4], ids[3]]  # the newest, and the full one it needs
    assert report.decision.reasons[ids[3]] == [f"chain of {ids[4]}"]
    assert report.decision.remove == [ids[2], ids[1], ids[0]]
    prune(policy, "carts", datetime(2026, 3, 2, tzinfo=UTC))
    code, _, err = cli(capsys, "--policy", str(policy_path), "restore", "carts@latest", "--into", "after_prune")
    assert code == 0, err
    assert items(cosmos_client, database, "after_prune") == items(cosmos_client, database, "rolling")

    # A chain whose previous snapshot is gone: verify says so, restore refuses before writing.
    store, latest = resolve(policy, "carts@latest")
    store.delete([layout.manifest_key("carts", ids[3])])
    assert not verify_integrity(store, latest).ok
    assert [p.check for p in verify_integrity(store, latest).problems] == ["chain"]
    with pytest.raises(RestoreError, match="chain is broken"):
        restore(policy, store, load_manifest(store, "carts", ids[4]), "never_created")
    assert "never_created" not in {c["id"] for c in cosmos_client.get_database_client(database).list_containers()}


def test_incremental_on_the_emulator_takes_full_snapshots_and_says_why(
    cosmos_server: Any, cosmos_client: Any, database: str, tmp_path: Path, capsys: Any,
) -> None:
    """The emulator's containers have no all-versions-and-deletes change feed: every snapshot of an
    incremental dataset is then a full one, and the manifest says why (the real SDK seam)."""
    fill(create_container(cosmos_client, database, "plain"), [{"id": f"i{i}", "pk": "p"} for i in range(5)])
    policy = str(cosmos_policy(tmp_path, endpoint=cosmos_server.endpoint, database=database,
                               container="plain", incremental=True))
    for _ in range(2):
        assert cli(capsys, "--policy", policy, "run", "carts")[0] == 0
    for row in cli_json(capsys, "--policy", policy, "list", "carts"):
        shown = cli_json(capsys, "--policy", policy, "show", row["ref"])
        record = shown["source"]["incremental"]
        assert record["kind"] == "full" and "does not report deletes" in record["reason"]
        assert "continuations" not in record and shown["totals"]["items"] == 5


@pytest.mark.parametrize(("case", "expected"), [
    ("first", "full"), ("continues", "incremental"), ("no retention", "full"),
    ("too old", "full"), ("chain full", "full"), ("other container", "full"), ("no tokens", "full"),
])
def test_plan_incremental(case: str, expected: str) -> None:
    from cloudkeep.manifest import Manifest

    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    identity = {"endpoint": "https://a", "database": "d", "container": "c", "container_rid": "r1"}
    record: dict[str, Any] = {"kind": "full", "sequence": 0, "continuations": [{"range": {}, "token": "1"}]}
    started = now - timedelta(hours=1)
    if case == "too old":
        started = now - timedelta(hours=23)
    if case == "chain full":
        record |= {"kind": "incremental", "sequence": 3}
    if case == "no tokens":
        record.pop("continuations")
    source = {"type": "cosmos", **identity, "incremental": record}
    if case == "other container":
        source["container_rid"] = "r0"
    previous = None if case == "first" else Manifest.model_validate({
        "snapshot_id": "20260301T110000Z-aaaa", "dataset": "carts", "run_id": "r", "trigger": "manual",
        "tier": "t", "store": "s", "source": source, "method": "query",
        "consistency": {"mode": "fuzzy"}, "started_at": started, "finished_at": started,
        "segments": 1, "parts": [], "totals": {"items": 0, "parts": 0, "raw_bytes": 0, "stored_bytes": 0},
        "codec": {}, "content_digest": {"value": "0" * 64}, "cloudkeep_version": "0",
    })
    retention = None if case == "no retention" else timedelta(days=1)
    plan = plan_incremental(previous, identity, retention, 3, now)
    assert plan.kind == expected, plan.reason
