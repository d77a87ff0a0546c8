"""``cloudkeep diff`` and ``cloudkeep find``: items inside snapshots (docs/item-recovery.md)."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from .. import cliargs, services
from ..errors import EXIT_FAILED
from ..redaction import redact, redact_obj
from .app import Ctx, allow_unsigned_option, local_options, main
from .output import emit, printable

REF = "DATASET@SNAPSHOT_ID|DATASET@latest"


@main.command()
@local_options
@click.argument("ref_a", callback=cliargs.text, metavar="REF_A")
@click.argument("ref_b", callback=cliargs.text, metavar="REF_B")
@click.option("--keys", "list_keys", is_flag=True,
              help="Also list each key added, removed or changed (and which fields changed).")
@click.option("--store", "store_name", callback=cliargs.text, metavar="STORE",
              help="Compare the copies in this store.")
@allow_unsigned_option
@click.pass_obj
def diff(ctx: Ctx, ref_a: str, ref_b: str, list_keys: bool, store_name: str | None,
         allow_unsigned: bool) -> None:
    """Items added, removed, changed and unchanged from REF_A to REF_B (two snapshots of one
    dataset, each DATASET@SNAPSHOT_ID or DATASET@latest). Incremental snapshots are compared by
    what their chains hold. Reads both snapshots in flat memory (temporary files)."""
    with services.diff(ctx.load(), ref_a, ref_b, keys=list_keys, store_name=store_name,
                       allow_unsigned=allow_unsigned) as result:
        counts = result.counts()
        if ctx.fmt == "json":
            # streamed: a diff may list millions of keys
            head = json.dumps(redact_obj(counts), indent=2)[:-2]
            out = sys.stdout
            out.write(head + ',\n  "items": [')
            for n, item in enumerate(result.items() if list_keys else ()):
                out.write(("," if n else "") + "\n    " + redact(json.dumps(item, ensure_ascii=False)))
            out.write("\n  ]\n}\n" if list_keys else "]\n}\n")
            out.flush()
            return
        click.echo(f"{counts['ref_a']} → {counts['ref_b']}: {counts['added']} added, "
                   f"{counts['removed']} removed, {counts['changed']} changed, "
                   f"{counts['unchanged']} unchanged")
        if list_keys:
            for item in result.items():
                shown = printable(item)
                fields = f"  ({', '.join(shown['fields'])})" if shown.get("fields") else ""
                click.echo(redact(f"  {shown['change']:8} "
                                  f"{json.dumps(shown['key'], ensure_ascii=False)}{fields}"))


@main.command()
@local_options
@click.argument("dataset", callback=cliargs.text)
@click.option("--key", "key", callback=cliargs.text, required=True, metavar="JSON",
              help="The item's key in the source's own form, e.g. "
                   "'{\"pk\": {\"S\": \"user#1\"}}' (DynamoDB), '\"users/alice\"' (Firestore), "
                   "'{\"id\": \"o1\", \"partition_key\": \"t-a\"}' (Cosmos DB), "
                   "'\"invoices/1.pdf\"' (S3).")
@click.option("--store", "store_name", callback=cliargs.text, metavar="STORE",
              help="Search the copies in this store.")
@allow_unsigned_option
@click.pass_obj
def find(ctx: Ctx, dataset: str, key: str, store_name: str | None, allow_unsigned: bool) -> None:
    """The snapshots of DATASET that hold the item with key --key, newest first, with the item
    as each holds it. Parts that cannot hold the key are skipped (their key index); exit 1 if a
    snapshot could not be searched."""
    result = services.find(ctx.load(), dataset, key, store_name=store_name,
                           allow_unsigned=allow_unsigned)

    def render(rows: list[dict[str, Any]]) -> None:
        if not rows:
            click.echo(f"no snapshot of {dataset} holds that item "
                       f"({result.searched} searched)")
        for row in rows:
            click.echo(redact(f"{dataset}@{row['snapshot_id']}  {row['time']}  "
                              f"{json.dumps(row['item'], ensure_ascii=False)[:200]}"))

    emit(ctx, result.as_list(), render)
    for problem in result.problems:
        click.echo(redact(f"warning: {problem}"), err=True)
    if result.problems:
        sys.exit(EXIT_FAILED)
