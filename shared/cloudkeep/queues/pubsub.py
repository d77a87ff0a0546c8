"""Google Cloud Pub/Sub work queue (google-cloud-pubsub, imported on first use).

Workers are normally functions triggered by the topic (the platform acknowledges a message when
the function returns); ``receive`` pulls from a subscription for CLI workers and tests."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

from ..clouds.gcp import classify
from ..clouds.lazy import Lazy
from ..errors import UsageError
from . import Delivery, QueueError


def _publisher() -> Any:
    from google.cloud import pubsub_v1  # type: ignore[attr-defined]

    return pubsub_v1.PublisherClient()


def _subscriber() -> Any:
    from google.cloud import pubsub_v1  # type: ignore[attr-defined]

    return pubsub_v1.SubscriberClient()


class PubSubQueue:
    def __init__(self, topic: str, subscription: str | None = None, *,
                 publisher: Any = None, subscriber: Any = None) -> None:
        self.topic = topic
        self.subscription = subscription
        self._publisher = Lazy(_publisher, publisher)
        self._subscriber = Lazy(_subscriber, subscriber)

    @classmethod
    def from_address(cls, address: str) -> PubSubQueue:
        topic, _, query = address.partition("?")
        if not topic.startswith("projects/") or "/topics/" not in topic:
            raise UsageError(f"bad Pub/Sub topic {topic!r} (expected projects/<p>/topics/<t>)")
        subscriptions = parse_qs(query).get("subscription") or []
        return cls(topic, subscriptions[0] if subscriptions else None)

    @property
    def publisher(self) -> Any:
        return self._publisher.get()

    @property
    def subscriber(self) -> Any:
        return self._subscriber.get()

    def describe(self) -> str:
        return f"pubsub:{self.topic}"

    def send(self, bodies: list[dict[str, Any]]) -> None:
        try:
            futures = [self.publisher.publish(self.topic, json.dumps(b, sort_keys=True).encode())
                       for b in bodies]
            for future in futures:
                future.result(timeout=60)
        except Exception as exc:
            raise QueueError(f"Pub/Sub topic {self.topic}: sending work items failed: "
                             f"{exc}") from exc

    def receive(self, max_items: int = 10, wait_seconds: float = 0.0) -> list[Delivery]:
        if not self.subscription:
            raise UsageError(f"Pub/Sub topic {self.topic}: pulling needs ?subscription=...")
        try:
            resp = self.subscriber.pull(
                request={"subscription": self.subscription, "max_messages": max_items},
                timeout=max(5.0, wait_seconds),
            )
        except Exception as exc:
            failure = classify(exc)
            if failure is not None and failure.kind == "transient" and failure.status == 504:
                return []  # DeadlineExceeded: nothing to pull within the wait
            raise QueueError(f"Pub/Sub {self.subscription}: pull failed: {exc}") from exc
        return [Delivery(json.loads(m.message.data), m.ack_id) for m in resp.received_messages]

    def ack(self, delivery: Delivery) -> None:
        try:
            self.subscriber.acknowledge(
                request={"subscription": self.subscription, "ack_ids": [delivery.handle]})
        except Exception as exc:
            raise QueueError(f"Pub/Sub {self.subscription}: ack failed: {exc}") from exc
