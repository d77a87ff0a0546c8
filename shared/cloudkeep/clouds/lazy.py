"""SDK clients built on first use: a handler imports its cloud's SDK only when it talks to it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Lazy(Generic[T]):
    """A value built by ``build`` on the first :meth:`get`, once, whichever thread asks first
    (``value``: one given up front, e.g. a test's scripted client)."""

    def __init__(self, build: Callable[[], T], value: T | None = None) -> None:
        self._build = build
        self._value = value
        self._lock = threading.Lock()

    def get(self) -> T:
        with self._lock:
            if self._value is None:
                self._value = self._build()
            return self._value
