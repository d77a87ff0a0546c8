"""``cloudkeep plan``, ``list``, ``show`` and ``audit``: the commands that read what the stores
hold."""

from __future__ import annotations

import sys
from typing import Any

import click

from .. import cliargs, services
from ..errors import EXIT_FAILED, EXIT_UNREACHABLE
from ..runtime import parse_now
from .app import Ctx, allow_unsigned_option, local_options, main
from .output import (
    emit,
    encryption_text,
    fmt_seconds,
    hold_cell,
    human_bytes,
    native_summary,
    retention_table,
    table,
    verification_cell,
)


@main.command()
@local_options
@click.option("--now", "now_text", callback=cliargs.text, metavar="ISO8601", help="Pretend it is this time.")
@click.option("--retention", "with_retention", is_flag=True,
              help="Also show what retention would keep and remove now, with every reason.")
@click.pass_obj
def plan(ctx: Ctx, now_text: str | None, with_retention: bool) -> None:
    """Per dataset: latest snapshot and age vs RPO, current slot, due or not, next run (with
    --retention: every snapshot retention would keep, with its reasons, or remove)."""
    policy = ctx.load()
    now = parse_now(now_text)
    rows = [p.as_dict() for p in services.plan(policy, now)]
    if with_retention:
        decided = {r["dataset"]: r for r in services.retention_plan(policy, now=now)}
        for row in rows:
            found = decided[row["dataset"]]
            row["retention"] = {k: found[k] for k in ("rules", "snapshots", "errors")}

    def render(data: list[dict[str, Any]]) -> None:
        def ago(seconds: int | None) -> str:
            return "never" if seconds is None else fmt_seconds(seconds) + " ago"

        table(
            ["dataset", "tier", "latest", "age", "rpo", "rpo met", "slot", "due", "next run",
             "verified", "drill", "alerts"],
            [[r["dataset"], r["tier"], r["latest_snapshot"] or "—", ago(r["age_seconds"]),
              fmt_seconds(r["rpo_seconds"]), "yes" if r["rpo_met"] else "NO",
              r["slot"][:16].replace("T", " "), "DUE" if r["due"] else "no",
              r["next_run"][:16].replace("T", " "),
              verification_cell(r.get("last_verification"), True),
              verification_cell(r.get("last_drill")),
              ", ".join(a["kind"] for a in r.get("alerts") or []) or "—"] for r in data],
        )
        for r in data:
            if "retention" in r:
                retention_table(r["dataset"], r["retention"])

    emit(ctx, rows, render)


@main.command("list")
@local_options
@click.argument("dataset", callback=cliargs.text, required=False)
@click.option("--store", "store_name", callback=cliargs.text, metavar="STORE", help="List the copies in this store instead.")
@click.pass_obj
def list_(ctx: Ctx, dataset: str | None, store_name: str | None) -> None:
    """Committed snapshots (of DATASET, or of every dataset), oldest capture first, with their
    capture time (when the data was read), legal holds and verified copies. A manifest that
    cannot be trusted (forged, replayed, tampered, downgraded) or read is not listed: it is
    reported (exit 1 for tampering) and the rest is."""
    listing = services.list_snapshots(ctx.load(), dataset, store_name=store_name)
    rows, refused = listing.rows, listing.refused

    def render(data: list[dict[str, Any]]) -> None:
        if not data:
            click.echo("no committed snapshots" + (" that can be trusted" if refused else ""))
        else:
            # the ref is the value a user copies: never cut; other columns wrap or go first
            table(
                ["ref", "trigger", "captured", "items", "parts", "stored", "seconds", "copies",
                 "hold", "verified", "drill", "encrypted"],
                [[r["ref"], r["trigger"],
                  r["captured_at"][:16].replace("T", " "), r["items"], r["parts"],
                  human_bytes(r["bytes_stored"]), r["duration_seconds"],
                  ", ".join(r["copies"]) or "—",
                  hold_cell(r["holds"]), verification_cell(r["last_verification"], True),
                  verification_cell(r["last_drill"]), "yes" if r["encrypted"] else "no"]
                 for r in data],
                whole=["ref", "captured"],
                drop=["parts", "seconds", "encrypted", "trigger", "items", "copies", "drill",
                      "verified", "stored", "hold", "captured"],
            )
        for refusal in refused:  # shown, but never as a snapshot
            click.echo(f"{refusal.dataset}@{refusal.snapshot_id} ({refusal.kind.upper()}): "
                       "not listed, left in the store as evidence")

    emit(ctx, rows, render)
    for problem in listing.problems:
        click.echo(f"warning: {problem}", err=True)
    for refusal in refused:
        click.echo(f"{'error' if refusal.kind != 'unreadable' else 'warning'}: {refusal.message}",
                   err=True)
    if listing.tampering:
        sys.exit(EXIT_FAILED)
    if listing.key_unavailable:
        sys.exit(EXIT_UNREACHABLE)


