"""The ``cloudkeep`` command (contract: DESIGN.md §5).

Exit codes: 0 success, 1 an operation failed, 2 bad usage or a bad policy, 3 a store or source
could not be reached. Errors are one clear message on stderr; tracebacks only with ``--debug``.

Each command parses its arguments, calls one use case of :mod:`cloudkeep.services` and prints
(:mod:`.output`); the commands live by group: :mod:`.run` (run, work, prune), :mod:`.snapshots`
(plan, list, show, audit), :mod:`.restore` (verify, restore), :mod:`.report`, :mod:`.hold`,
:mod:`.keys`, :mod:`.items` (diff, find), :mod:`.retention` (retention check), :mod:`.policy` (validate,
init, schema, completion); :mod:`.app` is the group.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn

import click

from .. import extras
from ..errors import EXIT_FAILED, EXIT_USAGE, CloudkeepError
from ..redaction import redact
from . import capture, coldtiers, hold, items, keys, policy, report, restore, retention, run, snapshots
from .app import main
from .output import color_enabled, human_bytes, printable

log = logging.getLogger("cloudkeep")

__all__ = ["color_enabled", "entrypoint", "human_bytes", "main", "printable", "run_cli"]
COMMAND_MODULES = (capture, coldtiers, hold, items, keys, policy, report, restore, retention, run,
                   snapshots)  # each registers its commands


def entrypoint(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; turn every error into one line and an exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        with extras.translated():  # a missing cloud SDK: one line naming the extra to install
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
        return _unexpected(exc, debug)
    return 0


def _unexpected(exc: Exception, debug: bool) -> int:
    """The last resort for an exception that is no CloudkeepError: one redacted line (with
    ``--debug``, the redacted traceback); exit 1.

    EXTRAS HOOK: the one place an unexpected exception becomes a message. A hint for a
    missing optional SDK (``extras.hint(exc)``: which extra to install) belongs here, as one
    call before the line below."""
    if debug:  # the traceback, redacted like every other output
        click.echo(redact("".join(traceback.format_exception(exc))).rstrip("\n"), err=True)
        return EXIT_FAILED
    click.echo(redact(f"error: unexpected {type(exc).__name__}: {exc} (run with --debug for "
                      "details)"), err=True)
    return EXIT_FAILED


def run_cli() -> NoReturn:
    """The console script ``cloudkeep``."""
    sys.exit(entrypoint())
