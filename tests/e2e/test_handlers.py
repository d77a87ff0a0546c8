"""Every cloud's handler invoked in-process with real event payloads (tests/events/) against the
emulators; plus fresh-process checks of what each handler imports, and how long it takes."""

from __future__ import annotations

import base64
import importlib.util
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tools.sample_data import ORDERS_TABLE_SCHEMA, seed

from cloudkeep.catalog import snapshot_ids
from cloudkeep.stores.s3 import S3Store
from conftest import REGION, ROOT, unique

pytestmark = pytest.mark.emulator

EVENTS = Path(__file__).resolve().parents[1] / "events"


def event(name: str) -> Any:
    return json.loads((EVENTS / name).read_text())


@dataclass
class LambdaContext:
    function_name: str = "cloudkeep-tick"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:cloudkeep-tick"
    aws_request_id: str = "52fdfc07-2182-154f-163f-5f0f9a621d72"

    def get_remaining_time_in_millis(self) -> int:
        return 900_000


POLICY = """\
version: 1
stores:
  vault: {{type: s3, bucket: {bucket}, prefix: cloudkeep, region: us-east-1}}
tiers:
  nightly: {{schedule: "0 2 * * *", rpo: 26h, retention: {{daily: 7}}}}
datasets:
  orders:
    source: {{type: dynamodb, table: {table}, region: us-east-1}}
    tier: nightly
    store: vault
    offset: 0m
  missing:
    source: {{type: dynamodb, table: {missing}, region: us-east-1}}
    tier: nightly
    store: vault
    offset: 0m
"""


