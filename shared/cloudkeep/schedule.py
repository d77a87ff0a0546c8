"""Schedules: cron / rate parsing, slots, windows, stagger, and rendering for each cloud.

A *slot* is the scheduled time a run belongs to. Cron schedules are evaluated on wall-clock time
in the policy's time zone, like cron itself: a slot in the hour skipped by a DST change happens at
the first valid time after it, and a slot in the repeated hour happens once. ``rate(N minutes|
hours)`` slots are multiples of N since 1970-01-01T00:00Z; ``rate(N days)`` slots fall at local
midnight every N days.

A dataset's *stagger* (an explicit ``offset`` or a stable value derived from its name) delays
the start of each of its slots, so the datasets of one tier do not all start in the same minute.
A tier's *window* (``"01:00-05:00"``, local time, may wrap midnight) limits when runs may start.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from croniter import croniter

from .layout import snapshot_id_for

_RATE_RE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
_WINDOW_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UNIT = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}
MAX_DEFAULT_STAGGER = timedelta(minutes=15)


@dataclass(frozen=True)
class Window:
    start: time
    end: time  # 24:00 is written as time(0) with wraps=True

    @classmethod
    def parse(cls, text: str) -> Window:
        match = _WINDOW_RE.match(text.strip())
        if not match:
            raise ValueError(f"bad window {text!r} (use HH:MM-HH:MM, e.g. 01:00-05:00)")
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        if h2 == 24 and m2 != 0:
            raise ValueError(f"bad window {text!r}: 24:MM is only valid as 24:00")
        start, end = time(h1, m1), time(0 if h2 == 24 else h2, m2)
        if start == end and h2 != 24:
            raise ValueError(f"bad window {text!r}: start and end are the same")
        return cls(start, end)

    @property
    def length(self) -> timedelta:
        s = self.start.hour * 60 + self.start.minute
        e = self.end.hour * 60 + self.end.minute
        return timedelta(minutes=(e - s) % (24 * 60) or 24 * 60)

    def contains(self, at: datetime, tz: ZoneInfo) -> bool:
        local = at.astimezone(tz).time().replace(tzinfo=None)
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end  # wraps midnight (or 24h)

    def next_open(self, at: datetime, tz: ZoneInfo) -> datetime:
        """``at`` if inside the window, else the next time the window opens."""
        if self.contains(at, tz):
            return at
        local = at.astimezone(tz)
        day = local.date()
        for add in range(0, 3):
            candidate = _localize(datetime.combine(day + timedelta(days=add), self.start), tz)
            if candidate > at:
                return candidate
        raise AssertionError("unreachable")  # pragma: no cover


@dataclass(frozen=True)
class Schedule:
    expr: str
    tz: ZoneInfo
    interval: timedelta | None = None  # rate schedules only

    @classmethod
    def parse(cls, expr: str, tz: str | ZoneInfo = "UTC") -> Schedule:
        zone = tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)
        match = _RATE_RE.match(expr.strip())
        if match:
            n, unit = int(match.group(1)), match.group(2).rstrip("s")
            if n < 1:
                raise ValueError(f"bad rate expression {expr!r}")
            return cls(expr.strip(), zone, n * _UNIT[unit])
        if len(expr.split()) != 5 or not croniter.is_valid(expr):
            raise ValueError(f"bad cron expression {expr!r}")
        return cls(expr.strip(), zone)

    def previous(self, at: datetime) -> datetime:
        """The latest slot at or before ``at`` (UTC)."""
        if self.interval is not None:
            if self.interval % timedelta(days=1) == timedelta(0):
                return self._previous_day_rate(at)
            k = (at - _EPOCH) // self.interval
            return (_EPOCH + k * self.interval).astimezone(UTC)
        local = at.astimezone(self.tz).replace(tzinfo=None)
        # croniter on naive wall-clock time; "at" itself counts as a slot if it matches.
        prev = croniter(self.expr, local + timedelta(seconds=1)).get_prev(datetime)
        slot = _localize(prev, self.tz)
        if slot > at:  # a DST gap moved the slot past "at": take the one before
            prev = croniter(self.expr, prev).get_prev(datetime)
            slot = _localize(prev, self.tz)
        return slot

    def next(self, after: datetime) -> datetime:
        """The earliest slot strictly after ``after`` (UTC)."""
        if self.interval is not None:
            if self.interval % timedelta(days=1) == timedelta(0):
                slot = self._previous_day_rate(after)
                while slot <= after:
                    days = self.interval.days
                    local_day = slot.astimezone(self.tz).date() + timedelta(days=days)
                    slot = _localize(datetime.combine(local_day, time(0)), self.tz)
                return slot
            return self.previous(after) + self.interval
        # Start an hour early: a slot moved forward by a DST gap may still lie ahead of "after".
        local = after.astimezone(self.tz).replace(tzinfo=None) - timedelta(hours=1)
        it = croniter(self.expr, local)
        while True:
            slot = _localize(it.get_next(datetime), self.tz)
            if slot > after:
                return slot

    def _previous_day_rate(self, at: datetime) -> datetime:
        assert self.interval is not None
        days = self.interval.days
        local_day = at.astimezone(self.tz).date()
        back = (local_day - date(1970, 1, 1)).days % days
        slot = _localize(datetime.combine(local_day - timedelta(days=back), time(0)), self.tz)
        if slot > at:
            slot = _localize(datetime.combine(local_day - timedelta(days=back + days), time(0)), self.tz)
        return slot

    def typical_interval(self, around: datetime) -> timedelta:
        """The gap between two consecutive slots near ``around`` (for stagger and warnings)."""
        if self.interval is not None:
            return self.interval
        first = self.next(around)
        return self.next(first) - first

    # ------------------------------------------------------------------ rendering

    def render(self) -> dict[str, str | None]:
        """The same schedule for EventBridge, Cloud Scheduler and Azure NCRONTAB (None: cannot)."""
        if self.interval is not None:
            minutes = int(self.interval.total_seconds() // 60)
            if minutes < 60 and 60 % minutes == 0:
                cron = f"*/{minutes} * * * *" if minutes > 1 else "* * * * *"
            elif minutes % 60 == 0 and minutes < 24 * 60 and (24 * 60) % minutes == 0:
                cron = f"0 */{minutes // 60} * * *" if minutes > 60 else "0 * * * *"
            elif minutes == 24 * 60:
                cron = "0 0 * * *"
            else:
                cron = None
            return {
                "eventbridge": self.expr,
                "cloud_scheduler": cron,
                "azure_ncrontab": f"0 {cron}" if cron else None,
                "time_zone": str(self.tz),
            }
        minute, hour, dom, month, dow = self.expr.split()
        if dom != "*" and dow != "*":
            eventbridge = None  # EventBridge cannot combine day-of-month and day-of-week
        else:
            eb_dom, eb_dow = (dom, "?") if dow == "*" else ("?", _eventbridge_dow(dow))
            eventbridge = f"cron({minute} {hour} {eb_dom} {month} {eb_dow} *)"
        return {
            "eventbridge": eventbridge,
            "cloud_scheduler": self.expr,
            "azure_ncrontab": f"0 {self.expr}",
            "time_zone": str(self.tz),
        }


def _eventbridge_dow(field: str) -> str:
    """Unix day-of-week (0/7 = Sunday) → EventBridge (1 = Sunday); names pass through."""

    def one(token: str) -> str:
        return str(int(token) % 7 + 1) if token.isdigit() else token

    out = []
    for part in field.split(","):
        step = ""
        if "/" in part:
            part, step = part.split("/", 1)
            step = "/" + step
        if "-" in part:
            a, b = part.split("-", 1)
            out.append(f"{one(a)}-{one(b)}{step}")
        else:
            out.append(one(part) + step)
    return ",".join(out)


def _localize(naive: datetime, tz: ZoneInfo) -> datetime:
    """Wall-clock time in ``tz`` → UTC; a time in a DST gap moves forward by the gap."""
    aware = naive.replace(tzinfo=tz, fold=0)
    utc = aware.astimezone(UTC)
    if utc.astimezone(tz).replace(tzinfo=None) != naive:  # nonexistent (DST gap)
        utc = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)
        utc = max(utc, aware.astimezone(UTC))
    return utc


@lru_cache(maxsize=4096)
def stable_fraction(name: str) -> float:
    """A number in [0, 1) that depends only on ``name``."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") / 2**64


