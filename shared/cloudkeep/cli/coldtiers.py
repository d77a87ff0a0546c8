"""``cloudkeep lifecycle``: the lifecycle rules that move parts to colder storage classes."""

from __future__ import annotations

import json
from typing import Any

import click

from .. import cliargs, services
from .app import Ctx, local_options, main
from .output import emit


@main.command()
@local_options
@click.argument("stores", callback=cliargs.text, nargs=-1)
@click.option("--apply", "apply_rules", is_flag=True,
              help="Write the rules into each S3 / GCS bucket (needs the right to change the "
                   "bucket's lifecycle: an administrator, not the functions' roles).")
@click.pass_obj
def lifecycle(ctx: Ctx, stores: tuple[str, ...], apply_rules: bool) -> None:
    """Show (or --apply) how each store's parts move to colder classes for the tiers'
    `transition`: S3 and GCS by the bucket's lifecycle rules (printed: cloudkeep's rules plus
    the bucket's others, kept), Azure Blob by the pruner on its schedule, the file store not at
    all (docs/cold-tiers.md)."""
    done = services.lifecycle(ctx.load(), list(stores) or None, apply=apply_rules)

    def render(rows: list[dict[str, Any]]) -> None:
        for r in rows:
            if r["by"] == "lifecycle":
                state = "applied" if r["applied"] else "not applied (use --apply)"
                click.echo(f"{r['store']} ({r['type']}): lifecycle rules, {state}; datasets: "
                           f"{', '.join(r['datasets']) or 'none'}")
                click.echo(json.dumps(r.get("rules"), indent=2, default=str))
            elif r["by"] == "prune":
                click.echo(f"{r['store']} ({r['type']}): the pruner sets each part's tier on its "
                           "schedule (nothing to apply)")
            else:
                click.echo(f"{r['store']} ({r['type']}): no storage classes")

    emit(ctx, done, render)
