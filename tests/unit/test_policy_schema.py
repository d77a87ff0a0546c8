"""The policy's JSON Schema and reference page are current, the schema agrees with the loader on
good and bad policies, and `validate` warns about risky (valid) choices without failing."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from cloudkeep.advice import retention_span, warnings
from cloudkeep.errors import PolicyError
from cloudkeep.policy import parse_policy
from cloudkeep.policy_doc import json_schema, reference_markdown
from helpers import cli

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "schemas" / "policy.schema.json"
REFERENCE = ROOT / "docs" / "policy-reference.md"

GOOD = {
    "version": 1,
    "timezone": "Europe/Paris",
    "stores": {"vault": {"type": "s3", "bucket": "acme-backups", "region": "eu-west-1",
                         "object_lock": {"mode": "COMPLIANCE"}},
               "local": {"type": "file", "path": "./backups"}},
    "tiers": {
        "critical": {"schedule": "0 * * * *", "rpo": "90m",
                     "retention": {"hourly": 24, "daily": 14}},
        "standard": {"schedule": "rate(1 day)", "rpo": "26h", "window": "01:00-05:00",
                     "retention": {"daily": 7, "weekly": 4}, "copy_to": ["local"]},
    },
    "datasets": {
        "orders": {"source": {"type": "dynamodb", "table": "orders", "region": "eu-west-1"},
                   "tier": "critical", "store": "vault", "offset": "0m"},
        "profiles": {"source": {"type": "firestore", "project": "acme", "collections": ["p"]},
                     "tier": "standard", "store": "vault"},
        "carts": {"source": {"type": "cosmos", "endpoint": "https://acme.documents.azure.com",
                             "database": "shop", "container": "carts"},
                  "tier": "standard", "store": "vault"},
    },
}


def _with(path: str, value: Any) -> dict[str, Any]:
    data = json.loads(json.dumps(GOOD))
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[key]
    node[last] = value
    return data


def test_schema_file_is_current() -> None:
    assert json.loads(SCHEMA.read_text()) == json_schema(), (
        "schemas/policy.schema.json is stale: run `make schema`")


def test_reference_page_is_current() -> None:
    assert REFERENCE.read_text() == reference_markdown(), (
        "docs/policy-reference.md is stale: run `make schema`")


def test_reference_documents_every_model_and_key() -> None:
    text = reference_markdown()
    schema = json_schema()
    for name, model in schema["$defs"].items():
        assert f"## {name}" in text
        for key in model.get("properties", {}):
            assert f"| `{key}` |" in text


def test_the_schema_accepts_a_good_policy() -> None:
    parse_policy(yaml.safe_dump(GOOD))  # the loader agrees it is good
    jsonschema.Draft202012Validator(json_schema()).validate(GOOD)


@pytest.mark.parametrize("path, value", [
    ("version", 2),
    ("stores.vault.type", "ftp"),
    ("stores.vault.object_lock", {"mode": "FOREVER"}),
    ("tiers.critical.rpo", "an hour"),
    ("tiers.critical.schedule", "every hour"),
    ("tiers.critical.surprise", 1),
    ("tiers.critical.retention.daily", -1),
    ("datasets.orders.source.table", "x"),
    ("datasets.orders.source.segments", 0),
    ("datasets.bad name", {"source": {"type": "dynamodb", "table": "abc", "region": "r"},
                           "tier": "critical", "store": "vault"}),
])
def test_the_schema_refuses_what_the_loader_refuses(path: str, value: Any) -> None:
    bad = _with(path, value)
    errors = list(jsonschema.Draft202012Validator(json_schema()).iter_errors(bad))
    assert errors, f"the schema accepts {path}={value!r}"
    with pytest.raises(PolicyError):
        parse_policy(yaml.safe_dump(bad))


def _policy(**tiers: dict[str, Any]) -> Any:
    data = _with("tiers", tiers)
    for dataset in data["datasets"].values():
        dataset["tier"] = next(iter(tiers))
    return parse_policy(yaml.safe_dump(data))


def _codes(policy: Any) -> dict[str, str]:
    return {w.code + ":" + w.path: w.message for w in warnings(policy)}


def test_rpo_shorter_than_the_schedule_interval_is_a_warning() -> None:
    policy = _policy(standard={"schedule": "0 2 * * *", "rpo": "12h", "retention": {"daily": 7}})
    codes = _codes(policy)
    assert "rpo-below-interval:tiers.standard.rpo" in codes
    assert "1d between runs" in codes["rpo-below-interval:tiers.standard.rpo"]
    ok = _policy(standard={"schedule": "0 2 * * *", "rpo": "26h", "retention": {"daily": 7}})
    assert not any(c.startswith("rpo-below-interval") for c in _codes(ok))


def test_retention_shorter_than_the_rpo_is_a_warning() -> None:
    short = _policy(standard={"schedule": "rate(15 minutes)", "rpo": "26h", "retention": {"last": 4}})
    assert "retention-below-rpo:tiers.standard.retention" in _codes(short)
    assert retention_span(short.tiers["standard"].retention, timedelta(minutes=15)) == timedelta(hours=1)
    assert retention_span(short.tiers["standard"].retention, timedelta(days=1)) == timedelta(days=4)
    long = _policy(standard={"schedule": "rate(15 minutes)", "rpo": "26h", "retention": {"daily": 2}})
    assert not any(c.startswith("retention-below-rpo") for c in _codes(long))


def test_a_critical_tier_without_a_drill_is_a_warning() -> None:
    named = _policy(critical={"schedule": "0 */6 * * *", "rpo": "7h", "retention": {"daily": 7}})
    assert "no-drill:tiers.critical" in _codes(named)
    tight = _policy(gold={"schedule": "*/15 * * * *", "rpo": "1h", "retention": {"daily": 7}})
    assert "no-drill:tiers.gold" in _codes(tight)
    relaxed = _policy(standard={"schedule": "0 2 * * *", "rpo": "26h", "retention": {"daily": 7}})
    assert not any(c.startswith("no-drill") for c in _codes(relaxed))


def test_no_encryption_is_a_warning_per_dataset() -> None:
    codes = _codes(parse_policy(yaml.safe_dump(GOOD)))
    assert {c for c in codes if c.startswith("no-encryption")} == {
        "no-encryption:datasets.carts", "no-encryption:datasets.orders",
        "no-encryption:datasets.profiles"}


def test_validate_prints_warnings_and_exits_zero(tmp_path: Path, capsys: Any) -> None:
    data = _with("tiers.standard.rpo", "2h")  # daily runs, 2h RPO
    path = tmp_path / "cloudkeep.yaml"
    path.write_text(yaml.safe_dump(data))
    code, out, err = cli(capsys, "--policy", str(path), "validate")
    assert code == 0, err
    assert "warning: tiers.standard.rpo: RPO 2h is shorter than the schedule's interval" in out
    assert "warning: datasets.orders: no encryption" in out
    assert "\x1b[" not in out
    code, out, _ = cli(capsys, "--policy", str(path), "validate", "--format", "json")
    assert code == 0
    report = json.loads(out)
    assert report["ok"] is True
    assert {(w["code"], w["path"]) for w in report["warnings"]} >= {
        ("rpo-below-interval", "tiers.standard.rpo"), ("no-encryption", "datasets.orders")}
    assert all(set(w) == {"code", "path", "message"} for w in report["warnings"])