@pytest.fixture
def aws_setup(ddb_resource: Any, s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A seeded table, a vault bucket on moto, and the policy in the bucket (CLOUDKEEP_POLICY)."""
    import boto3

    table = unique("orders")
    created = ddb_resource.create_table(TableName=table, **ORDERS_TABLE_SCHEMA)
    created.wait_until_exists()
    seed(created, 120)
    text = POLICY.format(bucket=s3_bucket, table=table, missing=unique("absent"))
    boto3.client("s3", region_name=REGION).put_object(Bucket=s3_bucket, Key="cloudkeep.yaml", Body=text)
    monkeypatch.setenv("CLOUDKEEP_POLICY", f"s3://{s3_bucket}/cloudkeep.yaml")
    return {"bucket": s3_bucket, "table": table, "store": S3Store(s3_bucket, "cloudkeep", region=REGION)}


def only_orders(setup: dict[str, Any]) -> None:
    """Rewrite the policy in the bucket without the dataset whose table does not exist."""
    import boto3

    s3 = boto3.client("s3", region_name=REGION)
    text = s3.get_object(Bucket=setup["bucket"], Key="cloudkeep.yaml")["Body"].read().decode()
    s3.put_object(Bucket=setup["bucket"], Key="cloudkeep.yaml", Body=text.split("  missing:")[0])


@pytest.fixture
def aws_lambda() -> Any:
    import handlers.aws_lambda

    return handlers.aws_lambda


def test_aws_tick_backs_up_what_is_due_once_and_reports_failures(
    aws_setup: dict[str, Any], capfd: pytest.CaptureFixture[str], aws_lambda: Any
) -> None:
    scheduled = event("eventbridge_scheduled.json")
    # One dataset's table is missing: the tick still backs up the other, then fails.
    with pytest.raises(Exception, match="backup failed for missing"):
        aws_lambda.tick(scheduled, LambdaContext())
    store = aws_setup["store"]
    assert len(snapshot_ids(store, "orders")) == 1
    out = capfd.readouterr().out
    emf = [json.loads(line) for line in out.splitlines() if line.startswith("{") and '"_aws"' in line]
    names = {m["Name"] for blob in emf for d in blob["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
    assert {"BackupSucceeded", "BackupFailed", "ItemsBackedUp", "BytesStored"} <= names
    assert "TickCompleted" in names  # the heartbeat the TickNotReporting alarm watches
    succeeded = [b for b in emf if "BackupSucceeded" in b]
    assert succeeded and succeeded[0]["dataset"] == "orders" and succeeded[0]["tier"] == "nightly"
    logs = [json.loads(line) for line in out.splitlines() if line.startswith("{") and '"level"' in line]
    committed = [entry for entry in logs if "committed" in str(entry.get("message"))]
    assert committed and committed[0]["dataset"] == "orders" and committed[0].get("run_id")

    # The same EventBridge event delivered again: no second snapshot, and now no failure either.
    only_orders(aws_setup)
    reply = aws_lambda.tick(scheduled, LambdaContext())
    assert reply["ok"] is True
    assert [d["status"] for d in reply["datasets"]] == ["not-due"]
    assert len(snapshot_ids(store, "orders")) == 1
    snapshot = snapshot_ids(store, "orders")[0]
    assert snapshot.startswith("20261128T020000Z-")  # the slot of the event's time


def test_aws_invoke_actions(aws_setup: dict[str, Any], aws_lambda: Any) -> None:
    only_orders(aws_setup)
    reply = aws_lambda.invoke(event("lambda_invoke_backup.json"), LambdaContext())
    assert reply["statusCode"] == 200 and reply["ok"]
    [done] = reply["datasets"]
    assert done["status"] == "committed" and done["items"] == 120

    ref = f"orders@{done['snapshot_id']}"
    verified = aws_lambda.invoke({"action": "verify", "ref": ref}, LambdaContext())
    assert verified["statusCode"] == 200 and verified["ok"] is True and verified["items"] == 120

    target = unique("restored")
    restored = aws_lambda.invoke({"action": "restore", "ref": ref, "into": target}, LambdaContext())
    assert restored["statusCode"] == 200 and restored["items"] == 120
    refused = aws_lambda.invoke({"action": "restore", "ref": ref, "into": target}, LambdaContext())
    assert refused["statusCode"] == 422 and "not empty" in refused["error"]

    planned = aws_lambda.invoke({"action": "plan", "now": "2026-11-28T02:15:00Z"}, LambdaContext())
    assert planned["statusCode"] == 200 and planned["datasets"][0]["dataset"] == "orders"

    bad = aws_lambda.invoke({"action": "explode"}, LambdaContext())
    assert bad["statusCode"] == 400 and "unknown action" in bad["error"]
    missing = aws_lambda.invoke({"action": "verify", "ref": "orders@20200101T000000Z-abcdef"}, LambdaContext())
    assert missing["statusCode"] == 404


def test_gcp_tick_and_invoke(aws_setup: dict[str, Any]) -> None:
    import functions_framework

    only_orders(aws_setup)
    source = str(ROOT / "handlers" / "gcp_function.py")
    ce = event("pubsub_cloudevent.json")
    headers = {f"ce-{k}": v for k, v in ce["attributes"].items() if k != "datacontenttype"}
    headers["Content-Type"] = "application/json"
    tick_app = functions_framework.create_app(target="tick", source=source, signature_type="cloudevent")
    client = tick_app.test_client()
    first = client.post("/", headers=headers, data=json.dumps(ce["data"]))
    again = client.post("/", headers=headers, data=json.dumps(ce["data"]))  # at-least-once delivery
    assert (first.status_code, again.status_code) == (200, 200)
    assert len(snapshot_ids(aws_setup["store"], "orders")) == 1
    assert json.loads(base64.b64decode(ce["data"]["message"]["data"])) == {"tick": True}

    http_app = functions_framework.create_app(target="invoke", source=source, signature_type="http")
    resp = http_app.test_client().post("/", json={"action": "plan", "now": "2026-11-28T02:15:00Z"})
    assert resp.status_code == 200 and resp.get_json()["datasets"][0]["due"] is False
    bad = http_app.test_client().post("/", data="not json", headers={"Content-Type": "text/plain"})
    assert bad.status_code == 400


def test_gcp_prune_and_verify_functions(aws_setup: dict[str, Any]) -> None:
    """The pruner's and the verifier's Cloud Functions take their own schedulers' events."""
    import functions_framework

    only_orders(aws_setup)
    source = str(ROOT / "handlers" / "gcp_function.py")
    ce = event("pubsub_cloudevent.json")
    headers = {f"ce-{k}": v for k, v in ce["attributes"].items() if k != "datacontenttype"}
    headers["Content-Type"] = "application/json"
    tick = functions_framework.create_app(target="tick", source=source, signature_type="cloudevent")
    assert tick.test_client().post("/", headers=headers, data=json.dumps(ce["data"])).status_code == 200
    for target in ("prune", "verify"):
        app = functions_framework.create_app(target=target, source=source, signature_type="cloudevent")
        assert app.test_client().post("/", headers=headers, data=json.dumps(ce["data"])).status_code == 200
    assert len(snapshot_ids(aws_setup["store"], "orders")) == 1  # retention keeps it


@pytest.mark.parametrize(("role", "names"), [
    ("backup", {"tick", "work"}), ("prune", {"prune"}), ("restore", {"verify", "invoke"}),
    ("all", {"tick", "work", "prune", "verify", "invoke"}),
])
def test_each_azure_app_has_only_its_roles_functions(role: str, names: set[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOUDKEEP_ROLE", role)
    functions = {f.get_function_name() for f in _azure_app().app.get_functions()}
    assert functions == names


def _azure_app() -> Any:
    spec = importlib.util.spec_from_file_location(
        "cloudkeep_function_app", ROOT / "handlers" / "azure" / "function_app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_azure_timer_and_http(aws_setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    import azure.functions as func
    from azure.functions.timer import TimerRequest

    monkeypatch.setenv("CLOUDKEEP_TICK", "0 */5 * * * *")
    module = _azure_app()
    functions = {f.get_function_name(): f for f in module.app.get_functions()}
    timer_binding = functions["tick"].get_bindings_dict()["bindings"][0]
    assert timer_binding["type"] == "timerTrigger" and timer_binding["schedule"] == "0 */5 * * * *"
    http_binding = functions["invoke"].get_bindings_dict()["bindings"][0]
    assert http_binding["authLevel"] == func.AuthLevel.FUNCTION

    payload = event("azure_timer.json")
    timer = TimerRequest(past_due=payload["IsPastDue"], schedule_status=payload["ScheduleStatus"],
                         schedule=payload["Schedule"])
    with pytest.raises(Exception, match="backup failed for missing"):
        module.tick(timer)  # the timer runs "now": the dataset with a table is backed up
    assert len(snapshot_ids(aws_setup["store"], "orders")) == 1

    only_orders(aws_setup)
    module.tick(timer)  # same slot again: nothing more
    assert len(snapshot_ids(aws_setup["store"], "orders")) == 1
    req = func.HttpRequest("POST", "/api/invoke", body=json.dumps({"action": "plan"}).encode(),
                           headers={"Content-Type": "application/json"})
    resp = module.invoke(req)
    assert resp.status_code == 200 and json.loads(resp.get_body())["ok"] is True


def test_azure_timer_defaults_to_every_15_minutes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLOUDKEEP_TICK", raising=False)
    functions = {f.get_function_name(): f for f in _azure_app().app.get_functions()}
    assert functions["tick"].get_bindings_dict()["bindings"][0]["schedule"] == "0 */15 * * * *"


IMPORT_PROBE = """
import json, sys, time
sys.path[:0] = [{root!r}, {root!r} + "/shared"]
t0 = time.perf_counter()
{statement}
elapsed = time.perf_counter() - t0
print(json.dumps({{"seconds": elapsed, "modules": sorted(sys.modules)}}))
"""


def probe(statement: str) -> dict[str, Any]:
    code = IMPORT_PROBE.format(root=str(ROOT), statement=statement)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                         cwd=ROOT, env={"PATH": "/usr/bin:/bin", "HOME": "/tmp",
                                        "AWS_DEFAULT_REGION": "us-east-1"})
    return json.loads(out.stdout)


def loaded(modules: list[str], prefix: str) -> bool:
    return any(m == prefix or m.startswith(prefix + ".") for m in modules)


@pytest.mark.parametrize(("name", "statement", "forbidden"), [
    ("aws", "import handlers.aws_lambda", ["google.cloud.firestore", "google.cloud.storage",
                                            "google.api_core", "grpc", "azure.core", "azure.functions"]),
    ("gcp", "import handlers.gcp_function", ["boto3", "botocore", "azure.core", "azure.functions"]),
    ("azure", "import importlib.util as u; s = u.spec_from_file_location('fa', 'handlers/azure/function_app.py'); "
              "m = u.module_from_spec(s); s.loader.exec_module(m)",
     ["boto3", "botocore", "google.cloud.firestore", "google.api_core", "grpc"]),
])
def test_each_handler_imports_only_its_own_cloud(name: str, statement: str, forbidden: list[str]) -> None:
    result = probe(statement)
    for prefix in forbidden:
        assert not loaded(result["modules"], prefix), f"the {name} handler imports {prefix}"
    print(f"{name} handler import time: {result['seconds'] * 1000:.0f} ms")


def test_gcp_tick_backs_up_firestore_into_gcs(
    tmp_path: Path, firestore_rest: Any, gcp_project: str, gcs_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The Cloud Function as deployed: Firestore documents (with a subcollection) into GCS."""
    import functions_framework

    from cloudkeep.stores.gcs import GcsStore
    from fixtures_gcp import gcp_policy

    firestore_rest.write({
        "users/u1": {"name": {"stringValue": "Ada"}, "n": {"integerValue": "9007199254740993"}},
        "users/u1/orders/o1": {"total": {"doubleValue": 12.5}},
        "users/u2": {"name": {"stringValue": "Grace"}},
    })
    policy = gcp_policy(tmp_path, project=gcp_project, bucket=gcs_bucket, collections=["users"])
    policy.write_text(policy.read_text().replace("tier: standard", "tier: standard\n    offset: 0m"))
    monkeypatch.setenv("CLOUDKEEP_POLICY", str(policy))
    source = str(ROOT / "handlers" / "gcp_function.py")
    ce = event("pubsub_cloudevent.json")
    headers = {f"ce-{k}": v for k, v in ce["attributes"].items() if k != "datacontenttype"}
    headers["Content-Type"] = "application/json"
    client = functions_framework.create_app(target="tick", source=source,
                                            signature_type="cloudevent").test_client()
    assert client.post("/", headers=headers, data=json.dumps(ce["data"])).status_code == 200
    assert client.post("/", headers=headers, data=json.dumps(ce["data"])).status_code == 200
    store = GcsStore(gcs_bucket, "backups/cloudkeep")
    [snapshot] = snapshot_ids(store, "profiles")
    assert snapshot.startswith("20261128T020000Z-")
    from cloudkeep.catalog import load_manifest

    manifest = load_manifest(store, "profiles", snapshot)
    assert manifest.totals.items == 3 and manifest.consistency.mode == "point-in-time"


def test_azure_timer_backs_up_cosmos_into_blob_storage(
    tmp_path: Path, cosmos_server: Any, cosmos_client: Any, cosmos_database: str, azurite: Any,
    azure_container: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The Azure Function as deployed: a Cosmos DB container into Blob Storage (Azurite), once per
    slot however often the timer fires, then verified and restored through the HTTP function."""
    import azure.functions as func
    from azure.cosmos import PartitionKey
    from azure.functions.timer import TimerRequest

    from cloudkeep.catalog import load_manifest
    from cloudkeep.stores.azure_blob import AzureBlobStore
    from fixtures_azure import cosmos_policy

    db = cosmos_client.get_database_client(cosmos_database)
    carts = db.create_container("carts", partition_key=PartitionKey(path="/pk"))
    docs = [{"id": f"c{i}", "pk": f"u{i % 7}", "n": i, "tags": ["ä", None, True], "price": i / 3}
            for i in range(60)]
    for doc in docs:
        carts.upsert_item(doc)
    policy = cosmos_policy(tmp_path, endpoint=cosmos_server.endpoint, database=cosmos_database,
                           container="carts",
                           store={"type": "azure_blob", "container": azure_container, "prefix": "backups"})
    monkeypatch.setenv("CLOUDKEEP_POLICY", str(policy))
    module = _azure_app()
    payload = event("azure_timer.json")
    timer = TimerRequest(past_due=payload["IsPastDue"], schedule_status=payload["ScheduleStatus"],
                         schedule=payload["Schedule"])
    module.tick(timer)
    module.tick(timer)  # fired twice in one slot: one snapshot
    store = AzureBlobStore(azure_container, "backups",
                           connection_string=azurite.connection_string)
    [snapshot] = snapshot_ids(store, "carts")
    manifest = load_manifest(store, "carts", snapshot)
    assert manifest.totals.items == len(docs) and manifest.trigger == "schedule"

    def call(body: dict[str, Any]) -> dict[str, Any]:
        req = func.HttpRequest("POST", "/api/invoke", body=json.dumps(body).encode(),
                               headers={"Content-Type": "application/json"})
        resp = module.invoke(req)
        assert resp.status_code == 200, resp.get_body()
        return dict(json.loads(resp.get_body()))

    assert call({"action": "verify", "ref": f"carts@{snapshot}"})["ok"] is True
    call({"action": "restore", "ref": f"carts@{snapshot}", "into": "carts_restored"})
    restored = db.get_container_client("carts_restored")
    strip = ("_rid", "_self", "_etag", "_attachments", "_ts")
    got = {d["id"]: {k: v for k, v in d.items() if k not in strip} for d in restored.read_all_items()}
    assert got == {d["id"]: d for d in docs}
