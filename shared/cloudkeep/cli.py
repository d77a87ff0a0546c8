"""The ``cloudkeep`` command (contract: DESIGN.md §5).

Exit codes: 0 success, 1 an operation failed, 2 bad usage or a bad policy, 3 a store or source
could not be reached. Errors are one clear message on stderr; tracebacks only with ``--debug``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import click

from . import __version__, cliargs
from .errors import EXIT_FAILED, EXIT_UNREACHABLE, EXIT_USAGE, CloudkeepError, PolicyError, UsageError
from .logctx import StderrHandler
from .redaction import RedactingFilter, redact, redact_obj

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
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler = StderrHandler()
    handler.setFormatter(fmt)
    handler.addFilter(RedactingFilter())  # every line, whichever logger it comes from
    root = logging.getLogger("cloudkeep")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    # The SDKs' own warnings (botocore, urllib3, azure) go through a redacting handler too,
    # instead of logging's last resort, which would print them as they are.
    others = StderrHandler()
    others.setFormatter(fmt)
    others.setLevel(logging.WARNING)
    others.addFilter(RedactingFilter())
    logging.getLogger().handlers[:] = [others]
    if debug:
        logging.getLogger("botocore").setLevel(logging.INFO)


def _progress(quiet_logs: bool = False) -> Any:
    """A live bar on a terminal (not in CI); elsewhere log lines every few seconds, or nothing
    for work that reports its own result (``quiet_logs``)."""
    from .progress import LogProgress, NullProgress, RichProgress

    if sys.stderr.isatty() and not os.environ.get("CI"):
        return RichProgress()
    return NullProgress() if quiet_logs else LogProgress()


def _emit(ctx: Ctx, data: Any, render: Callable[[Any], None]) -> None:
    data = redact_obj(data)  # no credential reaches a table or JSON output
    if ctx.fmt == "json":
        click.echo(redact(json.dumps(data, indent=2, default=str)))  # JSON escapes controls
    else:
        render(printable(data))


_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(value: Any) -> Any:
    """A copy of a JSON-like value whose strings carry no terminal control characters (what a
    store record says — a hold's reason, who placed it — can never move the cursor, clear the
    screen or fake a line of output); each is shown as its escape, e.g. ``\\x1b``. Newlines
    are shown as ``\\n`` too."""
    if isinstance(value, str):
        text = _CONTROLS.sub(lambda m: repr(m.group())[1:-1], value)
        return text.replace("\n", "\\n")
    if isinstance(value, dict):
        return {k: printable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(printable(v) for v in value)
    return value


def _table(columns: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None,
           min_width: int = 160, *, whole: Sequence[str] = (),
           drop: Sequence[str] = ()) -> None:
    """Print a table. Columns named in ``whole`` are never cut or wrapped (values a user copies,
    e.g. snapshot refs); when the table cannot fit the width otherwise, the columns in ``drop``
    are left out, first ones first, and the other columns wrap."""
    import shutil

    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    if sys.stdout.isatty():
        width = None
    elif os.environ.get("COLUMNS", "").isdigit():
        width = int(os.environ["COLUMNS"])  # asked for explicitly
    else:
        width = max(min_width, shutil.get_terminal_size().columns)
    colours = color_enabled(sys.stdout)
    # Without colours, no escape codes at all (not even bold): NO_COLOR users want plain text.
    console = Console(width=width, no_color=not colours, force_terminal=colours or None,
                      color_system="auto" if colours else None, highlight=False)
    cells = [[Text(redact(v.plain), style=v.style) if isinstance(v, Text)
              else Text("" if v is None else redact(str(v))) for v in row]
             for row in rows]
    shown = list(range(len(columns)))
    droppable = [columns.index(c) for c in drop if c in columns]
    fits = True
    while True:
        table = Table(title=title, title_justify="left")
        for i in shown:
            name = columns[i]
            if name in whole and fits:
                longest = max([len(name)] + [cells[r][i].cell_len for r in range(len(cells))])
                table.add_column(name, no_wrap=True, min_width=longest)
            else:  # wrapped, never cut (even a value in ``whole`` wider than the terminal)
                table.add_column(name, overflow="fold")
        for row in cells:
            table.add_row(*(row[i] for i in shown))
        if not whole or not fits:
            break
        if table.__rich_measure__(console, console.options).minimum <= console.width:
            break
        if droppable:
            shown.remove(droppable.pop(0))
        else:
            fits = False
    console.print(table)


REPORT_MARK = "<title>cloudkeep report</title>"


def _write_report(path: Path, text: str) -> None:
    """Write the HTML report whole (a temporary file renamed over the target), and overwrite
    only an earlier cloudkeep report: never a link, a policy, a manifest or any other file."""
    import os
    import tempfile

    try:
        info = os.lstat(path)
    except FileNotFoundError:
        info = None
    except OSError as exc:
        raise UsageError(f"bad --output {str(path)!r}: {exc.strerror}") from None
    if info is not None:
        import stat

        if not stat.S_ISREG(info.st_mode):
            raise UsageError(f"bad --output {str(path)!r}: it exists and is not a regular file "
                             "(a link, a folder or a device); choose another file")
        try:
            with open(path, "rb") as fh:
                head = fh.read(4096).decode("utf-8", "replace")
        except OSError as exc:
            raise UsageError(f"bad --output {str(path)!r}: {exc.strerror}") from None
        if REPORT_MARK not in head:
            raise UsageError(f"bad --output {str(path)!r}: it exists and is not a cloudkeep "
                             "report; refusing to overwrite it (choose another file)")
    folder = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".cloudkeep-report-", suffix=".tmp", dir=folder)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        umask = os.umask(0o022)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as an ordinary new file (mkstemp makes it 0600)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError, UnboundLocalError):
            os.unlink(tmp)
        raise CloudkeepError(f"cannot write {path}: {exc}") from None


def color_enabled(stream: Any = None) -> bool:
    """Colours only on a terminal, and never when NO_COLOR is set (https://no-color.org)."""
    if os.environ.get("NO_COLOR", "") != "":
        return False
    stream = stream or sys.stdout
    return bool(getattr(stream, "isatty", lambda: False)())


def _paint(text: str, colour: str) -> Any:
    """A coloured table cell; the table's console drops the colour where colours are off."""
    from rich.text import Text

    return Text(text, style=colour)


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
            if name == "policy_path" and value is not None:
                cliargs.check_text(value, "--policy")
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


def _allow_unsigned_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--allow-unsigned", is_flag=True,
        help="Read the snapshot even if it is unsigned or unencrypted where the policy requires "
             "signatures or encryption (e.g. written before they were required; see `keys "
             "endorse`). Never accepts a forged, replayed or tampered manifest.")(fn)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--policy", "policy_path", callback=cliargs.input_file, metavar="FILE",
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
    from .advice import warnings

    found = warnings(policy)
    data = {
        "ok": True,
        "policy": path,
        "stores": sorted(policy.stores),
        "tiers": sorted(policy.tiers),
        "datasets": sorted(policy.datasets),
        "warnings": [w.as_dict() for w in found],
    }

    def render(d: dict[str, Any]) -> None:
        click.echo(f"{path}: OK — {len(d['datasets'])} dataset(s), {len(d['tiers'])} tier(s), "
                   f"{len(d['stores'])} store(s)")
        for w in found:
            click.echo(click.style("warning: ", fg="yellow", bold=True) + str(w),
                       color=color_enabled(sys.stdout))

    _emit(ctx, data, render)


