"""The rate of a restore: a token bucket shared by every writer thread, and backing off on throttling.

``restore --max-rate ITEMS_PER_S`` caps the items written per second, whatever the number of
threads: every write takes its items' tokens from one :class:`TokenBucket` first.
``--capacity-share 0.5`` (a provisioned DynamoDB table) caps it at that share of the target's
write capacity (``capabilities.ReportsWriteCapacity``), counting the write units an item of the
snapshot's average size costs. Both given: the lower rate.

Whatever the rate, a write the target throttles (``errors.ThrottledError``: DynamoDB's
ProvisionedThroughputExceeded, a 429) is tried again after a capped, jittered backoff
(``cloudkeep.retry.Backoff``) instead of failing the restore, for as long as the target makes
progress at least once every :data:`THROTTLE_BUDGET` seconds. Writing the same items again is
safe: restore writes are puts of whole items.

Unset, the governor costs one ``try`` per batch of items: no bucket, no clock, no splitting.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .capabilities import ReportsWriteCapacity, able
from .errors import ThrottledError, UsageError
from .manifest import Manifest
from .retry import Backoff
from .sources import RestoreWriter

log = logging.getLogger(__name__)

THROTTLE_BUDGET = 900.0  # seconds without any progress after which a throttled restore fails
THROTTLE_BASE = 0.2  # seconds: the first backoff
THROTTLE_CAP = 20.0  # seconds: the longest single backoff
UNIT_BYTES = 1024  # one DynamoDB write unit writes an item of up to 1 KB
MIN_RATE = 0.001  # items/s: the lowest --max-rate (one item every 1,000 s)
MAX_CHUNK = 25  # items taken from the bucket at a time (one BatchWriteItem)


class TokenBucket:
    """``rate`` tokens per second for every thread together, starting empty: taking ``n``
    tokens waits until ``n / rate`` seconds after the previous taker's tokens were due (or now,
    whichever is later). So ``N`` items never take less than ``N / rate`` seconds in all, and an
    idle spell saves up no burst."""

    def __init__(self, rate: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if not rate > 0 or math.isinf(rate):
            raise ValueError(f"a rate is a positive number of items per second, not {rate!r}")
        self.rate = rate
        self.clock = clock
        self.sleep = sleep
        self._due: float | None = None
        self._lock = threading.Lock()

    def take(self, n: int) -> float:
        """Wait until ``n`` tokens are this caller's; returns the seconds waited."""
        with self._lock:
            now = self.clock()
            start = now if self._due is None else max(now, self._due)
            self._due = start + n / self.rate
            wait = self._due - now
        if wait > 0:
            self.sleep(wait)
        return max(wait, 0.0)


