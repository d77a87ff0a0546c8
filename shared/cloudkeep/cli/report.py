"""``cloudkeep report``: how the backups are doing, as a table, JSON or one HTML file."""

from __future__ import annotations

import sys
from typing import Any

import click

from .. import cliargs, services
from ..errors import EXIT_FAILED
from ..policy import load_policy, resolve_policy_path
from ..pricing import summary_text
from ..report import age_text, check_state, drill_text, human_seconds
from ..runtime import parse_now
from .app import Ctx, local_options, main
from .output import emit, human_bytes, paint, table


@main.command()
@local_options
@click.argument("datasets", callback=cliargs.text, nargs=-1)
@click.option("--output", "-o", "output", callback=cliargs.output_file, metavar="FILE.html",
              help="Also write the report as one self-contained HTML file (timelines as SVG).")
@click.option("--now", "now_text", callback=cliargs.text, metavar="ISO8601", help="Pretend it is this time.")
@click.pass_obj
def report(ctx: Ctx, datasets: tuple[str, ...], output: str | None, now_text: str | None) -> None:
    """Per dataset: newest snapshot and age vs RPO, last verification and restore drill, snapshots
    and stored size, what retention would keep/remove now, legal holds, open alerts."""
    source = resolve_policy_path(ctx.policy_path)
    policy = load_policy(source).policy
    done = services.report(policy, parse_now(now_text), policy_source=source, datasets=datasets,
                           html=output)
    data = done.data

    def render(d: dict[str, Any]) -> None:
        now = parse_now(d["generated_at"])

        def ago(at: str | None) -> str:
            return "" if not at else human_seconds((now - parse_now(at)).total_seconds()) + " ago"

        def check(v: dict[str, Any] | None) -> str:
            return "never" if v is None else f"{check_state(v)}, {v['level']}, {ago(v.get('at'))}"

        def drill(v: dict[str, Any] | None) -> str:
            return "never" if v is None else drill_text(v, ago(v.get("at")))

        rows = []
        for r in d["datasets"]:
            if r.get("error"):
                rows.append([r["dataset"], paint("ERROR", "red"), r["tier"], r["error"]] + [None] * 8)
                continue
            ret = r["retention"]
            rows.append([
                r["dataset"], paint(r["status"].upper() if r["status"] != "ok" else "ok",
                                     {"ok": "green", "warning": "yellow"}.get(r["status"], "red")),
                r["tier"], r["newest_snapshot"] or "none", age_text(r),
                check(r["last_verification"]), drill(r["last_drill"]),
                r["snapshot_count"], human_bytes(r["stored_bytes"]),
                f"keep {len(ret['keep'])}, remove {len(ret['remove'])}",
                len(r["holds"]), len(r["alerts_open"]),
            ])
        table(["dataset", "status", "tier", "newest", "age / RPO", "verified", "drill (RTO)",
                "snapshots", "stored", "retention now", "holds", "alerts"],
               rows, title=f"cloudkeep report, {d['generated_at'][:16].replace('T', ' ')} UTC",
               min_width=200)
        for r in d["datasets"]:
            for reason in r.get("attention", []):
                click.echo(f"  {r['dataset']}: {reason}")
            if r.get("storage"):  # s16-cold: bytes per storage class, monthly cost
                click.echo(f"  {r['dataset']}: storage {summary_text(r['storage'], human_bytes)}")
            for wait in r.get("rehydrating") or []:  # s16-cold: a verification/copy waits
                click.echo(f"  {r['dataset']}: rehydrating {wait['snapshot_id']} for a "
                           f"{wait['purpose']} (expected ready by {wait['expected_ready_at'][:16]})")
        if d.get("html"):
            click.echo(f"wrote {d['html']}")

    emit(ctx, data, render)
    if done.failed:
        sys.exit(max(int(r.get("exit_code", EXIT_FAILED)) for r in done.failed))
