"""``cloudkeep run``, ``work`` and ``prune``: the commands that take snapshots and apply
retention."""

from __future__ import annotations

import re
import sys
from typing import Any

import click

from .. import cliargs, services
from ..checkpoint import Deadline
from ..engine import RunOptions
from ..errors import EXIT_FAILED
from ..policy import parse_duration
from ..queues import open_queue
from ..runtime import parse_now
from .app import Ctx, local_options, main, progress, usage
from .output import emit, human_bytes, job_note, table


@main.command()
@local_options
@click.argument("datasets", callback=cliargs.text, nargs=-1)
@click.option("--due", is_flag=True, help="Run only what is due now (as the scheduled tick does).")
@click.option("--now", "now_text", callback=cliargs.text, metavar="ISO8601",
              help="With --due: replay the tick at this time (a simulated clock starts here and "
                   "advances with real time; every time the run records comes from it).")
@click.option("--budget", "budget_text", callback=cliargs.text, metavar="DURATION",
              help="Stop cleanly after about this long (e.g. 10m); the next run resumes.")
@click.option("--queue", "queue_url", callback=cliargs.text, metavar="URL",
              help="Fan out: send segments as work items to this queue (sqs:URL, pubsub:TOPIC, "
                   "azure_queue:NAME); inprocess: runs them here.")
@click.option("--part-size", "part_size_text", callback=cliargs.text, metavar="SIZE",
              help="Raw bytes per part (e.g. 64MiB, the default).")
@click.option("--workers", type=click.IntRange(1, 256), help="Segments read at once (default 16).")
@click.option("--checkpoint-every", type=click.IntRange(1, 10_000), metavar="PARTS",
              help="Checkpoint each segment after this many parts (default 4).")
@click.option("--wait", is_flag=True,
              help="Native jobs (exports, backups, RDS snapshots): keep polling in this process "
                   "until the job is done and the manifest committed, instead of returning "
                   "'pending' for the next run to continue.")
@click.option("--wait-timeout", type=click.FloatRange(min=0), default=6 * 3600.0, show_default=True,
              metavar="SECONDS", help="With --wait: give up waiting (the job stays pending) after this long.")
@click.option("--poll-interval", type=click.FloatRange(min=0), default=15.0, show_default=True,
              metavar="SECONDS", help="With --wait: seconds between two polls of a native job.")
@click.pass_obj
def run(ctx: Ctx, datasets: tuple[str, ...], due: bool, now_text: str | None,
        budget_text: str | None, queue_url: str | None, part_size_text: str | None,
        workers: int | None, checkpoint_every: int | None, wait: bool, wait_timeout: float,
        poll_interval: float) -> None:
    """Take snapshots of DATASETS now (every dataset if none is named), or with --due only
    those due, each as the snapshot of its schedule slot. An unfinished snapshot (stopped by
    --budget, or killed) is resumed from its checkpoints.

    A dataset whose source runs a native job (DynamoDB method export/native, RDS, Firestore
    method export) is started and reported 'pending'; the next run (or scheduled tick) polls it
    and commits the snapshot once the job is done. --wait polls in this process instead.
    Firestore's export goes through its Admin API, which the Firestore emulator does not
    implement: against the emulator, use method scan.

    With --due and --format json, the reply is everything the tick did: "datasets" (each
    dataset's outcome), "backups", "copies", "drills", "samples", "prunes", "alerts" and the
    watchdog's "freshness"."""
    if now_text and not due:
        usage("--now only makes sense with --due")
    options, _deadline = _run_options(budget_text, part_size_text, workers)
    options.wait = wait_timeout if wait else 0.0
    options.poll_interval = poll_interval
    if checkpoint_every:
        options.checkpoint_every = checkpoint_every
    if queue_url:
        options.queue = open_queue(queue_url)
    policy = ctx.load()
    services.dataset_names(policy, datasets)  # unknown names fail before anything runs
    done = services.run(policy, datasets, due=due, now=parse_now(now_text) if due else None,
                        replay=bool(now_text), options=options, progress_factory=progress)
    data = services.run_reply(done)

    def render(everything: Any) -> None:
        rows = everything["datasets"] if isinstance(everything, dict) else everything
        table(
            ["dataset", "status", "snapshot", "items", "parts", "stored", "seconds", "error"],
            [[r["dataset"], r["status"], r.get("snapshot_id"), r.get("items"), r.get("parts"),
              human_bytes(r["bytes_stored"]) if "bytes_stored" in r else None,
              r.get("duration_seconds"),
              r.get("error") or job_note(r.get("job"))
              or (f"{r['segments_done']}/{r['segments']} segments done"
                  if r["status"] == "unfinished" else None)] for r in rows],
        )
        if isinstance(everything, dict):
            for v in everything["verifications"]:
                click.echo(f"{v['level']} of {v['ref']}: {'OK' if v['ok'] else 'FAILED'}"
                           + (f" (slot {v['slot'][:16].replace('T', ' ')})" if v.get("slot") else ""))
            for p in everything["prunes"]:
                if p["removed"]:
                    click.echo(f"pruned {len(p['removed'])} snapshot(s) of {p['dataset']}")
            for a in everything["alerts"]:
                click.echo(a["text"])

    emit(ctx, data, render)
    if not done.ok:
        # A failed copy fails the command; its snapshot stays committed (and is listed).
        sys.exit(max([r.exit_code for r in done.failed]
                     + ([EXIT_FAILED] if done.copy_failures else [])))


