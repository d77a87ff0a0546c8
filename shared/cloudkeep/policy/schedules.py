"""Scalar policy values: schedules (cron or ``rate(...)``) and start windows."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from croniter import CroniterError, croniter
from pydantic.functional_validators import BeforeValidator
from pydantic.json_schema import WithJsonSchema

from ..schedule import Window
from ..specs import MAX_DURATION, show

_RATE_RE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")


def validate_schedule(expr: object) -> str:
    """Accept a 5-field cron expression or ``rate(N minutes|hours|days)``."""
    if not isinstance(expr, str):
        raise ValueError(f"expected a cron expression or rate(...), got {expr!r}")
    text = expr.strip()
    if text.startswith("rate"):
        match = _RATE_RE.match(text)
        if not match:
            raise ValueError(f"bad rate expression {expr!r} (use e.g. rate(15 minutes), rate(1 hour))")
        number, unit = int(match.group(1)), match.group(2)
        if number < 1:
            raise ValueError(f"bad rate expression {expr!r}: the interval must be at least 1")
        per = {"minute": 1, "hour": 60, "day": 1440}[unit.rstrip("s")]
        if number * per > MAX_DURATION.total_seconds() // 60:
            raise ValueError(f"bad rate expression {expr!r}: the interval is too long "
                             f"(at most {MAX_DURATION.days} days)")
        if (number == 1) != (not unit.endswith("s")):
            raise ValueError(
                f"bad rate expression {expr!r}: use the singular unit for 1 and the plural otherwise"
            )
        return text
    fields = text.split()
    if len(fields) != 5:
        raise ValueError(
            f"bad cron expression {expr!r}: expected 5 fields (minute hour day month weekday), "
            f"got {len(fields)}"
        )
    if not croniter.is_valid(text):
        bad = [
            f"{name} field {fields[i]!r} (allowed: {allowed})"
            for i, (name, allowed) in enumerate(_CRON_FIELDS)
            if not croniter.is_valid(" ".join(fields[i] if j == i else "*" for j in range(5)))
        ]
        detail = f": bad {', '.join(bad)}" if bad else ""
        raise ValueError(f"bad cron expression {expr!r}{detail}")
    try:
        croniter(text, datetime(2000, 1, 1)).get_next(datetime)
    except CroniterError:
        raise ValueError(f"bad cron expression {expr!r}: it never fires") from None
    return text


_CRON_FIELDS = (
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day-of-month", "1-31"),
    ("month", "1-12 or jan-dec"),
    ("day-of-week", "0-7 or sun-sat"),
)


Schedule = Annotated[
    str,
    BeforeValidator(validate_schedule),
    WithJsonSchema({"type": "string", "pattern": r"^(rate\(\d+ (minutes?|hours?|days?)\)|\S+( \S+){4})$",
                    "description": "a 5-field cron expression (minute hour day month weekday, in "
                    "the policy's time zone) or rate(N minutes|hours|days)"}),
]


def validate_window(value: object) -> object:
    """A start window ``"HH:MM-HH:MM"`` (stripped), or None."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"expected a window such as \"01:00-05:00\", got {show(value)}")
    Window.parse(value)
    return value.strip()
