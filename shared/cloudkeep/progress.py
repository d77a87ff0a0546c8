"""Progress reporting: a small protocol the engine calls; the CLI picks a bar or log lines."""

from __future__ import annotations

import logging
import threading
import time
from typing import Protocol

log = logging.getLogger(__name__)


class Progress(Protocol):
    def start(self, label: str, total_items: int | None) -> None: ...

    def advance(self, items: int, raw_bytes: int) -> None: ...

    def finish(self) -> None: ...


class NullProgress:
    def start(self, label: str, total_items: int | None) -> None:
        pass

    def advance(self, items: int, raw_bytes: int) -> None:
        pass

    def finish(self) -> None:
        pass


def eta_text(done: int, total: int | None, rate: float) -> str:
    """``, ETA 1m05s`` while items remain and the rate is known; else empty."""
    if not total or done >= total or rate <= 0:
        return ""
    seconds = int(round((total - done) / rate))
    return f", ETA {seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else (
        f", ETA {seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f", ETA {seconds}s")


class LogProgress:
    """Plain log lines every ``interval`` seconds (for non-terminals: CI, functions, pipes)."""

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self.label = ""
        self.items = 0
        self.bytes = 0
        self.total: int | None = None
        self._t0 = self._last = time.monotonic()

    def start(self, label: str, total_items: int | None) -> None:
        self.label, self.items, self.bytes, self.total = label, 0, 0, total_items
        self._t0 = self._last = time.monotonic()

    def advance(self, items: int, raw_bytes: int) -> None:
        with self._lock:
            self.items += items
            self.bytes += raw_bytes
            now = time.monotonic()
            if now - self._last >= self.interval:
                self._last = now
                self._emit(now)

    def _emit(self, now: float) -> None:
        rate = self.items / max(now - self._t0, 1e-9)
        log.info("%s: %d items, %.1f MB, %.0f items/s%s", self.label, self.items, self.bytes / 1e6,
                 rate, eta_text(self.items, self.total, rate))

    def finish(self) -> None:
        self._emit(time.monotonic())


class RichProgress:
    """A live bar on a terminal: items, bytes, rate."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import (
            Progress as RichBar,
        )

        self._bar = RichBar(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("items · {task.fields[mb]:.1f} MB · {task.fields[rate]:.0f} items/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._lock = threading.Lock()
        self._task: object = None
        self._t0 = time.monotonic()
        self._bytes = 0
        self._items = 0

    def start(self, label: str, total_items: int | None) -> None:
        self._bar.start()
        self._t0 = time.monotonic()
        self._bytes = self._items = 0
        self._task = self._bar.add_task(label, total=total_items or None, mb=0.0, rate=0.0)

    def advance(self, items: int, raw_bytes: int) -> None:
        with self._lock:
            self._items += items
            self._bytes += raw_bytes
            rate = self._items / max(time.monotonic() - self._t0, 1e-9)
            self._bar.update(self._task, advance=items, mb=self._bytes / 1e6, rate=rate)  # type: ignore[arg-type]

    def finish(self) -> None:
        self._bar.stop()
