"""The one clock every recorded timestamp comes from.

Normally it is the wall clock (UTC). ``--now`` replays a simulated clock: :func:`simulated`
installs, for the duration of a command, a clock that starts at the given time and advances
with real elapsed time, so a replayed run stamps its snapshots (started / finished), audit
records, verification records, slot records and alerts with simulated times that keep their
real order and durations.

The clock is process-wide (not per thread): fan-out workers and thread pools started inside a
replayed command see the same simulated time. Lease expiry in locks compares the store's own
object times and so stays on the wall clock (:func:`wall`).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta


class SimulatedClock:
    """Starts at ``start`` and advances with real elapsed (monotonic) time. :meth:`set` moves it
    to another time (a replay stepping from tick to tick)."""

    def __init__(self, start: datetime) -> None:
        self._lock = threading.Lock()
        self.set(start)

    def set(self, at: datetime) -> None:
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        with self._lock:
            self._start = at.astimezone(UTC)
            self._t0 = time.monotonic()

    def now(self) -> datetime:
        with self._lock:
            return self._start + timedelta(seconds=time.monotonic() - self._t0)


_stack: list[SimulatedClock] = []
_stack_lock = threading.Lock()


def wall() -> datetime:
    """The real time (UTC), whatever clock is installed."""
    return datetime.now(UTC)


def now() -> datetime:
    """The current time as cloudkeep records it: the simulated clock when one is installed,
    else the wall clock (UTC)."""
    with _stack_lock:
        current = _stack[-1] if _stack else None
    return current.now() if current is not None else wall()


def is_simulated() -> bool:
    with _stack_lock:
        return bool(_stack)


@contextlib.contextmanager
def simulated(start: datetime | SimulatedClock) -> Iterator[SimulatedClock]:
    """Within the block, :func:`now` is a simulated clock starting at ``start`` (or the given
    clock). Blocks nest; leaving one restores the clock before it."""
    clock = start if isinstance(start, SimulatedClock) else SimulatedClock(start)
    with _stack_lock:
        _stack.append(clock)
    try:
        yield clock
    finally:
        with _stack_lock:
            _stack.remove(clock)
