"""``cloudkeep retention check``: the simulator's contract — the JSON shape, one entry per input
line (duplicates too), standard input, --tier, --timezone, --now — and its refusals: every bad
input is one line naming it, exit 2, nothing printed on stdout."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.helpers import cli

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "retention-times.txt"
NOW = "2026-03-05T10:30:00Z"


def check(capsys: Any, *args: str) -> dict[str, Any]:
    code, out, err = cli(capsys, "retention", "check", *args, "--format", "json")
    assert code == 0, err
    return json.loads(out)  # type: ignore[no-any-return]


def test_the_readme_example(capsys: Any) -> None:
    result = check(capsys, "--rules", "{last: 2, daily: 3, yearly: 10}", "--times", str(EXAMPLE),
                   "--now", NOW)
    assert set(result) == {"keep", "remove"}
    assert result["keep"] == [
        {"time": "2026-03-05T10:00:00Z", "reasons": ["last", "daily", "yearly", "newest"]},
        {"time": "2026-03-05T09:00:00Z", "reasons": ["last"]},
        {"time": "2026-03-04T23:00:00Z", "reasons": ["daily"]},
        {"time": "2026-03-03T23:00:00Z", "reasons": ["daily"]},
        {"time": "2025-12-31T23:00:00Z", "reasons": ["yearly"]},
        {"time": "2024-12-31T23:00:00Z", "reasons": ["yearly"]},
        {"time": "2024-07-01T00:00:00Z", "reasons": ["oldest yearly"]},
    ]
    # one entry per line: the duplicate 2024-07-01 is two snapshots, one of each kind
    assert result["remove"] == [{"time": t} for t in (
        "2026-03-05T08:00:00Z", "2026-03-04T12:00:00Z", "2026-03-02T23:00:00Z",
        "2025-06-30T23:00:00Z", "2024-07-01T00:00:00Z")]
    code, out, _ = cli(capsys, "retention", "check", "--rules", "{last: 2, daily: 3, yearly: 10}",
                       "--times", str(EXAMPLE), "--now", NOW)
    assert code == 0 and "oldest yearly" in out and "keep 7, remove 5" in out


def test_standard_input_json_rules_and_lines_as_written(capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    text = "# a comment\n\n2026-03-05 10:00:00+01:00\n2026-03-05T08:59:59Z\r\n2026-03-04T12:00:00\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))
    result = check(capsys, "--rules", '{"within": "1d", "hourly": "unlimited"}', "--times", "-",
                   "--now", NOW)
    # 10:00+01:00 is 09:00Z: the latest; within 1d is strictly newer than 2026-03-04T09:00Z
    assert result["keep"] == [
        {"time": "2026-03-05 10:00:00+01:00", "reasons": ["hourly", "within", "newest"]},
        {"time": "2026-03-05T08:59:59Z", "reasons": ["hourly", "within"]},
        {"time": "2026-03-04T12:00:00", "reasons": ["hourly", "within"]},  # no offset: UTC
    ]


def test_timezone_moves_the_periods(capsys: Any, tmp_path: Path) -> None:
    times = tmp_path / "t.txt"
    times.write_text("2026-01-02T05:00:00Z\n2026-01-01T23:30:00Z\n2025-12-01T00:00:00Z\n",
                     encoding="utf-8")
    utc = check(capsys, "--rules", "{daily: 2}", "--times", str(times), "--now", NOW)
    berlin = check(capsys, "--rules", "{daily: 2}", "--times", str(times), "--now", NOW,
                   "--timezone", "Europe/Berlin")
    assert [e["time"] for e in utc["keep"]] == ["2026-01-02T05:00:00Z", "2026-01-01T23:30:00Z"]
    # in Berlin 23:30Z is already 2 January: the second day is 1 December
    assert [e["time"] for e in berlin["keep"]] == ["2026-01-02T05:00:00Z", "2025-12-01T00:00:00Z"]


def test_tier_rules_and_the_policy_time_zone(capsys: Any, tmp_path: Path) -> None:
    policy = tmp_path / "cloudkeep.yaml"
    policy.write_text("""
