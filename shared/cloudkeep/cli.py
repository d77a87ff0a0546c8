"""The ``cloudkeep`` command (contract: DESIGN.md §5).

Exit codes: 0 success, 1 an operation failed, 2 bad usage or a bad policy, 3 a store or source
could not be reached. Errors are one clear message on stderr; tracebacks only with ``--debug``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import click

from . import __version__
from .errors import EXIT_FAILED, EXIT_USAGE, CloudkeepError, PolicyError
from .logctx import StderrHandler

log = logging.getLogger("cloudkeep")


@dataclass
class Ctx:
    policy_path: str | None
    fmt: str
    debug: bool

    def load(self) -> Any:
        from .policy import load_policy, resolve_policy_path

        return load_policy(resolve_policy_path(self.policy_path)).policy


def _setup_logging(debug: bool, quiet: bool) -> None:
    level = logging.DEBUG if debug else (logging.WARNING if quiet else logging.INFO)
    handler = StderrHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("cloudkeep")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    if debug:
        logging.getLogger("botocore").setLevel(logging.INFO)


def _progress() -> Any:
    from .progress import LogProgress, RichProgress

    if sys.stderr.isatty() and not os.environ.get("CI"):
        return RichProgress()
    return LogProgress()


def _emit(ctx: Ctx, data: Any, render: Callable[[Any], None]) -> None:
    if ctx.fmt == "json":
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        render(data)


def _table(columns: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(*columns, title=title, title_justify="left")
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    import shutil

    width = None if sys.stdout.isatty() else max(160, shutil.get_terminal_size().columns)
    Console(width=width, no_color="NO_COLOR" in os.environ or None).print(table)


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _local_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Let --policy, --format and --debug also follow the command (``cloudkeep list --format json``)."""

    def set_attr(name: str) -> Callable[[click.Context, click.Parameter, Any], None]:
        def callback(click_ctx: click.Context, _param: click.Parameter, value: Any) -> None:
            if value not in (None, False):
                setattr(click_ctx.ensure_object(Ctx), name, value)
                if name == "debug":
                    _setup_logging(True, False)

        return callback

    fn = click.option("--policy", "policy_path_local", metavar="FILE", expose_value=False,
                      callback=set_attr("policy_path"), help="Policy file (as the global option).")(fn)
    fn = click.option("--format", "fmt_local", type=click.Choice(["table", "json"]), expose_value=False,
                      callback=set_attr("fmt"), help="Output format (as the global option).")(fn)
    fn = click.option("--debug", "debug_local", is_flag=True, expose_value=False,
                      callback=set_attr("debug"), help="As the global option.")(fn)
    return fn


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--policy", "policy_path", metavar="FILE",
              help="Policy file (default ./cloudkeep.yaml, else $CLOUDKEEP_POLICY).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True, help="Output format.")
@click.option("--debug", is_flag=True, help="Verbose logs and tracebacks on errors.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors on stderr.")
@click.version_option(__version__, prog_name="cloudkeep")
@click.pass_context
def main(click_ctx: click.Context, policy_path: str | None, fmt: str, debug: bool, quiet: bool) -> None:
    """cloudkeep: back up, verify and restore serverless datasets by policy."""
    from .memory import bound_malloc

    bound_malloc()  # flat memory over long runs (see memory.py)
    _setup_logging(debug, quiet)
    click_ctx.obj = Ctx(policy_path, fmt, debug)


@main.command()
@_local_options
@click.pass_obj
def validate(ctx: Ctx) -> None:
    """Check the policy; print every error with its field path."""
    from .policy import load_policy, resolve_policy_path

    path = resolve_policy_path(ctx.policy_path)
    try:
        policy = load_policy(path).policy
    except PolicyError as exc:
        if ctx.fmt == "json":
            click.echo(json.dumps({"ok": False, "policy": path, "errors": exc.problems}, indent=2))
            sys.exit(exc.exit_code)
        raise
    data = {
        "ok": True,
        "policy": path,
        "stores": sorted(policy.stores),
        "tiers": sorted(policy.tiers),
        "datasets": sorted(policy.datasets),
    }
    _emit(ctx, data, lambda d: click.echo(
        f"{path}: OK — {len(d['datasets'])} dataset(s), {len(d['tiers'])} tier(s), "
        f"{len(d['stores'])} store(s)"
    ))


