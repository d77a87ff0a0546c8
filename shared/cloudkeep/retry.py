"""One retry/backoff helper for every adapter: capped exponential backoff with jitter.

Adapters retry what their SDK does not (unprocessed batch items, 429s after the SDK's own retries,
contention on a write batch) with :class:`Backoff`; nothing else in cloudkeep writes a sleep
loop. The sleep function is injectable, so a test never waits.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field


def delay(attempt: int, *, base: float, cap: float, jitter: bool = True) -> float:
    """Seconds to wait before retry number ``attempt`` (0-based): ``min(cap, base * 2**attempt)``
    scaled by a jitter in [0.5, 1.0) (unless ``jitter`` is False)."""
    pause = float(min(cap, base * (2 ** min(attempt, 32))))
    return pause * random.uniform(0.5, 1.0) if jitter else pause


@dataclass
class Backoff:
    """Attempts with capped exponential backoff, bounded by a count and, optionally, a budget.

    ``attempts``: how many tries in all (None: no limit but the budget); ``budget``: seconds
    (monotonic) from the first wait after which no further wait is started — a number, or a
    function asked at each wait (e.g. short until a service has answered once, longer after).
    ``wait()`` sleeps before the next attempt and says whether there is one; ``retry_after`` (a
    server's hint, seconds) replaces the computed delay; ``jitter=False`` with ``cap == base``
    gives a fixed interval (polling). ``reset()`` after progress: the next
    failure starts again from the base delay, with a fresh budget."""

    attempts: int | None
    base: float = 0.1
    cap: float = 5.0
    budget: float | Callable[[], float] | None = None
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    jitter: bool = True
    attempt: int = 0
    _since: float | None = field(default=None, repr=False)

    def wait(self, retry_after: float | None = None) -> bool:
        """Sleep before the next attempt; False (without sleeping) when none is left."""
        if self.attempts is not None and self.attempt + 1 >= self.attempts:
            return False
        pause = retry_after if retry_after is not None else delay(self.attempt, base=self.base,
                                                                   cap=self.cap, jitter=self.jitter)
        now = self.clock()
        if self._since is None:
            self._since = now
        budget = self.budget() if callable(self.budget) else self.budget
        if budget is not None and now - self._since + pause > budget:
            return False
        self.attempt += 1
        self.sleep(pause)
        return True

    def reset(self) -> None:
        """Progress was made: count attempts and the budget afresh from the next failure."""
        self.attempt = 0
        self._since = None