@main.command()
@_local_options
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
    from .engine import backup_many

    if now_text and not due:
        _usage("--now only makes sense with --due")
    options, deadline = _run_options(budget_text, part_size_text, workers)
    options.wait = wait_timeout if wait else 0.0
    options.poll_interval = poll_interval
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
    replay = contextlib.ExitStack()
    click.get_current_context().call_on_close(replay.close)  # also when the run raises
    if due:
        from . import clock
        from .runtime import parse_now, tick

        now = parse_now(now_text)
        if now_text:  # --now replays: every time the run records (workers' too) comes from here
            replay.enter_context(clock.simulated(now))
        outcome = tick(policy, now, datasets=names, progress_factory=_progress, options=options)
        tick_outcome: Any = outcome
        results = outcome.results
        not_due = outcome.not_due
    else:
        from .runtime import after_backup, audit_backup

        results = backup_many(policy, names, progress_factory=_progress, options=options)
        for result in results:
            after_backup(policy, result)  # copies to the dataset's further stores
            audit_backup(policy, result)
        tick_outcome = None
        not_due = []
    if local_queue is not None:
        # The same work items as on a cloud's queue, run by workers in this process.
        from .fanout import drain

        outcomes = drain(policy, local_queue, workers=options.workers, deadline=deadline)
        committed = {o.item.snapshot_id: o.manifest for o in outcomes if o.manifest is not None}
    replay.close()
    if local_queue is not None:
        for result in results:
            if result.status == "unfinished" and committed.get(result.snapshot_id or ""):
                result.status, result.manifest = "committed", committed[result.snapshot_id or ""]
    data: Any
    if tick_outcome is not None:
        # everything the tick did: backups, copies, drills, samples, prunes, alerts
        data = tick_outcome.as_dict()
        if local_queue is not None:  # fan-out finished here: the statuses after the workers
            data["datasets"] = ([r.as_dict() for r in results]
                                + [{"dataset": n, "status": "not-due"} for n in not_due])
            data["backups"] = [r.as_dict() for r in results]
    else:
        data = [r.as_dict() for r in results] + [{"dataset": n, "status": "not-due"} for n in not_due]
    copy_failed = [c for r in results for c in r.copy_failures]
    if tick_outcome is not None:
        from .copies import failure_text

        copy_failed = tick_outcome.copy_failures
        for row in data:  # copies retried by the tick for datasets it did not back up
            mine = [c for c in copy_failed if c.get("dataset") == row["dataset"]]
            if mine and not row.get("copy_failed"):
                row["copy_failed"] = sorted({str(c.get("store")) for c in mine})
                row["error"] = row.get("error") or failure_text(mine)

    def render(everything: Any) -> None:
        rows = everything["datasets"] if isinstance(everything, dict) else everything
        _table(
            ["dataset", "status", "snapshot", "items", "parts", "stored", "seconds", "error"],
            [[r["dataset"], r["status"], r.get("snapshot_id"), r.get("items"), r.get("parts"),
              human_bytes(r["bytes_stored"]) if "bytes_stored" in r else None,
              r.get("duration_seconds"),
              r.get("error") or _job_note(r.get("job"))
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

    _emit(ctx, data, render)
    failed = [r for r in results if r.status == "failed"]
    if failed or copy_failed:
        # A failed copy fails the command; its snapshot stays committed (and is listed).
        sys.exit(max([r.exit_code for r in failed] + ([EXIT_FAILED] if copy_failed else [])))


def _native_summary(native: dict[str, Any]) -> str:
    """What a native job made, in one line (ARNs, operation, output URI)."""
    keys = ("backup_arn", "export_arn", "s3_uri", "snapshot_arns", "operation", "output_uri_prefix")
    parts = [f"{k}={', '.join(v) if isinstance(v, list) else v}" for k in keys if (v := native.get(k))]
    return f"{native.get('kind', 'native')}: " + "; ".join(parts)


def _job_note(job: Any) -> str | None:
    if not job:
        return None
    return (f"{job.get('method')} job {job.get('state')}, {job.get('polls', 0)} poll(s); "
            "run again (or wait for the next tick) to continue")


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
@click.option("--now", "now_text", callback=cliargs.text, metavar="ISO8601", help="Pretend it is this time.")
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
            ["dataset", "tier", "latest", "age", "rpo", "rpo met", "slot", "due", "next run",
             "verified", "drill", "alerts"],
            [[r["dataset"], r["tier"], r["latest_snapshot"] or "—", ago(r["age_seconds"]),
              _fmt_seconds(r["rpo_seconds"]), "yes" if r["rpo_met"] else "NO",
              r["slot"][:16].replace("T", " "), "DUE" if r["due"] else "no",
              r["next_run"][:16].replace("T", " "),
              _verification_cell(r.get("last_verification"), True),
              _verification_cell(r.get("last_drill")),
              ", ".join(a["kind"] for a in r.get("alerts") or []) or "—"] for r in data],
        )

    _emit(ctx, rows, render)


def _fmt_seconds(seconds: int) -> str:
    from datetime import timedelta

    from .policy import format_duration

    return format_duration(timedelta(seconds=seconds))


@main.command("list")
@_local_options
@click.argument("dataset", callback=cliargs.text, required=False)
@click.option("--store", "store_name", callback=cliargs.text, metavar="STORE", help="List the copies in this store instead.")
@click.pass_obj
def list_(ctx: Ctx, dataset: str | None, store_name: str | None) -> None:
    """Committed snapshots (of DATASET, or of every dataset), oldest capture first, with their
    capture time (when the data was read), legal holds and verified copies. A manifest that
    cannot be trusted (forged, replayed, tampered, downgraded) or read is not listed: it is
    reported (exit 1 for tampering) and the rest is."""
    from . import copies, holds, timeline
    from . import verify as verifications
    from .catalog import scan, store_named
    from .trust import expect_for

    policy = ctx.load()
    names = [dataset] if dataset else sorted(policy.datasets)
    rows: list[dict[str, Any]] = []
    refused: list[Any] = []
    problems: list[str] = []
    for name in names:
        store = store_named(policy, name, store_name)
        listing = scan(store, name, expect=expect_for(policy, name, store_name))
        refused.extend(listing.refused)
        ledger_problems: list[str] = []
        held = holds.all_for(store, name, ledger_problems)
        problems.extend(ledger_problems)
        record_problems: list[str] = []
        checked = verifications.by_snapshot(store, name, record_problems)
        for manifest in sorted(listing.manifests,
                               key=lambda m: (timeline.capture_time(m), m.snapshot_id)):
            row = manifest.summary()
            row["captured_at"] = timeline.capture_time(manifest).isoformat()
            active = held.get(manifest.snapshot_id, [])
            row["hold"] = holds.reasons(active)
            row["holds"] = [h.as_dict() for h in active]
            row["copies"] = copies.verified_stores(store, name, manifest.snapshot_id,
                                                   record_problems)
            records = checked.get(manifest.snapshot_id, [])
            drills = [r for r in records if r.get("level") == "drill"]
            row["last_verification"] = verifications.brief(records[-1]) if records else None
            row["last_drill"] = verifications.brief(drills[-1]) if drills else None
            row["authentic"] = True  # every manifest listed passed cloudkeep.trust
            row["signed"] = manifest.authentication is not None
            mine = [p for p in [*ledger_problems, *record_problems]
                    if f"{name}@{manifest.snapshot_id}" in p or f"/{manifest.snapshot_id}/" in p]
            if mine:
                row["problems"] = mine
            rows.append(row)
        problems.extend(record_problems)

    def render(data: list[dict[str, Any]]) -> None:
        if not data:
            click.echo("no committed snapshots" + (" that can be trusted" if refused else ""))
        else:
            # the ref is the value a user copies: never cut; other columns wrap or go first
            _table(
                ["ref", "trigger", "captured", "items", "parts", "stored", "seconds", "copies",
                 "hold", "verified", "drill", "encrypted"],
                [[r["ref"], r["trigger"],
                  r["captured_at"][:16].replace("T", " "), r["items"], r["parts"],
                  human_bytes(r["bytes_stored"]), r["duration_seconds"],
                  ", ".join(r["copies"]) or "—",
                  _hold_cell(r["holds"]), _verification_cell(r["last_verification"], True),
                  _verification_cell(r["last_drill"]), "yes" if r["encrypted"] else "no"]
                 for r in data],
                whole=["ref", "captured"],
                drop=["parts", "seconds", "encrypted", "trigger", "items", "copies", "drill",
                      "verified", "stored", "hold", "captured"],
            )
        for refusal in refused:  # shown, but never as a snapshot
            click.echo(f"{refusal.dataset}@{refusal.snapshot_id} ({refusal.kind.upper()}): "
                       "not listed, left in the store as evidence")

    _emit(ctx, rows, render)
    for problem in problems:
        click.echo(f"warning: {problem}", err=True)
    for refusal in refused:
        click.echo(f"{'error' if refusal.kind != 'unreadable' else 'warning'}: {refusal.message}",
                   err=True)
    if any(r.tampering for r in refused):
        sys.exit(EXIT_FAILED)
    if any(r.kind == "key-unavailable" for r in refused):
        sys.exit(EXIT_UNREACHABLE)


def _hold_cell(held: list[dict[str, Any]]) -> str:
    """The reason of a snapshot's one hold, or how many holds and their reasons."""
    if not held:
        return ""
    if len(held) == 1:
        return str(held[0]["reason"])
    return f"{len(held)} holds: " + "; ".join(str(h["reason"]) for h in held)


def _verification_cell(record: dict[str, Any] | None, level: bool = False) -> str:
    """``OK 2026-01-31 04:00`` (+ the level, + a drill's restore time) or ``—``."""
    if not record:
        return "—"
    when = str(record.get("finished_at") or record.get("started_at") or "")[:16].replace("T", " ")
    text = f"{'OK' if record.get('ok') else 'FAILED'} {when}"
    if level:
        text = f"{record.get('level')} {text}"
    if record.get("restore_seconds") is not None:
        text += f" ({record['restore_seconds']}s"
        if record.get("rto_met") is not None:
            text += ", RTO met" if record["rto_met"] else ", RTO MISSED"
        text += ")"
    return text


@main.command()
@_local_options
@click.argument("ref", callback=cliargs.text, metavar="DATASET@SNAPSHOT_ID|DATASET@latest")
@click.option("--store", "store_name", callback=cliargs.text, metavar="STORE", help="Read the copy in this store.")
@_allow_unsigned_option
@click.pass_obj
def show(ctx: Ctx, ref: str, store_name: str | None, allow_unsigned: bool) -> None:
    """A manifest summary, with its legal holds, copies and verifications."""
    from . import copies, holds
    from . import verify as verifications
    from .catalog import resolve

    policy = ctx.load()
    store, manifest = resolve(policy, ref, store_name=store_name, allow_unsigned=allow_unsigned)
    problems: list[str] = []
    ledger = holds.ledger(store, manifest.dataset, manifest.snapshot_id)
    problems.extend(ledger.problems)
    active = [h.as_dict() for h in ledger.active]
    from . import timeline

    data = manifest.model_dump(mode="json") | {
        "ref": f"{manifest.dataset}@{manifest.snapshot_id}",
        "captured_at": timeline.capture_time(manifest).isoformat(),
        "store_location": store.describe(),
        "hold": active[0] if active else None,
        "holds": active,
        "copies": copies.records(store, manifest.dataset, manifest.snapshot_id, problems),
        "verifications": [verifications.brief(r) | {"problems": r.get("problems", [])}
                          for r in verifications.records_of(store, manifest.dataset,
                                                            manifest.snapshot_id)],
        "problems": problems,
    }
    checked = data["verifications"]
    data["last_verification"] = checked[-1] if checked else None
    drills = [r for r in checked if r.get("level") == "drill"]
    data["last_drill"] = drills[-1] if drills else None

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
                      f"level {d['codec']['level']}, encryption: {_encryption_text(d['codec']['encryption'])}"),
            ("authenticated", "yes (manifest tag checked)" if d.get("authentication")
             else "no (neither encrypted nor signed)"),
            ("content digest", d["content_digest"]["value"]),
            *([("native", _native_summary(d["native"]))] if d.get("native") else []),
            ("cloudkeep", d["cloudkeep_version"]),
            *([("legal holds", "none")] if not d["holds"] else
              [("legal hold" if i == 0 else "", f"{h['hold_id']}: {h['reason']} ({h.get('created_by')}, "
                                               f"{str(h.get('created_at') or '')[:19]})")
               for i, h in enumerate(d["holds"])]),
            ("copies", ", ".join(f"{c['store']} ({'verified' if c.get('verified') else 'FAILED'})"
                                 for c in d["copies"]) or "none"),
            ("last verified", _verification_cell(d["last_verification"], True)),
            ("last drill", _verification_cell(d["last_drill"])),
        ]
        width = max(len(k) for k, _ in lines)
        for key, value in lines:
            click.echo(f"{key.ljust(width)}  {value}")

    _emit(ctx, data, render)
    for problem in problems:
        click.echo(f"warning: {problem}", err=True)