@main.command()
@_local_options
@click.argument("datasets", nargs=-1)
@click.option("--due", is_flag=True, help="Run only what is due now (as the scheduled tick does).")
@click.option("--now", "now_text", metavar="ISO8601", help="With --due: pretend it is this time.")
@click.option("--budget", "budget_text", metavar="DURATION",
              help="Stop cleanly after about this long (e.g. 10m); the next run resumes.")
@click.option("--queue", "queue_url", metavar="URL",
              help="Fan out: send segments as work items to this queue (sqs:URL, pubsub:TOPIC, "
                   "azure_queue:NAME); inprocess: runs them here.")
@click.option("--part-size", "part_size_text", metavar="SIZE",
              help="Raw bytes per part (e.g. 64MiB, the default).")
@click.option("--workers", type=click.IntRange(1, 256), help="Segments read at once (default 16).")
@click.option("--checkpoint-every", type=click.IntRange(1, 10_000), metavar="PARTS",
              help="Checkpoint each segment after this many parts (default 4).")
@click.pass_obj
def run(ctx: Ctx, datasets: tuple[str, ...], due: bool, now_text: str | None,
        budget_text: str | None, queue_url: str | None, part_size_text: str | None,
        workers: int | None, checkpoint_every: int | None) -> None:
    """Take snapshots of DATASETS now (every dataset if none is named), or with --due only
    those due, each as the snapshot of its schedule slot. An unfinished snapshot (stopped by
    --budget, or killed) is resumed from its checkpoints."""
    from .engine import backup_many

    if now_text and not due:
        _usage("--now only makes sense with --due")
    options, deadline = _run_options(budget_text, part_size_text, workers)
    if checkpoint_every:
        options.checkpoint_every = checkpoint_every
    local_queue = None
    if queue_url:
        from .queues import open_queue
        from .queues.inprocess import InProcessQueue

        options.queue = open_queue(queue_url)
        if isinstance(options.queue, InProcessQueue):
            local_queue = options.queue
    policy = ctx.load()
    names = list(datasets) or sorted(policy.datasets)
    for name in names:
        policy.dataset(name)  # unknown names fail before anything runs
    if due:
        from .runtime import parse_now, tick

        outcome = tick(policy, parse_now(now_text), datasets=names, progress_factory=_progress,
                       options=options)
        results = outcome.results
        not_due = outcome.not_due
    else:
        from .runtime import after_backup

        results = backup_many(policy, names, progress_factory=_progress, options=options)
        for result in results:
            after_backup(policy, result)  # copies to the dataset's further stores
        not_due = []
    if local_queue is not None:
        # The same work items as on a cloud's queue, run by workers in this process.
        from .fanout import drain

        outcomes = drain(policy, local_queue, workers=options.workers, deadline=deadline)
        committed = {o.item.snapshot_id: o.manifest for o in outcomes if o.manifest is not None}
        for result in results:
            if result.status == "unfinished" and committed.get(result.snapshot_id or ""):
                result.status, result.manifest = "committed", committed[result.snapshot_id or ""]
    data = [r.as_dict() for r in results] + [{"dataset": n, "status": "not-due"} for n in not_due]

    def render(rows: list[dict[str, Any]]) -> None:
        _table(
            ["dataset", "status", "snapshot", "items", "parts", "stored", "seconds", "error"],
            [[r["dataset"], r["status"], r.get("snapshot_id"), r.get("items"), r.get("parts"),
              human_bytes(r["bytes_stored"]) if "bytes_stored" in r else None,
              r.get("duration_seconds"),
              r.get("error") or (f"{r['segments_done']}/{r['segments']} segments done"
                                 if r["status"] == "unfinished" else None)] for r in rows],
        )

    _emit(ctx, data, render)
    failed = [r for r in results if r.status == "failed"]
    if failed:
        sys.exit(max(r.exit_code for r in failed))


def _run_options(budget_text: str | None, part_size_text: str | None,
                 workers: int | None) -> tuple[Any, Any]:
    from .checkpoint import Deadline
    from .engine import RunOptions

    options = RunOptions()
    deadline = None
    if budget_text:
        from .policy import parse_duration

        try:
            budget = parse_duration(budget_text)
        except (ValueError, TypeError) as exc:
            _usage(f"--budget: {exc}")
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
    import re

    match = re.fullmatch(r"\s*(\d+)\s*([A-Za-z]*)\s*", text)
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _SIZE_UNITS or int(match.group(1)) < 1:
        _usage(f"{option}: {text!r} is not a size (e.g. 64MiB, 500kB, 1048576)")
    return int(match.group(1)) * _SIZE_UNITS[unit]


