"""The retention simulator behind ``cloudkeep retention check``: the rules of a tier (or a
mapping written on the command line) applied to a list of times, one snapshot per line, with
every reason — the same :func:`cloudkeep.retention.apply` prune runs.

Only what a time alone decides is simulated: the retention rules and the safety rules ``newest``
and ``newer than now``. Holds, verifications and copies belong to real snapshots (``plan
--retention``, ``report`` and ``prune --dry-run`` show them); a tier's ``min_copies`` is not
applied here.

Every reader has limits: :data:`MAX_RULES_BYTES` of rules, :data:`MAX_TIMES` lines of at most
:data:`MAX_LINE` characters.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from .errors import PolicyError, UsageError
from .policy import Policy, Retention
from .policy.model import RETENTION_NEEDS_A_RULE
from .policy.yamlload import parse_yaml
from .retention import RULES, Rules, SnapshotInfo, apply

__all__ = ["MAX_LINE", "MAX_RULES_BYTES", "MAX_TIMES", "Simulation", "parse_rules", "parse_time",
           "read_times", "simulate", "tier_rules", "warnings_of"]

MAX_RULES_BYTES = 64 * 1024
"""The longest ``--rules`` text read."""
MAX_TIMES = 200_000
"""The most times (snapshots) one simulation reads (hourly snapshots for 22 years; about
200 MB and 20 s)."""
MAX_LINE = 100
"""The longest line of a times file (an ISO 8601 time is about 35 characters)."""


@dataclass(frozen=True)
class Entry:
    """One input line: its text (as written, trimmed), its time and, if kept, every reason."""

    line: int
    text: str
    time: datetime
    reasons: tuple[str, ...]

    @property
    def kept(self) -> bool:
        return bool(self.reasons)


@dataclass(frozen=True)
class Simulation:
    """What the rules keep and remove: every input line once, newest first (lines with the
    same time in input order — the order restic walks them in)."""

    rules: Rules
    now: datetime
    timezone: str
    entries: tuple[Entry, ...]

    def as_dict(self) -> dict[str, Any]:
        """``{"keep": [{"time", "reasons"}, ...], "remove": [{"time"}, ...]}``: one entry per
        input line, newest first; ``time`` is the line as written."""
        return {
            "keep": [{"time": e.text, "reasons": list(e.reasons)} for e in self.entries if e.kept],
            "remove": [{"time": e.text} for e in self.entries if not e.kept],
        }


def parse_rules(text: str, where: str = "--rules") -> Rules:
    """A retention mapping written in YAML or JSON (``{daily: 7, within: 1y2mo}``) as
    :class:`Rules`, validated as a policy's ``retention``; else a one-line UsageError."""
    if len(text.encode("utf-8", "replace")) > MAX_RULES_BYTES:
        raise UsageError(f"bad {where}: longer than {MAX_RULES_BYTES} bytes")
    try:
        data, _ = parse_yaml(text, where)
    except PolicyError as exc:
        problem = exc.problems[0] if exc.problems else str(exc)
        if "must be a mapping" not in problem:  # (parse_yaml's words for a policy's top level)
            raise UsageError(f"bad {where}: {problem.removeprefix(where + ':').strip()}") from None
        data = None
    if not isinstance(data, dict):
        raise UsageError(f"bad {where}: expected a mapping of rules such as "
                         "'{daily: 7, weekly: 4, within: 1y2mo}'")
    try:
        retention = Retention.model_validate(data)
    except ValidationError as exc:
        raise UsageError(f"bad {where}: {_describe(exc)}") from None
    if not retention.has_rule():
        raise UsageError(f"bad {where}: {RETENTION_NEEDS_A_RULE}; with no rule restic's forget "
                         "removes nothing either")
    return Rules.from_policy(retention)


def tier_rules(policy: Policy, tier: str) -> Rules:
    """The retention rules of the policy's tier ``tier`` (its ``min_copies`` is not simulated)."""
    if tier not in policy.tiers:
        known = ", ".join(sorted(policy.tiers)) or "none"
        raise UsageError(f"bad --tier {tier!r}: no such tier (known: {known})")
    return Rules.from_policy(policy.tiers[tier].retention)


def warnings_of(rules: Rules) -> list[str]:
    """Rules that are probably not what was meant: a window in minutes (``6m`` is six minutes;
    restic's ``6m`` is six months — write ``6mo``)."""
    out = []
    for name in RULES:
        span = getattr(rules, name)
        if name.startswith("within") and span is not None and span.looks_like_months():
            out.append(f"{name}: {span} is less than a day (m is minutes; months are mo)")
    return out


def parse_time(text: str, tz: ZoneInfo) -> datetime:
    """An ISO 8601 time (``2026-03-01T10:00:00Z``, ``2026-03-01 10:00:00+01:00``); one without
    an offset is wall time in ``tz``. Raises ValueError."""
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz)
    try:
        value.astimezone(tz)  # its local time (periods) must exist too
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("out of range") from None


def read_times(lines: Iterable[str], tz: ZoneInfo, where: str = "--times") -> list[tuple[str, datetime]]:
    """The times of ``lines`` (blank lines and ``#`` comments skipped), each with its text, in
    input order; a line that is not a time is a one-line UsageError naming it."""
    out: list[tuple[str, datetime]] = []
    for number, raw in enumerate(lines, 1):
        if len(raw) > MAX_LINE + 2:
            raise UsageError(f"bad {where} line {number}: longer than {MAX_LINE} characters")
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        try:
            out.append((text, parse_time(text, tz)))
        except ValueError as exc:
            why = ("is out of range" if "range" in str(exc) else
                   "is not an ISO 8601 time (e.g. 2026-03-01T10:00:00Z)")
            raise UsageError(f"bad {where} line {number}: {text[:60]!r} {why}") from None
        if len(out) > MAX_TIMES:
            raise UsageError(f"bad {where}: more than {MAX_TIMES} times")
    return out


def simulate(rules: Rules, times: list[tuple[str, datetime]], now: datetime, timezone: str) -> Simulation:
    """Apply ``rules`` at ``now`` (in ``timezone``) to one snapshot per time."""
    infos = [SnapshotInfo(str(i), moment) for i, (_, moment) in enumerate(times)]
    decision = apply(infos, rules, now, timezone)
    kept = set(decision.keep)
    # newest first; the same time in input order (as restic's stable sort walks them)
    order = sorted(range(len(times)), key=lambda i: (times[i][1], -i), reverse=True)
    entries = tuple(Entry(i + 1, times[i][0], times[i][1],
                          tuple(decision.reasons[str(i)]) if str(i) in kept else ())
                    for i in order)
    return Simulation(rules, now, timezone, entries)


def _describe(exc: ValidationError) -> str:
    """Every problem of a rules mapping, one clause each: ``daily: negative counts ...``."""
    known = ", ".join(RULES)
    out = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"] if not str(p).startswith(("int", "literal")))
        if err["type"] == "extra_forbidden":
            out.append(f"unknown rule {where!r} (known: {known})")
            continue
        message = str(err["msg"]).removeprefix("Value error, ")
        out.append(f"{where}: {message}" if where else message)
    return "; ".join(dict.fromkeys(out))
