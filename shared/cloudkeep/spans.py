"""Retention durations with calendar units (``1y2mo3d3h``), counted back from a moment the way
restic's ``--keep-within*`` options count them.

A :class:`Span` is years, months, days and a sub-day part (hours, minutes, seconds). Going back
a span from a moment is restic's ``t.AddDate(-years, -months, -days).Add(-hours)``: the date
part is calendar arithmetic on the moment's local wall clock with Go's normalisation (a day past
the end of a month rolls into the next month: 31 March minus one month is 3 March, not the last
day of February), then the sub-day part is subtracted as elapsed time. The date part is
calendar arithmetic on the wall clock of the policy's time zone — as restic's is on a host in
that time zone (Go reads a snapshot's timestamp into the host's zone when the offsets agree) —
so ``7d`` back from 10:00 is 10:00 seven days earlier, 167 or 169 hours across a DST change,
and months and years have their calendar lengths.

Units: ``y`` years, ``mo`` months, ``w`` weeks (7 days), ``d`` days, ``h`` hours, ``m``
minutes, ``s`` seconds, each at most once, in any order. ``m`` is minutes, as in every other
cloudkeep duration; restic's ``m`` (months) is written ``mo``.

A leaf module (base layer): the policy model parses retention fields with it and
:mod:`cloudkeep.retention` applies it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated
from zoneinfo import ZoneInfo

from pydantic.functional_serializers import PlainSerializer
from pydantic.functional_validators import BeforeValidator
from pydantic.json_schema import WithJsonSchema

__all__ = ["SPAN_PATTERN", "RetentionSpan", "Span", "parse_span"]

_PART = re.compile(r"(\d{1,9})(y|mo|w|d|h|m|s)")
SPAN_PATTERN = r"^\s*(\d+(y|mo|w|d|h|m|s))+\s*$"
"""The JSON schema's pattern of a retention duration."""
MAX_TEXT = 64
"""The longest retention duration text read."""
_UNIT_NAMES = {"y": "years", "mo": "months", "w": "weeks", "d": "days", "h": "hours",
               "m": "minutes", "s": "seconds"}
_LIMITS = {"y": 10_000, "mo": 120_000, "w": 530_000, "d": 3_660_000, "h": 87_840_000,
           "m": 1_000_000_000, "s": 999_999_999}


@dataclass(frozen=True)
class Span:
    """A retention duration: calendar years, months and days, and a sub-day part in seconds.
    Zero in every part is no span (see :meth:`zero`)."""

    years: int = 0
    months: int = 0
    days: int = 0
    seconds: int = 0

    @classmethod
    def of(cls, value: timedelta) -> Span:
        """A fixed duration as a span: whole days, and the rest as seconds."""
        whole = int(value.total_seconds())
        return cls(days=whole // 86_400, seconds=whole % 86_400)

    def zero(self) -> bool:
        return not (self.years or self.months or self.days or self.seconds)

    def before(self, moment: datetime, tz: ZoneInfo | None = None) -> datetime | None:
        """``moment`` minus this span (restic's arithmetic, module docstring), as an aware
        datetime; None when that lies before year 1 (then every snapshot is within the span)."""
        local = moment.astimezone(tz) if tz is not None else moment
        wall = local.replace(tzinfo=None)  # the local date and clock, as Go's AddDate reads them
        months = wall.month - 1 - self.months
        year = wall.year - self.years + months // 12
        month = months % 12 + 1
        try:
            first = wall.replace(year=year, month=month, day=1)
            moved = (first + timedelta(days=wall.day - 1 - self.days)).replace(tzinfo=local.tzinfo)
            return moved.astimezone(UTC) - timedelta(seconds=self.seconds)
        except (ValueError, OverflowError):
            return None  # before 0001-01-01: restic's cutoff lies before every snapshot

    def approximate(self) -> timedelta:
        """An upper bound of the span as elapsed time (a year as 366 days, a month as 31)."""
        return timedelta(days=self.years * 366 + self.months * 31 + self.days, seconds=self.seconds)

    def __str__(self) -> str:
        out = [f"{v}{u}" for v, u in ((self.years, "y"), (self.months, "mo"), (self.days, "d")) if v]
        seconds = self.seconds
        for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
            if seconds >= size:
                out.append(f"{seconds // size}{unit}")
                seconds %= size
        return "".join(out) or "0s"

    def looks_like_months(self) -> bool:
        """True for a span shorter than a day that is not whole hours — ``6m`` (six minutes in
        cloudkeep, six months in restic): worth a warning where retention is configured."""
        return not (self.years or self.months or self.days) and self.seconds % 3600 != 0


def parse_span(text: object) -> Span:
    """Parse ``1y2mo3d3h``, ``7d``, ``36h``, ``2w``, ``90m`` into a :class:`Span` longer than
    zero (a timedelta is taken as it is). Raises ValueError with a message naming the problem."""
    if isinstance(text, Span):
        if text.zero():
            raise ValueError("a retention duration must be longer than zero")
        return text
    if isinstance(text, timedelta):
        if text <= timedelta(0):
            raise ValueError("a retention duration must be longer than zero")
        return Span.of(text)
    if not isinstance(text, str):
        raise ValueError(f"expected a duration such as 7d, 36h, 6mo or 1y2mo3d, got {text!r}")
    raw = text.strip()
    if len(raw) > MAX_TEXT:
        raise ValueError(f"duration is too long ({len(raw)} characters, at most {MAX_TEXT})")
    parts: dict[str, int] = {}
    pos = 0
    while pos < len(raw):
        match = _PART.match(raw, pos)
        if match is None:
            raise ValueError(f"bad duration {text!r} (use y, mo, w, d, h, m, s: e.g. 7d, 36h, "
                             "6mo or 1y2mo3d; months are mo, m is minutes)")
        number, unit = int(match.group(1)), match.group(2)
        if unit in parts:
            raise ValueError(f"bad duration {text!r}: {_UNIT_NAMES[unit]} ({unit}) given twice")
        if number > _LIMITS[unit]:
            raise ValueError(f"duration {text!r} is too long (at most {_LIMITS[unit]}{unit})")
        parts[unit] = number
        pos = match.end()
    span = Span(years=parts.get("y", 0), months=parts.get("mo", 0),
                days=parts.get("d", 0) + 7 * parts.get("w", 0),
                seconds=parts.get("h", 0) * 3600 + parts.get("m", 0) * 60 + parts.get("s", 0))
    if not raw or span.zero():
        raise ValueError(f"duration {text!r} must be longer than zero")
    return span


if TYPE_CHECKING:
    RetentionSpan = Span
else:
    RetentionSpan = Annotated[
        Span,
        BeforeValidator(parse_span),
        PlainSerializer(str, return_type=str),
        WithJsonSchema({"type": "string", "pattern": SPAN_PATTERN, "minLength": 2,
                        "description": "a duration with calendar units, e.g. 7d, 36h, 6mo or "
                        "1y2mo3d3h (y years, mo months, w weeks, d days, h hours, m minutes, "
                        "s seconds)"}),
    ]
