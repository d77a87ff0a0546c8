"""The fan-out worker entry points of every cloud, invoked in-process with real event payloads:
the AWS tick dispatches a snapshot's segments to moto's SQS, the SQS-triggered worker reads them
(one item delivered twice, one garbage message); the Pub/Sub CloudEvent worker of Google Cloud
and the Azure queue trigger do the same with their messages."""

from __future__ import annotations

import base64
import copy
import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from cloudkeep.catalog import snapshot_ids
from cloudkeep.engine import RunOptions, backup
from cloudkeep.policy import load_policy
from cloudkeep.queues.inprocess import InProcessQueue
from conftest import REGION, ROOT, unique
from test_handlers import LambdaContext, aws_setup, event, only_orders  # noqa: F401


@pytest.fixture(autouse=True)
def keep_logging() -> Any:
    """Loading the Google Cloud and Azure handlers installs their JSON logging on the
    ``cloudkeep`` logger; put the previous set-up back for the tests that follow."""
    import logging

    import handlers.aws_lambda  # noqa: F401 - its logging set-up is the one to keep

    logger = logging.getLogger("cloudkeep")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]


def sqs_event(bodies: list[str]) -> dict[str, Any]:
    template = event("sqs_work_items.json")["Records"][0]
    records = []
    for n, body in enumerate(bodies):
        record = copy.deepcopy(template)
        record["messageId"] = f"msg-{n}"
        record["body"] = body
        records.append(record)
    return {"Records": records}


def test_aws_tick_dispatches_to_sqs_and_the_worker_commits_once(
    aws_setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch,  # noqa: F811
) -> None:
    import boto3
    import handlers.aws_lambda as aws_lambda

    only_orders(aws_setup)
    sqs = boto3.client("sqs", region_name=REGION)
    url = sqs.create_queue(QueueName=unique("work"))["QueueUrl"]
    monkeypatch.setenv("CLOUDKEEP_WORK_QUEUE", f"sqs:{url}")
    reply = aws_lambda.tick(event("eventbridge_scheduled.json"), LambdaContext())
    [orders] = reply["datasets"]
    assert orders["status"] == "unfinished" and orders["dispatched"] == orders["segments"] >= 1
    assert snapshot_ids(aws_setup["store"], "orders") == []

    bodies: list[str] = []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not got:
            break
        bodies += [m["Body"] for m in got]
    assert len(bodies) == orders["segments"]
    # SQS delivers at least once: the first item twice, and one message that is no work item.
    out = aws_lambda.work(sqs_event([bodies[0], *bodies, "not a work item"]), LambdaContext())
    assert out == {"batchItemFailures": []}
    [snapshot] = snapshot_ids(aws_setup["store"], "orders")
    assert snapshot == orders["snapshot_id"]
    # A redelivery after the commit changes nothing.
    assert aws_lambda.work(sqs_event(bodies[:1]), LambdaContext()) == {"batchItemFailures": []}
    assert snapshot_ids(aws_setup["store"], "orders") == [snapshot]


def dispatch_in_process(policy_url: str) -> tuple[Any, list[dict[str, Any]]]:
    policy = load_policy(policy_url).policy
    queue = InProcessQueue()
    result = backup(policy, "orders", options=RunOptions(queue=queue))
    assert result.status == "unfinished"
    return result, [d.body for d in queue.receive(100)]


def test_gcp_work_function_takes_pubsub_work_items(
    aws_setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch,  # noqa: F811
) -> None:
    import functions_framework

    only_orders(aws_setup)
    monkeypatch.delenv("CLOUDKEEP_WORK_QUEUE", raising=False)
    result, items = dispatch_in_process(f"s3://{aws_setup['bucket']}/cloudkeep.yaml")
    app = functions_framework.create_app(target="work", source=str(ROOT / "handlers" / "gcp_function.py"),
                                         signature_type="cloudevent")
    client = app.test_client()
    ce = event("pubsub_cloudevent.json")
    headers = {f"ce-{k}": v for k, v in ce["attributes"].items() if k != "datacontenttype"}
    headers["Content-Type"] = "application/json"
    for body in [*items, items[0]]:  # one duplicate
        data = copy.deepcopy(ce["data"])
        data["message"]["data"] = base64.b64encode(json.dumps(body).encode()).decode()
        assert client.post("/", headers=headers, data=json.dumps(data)).status_code == 200
    assert snapshot_ids(aws_setup["store"], "orders") == [result.snapshot_id]


def test_azure_queue_trigger_takes_work_items(
    aws_setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch,  # noqa: F811
) -> None:
    from azure.functions.queue import QueueMessage

    only_orders(aws_setup)
    monkeypatch.delenv("CLOUDKEEP_WORK_QUEUE", raising=False)
    spec = importlib.util.spec_from_file_location(
        "cloudkeep_function_app_work", Path(ROOT) / "handlers" / "azure" / "function_app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    functions = {f.get_function_name(): f for f in module.app.get_functions()}
    binding = functions["work"].get_bindings_dict()["bindings"][0]
    assert binding["type"] == "queueTrigger"
    assert binding["queueName"] == "%CLOUDKEEP_WORK_QUEUE_NAME%"
    assert binding["connection"] == "AzureWebJobsStorage"

    result, items = dispatch_in_process(f"s3://{aws_setup['bucket']}/cloudkeep.yaml")
    for body in [items[0], *items]:
        module.work(QueueMessage(body=json.dumps(body).encode()))
    assert snapshot_ids(aws_setup["store"], "orders") == [result.snapshot_id]
