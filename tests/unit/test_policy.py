"""Policy v1: models, loading, durations, schedules, and what `cloudkeep validate` tells the user.

The bad-policy table runs the real console script in a subprocess: exit code 2, every problem
named with ``file:line: field.path: what``, and never a traceback.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from cloudkeep.errors import PolicyError, UsageError
from cloudkeep.policy import (
    DEFAULT_POLICY_FILE,
    MAX_DURATION,
    POLICY_ENV,
    DynamoDBSourceSpec,
    FileStoreSpec,
    S3StoreSpec,
    format_duration,
    load_policy,
    parse_duration,
    parse_policy,
    resolve_policy_path,
    validate_schedule,
)

CLI = Path(sys.executable).with_name("cloudkeep")
FILE = "cloudkeep.yaml"

# Block style, one key a line, so every field has its own line number.
BASE = """\
version: 1
stores:
  vault:
    type: s3
    bucket: acme-backups
    prefix: cloudkeep
    region: eu-west-1
  local:
    type: file
    path: ./backups
tiers:
  critical:
    schedule: "0 * * * *"
    rpo: 1h
    retention:
      hourly: 24
      daily: 14
  standard:
    schedule: "0 2 * * *"
    rpo: 26h
    retention:
      daily: 7
      weekly: 4
datasets:
  orders:
    source:
      type: dynamodb
      table: orders
      region: eu-west-1
      segments: 4
    tier: critical
    store: vault
  profiles:
    source:
      type: dynamodb
      table: profiles
      region: eu-west-1
    tier: standard
    store: local
"""

FULL = """\
version: 1
timezone: Europe/Paris
stores:
  vault:
    type: s3
    bucket: acme-backups
    prefix: /cloudkeep/
    region: eu-west-1
    endpoint_url: http://localhost:4566
  local: {type: file, path: backups}
  abs: {type: file, path: /var/backups/cloudkeep}
tiers:
  critical:
    schedule: "*/15 * * * *"
    rpo: 90m
    retention: {last: 3, hourly: 24, daily: 14, weekly: 8, monthly: 12, yearly: 2}
  standard:
    schedule: rate(1 day)
    rpo: 26h
    retention: {daily: 7, weekly: 4, monthly: 6}
  archive:
    schedule: "30 3 * * sun"
    rpo: 2w
    retention: {monthly: 12, yearly: 5}
datasets:
  orders:
    source: {type: dynamodb, table: orders, region: eu-west-1, segments: 8, consistent_read: true}
    tier: critical
    store: vault
  profiles:
    source: {type: dynamodb, table: user.profiles-v2, region: us-east-1}
    tier: standard
    store: local
  audit-log.2024:
    source: {type: dynamodb, table: audit_log, region: eu-central-1}
    tier: archive
    store: abs
