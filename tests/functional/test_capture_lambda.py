"""The DynamoDB Streams capture Lambda (handlers/aws_capture.py) fed real event payloads: records
read with GetRecords from DynamoDB Local's NEW_AND_OLD_IMAGES stream, shaped as Lambda delivers
them (``eventSourceARN``, the creation time in epoch seconds, binary as base64), in batches that
arrive twice and out of order. ``restore --at`` from the log the handler wrote gives the table
as it was; a poison record is reported for retry and, once Lambda gives up, its failure record
becomes a gap that ``--at`` refuses.

DynamoDB Local stamps ApproximateCreationDateTime to the minute (shared/EMULATORS.md), so the
phases of the test are put in different minutes: the test waits for the wall clock's next
minute (a deterministic wait, not a guess)."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import REGION, unique
from helpers import cli, cli_json, scan_all

pytestmark = pytest.mark.emulator

TABLE_SCHEMA: dict[str, Any] = {
    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
    "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"},
                             {"AttributeName": "sk", "AttributeType": "N"}],
    "BillingMode": "PAY_PER_REQUEST",
    "StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
}


@dataclass
class LambdaContext:
    function_name: str = "cloudkeep-capture-stream"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:cloudkeep-capture-stream"
    aws_request_id: str = "6b1c2f0e-0d1f-4a47-9a43-2a8c1c7e0b11"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


def next_minute() -> None:
    """Wait until the wall clock enters the next minute (DynamoDB Local's stream time unit)."""
    start = datetime.now(UTC).replace(second=0, microsecond=0)
    while datetime.now(UTC).replace(second=0, microsecond=0) == start:
        time.sleep(0.2)


def lambda_value(value: Any) -> Any:
    """An attribute value as a Lambda event carries it (binary as base64 text)."""
    if isinstance(value, dict):
        return {k: (base64.b64encode(v).decode() if k == "B" else
                    [base64.b64encode(b).decode() for b in v] if k == "BS" else lambda_value(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [lambda_value(v) for v in value]
    return value


def lambda_record(record: dict[str, Any], stream_arn: str) -> dict[str, Any]:
    """A GetRecords record in the shape of a Lambda DynamoDB Streams event record."""
    body = dict(record["dynamodb"])
    body["ApproximateCreationDateTime"] = body["ApproximateCreationDateTime"].timestamp()
    for image in ("Keys", "NewImage", "OldImage"):
        if image in body:
            body[image] = {k: lambda_value(v) for k, v in body[image].items()}
    return {**{k: v for k, v in record.items() if k != "dynamodb"}, "dynamodb": body,
            "eventSourceARN": stream_arn}


def stream_records(endpoint: str, stream_arn: str) -> list[dict[str, Any]]:
    """Every record of the stream so far (GetRecords from TRIM_HORIZON, shard by shard)."""
    import boto3

    streams = boto3.client("dynamodbstreams", region_name=REGION, endpoint_url=endpoint)
    out = []
    for shard in streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(StreamArn=stream_arn, ShardId=shard["ShardId"],
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while iterator:
            page = streams.get_records(ShardIterator=iterator, Limit=1000)
            out.extend(page["Records"])
            if not page["Records"]:
                break
            iterator = page.get("NextShardIterator")
    return out


def item(pk: str, sk: int, **attrs: Any) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"N": str(sk)}, **attrs}


@pytest.fixture
def table(ddb_client: Any) -> tuple[str, str]:
    name = unique("capture")
    ddb_client.create_table(TableName=name, **TABLE_SCHEMA)
    desc = ddb_client.describe_table(TableName=name)["Table"]
    return name, desc["LatestStreamArn"]


def policy_file(tmp_path: Path, table: str) -> Path:
    policy = {
        "version": 1,
        "stores": {"vault": {"type": "file", "path": str(tmp_path / "vault")}},
        "tiers": {"standard": {"schedule": "0 2 * * *", "rpo": "26h", "retention": {"daily": 7}}},
        "datasets": {"orders": {"source": {"type": "dynamodb", "table": table, "region": REGION},
                                "tier": "standard", "store": "vault", "continuous": True}},
    }
    path = tmp_path / "cloudkeep.yaml"
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    return path


def deliver(handler: Any, records: list[dict[str, Any]]) -> dict[str, Any]:
    reply: dict[str, Any] = handler({"Records": records}, LambdaContext())
    return reply


def test_lambda_batches_twice_and_out_of_order_restore_at_any_moment(
        ddb_local: Any, ddb_client: Any, table: tuple[str, str], tmp_path: Path, capsys: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from handlers import aws_capture

    name, stream_arn = table
    path = policy_file(tmp_path, name)
    monkeypatch.setenv("CLOUDKEEP_POLICY", str(path))
    for i in range(12):
        ddb_client.put_item(TableName=name, Item=item("p", i, v={"N": "0"}, b={"B": bytes([i, 255])}))
    code, _, err = cli(capsys, "--policy", str(path), "run", "orders")
    assert code == 0, err
    next_minute()
    # phase 1: inserts, updates, deletes (item 3 changes in both phases)
    for i in range(12, 16):
        ddb_client.put_item(TableName=name, Item=item("p", i, v={"N": "1"}))
    for i in range(0, 5):
        ddb_client.update_item(TableName=name, Key={"pk": {"S": "p"}, "sk": {"N": str(i)}},
                               UpdateExpression="SET v = :v, s = :s",
                               ExpressionAttributeValues={":v": {"N": "1"}, ":s": {"SS": ["a", "b"]}})
    for i in (5, 6):
        ddb_client.delete_item(TableName=name, Key={"pk": {"S": "p"}, "sk": {"N": str(i)}})
    next_minute()
    before_phase_two = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(seconds=1)
    phase_one = scan_all(ddb_client, name)
    # phase 2
    ddb_client.update_item(TableName=name, Key={"pk": {"S": "p"}, "sk": {"N": "3"}},
                           UpdateExpression="SET v = :v", ExpressionAttributeValues={":v": {"N": "2"}})
    ddb_client.delete_item(TableName=name, Key={"pk": {"S": "p"}, "sk": {"N": "12"}})
    ddb_client.put_item(TableName=name, Item=item("q", 1, v={"N": "2"}))
    ddb_client.put_item(TableName=name, Item=item("p", 5, v={"N": "2"}))  # deleted in phase 1, back

    records = [lambda_record(r, stream_arn) for r in stream_records(ddb_local.endpoint, stream_arn)]
    assert len(records) >= 12 + 4 + 5 + 2 + 4
    batches = [records[i:i + 5] for i in range(0, len(records), 5)]
    # out of order (the last batch first, two swapped), one delivered twice, all again at the end
    order = [batches[-1], *batches[:2], batches[3], batches[2], batches[1], *batches[4:-1], *batches]
    for batch in order:
        assert deliver(aws_capture.stream, batch) == {"batchItemFailures": []}

    at = before_phase_two.strftime("%Y-%m-%dT%H:%M:%SZ")
    code, _, err = cli(capsys, "--policy", str(path), "restore", "orders", "--at", at,
                       "--into", f"{name}-at1")
    assert code == 0, err
    assert scan_all(ddb_client, f"{name}-at1") == phase_one
    # a `capture --once` (the same stream through GetRecords: every change again, replayed to
    # the same state) records that the log is complete up to now
    newest = max(r["dynamodb"]["ApproximateCreationDateTime"] for r in records)
    # every change is made before this capture, which completes the log up to its `caught_up`
    done = cli_json(capsys, "--policy", str(path), "capture", "orders", "--once")
    assert done["caught_up"] is not None
    assert done["caught_up"] >= datetime.fromtimestamp(newest, UTC).isoformat()[:19]
    code, _, err = cli(capsys, "--policy", str(path), "restore", "orders", "--at",
                       done["caught_up"], "--into", f"{name}-now")
    assert code == 0, err
    assert scan_all(ddb_client, f"{name}-now") == scan_all(ddb_client, name)


def test_a_poison_record_is_retried_then_recorded_as_a_gap(
        ddb_local: Any, ddb_client: Any, table: tuple[str, str], tmp_path: Path, capsys: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from handlers import aws_capture

    from cloudkeep.changelog import list_gaps
    from cloudkeep.policy import load_policy
    from cloudkeep.registry import store_for_dataset

    name, stream_arn = table
    path = policy_file(tmp_path, name)
    monkeypatch.setenv("CLOUDKEEP_POLICY", str(path))
    code, _, err = cli(capsys, "--policy", str(path), "run", "orders")
    assert code == 0, err
    for i in range(6):
        ddb_client.put_item(TableName=name, Item=item("p", i, v={"N": str(i)}))
    records = [lambda_record(r, stream_arn) for r in stream_records(ddb_local.endpoint, stream_arn)]
    poison = json.loads(json.dumps(records[3]))
    poison["eventName"] = "TRUNCATE"  # not a change cloudkeep can replay
    batch = [*records[:3], poison, *records[4:]]
    reply = deliver(aws_capture.stream, batch)
    assert reply == {"batchItemFailures": [{"itemIdentifier": poison["dynamodb"]["SequenceNumber"]}]}
    policy = load_policy(str(path)).policy
    store = store_for_dataset(policy, "orders")
    assert list_gaps(store, "orders") == []  # Lambda retries (and bisects) first

    # Lambda gives up: the failure destination gets the batch's description, then captureFailures
    first = datetime.fromtimestamp(poison["dynamodb"]["ApproximateCreationDateTime"], UTC)
    failure = {
        "requestContext": {"requestId": "c9d7a8f0", "condition": "RetryAttemptsExhausted",
                           "functionArn": LambdaContext.invoked_function_arn,
                           "approximateInvokeCount": 6},
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "version": "1.0", "timestamp": datetime.now(UTC).isoformat(),
        "DDBStreamBatchInfo": {
            "shardId": "shardId-00000001796665103320-57701eb8",
            "startSequenceNumber": poison["dynamodb"]["SequenceNumber"],
            "endSequenceNumber": poison["dynamodb"]["SequenceNumber"],
            "approximateArrivalOfFirstRecord": first.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "approximateArrivalOfLastRecord": first.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "batchSize": 1, "streamArn": stream_arn},
    }
    sqs = {"Records": [{"messageId": "m-1", "body": json.dumps(failure), "eventSource": "aws:sqs"},
                       {"messageId": "m-2", "body": "not json", "eventSource": "aws:sqs"}]}
    assert aws_capture.failures(sqs, LambdaContext()) == {"batchItemFailures": [{"itemIdentifier": "m-2"}]}
    gaps = list_gaps(store, "orders")
    assert len(gaps) == 1 and gaps[0].end is None and "RetryAttemptsExhausted" in gaps[0].reason
    done = cli_json(capsys, "--policy", str(path), "capture", "orders", "--once")
    assert done["caught_up"] is not None  # the log is complete up to now, but for the open gap
    code, _, err = cli(capsys, "--policy", str(path), "restore", "orders", "--at",
                       done["caught_up"], "--into", f"{name}-gap")
    assert code == 2 and "inside a gap in the change log" in err and "RetryAttemptsExhausted" in err


def test_a_table_of_the_same_name_in_another_region_is_another_table(
        ddb_local: Any, ddb_client: Any, table: tuple[str, str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Records of ``orders`` in eu-west-1 enter only the dataset of that region's table, never
    the log of a dataset backing up a table of the same name elsewhere; a stream of a table no
    dataset captures is skipped (not failed)."""
    from handlers import aws_capture

    from cloudkeep.changelog import list_gaps
    from cloudkeep.policy import load_policy
    from cloudkeep.registry import store_for_dataset

    name, stream_arn = table
    path = policy_file(tmp_path, name)
    doc = yaml.safe_load(path.read_text())
    other = "eu-west-1" if REGION != "eu-west-1" else "us-west-2"
    doc["datasets"]["orders_there"] = {**doc["datasets"]["orders"],
                                       "source": {"type": "dynamodb", "table": name, "region": other}}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    monkeypatch.setenv("CLOUDKEEP_POLICY", str(path))
    ddb_client.put_item(TableName=name, Item=item("p", 1, v={"N": "1"}))
    records = [lambda_record(r, stream_arn) for r in stream_records(ddb_local.endpoint, stream_arn)]
    here = [dict(r, eventSourceARN=":".join([*r["eventSourceARN"].split(":", 5)[:3], REGION,
                                               *r["eventSourceARN"].split(":", 5)[4:]]))
            for r in records]
    stranger = [dict(r, eventSourceARN=r["eventSourceARN"].replace(f"table/{name}/", "table/nobody/"))
                for r in records]
    assert deliver(aws_capture.stream, here + stranger) == {"batchItemFailures": []}
    policy = load_policy(str(path)).policy
    assert list(store_for_dataset(policy, "orders").list("orders/changelog/"))
    assert not list(store_for_dataset(policy, "orders_there").list("orders_there/changelog/"))
    failure = {"DDBStreamBatchInfo": {
        "shardId": "s", "startSequenceNumber": "1", "endSequenceNumber": "1", "batchSize": 1,
        "approximateArrivalOfFirstRecord": "2026-12-07T10:00:00Z",
        "streamArn": here[0]["eventSourceARN"]}}
    sqs = {"Records": [{"messageId": "m-1", "body": json.dumps(failure), "eventSource": "aws:sqs"}]}
    assert aws_capture.failures(sqs, LambdaContext()) == {"batchItemFailures": []}
    store = store_for_dataset(policy, "orders")
    assert len(list_gaps(store, "orders")) == 1 and list_gaps(store, "orders_there") == []