@main.command()
@local_options
@click.argument("ref", callback=cliargs.text, metavar="DATASET@SNAPSHOT_ID|DATASET@latest")
@click.option("--store", "store_name", callback=cliargs.text, metavar="STORE", help="Read the copy in this store.")
@allow_unsigned_option
@click.pass_obj
def show(ctx: Ctx, ref: str, store_name: str | None, allow_unsigned: bool) -> None:
    """A manifest summary, with its legal holds, copies and verifications."""
    detail = services.show_snapshot(ctx.load(), ref, store_name=store_name,
                                    allow_unsigned=allow_unsigned)
    data = detail.data

    def render(d: dict[str, Any]) -> None:
        src = d["source"]
        lines = [
            ("snapshot", d["ref"]),
            ("store", f"{d['store']} ({d['store_location']})"),
            ("source", " ".join(str(v) for v in (
                src.get("type"), src.get("table") or src.get("bucket") or src.get("instance")
                or src.get("cluster") or src.get("project"), src.get("prefix"),
                src.get("region")) if v)),
            ("method", d["method"]),
            ("captured", f"{d['captured_at']} (when the data was read)"),
            ("trigger", d["trigger"] + (f" (slot {d['slot']})" if d.get("slot") else "")),
            ("tier", d["tier"]),
            ("started", d["started_at"]),
            ("finished", d["finished_at"]),
            ("consistency", d["consistency"]["mode"]),
            ("items", d["totals"]["items"]),
            ("parts", f"{d['totals']['parts']} from {d['segments']} segments"),
            ("raw", human_bytes(d["totals"]["raw_bytes"])),
            ("stored", human_bytes(d["totals"]["stored_bytes"])),
            ("codec", f"{d['codec']['framing']} + {d['codec']['compression']} "
                      f"level {d['codec']['level']}, encryption: {encryption_text(d['codec']['encryption'])}"),
            ("authenticated", "yes (manifest tag checked)" if d.get("authentication")
             else "no (neither encrypted nor signed)"),
            ("content digest", d["content_digest"]["value"]),
            *([("native", native_summary(d["native"]))] if d.get("native") else []),
            ("cloudkeep", d["cloudkeep_version"]),
            *([("legal holds", "none")] if not d["holds"] else
              [("legal hold" if i == 0 else "", f"{h['hold_id']}: {h['reason']} ({h.get('created_by')}, "
                                               f"{str(h.get('created_at') or '')[:19]})")
               for i, h in enumerate(d["holds"])]),
            ("copies", ", ".join(f"{c['store']} ({'verified' if c.get('verified') else 'FAILED'})"
                                 for c in d["copies"]) or "none"),
            ("last verified", verification_cell(d["last_verification"], True)),
            ("last drill", verification_cell(d["last_drill"])),
        ]
        width = max(len(k) for k, _ in lines)
        for key, value in lines:
            click.echo(f"{key.ljust(width)}  {value}")

    emit(ctx, data, render)
    for problem in detail.problems:
        click.echo(f"warning: {problem}", err=True)


@main.command("audit")
@local_options
@click.option("--since", "since_text", callback=cliargs.text, metavar="ISO8601|DURATION",
              help="Only records at or after this time (e.g. 2026-01-31T00:00:00Z, or 24h, 7d back).")
@click.option("--dataset", "dataset_filter", callback=cliargs.text, metavar="DATASET", help="Only records of DATASET.")
@click.pass_obj
def audit_(ctx: Ctx, since_text: str | None, dataset_filter: str | None) -> None:
    """The audit log: every backup, verification, restore, prune, hold and policy change, with
    who or what triggered it, when, and the outcome (oldest first)."""
    log = services.audit_log(ctx.load(), since=since_text, dataset=dataset_filter)
    rows, since = log.rows, log.since

    def render(data: list[dict[str, Any]]) -> None:
        if not data:
            click.echo("no audit records" + (f" since {since.isoformat()}" if since else ""))
            return

        def actor(a: Any) -> str:
            if not isinstance(a, dict):
                return "?"
            detail = a.get("user") or a.get("function") or a.get("platform") or ""
            return f"{a.get('kind')}" + (f" ({detail})" if detail else "")

        table(["at", "event", "dataset", "snapshot", "outcome", "by"],
               [[str(r.get("at"))[:19].replace("T", " "), r.get("event"), r.get("dataset") or "—",
                 r.get("snapshot_id") or "—", r.get("outcome"), actor(r.get("actor"))]
                for r in data])

    emit(ctx, rows, render)
