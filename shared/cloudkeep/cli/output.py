"""Output of the ``cloudkeep`` commands: JSON or tables, redacted, without terminal control
characters, coloured only on a terminal; and the cells several commands share."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import click

from ..policy import format_duration
from ..redaction import redact, redact_obj
from ..report import human_bytes
from .app import Ctx

__all__ = ["color_enabled", "emit", "human_bytes", "printable", "table"]


def emit(ctx: Ctx, data: Any, render: Callable[[Any], None]) -> None:
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


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None,
           min_width: int = 160, *, whole: Sequence[str] = (),
           drop: Sequence[str] = ()) -> None:
    """Print a table. Columns named in ``whole`` are never cut or wrapped (values a user copies,
    e.g. snapshot refs); when the table cannot fit the width otherwise, the columns in ``drop``
    are left out, first ones first, and the other columns wrap."""
    from rich.console import Console  # rich only when a table is printed (startup time)
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


def color_enabled(stream: Any = None) -> bool:
    """Colours only on a terminal, and never when NO_COLOR is set (https://no-color.org)."""
    if os.environ.get("NO_COLOR", "") != "":
        return False
    stream = stream or sys.stdout
    return bool(getattr(stream, "isatty", lambda: False)())


def paint(text: str, colour: str) -> Any:
    """A coloured table cell; the table's console drops the colour where colours are off."""
    from rich.text import Text  # rich only when a table is printed (startup time)

    return Text(text, style=colour)


def native_summary(native: dict[str, Any]) -> str:
    """What a native job made, in one line (ARNs, operation, output URI)."""
    keys = ("backup_arn", "export_arn", "s3_uri", "snapshot_arns", "operation", "output_uri_prefix")
    parts = [f"{k}={', '.join(v) if isinstance(v, list) else v}" for k in keys if (v := native.get(k))]
    return f"{native.get('kind', 'native')}: " + "; ".join(parts)


def job_note(job: Any) -> str | None:
    if not job:
        return None
    return (f"{job.get('method')} job {job.get('state')}, {job.get('polls', 0)} poll(s); "
            "run again (or wait for the next tick) to continue")


def fmt_seconds(seconds: int) -> str:
    return format_duration(timedelta(seconds=seconds))


def hold_cell(held: list[dict[str, Any]]) -> str:
    """The reason of a snapshot's one hold, or how many holds and their reasons."""
    if not held:
        return ""
    if len(held) == 1:
        return str(held[0]["reason"])
    return f"{len(held)} holds: " + "; ".join(str(h["reason"]) for h in held)


def verification_cell(record: dict[str, Any] | None, level: bool = False) -> str:
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


def encryption_text(encryption: dict[str, Any] | None) -> str:
    if not encryption:
        return "none"
    keys = ", ".join(f"{k['key']} ({k['provider']} {k['key_id']})" for k in encryption["keys"])
    return f"{encryption['algorithm']}, data key wrapped by {keys}"




def retention_table(dataset: str, retention: dict[str, Any]) -> None:
    """What retention would do with a dataset's snapshots (``plan --retention``): each snapshot,
    newest first, kept with its reasons or removed."""
    click.echo(f"\n{dataset}: retention {retention['rules']}")
    table(["snapshot", "captured", "action", "reasons"],
          [[s["snapshot_id"], (s.get("time") or "")[:19].replace("T", " "), s["action"],
            ", ".join(s["reasons"]) if s["action"] == "keep" else "—"]
           for s in retention["snapshots"]], whole=["snapshot"])
    for error in retention["errors"]:
        click.echo(f"warning: {dataset}: {error}", err=True)