@dataclass
class Governor:
    """How fast a restore writes: ``max_rate`` (items/s), ``capacity_share`` (0 < share ≤ 1 of
    a provisioned target's write capacity). :meth:`govern` wraps a restore's writer; its counts
    (:meth:`as_dict`) say what was applied and how often the target throttled."""

    max_rate: float | None = None
    capacity_share: float | None = None
    throttle_budget: float = THROTTLE_BUDGET
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    rate: float | None = None  # the rate applied (set by govern)
    basis: str = ""  # why that rate
    throttled: int = 0  # writes the target throttled (each retried)
    throttle_seconds: float = 0.0  # seconds spent backing off
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if self.max_rate is not None and not (self.max_rate > 0 and math.isfinite(self.max_rate)):
            raise UsageError(f"bad --max-rate {self.max_rate!r}: a positive number of items per second")
        if self.max_rate is not None and self.max_rate < MIN_RATE:
            # a rate so low that one item's wait cannot even be slept (OverflowError) or lasts days
            raise UsageError(f"bad --max-rate {self.max_rate!r}: at least {MIN_RATE:g} items per second")
        if self.capacity_share is not None and not (0 < self.capacity_share <= 1):
            raise UsageError(f"bad --capacity-share {self.capacity_share!r}: a share of the target's "
                             "write capacity, greater than 0 and at most 1 (e.g. 0.5)")

    def govern(self, writer: RestoreWriter, manifest: Manifest) -> RestoreWriter:
        """``writer`` with the rate applied and throttling backed off (the same writer's
        ``write``, called in chunks; close the original writer, not this one)."""
        rates: list[tuple[float, str]] = []
        if self.max_rate is not None:
            rates.append((self.max_rate, f"--max-rate {self.max_rate:g}"))
        if self.capacity_share is not None:
            share = self._capacity_rate(writer, manifest)
            if share is not None:
                rates.append(share)
        if rates:
            self.rate, self.basis = min(rates)
            log.info("restore into %s at most %.1f items/s (%s)", writer.target, self.rate, self.basis)
        bucket = TokenBucket(self.rate, clock=self.clock, sleep=self.sleep) if self.rate else None
        return GovernedWriter(writer, self, bucket)

    def _capacity_rate(self, writer: RestoreWriter, manifest: Manifest) -> tuple[float, str] | None:
        assert self.capacity_share is not None
        reports = able(writer, ReportsWriteCapacity)
        units = reports.write_capacity() if reports is not None else None
        if units is None:
            self.basis = "--capacity-share not applied: the target has no provisioned write capacity"
            log.warning("restore into %s: %s", writer.target, self.basis)
            return None
        items = manifest.totals.items
        average = manifest.totals.raw_bytes / items if items else 0
        per_item = max(1, math.ceil(average / UNIT_BYTES))
        rate = max(units * self.capacity_share / per_item, 0.1)
        return rate, (f"--capacity-share {self.capacity_share:g} of {units:g} write units/s, "
                      f"{per_item} unit(s) per item")

    def backoff(self) -> Backoff:
        """A backoff for one throttled write: no limit on attempts, a budget of seconds."""
        return Backoff(attempts=None, base=THROTTLE_BASE, cap=THROTTLE_CAP,
                       budget=self.throttle_budget, sleep=self.sleep, clock=self.clock)

    def note_throttle(self, pause: float) -> None:
        with self._lock:
            self.throttled += 1
            self.throttle_seconds += pause

    def as_dict(self) -> dict[str, Any]:
        """``max_rate`` (items/s applied, or null), ``basis``, ``throttled`` (writes retried)
        and ``throttle_seconds`` (spent backing off)."""
        return {"max_rate": round(self.rate, 3) if self.rate else None, "basis": self.basis or None,
                "throttled": self.throttled, "throttle_seconds": round(self.throttle_seconds, 3)}


#: error codes and statuses that mean "too fast" in any cloud's SDK (a writer that lets its SDK's
#: error through untranslated is still backed off, not failed)
THROTTLE_CODES = frozenset({"ProvisionedThroughputExceededException", "ThrottlingException",
                            "RequestLimitExceeded", "SlowDown", "TooManyRequests",
                            "TooManyRequestsException", "Throttling"})


def throttled(exc: BaseException) -> bool:
    """Whether ``exc`` means the target throttled the write: ThrottledError, or an SDK error
    carrying a throttling code (botocore's ``response``) or HTTP status 429 (Azure, Google)."""
    if isinstance(exc, ThrottledError):
        return True
    response = getattr(exc, "response", None)
    error = response.get("Error") if isinstance(response, dict) else None
    if isinstance(error, dict) and error.get("Code") in THROTTLE_CODES:
        return True
    status = getattr(exc, "status_code", None) or getattr(exc, "code", None)
    return status == 429


class GovernedWriter:
    """A restore writer through a :class:`Governor`: tokens first (when there is a rate), then
    the inner ``write``; a ThrottledError is backed off and the same items written again."""

    def __init__(self, inner: RestoreWriter, governor: Governor, bucket: TokenBucket | None) -> None:
        self.inner = inner
        self.target = inner.target
        self.governor = governor
        self.bucket = bucket
        self.chunk = MAX_CHUNK if bucket is None else max(1, min(MAX_CHUNK, int(bucket.rate / 4) or 1))

    def write(self, lines: list[bytes]) -> int:
        if self.bucket is None:
            return self._write(lines)
        written = 0
        for start in range(0, len(lines), self.chunk):
            chunk = lines[start:start + self.chunk]
            self.bucket.take(len(chunk))
            written += self._write(chunk)
        return written

    def _write(self, lines: list[bytes]) -> int:
        backoff: Backoff | None = None
        while True:
            try:
                return self.inner.write(lines)
            except Exception as exc:
                if not throttled(exc):
                    raise
                backoff = backoff or self.governor.backoff()
                before = self.governor.clock()
                if not backoff.wait():
                    raise ThrottledError(
                        f"{exc}; still throttled after backing off for "
                        f"{self.governor.throttle_budget:g}s without progress") from exc
                self.governor.note_throttle(self.governor.clock() - before)
                log.info("target %s throttled the restore; backing off (%s)", self.target, exc)
