"""Continuous capture of a Cosmos DB container (issue #21): items written to, and restored into,
the Cosmos DB server; the change feed comes through cloudkeep's ``ChangeFeed`` seam as the
all-versions-and-deletes mode lists it (with ``lsn``, ``crts`` and ``operationType``), because
the emulator's own change feed is not real (docs: EMULATORS.md). Phases are separated by waiting
for the next whole second on the clock."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from cloudkeep.changelog.run import capture
from cloudkeep.policy import load_policy
from cloudkeep.sources.cosmos import CosmosSource
from cloudkeep.sources.cosmos.changefeed import Change
from fixtures_azure import cosmos_policy
from helpers import cli, cli_json
from test_continuous_dynamodb import next_second
from test_cosmos import create_container, items


class LsnFeed:
    """Every write of the test, in order, as the all-versions-and-deletes change feed lists it;
    each write also goes to the real container."""

    def __init__(self, container: Any) -> None:
        self.container = container
        self.log: list[Change] = []

    def _meta(self, operation: str) -> dict[str, Any]:
        return {"operationType": operation, "lsn": len(self.log) + 1, "crts": time.time()}

    def upsert(self, doc: dict[str, Any], operation: str = "replace") -> None:
        written = self.container.upsert_item(doc)
        self.log.append(Change(doc=dict(written), meta=self._meta(operation)))

    def delete(self, item_id: str, pk: Any) -> None:
        self.container.delete_item(item_id, partition_key=pk)
        self.log.append(Change(id=item_id, partition_key=[pk], meta=self._meta("delete")))

    def retention(self) -> timedelta | None:
        return timedelta(days=1)

    def start(self, feed_range: dict[str, Any]) -> str:
        return str(len(self.log))

    def read(self, feed_range: dict[str, Any], continuation: str) -> Iterator[tuple[list[Change], str]]:
        position = int(continuation)
        while position < len(self.log):
            page = self.log[position:position + 3]
            position += len(page)
            yield page, str(position)
        yield [], str(position)


def test_change_feed_capture_restores_a_moment_and_lists_history(
        cosmos_server: Any, cosmos_client: Any, cosmos_database: str, tmp_path: Path,
        capsys: Any) -> None:
    container = create_container(cosmos_client, cosmos_database, "live")
    feed = LsnFeed(container)
    path = cosmos_policy(tmp_path, endpoint=cosmos_server.endpoint, database=cosmos_database,
                         container="live")
    doc = yaml.safe_load(path.read_text())
    doc["datasets"]["carts"]["continuous"] = True
    path.write_text(yaml.safe_dump(doc))
    policy_path = str(path)
    policy = load_policy(policy_path).policy

    def source() -> CosmosSource:
        return CosmosSource(cosmos_server.endpoint, cosmos_database, "live", key=cosmos_server.key,
                            verify_tls=False, change_feed=feed)

    for i in range(6):
        feed.upsert({"id": f"c{i}", "pk": f"p{i % 2}", "v": 0}, "create")
    first = capture(policy, "carts", once=True, source=source())
    assert first.changes == 0 and first.caught_up is not None  # the feed starts now
    assert cli(capsys, "--policy", policy_path, "run", "carts")[0] == 0  # the base snapshot
    next_second()
    feed.upsert({"id": "c1", "pk": "p1", "v": 1})
    feed.delete("c2", "p0")
    feed.upsert({"id": "n1", "pk": "p9", "v": 1}, "create")
    phase1 = items(cosmos_client, cosmos_database, "live")
    second_phase = next_second()
    assert capture(policy, "carts", once=True, source=source()).changes == 3
    feed.upsert({"id": "c1", "pk": "p1", "v": 2})
    feed.delete("n1", "p9")
    feed.upsert({"id": "c3", "pk": "p1", "v": 2})
    live = items(cosmos_client, cosmos_database, "live")
    done = capture(policy, "carts", once=True, source=source())
    assert done.changes == 3 and done.gaps == [] and done.caught_up is not None

    before = (second_phase - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    cli_json(capsys, "--policy", policy_path, "restore", "carts", "--at", before, "--into", "then")
    assert items(cosmos_client, cosmos_database, "then") == phase1
    cli_json(capsys, "--policy", policy_path, "restore", "carts", "--at",
             done.as_dict()["caught_up"], "--into", "now")
    assert items(cosmos_client, cosmos_database, "now") == live

    versions = cli_json(capsys, "--policy", policy_path, "history", "carts", "--key",
                        '{"id": "c1", "partition_key": ["p1"]}')
    logged = [v for v in versions if v["event"] != "snapshot"]
    assert [v["event"] for v in logged] == ["modify", "modify"]
    assert [v["item"]["item"]["v"] for v in logged] == [1, 2]
    assert [v["item"]["item"]["v"] for v in versions if v["event"] == "snapshot"] == [0]
    gone = cli_json(capsys, "--policy", policy_path, "history", "carts", "--key",
                    json.dumps({"id": "n1", "partition_key": ["p9"]}))
    assert [v["event"] for v in gone] == ["insert", "remove"]


def test_a_feed_without_deletes_is_refused_with_the_reason(
        cosmos_server: Any, cosmos_client: Any, cosmos_database: str, tmp_path: Path,
        capsys: Any) -> None:
    create_container(cosmos_client, cosmos_database, "plain")
    path = cosmos_policy(tmp_path, endpoint=cosmos_server.endpoint, database=cosmos_database,
                         container="plain")
    doc = yaml.safe_load(path.read_text())
    doc["datasets"]["carts"]["continuous"] = True
    path.write_text(yaml.safe_dump(doc))
    code, _, err = cli(capsys, "--policy", str(path), "capture", "carts", "--once")
    assert code == 1 and "all-versions-and-deletes" in err
    assert err.count("\n") == 1  # one line, no traceback
