"""Amazon SQS work queue (boto3, imported on first use)."""

from __future__ import annotations

import json
import threading
from typing import Any

from ..clouds.aws import AwsErrors, Fault
from ..clouds.aws import client as aws_client
from . import Delivery, QueueError

BATCH = 10  # SQS's limit per SendMessageBatch / ReceiveMessage


class SqsQueue:
    def __init__(self, url: str, *, client: Any = None) -> None:
        self.url = url
        self._client = client
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = aws_client("sqs", _region_of(self.url))
            return self._client

    def describe(self) -> str:
        return f"sqs:{self.url}"

    def send(self, bodies: list[dict[str, Any]]) -> None:
        for start in range(0, len(bodies), BATCH):
            chunk = bodies[start : start + BATCH]
            entries = [{"Id": str(i), "MessageBody": json.dumps(b, sort_keys=True)}
                       for i, b in enumerate(chunk)]
            resp = self._call("sending work items", self.client.send_message_batch,
                              QueueUrl=self.url, Entries=entries)
            if resp.get("Failed"):
                first = resp["Failed"][0]
                raise QueueError(
                    f"SQS queue {self.url}: {len(resp['Failed'])} work item(s) not sent "
                    f"({first.get('Code')}: {first.get('Message')})"
                )

    def receive(self, max_items: int = 10, wait_seconds: float = 0.0) -> list[Delivery]:
        resp = self._call("receiving work items", self.client.receive_message, QueueUrl=self.url,
                          MaxNumberOfMessages=max(1, min(BATCH, max_items)),
                          WaitTimeSeconds=int(min(20, wait_seconds)))
        return [Delivery(json.loads(m["Body"]), m["ReceiptHandle"]) for m in resp.get("Messages", [])]

    def ack(self, delivery: Delivery) -> None:
        self._call("acknowledging a work item", self.client.delete_message, QueueUrl=self.url,
                   ReceiptHandle=delivery.handle)

    def _call(self, what: str, fn: Any, **kwargs: Any) -> Any:
        with _SqsErrors(f"SQS queue {self.url}: {what}"):
            return fn(**kwargs)


def _region_of(url: str) -> str | None:
    """``https://sqs.<region>.amazonaws.com/<account>/<name>`` → the region."""
    host = url.split("://", 1)[-1].split("/", 1)[0]
    parts = host.split(".")
    return parts[1] if len(parts) > 3 and parts[0] == "sqs" else None


class _SqsErrors(AwsErrors):
    """Any botocore failure → QueueError ``SQS queue <url>: <doing> failed: <botocore's text>``."""

    def translate(self, fault: Fault) -> BaseException:
        return QueueError(f"{self.doing} failed: {fault.error}")
