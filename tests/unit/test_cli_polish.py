"""CLI polish: shell completion, `--format json` on every command, colours only on a terminal and
never with NO_COLOR (checked on a real pseudo-terminal)."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from cloudkeep.cli import main
from helpers import cli

CLOUDKEEP = str(Path(sys.executable).parent / "cloudkeep")
POLICY = {
    "version": 1,
    "stores": {"vault": {"type": "file", "path": "vault"}},
    "tiers": {"standard": {"schedule": "0 2 * * *", "rpo": "2h", "retention": {"daily": 7}}},
    "datasets": {"orders": {"source": {"type": "dynamodb", "table": "orders", "region": "us-east-1"},
                            "tier": "standard", "store": "vault"}},
}


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    path = tmp_path / "cloudkeep.yaml"
    path.write_text(yaml.safe_dump(POLICY))
    return path


def _commands(group: click.Group, prefix: str = "") -> dict[str, click.Command]:
    out: dict[str, click.Command] = {}
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            out.update(_commands(command, f"{prefix}{name} "))
        else:
            out[f"{prefix}{name}"] = command
    return out


def test_every_command_takes_format_json() -> None:
    missing = [name for name, command in _commands(main).items()
               if name != "completion"
               and not any("--format" in p.opts for p in command.params if isinstance(p, click.Option))]
    assert missing == []


@pytest.mark.parametrize("args", [
    ["validate"], ["plan", "--now", "2026-03-01T00:00:00Z"], ["list"], ["hold", "list"],
    ["report", "--now", "2026-03-01T00:00:00Z"], ["prune", "--dry-run"], ["schema"],
])
def test_json_output_parses(policy: Path, capsys: Any, args: list[str]) -> None:
    code, out, err = cli(capsys, "--policy", str(policy), *args, "--format", "json")
    assert code == 0, err
    json.loads(out)


def test_init_json_output_parses(tmp_path: Path, capsys: Any) -> None:
    code, out, err = cli(capsys, "init", "--output", str(tmp_path / "new.yaml"), "--format", "json")
    assert code == 0, err
    assert json.loads(out)["written"] == str(tmp_path / "new.yaml")


@pytest.mark.parametrize("shell, marker", [("bash", "complete -o nosort -F"), ("zsh", "compdef"),
                                           ("fish", "complete --no-files --command cloudkeep")])
def test_completion_scripts(capsys: Any, shell: str, marker: str) -> None:
    code, out, err = cli(capsys, "completion", shell)
    assert code == 0, err
    assert marker in out and "_CLOUDKEEP_COMPLETE" in out


def test_completion_completes_commands_and_options() -> None:
    env = {**os.environ, "_CLOUDKEEP_COMPLETE": "bash_complete", "COMP_WORDS": "cloudkeep re",
           "COMP_CWORD": "1"}
    out = subprocess.run([CLOUDKEEP], env=env, capture_output=True, text=True, timeout=60).stdout
    assert out.split() == ["plain,report", "plain,restore", "plain,retention"]
    env.update(COMP_WORDS="cloudkeep report --", COMP_CWORD="2")
    out = subprocess.run([CLOUDKEEP], env=env, capture_output=True, text=True, timeout=60).stdout
    assert "plain,--output" in out.split() and "plain,--format" in out.split()


def _on_a_terminal(args: list[str], env: dict[str, str], cwd: Path) -> str:
    """Run the CLI with stdout and stderr on a pseudo-terminal; return what it wrote."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([CLOUDKEEP, *args], stdin=subprocess.DEVNULL, stdout=follower,
                            stderr=follower, env=env, cwd=cwd)
    os.close(follower)
    chunks = []
    while True:
        ready, _, _ = select.select([leader], [], [], 60)
        if not ready:
            break
        try:
            data = os.read(leader, 65536)
        except OSError:  # the terminal closed: the process is done
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=60)
    os.close(leader)
    return b"".join(chunks).decode("utf-8", "replace")


def test_colours_on_a_terminal_and_never_with_no_color(policy: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "CI", "TERM")}
    env.update(TERM="xterm-256color", COLUMNS="200")
    args = ["--policy", str(policy), "validate"]
    coloured = _on_a_terminal(args, env, tmp_path)
    assert "warning:" in coloured and "\x1b[" in coloured
    plain = _on_a_terminal(args, {**env, "NO_COLOR": "1"}, tmp_path)
    assert "warning:" in plain and "\x1b[" not in plain
    table = ["--policy", str(policy), "report", "--now", "2026-03-01T00:00:00Z"]
    assert "\x1b[" in _on_a_terminal(table, env, tmp_path)
    assert "\x1b[" not in _on_a_terminal(table, {**env, "NO_COLOR": "1"}, tmp_path)
    piped = subprocess.run([CLOUDKEEP, *table], env=env, cwd=tmp_path, capture_output=True, text=True,
                           timeout=60)
    assert piped.returncode == 0 and "orders" in piped.stdout and "\x1b[" not in piped.stdout


def test_report_init_and_schema_modules_import_no_cloud_sdk() -> None:
    from test_imports import CLOUD_SDKS, probe

    result = probe("cloudkeep.report", "cloudkeep.report_html", "cloudkeep.starter",
                   "cloudkeep.advice", "cloudkeep.policy_doc")
    top = set(result["top"])  # type: ignore[arg-type]
    assert not top & set(CLOUD_SDKS)
