"""``cloudkeep validate``, ``init``, ``schema`` and ``completion``: the policy file and the
shell."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from click.shell_completion import get_completion_class

from .. import cliargs, starter
from ..advice import warnings
from ..errors import CloudkeepError, PolicyError, UsageError
from ..policy import load_policy, parse_policy, resolve_policy_path
from ..policy_doc import json_schema
from .app import Ctx, local_options, main, usage
from .output import color_enabled, emit


@main.command()
@local_options
@click.pass_obj
def validate(ctx: Ctx) -> None:
    """Check the policy; print every error with its field path."""
    path = resolve_policy_path(ctx.policy_path)
    try:
        policy = load_policy(path).policy
    except PolicyError as exc:
        if ctx.fmt == "json":
            click.echo(json.dumps({"ok": False, "policy": path, "errors": exc.problems}, indent=2))
            sys.exit(exc.exit_code)
        raise
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

    emit(ctx, data, render)


@main.command()
@local_options
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
    if not discover and (aws_region or gcp_project or cosmos_endpoint):
        usage("--aws-region, --gcp-project and --cosmos-endpoint go with --discover")
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

    emit(ctx, data, render)


@main.command()
@local_options
def schema() -> None:
    """Print the policy's JSON Schema (for editors: cloudkeep schema > cloudkeep.schema.json)."""
    click.echo(json.dumps(json_schema(), indent=2, sort_keys=True, ensure_ascii=False))


@main.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script: eval "$(cloudkeep completion bash)" (zsh alike;
    fish: cloudkeep completion fish | source)."""
    cls = get_completion_class(shell)
    assert cls is not None
    click.echo(cls(main, {}, "cloudkeep", "_CLOUDKEEP_COMPLETE").source())