"""


def edit(text: str, old: str, new: str) -> str:
    """Replace the one occurrence of ``old`` (fails loudly if the base text drifted)."""
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times"
    return text.replace(old, new)


def line_of(text: str, needle: str) -> int:
    """1-based number of the one line containing ``needle``."""
    hits = [i for i, line in enumerate(text.splitlines(), 1) if needle in line]
    assert len(hits) == 1, f"{needle!r} is on lines {hits}"
    return hits[0]


def cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CLI.exists(), f"console script not found next to {sys.executable}"
    return subprocess.run([str(CLI), *args], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1"})


def validate(tmp_path: Path, text: str | None, *extra: str) -> subprocess.CompletedProcess[str]:
    if text is not None:
        (tmp_path / FILE).write_text(text, encoding="utf-8")
    return cli(tmp_path, *extra, "--policy", FILE, "validate")


def assert_no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stdout
    assert "Traceback" not in result.stderr


# --------------------------------------------------------------------------------------------
# parse_policy / load_policy


def test_base_policy_of_the_table_is_valid(tmp_path: Path) -> None:
    parse_policy(BASE)
    result = validate(tmp_path, BASE)
    assert result.returncode == 0, result.stderr
    assert "OK — 2 dataset(s), 2 tier(s), 2 store(s)" in result.stdout
    assert_no_traceback(result)


def test_full_policy_parses(tmp_path: Path) -> None:
    folder = tmp_path / "conf"
    folder.mkdir()
    (folder / FILE).write_text(FULL)
    loaded = load_policy(str(folder / FILE))
    policy = loaded.policy
    assert loaded.source == str(folder / FILE)
    assert policy.version == 1
    assert policy.timezone == "Europe/Paris"

    vault = policy.stores["vault"]
    assert isinstance(vault, S3StoreSpec)
    assert (vault.bucket, vault.prefix, vault.region) == ("acme-backups", "cloudkeep", "eu-west-1")
    assert vault.endpoint_url == "http://localhost:4566"
    assert isinstance(policy.stores["local"], FileStoreSpec)
    assert policy.stores["abs"].path == "/var/backups/cloudkeep"  # type: ignore[union-attr]

    assert set(policy.tiers) == {"critical", "standard", "archive"}
    critical = policy.tiers["critical"]
    assert critical.schedule == "*/15 * * * *"
    assert critical.rpo == timedelta(minutes=90)
    assert critical.retention.model_dump() == {
        "last": 3, "hourly": 24, "daily": 14, "weekly": 8, "monthly": 12, "yearly": 2, "within": None,
        "within_hourly": None, "within_daily": None, "within_weekly": None, "within_monthly": None,
        "within_yearly": None,
    }
    assert policy.tiers["standard"].schedule == "rate(1 day)"
    assert policy.tiers["standard"].rpo == timedelta(hours=26)
    assert policy.tiers["standard"].retention.hourly is None
    assert policy.tiers["archive"].rpo == timedelta(weeks=2)

    assert set(policy.datasets) == {"orders", "profiles", "audit-log.2024"}
    orders = policy.dataset("orders")
    assert isinstance(orders.source, DynamoDBSourceSpec)
    assert (orders.source.table, orders.source.region) == ("orders", "eu-west-1")
    assert orders.source.segments == 8
    assert orders.source.consistent_read is True
    assert (orders.tier, orders.store) == ("critical", "vault")
    profiles = policy.dataset("profiles")
    assert profiles.source.segments is None
    assert profiles.source.consistent_read is False
    assert policy.dataset("audit-log.2024").store == "abs"


def test_minimal_policy_takes_defaults() -> None:
    policy = parse_policy(
        "version: 1\nstores: {s: {type: s3, bucket: b-1, region: r}}\ntiers: {}\ndatasets: {}\n"
    )
    assert policy.timezone == "UTC"
    store = policy.stores["s"]
    assert isinstance(store, S3StoreSpec)
    assert (store.prefix, store.endpoint_url) == ("", None)
    assert policy.datasets == {}


def test_models_are_frozen() -> None:
    policy = parse_policy(FULL, base_dir=Path("/srv"))
    targets = [
        (policy, "version", 2),
        (policy.stores["vault"], "bucket", "other"),
        (policy.stores["local"], "path", "/elsewhere"),
        (policy.tiers["critical"], "rpo", timedelta(hours=1)),
        (policy.tiers["critical"].retention, "daily", 1),
        (policy.datasets["orders"], "tier", "standard"),
        (policy.datasets["orders"].source, "segments", 1),
    ]
    for model, attr, value in targets:
        with pytest.raises(ValidationError, match="frozen"):
            setattr(model, attr, value)


def test_file_store_path_is_relative_to_the_policy_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "etc" / "cloudkeep"
    folder.mkdir(parents=True)
    (folder / FILE).write_text(FULL)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the folder of the policy counts, not the working directory

    policy = load_policy(str(folder / FILE)).policy
    assert policy.stores["local"].path == str(folder / "backups")  # type: ignore[union-attr]
    assert policy.stores["abs"].path == "/var/backups/cloudkeep"  # type: ignore[union-attr]

    # A relative --policy path resolves the same way.
    rel = load_policy("../etc/cloudkeep/" + FILE).policy
    assert rel.stores["local"].path == str(folder / "backups")  # type: ignore[union-attr]


def test_file_store_path_expands_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    policy = parse_policy(edit(FULL, "path: backups", "path: ~/backups"), base_dir=Path("/srv"))
    assert policy.stores["local"].path == str(tmp_path / "home" / "backups")  # type: ignore[union-attr]


def test_parse_policy_resolves_against_base_dir_or_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = parse_policy(FULL, base_dir=Path("/srv/conf"))
    assert policy.stores["local"].path == "/srv/conf/backups"  # type: ignore[union-attr]
    monkeypatch.chdir(tmp_path)
    policy = parse_policy(FULL)
    assert policy.stores["local"].path == str(tmp_path / "backups")  # type: ignore[union-attr]


def test_parse_policy_reports_every_problem_in_line_order() -> None:
    text = edit(edit(BASE, "tier: critical", "tier: gold"), "rpo: 26h", "rpo: soon")
    with pytest.raises(PolicyError) as info:
        parse_policy(text, source="p.yaml")
    assert info.value.exit_code == 2
    assert info.value.source == "p.yaml"
    assert info.value.problems == [
        "p.yaml:20: tiers.standard.rpo: bad duration 'soon' (use e.g. 90m, 26h, 7d, 2w or 1h30m)",
        "p.yaml:31: datasets.orders.tier: unknown tier 'gold' (known: critical, standard)",
    ]
    assert str(info.value).startswith("invalid policy p.yaml:\n  p.yaml:20: ")


def test_no_reference_errors_against_a_section_that_is_itself_broken() -> None:
    """A missing or malformed `tiers`/`stores` is reported once, not as N unknown references."""
    text = BASE.replace("tiers:\n", "tiers: [critical, standard]\nx_tiers:\n")
    with pytest.raises(PolicyError) as info:
        parse_policy(text, source="p.yaml")
    joined = "\n".join(info.value.problems)
    assert "p.yaml:11: tiers: expected a mapping, got a list" in joined
    assert "unknown tier" not in joined


def test_empty_sections_still_report_unknown_references() -> None:
    text = "version: 1\nstores: {}\ntiers: {}\ndatasets:\n  a:\n    source: {type: dynamodb, table: abc, region: r}\n    tier: t\n    store: s\n"
    with pytest.raises(PolicyError) as info:
        parse_policy(text, source="p.yaml")
    assert info.value.problems == [
        "p.yaml:7: datasets.a.tier: unknown tier 't' (known: none defined)",
        "p.yaml:8: datasets.a.store: unknown store 's' (known: none defined)",
    ]


def test_unknown_dataset_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match=r"unknown dataset 'nope' \(known: orders, profiles\)"):
        parse_policy(BASE).dataset("nope")


def test_load_policy_errors_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="policy file not found"):
        load_policy(str(tmp_path / "missing.yaml"))
    with pytest.raises(UsageError, match="cannot read policy file"):
        load_policy(str(tmp_path))
    (tmp_path / "latin1.yaml").write_bytes(b"version: 1\n# caf\xe9\n")
    with pytest.raises(UsageError, match="cannot read policy file"):
        load_policy(str(tmp_path / "latin1.yaml"))
    with pytest.raises(UsageError, match=r"cannot read a policy from ftp://"):
        load_policy("ftp://host/cloudkeep.yaml")
    with pytest.raises(UsageError, match=r"expected az://ACCOUNT/CONTAINER/KEY"):
        load_policy("az://account/cloudkeep.yaml")
    with pytest.raises(UsageError, match=r"expected s3://BUCKET/KEY"):
        load_policy("s3://just-a-bucket")


def test_resolve_policy_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(POLICY_ENV, raising=False)
    with pytest.raises(UsageError, match="no policy file"):
        resolve_policy_path(None)
    monkeypatch.setenv(POLICY_ENV, "/etc/from-env.yaml")
    assert resolve_policy_path(None) == "/etc/from-env.yaml"
    (tmp_path / DEFAULT_POLICY_FILE).write_text(BASE)
    assert resolve_policy_path(None) == DEFAULT_POLICY_FILE
    assert resolve_policy_path("explicit.yaml") == "explicit.yaml"


# --------------------------------------------------------------------------------------------
# Durations


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90m", timedelta(minutes=90)),
        ("26h", timedelta(hours=26)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1d12h", timedelta(days=1, hours=12)),
        ("45s", timedelta(seconds=45)),
        ("0h30m", timedelta(minutes=30)),
        (" 90m ", timedelta(minutes=90)),
        (timedelta(hours=3), timedelta(hours=3)),
    ],
)
def test_parse_duration_ok(text: object, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0m", "must be longer than zero"),
        ("0d0h", "must be longer than zero"),
        ("10x", "bad duration '10x'"),
        ("", "bad duration ''"),
        ("   ", "bad duration"),
        ("-1h", "bad duration '-1h'"),
        ("30m1h", "bad duration '30m1h'"),  # largest unit first
        ("1.5h", "bad duration '1.5h'"),
        ("90M", "bad duration '90M'"),
        ("h", "bad duration 'h'"),
        ("90", "bad duration '90'"),
        ("9999999999d", "is too long"),
        (5, "expected a duration such as 90m, 26h or 7d, got 5"),
        (None, "expected a duration"),
        (True, "expected a duration"),
        (timedelta(0), "must be longer than zero"),
        (timedelta(hours=-1), "must be longer than zero"),
    ],
)
def test_parse_duration_bad(text: object, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(text)
    assert message in str(info.value)


def test_format_duration_examples() -> None:
    assert format_duration(timedelta(minutes=90)) == "1h30m"
    assert format_duration(timedelta(hours=26)) == "1d2h"
    assert format_duration(timedelta(weeks=2)) == "14d"
    assert format_duration(timedelta(seconds=45)) == "45s"


UNITS = {"w": timedelta(weeks=1), "d": timedelta(days=1), "h": timedelta(hours=1),
         "m": timedelta(minutes=1), "s": timedelta(seconds=1)}


@given(n=st.integers(min_value=1, max_value=10**7), unit=st.sampled_from(sorted(UNITS)))
def test_duration_property(n: int, unit: str) -> None:
    if n * UNITS[unit] > MAX_DURATION:  # bounded: dates computed from it stay representable
        with pytest.raises(ValueError, match="too long"):
            parse_duration(f"{n}{unit}")
        return
    value = parse_duration(f"{n}{unit}")
    assert value == n * UNITS[unit]
    assert parse_duration(format_duration(value)) == value


@given(seconds=st.integers(min_value=1, max_value=int(MAX_DURATION.total_seconds())))
def test_format_duration_round_trips(seconds: int) -> None:
    value = timedelta(seconds=seconds)
    text = format_duration(value)
    assert parse_duration(text) == value
    assert format_duration(parse_duration(text)) == text


# --------------------------------------------------------------------------------------------
# Schedules


@pytest.mark.parametrize(
    "expr",
    [
        "0 * * * *",
        "*/15 * * * *",
        "0 2 * * *",
        "30 3 * * sun",
        "0 9-17 * * mon-fri",
        "5,35 */2 1,15 jan-jun *",
        "0 0 29 2 *",  # fires in leap years
        "rate(1 minute)",
        "rate(15 minutes)",
        "rate(1 hour)",
        "rate(2 hours)",
        "rate(1 day)",
        "rate(7 days)",
    ],
)
def test_validate_schedule_ok(expr: str) -> None:
    assert validate_schedule(expr) == expr
    assert validate_schedule(f"  {expr} ") == expr


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("0 * * * * *", "bad cron expression '0 * * * * *': expected 5 fields (minute hour day month weekday), got 6"),
        ("0 * * *", "expected 5 fields (minute hour day month weekday), got 4"),
        ("61 * * * *", "bad cron expression '61 * * * *': bad minute field '61' (allowed: 0-59)"),
        ("0 24 * * *", "bad hour field '24' (allowed: 0-23)"),
        ("0 0 32 * *", "bad day-of-month field '32'"),
        ("0 0 * 13 *", "bad month field '13'"),
        ("0 0 * * 8", "bad day-of-week field '8'"),
        ("*/0 * * * *", "bad minute field '*/0'"),
        ("0 0 31 2 *", "bad cron expression '0 0 31 2 *': it never fires"),
        ("@hourly", "expected 5 fields"),
        ("", "expected 5 fields (minute hour day month weekday), got 0"),
        ("every day at noon", "bad cron expression 'every day at noon'"),
        ("rate(0 minutes)", "bad rate expression 'rate(0 minutes)': the interval must be at least 1"),
        ("rate(1 minutes)", "bad rate expression 'rate(1 minutes)': use the singular unit for 1"),
        ("rate(2 hour)", "use the singular unit for 1 and the plural otherwise"),
        ("rate(5 weeks)", "bad rate expression 'rate(5 weeks)' (use e.g. rate(15 minutes), rate(1 hour))"),
        ("rate(-5 minutes)", "bad rate expression"),
        ("rate(15minutes)", "bad rate expression"),
        ("rate 15 minutes", "bad rate expression"),
        (15, "expected a cron expression or rate(...), got 15"),
        (None, "expected a cron expression or rate(...), got None"),
    ],
)
def test_validate_schedule_bad(expr: object, message: str) -> None:
    with pytest.raises(ValueError) as info:
        validate_schedule(expr)
    assert message in str(info.value)


# --------------------------------------------------------------------------------------------
# `cloudkeep validate` on bad policies (real CLI, subprocess)


@dataclass
class Bad:
    """A bad policy and what `validate` must say: (line needle or None, "field.path: message")."""

    text: str
    expected: list[tuple[str | None, str]]
    absent: list[str] = field(default_factory=list)


def bad(old: str, new: str, *expected: tuple[str | None, str], absent: tuple[str, ...] = ()) -> Bad:
    return Bad(edit(BASE, old, new), list(expected), list(absent))


BAD_POLICIES: dict[str, Bad] = {
    # wrong types
    "segments-not-a-number": bad(
        "segments: 4", "segments: four",
        ("segments: four", "datasets.orders.source.segments: expected a whole number, got 'four'")),
    "segments-bool": bad(
        "segments: 4", "segments: true",
        ("segments: true", "datasets.orders.source.segments: expected a whole number, got true")),
    "segments-quoted-number": bad(
        "segments: 4", "segments: '4'",
        ("segments: '4'", "datasets.orders.source.segments: expected a whole number, got '4'")),
    "segments-zero": bad(
        "segments: 4", "segments: 0",
        ("segments: 0", "datasets.orders.source.segments: must be at least 1, got 0")),
    "consistent-read-maybe": bad(
        "segments: 4", "segments: 4\n      consistent_read: maybe",
        ("consistent_read", "datasets.orders.source.consistent_read: expected true or false, got 'maybe'")),
    "consistent-read-number": bad(
        "segments: 4", "segments: 4\n      consistent_read: 1",
        ("consistent_read", "datasets.orders.source.consistent_read: expected true or false, got 1")),
    "retention-negative": bad(
        "daily: 14", "daily: -1",
        ("daily: -1", "tiers.critical.retention.daily: must be at least 0, got -1")),
    "retention-fraction": bad(
        "weekly: 4", "weekly: 4.5",
        ("weekly: 4.5", "tiers.standard.retention.weekly: expected a whole number, got 4.5")),
    "retention-bool": bad(
        "hourly: 24", "hourly: yes",
        ("hourly: yes", "tiers.critical.retention.hourly: expected a whole number, got true")),
    "retention-not-a-mapping": bad(
        "    retention:\n      daily: 7\n      weekly: 4\n", "    retention: [7, 4]\n",
        ("retention: [7, 4]", "tiers.standard.retention: expected a mapping, got a list")),
    "tier-not-a-string": bad(
        "tier: critical", "tier: 5",
        ("tier: 5", "datasets.orders.tier: expected a string, got 5")),
    "dataset-null": bad(
        "  profiles:\n    source:\n      type: dynamodb\n      table: profiles\n      region: eu-west-1\n"
        "    tier: standard\n    store: local\n", "  profiles:\n",
        ("profiles:", "datasets.profiles: expected a mapping, got null")),
    "source-a-string": bad(
        "    source:\n      type: dynamodb\n      table: profiles\n      region: eu-west-1\n",
        "    source: profiles\n",
        ("source: profiles", "datasets.profiles.source: expected a mapping, got 'profiles'")),
    "stores-a-list": bad(
        "stores:\n", "stores: [vault, local]\nold_stores:\n",
        ("stores: [vault", "stores: expected a mapping, got a list"),
        ("old_stores:", "old_stores: unknown key 'old_stores'"),
        absent=("unknown store",)),
    "name-not-a-string": bad(
        "  local:\n", "  1:\n",
        ("  1:", "stores.1: name 1 must be a string (quote it)"),
        ("store: local", "datasets.profiles.store: unknown store 'local' (known: 1, vault)")),
    # unknown keys, each named, with what is allowed there
    "unknown-key-top-level": bad(
        "version: 1\n", "version: 1\nowner: platform-team\n",
        ("owner:", "owner: unknown key 'owner' (allowed: alerts, datasets, encryption, keys, pricing, residency, signing, stores, tiers, timezone, version)")),
    "unknown-key-in-s3-store": bad(
        "    region: eu-west-1\n  local:", "    regoin: eu-west-1\n  local:",
        ("regoin", "stores.vault.regoin: unknown key 'regoin' "
                   "(allowed: bucket, endpoint_url, object_lock, prefix, region, type)"),
        ("  vault:", "stores.vault.region: required key is missing")),
    "unknown-key-in-file-store": bad(
        "    path: ./backups", "    path: ./backups\n    mode: 0700",
        ("mode: 0700", "stores.local.mode: unknown key 'mode' (allowed: path, type)")),
    "unknown-key-in-source": bad(
        "segments: 4", "segments: 4\n      index: by-date",
        ("index: by-date", "datasets.orders.source.index: unknown key 'index' "
                           "(allowed: consistent_read, method, region, segments, table, type)")),
    "unknown-key-in-tier": bad(
        '    schedule: "0 2 * * *"', '    schedule: "0 2 * * *"\n    owner: ops',
        ("owner:", "tiers.standard.owner: unknown key 'owner' (allowed: copy_to, encryption, immutability, min_copies, retention, rpo, rto, schedule, signing, transition, verify, window)")),
    "unknown-key-in-retention": bad(
        "      weekly: 4", "      weekly: 4\n      forever: 1",
        ("forever: 1", "tiers.standard.retention.forever: unknown key 'forever' "
                       "(allowed: daily, hourly, last, monthly, weekly, within, within_daily, "
                       "within_hourly, within_monthly, within_weekly, within_yearly, yearly)")),
    "unknown-key-in-dataset": bad(
        "    store: vault", "    store: vault\n    owner: bob",
        ("owner: bob", "datasets.orders.owner: unknown key 'owner' (allowed: copy_to, encryption, offset, signing, source, store, tier)")),
    # missing keys
    "missing-rpo": bad(
        "    rpo: 26h\n", "",
        ("  standard:", "tiers.standard.rpo: required key is missing")),
    "missing-table": bad(
        "      table: orders\n", "",
        (None, f"{FILE}:26: datasets.orders.source.table: required key is missing")),
    "missing-store-type": bad(
        "    type: file\n", "",
        ("  local:", "stores.local: required key 'type' is missing")),
    "missing-source-type": bad(
        "      type: dynamodb\n      table: orders\n", "      table: orders\n",
        (None, f"{FILE}:26: datasets.orders.source: required key 'type' is missing")),
    "missing-version": bad(
        "version: 1\n", "",
        (None, f"{FILE}:1: version: required key is missing")),
    "missing-datasets-section": Bad(
        BASE.split("datasets:")[0],
        [(None, f"{FILE}:1: datasets: required key is missing")]),
    # references
    "unknown-tier": bad(
        "tier: critical", "tier: gold",
        ("tier: gold", "datasets.orders.tier: unknown tier 'gold' (known: critical, standard)")),
    "unknown-store": bad(
        "store: local", "store: tape",
        ("store: tape", "datasets.profiles.store: unknown store 'tape' (known: local, vault)")),
    "bad-dataset-name": bad(
        "  profiles:", "  user profiles:",
        ("user profiles:", "datasets.user profiles: bad dataset name 'user profiles'")),
    # tagged unions
    "unknown-store-type": bad(
        "    type: file", "    type: ftp",
        ("  local:", "stores.local: unknown store type 'ftp' (known: file, s3, gcs, azure_blob)")),
    "unknown-source-type": bad(
        "      type: dynamodb\n      table: orders", "      type: mongodb\n      table: orders",
        (None, f"{FILE}:26: datasets.orders.source: unknown source type 'mongodb' (known: dynamodb, firestore, cosmos, s3, rds)")),
    # field values
    "bad-cron-six-fields": bad(
        '"0 * * * *"', '"0 * * * * *"',
        ("0 * * * * *", "tiers.critical.schedule: bad cron expression '0 * * * * *': "
                        "expected 5 fields (minute hour day month weekday), got 6")),
    "bad-cron-range": bad(
        '"0 * * * *"', '"61 * * * *"',
        ("61 * * * *", "tiers.critical.schedule: bad cron expression '61 * * * *': "
                       "bad minute field '61' (allowed: 0-59)")),
    "cron-never-fires": bad(
        '"0 2 * * *"', '"0 2 30 2 *"',
        ("0 2 30 2 *", "tiers.standard.schedule: bad cron expression '0 2 30 2 *': it never fires")),
    "bad-rate-weeks": bad(
        '"0 2 * * *"', "rate(5 weeks)",
        ("rate(5 weeks)", "tiers.standard.schedule: bad rate expression 'rate(5 weeks)'")),
    "bad-rate-zero": bad(
        '"0 2 * * *"', "rate(0 minutes)",
        ("rate(0 minutes)", "tiers.standard.schedule: bad rate expression 'rate(0 minutes)': "
                            "the interval must be at least 1")),
    "bad-rate-plural": bad(
        '"0 2 * * *"', "rate(1 minutes)",
        ("rate(1 minutes)", "tiers.standard.schedule: bad rate expression 'rate(1 minutes)': "
                            "use the singular unit for 1 and the plural otherwise")),
    "bad-duration": bad(
        "rpo: 26h", "rpo: 26x",
        ("rpo: 26x", "tiers.standard.rpo: bad duration '26x' (use e.g. 90m, 26h, 7d, 2w or 1h30m)")),
    "zero-duration": bad(
        "rpo: 1h", "rpo: 0m",
        ("rpo: 0m", "tiers.critical.rpo: duration '0m' must be longer than zero")),
    "duration-a-number": bad(
        "rpo: 1h", "rpo: 60",
        ("rpo: 60", "tiers.critical.rpo: expected a duration such as 90m, 26h or 7d, got 60")),
    "unsupported-version": bad(
        "version: 1", "version: 2",
        ("version: 2", "version: unsupported policy version 2 (this cloudkeep reads version 1)")),
    "version-a-string": bad(
        "version: 1", "version: '1'",
        ("version:", "version: unsupported policy version '1' (this cloudkeep reads version 1)")),
    "version-a-bool": bad(
        "version: 1", "version: true",
        ("version:", "version: unsupported policy version true (this cloudkeep reads version 1)")),
    "bad-bucket": bad(
        "bucket: acme-backups", "bucket: Acme_Backups",
        ("Acme_Backups", "stores.vault.bucket: bad S3 bucket name 'Acme_Backups'")),
    "empty-file-path": bad(
        "path: ./backups", "path: ''",
        ("path: ''", "stores.local.path: must not be empty")),
    "short-table-name": bad(
        "table: orders", "table: ab",
        ("table: ab", "datasets.orders.source.table: 'ab' is too short (at least 3 characters)")),
    "unknown-timezone": bad(
        "version: 1\n", "version: 1\ntimezone: Mars/Olympus_Mons\n",
        ("timezone:", "timezone: unknown time zone 'Mars/Olympus_Mons' (use an IANA name such as Europe/Paris)")),
    # YAML problems
    "duplicate-key-top-level": bad(
        "datasets:\n", "tiers: {}\ndatasets:\n",
        (None, f"{FILE}:24:1: YAML syntax error: duplicate key 'tiers' (first defined at line 11)")),
    "duplicate-key-nested": bad(
        "      daily: 7\n", "      daily: 7\n      daily: 8\n",
        (None, f"{FILE}:23:7: YAML syntax error: duplicate key 'daily' (first defined at line 22)")),
}


@pytest.mark.parametrize("case", BAD_POLICIES.values(), ids=BAD_POLICIES.keys())
def test_validate_reports_bad_policy(tmp_path: Path, case: Bad) -> None:
    result = validate(tmp_path, case.text)
    assert result.returncode == 2, result.stdout + result.stderr
    assert_no_traceback(result)
    assert result.stdout == ""
    assert result.stderr.startswith(f"error: invalid policy {FILE}:\n"), result.stderr
    for needle, message in case.expected:
        expected = message if needle is None else f"{FILE}:{line_of(case.text, needle.rstrip())}: {message}"
        assert expected in result.stderr, f"missing {expected!r} in:\n{result.stderr}"
    for fragment in case.absent:
        assert fragment not in result.stderr, result.stderr
    with pytest.raises(PolicyError):  # and the library says the same as the CLI
        parse_policy(case.text, source=FILE)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("version: 1\nstores:\n  a: [1, 2\ntiers: {}\n",
                     f"{FILE}:4:6: YAML syntax error: while parsing a flow sequence (line 3): "
                     "expected ',' or ']', but got ':'", id="unclosed-flow-sequence"),
        pytest.param("version: 1\nstores: {}\ntiers:\n  a: {rpo: 1h\n\n\n",
                     f"{FILE}:4:6: YAML syntax error: while parsing a flow mapping: "
                     "expected ',' or '}', but got '<stream end>'", id="unclosed-at-end-of-file"),
        pytest.param('version: 1\nstores: {}\ntiers:\n  a:\n    schedule: "0 2 * * *\n    rpo: 1h\n',
                     f"{FILE}:5:15: YAML syntax error: while scanning a quoted scalar: "
                     "found unexpected end of stream", id="unclosed-quote"),
        pytest.param("version: 1\nstores: {}\n tiers: {}\n",
                     f"{FILE}:3:2: YAML syntax error: while parsing a block mapping (line 1): "
                     "expected <block end>", id="bad-indent"),
        pytest.param("version: 1\nstores: {}\ntiers:\n\ta: 1\n",
                     f"{FILE}:4:1: YAML syntax error: while scanning for the next token: "
                     "found character '\\t' that cannot start any token", id="tab"),
        pytest.param("version: 1\nstores: {}\ntiers:\n  a:\n    rpo: 1h: 2h\n",
                     f"{FILE}:5:12: YAML syntax error: mapping values are not allowed here",
                     id="colon-in-value"),
        pytest.param("version: 1\n---\nversion: 1\n",
                     f"{FILE}:2:1: YAML syntax error: expected a single document in the stream "
                     "(line 1), but found another document", id="two-documents"),
        pytest.param("version: 1\nstores: *vault\n",
                     f"{FILE}:2:9: YAML syntax error: found undefined alias 'vault'", id="bad-alias"),
        pytest.param("version: !!python/object/apply:os.system [ls]\n",
                     f"{FILE}:1:10: YAML syntax error: could not determine a constructor for the tag",
                     id="unsafe-tag"),
    ],
)
def test_validate_reports_yaml_syntax_errors_with_line_numbers(
    tmp_path: Path, text: str, expected: str
) -> None:
    result = validate(tmp_path, text)
    assert result.returncode == 2
    assert_no_traceback(result)
    assert expected in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("", "this file is empty", id="empty"),
        pytest.param("# just a comment\n\n", "this file is empty", id="only-comments"),
        pytest.param("- version: 1\n- stores: {}\n", "this file is a list", id="list"),
        pytest.param("cloudkeep\n", "this file is just 'cloudkeep'", id="scalar"),
    ],
)
def test_validate_rejects_a_file_that_is_not_a_mapping(tmp_path: Path, text: str, expected: str) -> None:
    result = validate(tmp_path, text)
    assert result.returncode == 2
    assert_no_traceback(result)
    assert (f"{FILE}: the policy must be a mapping with version, stores, tiers and datasets; "
            f"{expected}") in result.stderr


def test_validate_missing_policy_file(tmp_path: Path) -> None:
    result = cli(tmp_path, "--policy", "nope.yaml", "validate")
    assert result.returncode == 2
    assert_no_traceback(result)
    assert "policy file not found: nope.yaml" in result.stderr


def test_validate_without_any_policy(tmp_path: Path) -> None:
    result = cli(tmp_path, "validate")
    assert result.returncode == 2
    assert_no_traceback(result)
    assert "no policy file" in result.stderr


def test_validate_policy_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "dir.yaml").mkdir()
    result = cli(tmp_path, "--policy", "dir.yaml", "validate")
    assert result.returncode == 2
    assert_no_traceback(result)
    assert "cannot read policy file dir.yaml" in result.stderr


MANY_ERRORS = """\
version: 1
stores:
  vault:
    type: s3
    bucket: acme-backups
    regoin: eu-west-1
  tape:
    type: lto
