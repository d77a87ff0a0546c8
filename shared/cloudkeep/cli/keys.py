"""``cloudkeep keys create|check|endorse``: encryption and signing keys."""

from __future__ import annotations

import sys

import click

from .. import cliargs, services
from ..errors import EXIT_FAILED, EXIT_UNREACHABLE
from .app import Ctx, local_options, main
from .output import emit, table


@main.group()
def keys() -> None:
    """Encryption keys: create a local key file, check the policy's keys."""


@keys.command("create")
@local_options
@click.option("--path", "path", callback=cliargs.output_file, required=True, metavar="FILE",
              help="Where to write the new key file (mode 0600; never overwritten).")
@click.pass_obj
def keys_create(ctx: Ctx, path: str) -> None:
    """Create a key file for the ``local`` key provider (keys: {NAME: {provider: local, path: FILE}})."""
    key_id = services.create_key(path)
    emit(ctx, {"path": path, "key_id": key_id, "mode": "0600"}, lambda d: click.echo(
        f"created key file {d['path']} (mode 0600, key id {d['key_id']}); keep a copy somewhere "
        f"safe: snapshots encrypted only with this key cannot be restored without it"))


@keys.command("check")
@local_options
@click.pass_obj
def keys_check(ctx: Ctx) -> None:
    """Wrap and unwrap a test key with every key the policy defines; exit 3 if one fails."""
    rows = services.check_keys(ctx.load()).rows
    emit(ctx, rows, lambda data: table(
        ["key", "provider", "key id", "ok", "error"],
        [[r["key"], r["provider"], r.get("key_id"), "yes" if r["ok"] else "NO", r["error"]] for r in data]))
    if any(not r["ok"] for r in rows):
        sys.exit(EXIT_UNREACHABLE)


@keys.command("endorse")
@local_options
@click.argument("dataset")
@click.option("--store", "store_name", metavar="STORE", help="Endorse the copies in this store.")
@click.option("--dry-run", is_flag=True, help="Only show what would be endorsed.")
@click.pass_obj
def keys_endorse(ctx: Ctx, dataset: str, store_name: str | None, dry_run: bool) -> None:
    """Vouch for DATASET's snapshots written unsigned (or unencrypted) before the policy required
    signatures (or encryption): each gets an endorsement (a tag by the dataset's signing keys,
    create-only, beside its manifest), so a policy with `signing: {required: true}` or encryption
    still reads it. Run it while you trust the store's content; manifests that are forged,
    replayed or tampered are never endorsed."""
    rows = services.endorse(ctx.load(), dataset, store_name=store_name, dry_run=dry_run).rows
    emit(ctx, rows, lambda data: table(["snapshot", "action", "detail"],
                                       [[r["ref"], r["action"], r["detail"]] for r in data])
         if data else click.echo("no committed snapshots"))
    if any(r["action"] == "refused" for r in rows):
        sys.exit(EXIT_FAILED)
