"""Alert channels against real servers — SNS on moto (through the AWS tick, with its EMF metric
lines), Pub/Sub on Google's emulator, a webhook on a local HTTP server — each alert sent
once, recoveries once, secrets never in a message."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from tools.sample_data import ORDERS_TABLE_SCHEMA, seed

from cloudkeep import alerts
from cloudkeep.alerts import Alert, Notifier, PubSubChannel, WebhookChannel
from cloudkeep.catalog import snapshot_ids
from cloudkeep.metrics import METRIC_NAMES
from cloudkeep.policy import parse_policy
from cloudkeep.stores.memory import MemoryStore
from cloudkeep.stores.s3 import S3Store
from conftest import REGION, unique
from test_handlers import event

pytestmark = pytest.mark.emulator

POLICY = """\
version: 1
stores:
  vault: {{type: s3, bucket: {bucket}, prefix: cloudkeep, region: us-east-1}}
tiers:
  nightly:
    schedule: "0 2 * * *"
    rpo: 26h
    rto: 1h
    retention: {{daily: 7}}
    verify: {{drill: "0 2 * * *"}}
alerts:
  sns: {{topic_arn: "{topic}"}}
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


def val(blob: dict[str, Any], name: str) -> float:
    value = blob[name]
    return float(value[0] if isinstance(value, list) else value)


def drain(sqs: Any, queue: str) -> list[dict[str, Any]]:
    out = []
    while True:
        got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        messages = got.get("Messages", [])
        if not messages:
            return out
        for message in messages:
            body = json.loads(message["Body"])
            out.append(json.loads(body["Message"]) if "Message" in body else body)
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])