def _encryption_text(encryption: dict[str, Any] | None) -> str:
    if not encryption:
        return "none"
    keys = ", ".join(f"{k['key']} ({k['provider']} {k['key_id']})" for k in encryption["keys"])
    return f"{encryption['algorithm']}, data key wrapped by {keys}"


@main.command()
@_local_options
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
@_allow_unsigned_option
@click.pass_obj
def verify(ctx: Ctx, ref: str | None, latest_of: str | None, level: str, sample_items: int,
           store_name: str | None, allow_unsigned: bool) -> None:
    """Check a snapshot at the given level; the report is stored under verifications/; exit 1
    on any problem."""
    from .catalog import resolve
    from .drills import run_level
    from .keys import keyring_for
    from .verify import record_and_audit

    if bool(ref) == bool(latest_of):
        _usage("verify needs exactly one of DATASET@SNAPSHOT_ID or --latest DATASET")
    policy = ctx.load()
    # the manifest's tag is checked (and reported) by verify itself
    store, manifest = resolve(policy, ref or f"{latest_of}@latest", store_name=store_name,
                              authenticate=False)
    report = run_level(policy, store, manifest, level, sample_items=sample_items,
                       progress=_progress(quiet_logs=True), keyring=keyring_for(policy),
                       allow_unsigned=allow_unsigned)
    record_and_audit(store, report)
    data = report.as_dict()

    def render(d: dict[str, Any]) -> None:
        state = "OK" if d["ok"] else "FAILED"
        if d["level"] == "drill":
            took = "no restore" if d["restore_seconds"] is None else f"restored in {d['restore_seconds']}s"
            rto = ""
            if d.get("rto_seconds") is not None:
                rto = f", RTO {_fmt_seconds(d['rto_seconds'])} {'met' if d['rto_met'] else 'MISSED'}"
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

    _emit(ctx, data, render)
    if not report.ok:
        sys.exit(EXIT_FAILED)


