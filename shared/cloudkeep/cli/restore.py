"""``cloudkeep verify`` and ``restore``: the commands that read a snapshot back."""

from __future__ import annotations

import sys
from typing import Any

import click

from .. import cliargs, services
from ..errors import EXIT_FAILED
from ..place import Place
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
@allow_unsigned_option
@click.pass_obj
def verify(ctx: Ctx, ref: str | None, latest_of: str | None, level: str, sample_items: int,
           store_name: str | None, allow_unsigned: bool) -> None:
    """Check a snapshot at the given level; the report is stored under verifications/; exit 1
    on any problem."""
    if bool(ref) == bool(latest_of):
        usage("verify needs exactly one of DATASET@SNAPSHOT_ID or --latest DATASET")
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
@click.argument("ref", callback=cliargs.text, metavar="DATASET@SNAPSHOT_ID|DATASET@latest")
@click.option("--into", "--target", "target", callback=cliargs.target, required=True, metavar="NAME",
              help="Target to restore into (DynamoDB: a table name, in the source's region "
                   "unless --region; S3: BUCKET[/PREFIX]).")
@click.option("--overwrite", is_flag=True, help="Write into a non-empty target.")
@click.option("--store", "store_name", callback=cliargs.text, metavar="STORE", help="Restore from the copy in this store.")
@allow_unsigned_option
# --- another place and a governed rate (issue #23 §2-3; docs/emergency-restore.md) ----------
@click.option("--region", callback=cliargs.text, metavar="REGION",
              help="Restore into this region (AWS: where the table or bucket is made; with "
                   "--project or --endpoint: that target's location). Checked against residency.")
@click.option("--profile", callback=cliargs.text, metavar="PROFILE",
              help="AWS: the named profile whose credentials write the target.")
@click.option("--role-arn", callback=cliargs.text, metavar="ARN",
              help="AWS: assume this role (another account) to write the target; credentials "
                   "are refreshed for long restores.")
@click.option("--external-id", callback=cliargs.unechoed_text, metavar="ID",
              help="AWS: the external id the role's trust policy requires (with --role-arn).")
@click.option("--project", callback=cliargs.text, metavar="PROJECT",
              help="Firestore: restore into this Google Cloud project.")
@click.option("--endpoint", callback=cliargs.text, metavar="URL",
              help="Cosmos DB: restore into the account at this endpoint.")
@click.option("--key-env", callback=cliargs.unechoed_text, metavar="NAME",
              help="Cosmos DB: the environment variable holding that account's key (never the "
                   "key itself).")
@click.option("--max-rate", type=click.FloatRange(min=0, min_open=True), metavar="ITEMS_PER_S",
              help="Write at most this many items per second (all threads together).")
@click.option("--capacity-share", type=click.FloatRange(min=0, max=1, min_open=True),
              metavar="SHARE", help="Provisioned DynamoDB target: use at most this share of its "
                                    "write capacity (e.g. 0.5).")
@click.pass_obj
def restore(ctx: Ctx, ref: str, target: str, overwrite: bool, store_name: str | None,
            allow_unsigned: bool, region: str | None, profile: str | None,
            role_arn: str | None, external_id: str | None, project: str | None,
            endpoint: str | None, key_env: str | None, max_rate: float | None,
            capacity_share: float | None) -> None:
    """Restore a snapshot into a target; refuses a non-empty target without --overwrite, and a
    manifest that cannot be trusted (forged, replayed, tampered, downgraded). The target may be
    in another region, account or project (--region, --profile, --role-arn, --project,
    --endpoint); the policy's residency is checked before anything is written."""
    place = Place(region=region, profile=profile, role_arn=role_arn, external_id=external_id,
                  project=project, endpoint=endpoint, key_env=key_env)
    result = services.restore(ctx.load(), ref, target, overwrite=overwrite, store_name=store_name,
                              allow_unsigned=allow_unsigned, progress=progress(),
                              place=place, max_rate=max_rate, capacity_share=capacity_share)
    emit(ctx, result.as_dict(), lambda d: click.echo(
        f"restored {d['ref']} into {d['target']}: {d['items']} items in {d['seconds']}s "
        + (f"(via {d['via']})" if d.get("via") else "(content digest matches the manifest)")
        + _place_and_rate(d)
    ))


def _place_and_rate(d: dict[str, Any]) -> str:
    """`` at region eu-west-1, account 1111…; at most 200 items/s, throttled 3 times``."""
    out = ""
    place = d.get("place") or {}
    where = [f"{k.replace('_', ' ')} {v}" for k, v in place.items()
             if k in ("region", "account", "profile", "project", "endpoint")]
    if where:
        out += "; at " + ", ".join(where)
    rate = d.get("rate") or {}
    if rate.get("max_rate"):
        out += f"; at most {rate['max_rate']:g} items/s ({rate['basis']})"
    elif rate.get("basis"):
        out += f"; {rate['basis']}"
    if rate.get("throttled"):
        out += (f"; the target throttled {rate['throttled']} write(s), backed off "
                f"{rate['throttle_seconds']:g}s")
    return out
