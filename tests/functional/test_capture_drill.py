"""A drill of continuous capture (``verify --level drill --at random|ISO8601``) on Google's
Firestore emulator: a moment of the window is restored into a scratch target and deleted; a
point-in-time snapshot taken later is rebuilt from the earlier base plus the log and must have
the same digest — and does not when the log holds a change that never happened."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from cloudkeep.catalog import latest
from cloudkeep.changelog.format import format_time
from cloudkeep.policy import load_policy
from cloudkeep.registry import store_for_dataset
from cloudkeep.services.capture_gcp import capture_firestore_event
from helpers import cli, cli_json
from test_capture_firestore import event_data, raw_document

pytestmark = pytest.mark.emulator


def test_drill_restores_a_moment_and_checks_the_log_against_a_later_snapshot(
        tmp_path: Path, gcp_project: str, firestore_rest: Any, capsys: Any) -> None:
    from google.events.cloud.firestore_v1 import DocumentEventData

    policy_path = tmp_path / "cloudkeep.yaml"
    policy_path.write_text(yaml.safe_dump({
        "version": 1, "stores": {"vault": {"type": "file", "path": str(tmp_path / "vault")}},
        "tiers": {"standard": {"schedule": "0 2 * * *", "rpo": "26h", "retention": {"last": 5}}},
        "datasets": {"profiles": {"source": {"type": "firestore", "project": gcp_project,
                                             "collections": ["users"]},
                                  "tier": "standard", "store": "vault", "continuous": True}}}))
    policy = load_policy(str(policy_path)).policy
    store = store_for_dataset(policy, "profiles")

    def capture(path: str, old: Any, new: Any) -> None:
        data = DocumentEventData.serialize(event_data(new, old))
        capture_firestore_event(policy, data, "application/protobuf",
                                format_time(datetime.now(UTC)))

    firestore_rest.write({"users/alice": {"v": {"integerValue": "1"}}})
    alice1 = raw_document(gcp_project, "users/alice")
    capture("users/alice", None, alice1)  # the log begins before the base snapshot
    firestore_rest.write({"users/bob": {"v": {"integerValue": "1"}}})
    bob1 = raw_document(gcp_project, "users/bob")
    capture("users/bob", None, bob1)
    assert cli(capsys, "--policy", str(policy_path), "run", "profiles")[0] == 0
    base = latest(store, "profiles")
    assert base is not None and base.consistency.mode == "point-in-time"

    firestore_rest.write({"users/alice": {"v": {"integerValue": "2"}}, "users/carol": {"v": {"integerValue": "1"}}})
    capture("users/alice", alice1, raw_document(gcp_project, "users/alice"))
    capture("users/carol", None, raw_document(gcp_project, "users/carol"))
    firestore_rest.delete("users/bob")
    capture("users/bob", bob1, None)
    between = datetime.now(UTC)
    assert cli(capsys, "--policy", str(policy_path), "run", "profiles")[0] == 0
    later = latest(store, "profiles")
    assert later is not None and later.snapshot_id != base.snapshot_id
    firestore_rest.write({"users/dave": {"v": {"integerValue": "1"}}})  # the window goes past it
    capture("users/dave", None, raw_document(gcp_project, "users/dave"))

    at = format_time(between)
    report = cli_json(capsys, "--policy", str(policy_path), "verify", "--latest", "profiles",
                      "--level", "drill", "--at", at)
    assert report["ok"] is True, report
    assert report["drill"]["compared_with"] == later.snapshot_id
    assert report["drill"]["base"] == base.snapshot_id and report["cleaned_up"] is True
    assert report["items"] == 2  # alice and carol, bob deleted
    random_one = cli_json(capsys, "--policy", str(policy_path), "verify", "--latest", "profiles",
                          "--level", "drill", "--at", "random")
    assert random_one["ok"] is True, random_one
    moment = datetime.fromisoformat(random_one["drill"]["moment"].replace("Z", "+00:00"))
    assert base.started_at - timedelta(seconds=1) <= moment

    code, _, err = cli(capsys, "--policy", str(policy_path), "verify", "--latest", "profiles",
                       "--level", "drill", "--at", "2020-01-01T00:00:00Z")
    assert code == 2 and "before the start of the recoverable window" in err
    code, _, err = cli(capsys, "--policy", str(policy_path), "verify", "--latest", "profiles",
                       "--at", "random")
    assert code == 2 and "--level drill" in err
    # a change the database never saw, logged between the base and the later snapshot
    forged = raw_document(gcp_project, "users/carol")
    forged.fields["v"].integer_value = 99
    forged.update_time = datetime.fromtimestamp(between.timestamp() - 0.0005, UTC)
    capture("users/carol", None, forged)
    code, out, _ = cli(capsys, "--policy", str(policy_path), "verify", "--latest", "profiles",
                       "--level", "drill", "--at", at)
    assert code == 1 and "change log" in out and later.snapshot_id in out
