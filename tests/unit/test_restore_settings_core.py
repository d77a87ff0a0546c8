"""cloudkeep.restore_settings on an in-memory source of its own (the RestoresSettings protocol):
modes, unreadable and unsigned settings, a settings step that fails after the items, drills'
failures and comparisons."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from cloudkeep import restore_settings
from cloudkeep.capabilities import RestoresSettings
from cloudkeep.errors import SourceError


class Target(RestoresSettings):
    """Keeps applied settings in a dict; ``refuse`` names settings the target will not keep."""

    def __init__(self, *, refuse: set[str] | None = None, broken: bool = False) -> None:
        self.live: dict[str, Any] = {}
        self.refuse = refuse or set()
        self.broken = broken

    def recorded_settings(self, recorded: Mapping[str, Any]) -> dict[str, Any] | None:
        value = recorded.get("settings")
        return dict(value) if isinstance(value, dict) else None

    def data_settings(self) -> frozenset[str]:
        return frozenset({"ttl"})

    def apply_settings(self, target: str, settings: Mapping[str, Any],
                       recorded: Mapping[str, Any]) -> list[tuple[str, str | None]]:
        if self.broken:
            raise SourceError("the target went away")
        out: list[tuple[str, str | None]] = []
        for name, value in settings.items():
            if name in self.refuse:
                out.append((name, "refused by the target"))
            else:
                self.live[name] = value
                out.append((name, None))
        return out

    def read_settings(self, target: str, recorded: Mapping[str, Any]) -> dict[str, Any]:
        return dict(self.live)


RECORDED = {"type": "x", "settings": {
    "ttl": {"enabled": True, "attribute": "exp"},
    "tags": {"a": "1"},
    "insights": "unreadable: AccessDeniedException: no",
    "resource_policy": '{"Statement": []}',
}}


@pytest.mark.parametrize("mode, applied, skipped", [
    ("all", ["resource_policy", "tags", "ttl"], []),
    ("data", ["ttl"], ["insights", "resource_policy", "tags"]),
    ("none", [], ["insights", "resource_policy", "tags", "ttl"]),
])
def test_every_recorded_setting_is_accounted_for_in_each_mode(
        mode: str, applied: list[str], skipped: list[str]) -> None:
    target = Target()
    outcome = restore_settings.apply(target, RECORDED, "t", mode)
    assert sorted(outcome.applied) == applied
    assert outcome.skipped == skipped
    named = set(outcome.applied) | set(outcome.skipped) | {n for n, _ in outcome.not_applied}
    assert named == set(RECORDED["settings"])  # type: ignore[arg-type]
    assert sorted(target.live) == applied
    if mode == "all":
        assert [n for n, _ in outcome.not_applied] == ["insights"]
        assert outcome.failed() == []  # unreadable at backup: listed, not a failure


def test_an_unsigned_manifest_lists_the_resource_policy_instead_of_applying_it() -> None:
    target = Target()
    outcome = restore_settings.apply(target, RECORDED, "t", "all", authenticated=False)
    assert "resource_policy" not in target.live
    assert dict(outcome.not_applied)["resource_policy"] == restore_settings.UNSIGNED
    assert outcome.failed() == []
    plan = restore_settings.plan(target, RECORDED, "all", authenticated=False).as_dict()
    assert "resource_policy" not in plan["to_apply"] and "tags" in plan["to_apply"]


def test_a_failing_settings_step_is_reported_not_raised() -> None:
    outcome = restore_settings.apply(Target(broken=True), RECORDED, "t", "all")
    reasons = dict(outcome.not_applied)
    assert outcome.applied == [] and "the target went away" in reasons["ttl"]
    assert {n for n, _ in outcome.failed()} == {"ttl", "tags", "resource_policy"}


def test_drills_see_refused_settings_and_mismatches() -> None:
    target = Target(refuse={"tags"})
    outcome = restore_settings.apply(target, RECORDED, "t", "all")
    assert outcome.failed() == [("tags", "refused by the target")]
    assert restore_settings.compare(target, RECORDED, "t", outcome) == []
    target.live["ttl"] = {"enabled": True, "attribute": "other"}
    [problem] = restore_settings.compare(target, RECORDED, "t", outcome)
    assert problem.startswith("ttl: the manifest says")


def test_no_settings_recorded_says_so_and_modes_are_checked() -> None:
    outcome = restore_settings.apply(Target(), {"type": "x"}, "t", "all")
    assert outcome.as_dict() == {"mode": "all", "recorded": False, "applied": [], "not_applied": [],
                                 "skipped": [], "note": outcome.note}
    assert "none recorded" in str(outcome.note)
    assert "records no settings" in str(restore_settings.apply(object(), RECORDED, "t", "all").note)
    with pytest.raises(ValueError, match="all, data, none"):
        restore_settings.check_mode("most")


def test_an_unsigned_manifest_never_sets_a_foreign_key_object_lock_or_policy() -> None:
    """A forged unsigned manifest cannot open a table, encrypt it with another account's key or
    lock a restored bucket; the same settings at their harmless defaults still apply."""
    forged = {"settings": {
        "resource_policy": '{"Statement": [{"Principal": {"AWS": "arn:aws:iam::666:root"}}]}',
        "sse": {"SSEType": "KMS", "KMSMasterKeyArn": "arn:aws:kms:eu-west-1:666:key/x"},
        "encryption": [{"ApplyServerSideEncryptionByDefault": {
            "SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "arn:aws:kms:eu-west-1:666:key/x"}}],
        "object_lock": {"ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {
            "Mode": "COMPLIANCE", "Years": 100}}},
        "ttl": {"enabled": False, "attribute": None},
    }}
    target = Target()
    outcome = restore_settings.apply(target, forged, "t", "all", authenticated=False)
    assert outcome.applied == ["ttl"] and set(target.live) == {"ttl"}
    assert {n for n, _ in outcome.not_applied} == {"resource_policy", "sse", "encryption",
                                                   "object_lock"}
    assert outcome.failed() == []  # listed, not a drill failure
    narrowed = restore_settings.recorded_for_restore(target, forged, "all", authenticated=False)
    assert set(narrowed["settings"]) == {"ttl"}  # a bucket or table is not created with them
    plain = {"settings": {"resource_policy": None, "sse": "AWS owned", "object_lock": None,
                          "encryption": [{"ApplyServerSideEncryptionByDefault": {
                              "SSEAlgorithm": "AES256"}}]}}
    assert sorted(restore_settings.plan(target, plain, "all", authenticated=False).applied) == [
        "encryption", "object_lock", "resource_policy", "sse"]
    signed = restore_settings.apply(Target(), forged, "t", "all", authenticated=True)
    assert len(signed.applied) == 5


def test_an_absurd_recorded_cosmos_throughput_is_never_given_to_a_new_container() -> None:
    """A damaged or forged throughput (far above Cosmos DB's per-container limit, or not a
    number) creates the container without it; a sane one is given."""
    from cloudkeep.sources.cosmos.settings import create_kwargs, throughput_problem

    absurd = {"scope": "container", "manual_throughput": 50_000_000}
    assert "outside" in (throughput_problem(absurd) or "")
    assert "offer_throughput" not in create_kwargs({"throughput": absurd})
    assert "offer_throughput" not in create_kwargs(
        {"throughput": {"scope": "container", "autoscale_max_throughput": "lots"}})
    sane = {"scope": "container", "manual_throughput": 400}
    assert throughput_problem(sane) is None
    assert create_kwargs({"throughput": sane})["offer_throughput"] == 400
