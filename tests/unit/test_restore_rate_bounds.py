"""Adversarial bounds of ``restore --max-rate`` (issue #23 §3): a rate so small that the wait for
one item cannot be slept (``time.sleep`` overflows) or would last days is refused as bad usage
before anything is read or written, not a traceback after the target table was made."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cloudkeep.errors import UsageError
from cloudkeep.governor import MIN_RATE, Governor
from helpers import cli


@pytest.mark.parametrize("tiny", [1e-300, 5e-324, 1e-9, MIN_RATE / 2])
def test_a_rate_too_small_to_wait_for_is_usage(tiny: float) -> None:
    with pytest.raises(UsageError, match=r"bad --max-rate .*at least 0\.001 items per second"):
        Governor(max_rate=tiny)


def test_the_lowest_rate_and_a_huge_one_are_accepted() -> None:
    assert Governor(max_rate=MIN_RATE).max_rate == MIN_RATE
    assert Governor(max_rate=1e300).max_rate == 1e300


def test_cli_refuses_a_tiny_rate_in_one_line(tmp_path: Path, capsys: Any) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(
        "version: 1\n"
        f"stores:\n  vault: {{type: file, path: '{tmp_path / 'store'}'}}\n"
        "tiers:\n  t: {schedule: '0 0 * * *', rpo: 2d, retention: {last: 3}}\n"
        "datasets:\n  orders:\n    source: {type: dynamodb, table: orders, region: us-east-1}\n"
        "    tier: t\n    store: vault\n")
    code, out, err = cli(capsys, "--policy", str(path), "restore", "orders@latest",
                         "--into", "orders2", "--max-rate", "1e-300")
    assert code == 2
    assert err.strip().splitlines() == [
        "error: bad --max-rate 1e-300: at least 0.001 items per second"]
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize(("field", "value"), [("max_rate", 10**400), ("capacity_share", -10**400),
                                              ("max_rate", float("nan")), ("max_rate", 1e-300)])
def test_invoke_refuses_an_out_of_range_rate_as_bad_usage(
        tmp_path: Path, field: str, value: Any) -> None:
    from cloudkeep.function import invoke
    from cloudkeep.policy import load_policy

    path = tmp_path / "policy.yaml"
    path.write_text(
        "version: 1\n"
        f"stores:\n  vault: {{type: file, path: '{tmp_path / 'store'}'}}\n"
        "tiers:\n  t: {schedule: '0 0 * * *', rpo: 2d, retention: {last: 3}}\n"
        "datasets:\n  orders:\n    source: {type: dynamodb, table: orders, region: us-east-1}\n"
        "    tier: t\n    store: vault\n")
    status, body = invoke(load_policy(str(path)), {"action": "restore", "ref": "orders@latest",
                                                   "into": "orders2", field: value})
    assert status == 400 and body["ok"] is False
    assert field.replace("_", "-") in body["error"] or f"'{field}'" in body["error"]
