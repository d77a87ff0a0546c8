"""restic's own forget reference, through ``cloudkeep retention check``: each of restic's 40
policies (TestApplyPolicy, internal/data/snapshot_policy_test.go) but the three with tags,
applied to restic's 103 test snapshots, must keep exactly the snapshots restic's golden files
keep — the same times, as many of each, in the same order, for the same reasons.

The data (tests/fixtures/retention/) restates restic's test in cloudkeep's words: its policies as
retention mappings (restic's month unit ``m`` is ``mo``, ``-1`` is ``unlimited``), its reasons as
cloudkeep's (``daily snapshot`` is ``daily``, ``oldest yearly snapshot`` is ``oldest yearly``,
``daily within 7d`` is ``within_daily``)."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from tests.helpers import cli

DATA = Path(__file__).resolve().parents[1] / "fixtures" / "retention"
REFERENCE = json.loads((DATA / "restic_forget_cases.json").read_text(encoding="utf-8"))
TIMES = DATA / REFERENCE["snapshots"]
CASES = [c for c in REFERENCE["cases"] if c["rules"]]


def _times() -> list[datetime]:
    lines = TIMES.read_text(encoding="utf-8").splitlines()
    return [datetime.fromisoformat(t) for t in lines if t and not t.startswith("#")]


def _check(capsys: Any, rules: dict[str, Any]) -> dict[str, Any]:
    code, out, err = cli(capsys, "retention", "check", "--rules", json.dumps(rules),
                         "--times", str(TIMES), "--now", REFERENCE["now"], "--format", "json")
    assert code == 0, err
    return json.loads(out)  # type: ignore[no-any-return]


def test_the_reference_is_restics_whole_table() -> None:
    assert len(_times()) == 103
    numbers = [c["case"] for c in REFERENCE["cases"]]
    assert numbers == [n for n in range(40) if n not in (18, 19, 20)]  # 18-20: tag policies
    assert len(CASES) == 36  # and case 0, the empty policy (below)


@pytest.mark.parametrize("case", CASES, ids=[f"restic-{c['case']}" for c in CASES])
def test_restic_policy_keeps_what_restic_keeps(capsys: Any, case: dict[str, Any]) -> None:
    result = _check(capsys, case["rules"])
    want = case["keep"]
    got = result["keep"]
    # the same snapshots, newest first, as many of each time (duplicates are distinct snapshots)
    assert [datetime.fromisoformat(e["time"]) for e in got] == \
        [datetime.fromisoformat(e["time"]) for e in want]
    # for the same reasons; cloudkeep adds its safety rule "newest" (the newest snapshot, which
    # every non-empty restic policy here keeps anyway)
    assert "newest" in got[0]["reasons"]
    for mine, theirs in zip(got, want, strict=True):
        assert sorted(r for r in mine["reasons"] if r != "newest") == sorted(theirs["reasons"]), mine
    # every input line once: kept or removed
    listed = Counter(datetime.fromisoformat(e["time"]) for e in got + result["remove"])
    assert listed == Counter(_times())


def test_restics_empty_policy_is_refused_as_restic_refuses_it(capsys: Any) -> None:
    empty = next(c for c in REFERENCE["cases"] if not c["rules"])
    code, out, err = cli(capsys, "retention", "check", "--rules", "{}", "--times", str(TIMES),
                         "--now", REFERENCE["now"])
    assert (empty["case"], code, out) == (0, 2, "")
    assert "give at least one rule" in err and len(err.strip().splitlines()) == 1


def test_the_latest_snapshot_is_the_newest_before_now(capsys: Any) -> None:
    # restic's windows count back from the newest snapshot taken before now: judged at a now
    # between two snapshots, the later one does not move the window (and is kept: newer than now)
    code, out, err = cli(capsys, "retention", "check", "--rules", '{"within": "1d"}', "--times",
                         str(TIMES), "--now", "2016-01-13T00:00:00Z", "--format", "json")
    assert code == 0, err
    kept = {e["time"]: e["reasons"] for e in json.loads(out)["keep"]}
    # latest before now: 2016-01-12 21:08:03; within 1d keeps what is strictly newer than a day
    # before it — the snapshot after now too (as restic), and cloudkeep keeps it anyway
    assert kept == {
        "2016-01-18T12:02:03Z": ["within", "newest", "newer than now"],
        "2016-01-12T21:08:03Z": ["within"],
        "2016-01-12T21:02:03Z": ["within"],
    }
