"""A work queue inside one process: the CLI's local fan-out, and tests (which may deliver an
item twice on purpose)."""

from __future__ import annotations

import collections
import threading
from typing import Any

from . import Delivery


class InProcessQueue:
    def __init__(self) -> None:
        self._items: collections.deque[dict[str, Any]] = collections.deque()
        self._lock = threading.Lock()
        self.sent = 0

    def describe(self) -> str:
        return "inprocess:"

    def send(self, bodies: list[dict[str, Any]]) -> None:
        with self._lock:
            self._items.extend(dict(b) for b in bodies)
            self.sent += len(bodies)

    def receive(self, max_items: int = 10, wait_seconds: float = 0.0) -> list[Delivery]:
        with self._lock:
            out: list[Delivery] = []
            while self._items and len(out) < max_items:
                out.append(Delivery(self._items.popleft()))
            return out

    def ack(self, delivery: Delivery) -> None:
        return None

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