@main.command()
@_local_options
@click.option("--queue", "queue_url", metavar="URL", required=True,
              help="The work queue (sqs:URL, pubsub:TOPIC?subscription=SUB, azure_queue:NAME).")
@click.option("--budget", "budget_text", metavar="DURATION",
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
    from .fanout import drain
    from .queues import open_queue

    options, deadline = _run_options(budget_text, None, None)
    policy = ctx.load()
    outcomes = drain(policy, open_queue(queue_url), workers=workers, deadline=deadline,
                     wait_seconds=wait_seconds, idle_rounds=2)
    data = [o.as_dict() for o in outcomes]
    _emit(ctx, data, lambda rows: _table(
        ["dataset", "snapshot", "segment", "status", "items"],
        [[r["dataset"], r["snapshot_id"], r["segment"], r["status"], r.get("items")] for r in rows],
    ))


@main.command()
@_local_options
@click.option("--now", "now_text", metavar="ISO8601", help="Pretend it is this time.")
@click.pass_obj
def plan(ctx: Ctx, now_text: str | None) -> None:
    """Per dataset: latest snapshot and age vs RPO, current slot, due or not, next run."""
    from .runtime import parse_now
    from .runtime import plan as make_plan

    policy = ctx.load()
    rows = [p.as_dict() for p in make_plan(policy, parse_now(now_text))]

    def render(data: list[dict[str, Any]]) -> None:
        def ago(seconds: int | None) -> str:
            return "never" if seconds is None else _fmt_seconds(seconds) + " ago"

        _table(
            ["dataset", "tier", "latest", "age", "rpo", "rpo met", "slot", "due", "next run"],
            [[r["dataset"], r["tier"], r["latest_snapshot"] or "—", ago(r["age_seconds"]),
              _fmt_seconds(r["rpo_seconds"]), "yes" if r["rpo_met"] else "NO",
              r["slot"][:16].replace("T", " "), "DUE" if r["due"] else "no",
              r["next_run"][:16].replace("T", " ")] for r in data],
        )

    _emit(ctx, rows, render)


def _fmt_seconds(seconds: int) -> str:
    from datetime import timedelta

    from .policy import format_duration

    return format_duration(timedelta(seconds=seconds))


@main.command("list")
@_local_options
@click.argument("dataset", required=False)
@click.option("--store", "store_name", metavar="STORE", help="List the copies in this store instead.")
@click.pass_obj
def list_(ctx: Ctx, dataset: str | None, store_name: str | None) -> None:
    """Committed snapshots (of DATASET, or of every dataset), oldest first, with their legal
    holds and verified copies."""
    from . import copies, holds
    from .catalog import list_manifests, store_named

    policy = ctx.load()
    names = [dataset] if dataset else sorted(policy.datasets)
    rows: list[dict[str, Any]] = []
    for name in names:
        store = store_named(policy, name, store_name)
        held = holds.all_for(store, name)
        for manifest in list_manifests(store, name):
            row = manifest.summary()
            row["hold"] = held.get(manifest.snapshot_id, {}).get("reason")
            row["copies"] = copies.verified_stores(store, name, manifest.snapshot_id)
            rows.append(row)

    def render(data: list[dict[str, Any]]) -> None:
        if not data:
            click.echo("no committed snapshots")
            return
        _table(
            ["ref", "trigger", "finished", "items", "parts", "stored", "seconds", "copies", "hold"],
            [[r["ref"], r["trigger"], r["finished_at"][:19], r["items"], r["parts"],
              human_bytes(r["bytes_stored"]), r["duration_seconds"], ", ".join(r["copies"]) or "—",
              r["hold"] or ""] for r in data],
        )

    _emit(ctx, rows, render)


@main.command()
@_local_options
@click.argument("ref", metavar="DATASET@SNAPSHOT_ID|DATASET@latest")
@click.option("--store", "store_name", metavar="STORE", help="Read the copy in this store.")
@click.pass_obj
def show(ctx: Ctx, ref: str, store_name: str | None) -> None:
    """A manifest summary."""
    from . import copies, holds
    from .catalog import resolve

    policy = ctx.load()
    store, manifest = resolve(policy, ref, store_name=store_name)
    data = manifest.model_dump(mode="json") | {
        "ref": f"{manifest.dataset}@{manifest.snapshot_id}",
        "store_location": store.describe(),
        "hold": holds.get(store, manifest.dataset, manifest.snapshot_id),
        "copies": copies.records(store, manifest.dataset, manifest.snapshot_id),
    }

    def render(d: dict[str, Any]) -> None:
        src = d["source"]
        lines = [
            ("snapshot", d["ref"]),
            ("store", f"{d['store']} ({d['store_location']})"),
            ("source", f"{src.get('type')} {src.get('table', '')} {src.get('region', '')}".strip()),
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
                      f"level {d['codec']['level']}, encryption: {d['codec']['encryption'] or 'none'}"),
            ("content digest", d["content_digest"]["value"]),
            ("cloudkeep", d["cloudkeep_version"]),
            ("legal hold", f"{d['hold']['reason']} ({d['hold'].get('created_by')}, "
                           f"{d['hold'].get('created_at', '')[:19]})" if d["hold"] else "none"),
            ("copies", ", ".join(f"{c['store']} ({'verified' if c.get('verified') else 'FAILED'})"
                                 for c in d["copies"]) or "none"),
        ]
        width = max(len(k) for k, _ in lines)
        for key, value in lines:
            click.echo(f"{key.ljust(width)}  {value}")

    _emit(ctx, data, render)


