"""Google Cloud Pub/Sub work queue (google-cloud-pubsub, imported on first use).

Workers are normally functions triggered by the topic (the platform acknowledges a message when
the function returns); ``receive`` pulls from a subscription for CLI workers and tests."""

from __future__ import annotations

import json
import threading
from typing import Any
from urllib.parse import parse_qs

from ..errors import UsageError
from . import Delivery, QueueError


class PubSubQueue:
    def __init__(self, topic: str, subscription: str | None = None, *,
                 publisher: Any = None, subscriber: Any = None) -> None:
        self.topic = topic
        self.subscription = subscription
        self._publisher = publisher
        self._subscriber = subscriber
        self._lock = threading.Lock()

    @classmethod
    def from_address(cls, address: str) -> PubSubQueue:
        topic, _, query = address.partition("?")
        if not topic.startswith("projects/") or "/topics/" not in topic:
            raise UsageError(f"bad Pub/Sub topic {topic!r} (expected projects/<p>/topics/<t>)")
        subscriptions = parse_qs(query).get("subscription") or []
        return cls(topic, subscriptions[0] if subscriptions else None)

    @property
    def publisher(self) -> Any:
        with self._lock:
            if self._publisher is None:
                from google.cloud import pubsub_v1  # type: ignore[attr-defined]

                self._publisher = pubsub_v1.PublisherClient()
            return self._publisher

    @property
    def subscriber(self) -> Any:
        with self._lock:
            if self._subscriber is None:
                from google.cloud import pubsub_v1  # type: ignore[attr-defined]

                self._subscriber = pubsub_v1.SubscriberClient()
            return self._subscriber

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
            if type(exc).__name__ == "DeadlineExceeded":
                return []
            raise QueueError(f"Pub/Sub {self.subscription}: pull failed: {exc}") from exc
        return [Delivery(json.loads(m.message.data), m.ack_id) for m in resp.received_messages]

    def ack(self, delivery: Delivery) -> None:
        try:
            self.subscriber.acknowledge(
                request={"subscription": self.subscription, "ack_ids": [delivery.handle]})
        except Exception as exc:
            raise QueueError(f"Pub/Sub {self.subscription}: ack failed: {exc}") from exc