def _run_options(budget_text: str | None, part_size_text: str | None,
                 workers: int | None) -> tuple[RunOptions, Deadline | None]:
    """Run options from the command line (a bad --budget or --part-size: exit 2)."""
    options = RunOptions()
    deadline = None
    if budget_text:
        try:
            budget = parse_duration(budget_text)
        except (ValueError, TypeError) as exc:
            usage(f"--budget: {exc}")
        deadline = Deadline.after(budget.total_seconds())
        options.deadline = deadline
    if part_size_text:
        options.part_size = _parse_size(part_size_text, "--part-size")
    if workers:
        options.workers = workers
    return options, deadline


_SIZE_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2,
               "mib": 1024**2, "g": 1000**3, "gb": 1000**3, "gib": 1024**3}


def _parse_size(text: str, option: str) -> int:
    match = re.fullmatch(r"\s*(\d+)\s*([A-Za-z]*)\s*", text)
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _SIZE_UNITS or int(match.group(1)) < 1:
        usage(f"{option}: {text!r} is not a size (e.g. 64MiB, 500kB, 1048576)")
    return int(match.group(1)) * _SIZE_UNITS[unit]


@main.command()
@local_options
@click.option("--queue", "queue_url", callback=cliargs.text, metavar="URL", required=True,
              help="The work queue (sqs:URL, pubsub:TOPIC?subscription=SUB, azure_queue:NAME).")
@click.option("--budget", "budget_text", callback=cliargs.text, metavar="DURATION",
              help="Stop taking work after about this long; unfinished items go back on the queue.")
@click.option("--workers", type=click.IntRange(1, 256), default=4, show_default=True,
              help="Work items run at once.")
@click.option("--wait", "wait_seconds", type=click.FloatRange(0, 20), default=1.0, show_default=True,
              help="Seconds to wait for items before deciding the queue is empty.")
@click.pass_obj
def work(ctx: Ctx, queue_url: str, budget_text: str | None, workers: int,
         wait_seconds: float) -> None:
    """Take fan-out work items (one segment of a snapshot each) from a queue until it is empty;
    the worker finishing a snapshot's last segment commits it."""
    _options, deadline = _run_options(budget_text, None, None)
    policy = ctx.load()
    outcomes = services.work(policy, open_queue(queue_url), workers=workers, deadline=deadline,
                             wait_seconds=wait_seconds, idle_rounds=2)
    data = [o.as_dict() for o in outcomes]
    emit(ctx, data, lambda rows: table(
        ["dataset", "snapshot", "segment", "status", "items"],
        [[r["dataset"], r["snapshot_id"], r["segment"], r["status"], r.get("items")] for r in rows],
    ))


@main.command()
@local_options
@click.argument("datasets", callback=cliargs.text, nargs=-1)
@click.option("--dry-run", is_flag=True, help="Only show what would be kept and removed.")
@click.option("--now", "now_text", callback=cliargs.text, metavar="ISO8601", help="Pretend it is this time.")
@click.pass_obj
def prune(ctx: Ctx, datasets: tuple[str, ...], dry_run: bool, now_text: str | None) -> None:
    """Apply retention: keep/remove with reasons; the real run deletes manifests first, then
    parts, and parts left by crashed runs."""
    policy = ctx.load()
    services.dataset_names(policy, datasets)  # unknown names fail before anything runs
    reports = services.prune(policy, datasets, parse_now(now_text), dry_run=dry_run,
                             replay=bool(now_text))
    data = [r.as_dict() for r in reports]

    def render(rows: list[dict[str, Any]]) -> None:
        for report in rows:
            verb = "would remove" if report["dry_run"] else "removed"
            table(["snapshot", "action", "reasons"],
                   [[s["snapshot_id"], s["action"].upper() if s["action"] == "remove" else "keep",
                     ", ".join(s["reasons"])] for s in report["snapshots"]],
                   title=f"{report['dataset']}: {verb} "
                         f"{sum(s['action'] == 'remove' for s in report['snapshots'])}")
            for locked in report["locked"]:
                click.echo(f"  skipped {locked['snapshot_id']} ({locked['store']}): {locked['detail']}")
            for orphan in report["orphans_removed"]:
                click.echo(f"  removed parts of unfinished run {orphan}")
            gcs = [("blobs", report.get("blobs"))] + [
                (f"blobs in {name}", gc) for name, gc in report.get("copy_blobs", {}).items()]
            for label, gc in gcs:
                if not gc:
                    continue
                if gc["skipped"]:
                    click.echo(f"  {label}: not collected: {gc['skipped']}")
                else:
                    click.echo(f"  {label}: {verb} {gc['removed']} unreferenced "
                               f"({human_bytes(gc['removed_bytes'])}), "
                               f"{gc['kept_within_grace']} kept within the grace period, "
                               f"{gc['referenced']} referenced")
            for error in report["errors"]:
                click.echo(f"  error: {error}")
            for problem in report.get("problems", []):
                click.echo(f"  warning: {problem}")

    emit(ctx, data, render)
    if any(r.errors for r in reports):
        sys.exit(EXIT_FAILED)
