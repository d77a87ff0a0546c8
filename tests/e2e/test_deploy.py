"""Deployment definitions: the packaged CloudFormation template (built offline by `osls package`
in `make deploy-check`, which also runs cfn-lint and checkov) and the Terraform for Google Cloud
and Azure, checked for the properties the design promises."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import hcl2
import pytest

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / ".serverless" / "cloudformation-template-update-stack.json"
BUNDLE = ROOT / ".serverless" / "cloudkeep.zip"


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    assert TEMPLATE.exists(), "no packaged template: run `make deploy-check` (osls package) first"
    return json.loads(TEMPLATE.read_text())


def resources(template: dict[str, Any], kind: str) -> dict[str, Any]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def test_tick_pruner_and_verifier_run_on_their_own_schedules(template: dict[str, Any]) -> None:
    rules = resources(template, "AWS::Events::Rule")
    targets = {r["Properties"]["Targets"][0]["Arn"]["Fn::GetAtt"][0]: r["Properties"]["ScheduleExpression"]
               for r in rules.values() if "ScheduleExpression" in r["Properties"]}
    assert targets == {"TickLambdaFunction": "rate(15 minutes)", "PruneLambdaFunction": "rate(1 hour)",
                       "VerifyLambdaFunction": "rate(15 minutes)"}
    handlers = {k: v["Properties"]["Handler"] for k, v in resources(template, "AWS::Lambda::Function").items()}
    assert handlers == {**{f"{n.title()}LambdaFunction": f"handlers/aws_lambda.{n}"
                           for n in ("tick", "work", "prune", "verify", "invoke")},
                        **{f"Capture{n.title()}LambdaFunction": f"handlers/aws_capture.{n}"
                           for n in ("stream", "failures", "objects")}}


def test_vault_bucket_is_versioned_locked_encrypted_private_and_tls_only(template: dict[str, Any]) -> None:
    vault = template["Resources"]["VaultBucket"]["Properties"]
    assert vault["VersioningConfiguration"] == {"Status": "Enabled"}
    assert vault["ObjectLockEnabled"] is True
    sse = vault["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert sse == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": {"Fn::GetAtt": ["VaultKey", "Arn"]}}
    assert all(vault["PublicAccessBlockConfiguration"].values())
    assert template["Resources"]["VaultKey"]["Properties"]["EnableKeyRotation"] is True
    policy = template["Resources"]["VaultBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert {"Bool": {"aws:SecureTransport": "false"}} in [s.get("Condition") for s in policy if s["Effect"] == "Deny"]


def test_alarms_dead_letters_and_alerts(template: dict[str, Any]) -> None:
    alarms = resources(template, "AWS::CloudWatch::Alarm")
    stopped = alarms["TickStoppedAlarm"]["Properties"]
    assert stopped["TreatMissingData"] == "breaching" and stopped["MetricName"] == "Invocations"
    assert alarms["TickFailedAlarm"]["Properties"]["MetricName"] == "Errors"
    for alarm in alarms.values():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": "AlertsTopic"}]
    tick = template["Resources"]["TickLambdaFunction"]["Properties"]
    assert tick["DeadLetterConfig"]["TargetArn"] == {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}
    assert tick["Handler"] == "handlers/aws_lambda.tick"
    assert "KmsMasterKeyId" in template["Resources"]["DeadLetterQueue"]["Properties"]


@pytest.mark.parametrize("cloud", ["aws", "gcp", "azure"])
def test_deployed_example_policies_encrypt_every_dataset(cloud: str) -> None:
    from cloudkeep.policy import load_policy

    policy = load_policy(str(ROOT / "examples" / f"cloudkeep-{cloud}.yaml")).policy
    assert policy.residency is not None
    for name in policy.datasets:
        keys = policy.encryption_keys(name)
        assert keys and all(policy.keys[k].provider != "local" for k in keys)
    if cloud == "aws":
        assert policy.keys["main"].provider == "aws_kms"


def test_the_lambda_bundle_holds_only_what_aws_needs() -> None:
    assert BUNDLE.exists(), "no bundle: run `make deploy-check` first"
    names = zipfile.ZipFile(BUNDLE).namelist()
    assert "handlers/aws_lambda.py" in names and "shared/cloudkeep/engine.py" in names
    assert any(n.startswith(".build/python/aws_lambda_powertools/") for n in names)
    assert not [n for n in names if n.startswith((".build/python/google", ".build/python/azure",
                                                 ".build/python/botocore", ".build/python/boto3"))]
    # the registry imports every source type's spec: their packages are there, their SDKs not
    assert "shared/cloudkeep/sources/firestore/spec.py" in names
    assert "shared/cloudkeep/sources/cosmos/spec.py" in names
    assert "handlers/aws_capture.py" in names
    assert "shared/cloudkeep/keys/aws_kms.py" in names and "shared/cloudkeep/keys/local.py" in names
    assert "shared/cloudkeep/keys/gcp_kms.py" not in names
    assert any(n.startswith(".build/python/cryptography/") for n in names)
    assert not [n for n in names if n.startswith(("tests/", "node_modules/", ".venv"))]


def _unquote(value: Any) -> Any:
    """python-hcl2 keeps HCL's quotes on block labels and string literals."""
    if isinstance(value, dict):
        return {_unquote(k): _unquote(v) for k, v in value.items() if k != "__is_block__"}
    if isinstance(value, list):
        return [_unquote(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def load_tf(folder: str) -> dict[str, Any]:
    merged: dict[str, Any] = {"resource": {}, "variable": {}}
    for path in sorted((ROOT / "infra" / folder).glob("*.tf")):
        with open(path) as fh:
            doc = _unquote(hcl2.load(fh))
        for block in doc.get("resource", []):
            for kind, named in block.items():
                merged["resource"].setdefault(kind, {}).update(named)
    return merged


def test_gcp_terraform() -> None:
    tf = load_tf("gcp")["resource"]
    job = next(iter(tf["google_cloud_scheduler_job"].values()))
    assert job["schedule"] == "*/15 * * * *"
    assert "google_pubsub_topic" in tf and job["pubsub_target"][0]["topic_name"]
    vault = tf["google_storage_bucket"]["vault"]
    assert vault["versioning"][0]["enabled"] is True
    assert vault["retention_policy"][0]["retention_period"]
    fn = tf["google_cloudfunctions2_function"]
    assert fn["tick"]["build_config"][0]["entry_point"] == "tick"
    assert fn["invoke"]["build_config"][0]["entry_point"] == "invoke"
    assert fn["tick"]["event_trigger"][0]["event_type"] == "google.cloud.pubsub.topic.v1.messagePublished"
    roles = {m["role"] for m in tf["google_project_iam_member"].values()}
    assert roles == {"roles/datastore.viewer", "roles/datastore.user",
                     "${google_project_iam_custom_role.firestore_import.id}",
                     "${google_project_iam_custom_role.firestore_export[0].id}",
                     "${google_project_iam_custom_role.firestore_settings.id}",
                     "roles/eventarc.eventReceiver"}  # capture_firestore: Eventarc delivers as backup
    export = tf["google_project_iam_member"]["firestore_export"]
    assert export["count"] == "${var.firestore_export ? 1 : 0}"
    # the functions use the envelope key only (key-level bindings)
    for binding in tf["google_kms_crypto_key_iam_member"].values():
        if "envelope" in binding["crypto_key_id"]:
            assert binding["role"] in ("roles/cloudkms.cryptoKeyEncrypterDecrypter",
                                       "roles/cloudkms.cryptoKeyDecrypter")
    assert "google_monitoring_alert_policy" in tf


def test_azure_terraform() -> None:
    tf = load_tf("azure")["resource"]
    app = tf["azurerm_linux_function_app"]["role"]
    assert "CLOUDKEEP_TICK" in app["app_settings"] and app["https_only"] is True
    assert app["identity"][0]["type"] == "UserAssigned"
    vault = tf["azurerm_storage_account"]["vault"]
    assert vault["blob_properties"][0]["versioning_enabled"] is True
    assert vault["shared_access_key_enabled"] is False
    assert tf["azurerm_storage_container_immutability_policy"]["vault"]["immutability_period_in_days"]
    roles = {r.get("role_definition_name") for r in tf["azurerm_role_assignment"].values()}
    assert roles == {None, "Storage Blob Data Reader", "Key Vault Crypto User"}  # None: custom roles
    # the envelope key: wrap / unwrap only, and the identities' roles on that one key
    key = tf["azurerm_key_vault_key"]["envelope"]
    assert sorted(key["key_opts"]) == ["unwrapKey", "wrapKey"]
    for name in ("envelope_wrap", "envelope_unwrap"):
        assert "azurerm_key_vault_key.envelope" in tf["azurerm_role_assignment"][name]["scope"]
    assert tf["azurerm_key_vault"]["cloudkeep"]["purge_protection_enabled"] is True
    assert "azurerm_cosmosdb_sql_role_assignment" in tf
    assert len(tf["azurerm_monitor_scheduled_query_rules_alert_v2"]) == 2


def test_watchdog_alarm(template: dict[str, Any]) -> None:
    alarm = template["Resources"]["TickNotReportingAlarm"]["Properties"]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("cloudkeep", "TickCompleted")
    assert alarm["TreatMissingData"] == "breaching" and alarm["ComparisonOperator"] == "LessThanThreshold"
    alarms = resources(template, "AWS::CloudWatch::Alarm")
    for name, function in (("PruneFailedAlarm", "PruneLambdaFunction"), ("VerifyFailedAlarm", "VerifyLambdaFunction")):
        assert alarms[name]["Properties"]["Dimensions"][0]["Value"] == {"Ref": function}


def test_gcp_and_azure_watch_the_documented_metrics() -> None:
    gcp = load_tf("gcp")["resource"]
    metrics = {**gcp["google_logging_metric"]}
    text = json.dumps(metrics)
    for name in ("RpoBreached", "VerificationFailed", "SnapshotAgeSeconds", "RestoreDrillSeconds",
                 "BackupFailed"):
        assert f'jsonPayload.metric=\\"{name}\\"' in text or name in text, name
    policies = json.dumps(gcp["google_monitoring_alert_policy"])
    assert "condition_absent" in policies and "snapshot_age_seconds" in policies
    azure = load_tf("azure")["resource"]["azurerm_monitor_scheduled_query_rules_alert_v2"]
    failures = json.dumps(azure["failures"])
    assert "RpoBreached" in failures and "VerificationFailed" in failures
    assert "SnapshotAgeSeconds" in json.dumps(azure["tick_stopped"])


def test_fan_out_queue_worker_and_dead_letters_on_aws(template: dict[str, Any]) -> None:
    res = template["Resources"]
    queue = res["WorkQueue"]["Properties"]
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["WorkDeadLetterQueue", "Arn"]}
    assert queue["RedrivePolicy"]["maxReceiveCount"] == 5
    assert int(queue["VisibilityTimeout"]) >= int(res["WorkLambdaFunction"]["Properties"]["Timeout"])
    assert "KmsMasterKeyId" in queue and "KmsMasterKeyId" in res["WorkDeadLetterQueue"]["Properties"]
    work = res["WorkLambdaFunction"]["Properties"]
    assert work["Handler"] == "handlers/aws_lambda.work"
    assert work["Environment"]["Variables"]["CLOUDKEEP_WORK_QUEUE"] == {"Fn::Sub": "sqs:${WorkQueue}"}
    mappings = resources(template, "AWS::Lambda::EventSourceMapping").values()
    [mapping] = [m["Properties"] for m in mappings
                 if m["Properties"]["EventSourceArn"] == {"Fn::GetAtt": ["WorkQueue", "Arn"]}]
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": ["WorkQueue", "Arn"]}
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"] and mapping["BatchSize"] == 1
    alarm = res["WorkDeadLettersAlarm"]["Properties"]
    assert alarm["Dimensions"][0]["Value"] == {"Fn::GetAtt": ["WorkDeadLetterQueue", "QueueName"]}


def test_fan_out_on_google_cloud_and_azure() -> None:
    gcp = load_tf("gcp")["resource"]
    work = gcp["google_cloudfunctions2_function"]["work"]
    assert work["build_config"][0]["entry_point"] == "work"
    assert "google_pubsub_topic.work.id" in work["event_trigger"][0]["pubsub_topic"]
    assert "pubsub:" in work["service_config"][0]["environment_variables"]["CLOUDKEEP_WORK_QUEUE"]
    tick_env = gcp["google_cloudfunctions2_function"]["tick"]["service_config"][0]["environment_variables"]
    assert "CLOUDKEEP_WORK_QUEUE" in tick_env
    assert gcp["google_pubsub_topic_iam_member"]["work_publish"]["role"] == "roles/pubsub.publisher"
    azure = load_tf("azure")["resource"]
    assert azure["azurerm_storage_queue"]["work"]["name"] == "cloudkeep-work"
    settings = azure["azurerm_linux_function_app"]["role"]["app_settings"]
    assert settings["CLOUDKEEP_WORK_QUEUE"].startswith("azure_queue:")
    assert "CLOUDKEEP_WORK_QUEUE_NAME" in settings
    host = json.loads((ROOT / "handlers" / "azure" / "host.json").read_text())
    assert host["extensions"]["queues"]["maxDequeueCount"] == 5
