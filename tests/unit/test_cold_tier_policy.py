"""Cold tiers without an emulator: the policy's ``transition`` and ``pricing`` keys, the class a
snapshot of an age belongs in, the lifecycle plans per store, the price table and its
overrides, and ``validate``'s early-deletion warnings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from cloudkeep import advice, coldtiers, pricing
from cloudkeep.errors import PolicyError
from cloudkeep.policy import parse_policy
from cloudkeep.storageclass import Pricing, Transition, class_at, colder
from helpers import cli

NOW = datetime(2026, 12, 7, tzinfo=UTC)


def _policy(*, transition: Any = None, retention: Any = None, store: Any = None,
            extra: dict[str, Any] | None = None, copy: bool = False) -> str:
    tier: dict[str, Any] = {"schedule": "0 2 * * *", "rpo": "26h",
                            "retention": retention or {"daily": 30, "monthly": 24}}
    if transition is not None:
        tier["transition"] = transition
    stores = {"main": store or {"type": "s3", "bucket": "vault-one", "region": "us-east-1"},
              "az": {"type": "azure_blob", "container": "vault"},
              "disk": {"type": "file", "path": "/tmp/vault"}}
    if copy:
        tier["copy_to"] = ["disk"]
    doc = {"version": 1, "stores": stores, "tiers": {"gold": tier},
           "datasets": {"orders": {"source": {"type": "dynamodb", "table": "orders", "region": "us-east-1"},
                                   "tier": "gold", "store": "main"}},
           **(extra or {})}
    return yaml.safe_dump(doc, sort_keys=False)


def _codes(text: str) -> list[tuple[str, str]]:
    return [(w.code, w.path) for w in advice.warnings(parse_policy(text), NOW)
            if w.code in ("early-deletion", "store-has-no-classes", "lifecycle-refuses")]


@pytest.mark.parametrize(("transition", "needle"), [
    ([{"after": "90d", "to": "cold"}, {"after": "30d", "to": "archive"}], "must come later"),
    ([{"after": "30d", "to": "archive"}, {"after": "90d", "to": "cold"}], "is not colder than archive"),
    ([{"after": "30d", "to": "cold"}, {"after": "90d", "to": "cold"}], "is not colder than cold"),
    ([{"after": "30d", "to": "glacier"}], "transition.0.to"),
    ([{"after": "0d", "to": "cold"}], "transition.0.after"),
    ([{"after": "30d", "to": "cold", "class": "x"}], "unknown key 'class'"),
    ([{"after": "1d", "to": "cool"}, {"after": "2d", "to": "cold"}, {"after": "3d", "to": "archive"},
      {"after": "4d", "to": "archive"}], "transition"),
])
def test_bad_transitions_are_refused_with_the_field(transition: Any, needle: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(_policy(transition=transition))
    assert needle in str(caught.value)
    assert "tiers.gold.transition" in str(caught.value)


def test_transitions_parse_and_pick_the_class_of_an_age() -> None:
    policy = parse_policy(_policy(transition=[{"after": "30d", "to": "cold"},
                                              {"after": "180d", "to": "archive"}]))
    steps = policy.tiers["gold"].transition
    assert steps == [Transition(after=timedelta(days=30), to="cold"),
                     Transition(after=timedelta(days=180), to="archive")]
    assert class_at(steps, timedelta(days=29, hours=23)) is None
    assert class_at(steps, timedelta(days=30)) == "cold"
    assert class_at(steps, timedelta(days=179)) == "cold"
    assert class_at(steps, timedelta(days=400)) == "archive"
    assert colder("archive", "cold") and colder("cool", None) and not colder("cold", "cold")
    assert not colder(None, "cool")


def test_a_tier_without_transition_is_unchanged() -> None:
    assert parse_policy(_policy()).tiers["gold"].transition == []


def test_lifecycle_plans_per_store_with_days_rounded_up() -> None:
    policy = parse_policy(_policy(transition=[{"after": "36h", "to": "cool"},
                                              {"after": "90d", "to": "archive"}]))
    assert coldtiers.lifecycle_plans(policy, "main") == {
        "orders/snapshots/": [(2, "STANDARD_IA"), (90, "DEEP_ARCHIVE")]}
    assert coldtiers.lifecycle_plans(policy, "az") == {}  # no dataset there
    assert coldtiers.store_class_of(policy, "az", "cold") == "Cold"
    assert coldtiers.store_class_of(policy, "main", None) == "STANDARD"


def test_early_deletion_warnings() -> None:
    # daily 30 deletes at 30d what moved to GLACIER_IR (90 days minimum) at 10d
    assert _codes(_policy(transition=[{"after": "10d", "to": "cold"}],
                          retention={"daily": 30})) == [("early-deletion", "tiers.gold.retention")]
    # kept 2 years, moved at 30d: nothing to say
    assert _codes(_policy(transition=[{"after": "30d", "to": "cold"}],
                          retention={"daily": 30, "monthly": 24})) == []
    # the next transition moves parts out of STANDARD_IA (30 days) after 10 days
    assert ("early-deletion", "tiers.gold.transition[0]") in _codes(_policy(
        transition=[{"after": "30d", "to": "cool"}, {"after": "40d", "to": "archive"}],
        retention={"yearly": 10}))
    # deleted before the transition: no early deletion
    assert _codes(_policy(transition=[{"after": "60d", "to": "archive"}], retention={"daily": 30})) == []


@pytest.mark.parametrize(("retention", "deleted_at"), [
    ({"within": "2mo"}, "62d"),              # a calendar span (months, at most 31 days)
    ({"within": "45d"}, "45d"),
    ({"within_daily": "1mo15d"}, "46d"),     # a window rule with calendar units
    ({"within_weekly": "6w"}, "42d"),
    ({"last": 40}, "40d"),                   # daily runs: 40 of them
    ({"weekly": 6}, "42d"),
])
def test_early_deletion_warns_for_every_retention_form(retention: Any, deleted_at: str) -> None:
    """Archived at 30d into DEEP_ARCHIVE (180 days minimum), deleted at 40–60 days: warned,
    whatever form the rule takes; the message says when they are deleted."""
    text = _policy(transition=[{"after": "30d", "to": "archive"}], retention=retention)
    assert _codes(text) == [("early-deletion", "tiers.gold.retention")]
    [warning] = [w for w in advice.warnings(parse_policy(text), NOW) if w.code == "early-deletion"]
    assert f"deleted at about {deleted_at} old" in warning.message


@pytest.mark.parametrize("retention", [
    {"last": "unlimited"}, {"daily": "unlimited"}, {"within": "1y"}, {"within_monthly": "2y"},
    {"yearly": 3},
])
def test_no_early_deletion_for_rules_that_keep_past_the_minimum(retention: Any) -> None:
    assert _codes(_policy(transition=[{"after": "30d", "to": "archive"}], retention=retention)) == []


def test_s3_standard_ia_before_30_days_is_warned_about() -> None:
    assert ("lifecycle-refuses", "tiers.gold.transition[0]") in _codes(_policy(
        transition=[{"after": "7d", "to": "cool"}], retention={"yearly": 3}))
    assert _codes(_policy(transition=[{"after": "7d", "to": "cold"}], retention={"yearly": 3})) == []
    assert _codes(_policy(transition=[{"after": "30d", "to": "cool"}], retention={"yearly": 3})) == []


def test_a_store_without_classes_is_warned_about() -> None:
    assert _codes(_policy(transition=[{"after": "30d", "to": "cold"}], retention={"yearly": 3},
                          store={"type": "file", "path": "/tmp/v"})) == [
        ("store-has-no-classes", "datasets.orders.store")]
    assert ("store-has-no-classes", "datasets.orders.store") in _codes(_policy(
        transition=[{"after": "30d", "to": "cold"}], retention={"yearly": 3}, copy=True))


def test_validate_prints_the_warning(tmp_path: Path, capsys: Any) -> None:
    path = tmp_path / "cloudkeep.yaml"
    path.write_text(_policy(transition=[{"after": "10d", "to": "cold"}], retention={"daily": 30}))
    code, out, err = cli(capsys, "--policy", str(path), "validate")
    assert code == 0, err
    assert ("tiers.gold.retention: snapshots kept only by daily: 30 are deleted at about 30d old, "
            "20d after moving to cold (s3 GLACIER_IR), which is billed for at least 90 days") in out + err


def test_price_table_and_overrides() -> None:
    assert pricing.storage_price("s3", "STANDARD") == pytest.approx(0.023)
    assert pricing.storage_price("azure_blob", "Archive") == pytest.approx(0.00099)
    assert pricing.storage_price("s3", "NO_SUCH_CLASS") is None
    over = Pricing(storage_gb_month={"s3": {"STANDARD": 0.5}})  # the table's currency
    assert pricing.storage_price("s3", "STANDARD", over) == 0.5
    assert pricing.storage_price("s3", "DEEP_ARCHIVE", over) == pytest.approx(0.00099)  # from the table
    cost = pricing.monthly_storage("s3", {"STANDARD": 2 << 30, "DEEP_ARCHIVE": 1 << 30}, over)
    assert cost["currency"] == "USD"
    assert cost["monthly_cost"] == pytest.approx(1.0 + 0.00099)
    assert [c["class"] for c in cost["classes"]] == ["DEEP_ARCHIVE", "STANDARD"]


def test_prices_in_another_currency_are_never_mixed_with_the_tables() -> None:
    """An override in EUR: a class it does not price has no price in EUR (the table's is in
    USD), so the total is unknown rather than a sum of euros and dollars."""
    over = Pricing(currency="EUR", storage_gb_month={"s3": {"STANDARD": 0.5}})
    assert pricing.storage_price("s3", "STANDARD", over) == 0.5
    assert pricing.storage_price("s3", "DEEP_ARCHIVE", over) is None
    cost = pricing.monthly_storage("s3", {"STANDARD": 2 << 30, "DEEP_ARCHIVE": 1 << 30}, over)
    assert cost["currency"] == "EUR" and cost["monthly_cost"] is None
    assert {c["class"]: c["monthly_cost"] for c in cost["classes"]} == {
        "STANDARD": 1.0, "DEEP_ARCHIVE": None}
    # every class priced in EUR: a total in EUR
    full = Pricing(currency="EUR", storage_gb_month={"s3": {"STANDARD": 0.5, "DEEP_ARCHIVE": 0.01}})
    assert pricing.monthly_storage("s3", {"STANDARD": 1 << 30, "DEEP_ARCHIVE": 1 << 30}, full)[
        "monthly_cost"] == pytest.approx(0.51)
    assert "about unknown a month" in pricing.summary_text(cost, str)
    unknown = pricing.monthly_storage("gcs", {"STANDARD": 1, "MYSTERY": 1})
    assert unknown["monthly_cost"] is None  # never guessed
    assert pricing.monthly_storage("file", {"local": 5 << 30})["monthly_cost"] == 0.0


@pytest.mark.parametrize(("value", "needle"), [
    ({"storage_gb_month": {"s3": {"STANDARD": -1}}}, "from 0 to 1000000"),
    ({"storage_gb_month": {"s3": {"STANDARD": "cheap"}}}, "pricing.storage_gb_month: s3.STANDARD: a price must be a number"),
    ({"currency": "dollars"}, "pricing.currency"),
    ({"storage": {}}, "unknown key 'storage'"),
    ({"storage_gb_month": {"s4": {"STANDARD": 1}}}, "unknown store type 's4'"),
])
def test_bad_pricing_is_refused(value: Any, needle: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(_policy(extra={"pricing": value}))
    assert needle in str(caught.value)


def test_pricing_override_parses() -> None:
    policy = parse_policy(_policy(extra={"pricing": {"currency": "EUR",
                                                     "storage_gb_month": {"gcs": {"ARCHIVE": 0.002}}}}))
    assert policy.pricing is not None and policy.pricing.currency == "EUR"
    assert pricing.storage_price("gcs", "ARCHIVE", policy.pricing) == 0.002


def test_s3_parts_go_untagged_when_the_store_refuses_tags() -> None:
    """A role without s3:PutObjectTagging (or a service without tags) refuses the tagged
    request — nothing is created — so the part is written again without the tag and the store
    stops tagging; other errors are not retried. (moto does not check PutObjectTagging on a
    tagged PutObject, so the refusal is built here as botocore reports it.)"""
    from botocore.exceptions import ClientError

    from cloudkeep.stores.s3 import S3Store

    calls: list[dict[str, Any]] = []

    def refusing(code: str) -> Any:
        def call(**kwargs: Any) -> dict[str, str]:
            calls.append(kwargs)
            if "Tagging" in kwargs:
                raise ClientError({"Error": {"Code": code, "Message": "no"}}, "PutObject")
            return {"ok": "yes"}
        return call

    store = S3Store("vault-one")
    assert store._tagged(refusing("AccessDenied"), Key="k", Tagging="cloudkeep-data=part") == {"ok": "yes"}
    assert calls == [{"Key": "k", "Tagging": "cloudkeep-data=part"}, {"Key": "k"}]
    assert store._tag_parts is False
    other = S3Store("vault-two")
    with pytest.raises(ClientError):
        other._tagged(refusing("NoSuchBucket"), Key="k", Tagging="cloudkeep-data=part")
    assert other._tag_parts is True


@pytest.mark.parametrize(("prices", "needle"), [
    ({"s3": {"STANDARD": True}}, "s3.STANDARD: a price must be a number"),
    ({"s3": {"STANDARD": "0.1"}}, "s3.STANDARD: a price must be a number"),
    ({"s3": {"standard": 0.1}}, "storage class 'standard' is spelled 'STANDARD'"),
    ({"azure_blob": {"hot": 0.1}}, "storage class 'hot' is spelled 'Hot'"),
])
def test_prices_that_would_silently_price_nothing_or_the_wrong_thing_are_refused(
        tmp_path: Path, capsys: Any, prices: Any, needle: str) -> None:
    path = tmp_path / "cloudkeep.yaml"
    path.write_text(_policy(transition=[{"after": "30d", "to": "cold"}],
                            extra={"pricing": {"storage_gb_month": prices}}))
    code, out, err = cli(capsys, "--policy", str(path), "validate")
    assert code == 2 and needle in err and "Traceback" not in err
    assert len([line for line in err.splitlines() if needle in line]) == 1
    # a class the table does not know (yet) may still be priced
    path.write_text(_policy(transition=[{"after": "30d", "to": "cold"}],
                            extra={"pricing": {"storage_gb_month": {"s3": {"EXPRESS_ONEZONE": 0.16}}}}))
    assert cli(capsys, "--policy", str(path), "validate")[0] == 0