tiers:
  critical:
    schedule: "0 * * * * *"
    rpo: 10x
    retention:
      hourly: -1
      forever: 3
  standard:
    schedule: rate(1 minutes)
    rpo: 26h
    retention: {daily: 7}
datasets:
  orders:
    source:
      type: dynamodb
      table: orders
      region: eu-west-1
      segments: four
      consistent_read: maybe
    tier: gold
    store: nowhere
  carts:
    source: {type: mongo, account: acme}
    tier: standard
owner: platform-team
"""

# Line numbers written out by hand against MANY_ERRORS above.
MANY_EXPECTED = [
    f"{FILE}:3: stores.vault.region: required key is missing",
    f"{FILE}:6: stores.vault.regoin: unknown key 'regoin' (allowed: bucket, endpoint_url, object_lock, prefix, region, type)",
    f"{FILE}:7: stores.tape: unknown store type 'lto' (known: file, s3, gcs, azure_blob)",
    f"{FILE}:11: tiers.critical.schedule: bad cron expression '0 * * * * *': expected 5 fields",
    f"{FILE}:12: tiers.critical.rpo: bad duration '10x'",
    f"{FILE}:14: tiers.critical.retention.hourly: must be at least 0, got -1",
    f"{FILE}:15: tiers.critical.retention.forever: unknown key 'forever'",
    f"{FILE}:17: tiers.standard.schedule: bad rate expression 'rate(1 minutes)'",
    f"{FILE}:26: datasets.orders.source.segments: expected a whole number, got 'four'",
    f"{FILE}:27: datasets.orders.source.consistent_read: expected true or false, got 'maybe'",
    f"{FILE}:28: datasets.orders.tier: unknown tier 'gold' (known: critical, standard)",
    f"{FILE}:29: datasets.orders.store: unknown store 'nowhere' (known: tape, vault)",
    f"{FILE}:30: datasets.carts.store: required key is missing",
    f"{FILE}:31: datasets.carts.source: unknown source type 'mongo' (known: dynamodb, firestore, cosmos, s3, rds)",
    f"{FILE}:33: owner: unknown key 'owner' (allowed: alerts, datasets, encryption, keys, pricing, residency, signing, stores, tiers, timezone, version)",
]


def test_validate_reports_every_error_in_one_run(tmp_path: Path) -> None:
    result = validate(tmp_path, MANY_ERRORS)
    assert result.returncode == 2
    assert_no_traceback(result)
    reported = [line.strip() for line in result.stderr.splitlines()[1:]]
    assert len(reported) == len(MANY_EXPECTED), result.stderr
    for line, expected in zip(reported, MANY_EXPECTED, strict=True):  # in file order
        assert line.startswith(expected), f"{line!r} does not start with {expected!r}"


def test_validate_json_on_a_bad_policy(tmp_path: Path) -> None:
    result = validate(tmp_path, MANY_ERRORS, "--format", "json")
    assert result.returncode == 2
    assert_no_traceback(result)
    data = json.loads(result.stdout)
    assert data["ok"] is False
    assert data["policy"] == FILE
    assert len(data["errors"]) == len(MANY_EXPECTED)
    for got, expected in zip(data["errors"], MANY_EXPECTED, strict=True):
        assert got.startswith(expected)


def test_validate_json_on_a_yaml_syntax_error(tmp_path: Path) -> None:
    result = validate(tmp_path, "version: 1\nstores: {a: 1\n", "--format", "json")
    assert result.returncode == 2
    assert_no_traceback(result)
    data = json.loads(result.stdout)
    assert data["ok"] is False
    assert len(data["errors"]) == 1
    assert data["errors"][0].startswith(f"{FILE}:2:")


def test_validate_json_on_a_good_policy(tmp_path: Path) -> None:
    result = validate(tmp_path, FULL, "--format", "json")
    assert result.returncode == 0, result.stderr
    assert_no_traceback(result)
    data = json.loads(result.stdout)
    warnings = data.pop("warnings")  # risky choices (tests/test_policy_schema.py): never errors
    assert all(set(w) == {"code", "path", "message"} for w in warnings)
    assert data == {
        "ok": True,
        "policy": FILE,
        "stores": ["abs", "local", "vault"],
        "tiers": ["archive", "critical", "standard"],
        "datasets": ["audit-log.2024", "orders", "profiles"],
    }


def test_validate_table_on_a_good_policy(tmp_path: Path) -> None:
    result = validate(tmp_path, FULL)
    assert result.returncode == 0, result.stderr
    first, *rest = result.stdout.strip().splitlines()
    assert first == f"{FILE}: OK — 3 dataset(s), 3 tier(s), 3 store(s)"
    assert all(line.startswith("warning: ") for line in rest)  # risky choices, not errors
    assert_no_traceback(result)
