"""A policy loader with limits (issue #17.9): size, nesting depth, aliases and their expansion,
self-referencing aliases, bounded numbers, regular files only (local and remote).

Every bad input ends the same way: exit 2, the file named (with its line where known), no
traceback — checked through the real console script.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from cloudkeep.errors import PolicyError, UsageError
from cloudkeep.policy import (
    MAX_POLICY_BYTES,
    MAX_YAML_ALIASES,
    MAX_YAML_DEPTH,
    load_policy,
    parse_duration,
    parse_policy,
    validate_schedule,
)

CLI = Path(sys.executable).with_name("cloudkeep")

BASE = """\
version: 1
stores:
  vault: {type: file, path: ./backups}
tiers:
  t:
    schedule: "0 2 * * *"
    rpo: 26h
    retention: {daily: 7}
datasets:
  orders: {source: {type: dynamodb, table: orders, region: eu-west-1}, tier: t, store: vault}
"""

# The alias bomb: 9 levels of 9 aliases, 609 bytes, billions of values once expanded.
BOMB = """\
version: 1
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
j: &j [*i,*i,*i,*i,*i,*i,*i,*i,*i]
stores: *j
tiers: *j
datasets: *j
"""


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CLI), *args], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1"})


def assert_refused(result: subprocess.CompletedProcess[str], where: str, *needles: str) -> None:
    """Exit 2, no traceback, the file (and line) named, every needle in the message."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    assert "unexpected" not in result.stderr
    assert where in result.stderr, result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


def test_the_alias_bomb_is_refused_while_parsing_with_flat_memory(tmp_path: Path) -> None:
    assert len(BOMB.encode()) < 700
    tracemalloc.start()
    try:
        with pytest.raises(PolicyError) as err:
            parse_policy(BOMB, source="bomb.yaml")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # refused at the level where the expansion crosses the limit, long before the end
    assert err.value.problems == [
        "bomb.yaml:7:4: refused: more than 200000 values once its aliases are expanded (an alias bomb?)"]
    assert peak < 20 * 1024 * 1024, f"parsing held {peak / 2**20:.1f} MiB"
    (tmp_path / "bomb.yaml").write_text(BOMB)
    assert_refused(run(tmp_path, "--policy", "bomb.yaml", "validate"), "bomb.yaml:7:4:", "alias")


def test_too_many_aliases(tmp_path: Path) -> None:
    text = BASE + "x: &x 1\n" + "".join(f"y{i}: *x\n" for i in range(MAX_YAML_ALIASES + 1))
    (tmp_path / "p.yaml").write_text(text)
    line = BASE.count("\n") + 2 + MAX_YAML_ALIASES
    assert_refused(run(tmp_path, "--policy", "p.yaml", "validate"), f"p.yaml:{line}:",
                   f"more than {MAX_YAML_ALIASES} aliases")
    # a policy that uses a few aliases the ordinary way is fine
    policy = parse_policy(BASE.replace("retention: {daily: 7}", "retention: &keep {daily: 7}")
                          .replace("datasets:\n", "  u: {schedule: \"0 3 * * *\", rpo: 26h, "
                                   "retention: *keep}\ndatasets:\n"))
    assert policy.tiers["u"].retention == policy.tiers["t"].retention


@pytest.mark.parametrize("text", [
    "version: 1\nstores: &s [*s]\n",
    "version: 1\nstores: &s {a: *s}\n",
    "version: 1\nstores: &s {a: [1, {b: *s}]}\n",
], ids=["list", "mapping", "deeper"])
def test_self_referencing_aliases_are_refused(tmp_path: Path, text: str) -> None:
    (tmp_path / "p.yaml").write_text(text)
    assert_refused(run(tmp_path, "--policy", "p.yaml", "validate"), "p.yaml:2:", "self-referencing alias")


@pytest.mark.parametrize("text", [
    "version: 1\nstores: " + "[" * 5000 + "]" * 5000 + "\n",
    "version: 1\nstores: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n",
    "version: 1\nstores:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(200)),
], ids=["flow-lists", "flow-mappings", "block-mappings"])
def test_deep_nesting_is_refused(tmp_path: Path, text: str) -> None:
    (tmp_path / "p.yaml").write_text(text)
    assert_refused(run(tmp_path, "--policy", "p.yaml", "validate"), "p.yaml:",
                   f"nested more than {MAX_YAML_DEPTH} levels deep")


