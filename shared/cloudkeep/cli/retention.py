"""``cloudkeep retention check``: the retention simulator — what rules keep and remove of a list
of times, with every reason (docs/retention.md)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any, TextIO

import click

from .. import cliargs, services
from ..errors import UsageError
from ..policy import Policy
from ..retention_sim import MAX_LINE
from ..runtime import parse_now
from .app import Ctx, local_options, main
from .output import emit, printable, table


@main.group()
def retention() -> None:
    """Retention rules: try them on a list of times before a tier uses them."""


@retention.command("check")
@local_options
@click.option("--rules", "rules_text", metavar="YAML_OR_JSON_MAPPING",
              help="The rules, as a tier's retention: e.g. '{daily: 7, weekly: 4, yearly: "
                   "unlimited, within: 1y2mo}'.")
@click.option("--tier", callback=cliargs.text, metavar="NAME",
              help="Take the rules of this tier of the policy instead.")
@click.option("--times", "times_path", required=True, metavar="FILE|-",
              help="One ISO 8601 time per line, one snapshot each (duplicates allowed); - reads "
                   "standard input.")
@click.option("--now", "now_text", callback=cliargs.text, metavar="ISO8601",
              help="Judge at this time (default: now).")
@click.option("--timezone", "timezone", callback=cliargs.text, metavar="TZ",
              help="IANA time zone of the periods (default: the policy's with --tier, else UTC).")
@click.pass_obj
def check(ctx: Ctx, rules_text: str | None, tier: str | None, times_path: str,
          now_text: str | None, timezone: str | None) -> None:
    """What the rules keep and remove of the times in FILE, newest first, with every reason
    (restic's forget semantics, and the safety rules newest and newer than now). Deletes
    nothing and reads no store."""
    if rules_text is not None and not rules_text.strip():
        raise UsageError("bad --rules '': it is empty (e.g. --rules '{daily: 7}')")
    cliargs.check_text(times_path, "--times")
    if (rules_text is None) == (tier is None):
        raise UsageError("give either --rules MAPPING or --tier NAME (one of them)")
    policy: Policy | None = ctx.load() if tier is not None else None
    warnings: list[str] = []
    result = services.retention_check(policy, _lines(times_path), rules=rules_text, tier=tier,
                                      now=parse_now(now_text), timezone=timezone,
                                      warnings=warnings)
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)

    def render(data: dict[str, Any]) -> None:
        rows = [[printable(e.text), "keep" if e.kept else "remove",
                 printable(", ".join(e.reasons)) or "—"] for e in result.entries]
        click.echo(f"rules: {result.rules.describe()}; now {result.now.isoformat()}; "
                   f"time zone {result.timezone}")
        table(["time", "action", "reasons"], rows, whole=["time"])
        click.echo(f"keep {len(data['keep'])}, remove {len(data['remove'])}")

    emit(ctx, result.as_dict(), render)


def _lines(path: str) -> Iterator[str]:
    """The lines of ``path`` (``-``: standard input), read as they are needed; a file that
    cannot be read is a one-line UsageError."""
    try:
        if path == "-":
            yield from _bounded(sys.stdin)
            return
        with open(path, encoding="utf-8") as fh:
            yield from _bounded(fh)
    except UnicodeDecodeError:
        raise UsageError(f"bad --times {path!r}: not UTF-8 text") from None
    except OSError as exc:
        raise UsageError(f"bad --times {path!r}: {exc.strerror or exc}") from None


def _bounded(fh: TextIO) -> Iterator[str]:
    """Lines of ``fh``, none read whole beyond the reader's limit: a longer line comes as a
    piece of that length (which the reader refuses) — never a gigabyte held in memory."""
    while line := fh.readline(MAX_LINE + 3):
        yield line
