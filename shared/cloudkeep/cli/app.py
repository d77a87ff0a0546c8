"""The ``cloudkeep`` command group: global options, the context every command gets, logging,
progress display and the options several commands share."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import click

from .. import __version__, cliargs
from ..logctx import StderrHandler
from ..memory import bound_malloc
from ..policy import Policy, load_policy, resolve_policy_path
from ..progress import LogProgress, NullProgress, Progress, RichProgress
from ..redaction import RedactingFilter


@dataclass
class Ctx:
    policy_path: str | None
    fmt: str
    debug: bool

    def load(self) -> Policy:
        """The policy (--policy, else ./cloudkeep.yaml, else $CLOUDKEEP_POLICY)."""
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


def progress(quiet_logs: bool = False) -> Progress:
    """A live bar on a terminal (not in CI); elsewhere log lines every few seconds, or nothing
    for work that reports its own result (``quiet_logs``)."""
    if sys.stderr.isatty() and not os.environ.get("CI"):
        return RichProgress()
    return NullProgress() if quiet_logs else LogProgress()


def local_options(fn: Callable[..., Any]) -> Callable[..., Any]:
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


def allow_unsigned_option(fn: Callable[..., Any]) -> Callable[..., Any]:
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
    bound_malloc()  # flat memory over long runs (see memory.py)
    _setup_logging(debug, quiet)
    click_ctx.obj = Ctx(policy_path, fmt, debug)


def usage(message: str) -> NoReturn:
    """Stop with a usage error (exit 2, one line)."""
    raise click.UsageError(message)
