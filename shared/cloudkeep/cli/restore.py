"""``cloudkeep verify`` and ``restore``: the commands that read a snapshot back."""

from __future__ import annotations

import sys
from typing import Any

import click

from .. import cliargs, services
from ..errors import EXIT_FAILED
from ..services import capture_drills
from .app import Ctx, allow_unsigned_option, local_options, main, progress, usage
from .output import emit, fmt_seconds


@main.command()
@local_options
@click.argument("ref", callback=cliargs.text, required=False, metavar="DATASET@SNAPSHOT_ID|DATASET@latest")
@click.option("--latest", "latest_of", callback=cliargs.text, metavar="DATASET", help="Verify the newest snapshot of DATASET.")
@click.option("--level", type=click.Choice(["integrity", "sample", "drill"]), default="integrity",
              show_default=True,
              help="integrity: re-read every part, check sizes, sha256, items and content digest; "
                   "sample: compare N random items with the live source; drill: restore into a "
                   "scratch target, compare, time it, delete the target.")
@click.option("--sample", "sample_items", type=click.IntRange(min=1), default=100, show_default=True,
              metavar="N", help="With --level sample: how many items to compare.")
@click.option("--store", "store_name", callback=cliargs.text, metavar="STORE", help="Verify the copy in this store.")
@click.option("--log", "log_of", callback=cliargs.text, metavar="DATASET",
              help="Verify DATASET's change log (continuous capture): every segment's checksum "
                   "and order, no holes.")
@click.option("--at", "at", callback=cliargs.text, metavar="random|ISO8601",
              help="With --level drill on a continuous dataset: restore this moment of its window "
                   "(random: any moment outside gaps) and compare a later point-in-time snapshot.")
@allow_unsigned_option
@click.pass_obj
def verify(ctx: Ctx, ref: str | None, latest_of: str | None, level: str, sample_items: int,
           store_name: str | None, log_of: str | None, at: str | None, allow_unsigned: bool) -> None:
    """Check a snapshot at the given level; the report is stored under verifications/; exit 1
    on any problem. With --log, check a dataset's change log instead."""
    if log_of is not None:
        if ref or latest_of:
            usage("verify --log DATASET takes no snapshot reference")
        checked = services.verify_log(ctx.load(), log_of, store_name=store_name)
        emit(ctx, checked.as_dict(), lambda d: click.echo(
            f"{d['dataset']} change log: {'OK' if d['ok'] else 'FAILED'} ({d['segments']} "
            f"segments, {d['changes']} changes, {d['unreferenced_segments']} unreferenced)"
            + "".join(f"\n  {p}" for p in d["problems"])))
        if not checked.ok:
            sys.exit(EXIT_FAILED)
        return
    if bool(ref) == bool(latest_of):
        usage("verify needs exactly one of DATASET@SNAPSHOT_ID or --latest DATASET")
    if at is not None and (level != "drill" or store_name):
        usage("--at drills a moment: use it with --level drill (and without --store)")
    if at is not None:
        report = capture_drills.drill_moment(ctx.load(), (latest_of or str(ref)).split("@")[0],
                                             at=at)
    else:
        report = services.verify(ctx.load(), ref or f"{latest_of}@latest", level=level,
                                 sample_items=sample_items, store_name=store_name,
                                 allow_unsigned=allow_unsigned, progress=progress(quiet_logs=True))
    data = report.as_dict()

    def render(d: dict[str, Any]) -> None:
        state = "OK" if d["ok"] else "FAILED"
        if d["level"] == "drill":
            took = "no restore" if d["restore_seconds"] is None else f"restored in {d['restore_seconds']}s"
            rto = ""
            if d.get("rto_seconds") is not None:
                rto = f", RTO {fmt_seconds(d['rto_seconds'])} {'met' if d['rto_met'] else 'MISSED'}"
            detail = (f"drill: {d['items']} items into {d['target']}, {took}{rto}, scratch target "
                      f"{'deleted' if d['cleaned_up'] else 'NOT deleted'}")
        elif d["level"] == "sample":
            c = d["sample"]
            detail = (f"sample: {c['compared']} items compared, {c['matched']} identical, "
                      f"{c['changed']} changed and {c['deleted']} deleted since, {c['differs']} differ")
        else:
            detail = f"{d['level']}: {d['parts_checked']} parts, {d['items']} items"
        click.echo(f"{d['ref']}: {state} ({detail})")
        for problem in report.problems:
            click.echo(f"  {problem}")

    emit(ctx, data, render)
    if not report.ok:
        sys.exit(EXIT_FAILED)


@main.command()
@local_options
@click.argument("ref", callback=cliargs.text, metavar="DATASET@SNAPSHOT_ID|DATASET@latest|DATASET --at ISO8601")
@click.option("--into", "--target", "target", callback=cliargs.target, required=True, metavar="NAME",
              help="Target to restore into (DynamoDB: a table name in the source's region; "
                   "S3: BUCKET[/PREFIX]).")
@click.option("--overwrite", is_flag=True, help="Write into a non-empty target.")
@click.option("--store", "store_name", callback=cliargs.text, metavar="STORE", help="Restore from the copy in this store.")
@click.option("--at", "at", callback=cliargs.text, metavar="ISO8601",
              help="Restore DATASET as it was at this moment (continuous capture: a base "
                   "snapshot plus the change log); exit 2 outside the window or inside a gap.")
@allow_unsigned_option
@click.pass_obj
def restore(ctx: Ctx, ref: str, target: str, overwrite: bool, store_name: str | None,
            at: str | None, allow_unsigned: bool) -> None:
    """Restore a snapshot into a target; refuses a non-empty target without --overwrite, and a
    manifest that cannot be trusted (forged, replayed, tampered, downgraded). With --at, REF is a
    DATASET restored as it was at that moment."""
    if at is not None:
        done = services.restore_at(ctx.load(), ref, at, target, overwrite=overwrite,
                                   store_name=store_name, allow_unsigned=allow_unsigned,
                                   progress=progress())
        emit(ctx, done.as_dict(), lambda d: click.echo(
            f"restored {d['dataset']} at {d['at']} into {d['target']}: {d['items']} items "
            f"(base {d['base']}, {d['replay']['changes_read']} logged changes replayed)"))
        return
    result = services.restore(ctx.load(), ref, target, overwrite=overwrite, store_name=store_name,
                              allow_unsigned=allow_unsigned, progress=progress())
    emit(ctx, result.as_dict(), lambda d: click.echo(
        f"restored {d['ref']} into {d['target']}: {d['items']} items in {d['seconds']}s "
        + (f"(via {d['via']})" if d.get("via") else "(content digest matches the manifest)")
    ))