def test_nesting_hidden_behind_aliases_is_refused() -> None:
    # each anchored piece is shallow; expanded, they nest 40 * 3 levels deep
    lines = ["version: 1", "l0: &l0 " + "[" * 40 + "]" * 40]
    lines += [f"l{i}: &l{i} " + "[" * 39 + f"*l{i - 1}" + "]" * 39 for i in range(1, 3)]
    with pytest.raises(PolicyError, match="levels deep once its aliases are expanded"):
        parse_policy("\n".join(lines) + "\n")


@pytest.mark.parametrize(("field", "value", "message"), [
    ("yearly", "1000000000000", "retention.yearly: must be at most 1000, got 1000000000000"),
    ("daily", "99999999999999999999999", "retention.daily: must be at most 365000"),
    ("last", "10000001", "retention.last: must be at most 1000000"),
])
def test_huge_counts_are_a_clear_error(tmp_path: Path, field: str, value: str, message: str) -> None:
    (tmp_path / "p.yaml").write_text(BASE.replace("retention: {daily: 7}", f"retention: {{{field}: {value}}}"))
    assert_refused(run(tmp_path, "--policy", "p.yaml", "validate"), "p.yaml:8:", message)
    assert_refused(run(tmp_path, "--policy", "p.yaml", "plan"), "p.yaml:8:", message)


@pytest.mark.parametrize(("text", "message"), [
    ("rpo: 26h", "rpo: duration '999999999999w' is too long"),
    ('schedule: "0 2 * * *"', "bad rate expression 'rate(99999999999 days)': the interval is too long"),
])
def test_huge_durations_are_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    bad = "rpo: 999999999999w" if text.startswith("rpo") else 'schedule: "rate(99999999999 days)"'
    (tmp_path / "p.yaml").write_text(BASE.replace(text, bad))
    assert_refused(run(tmp_path, "--policy", "p.yaml", "validate"), "p.yaml:", message)
    with pytest.raises(ValueError, match="too long"):
        parse_duration("36601d")
    assert parse_duration("36600d").days == 36600
    with pytest.raises(ValueError, match="too long"):
        validate_schedule("rate(36601 days)")


def test_a_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "d.yaml").mkdir()
    assert_refused(run(tmp_path, "--policy", "d.yaml", "validate"), "d.yaml",
                   "is a directory, not a regular file")


def test_dev_zero_is_refused(tmp_path: Path) -> None:
    assert_refused(run(tmp_path, "--policy", "/dev/zero", "validate"), "/dev/zero",
                   "is a device, not a regular file")


def test_a_fifo_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "p.yaml"
    os.mkfifo(fifo)
    outcome: list[Any] = []

    def load() -> None:
        try:
            load_policy(str(fifo))
        except UsageError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    thread.join(60)  # a generous bound: a blocking read of a FIFO never returns at all
    assert not thread.is_alive(), "reading a FIFO blocked"
    assert outcome and str(outcome[0]) == f"cannot read policy file {fifo}: it is a FIFO, not a regular file"
    assert_refused(run(tmp_path, "--policy", "p.yaml", "validate"), "p.yaml", "is a FIFO")


def test_a_policy_larger_than_the_limit_is_refused(tmp_path: Path) -> None:
    padding = "# " + "x" * 1000 + "\n"
    (tmp_path / "p.yaml").write_text(BASE + padding * (MAX_POLICY_BYTES // len(padding) + 1))
    assert_refused(run(tmp_path, "--policy", "p.yaml", "validate"), "p.yaml",
                   f"is too large (more than {MAX_POLICY_BYTES} bytes)")
    with pytest.raises(PolicyError, match="too large"):
        parse_policy(BASE + padding * (MAX_POLICY_BYTES // len(padding) + 1))


def test_a_remote_policy_is_capped_in_bytes(moto_server: Any, s3_bucket: str) -> None:
    import boto3

    s3 = boto3.client("s3", region_name="us-east-1")
    s3.put_object(Bucket=s3_bucket, Key="ok.yaml", Body=BASE.encode())
    s3.put_object(Bucket=s3_bucket, Key="big.yaml", Body=b"#" * (MAX_POLICY_BYTES + 1))
    assert sorted(load_policy(f"s3://{s3_bucket}/ok.yaml").policy.datasets) == ["orders"]
    with pytest.raises(UsageError, match=rf"policy s3://{s3_bucket}/big.yaml is too large"):
        load_policy(f"s3://{s3_bucket}/big.yaml")
