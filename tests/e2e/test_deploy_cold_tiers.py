"""Cold tiers in the AWS deployment's roles (the packaged template; `make deploy-check`): the
backup role may tag the parts it creates, only the restore side (and the backup side's copies of an
archived snapshot) may ask S3 for a rehydration and record it, and no function may change the vault's lifecycle rules (an
administrator applies them with `cloudkeep lifecycle --apply`)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from test_deploy_roles import allowed, conditions, functions, role_of, role_statements

pytestmark = pytest.mark.emulator


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    from test_deploy import TEMPLATE

    assert TEMPLATE.exists(), "no packaged template: run `make deploy-check` (osls package) first"
    return dict(json.loads(TEMPLATE.read_text()))


def test_tagging_is_the_backup_roles_on_snapshot_objects_only(template: dict[str, Any]) -> None:
    conds = conditions(template)
    [tagging] = allowed(role_statements(template, "BackupRole", conds), "s3:PutObjectTagging", "VaultBucket")
    assert tagging["Action"] == ["s3:PutObjectTagging"]
    assert tagging["Resource"] == {"Fn::Sub": "${VaultBucket.Arn}/*/snapshots/*"}
    for role in ("PrunerRole", "RestoreRole"):
        assert not allowed(role_statements(template, role, conds), "s3:PutObjectTagging", "VaultBucket")


def test_only_the_restore_side_rehydrates_and_records_it(template: dict[str, Any]) -> None:
    conds = conditions(template)
    restorers = {f for f in functions(template)
                 if allowed(role_statements(template, role_of(template, f), conds),
                            "s3:RestoreObject", "VaultBucket")}
    assert restorers and all(role_of(template, f) in ("RestoreRole", "InvokeRole", "BackupRole")
                             for f in restorers)
    # the restore side (restores, scheduled verifications) and the backup side's copies of an
    # archived snapshot ask for a rehydration of snapshot parts only; the pruner never does
    for role in ("RestoreRole", "BackupRole"):
        [restore] = allowed(role_statements(template, role, conds), "s3:RestoreObject", "VaultBucket")
        assert restore["Action"] == ["s3:RestoreObject"]
        assert restore["Resource"] == {"Fn::Sub": "${VaultBucket.Arn}/*/snapshots/*"}
    records = json.dumps(allowed(role_statements(template, "RestoreRole", conds), "s3:PutObject", "VaultBucket"))
    assert "/*/rehydrations/*" in records
    assert not allowed(role_statements(template, "PrunerRole", conds), "s3:RestoreObject", "VaultBucket")


def test_no_function_changes_the_vaults_lifecycle(template: dict[str, Any]) -> None:
    conds = conditions(template)
    for function in functions(template):
        statements = role_statements(template, role_of(template, function), conds)
        assert not allowed(statements, "s3:PutLifecycleConfiguration", "VaultBucket"), function
