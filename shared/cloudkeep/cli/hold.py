"""``cloudkeep hold add|remove|list``: legal holds, the snapshots retention must keep."""

from __future__ import annotations

from typing import Any

import click

from .. import cliargs, services
from .app import Ctx, local_options, main
from .output import emit, table


@main.group()
def hold() -> None:
    """Legal holds: snapshots retention must keep."""


@hold.command("add")
@local_options
@click.argument("ref", callback=cliargs.text, metavar="DATASET@SNAPSHOT_ID|DATASET@latest")
@click.option("--reason", callback=cliargs.text, required=True, help="Why the snapshot must be kept.")
@click.pass_obj
def hold_add(ctx: Ctx, ref: str, reason: str) -> None:
    """Put a snapshot under a legal hold (holds stack: each has its own id; prints it)."""
    hold = services.hold_add(ctx.load(), ref, reason)
    emit(ctx, hold.as_dict(), lambda r: click.echo(
        f"held {r['ref']}: {r['reason']} (hold id {r['hold_id']})"))


@hold.command("remove")
@local_options
@click.argument("ref", callback=cliargs.text, metavar="DATASET@SNAPSHOT_ID|DATASET@latest")
@click.option("--id", "hold_id", callback=cliargs.text, metavar="HOLD_ID",
              help="The hold to release (needed when the snapshot has several; see `hold list`).")
@click.pass_obj
def hold_remove(ctx: Ctx, ref: str, hold_id: str | None) -> None:
    """Release one legal hold (the snapshot's other holds stay)."""
    data = services.hold_remove(ctx.load(), ref, hold_id).as_dict()
    emit(ctx, data, lambda r: click.echo(
        f"released {r['ref']} hold {r['hold_id']} ({r['reason']})"
        + (f"; still held by {len(r['holds'])} other hold(s): "
           + ", ".join(h["hold_id"] for h in r["holds"]) if r["holds"] else "")))


@hold.command("list")
@local_options
@click.argument("dataset", callback=cliargs.text, required=False)
@click.pass_obj
def hold_list(ctx: Ctx, dataset: str | None) -> None:
    """Every active legal hold (of DATASET, or of every dataset), one row per hold."""
    held = services.hold_list(ctx.load(), dataset)

    def render(data: list[dict[str, Any]]) -> None:
        if not data:
            click.echo("no legal holds")
            return
        table(["ref", "hold id", "reason", "by", "since"],
               [[r["ref"], r["hold_id"], r["reason"], r.get("created_by"),
                 str(r.get("created_at") or "")[:19]] for r in data])

    emit(ctx, held.rows, render)
    for problem in held.problems:
        click.echo(f"warning: {problem}", err=True)