@main.command()
@_local_options
@click.argument("ref", required=False, metavar="DATASET@SNAPSHOT_ID|DATASET@latest")
@click.option("--latest", "latest_of", metavar="DATASET", help="Verify the newest snapshot of DATASET.")
@click.option("--level", type=click.Choice(["integrity"]), default="integrity", show_default=True,
              help="integrity: re-read every part, check sizes, sha256, items and content digest.")
@click.option("--store", "store_name", metavar="STORE", help="Verify the copy in this store.")
@click.pass_obj
def verify(ctx: Ctx, ref: str | None, latest_of: str | None, level: str, store_name: str | None) -> None:
    """Re-read a snapshot and check it against its manifest; exit 1 on any problem."""
    from .catalog import resolve
    from .verify import record, verify_integrity

    if bool(ref) == bool(latest_of):
        _usage("verify needs exactly one of DATASET@SNAPSHOT_ID or --latest DATASET")
    policy = ctx.load()
    store, manifest = resolve(policy, ref or f"{latest_of}@latest", store_name=store_name)
    report = verify_integrity(store, manifest)
    record(store, report)
    data = report.as_dict()

    def render(d: dict[str, Any]) -> None:
        state = "OK" if d["ok"] else "FAILED"
        click.echo(f"{d['ref']}: {state} ({d['level']}: {d['parts_checked']} parts, {d['items']} items)")
        for problem in report.problems:
            click.echo(f"  {problem}")

    _emit(ctx, data, render)
    if not report.ok:
        sys.exit(EXIT_FAILED)


@main.command()
@_local_options
@click.argument("ref", metavar="DATASET@SNAPSHOT_ID|DATASET@latest")
@click.option("--into", "--target", "target", required=True, metavar="NAME",
              help="Target to restore into (for DynamoDB: a table name in the source's region).")
@click.option("--overwrite", is_flag=True, help="Write into a non-empty target.")
@click.option("--store", "store_name", metavar="STORE", help="Restore from the copy in this store.")
@click.pass_obj
def restore(ctx: Ctx, ref: str, target: str, overwrite: bool, store_name: str | None) -> None:
    """Restore a snapshot into a target; refuses a non-empty target without --overwrite."""
    from .catalog import resolve
    from .restore import restore as do_restore

    policy = ctx.load()
    store, manifest = resolve(policy, ref, store_name=store_name)
    result = do_restore(policy, store, manifest, target, overwrite=overwrite, progress=_progress())
    _emit(ctx, result.as_dict(), lambda d: click.echo(
        f"restored {d['ref']} into {d['target']}: {d['items']} items in {d['seconds']}s "
        f"(content digest matches the manifest)"
    ))


