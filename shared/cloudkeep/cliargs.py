"""One validator per kind of command-line value, run as click callbacks before a command does
anything: a bad value is one line, ``error: bad --option 'value': why``, and exit 2.

- :func:`text`: names, references, times, durations, sizes, queue URLs, reasons — never empty
  or blank, no surrounding spaces, no control characters.
- :func:`target`: a restore target — as :func:`text`, but empty is left to the source (a
  Firestore prefix may be empty: the original collections); each source then checks its own
  naming rules (:func:`cloudkeep.sources.check_restore_target`).
- :func:`output_file`: a file to write — not empty, not a folder, in a folder that exists and
  can be written (:func:`output_file_or_stdout`: ``-`` is standard output).
- :func:`input_file`: a file to read — not empty or blank (the reader checks the rest).
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import UsageError

if TYPE_CHECKING:  # click only for the callbacks: the checks also serve the function handlers
    import click


def describe(param: click.Parameter | None) -> str:
    """How the user knows the parameter: ``--output`` for an option, ``DATASET`` or ``REF``
    for an argument."""
    import click

    if param is None:
        return "value"
    if isinstance(param, click.Option):
        return next((o for o in param.opts if o.startswith("--")), param.opts[0])
    return (param.name or "value").upper()  # an argument: REF, DATASET (not its long metavar)


def check_text(value: str, what: str, *, empty: bool = False, echo: bool = True) -> str:
    """``value`` unchanged if it is a usable name (see the module docstring); else UsageError
    (quoting ``value`` unless ``echo`` is false: it may be a secret)."""
    if value == "":
        if empty:
            return value
        raise UsageError(f"bad {what} '': it is empty")
    shown = f" {value!r}" if echo else ""
    if not value.strip():
        raise UsageError(f"bad {what}{shown}: it is blank")
    if value != value.strip():
        raise UsageError(f"bad {what}{shown}: it starts or ends with spaces")
    if any(unicodedata.category(c) in ("Cc", "Cf") for c in value):
        raise UsageError(f"bad {what}{shown}: it holds control characters")
    return value


def check_output_file(value: str, what: str) -> Path:
    """A file that can be written: its folder exists and is writable, and it is not a folder
    (or a FIFO, a device) itself. Raises UsageError naming the path."""
    check_text(value, what)
    path = Path(value).expanduser()
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise UsageError(f"bad {what} {value!r}: it is a folder; name a file in it")
    if path.exists() and not path.is_file():
        raise UsageError(f"bad {what} {value!r}: it is not a regular file")
    if not folder.exists():
        raise UsageError(f"bad {what} {value!r}: folder {folder} does not exist")
    if not folder.is_dir():
        raise UsageError(f"bad {what} {value!r}: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UsageError(f"bad {what} {value!r}: cannot write {'it' if path.exists() else f'in {folder}'} "
                         "(permission denied)")
    return path


def _each(value: Any, check: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, tuple):
        return tuple(check(v) for v in value)
    return check(value)


def text(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Callback for name-like options and arguments (also ``nargs=-1``)."""
    return _each(value, lambda v: check_text(v, describe(param)))


def unechoed_text(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Callback for an option whose value may be (or be mistaken for) a secret: checked like
    :func:`text`, never repeated in the error (``restore --external-id``, ``--key-env``)."""
    return _each(value, lambda v: check_text(v, describe(param), echo=False))


def target(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Callback for a restore target: empty is left to the source to judge."""
    return _each(value, lambda v: check_text(v, describe(param), empty=True))


def output_file(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Callback for a file to write."""
    return _each(value, lambda v: str(check_output_file(v, describe(param))))


def output_file_or_stdout(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Callback for a file to write, where ``-`` means standard output."""
    return _each(value, lambda v: v if v == "-" else str(check_output_file(v, describe(param))))


def input_file(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Callback for a file (or URL) to read."""
    return _each(value, lambda v: check_text(v, describe(param)))
