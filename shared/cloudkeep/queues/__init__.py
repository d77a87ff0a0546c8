"""Work queues for fan-out: a snapshot's segments become messages that workers take.

Every queue gives at-least-once delivery: a message may come more than once, to two workers at
the same time, or after its work is done. The work items (``fanout.py``) are idempotent, so that
is safe. Implementations (each imports its cloud's SDK on first use):

- ``inprocess:`` — a queue in this process (the CLI's local fan-out and tests);
- ``sqs:<queue url>`` — Amazon SQS (a queue-triggered Lambda with a dead-letter queue);
- ``pubsub:projects/<p>/topics/<t>[?subscription=projects/<p>/subscriptions/<s>]`` — Google
  Cloud Pub/Sub (a push/Eventarc-triggered function; pulling needs the subscription);
- ``azure_queue:<account queue url>`` or ``azure_queue:<name>`` — Azure Storage Queues (a queue
  trigger); with a bare name, the connection string comes from ``AZURE_STORAGE_CONNECTION_STRING``
  (else ``AzureWebJobsStorage``), with a URL the identity comes from ``DefaultAzureCredential``.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import UnreachableError, UsageError

QUEUE_ENV = "CLOUDKEEP_WORK_QUEUE"


class QueueError(UnreachableError):
    """The work queue could not be reached (exit code 3)."""


@dataclass
class Delivery:
    """One received message: its JSON body and what the queue needs to acknowledge it."""

    body: dict[str, Any]
    handle: Any = None


class WorkQueue(Protocol):
    def describe(self) -> str: ...

    def send(self, bodies: list[dict[str, Any]]) -> None:
        """Enqueue JSON bodies (all or raise)."""
        ...

    def receive(self, max_items: int = 10, wait_seconds: float = 0.0) -> list[Delivery]:
        """Up to ``max_items`` messages; each stays invisible to others until acked or until the
        queue's visibility timeout passes."""
        ...

    def ack(self, delivery: Delivery) -> None:
        """Remove a handled message."""
        ...


# kind → (module:class, how it is built from the address: "" for the class itself, None: it
# takes no address). Imported on first use, so only the queue's own cloud SDK is loaded.
_QUEUES: dict[str, tuple[str, str | None]] = {
    "inprocess": ("cloudkeep.queues.inprocess:InProcessQueue", None),
    "sqs": ("cloudkeep.queues.sqs:SqsQueue", ""),
    "pubsub": ("cloudkeep.queues.pubsub:PubSubQueue", "from_address"),
    "azure_queue": ("cloudkeep.queues.azure_queue:AzureQueue", "from_address"),
}


def open_queue(url: str) -> WorkQueue:
    """The queue a ``<kind>:<address>`` string names (see the module docstring)."""
    kind, _, address = url.partition(":")
    entry = _QUEUES.get(kind)
    if entry is not None and (address or entry[1] is None):
        target, factory = entry
        module, _, name = target.partition(":")
        cls = getattr(importlib.import_module(module), name)
        if factory is None:
            queue: WorkQueue = cls()
        elif factory:
            queue = getattr(cls, factory)(address)
        else:
            queue = cls(address)
        return queue
    raise UsageError(
        f"bad work queue {url!r}: use inprocess:, sqs:<queue url>, "
        "pubsub:projects/<p>/topics/<t>[?subscription=...] or azure_queue:<queue url or name>"
    )


def queue_from_env() -> WorkQueue | None:
    """The deployed functions' work queue (``$CLOUDKEEP_WORK_QUEUE``), if fan-out is set up."""
    url = os.environ.get(QUEUE_ENV)
    return open_queue(url) if url else None
