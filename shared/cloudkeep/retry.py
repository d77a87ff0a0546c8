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


def delay(attempt: int, *, base: float, cap: float) -> float:
    """Seconds to wait before retry number ``attempt`` (0-based): ``min(cap, base * 2**attempt)``
    scaled by a jitter in [0.5, 1.0)."""
    return float(min(cap, base * (2 ** min(attempt, 32))) * random.uniform(0.5, 1.0))


@dataclass
class Backoff:
    """Attempts with capped exponential backoff, bounded by a count and, optionally, a budget.

    ``attempts``: how many tries in all; ``budget``: seconds (monotonic) from the first wait after
    which no further wait is started. ``wait()`` sleeps before the next attempt and says whether
    there is one; ``retry_after`` (a server's hint, seconds) replaces the computed delay."""

    attempts: int
    base: float = 0.1
    cap: float = 5.0
    budget: float | None = None
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    attempt: int = 0
    _since: float | None = field(default=None, repr=False)

    def wait(self, retry_after: float | None = None) -> bool:
        """Sleep before the next attempt; False (without sleeping) when none is left."""
        if self.attempt + 1 >= self.attempts:
            return False
        pause = retry_after if retry_after is not None else delay(self.attempt, base=self.base,
                                                                   cap=self.cap)
        now = self.clock()
        if self._since is None:
            self._since = now
        if self.budget is not None and now - self._since + pause > self.budget:
            return False
        self.attempt += 1
        self.sleep(pause)
        return True