def stagger(dataset: str, schedule: Schedule, window: Window | None, offset: timedelta | None,
            around: datetime) -> timedelta:
    """The delay of each of ``dataset``'s slots: ``offset`` if given, else stable from its name
    (up to half the window, or without a window up to a quarter interval, at most 15 minutes)."""
    if offset is not None:
        return offset
    span = window.length / 2 if window else min(schedule.typical_interval(around) / 4, MAX_DEFAULT_STAGGER)
    minutes = int(span.total_seconds() // 60)
    if minutes <= 0:
        return timedelta(0)
    return timedelta(minutes=int(stable_fraction(dataset) * minutes))


def slot_snapshot_id(dataset: str, slot: datetime) -> str:
    """The snapshot id of a scheduled run: derived from (dataset, slot), so retried triggers of
    the same slot find the same id (and the committed manifest) instead of taking another."""
    utc = slot.astimezone(UTC)
    suffix = hashlib.sha256(f"{dataset}|{utc.isoformat()}".encode()).hexdigest()[:6]
    return snapshot_id_for(utc, suffix)


@dataclass(frozen=True)
class DueState:
    slot: datetime  # the current slot
    due: bool
    next_run: datetime
    in_window: bool
    stagger: timedelta


def due_state(
    schedule: Schedule,
    *,
    dataset: str,
    now: datetime,
    latest: datetime | None,
    window: Window | None = None,
    offset: timedelta | None = None,
) -> DueState:
    """Is ``dataset`` due at ``now``, given the slot/start time of its latest committed snapshot?

    The current slot is the latest slot whose staggered start has passed. The dataset is due when
    its latest snapshot is older than that slot and ``now`` is inside the window (if any). After
    an outage only that latest slot is due, never every missed one.
    """
    delay = stagger(dataset, schedule, window, offset, now)
    slot = schedule.previous(now - delay)
    in_window = window is None or window.contains(now, schedule.tz)
    fresh = latest is not None and latest >= slot
    due = not fresh and in_window
    if due:
        next_run = now
    else:
        start = (schedule.next(slot) if fresh else slot) + delay
        start = max(start, now) if not fresh else start
        if window is not None:
            for _ in range(1000):
                opened = window.next_open(start, schedule.tz)
                if opened == start:
                    break
                # The window opens later: the slot due then is the latest one before it.
                start = opened
                candidate = schedule.previous(start - delay)
                if latest is None or candidate > latest:
                    break
                start = schedule.next(candidate) + delay
        next_run = start
    return DueState(slot, due, next_run, in_window, delay)
