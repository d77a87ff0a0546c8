"""``cloudkeep capture`` and ``history``: continuous capture's commands (docs/continuous.md)."""

from __future__ import annotations

from typing import Any

import click

from .. import cliargs, services
from ..specs import parse_duration
from .app import Ctx, allow_unsigned_option, local_options, main, usage
from .output import emit


def _budget(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if value is None:
        return None
    try:
        return parse_duration(cliargs.check_text(value, "--budget"))
    except ValueError as e:
        raise click.BadParameter(f"{e}", ctx=ctx, param=param) from None


@main.command()
@local_options
@click.argument("dataset", callback=cliargs.text, metavar="DATASET")
@click.option("--once", is_flag=True, help="Read what the stream holds now, then exit.")
@click.option("--budget", callback=_budget, metavar="DURATION",
              help="Stop after this long (e.g. 10m); without --once the run keeps following "
                   "the stream, reading again every flush_interval, until then.")
@click.pass_obj
def capture(ctx: Ctx, dataset: str, once: bool, budget: Any) -> None:
    """Ship DATASET's changes (DynamoDB stream, S3 object versions, Cosmos DB change feed) from
    the last recorded position into its change log; gaps are recorded and alerted."""
    result = services.capture(ctx.load(), dataset, once=once, budget=budget)

    def render(d: dict[str, Any]) -> None:
        click.echo(f"captured {d['dataset']}: {d['changes']} changes ({d['written']} written, "
                   f"{d['duplicates']} already logged) in {d['segments']} segments, "
                   f"{d['bytes']} bytes; caught up to {d['caught_up'] or 'not caught up'}")
        for gap in d["gaps"]:
            click.echo(f"  GAP from {gap['start']} to {gap['end'] or 'the next base snapshot'}: "
                       f"{gap['reason']}")

    emit(ctx, result.as_dict(), render)


@main.command()
@local_options
@click.argument("dataset", callback=cliargs.text, metavar="DATASET")
@click.option("--key", "key_text", required=True, metavar="JSON",
              help="The item's key in the source's own form (DynamoDB JSON of the key "
                   "attributes, a Firestore document path, {\"id\", \"partition_key\"} for Cosmos "
                   "DB, an S3 object key).")
@click.option("--since", callback=cliargs.text, metavar="ISO8601",
              help="Only versions from this time on.")
@click.option("--store", "store_name", callback=cliargs.text, metavar="STORE",
              help="Read the snapshots (and the change log, if it is there) from this store.")
@allow_unsigned_option
@click.pass_obj
def history(ctx: Ctx, dataset: str, key_text: str, since: str | None, store_name: str | None,
            allow_unsigned: bool) -> None:
    """Every version of one item, from the change log and the snapshots, oldest first."""
    if "@" in dataset:
        usage("history takes a DATASET, not a snapshot reference")
    found = services.history(ctx.load(), dataset, key_text, since=since, store_name=store_name,
                             allow_unsigned=allow_unsigned)

    def render(rows: list[dict[str, Any]]) -> None:
        if not rows:
            click.echo("no versions found")
        for row in rows:
            item = "-" if row["item"] is None else click.unstyle(str(row["item"]))[:100]
            click.echo(f"{row['time']}  {row['event']:<8}  {row['source']}  {item}")

    emit(ctx, found, render)
