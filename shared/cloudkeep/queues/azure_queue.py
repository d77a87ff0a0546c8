"""Azure Storage Queue work queue (azure-storage-queue, imported on first use).

Messages are base64-encoded JSON, the encoding the Functions host's queue trigger expects by
default."""

from __future__ import annotations

import json
import os
from typing import Any

from ..clouds.azure import classify
from ..clouds.lazy import Lazy
from ..errors import UsageError
from . import Delivery, QueueError

CONNECTION_ENVS = ("AZURE_STORAGE_CONNECTION_STRING", "AzureWebJobsStorage")
VISIBILITY_TIMEOUT = 15 * 60  # seconds a received item stays invisible to other workers


class AzureQueue:
    def __init__(self, name: str, *, connection_string: str | None = None,
                 queue_url: str | None = None, client: Any = None) -> None:
        self.name = name
        self._connection_string = connection_string
        self._queue_url = queue_url
        self._client = Lazy(self._connect, client)

    @classmethod
    def from_address(cls, address: str) -> AzureQueue:
        if address.startswith("https://") or address.startswith("http://"):
            return cls(address.rstrip("/").rsplit("/", 1)[-1], queue_url=address)
        conn = next((os.environ[e] for e in CONNECTION_ENVS if os.environ.get(e)), None)
        if conn is None:
            raise UsageError(f"Azure queue {address!r}: set {CONNECTION_ENVS[0]} or give the "
                             "queue's URL (https://<account>.queue.core.windows.net/<name>)")
        return cls(address, connection_string=conn)

    @property
    def client(self) -> Any:
        return self._client.get()

    def _connect(self) -> Any:
        from azure.storage.queue import BinaryBase64DecodePolicy, BinaryBase64EncodePolicy, QueueClient

        encode, decode = BinaryBase64EncodePolicy(), BinaryBase64DecodePolicy()
        if self._connection_string:
            return QueueClient.from_connection_string(
                self._connection_string, self.name, message_encode_policy=encode,
                message_decode_policy=decode)
        from azure.identity import DefaultAzureCredential

        return QueueClient.from_queue_url(
            self._queue_url or "", credential=DefaultAzureCredential(),
            message_encode_policy=encode, message_decode_policy=decode)

    def describe(self) -> str:
        return f"azure_queue:{self._queue_url or self.name}"

    def send(self, bodies: list[dict[str, Any]]) -> None:
        for body in bodies:
            self._call("sending a work item", self.client.send_message,
                       json.dumps(body, sort_keys=True).encode())

    def receive(self, max_items: int = 10, wait_seconds: float = 0.0) -> list[Delivery]:
        def take() -> list[Delivery]:
            pager = self.client.receive_messages(max_messages=max(1, min(32, max_items)),
                                                 visibility_timeout=VISIBILITY_TIMEOUT)
            return [Delivery(json.loads(m.content), m) for m in pager]

        result: list[Delivery] = self._call("receiving work items", take)
        return result

    def ack(self, delivery: Delivery) -> None:
        self._call("acknowledging a work item", self.client.delete_message, delivery.handle)

    def _call(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception as exc:
            if classify(exc) is None:
                raise
            raise QueueError(f"Azure queue {self.name}: {what} failed: "
                             f"{str(exc).splitlines()[0]}") from exc