@main.command()
@_local_options
@click.argument("ref", callback=cliargs.text, metavar="DATASET@SNAPSHOT_ID|DATASET@latest")
@click.option("--into", "--target", "target", callback=cliargs.target, required=True, metavar="NAME",
              help="Target to restore into (DynamoDB: a table name in the source's region; "
                   "S3: BUCKET[/PREFIX]).")
@click.option("--overwrite", is_flag=True, help="Write into a non-empty target.")
@click.option("--store", "store_name", callback=cliargs.text, metavar="STORE", help="Restore from the copy in this store.")
@_allow_unsigned_option
@click.pass_obj
def restore(ctx: Ctx, ref: str, target: str, overwrite: bool, store_name: str | None,
            allow_unsigned: bool) -> None:
    """Restore a snapshot into a target; refuses a non-empty target without --overwrite, and a
    manifest that cannot be trusted (forged, replayed, tampered, downgraded)."""
    from . import audit
    from .catalog import resolve
    from .registry import open_source
    from .restore import restore as do_restore
    from .sources import check_restore_target

    policy = ctx.load()
    store, manifest = resolve(policy, ref, store_name=store_name, allow_unsigned=allow_unsigned)
    source = open_source(policy.dataset(manifest.dataset).source)
    check_restore_target(source, manifest, target)  # exit 2 before anything is read or written
    try:
        result = do_restore(policy, store, manifest, target, overwrite=overwrite, progress=_progress(),
                            source=source, allow_unsigned=allow_unsigned)
    except CloudkeepError as exc:
        audit.write(store, "restore", outcome="failed", dataset=manifest.dataset,
                    snapshot_id=manifest.snapshot_id, detail={"target": target, "error": str(exc)})
        raise
    audit.write(store, "restore", outcome="ok", dataset=manifest.dataset,
                snapshot_id=manifest.snapshot_id, detail=result.as_dict())
    _emit(ctx, result.as_dict(), lambda d: click.echo(
        f"restored {d['ref']} into {d['target']}: {d['items']} items in {d['seconds']}s "
        + (f"(via {d['via']})" if d.get("via") else "(content digest matches the manifest)")
    ))