version: 1
timezone: Europe/Berlin
stores: {vault: {type: file, path: vault}}
tiers: {t: {schedule: "0 * * * *", rpo: 2h, retention: {daily: 2, within_monthly: 1y2mo, min_copies: 0}}}
datasets: {orders: {source: {type: dynamodb, table: orders, region: us-east-1}, tier: t, store: vault}}
""".replace(", min_copies: 0", ""), encoding="utf-8")
    times = tmp_path / "t.txt"
    times.write_text("2026-01-02T05:00:00Z\n2026-01-01T23:30:00Z\n2025-12-01T00:00:00Z\n",
                     encoding="utf-8")
    result = check(capsys, "--policy", str(policy), "--tier", "t", "--times", str(times), "--now", NOW)
    assert result["keep"] == [
        {"time": "2026-01-02T05:00:00Z", "reasons": ["daily", "within_monthly", "newest"]},
        {"time": "2025-12-01T00:00:00Z", "reasons": ["daily", "within_monthly"]},
    ]
    assert result["remove"] == [{"time": "2026-01-01T23:30:00Z"}]


@pytest.mark.parametrize(("args", "words"), [
    (["--rules", "{dayly: 3}"], "unknown rule 'dayly'"),
    (["--rules", "{daily: -1}"], "write unlimited"),
    (["--rules", "{daily: 2.5}"], "expected a whole number"),
    (["--rules", "{within: 1month}"], "bad duration"),
    (["--rules", "{}"], "give at least one rule"),
    (["--rules", "[1, 2]"], "expected a mapping"),
    (["--rules", "{daily: 1"], "YAML syntax error"),
    (["--rules", "   "], "it is empty"),
    (["--rules", "{daily: 1}", "--tier", "t"], "either --rules"),
    ([], "either --rules"),
    (["--rules", "{daily: 1}", "--timezone", "Mars/Olympus"], "unknown time zone"),
    (["--rules", "{daily: 1}", "--now", "yesterday"], "bad --now"),
])
def test_bad_rules_and_options_are_one_line_and_exit_2(capsys: Any, args: list[str], words: str) -> None:
    code, out, err = cli(capsys, "retention", "check", "--times", str(EXAMPLE), *args)
    assert (code, out) == (2, ""), err
    assert words in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize(("content", "words"), [
    ("2026-03-05T10:00:00Z\nnot a time\n", "line 2: 'not a time' is not an ISO 8601 time"),
    ("2026-02-30T10:00:00Z\n", "line 1: '2026-02-30T10:00:00Z' is out of range"),
    ("2026-03-05T10:00:00Z" * 10 + "\n", "line 1: longer than 100 characters"),
    ("x" * 10_000_000, "line 1: longer than 100 characters"),
])
def test_bad_times_are_one_line_and_exit_2(capsys: Any, tmp_path: Path, content: str, words: str) -> None:
    times = tmp_path / "t.txt"
    times.write_text(content, encoding="utf-8")
    code, out, err = cli(capsys, "retention", "check", "--rules", "{daily: 1}", "--times", str(times))
    assert (code, out) == (2, ""), err
    assert words in err and len(err.strip().splitlines()) == 1, err


def test_unreadable_times_file(capsys: Any, tmp_path: Path) -> None:
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00\n")
    for path, words in ((tmp_path / "missing.txt", "No such file"), (tmp_path, "Is a directory"),
                        (tmp_path / "bin.txt", "not UTF-8")):
        code, out, err = cli(capsys, "retention", "check", "--rules", "{daily: 1}", "--times", str(path))
        assert (code, out) == (2, "") and words in err, err


def test_a_window_in_minutes_is_warned_about(capsys: Any) -> None:
    code, out, err = cli(capsys, "retention", "check", "--rules", "{within: 6m}", "--times",
                         str(EXAMPLE), "--now", NOW, "--format", "json")
    assert code == 0 and json.loads(out)["keep"][0]["reasons"] == ["within", "newest"]
    assert "warning: within: 6m is less than a day (m is minutes; months are mo)" in err


def test_validate_takes_the_new_rules_and_warns_about_minutes(capsys: Any, tmp_path: Path) -> None:
    policy = tmp_path / "cloudkeep.yaml"
    policy.write_text("""
version: 1
stores: {vault: {type: file, path: vault}}
tiers:
  keep-all: {schedule: "0 * * * *", rpo: 2h, retention: {daily: 7, yearly: unlimited}}
  minutes: {schedule: "0 * * * *", rpo: 2h, retention: {within: 6m, within_monthly: 1y2mo3d3h}}
datasets: {orders: {source: {type: dynamodb, table: orders, region: us-east-1}, tier: keep-all, store: vault}}
""", encoding="utf-8")
    code, out, err = cli(capsys, "validate", "--policy", str(policy))
    assert code == 0, err
    warnings = [line for line in (out + err).splitlines() if "retention" in line]
    assert any("tiers.minutes.retention.within: within: 6m is less than a day" in w for w in warnings)
    assert not any("keep-all.retention" in w for w in warnings)  # unlimited: nothing ages out
    assert not any("within_monthly" in w for w in warnings)


def test_more_times_than_the_limit_are_refused(capsys: Any, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from cloudkeep import retention_sim

    monkeypatch.setattr(retention_sim, "MAX_TIMES", 3)
    times = tmp_path / "t.txt"
    times.write_text("2026-03-05T10:00:00Z\n" * 3, encoding="utf-8")
    assert len(check(capsys, "--rules", "{last: 1}", "--times", str(times))["remove"]) == 2
    times.write_text("2026-03-05T10:00:00Z\n" * 4, encoding="utf-8")
    code, out, err = cli(capsys, "retention", "check", "--rules", "{last: 1}", "--times", str(times))
    assert (code, out) == (2, "") and "more than 3 times" in err


@pytest.mark.parametrize("page", ["README.md", "docs/retention.md"])
def test_the_worked_example_in_the_docs_is_the_real_output(capsys: Any, page: str) -> None:
    text = (EXAMPLE.parents[1] / page).read_text(encoding="utf-8")
    block = text[text.index("rules: last: 2, daily: 3, yearly: 10"):]
    block = block[:block.index("keep 7, remove 5")]
    shown = [[c.strip() for c in line.strip("│ ").split("│")] for line in block.splitlines()
             if line.startswith("│")]
    from cloudkeep import services
    from cloudkeep.runtime import parse_now

    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    simulation = services.retention_check(None, lines, rules="{last: 2, daily: 3, yearly: 10}",
                                          now=parse_now(NOW))
    real = [[e.text, "keep" if e.kept else "remove", ", ".join(e.reasons) or "—"]
            for e in simulation.entries]
    assert shown == real and len(real) == 12
