"""Issue #18's rules, read from the deployment definitions themselves: the packaged
CloudFormation template (`make deploy-check` builds it) and the Terraform for Google Cloud and
Azure (python-hcl2). Which function may delete, which may write the policy it loads, who can
shorten a lock, who can unwrap a committed snapshot's data key."""

from __future__ import annotations

import fnmatch
import json
import re
from typing import Any

import pytest

from test_deploy import TEMPLATE, load_tf, resources

DESTROY = ["s3:DeleteObject", "s3:DeleteObjectVersion", "s3:DeleteBucket", "s3:DeleteBucketPolicy",
           "s3:BypassGovernanceRetention", "s3:PutBucketPolicy", "s3:PutBucketVersioning",
           "s3:PutBucketObjectLockConfiguration", "s3:PutLifecycleConfiguration",
           "s3:PutBucketLifecycle"]
BACKS_UP = ("TickLambdaFunction", "WorkLambdaFunction")  # the functions that back up (or capture)


# ---- AWS: evaluating the template's own roles and policies

@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    assert TEMPLATE.exists(), "no packaged template: run `make deploy-check` (osls package) first"
    return dict(json.loads(TEMPLATE.read_text()))


def conditions(template: dict[str, Any], **params: str) -> dict[str, bool]:
    """The template's conditions with its parameters at their defaults (or ``params``)."""
    values = {k: params.get(k, v.get("Default")) for k, v in template.get("Parameters", {}).items()}
    out = {}
    for name, cond in template.get("Conditions", {}).items():
        left, right = cond["Fn::Equals"]
        left = values[left["Ref"]] if isinstance(left, dict) else left
        out[name] = str(left) == str(right)
    return out


def resolve(value: Any, conds: dict[str, bool]) -> Any:
    """Fn::If taken, AWS::NoValue dropped."""
    if isinstance(value, dict):
        if "Fn::If" in value:
            name, yes, no = value["Fn::If"]
            return resolve(yes if conds[name] else no, conds)
        return {k: resolve(v, conds) for k, v in value.items()}
    if isinstance(value, list):
        items = [resolve(v, conds) for v in value]
        return [v for v in items if v != {"Ref": "AWS::NoValue"}]
    return value


def role_of(template: dict[str, Any], function: str) -> str:
    role = template["Resources"][function]["Properties"]["Role"]
    match = re.fullmatch(r"\$\{(\w+)\.Arn\}", role["Fn::Sub"])
    assert match, role
    return match.group(1)


def role_statements(template: dict[str, Any], role: str, conds: dict[str, bool]) -> list[dict[str, Any]]:
    props = resolve(template["Resources"][role]["Properties"], conds)
    return [s for p in props["Policies"] for s in p["PolicyDocument"]["Statement"]]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def allowed(statements: list[dict[str, Any]], action: str, resource: str) -> list[dict[str, Any]]:
    """The Allow statements granting ``action`` on a resource that mentions ``resource``."""
    out = []
    for s in statements:
        if s["Effect"] != "Allow":
            continue
        if not any(fnmatch.fnmatchcase(action, a) for a in as_list(s["Action"])):
            continue
        where = json.dumps(s["Resource"])
        if resource in where or s["Resource"] == "*":
            out.append(s)
    return out


def functions(template: dict[str, Any]) -> list[str]:
    return list(resources(template, "AWS::Lambda::Function"))


def test_no_function_that_backs_up_can_destroy_the_vault(template: dict[str, Any]) -> None:
    conds = conditions(template)
    for function in BACKS_UP:
        statements = role_statements(template, role_of(template, function), conds)
        for action in DESTROY:
            assert not allowed(statements, action, "VaultBucket"), (function, action)
        # ... it may create (create-only, below) and read
        assert allowed(statements, "s3:PutObject", "VaultBucket")
        assert allowed(statements, "s3:GetObject", "VaultBucket")