@main.command()
@_local_options
@click.argument("datasets", callback=cliargs.text, nargs=-1)
@click.option("--dry-run", is_flag=True, help="Only show what would be kept and removed.")
@click.option("--now", "now_text", callback=cliargs.text, metavar="ISO8601", help="Pretend it is this time.")
@click.pass_obj
def prune(ctx: Ctx, datasets: tuple[str, ...], dry_run: bool, now_text: str | None) -> None:
    """Apply retention: keep/remove with reasons; the real run deletes manifests first, then
    parts, and parts left by crashed runs."""
    from . import clock
    from .prune import prune as do_prune
    from .runtime import parse_now

    policy = ctx.load()
    names = list(datasets) or sorted(policy.datasets)
    for name in names:
        policy.dataset(name)
    now = parse_now(now_text)
    with clock.simulated(now) if now_text else contextlib.nullcontext():
        reports = [do_prune(policy, name, now, dry_run=dry_run) for name in names]
        if not dry_run:
            from . import audit
            from .registry import store_for_dataset

            for report in reports:
                audit.write(store_for_dataset(policy, report.dataset), "prune",
                            outcome="failed" if report.errors else "ok", dataset=report.dataset,
                            detail={"removed": report.removed, "errors": report.errors})
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

    _emit(ctx, data, render)
    if any(r.errors for r in reports):
        sys.exit(EXIT_FAILED)


@main.command()
@_local_options
@click.argument("datasets", callback=cliargs.text, nargs=-1)
@click.option("--output", "-o", "output", callback=cliargs.output_file, metavar="FILE.html",
              help="Also write the report as one self-contained HTML file (timelines as SVG).")
