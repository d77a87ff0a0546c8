"""``cloudkeep report``: the terminal/JSON summary and the self-contained HTML, opened in headless
Chromium (Debian's `chromium`, over the DevTools protocol): no console error, every dataset shown,
a screenshot written and its path printed.

The store is seeded as the demo seeds it: DynamoDB Local tables backed up into a file store by
scheduled ticks (``run --due --now``) across two days with a gap (an RPO breach), verified; plus a
restore-drill record, a failed verification, a legal hold and an open alert written in the shapes
the scheduler and alerting write them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from tools.headless import Page
from tools.sample_data import ORDERS_TABLE_SCHEMA, seed

from conftest import REGION, unique
from helpers import cli, cli_json

pytestmark = pytest.mark.emulator

TICKS = {  # dataset -> times of the scheduled ticks that ran (hourly schedule)
    "orders": ["2026-03-01T08:05:00Z", "2026-03-01T09:05:00Z", "2026-03-01T10:05:00Z",
               "2026-03-01T16:05:00Z", "2026-03-01T17:05:00Z"],  # 10:00 -> 16:00: RPO breached
    "carts": ["2026-03-01T09:05:00Z", "2026-03-01T17:05:00Z"],
}
NOW = "2026-03-01T17:30:00Z"


@pytest.fixture
def history(ddb_resource: Any, tmp_path: Path, capsys: Any) -> dict[str, Any]:
    tables = {}
    for name, count in (("orders", 120), ("carts", 40)):
        table = unique(name)
        handle = ddb_resource.create_table(TableName=table, **ORDERS_TABLE_SCHEMA)
        handle.wait_until_exists()
        seed(handle, count)
        tables[name] = table
    policy = {
        "version": 1,
        "stores": {"vault": {"type": "file", "path": str(tmp_path / "vault")}},
        "tiers": {"critical": {"schedule": "0 * * * *", "rpo": "90m",
                               "retention": {"hourly": 24, "daily": 7}}},
        "datasets": {name: {"source": {"type": "dynamodb", "table": table, "region": REGION},
                            "tier": "critical", "store": "vault", "offset": "0m"}
                     for name, table in tables.items()},
    }
    path = tmp_path / "cloudkeep.yaml"
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    for name, times in TICKS.items():
        for at in times:
            code, _, err = cli(capsys, "--policy", str(path), "run", name, "--due", "--now", at)
            assert code == 0, err
    for name in TICKS:
        code, _, err = cli(capsys, "--policy", str(path), "verify", f"{name}@latest")
        assert code == 0, err
    for record in (tmp_path / "vault").glob("*/verifications/*/*.json"):  # as if verified at 17:20
        data = json.loads(record.read_text())
        data.update(started_at="2026-03-01T17:20:00+00:00", finished_at="2026-03-01T17:20:01+00:00")
        record.unlink()
        (record.parent / "20260301T172000Z.json").write_text(json.dumps(data))
    # Tighter retention from now on: the report shows what prune would do with it.
    policy["tiers"]["critical"]["retention"] = {"hourly": 3, "daily": 7}
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    vault = tmp_path / "vault"
    orders = cli_json(capsys, "--policy", str(path), "list", "orders")
    first = orders[0]["snapshot_id"]
    # A restore drill (issue 6's record shape) and a failed check of the first snapshot.
    drill_dir = vault / "orders" / "verifications" / orders[-2]["snapshot_id"]
    drill_dir.mkdir(parents=True)
    (drill_dir / "20260301T163000Z.json").write_text(json.dumps({
        "dataset": "orders", "snapshot_id": orders[-2]["snapshot_id"], "level": "drill", "ok": True,
        "started_at": "2026-03-01T16:30:00+00:00", "finished_at": "2026-03-01T16:31:12+00:00",
        "problems": [], "restore_seconds": 72.4, "rto_met": True}))
    bad_dir = vault / "orders" / "verifications" / first
    bad_dir.mkdir(parents=True)
    (bad_dir / "20260301T083000Z.json").write_text(json.dumps({
        "dataset": "orders", "snapshot_id": first, "level": "integrity", "ok": False,
        "started_at": "2026-03-01T08:30:00+00:00", "finished_at": "2026-03-01T08:30:02+00:00",
        "problems": [{"part": "p", "check": "sha256", "message": "differs"}]}))
    code, _, err = cli(capsys, "--policy", str(path), "hold", "add", f"orders@{first}",
                       "--reason", "case 42")
    assert code == 0, err
    (vault / "carts" / "alerts").mkdir(parents=True)
    (vault / "carts" / "alerts" / "state.json").write_text(json.dumps({"open": [
        {"kind": "rpo", "since": "2026-03-01T10:35:00Z", "message": "carts is 8h old (RPO 90m)"}]}))
    return {"policy": str(path), "orders": orders, "vault": vault}


def test_report_json_summarises_every_dataset(history: dict[str, Any], capsys: Any) -> None:
    data = cli_json(capsys, "--policy", history["policy"], "report", "--now", NOW)
    rows = {r["dataset"]: r for r in data["datasets"]}
    assert set(rows) == {"orders", "carts"}
    orders, carts = rows["orders"], rows["carts"]
    assert orders["snapshot_count"] == 5 and carts["snapshot_count"] == 2
    assert orders["newest_snapshot"] == history["orders"][-1]["snapshot_id"]
    assert orders["stored_bytes"] == sum(r["bytes_stored"] for r in history["orders"])
    assert orders["rpo_met"] is True  # the 17:00 snapshot, taken just now
    assert orders["last_drill"]["restore_seconds"] == 72.4 and orders["last_drill"]["rto_met"] is True
    assert orders["last_verification"]["level"] == "integrity" and orders["last_verification"]["ok"]
    # Captured 10:05 -> 16:05 (each tick ran at :05, under the replayed clock) with a 90m RPO:
    # breached from 11:35 to 16:05; carts from 10:35 to 17:05.
    assert [(b["from"][11:16], b["to"][11:16]) for b in orders["rpo_breaches"]] == [("11:35", "16:05")]
    assert [(b["from"][11:16], b["to"][11:16]) for b in carts["rpo_breaches"]] == [("10:35", "17:05")]
    assert all(s["captured_at"][11:16] == s["slot"][11:14] + "05" for s in orders["snapshots"])
    # hourly 3 keeps 17, 16, 10; daily keeps 17 too; the held 08:00 stays; 09:00 goes.
    assert [s[9:13] for s in orders["retention"]["remove"]] == ["0900"]
    assert orders["holds"][0]["reason"] == "case 42"
    assert [s["verified"] for s in orders["snapshots"]] == [False, None, None, True, True]
    assert carts["alerts_open"][0]["kind"] == "rpo" and carts["status"] == "critical"
    assert orders["alerts_open"] == []


def test_report_table_names_every_dataset_and_what_needs_attention(history: dict[str, Any],
                                                                   capsys: Any) -> None:
    code, out, err = cli(capsys, "--policy", history["policy"], "report", "--now", NOW)
    assert code == 0, err
    assert "orders" in out and "carts" in out
    assert "carts: 1 alert(s) open" in out
    assert "\x1b[" not in out  # not a terminal: no colour codes


def test_report_flags_a_stale_dataset(history: dict[str, Any], capsys: Any) -> None:
    data = cli_json(capsys, "--policy", history["policy"], "report", "orders", "--now",
                    "2026-03-02T09:00:00Z")
    [orders] = data["datasets"]
    assert orders["rpo_met"] is False and orders["status"] == "critical"
    assert orders["rpo_breaches"][-1]["to"] is None  # still open
    assert any("older than the RPO" in reason for reason in orders["attention"])


def test_report_html_renders_in_headless_chromium(history: dict[str, Any], capsys: Any,
                                                  tmp_path: Path) -> None:
    html = tmp_path / "report.html"
    code, out, err = cli(capsys, "--policy", history["policy"], "report", "--now", NOW,
                         "--output", str(html))
    assert code == 0, err
    assert f"wrote {html}" in out
    text = html.read_text()
    # Self-contained: nothing is fetched from anywhere (the SVG namespace is a name, not a fetch).
    assert not re.search(r"""(src|href)=["'](?!#|data:)""", text), "external reference in the HTML"
    assert "<script" not in text and "@import" not in text and "url(" not in text
    shot = tmp_path / "report.png"
    with Page() as page:
        page.open(html)
        shown = page.evaluate(
            "[...document.querySelectorAll('section.dataset')].map(s => ({name: s.dataset.dataset,"
            " visible: s.getBoundingClientRect().height > 100,"
            " snapshots: s.querySelectorAll('svg.timeline circle.snapshot').length,"
            " checks: s.querySelectorAll('svg.timeline .check').length,"
            " drills: s.querySelectorAll('svg.timeline .drill').length,"
            " breaches: s.querySelectorAll('svg.timeline rect.breach').length,"
            " bars: s.querySelectorAll('svg.sizes rect.size').length}))")
        summary = page.evaluate("[...document.querySelectorAll('#summary tr[data-dataset]')]"
                                ".map(r => r.dataset.dataset)")
        page.screenshot(shot)
        errors = list(page.errors)
    print(f"report screenshot: {shot}")
    assert errors == []
    assert summary == ["carts", "orders"]
    by_name = {s["name"]: s for s in shown}
    assert set(by_name) == {"orders", "carts"} and all(s["visible"] for s in shown)
    assert by_name["orders"] == {"name": "orders", "visible": True, "snapshots": 5, "checks": 3,
                                 "drills": 1, "breaches": 1, "bars": 5}
    assert by_name["carts"]["snapshots"] == 2 and by_name["carts"]["breaches"] == 1
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


def test_report_names_an_unreadable_store_and_still_reports_the_rest(history: dict[str, Any],
                                                                      capsys: Any,
                                                                      tmp_path: Path) -> None:
    policy = yaml.safe_load(Path(history["policy"]).read_text())
    policy["stores"]["gone"] = {"type": "s3", "bucket": "no-such-bucket-here", "region": REGION,
                                "endpoint_url": "http://127.0.0.1:9"}
    policy["datasets"]["lost"] = {**policy["datasets"]["carts"], "store": "gone"}
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(policy))
    code, out, _ = cli(capsys, "--policy", str(path), "--format", "json", "report", "--now", NOW)
    rows = {r["dataset"]: r for r in json.loads(out)["datasets"]}
    assert code == 3
    assert rows["lost"]["status"] == "error" and rows["lost"]["error"]
    assert rows["orders"]["snapshot_count"] == 5