def test_aws_tick_emf_metrics_and_sns_alerts_once(
        ddb_resource: Any, s3_bucket: str, monkeypatch: pytest.MonkeyPatch,
        capfd: pytest.CaptureFixture[str]) -> None:
    import boto3

    table = unique("orders")
    created = ddb_resource.create_table(TableName=table, **ORDERS_TABLE_SCHEMA)
    created.wait_until_exists()
    seed(created, 60)
    sns = boto3.client("sns", region_name=REGION)
    sqs = boto3.client("sqs", region_name=REGION)
    topic = sns.create_topic(Name=unique("alerts"))["TopicArn"]
    queue = sqs.create_queue(QueueName=unique("inbox"))["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    text = POLICY.format(bucket=s3_bucket, table=table, missing=unique("absent"), topic=topic)
    boto3.client("s3", region_name=REGION).put_object(Bucket=s3_bucket, Key="cloudkeep.yaml", Body=text)
    monkeypatch.setenv("CLOUDKEEP_POLICY", f"s3://{s3_bucket}/cloudkeep.yaml")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "cloudkeep-tick")
    # What the Lambda tick and the Lambda verifier do (handlers/aws_lambda.tick and .verify; the
    # tick handler itself is run in test_handlers.py, which also checks its heartbeat).
    from cloudkeep import function
    from cloudkeep.metrics import EmfSink

    def aws_tick() -> Any:
        policy = function.load()
        return function.scheduled_tick(policy, function.parse_time(scheduled["time"]), EmfSink())

    scheduled = event("eventbridge_scheduled.json")
    capfd.readouterr()
    with pytest.raises(function.TickFailedError, match="backup failed for missing"):
        aws_tick()
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "cloudkeep-verify")
    function.scheduled_verify(function.load(), function.parse_time(scheduled["time"]), EmfSink())
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "cloudkeep-tick")
    out = capfd.readouterr().out
    emf = [json.loads(line) for line in out.splitlines() if line.startswith("{") and '"_aws"' in line]
    names = {m["Name"] for blob in emf for d in blob["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
    assert set(METRIC_NAMES) <= names, set(METRIC_NAMES) - names
    for blob in emf:
        metric = blob["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"]
        if metric in METRIC_NAMES:
            assert blob["dataset"] in ("orders", "missing") and blob["tier"] == "nightly", blob
            assert ["dataset", "tier"] == [d for d in blob["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0]
                                           if d != "service"]
    drill = next(b for b in emf if "RestoreDrillSeconds" in b)
    assert drill["dataset"] == "orders" and val(drill, "RestoreDrillSeconds") > 0
    assert val(next(b for b in emf if "VerificationFailed" in b), "VerificationFailed") == 0
    assert val(next(b for b in emf if "ItemsBackedUp" in b), "ItemsBackedUp") == 60
    breached = {b["dataset"]: val(b, "RpoBreached") for b in emf if "RpoBreached" in b}
    assert breached == {"orders": 0, "missing": 1}

    messages = drain(sqs, queue)
    assert sorted((m["status"], m["kind"], m["dataset"]) for m in messages) == [
        ("alert", "backup_failed", "missing"), ("alert", "rpo_breach", "missing")]
    assert all(m["text"].startswith(":rotating_light: cloudkeep ALERT: missing") for m in messages)

    # the same trigger again, and a later one: the breach stays, no message repeats
    with pytest.raises(function.TickFailedError, match="backup failed for missing"):
        aws_tick()
    assert drain(sqs, queue) == []
    store = S3Store(s3_bucket, "cloudkeep", region=REGION)
    assert len(snapshot_ids(store, "orders")) == 1
    assert {a["kind"] for a in alerts.open_alerts(store, "missing")} == {"backup_failed", "rpo_breach"}
    events = [json.loads(store.get(i.key)) for i in store.list("_audit/")
              if i.key.endswith(".json") and not i.key.startswith("_audit/policy")]
    actors = {e["event"]: e["actor"] for e in events}
    assert actors["backup"] == actors["policy_change"] == {
        "kind": "schedule", "platform": "aws", "function": "cloudkeep-tick"}
    assert actors["verify"] == {"kind": "schedule", "platform": "aws", "function": "cloudkeep-verify"}
    assert {e["event"] for e in events} == {"policy_change", "backup", "verify"}


class _Hook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        _Hook.received.append({"path": self.path, "body": json.loads(self.rfile.read(length))})
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook_server() -> Iterator[str]:
    _Hook.received = []
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_webhook_gets_slack_bodies_once_without_secrets(
        webhook_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"{webhook_server}/services/T000/B000/xoxb-very-secret-token"
    monkeypatch.setenv("CK_HOOK", url)
    monkeypatch.setenv("COSMOS_KEY", "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw==")
    policy = parse_policy("""
version: 1
stores: {v: {type: file, path: /unused}}
tiers: {t: {schedule: "0 2 * * *", rpo: 26h, retention: {daily: 7}}}
alerts: {webhook: {url_env: CK_HOOK}}
datasets:
  carts: {source: {type: cosmos, endpoint: "https://127.0.0.1:1/", database: shop, container: carts}, tier: t, store: v}
""")
    channels = alerts.channels_for(policy)
    assert [c.name for c in channels] == ["webhook"]
    notifier = Notifier(channels, alerts.secret_values(policy))
    store = MemoryStore()
    leak = (f"cannot reach {url} with key {__import__('os').environ['COSMOS_KEY']} "
            "(AccountEndpoint=https://x/;AccountKey=abc123==;)")
    at = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
    for _ in range(3):  # three ticks see the same failure: one message
        alerts.update(store, "carts", {"backup_failed": leak}, notifier, tier="t", now=at)
    alerts.update(store, "carts", {"backup_failed": None}, notifier, tier="t", now=at)
    bodies = [r["body"] for r in _Hook.received]
    assert len(bodies) == 2 and all(set(b) == {"text"} for b in bodies)
    assert "cloudkeep ALERT: carts: backup failed" in bodies[0]["text"]
    assert "RECOVERED" in bodies[1]["text"]
    for body in bodies:
        raw = json.dumps(body)
        assert "xoxb-very-secret-token" not in raw and "abc123" not in raw
        assert "C2y6yDjf5" not in raw
    assert _Hook.received[0]["path"].endswith("xoxb-very-secret-token"), "posted to the real URL"


def test_webhook_failure_names_the_variable_not_the_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CK_HOOK", "http://127.0.0.1:9/hook?token=hidden")
    channel = WebhookChannel("CK_HOOK")
    alert = Alert("alert", "rpo_breach", "d", "t", "2026-03-01T00:00:00+00:00", "late", "now")
    with pytest.raises(Exception) as caught:
        channel.send(alert)
    assert "CK_HOOK" in str(caught.value) and "hidden" not in str(caught.value)
    assert Notifier([channel]).send(alert) is False


def test_pubsub_alert_on_the_emulator(pubsub_emulator: Any) -> None:
    from google.cloud import pubsub_v1  # type: ignore[attr-defined]

    project = f"test-{unique('p').split('_')[1]}"
    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    topic = publisher.create_topic(name=f"projects/{project}/topics/cloudkeep-alerts").name
    subscription = subscriber.create_subscription(
        name=f"projects/{project}/subscriptions/inbox", topic=topic).name
    policy = parse_policy(f"""
version: 1
stores: {{v: {{type: file, path: /unused}}}}
tiers: {{t: {{schedule: "0 2 * * *", rpo: 26h, retention: {{daily: 7}}}}}}
alerts: {{pubsub: {{topic: "{topic}"}}}}
datasets:
  profiles: {{source: {{type: firestore, project: {project}}}, tier: t, store: v}}
""")
    [channel] = alerts.channels_for(policy)
    assert isinstance(channel, PubSubChannel)
    store = MemoryStore()
    notifier = Notifier([channel])
    at = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
    for _ in range(2):
        alerts.update(store, "profiles", {"rpo_breach": "newest snapshot is 2d old, RPO is 1d2h"},
                      notifier, tier="t", now=at)
    alerts.update(store, "profiles", {"rpo_breach": None}, notifier, tier="t", now=at)
    # A pull may return fewer messages than are waiting: pull until both are in (bounded).
    received: dict[str, Any] = {}
    for _ in range(20):
        got = subscriber.pull(subscription=subscription, max_messages=10, timeout=30)
        received |= {m.message.message_id: m for m in got.received_messages}
        if len(received) >= 2:
            break
    messages = [(json.loads(m.message.data), dict(m.message.attributes)) for m in received.values()]
    assert sorted(body["status"] for body, _ in messages) == ["alert", "recovery"]
    assert all(attrs["kind"] == "rpo_breach" and attrs["dataset"] == "profiles" for _, attrs in messages)


def test_cli_ticks_raise_one_rpo_alert_and_one_recovery_on_the_webhook(
        webhook_server: str, ddb_resource: Any, tmp_path: Any, capsys: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import timedelta

    from helpers import cli

    monkeypatch.setenv("CK_HOOK", f"{webhook_server}/hook")
    table = unique("orders")
    created = ddb_resource.create_table(TableName=table, **ORDERS_TABLE_SCHEMA)
    created.wait_until_exists()
    seed(created, 30)
    policy = tmp_path / "cloudkeep.yaml"
    policy.write_text(f"""version: 1
stores: {{vault: {{type: file, path: {tmp_path}/vault}}}}
tiers: {{hourly: {{schedule: "0 * * * *", rpo: 2h, retention: {{last: 48}}}}}}
alerts: {{webhook: {{url_env: CK_HOOK}}}}
datasets:
  orders: {{source: {{type: dynamodb, table: {table}, region: us-east-1}}, tier: hourly, store: vault, offset: 0m}}
""")
    start = datetime.now(UTC).replace(minute=5, second=0, microsecond=0) + timedelta(hours=1)

    def tick(hours: int) -> int:
        now = (start + timedelta(hours=hours)).isoformat()
        return cli(capsys, "--policy", str(policy), "run", "--due", "--now", now)[0]

    assert tick(0) == 0
    created.delete()
    created.wait_until_not_exists()
    assert [tick(h) for h in (1, 2, 3, 4, 5)] == [3] * 5  # the table is gone: unreachable
    recreated = ddb_resource.create_table(TableName=table, **ORDERS_TABLE_SCHEMA)
    recreated.wait_until_exists()
    seed(recreated, 30)
    assert tick(6) == 0
    assert tick(7) == 0
    texts = [r["body"]["text"] for r in _Hook.received]
    assert len(texts) == 4, texts
    assert "ALERT: orders: backup failed" in texts[0] and "ALERT: orders: RPO breached" in texts[1]
    assert "RECOVERED: orders: backup failed" in texts[2]
    assert "RECOVERED: orders: RPO breached" in texts[3]
    from cloudkeep.stores.file import FileStore

    assert alerts.load_state(FileStore(tmp_path / "vault"), "orders")["open"] == []
    [planned] = json.loads(cli(capsys, "--policy", str(policy), "--format", "json", "plan", "--now",
                               (start + timedelta(hours=7)).isoformat())[1])
    assert planned["alerts"] == [] and planned["rpo_met"] is True