@click.option("--now", "now_text", callback=cliargs.text, metavar="ISO8601", help="Pretend it is this time.")
@click.pass_obj
def report(ctx: Ctx, datasets: tuple[str, ...], output: str | None, now_text: str | None) -> None:
    """Per dataset: newest snapshot and age vs RPO, last verification and restore drill, snapshots
    and stored size, what retention would keep/remove now, legal holds, open alerts."""
    from pathlib import Path

    from .policy import load_policy, resolve_policy_path
    from .report import build
    from .runtime import parse_now

    source = resolve_policy_path(ctx.policy_path)
    policy = load_policy(source).policy
    data = redact_obj(build(policy, parse_now(now_text), policy_source=source,
                            datasets=list(datasets) or None))
    if output:
        from .report_html import render as render_html

        _write_report(Path(output), render_html(data))
        data["html"] = str(Path(output).resolve())

    def render(d: dict[str, Any]) -> None:
        from .report import human_seconds
        from .report_html import _age

        now = parse_now(d["generated_at"])

        def ago(at: str | None) -> str:
            return "" if not at else human_seconds((now - parse_now(at)).total_seconds()) + " ago"

        def check(v: dict[str, Any] | None) -> str:
            if v is None:
                return "never"
            state = "ok" if v["ok"] else f"FAILED ({v['problems']} problems)"
            return f"{state}, {v['level']}, {ago(v.get('at'))}"

        def drill(v: dict[str, Any] | None) -> str:
            if v is None:
                return "never"
            text = "ok" if v["ok"] else "FAILED"
            if v.get("restore_seconds") is not None:
                text += f", {human_seconds(v['restore_seconds'])}"
                if v.get("rto_met") is not None:
                    text += " (met)" if v["rto_met"] else " (MISSED)"
            return f"{text}, {ago(v.get('at'))}"

        rows = []
        for r in d["datasets"]:
            if r.get("error"):
                rows.append([r["dataset"], _paint("ERROR", "red"), r["tier"], r["error"]] + [None] * 8)
                continue
            ret = r["retention"]
            rows.append([
                r["dataset"], _paint(r["status"].upper() if r["status"] != "ok" else "ok",
                                     {"ok": "green", "warning": "yellow"}.get(r["status"], "red")),
                r["tier"], r["newest_snapshot"] or "none", _age(r),
                check(r["last_verification"]), drill(r["last_drill"]),
                r["snapshot_count"], human_bytes(r["stored_bytes"]),
                f"keep {len(ret['keep'])}, remove {len(ret['remove'])}",
                len(r["holds"]), len(r["alerts_open"]),
            ])
        _table(["dataset", "status", "tier", "newest", "age / RPO", "verified", "drill (RTO)",
                "snapshots", "stored", "retention now", "holds", "alerts"],
               rows, title=f"cloudkeep report, {d['generated_at'][:16].replace('T', ' ')} UTC",
               min_width=200)
        for r in d["datasets"]:
            for reason in r.get("attention", []):
                click.echo(f"  {r['dataset']}: {reason}")
        if d.get("html"):
            click.echo(f"wrote {d['html']}")

    _emit(ctx, data, render)
    failed = [r for r in data["datasets"] if r.get("error")]
    if failed:
        sys.exit(max(int(r.get("exit_code", EXIT_FAILED)) for r in failed))


@main.command()
@_local_options
@click.option("--output", "-o", "output", callback=cliargs.output_file_or_stdout, default="cloudkeep.yaml", show_default=True, metavar="FILE",
              help="Where to write the policy ('-': standard output).")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@click.option("--discover", is_flag=True,
              help="Propose datasets for the DynamoDB tables, Firestore root collections and Cosmos DB "
                   "containers the current credentials can see.")
@click.option("--aws-region", callback=cliargs.text, metavar="REGION", help="With --discover: the region (default $AWS_REGION).")
@click.option("--gcp-project", callback=cliargs.text, metavar="PROJECT",
              help="With --discover: the project (default $GOOGLE_CLOUD_PROJECT).")
@click.option("--cosmos-endpoint", callback=cliargs.text, metavar="URL",
              help="With --discover: the Cosmos DB account (default $COSMOS_ENDPOINT; key from $COSMOS_KEY).")
@click.pass_obj
def init(ctx: Ctx, output: str, force: bool, discover: bool, aws_region: str | None,
         gcp_project: str | None, cosmos_endpoint: str | None) -> None:
    """Write a commented starter policy (refuses to overwrite a file without --force)."""
    from pathlib import Path

    from . import starter
    from .policy import parse_policy

    if not discover and (aws_region or gcp_project or cosmos_endpoint):
        _usage("--aws-region, --gcp-project and --cosmos-endpoint go with --discover")
    target = None if output == "-" else Path(output)
    if target is not None and target.exists() and not force:
        raise UsageError(f"{output} already exists: pass --force to overwrite it, or --output "
                         "another file")
    results = starter.discover(aws_region=aws_region, gcp_project=gcp_project,
                               cosmos_endpoint=cosmos_endpoint) if discover else None
    text = starter.render(results)
    policy = parse_policy(text, source=output, base_dir=target.parent if target else None)
    if target is None:
        click.echo(text, nl=False)
        for result in results or []:
            if result.error:
                click.echo(f"{result.cloud}: {result.error}", err=True)
        return
    try:
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise CloudkeepError(f"cannot write {output}: {exc}") from None
    data = {
        "written": str(target),
        "datasets": sorted(policy.datasets),
        "discovery": [r.as_dict() for r in results] if results is not None else None,
    }

    def render(d: dict[str, Any]) -> None:
        for result in results or []:
            if not result.attempted:
                click.echo(f"{result.cloud}: skipped — {result.detail}")
            elif result.error:
                click.echo(f"{result.cloud}: FAILED — {result.detail}: {result.error}")
            else:
                click.echo(f"{result.cloud}: {len(result.proposals)} found — {result.detail}")
        click.echo(f"wrote {d['written']} ({len(d['datasets'])} dataset(s)); next: "
                   f"cloudkeep --policy {d['written']} validate")

    _emit(ctx, data, render)


@main.command()
@_local_options
def schema() -> None:
    """Print the policy's JSON Schema (for editors: cloudkeep schema > cloudkeep.schema.json)."""
    from .policy_doc import json_schema

    click.echo(json.dumps(json_schema(), indent=2, sort_keys=True, ensure_ascii=False))


