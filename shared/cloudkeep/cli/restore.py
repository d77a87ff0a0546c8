"""``cloudkeep verify`` and ``restore``: the commands that read a snapshot back."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from .. import cliargs, services
from ..errors import EXIT_FAILED, UsageError
from ..place import Place
from ..services import capture_drills
from ..services.restoring import PartialResult, SelectionRequest
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
              help="Target to restore into (DynamoDB: a table name, in the source's region "
                   "unless --region; S3: BUCKET[/PREFIX]).")
@click.option("--overwrite", is_flag=True, help="Write into a non-empty target.")
@click.option("--store", "store_name", callback=cliargs.text, metavar="STORE", help="Restore from the copy in this store.")
@click.option("--at", "at", callback=cliargs.text, metavar="ISO8601",
              help="Restore DATASET as it was at this moment (continuous capture: a base "
                   "snapshot plus the change log); exit 2 outside the window or inside a gap.")
# partial restore (#22; docs/partial-restore.md)
@click.option("--keys", "keys_file", callback=cliargs.input_file, metavar="FILE",
              help="Restore only the items with these keys: one key per line, in the source's "
                   "own form (JSON).")
@click.option("--key", "keys", multiple=True, metavar="JSON",
              help="Restore only the item with this key (repeatable), e.g. "
                   "'{\"pk\": {\"S\": \"user#1\"}}'.")
@click.option("--where", "where", metavar="EXPR",
              help="Restore only the items matching EXPR, e.g. 'status = \"open\" and total > 10'.")
@click.option("--dry-run", is_flag=True,
              help="Write nothing: with a selection, what would change item by item (--format "
                   "json lists them all); else what the restore would do, with the settings it "
                   "would apply.")
@click.option("--delete-missing", is_flag=True,
              help="Delete from the target the keys asked for that the snapshot does not hold.")
@click.option("--settings", "settings", type=click.Choice(["all", "data", "none"]), default="all",
              show_default=True,
              help="Which recorded settings to apply to the target after its items: all; data "
                   "(only those that shape the data: TTL, encryption, indexing policy, unique "
                   "keys, versioning, lifecycle, Object Lock, ...); none.")
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
            at: str | None, keys_file: str | None, keys: tuple[str, ...], where: str | None,
            dry_run: bool, delete_missing: bool, settings: str, allow_unsigned: bool,
            region: str | None,
            profile: str | None, role_arn: str | None, external_id: str | None,
            project: str | None, endpoint: str | None, key_env: str | None,
            max_rate: float | None, capacity_share: float | None) -> None:
    """Restore a snapshot into a target; refuses a non-empty target without --overwrite, and a
    manifest that cannot be trusted (forged, replayed, tampered, downgraded). With --keys,
    --key or --where only the selected items are restored (into the live dataset too, with
    --overwrite); every other item of the target stays as it is. The target may be in another
    region, account or project (--region, --profile, --role-arn, --project, --endpoint); the
    policy's residency is checked before anything is written. With --at, REF is a DATASET
    restored as it was at that moment."""
    place = Place(region=region, profile=profile, role_arn=role_arn, external_id=external_id,
                  project=project, endpoint=endpoint, key_env=key_env)
    selection = SelectionRequest(keys_file=keys_file, keys=keys, where=where)
    if at is not None:
        if not place.is_here() or max_rate is not None or capacity_share is not None:
            raise UsageError("bad --at: a restore to a moment writes into the source's own "
                             "account and region at full rate (no --region, --profile, "
                             "--role-arn, --project, --endpoint, --max-rate, --capacity-share)")
        if not selection.empty or dry_run or delete_missing:
            raise UsageError("bad --at: a restore to a moment restores the whole dataset (no "
                             "--keys, --key, --where, --dry-run, --delete-missing)")
        done = services.restore_at(ctx.load(), ref, at, target, overwrite=overwrite,
                                   store_name=store_name, allow_unsigned=allow_unsigned,
                                   progress=progress())
        emit(ctx, done.as_dict(), lambda d: click.echo(
            f"restored {d['dataset']} at {d['at']} into {d['target']}: {d['items']} items "
            f"(base {d['base']}, {d['replay']['changes_read']} logged changes replayed)"))
        return
    result = services.restore(ctx.load(), ref, target, overwrite=overwrite, store_name=store_name,
                              allow_unsigned=allow_unsigned, progress=progress(),
                              place=place, max_rate=max_rate, capacity_share=capacity_share,
                              selection=selection, dry_run=dry_run, delete_missing=delete_missing,
                              settings=settings)
    if isinstance(result, PartialResult):
        emit(ctx, result.as_dict(), _render_partial)
        return

    def render(d: dict[str, Any]) -> None:
        if d.get("dry_run"):
            click.echo(f"dry run: would restore {d['ref']} into {d['target']}: {d['items']} items "
                       "(nothing written)" + _place_and_rate(d))
        else:
            click.echo(f"restored {d['ref']} into {d['target']}: {d['items']} items in {d['seconds']}s "
                       + (f"(via {d['via']})" if d.get("via") else "(content digest matches the manifest)")
                       + _place_and_rate(d))
        for line in settings_lines(d.get("settings")):
            click.echo(line)

    emit(ctx, result.as_dict(), render)


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


SHOWN = 50  # items a text answer lists (--format json lists them all)


def _render_partial(d: dict[str, Any]) -> None:
    if d["dry_run"]:
        click.echo(f"dry run of {d['ref']} into {d['target']} (nothing written): {d['selected']} "
                   f"items selected: {d['new']} new, {d['changed']} changed, {d['unchanged']} "
                   f"unchanged; {d['missing']} missing from the snapshot"
                   + (f", {d['deleted']} would be deleted" if d["deleted"] else "")
                   + ("; the target holds some of them: the restore needs --overwrite"
                      if d.get("needs_overwrite") else ""))
    else:
        click.echo(f"restored {d['put']} selected items of {d['ref']} into {d['target']} in "
                   f"{d['seconds']}s (every part checked); {d['missing']} missing from the "
                   f"snapshot" + (f", {d['deleted']} deleted from the target" if d["deleted"] else ""))
    for item in d["items"][:SHOWN]:
        what = item.get("change") or {True: "in the target", False: "not in the target"}.get(
            item.get("live"), "")
        click.echo(f"  {item['action']:<7} {json.dumps(item['key'], ensure_ascii=False)}"
                   + (f" ({what})" if what else ""))
    if len(d["items"]) > SHOWN:
        click.echo(f"  ... and {len(d['items']) - SHOWN} more (--format json lists them all)")


def settings_lines(data: dict[str, Any] | None) -> list[str]:
    """A restore's ``settings`` outcome as lines for a person: what was (or would be) applied,
    what was left out, and each setting not applied with its reason."""
    if not data:
        return []
    if not data.get("recorded"):
        return [f"settings: {data.get('note') or 'none recorded in this snapshot'}"]
    dry = "to_apply" in data
    names = data.get("to_apply" if dry else "applied") or []
    out = [f"settings ({data.get('mode')}): {'would apply' if dry else 'applied'} "
           f"{', '.join(names) or 'none'}"]
    if data.get("skipped"):
        out.append(f"settings left out by --settings {data.get('mode')}: {', '.join(data['skipped'])}")
    out += [f"setting NOT applied: {e['setting']}: {e['reason']}" for e in data.get("not_applied") or []]
    return out