@main.command()
@_local_options
@click.argument("datasets", nargs=-1)
@click.option("--dry-run", is_flag=True, help="Only show what would be kept and removed.")
@click.option("--now", "now_text", metavar="ISO8601", help="Pretend it is this time.")
@click.pass_obj
def prune(ctx: Ctx, datasets: tuple[str, ...], dry_run: bool, now_text: str | None) -> None:
    """Apply retention: keep/remove with reasons; the real run deletes manifests first, then
    parts, and parts left by crashed runs."""
    from .prune import prune as do_prune
    from .runtime import parse_now

    policy = ctx.load()
    names = list(datasets) or sorted(policy.datasets)
    for name in names:
        policy.dataset(name)
    now = parse_now(now_text)
    reports = [do_prune(policy, name, now, dry_run=dry_run) for name in names]
    data = [r.as_dict() for r in reports]

    def render(rows: list[dict[str, Any]]) -> None:
        for report in rows:
            verb = "would remove" if report["dry_run"] else "removed"
            _table(["snapshot", "action", "reasons"],
                   [[s["snapshot_id"], s["action"].upper() if s["action"] == "remove" else "keep",
                     ", ".join(s["reasons"])] for s in report["snapshots"]],
                   title=f"{report['dataset']}: {verb} "
                         f"{sum(s['action'] == 'remove' for s in report['snapshots'])}")
            for locked in report["locked"]:
                click.echo(f"  skipped {locked['snapshot_id']} ({locked['store']}): {locked['detail']}")
            for orphan in report["orphans_removed"]:
                click.echo(f"  removed parts of unfinished run {orphan}")
            for error in report["errors"]:
                click.echo(f"  error: {error}")

    _emit(ctx, data, render)
    if any(r.errors for r in reports):
        sys.exit(EXIT_FAILED)


@main.group()
def hold() -> None:
    """Legal holds: snapshots retention must keep."""


@hold.command("add")
@_local_options
@click.argument("ref", metavar="DATASET@SNAPSHOT_ID|DATASET@latest")
@click.option("--reason", required=True, help="Why the snapshot must be kept.")
@click.pass_obj
def hold_add(ctx: Ctx, ref: str, reason: str) -> None:
    """Put a snapshot under a legal hold."""
    from . import holds
    from .catalog import resolve

    store, manifest = resolve(ctx.load(), ref)
    record = holds.add(store, manifest, reason)
    _emit(ctx, record, lambda r: click.echo(
        f"held {r['dataset']}@{r['snapshot_id']}: {r['reason']}"))


@hold.command("remove")
@_local_options
@click.argument("ref", metavar="DATASET@SNAPSHOT_ID|DATASET@latest")
@click.pass_obj
def hold_remove(ctx: Ctx, ref: str) -> None:
    """Release a legal hold."""
    from . import holds
    from .catalog import resolve

    store, manifest = resolve(ctx.load(), ref)
    if not holds.remove(store, manifest):
        raise CloudkeepError(f"{manifest.dataset}@{manifest.snapshot_id} is not under a legal hold")
    _emit(ctx, {"ref": f"{manifest.dataset}@{manifest.snapshot_id}", "released": True},
          lambda r: click.echo(f"released {r['ref']}"))


@hold.command("list")
@_local_options
@click.argument("dataset", required=False)
@click.pass_obj
def hold_list(ctx: Ctx, dataset: str | None) -> None:
    """Every legal hold (of DATASET, or of every dataset)."""
    from . import holds
    from .registry import store_for_dataset

    policy = ctx.load()
    rows: list[dict[str, Any]] = []
    for name in [dataset] if dataset else sorted(policy.datasets):
        rows.extend(holds.all_for(store_for_dataset(policy, name), name).values())

    def render(data: list[dict[str, Any]]) -> None:
        if not data:
            click.echo("no legal holds")
            return
        _table(["ref", "reason", "by", "since"],
               [[f"{r['dataset']}@{r['snapshot_id']}", r["reason"], r.get("created_by"),
                 str(r.get("created_at", ""))[:19]] for r in data])

    _emit(ctx, rows, render)


def _usage(message: str) -> NoReturn:
    raise click.UsageError(message)


def entrypoint(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; turn every error into one line and an exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        main.main(args=args, prog_name="cloudkeep", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code or 0)
    except click.ClickException as exc:
        exc.show()
        return EXIT_USAGE if isinstance(exc, click.UsageError) else exc.exit_code
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except CloudkeepError as exc:
        if debug:
            log.exception("error")
        click.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    except Exception as exc:
        if debug:
            raise
        click.echo(f"error: unexpected {type(exc).__name__}: {exc} (run with --debug for details)",
                   err=True)
        return EXIT_FAILED
    return 0


def run_cli() -> NoReturn:
    sys.exit(entrypoint())