@main.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script: eval "$(cloudkeep completion bash)" (zsh alike;
    fish: cloudkeep completion fish | source)."""
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    assert cls is not None
    click.echo(cls(main, {}, "cloudkeep", "_CLOUDKEEP_COMPLETE").source())


@main.group()
def hold() -> None:
    """Legal holds: snapshots retention must keep."""


@hold.command("add")
@_local_options
@click.argument("ref", callback=cliargs.text, metavar="DATASET@SNAPSHOT_ID|DATASET@latest")
@click.option("--reason", callback=cliargs.text, required=True, help="Why the snapshot must be kept.")
@click.pass_obj
def hold_add(ctx: Ctx, ref: str, reason: str) -> None:
    """Put a snapshot under a legal hold (holds stack: each has its own id; prints it)."""
    from . import audit, holds
    from .catalog import resolve

    store, manifest = resolve(ctx.load(), ref)
    hold = holds.add(store, manifest, reason)
    audit.write(store, "hold_add", outcome="ok", dataset=manifest.dataset,
                snapshot_id=manifest.snapshot_id,
                detail={"hold_id": hold.hold_id, "reason": hold.reason})
    _emit(ctx, hold.as_dict(), lambda r: click.echo(
        f"held {r['ref']}: {r['reason']} (hold id {r['hold_id']})"))


@hold.command("remove")
@_local_options
@click.argument("ref", callback=cliargs.text, metavar="DATASET@SNAPSHOT_ID|DATASET@latest")
@click.option("--id", "hold_id", callback=cliargs.text, metavar="HOLD_ID",
              help="The hold to release (needed when the snapshot has several; see `hold list`).")
@click.pass_obj
def hold_remove(ctx: Ctx, ref: str, hold_id: str | None) -> None:
    """Release one legal hold (the snapshot's other holds stay)."""
    from . import audit, holds
    from .catalog import resolve

    store, manifest = resolve(ctx.load(), ref)
    released, rest = holds.remove(store, manifest, hold_id)
    audit.write(store, "hold_remove", outcome="ok", dataset=manifest.dataset,
                snapshot_id=manifest.snapshot_id,
                detail={"hold_id": released.hold_id, "reason": released.reason,
                        "still_held_by": [h.hold_id for h in rest]})
    data = {"ref": f"{manifest.dataset}@{manifest.snapshot_id}", "released": True,
            "hold_id": released.hold_id, "reason": released.reason,
            "holds": [h.as_dict() for h in rest]}
    _emit(ctx, data, lambda r: click.echo(
        f"released {r['ref']} hold {r['hold_id']} ({r['reason']})"
        + (f"; still held by {len(r['holds'])} other hold(s): "
           + ", ".join(h["hold_id"] for h in r["holds"]) if r["holds"] else "")))


@hold.command("list")
@_local_options
@click.argument("dataset", callback=cliargs.text, required=False)
@click.pass_obj
def hold_list(ctx: Ctx, dataset: str | None) -> None:
    """Every active legal hold (of DATASET, or of every dataset), one row per hold."""
    from . import holds
    from .registry import store_for_dataset

    policy = ctx.load()
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    for name in [dataset] if dataset else sorted(policy.datasets):
        for held in holds.all_for(store_for_dataset(policy, name), name, problems).values():
            rows.extend(h.as_dict() for h in held)

    def render(data: list[dict[str, Any]]) -> None:
        if not data:
            click.echo("no legal holds")
            return
        _table(["ref", "hold id", "reason", "by", "since"],
               [[r["ref"], r["hold_id"], r["reason"], r.get("created_by"),
                 str(r.get("created_at") or "")[:19]] for r in data])

    _emit(ctx, rows, render)
    for problem in problems:
        click.echo(f"warning: {problem}", err=True)


@main.command("audit")
@_local_options
@click.option("--since", "since_text", callback=cliargs.text, metavar="ISO8601|DURATION",
              help="Only records at or after this time (e.g. 2026-01-31T00:00:00Z, or 24h, 7d back).")
@click.option("--dataset", "dataset_filter", callback=cliargs.text, metavar="DATASET", help="Only records of DATASET.")
@click.pass_obj
def audit_(ctx: Ctx, since_text: str | None, dataset_filter: str | None) -> None:
    """The audit log: every backup, verification, restore, prune, hold and policy change, with
    who or what triggered it, when, and the outcome (oldest first)."""
    from . import audit
    from .registry import open_store

    policy = ctx.load()
    since = audit.parse_since(since_text)
    if dataset_filter:
        policy.dataset(dataset_filter)
    stores: dict[str, Any] = {}
    for name in [dataset_filter] if dataset_filter else sorted(policy.datasets):
        store = open_store(policy.stores[policy.dataset(name).store])
        stores.setdefault(store.describe(), store)
    rows: list[dict[str, Any]] = []
    for store in stores.values():
        for record in audit.read(store, since):
            if dataset_filter and record.get("dataset") not in (dataset_filter, None):
                continue
            rows.append(record)
    rows.sort(key=lambda r: str(r.get("at")))

    def render(data: list[dict[str, Any]]) -> None:
        if not data:
            click.echo("no audit records" + (f" since {since.isoformat()}" if since else ""))
            return

        def actor(a: Any) -> str:
            if not isinstance(a, dict):
                return "?"
            detail = a.get("user") or a.get("function") or a.get("platform") or ""
            return f"{a.get('kind')}" + (f" ({detail})" if detail else "")

        _table(["at", "event", "dataset", "snapshot", "outcome", "by"],
               [[str(r.get("at"))[:19].replace("T", " "), r.get("event"), r.get("dataset") or "—",
                 r.get("snapshot_id") or "—", r.get("outcome"), actor(r.get("actor"))]
                for r in data])

    _emit(ctx, rows, render)


@main.group()
def keys() -> None:
    """Encryption keys: create a local key file, check the policy's keys."""


@keys.command("create")
@_local_options
@click.option("--path", "path", callback=cliargs.output_file, required=True, metavar="FILE",
              help="Where to write the new key file (mode 0600; never overwritten).")
@click.pass_obj
def keys_create(ctx: Ctx, path: str) -> None:
    """Create a key file for the ``local`` key provider (keys: {NAME: {provider: local, path: FILE}})."""
    from .keys.local import create_key_file

    key_id = create_key_file(path)
    _emit(ctx, {"path": path, "key_id": key_id, "mode": "0600"}, lambda d: click.echo(
        f"created key file {d['path']} (mode 0600, key id {d['key_id']}); keep a copy somewhere "
        f"safe: snapshots encrypted only with this key cannot be restored without it"))


@keys.command("check")
@_local_options
@click.pass_obj
def keys_check(ctx: Ctx) -> None:
    """Wrap and unwrap a test key with every key the policy defines; exit 3 if one fails."""
    import secrets as _secrets

    from .errors import KeyUnavailableError
    from .keys import keyring_for

    keyring = keyring_for(ctx.load())
    rows = []
    context = {"cloudkeep:dataset": "-", "cloudkeep:snapshot": "keys-check"}
    for name, provider in sorted(keyring.providers.items()):
        row: dict[str, Any] = {"key": name, "provider": provider.provider}
        try:
            row["key_id"] = provider.key_id()
            probe = _secrets.token_bytes(32)
            ok = provider.unwrap(provider.wrap(probe, context), context) == probe
            row["ok"], row["error"] = ok, None if ok else "unwrap returned another key"
        except KeyUnavailableError as exc:
            row["ok"], row["error"] = False, str(exc)
        rows.append(row)
    _emit(ctx, rows, lambda data: _table(
        ["key", "provider", "key id", "ok", "error"],
        [[r["key"], r["provider"], r.get("key_id"), "yes" if r["ok"] else "NO", r["error"]] for r in data]))
    if any(not r["ok"] for r in rows):
        sys.exit(EXIT_UNREACHABLE)


@keys.command("endorse")
@_local_options
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
    from datetime import UTC, datetime

    from . import audit, trust
    from .catalog import load_manifest, snapshot_ids, store_named
    from .errors import KeyUnavailableError, ObjectExistsError, TamperedError
    from .holds import who
    from .keys import keyring_for

    policy = ctx.load()
    names = policy.signing_keys(dataset)
    if not names:
        raise UsageError(f"dataset {dataset!r} has no signing keys: set signing.keys (or encryption "
                         "keys) in the policy first")
    store = store_named(policy, dataset, store_name)
    keyring = keyring_for(policy)
    policy_expect = trust.expect_for(policy, dataset, store_name, authenticate=False)
    # bound to its key and store, its tag (if any) checks; what it lacks is judged strictly
    loose = trust.Expect(dataset, policy_expect.stores)
    strict = trust.Expect(dataset, policy_expect.stores, None, policy_expect.require_encryption,
                          True)
    rows: list[dict[str, Any]] = []
    for sid in snapshot_ids(store, dataset):
        row: dict[str, Any] = {"ref": f"{dataset}@{sid}", "snapshot_id": sid}
        try:
            manifest = load_manifest(store, dataset, sid, keyring=keyring, expect=loose)
        except TamperedError as exc:  # forged, replayed, tampered: never endorsed
            row.update(action="refused", detail=str(exc))
        except KeyUnavailableError:
            raise
        except CloudkeepError as exc:
            row.update(action="refused", detail=str(exc))
        else:
            lacking = trust.downgrade(manifest, strict)
            if lacking is None:
                row.update(action="signed", detail="carries its own tag")
            elif trust.read_endorsement(store, dataset, sid) is not None:
                row.update(action="endorsed", detail="already endorsed")
            elif dry_run:
                row.update(action="would endorse", detail=lacking.removeprefix("is ").split(",")[0])
            else:
                try:
                    trust.endorse(store, manifest, keyring, names, by=who(),
                                  at=datetime.now(UTC).isoformat())
                    row.update(action="endorsed", detail=f"endorsed by {', '.join(names)}")
                except ObjectExistsError:
                    row.update(action="endorsed", detail="already endorsed")
        rows.append(row)
    if not dry_run:
        audit.write(store, "endorse", outcome="ok", dataset=dataset,
                    detail={"endorsed": [r["snapshot_id"] for r in rows
                                         if r["detail"].startswith("endorsed by")],
                            "refused": [r["snapshot_id"] for r in rows if r["action"] == "refused"]})
    _emit(ctx, rows, lambda data: _table(["snapshot", "action", "detail"],
                                         [[r["ref"], r["action"], r["detail"]] for r in data])
          if data else click.echo("no committed snapshots"))
    if any(r["action"] == "refused" for r in rows):
        sys.exit(EXIT_FAILED)


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
        shown: click.ClickException  # the message may quote an argument (a URL): redacted
        if isinstance(exc, click.UsageError):
            shown = click.UsageError(redact(exc.format_message()), ctx=exc.ctx)
        else:
            shown = click.ClickException(redact(exc.format_message()))
        shown.show()
        return EXIT_USAGE if isinstance(exc, click.UsageError) else exc.exit_code
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except CloudkeepError as exc:
        if debug:
            log.exception("error")
        click.echo(f"error: {redact(str(exc))}", err=True)
        return exc.exit_code
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    except Exception as exc:  # noqa: BLE001 - the last resort: one line (or, with --debug, the traceback)
        if debug:  # the traceback, redacted like every other output
            import traceback

            click.echo(redact("".join(traceback.format_exception(exc))).rstrip("\n"), err=True)
            return EXIT_FAILED
        click.echo(redact(f"error: unexpected {type(exc).__name__}: {exc} (run with --debug for "
                          "details)"), err=True)
        return EXIT_FAILED
    return 0


def run_cli() -> NoReturn:
    sys.exit(entrypoint())