def test_exactly_one_function_the_pruner_may_delete(template: dict[str, Any]) -> None:
    conds = conditions(template)
    deleters = {f for f in functions(template)
                for action in ("s3:DeleteObject", "s3:DeleteObjectVersion")
                if allowed(role_statements(template, role_of(template, f), conds), action, "VaultBucket")}
    assert deleters == {"PruneLambdaFunction"}
    natives = {f for f in functions(template)
               for action in ("dynamodb:DeleteBackup", "rds:DeleteDBSnapshot", "rds:DeleteDBClusterSnapshot")
               if allowed(role_statements(template, role_of(template, f), conds), action, "")}
    assert natives == {"PruneLambdaFunction"}  # backups made by native jobs too
    # ... and the bucket policy denies it to every other role, whatever its IAM policy says
    policy = template["Resources"]["VaultBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    deny = next(s for s in resolve(policy, conds) if s.get("Sid") == "OnlyThePrunerDeletes")
    assert deny["Effect"] == "Deny" and {"s3:DeleteObject", "s3:DeleteObjectVersion",
                                         "s3:BypassGovernanceRetention", "s3:PutBucket*",
                                         "s3:PutLifecycle*"} <= set(deny["Action"])
    principals = {p["Fn::GetAtt"][0] for p in deny["Principal"]["AWS"]}
    assert principals == {"BackupRole", "RestoreRole", "InvokeRole"}


def test_the_union_for_invoke_is_an_operators_opt_in(template: dict[str, Any]) -> None:
    union = conditions(template, InvokeRights="union")
    statements = role_statements(template, "InvokeRole", union)
    assert allowed(statements, "s3:DeleteObject", "VaultBucket")
    assert allowed(statements, "dynamodb:Scan", "table/orders")
    policy = resolve(template["Resources"]["VaultBucketPolicy"]["Properties"]["PolicyDocument"], union)
    deny = next(s for s in policy["Statement"] if s.get("Sid") == "OnlyThePrunerDeletes")
    assert "InvokeRole" not in json.dumps(deny["Principal"])
    default = role_statements(template, "InvokeRole", conditions(template))
    assert not allowed(default, "s3:DeleteObject", "VaultBucket")
    assert template["Parameters"]["InvokeRights"]["Default"] == "restore"


def test_the_vault_is_create_only_for_everyone(template: dict[str, Any]) -> None:
    policy = template["Resources"]["VaultBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    [create_only] = [s for s in policy if s.get("Sid") == "CreateOnly"]
    assert create_only["Effect"] == "Deny" and create_only["Principal"] == "*"
    assert create_only["Action"] == "s3:PutObject"
    # refused when If-None-Match is absent on an object-creating request (PutObject,
    # CompleteMultipartUpload; CreateMultipartUpload and UploadPart carry no such header)
    assert create_only["Condition"] == {"Null": {"s3:if-none-match": "true"},
                                        "Bool": {"s3:ObjectCreationOperation": "true"}}
    exempt = [r["Fn::Sub"] for r in create_only["NotResource"]]
    assert exempt == ["${VaultBucket.Arn}/*/export/*", "${VaultBucket.Arn}/*/blobs/*"]


def test_no_function_can_write_the_policy_it_loads(template: dict[str, Any]) -> None:
    conds = conditions(template)
    for function in functions(template):
        props = template["Resources"][function]["Properties"]
        assert props["Environment"]["Variables"]["CLOUDKEEP_POLICY"] == {
            "Fn::Sub": "s3://${ConfigBucket}/cloudkeep.yaml"}, function
        statements = role_statements(template, role_of(template, function), conds)
        for action in ("s3:PutObject", "s3:DeleteObject", "s3:PutBucketPolicy"):
            assert not allowed(statements, action, "ConfigBucket"), (function, action)
        assert allowed(statements, "s3:GetObject", "ConfigBucket")
    config = template["Resources"]["ConfigBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    [reads] = [s for s in config if s.get("Sid") == "FunctionsOnlyReadThePolicy"]
    assert reads["Effect"] == "Deny" and sorted(reads["NotAction"]) == [
        "s3:GetObject", "s3:GetObjectVersion", "s3:ListBucket"]
    assert {p["Fn::GetAtt"][0] for p in reads["Principal"]["AWS"]} == {
        role_of(template, f) for f in functions(template)}
    # the old location in the vault is denied too
    vault = template["Resources"]["VaultBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    [legacy] = [s for s in vault if s.get("Sid") == "NoFunctionWritesAPolicy"]
    assert "s3:PutObject" in legacy["Action"] and "cloudkeep.yaml" in json.dumps(legacy["Resource"])


def test_who_can_shorten_a_lock(template: dict[str, Any]) -> None:
    """Nobody by default: no role holds s3:BypassGovernanceRetention (the pruner only where an
    operator sets pruneBypassGovernance); COMPLIANCE is one parameter away; audit records are
    out of every function's reach but create."""
    conds = conditions(template)
    for role in {role_of(template, f) for f in functions(template)}:
        statements = role_statements(template, role, conds)
        assert not allowed(statements, "s3:BypassGovernanceRetention", "VaultBucket"), role
    opted = conditions(template, PruneBypassGovernance="true")
    assert allowed(role_statements(template, "PrunerRole", opted), "s3:BypassGovernanceRetention",
                   "VaultBucket")
    lock = template["Resources"]["VaultBucket"]["Properties"]["ObjectLockConfiguration"]
    assert lock["Rule"]["DefaultRetention"] == {"Mode": "GOVERNANCE", "Days": 7}
    vault = template["Resources"]["VaultBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    [audit] = [s for s in vault if s.get("Sid") == "AuditIsAppendOnly"]
    assert audit["Effect"] == "Deny" and {"s3:DeleteObject", "s3:DeleteObjectVersion",
                                          "s3:BypassGovernanceRetention"} <= set(audit["Action"])
    assert {p["Fn::GetAtt"][0] for p in audit["Principal"]["AWS"]} == {
        role_of(template, f) for f in functions(template)}
    assert [r["Fn::Sub"] for r in audit["Resource"]] == [
        "${VaultBucket.Arn}/_audit/????/*", "${VaultBucket.Arn}/*/_audit/????/*"]  # yyyy: the records


def test_only_the_restore_roles_unwrap_committed_data_keys(template: dict[str, Any]) -> None:
    conds = conditions(template)
    # no function's IAM policy names the envelope key: its key policy decides, by role
    for role in {role_of(template, f) for f in functions(template)}:
        assert "EnvelopeKey" not in json.dumps(role_statements(template, role, conds)), role
    key = resolve(template["Resources"]["EnvelopeKey"]["Properties"]["KeyPolicy"]["Statement"], conds)
    grants: dict[str, list[dict[str, Any]]] = {}
    for s in key:
        if s["Effect"] == "Allow" and "kms:Decrypt" in as_list(s["Action"]):
            for p in as_list(s["Principal"]["AWS"]):
                name = p["Fn::GetAtt"][0] if isinstance(p, dict) and "Fn::GetAtt" in p else "account"
                grants.setdefault(name, []).append(s)
    unconditional = {n for n, ss in grants.items() if any("Condition" not in s for s in ss)}
    assert unconditional == {"RestoreRole", "InvokeRole", "PrunerRole"}  # (and the account's kms:*)
    [backup] = grants["BackupRole"]
    # run-state resume wraps and manifest signing keys only (cloudkeep.keys), never a data key
    purposes = ["resume", "manifest-signing"]
    assert backup["Condition"] == {"StringEquals": {"kms:EncryptionContext:cloudkeep:purpose": purposes}}
    [deny] = [s for s in key if s.get("Sid") == "BackupRoleUnwrapsOnlyResumeWraps"]
    assert deny["Effect"] == "Deny" and deny["Action"] == "kms:Decrypt"
    assert deny["Condition"] == {"StringNotEquals": {"kms:EncryptionContext:cloudkeep:purpose": purposes}}
    [manage] = [s for s in key if s.get("Sid") == "FunctionsNeitherReEncryptNorManage"]
    assert "kms:ReEncrypt*" in manage["Action"] and len(manage["Principal"]["AWS"]) == 4


def test_roles_name_only_the_parameterised_tables_and_the_vault(template: dict[str, Any]) -> None:
    conds = conditions(template)
    for role in ("BackupRole", "PrunerRole", "RestoreRole", "InvokeRole"):
        for statement in role_statements(template, role, conds):
            actions = as_list(statement["Action"])
            if actions in (["dynamodb:ListBackups"], ["dynamodb:ListStreams"],
                           ["xray:PutTraceSegments", "xray:PutTelemetryRecords"],
                           ["application-autoscaling:DescribeScalableTargets",
                            "application-autoscaling:DescribeScalingPolicies"]):
                continue  # no resource-level permissions for these
            resource = statement["Resource"]
            assert resource != "*" and "*" not in as_list(resource), (role, statement)
    backup = {s["Sid"]: s for s in role_statements(template, "BackupRole", conds)}
    table = {"Fn::Sub": "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/orders"}
    assert backup["ReadTheTablesToBackUp"]["Resource"] == [table]
    restore = {s["Sid"]: s for s in role_statements(template, "RestoreRole", conds)}
    assert all("table/restored-*" in r["Fn::Sub"] for r in restore["RestoreOnlyIntoPrefixedTables"]["Resource"])
    assert all("table/orders-cloudkeep-drill-*" in r["Fn::Sub"]
               for r in restore["RestoreDrillScratchTables"]["Resource"])
    assert not allowed(list(backup.values()), "dynamodb:CreateTable", "")  # backups never write tables
    assert not allowed(list(backup.values()), "dynamodb:BatchWriteItem", "")
    prune = {s["Sid"]: s for s in role_statements(template, "PrunerRole", conds)}
    assert prune["RdsDeleteOnlyTaggedSnapshots"]["Condition"] == {
        "StringEquals": {"aws:ResourceTag/cloudkeep:managed": "true"}}
    assert backup["RdsCopyWithKmsKeys"]["Condition"] == {"StringLike": {"kms:ViaService": "rds.*.amazonaws.com"}}
    assert backup["DynamoDBExportWritesIntoTheVault"]["Resource"] == {"Fn::Sub": "${VaultBucket.Arn}/*/export/*"}
    # s16-settings: the backup role reads a table's settings, never changes them; the restore
    # role changes them on restore and drill tables only
    assert backup["ReadTheTableSettings"]["Resource"] == [table]
    for action in ("dynamodb:UpdateTable", "dynamodb:UpdateTimeToLive", "dynamodb:TagResource",
                   "dynamodb:PutResourcePolicy", "application-autoscaling:RegisterScalableTarget"):
        assert not allowed(list(backup.values()), action, 'table/orders"'), action  # the table itself
    assert all("table/restored-*" in r["Fn::Sub"] for r in restore["RestoreTableSettings"]["Resource"])
    assert all("table/orders-cloudkeep-drill-*" in r["Fn::Sub"]
               for r in restore["DrillTableSettings"]["Resource"])


# ---- Google Cloud and Azure: the Terraform, parsed

GCS_PERMISSIONS = {  # the predefined roles the Terraform may bind on a bucket, and what they allow
    "roles/storage.objectViewer": {"storage.objects.get", "storage.objects.list"},
    "roles/storage.objectCreator": {"storage.objects.create"},
}


def accounts_in(text: str) -> set[str]:
    """The service accounts a binding names (``local.union_member``: the opt-in union one)."""
    found = set(re.findall(r"google_service_account\.(\w+)\.email", text))
    return found | ({"union"} if "local.union_member" in text else set())


def gcp_bucket_grants(tf: dict[str, Any], bucket: str) -> dict[str, set[str]]:
    """Service account → the permissions its bindings on ``bucket`` give it."""
    customs = {f"${{google_project_iam_custom_role.{name}.id}}": set(r["permissions"])
               for name, r in tf["google_project_iam_custom_role"].items()}
    customs |= {k.replace(".id}", "[0].id}"): v for k, v in customs.items()}
    out: dict[str, set[str]] = {}
    for binding in tf["google_storage_bucket_iam_member"].values():
        if f"google_storage_bucket.{bucket}.name" not in binding["bucket"]:
            continue
        role = binding["role"]
        permissions = GCS_PERMISSIONS.get(role) or customs.get(role)
        assert permissions is not None, f"unexpected role {role} on the {bucket} bucket"
        for account in accounts_in(json.dumps(binding)):
            out.setdefault(account, set()).update(permissions)
    return out


def test_gcp_only_the_pruner_deletes_and_no_function_writes_the_policy() -> None:
    tf = load_tf("gcp")["resource"]
    functions = tf["google_cloudfunctions2_function"]
    account = {name: fn["service_config"][0]["service_account_email"] for name, fn in functions.items()}
    assert account["tick"] == account["work"] == "${google_service_account.backup.email}"
    scheduled = functions["scheduled"]["for_each"]
    assert accounts_in(scheduled["prune"]) == {"pruner"} and accounts_in(scheduled["verify"]) == {"restore"}
    assert account["invoke"] == "${local.invoke_account}"
    vault = gcp_bucket_grants(tf, "vault")
    assert vault["backup"] == {"storage.objects.get", "storage.objects.list", "storage.objects.create"}
    # objectCreator cannot overwrite: replacing an object needs storage.objects.delete
    assert {a for a, p in vault.items() if "storage.objects.delete" in p} == {"pruner", "union"}
    assert not [p for p in vault.values() if {"storage.buckets.update", "storage.buckets.setIamPolicy"} & p]
    config = gcp_bucket_grants(tf, "config")
    assert set(config) == {"backup", "pruner", "restore", "union"}
    assert all(p == GCS_PERMISSIONS["roles/storage.objectViewer"] for p in config.values())
    for fn in functions.values():
        assert fn["service_config"][0]["environment_variables"]["CLOUDKEEP_POLICY"] == "${local.policy_url}"
    locals_ = {k: v for block in hcl_locals("gcp") for k, v in block.items()}
    assert "google_storage_bucket.config.name" in locals_["policy_url"]
    assert "var.invoke_union" in locals_["invoke_account"]
    # the Firestore service agent writes exports: create, never delete
    agent = tf["google_project_iam_custom_role"]["export_writer"]["permissions"]
    assert "storage.objects.delete" not in agent


def test_gcp_locks_keys_and_firestore() -> None:
    resources_, variables = load_tf("gcp")["resource"], hcl_variables("gcp")
    vault = resources_["google_storage_bucket"]["vault"]
    assert vault["retention_policy"][0]["is_locked"] == "${var.lock_retention}"
    assert variables["lock_retention"]["default"] is False
    assert "Irreversible" in variables["lock_retention"]["description"]
    assert variables["invoke_union"]["default"] is False
    kms = resources_["google_kms_crypto_key_iam_member"]
    assert accounts_in(json.dumps(kms["unwraps"])) == {"restore", "pruner", "union"}
    assert kms["unwraps"]["role"] == "roles/cloudkms.cryptoKeyDecrypter"
    # (the backup account encrypts and decrypts: Cloud KMS IAM cannot condition on the AAD)
    assert accounts_in(json.dumps(kms["backup_wraps"])) == {"backup"}
    project = resources_["google_project_iam_member"]
    for name, binding in project.items():
        assert binding["role"] not in ("roles/datastore.importExportAdmin", "roles/owner", "roles/editor")
        if binding["role"] == "roles/datastore.user" or "firestore_import" in binding["role"]:
            # writes only in the drill database and the named restore databases
            assert binding["condition"][0]["expression"] == "${local.firestore_writable_condition}", name
            assert accounts_in(json.dumps(binding)) == {"restore", "union"}
    drill = resources_["google_firestore_database"]["drill"]
    assert drill["name"] == "${var.firestore_drill_database}"
    assert variables["firestore_drill_database"]["default"] == "cloudkeep-drill"
    jobs = resources_["google_cloud_scheduler_job"]
    assert set(jobs["scheduled"]["for_each"]) == {"prune", "verify"}


def hcl_blocks(folder: str, kind: str) -> list[dict[str, Any]]:
    import hcl2

    from test_deploy import ROOT, _unquote

    out = []
    for path in sorted((ROOT / "infra" / folder).glob("*.tf")):
        with open(path) as fh:
            out += _unquote(hcl2.load(fh)).get(kind, [])
    return out


def hcl_locals(folder: str) -> list[dict[str, Any]]:
    return hcl_blocks(folder, "locals")


def hcl_variables(folder: str) -> dict[str, Any]:
    return {k: v for block in hcl_blocks(folder, "variable") for k, v in block.items()}


def test_azure_only_the_pruner_deletes_and_no_app_writes_the_policy() -> None:
    res, variables = load_tf("azure")["resource"], hcl_variables("azure")
    app = res["azurerm_linux_function_app"]["role"]
    assert set(app["for_each"]) == {"backup", "prune", "restore"} or "backup" in str(app["for_each"])
    assert app["app_settings"]["CLOUDKEEP_ROLE"] == "${each.key}"
    assert app["identity"][0]["identity_ids"] == ["${azurerm_user_assigned_identity.role[each.key].id}"]
    assert "azurerm_storage_container.config.name" in app["app_settings"]["CLOUDKEEP_POLICY"]
    definitions = res["azurerm_role_definition"]
    deleters = {name for name, d in definitions.items()
                if any(a.endswith(("/delete", "/deleteBlobVersion/action"))
                       for a in d["permissions"][0].get("data_actions", []))}
    assert deleters == {"prune"}
    for name, d in definitions.items():
        actions = d["permissions"][0].get("actions", [])
        assert not [a for a in actions if a.endswith(("/write", "/delete", "/*"))], name
    assigned = res["azurerm_role_assignment"]
    assert assigned["vault_prune"]["for_each"] == "${toset(local.prune_principals)}"
    assert "prune" in assigned["vault_prune"]["role_definition_id"]
    assert "backup" in assigned["vault_backup"]["role_definition_id"]
    config = [a for a in assigned.values() if "azurerm_storage_container.config" in a["scope"]]
    assert [a["role_definition_name"] for a in config] == ["Storage Blob Data Reader"]
    locals_ = {k: v for block in hcl_locals("azure") for k, v in block.items()}
    assert "var.invoke_union" in locals_["prune_principals"]
    assert variables["invoke_union"]["default"] is False


def test_azure_locks_network_and_keys() -> None:
    res, variables = load_tf("azure")["resource"], hcl_variables("azure")
    policy = res["azurerm_storage_container_immutability_policy"]["vault"]
    assert policy["locked"] == "${var.lock_immutability}"
    assert variables["lock_immutability"]["default"] is False
    assert "Irreversible" in variables["lock_immutability"]["description"]
    vault = res["azurerm_storage_account"]["vault"]
    assert vault["public_network_access_enabled"] == "${!var.private_network}"
    assert vault["network_rules"][0]["default_action"] == '${var.private_network ? "Deny" : "Allow"}'
    key_vault = res["azurerm_key_vault"]["cloudkeep"]
    assert key_vault["public_network_access_enabled"] == "${!var.private_network}"
    endpoints = res["azurerm_private_endpoint"]
    assert {e["private_service_connection"][0]["subresource_names"][0] for e in endpoints.values()} == {"blob", "vault"}
    assert all(e["count"] == "${var.private_network ? 1 : 0}" for e in endpoints.values())
    unwrap = res["azurerm_role_definition"]["unwrap"]["permissions"][0]["data_actions"]
    assert sorted(unwrap) == ["Microsoft.KeyVault/vaults/keys/read", "Microsoft.KeyVault/vaults/keys/unwrap/action"]
    assert set(res["azurerm_role_assignment"]["envelope_unwrap"]["for_each"]) == {"restore", "prune"} or \
        "restore" in str(res["azurerm_role_assignment"]["envelope_unwrap"]["for_each"])
