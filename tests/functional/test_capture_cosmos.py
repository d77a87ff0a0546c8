"""The Azure Function's Cosmos DB trigger (handlers/azure/function_app.py ``capture``) fed
document batches as the trigger hands them over: the container's documents read back from the
Cosmos DB server (with their system properties) plus the change feed's ``_lsn``, delivered as
``azure.functions.DocumentList`` — twice, and out of order. The log's lines are the scan
snapshot's lines."""

from __future__ import annotations

import importlib.util
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from capturelog import latest_versions, logged_changes
from cloudkeep.catalog import committed, latest
from cloudkeep.changelog import list_gaps
from cloudkeep.codec import listing_records
from cloudkeep.policy import load_policy
from cloudkeep.registry import store_for_dataset
from cloudkeep.sources.cosmos.codec import canonical
from conftest import ROOT
from fixtures_azure import cosmos_policy
from helpers import cli
from test_continuous_dynamodb import next_second

pytestmark = [pytest.mark.emulator,
              pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")]


def azure_app() -> Any:
    spec = importlib.util.spec_from_file_location(
        "cloudkeep_function_app_capture", ROOT / "handlers" / "azure" / "function_app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cosmos_trigger_batches_capture_the_scan_readers_lines(
        tmp_path: Path, cosmos_server: Any, cosmos_client: Any, cosmos_database: str, capsys: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import azure.functions as func
    import yaml
    from azure.cosmos import PartitionKey

    db = cosmos_client.get_database_client(cosmos_database)
    carts = db.create_container("carts", partition_key=PartitionKey(path="/tenant"))
    db.create_container("leases", partition_key=PartitionKey(path="/id"))
    path = cosmos_policy(tmp_path, endpoint=cosmos_server.endpoint, database=cosmos_database,
                         container="carts")
    policy = yaml.safe_load(path.read_text())
    policy["datasets"]["carts"]["continuous"] = True
    path.write_text(yaml.safe_dump(policy, sort_keys=False, allow_unicode=True))
    monkeypatch.setenv("CLOUDKEEP_POLICY", str(path))
    monkeypatch.setenv("CLOUDKEEP_ROLE", "backup")
    monkeypatch.setenv("CLOUDKEEP_COSMOS_DATABASE", cosmos_database)
    monkeypatch.setenv("CLOUDKEEP_COSMOS_CONTAINER", "carts")
    monkeypatch.setenv("CLOUDKEEP_COSMOS_LEASES", "leases")
    module = azure_app()
    functions = {f.get_function_name(): f for f in module.app.get_functions()}
    assert set(functions) == {"tick", "work", "capture"}
    binding = functions["capture"].get_bindings_dict()["bindings"][0]
    assert binding["type"] == "cosmosDBTrigger" and binding["leaseContainerName"] == "%CLOUDKEEP_COSMOS_LEASES%"

    lsn = iter(range(100, 10_000))

    def feed(ids: list[str]) -> Any:
        """The documents as the trigger delivers them: stored form plus the change feed's _lsn."""
        docs = []
        for item_id in ids:
            stored = next(iter(carts.query_items("SELECT * FROM c WHERE c.id = @id",
                                                 parameters=[{"name": "@id", "value": item_id}],
                                                 enable_cross_partition_query=True)))
            docs.append(func.Document.from_dict({**stored, "_lsn": next(lsn)}))
        return func.DocumentList(docs)

    carts.upsert_item({"id": "c1", "tenant": "t1", "n": 1, "tags": ["ä", None, True]})
    carts.upsert_item({"id": "c2", "tenant": "t2", "price": 0.1, "nested": {"a": [1, {"b": None}]}})
    first = feed(["c1", "c2"])
    carts.upsert_item({"id": "c1", "tenant": "t1", "n": 2, "tags": []})
    carts.upsert_item({"id": "c3", "tenant": "t1", "ünï": "©"})
    second = feed(["c1", "c3"])
    module.capture(second)  # out of order
    module.capture(first)
    module.capture(second)  # and again

    store = store_for_dataset(load_policy(str(path)).policy, "carts")
    changes = logged_changes(store, "carts")
    assert len(changes) == 4  # the repeated batch is written once
    final = latest_versions(store, "carts")
    assert json.loads(final[json.dumps({"id": "c1", "partition_key": ["t1"]})].line)["item"]["n"] == 2

    code, _, err = cli(capsys, "--policy", str(path), "run", "carts")
    assert code == 0, err
    manifest = latest(store, "carts")
    assert manifest is not None
    snapshot = {r["item"]["id"]: canonical(r) for r in listing_records(store, manifest)}
    assert set(snapshot) == {"c1", "c2", "c3"}
    for item_id, line in snapshot.items():
        key = json.dumps({"id": item_id, "partition_key": json.loads(line)["partition_key"]})
        assert final[key].line == line, item_id

    # The trigger's latest-version feed reports no deletes: once a batch came through the
    # trigger after the base snapshot, a moment after that snapshot is refused with the reason
    # (restoring it would bring back an item deleted meanwhile), and the gap is recorded once.
    carts.upsert_item({"id": "c3", "tenant": "t1", "n": 3})
    later = feed(["c3"])
    module.capture(later)
    carts.delete_item("c2", partition_key="t2")  # never reaches the trigger
    module.capture(later)  # delivered again: no second gap, no second alert
    taken = manifest_capture_time(store, manifest)
    gaps = [g for g in list_gaps(store, "carts") if "no deletes" in g.reason
            and datetime.fromisoformat(g.recorded_at) > taken]
    assert len(gaps) == 1 and gaps[0].end is None
    assert gaps[0].start <= taken  # from the base snapshot (or the batch's first second) on
    next_second()  # a moment inside the log's window, after the base snapshot
    carts.upsert_item({"id": "c4", "tenant": "t1"})
    module.capture(feed(["c4"]))
    stamp = next(carts.query_items("SELECT c._ts FROM c WHERE c.id = 'c4'",
                                   enable_cross_partition_query=True))["_ts"]
    moment = (datetime.fromtimestamp(stamp - 1, UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    code, _, err = cli(capsys, "--policy", str(path), "restore", "carts", "--at", moment,
                       "--into", "carts_then")
    assert code == 2 and "reports no deletes" in err and "gap" in err, err
    assert err.count("\n") == 1
    names = {c["id"] for c in cosmos_client.get_database_client(cosmos_database).list_containers()}
    assert "carts_then" not in names  # nothing written
    # a poison document is not raised (the host would retry it, then skip it silently): the
    # rest of its batch is captured and the document is a recorded gap
    poison = func.DocumentList([func.Document.from_dict({"id": "bad", "tenant": "t1"}),
                                *feed(["c1"])])
    module.capture(poison)
    assert [g.reason for g in list_gaps(store, "carts") if "bad Cosmos DB" in g.reason] == [
        "1 bad Cosmos DB trigger document(s) on " + cosmos_database + "/carts not captured: "
        "document 'bad' has no _ts"]


def manifest_capture_time(store: Any, manifest: Any) -> datetime:
    """The snapshot's capture time, as the catalog reports it."""
    return next(s.captured_at for s in committed(store, "carts")
                if s.snapshot_id == manifest.snapshot_id)
