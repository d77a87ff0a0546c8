"""Issue #23 §1 and §5: every setting captured into the manifest and restored (DynamoDB and S3 on
moto server, DynamoDB Local's missing APIs listed, not fatal), ``--settings all|data|none``,
``--dry-run``, old manifests without settings, and drills comparing settings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import REGION, unique, write_policy
from helpers import cli, cli_json, scan_all

pytestmark = pytest.mark.emulator


@pytest.fixture
def moto_ddb(moto_server: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A DynamoDB client on moto (not DynamoDB Local, which another fixture may have set)."""
    import boto3

    monkeypatch.delenv("AWS_ENDPOINT_URL_DYNAMODB", raising=False)
    return boto3.client("dynamodb", region_name=REGION)


def _aas() -> Any:
    import boto3

    return boto3.client("application-autoscaling", region_name=REGION)


def _make_rich_table(client: Any, name: str) -> str:
    """A provisioned table with a GSI and every setting moto keeps: TTL, a stream, tags, PITR,
    deletion protection, SSE with a KMS key, a resource policy, auto-scaling on table and GSI."""
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "g", "AttributeType": "S"}],
        BillingMode="PROVISIONED",
        ProvisionedThroughput={"ReadCapacityUnits": 5, "WriteCapacityUnits": 5},
        GlobalSecondaryIndexes=[{
            "IndexName": "by_g", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
            "Projection": {"ProjectionType": "ALL"},
            "ProvisionedThroughput": {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}}],
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        SSESpecification={"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": "alias/orders-key"},
        Tags=[{"Key": "team", "Value": "payments"}, {"Key": "cost-center", "Value": "42"}],
    )
    arn = client.describe_table(TableName=name)["Table"]["TableArn"]
    client.update_time_to_live(TableName=name, TimeToLiveSpecification={
        "Enabled": True, "AttributeName": "expires_at"})
    client.update_continuous_backups(TableName=name, PointInTimeRecoverySpecification={
        "PointInTimeRecoveryEnabled": True})
    client.put_resource_policy(ResourceArn=arn, Policy=json.dumps({
        "Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
            "Action": "dynamodb:GetItem", "Resource": arn}]}))
    aas = _aas()
    for resource, dimension, low, high in (
            (f"table/{name}", "dynamodb:table:WriteCapacityUnits", 5, 50),
            (f"table/{name}", "dynamodb:table:ReadCapacityUnits", 5, 80),
            (f"table/{name}/index/by_g", "dynamodb:index:ReadCapacityUnits", 5, 40)):
        aas.register_scalable_target(ServiceNamespace="dynamodb", ResourceId=resource,
                                     ScalableDimension=dimension, MinCapacity=low, MaxCapacity=high)
    aas.put_scaling_policy(
        PolicyName="writes", ServiceNamespace="dynamodb", ResourceId=f"table/{name}",
        ScalableDimension="dynamodb:table:WriteCapacityUnits", PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": 70.0, "ScaleInCooldown": 60, "ScaleOutCooldown": 60,
            "PredefinedMetricSpecification": {"PredefinedMetricType": "DynamoDBWriteCapacityUtilization"}})
    aas.put_scaling_policy(
        PolicyName="index-reads", ServiceNamespace="dynamodb", ResourceId=f"table/{name}/index/by_g",
        ScalableDimension="dynamodb:index:ReadCapacityUnits", PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": 55.0,
            "PredefinedMetricSpecification": {"PredefinedMetricType": "DynamoDBReadCapacityUtilization"}})
    client.update_table(TableName=name, DeletionProtectionEnabled=True)
    for i in range(30):
        client.put_item(TableName=name, Item={"pk": {"S": f"k{i:03}"}, "g": {"S": f"g{i % 3}"},
                                              "expires_at": {"N": str(2_000_000_000 + i)}})
    return str(arn)


def signed_policy(tmp_path: Path, table: str) -> Path:
    """``write_policy``'s policy with signed manifests (a local key): a resource policy is
    restored only from an authenticated manifest."""
    from cloudkeep.keys.local import create_key_file

    path = write_policy(tmp_path, table=table)
    doc = yaml.safe_load(path.read_text())
    create_key_file(tmp_path / "one.key")
    doc["keys"] = {"one": {"provider": "local", "path": str(tmp_path / "one.key")}}
    doc["signing"] = {"keys": ["one"]}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _settings_by_sdk(client: Any, name: str) -> dict[str, Any]:
    """A table's settings read with plain boto3 calls, independently of cloudkeep's reader; the
    auto-scaling resources relative to the table so two tables compare."""
    table = client.describe_table(TableName=name)["Table"]
    arn = table["TableArn"]
    ttl = client.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    pitr = client.describe_continuous_backups(TableName=name)["ContinuousBackupsDescription"]
    tags = client.list_tags_of_resource(ResourceArn=arn)["Tags"]
    policy = json.loads(client.get_resource_policy(ResourceArn=arn)["Policy"])
    for statement in policy["Statement"]:
        statement["Resource"] = statement["Resource"].replace(arn, "<the table>")
    aas = _aas()
    ids = [f"table/{name}", f"table/{name}/index/by_g"]
    targets = sorted(
        (t["ResourceId"].replace(f"table/{name}", "T"), t["ScalableDimension"], t["MinCapacity"],
         t["MaxCapacity"])
        for t in aas.describe_scalable_targets(ServiceNamespace="dynamodb", ResourceIds=ids)["ScalableTargets"])
    policies = sorted(
        (p["PolicyName"], p["ResourceId"].replace(f"table/{name}", "T"), p["ScalableDimension"],
         p["PolicyType"], json.dumps(p["TargetTrackingScalingPolicyConfiguration"], sort_keys=True))
        for rid in ids
        for p in aas.describe_scaling_policies(ServiceNamespace="dynamodb", ResourceId=rid)["ScalingPolicies"])
    return {
        "ttl": (ttl["TimeToLiveStatus"], ttl.get("AttributeName")),
        "stream": table.get("StreamSpecification"),
        "tags": sorted((t["Key"], t["Value"]) for t in tags),
        "pitr": pitr["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"],
        "deletion_protection": table.get("DeletionProtectionEnabled"),
        "sse": (table.get("SSEDescription") or {}).get("SSEType"),
        "sse_key": (table.get("SSEDescription") or {}).get("KMSMasterKeyArn"),
        "resource_policy": policy,
        "scalable_targets": targets,
        "scaling_policies": policies,
    }


def _unprotect(client: Any, name: str) -> None:
    client.update_table(TableName=name, DeletionProtectionEnabled=False)


def test_a_restored_table_has_the_source_tables_settings_field_by_field(
        moto_ddb: Any, tmp_path: Path, capsys: Any) -> None:
    table = unique("settings_src")
    _make_rich_table(moto_ddb, table)
    policy = signed_policy(tmp_path, table)
    assert cli_json(capsys, "--policy", str(policy), "run", "orders")[0]["status"] == "committed"

    show = cli_json(capsys, "--policy", str(policy), "show", "orders@latest")
    recorded = show["source"]["settings"]
    assert show["settings"] == recorded
    assert recorded["ttl"] == {"enabled": True, "attribute": "expires_at"}
    assert recorded["stream"] == {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    assert recorded["tags"] == {"cost-center": "42", "team": "payments"}
    assert recorded["pitr"]["enabled"] is True
    assert recorded["deletion_protection"] is True
    assert recorded["sse"]["SSEType"] == "KMS"
    assert [t["resource"] for t in recorded["auto_scaling"]["targets"]] == ["index/by_g", "table", "table"]
    # moto has no contributor insights: recorded as unreadable, the backup went on
    assert recorded["contributor_insights"].startswith("unreadable: ")

    target = unique("settings_dst")
    data = cli_json(capsys, "--policy", str(policy), "restore", "orders@latest", "--into", target)
    assert data["items"] == 30
    assert scan_all(moto_ddb, target) == scan_all(moto_ddb, table)
    outcome = data["settings"]
    assert outcome["mode"] == "all" and outcome["recorded"] is True
    assert set(outcome["applied"]) == {"sse", "on_demand_throughput", "stream", "ttl", "pitr", "tags",
                                       "resource_policy", "auto_scaling", "deletion_protection"}
    assert [e["setting"] for e in outcome["not_applied"]] == ["contributor_insights"]
    assert "could not read it" in outcome["not_applied"][0]["reason"]

    source_settings = _settings_by_sdk(moto_ddb, table)
    restored_settings = _settings_by_sdk(moto_ddb, target)
    for name, value in source_settings.items():
        assert restored_settings[name] == value, name
    table_state = moto_ddb.describe_table(TableName=target)["Table"]
    assert table_state["TableStatus"] == "ACTIVE"
    assert all(g["IndexStatus"] == "ACTIVE" for g in table_state["GlobalSecondaryIndexes"])
    _unprotect(moto_ddb, target)

    code, out, _ = cli(capsys, "--policy", str(policy), "show", "orders@latest")
    assert code == 0 and "(unreadable: contributor_insights)" in out and "deletion_protection" in out
    # the text output lists what was not applied, with the reason
    code, out, err = cli(capsys, "--policy", str(policy), "restore", "orders@latest", "--into",
                         unique("settings_txt"))
    assert code == 0, err
    assert "setting NOT applied: contributor_insights: the backup could not read it" in out

    # the audit record of the restore carries the outcome too
    _unprotect(moto_ddb, table)


def test_settings_none_and_data_and_dry_run(moto_ddb: Any, tmp_path: Path, capsys: Any) -> None:
    table = unique("settings_modes")
    _make_rich_table(moto_ddb, table)
    policy = write_policy(tmp_path, table=table)
    cli_json(capsys, "--policy", str(policy), "run", "orders")

    plain = unique("settings_none")
    data = cli_json(capsys, "--policy", str(policy), "restore", "orders@latest", "--into", plain,
                    "--settings", "none")
    assert data["settings"]["applied"] == [] and "ttl" in data["settings"]["skipped"]
    restored = _settings_by_sdk_loose(moto_ddb, plain)
    assert restored["ttl"] == "DISABLED" and restored["tags"] == [] and not restored["protected"]

    shaped = unique("settings_data")
    data = cli_json(capsys, "--policy", str(policy), "restore", "orders@latest", "--into", shaped,
                    "--settings", "data")
    # an unsigned manifest: its KMS key is not chosen for the target (it could be another
    # account's); the table gets AWS-owned encryption and sse is listed
    assert data["settings"]["applied"] == ["ttl"]
    assert "sse" in {e["setting"] for e in data["settings"]["not_applied"]}
    assert "tags" in data["settings"]["skipped"] and "deletion_protection" in data["settings"]["skipped"]
    restored = _settings_by_sdk_loose(moto_ddb, shaped)
    assert restored["ttl"] == "ENABLED" and restored["tags"] == [] and not restored["protected"]

    ghost = unique("settings_dry")
    plan = cli_json(capsys, "--policy", str(policy), "restore", "orders@latest", "--into", ghost,
                    "--dry-run")
    assert plan["dry_run"] is True
    assert "ttl" in plan["settings"]["to_apply"] and "deletion_protection" in plan["settings"]["to_apply"]
    # an unsigned manifest: the resource policy (it grants access) is listed, not applied
    assert sorted(e["setting"] for e in plan["settings"]["not_applied"]) == [
        "contributor_insights", "resource_policy", "sse"]
    assert "resource_policy" not in plan["settings"]["to_apply"]
    assert ghost not in moto_ddb.list_tables()["TableNames"], "a dry run writes nothing"
    code, out, _ = cli(capsys, "--policy", str(policy), "restore", "orders@latest", "--into", ghost,
                       "--dry-run")
    assert code == 0 and "would apply" in out and "nothing written" in out
    code, _, err = cli(capsys, "--policy", str(policy), "restore", "orders@latest", "--into", ghost,
                       "--settings", "some")
    assert code == 2 and "--settings" in err
    _unprotect(moto_ddb, table)


def _settings_by_sdk_loose(client: Any, name: str) -> dict[str, Any]:
    table = client.describe_table(TableName=name)["Table"]
    return {
        "ttl": client.describe_time_to_live(TableName=name)["TimeToLiveDescription"]["TimeToLiveStatus"],
        "tags": client.list_tags_of_resource(ResourceArn=table["TableArn"])["Tags"],
        "protected": bool(table.get("DeletionProtectionEnabled")),
    }


def test_a_drill_restores_settings_and_fails_naming_a_mismatch(
        moto_ddb: Any, tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    table = unique("settings_drill")
    _make_rich_table(moto_ddb, table)
    policy = signed_policy(tmp_path, table)
    cli_json(capsys, "--policy", str(policy), "run", "orders")
    before = set(moto_ddb.list_tables()["TableNames"])

    report = cli_json(capsys, "--policy", str(policy), "verify", "orders@latest", "--level", "drill")
    assert report["ok"] is True, report
    assert report["cleaned_up"] is True
    assert set(moto_ddb.list_tables()["TableNames"]) == before, "the protected scratch table is gone"
    assert "ttl" in report["settings"]["applied"]
    # the report's last drill names the settings its restore did not apply
    rows = cli_json(capsys, "--policy", str(policy), "report")
    rows = rows["datasets"] if isinstance(rows, dict) else rows
    assert rows[0]["last_drill"]["settings_not_applied"] == ["contributor_insights"]

    # a target that keeps another TTL attribute than the one applied: the drill names it
    from cloudkeep.sources.dynamodb import settings as ddb_settings

    real = ddb_settings.read

    def drifted(*args: Any) -> dict[str, Any]:
        out = real(*args)
        out["ttl"] = {"enabled": True, "attribute": "other"}
        return out

    monkeypatch.setattr(ddb_settings, "read", drifted)
    monkeypatch.setattr("cloudkeep.sources.dynamodb.source.read_settings", drifted)
    code, out, _ = cli(capsys, "--policy", str(policy), "verify", "orders@latest", "--level", "drill")
    assert code == 1
    assert "ttl" in out and "settings" in out
    _unprotect(moto_ddb, table)


def test_dynamodb_local_restores_and_lists_what_it_lacks(
        ddb_client: Any, tmp_path: Path, capsys: Any) -> None:
    table = unique("settings_local")
    ddb_client.create_table(
        TableName=table, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"})
    ddb_client.update_time_to_live(TableName=table, TimeToLiveSpecification={
        "Enabled": True, "AttributeName": "ttl"})
    for i in range(5):
        ddb_client.put_item(TableName=table, Item={"pk": {"S": str(i)}})
    policy = write_policy(tmp_path, table=table)
    assert cli_json(capsys, "--policy", str(policy), "run", "orders")[0]["status"] == "committed"
    recorded = cli_json(capsys, "--policy", str(policy), "show", "orders@latest")["source"]["settings"]
    assert recorded["ttl"] == {"enabled": True, "attribute": "ttl"}
    assert recorded["stream"] == {"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"}

    target = unique("settings_local_dst")
    data = cli_json(capsys, "--policy", str(policy), "restore", "orders@latest", "--into", target)
    assert data["items"] == 5
    settings = data["settings"]
    accounted = set(settings["applied"]) | {e["setting"] for e in settings["not_applied"]}
    assert accounted == set(recorded), "every recorded setting is applied or listed"
    assert {"ttl", "stream"} <= set(settings["applied"])
    assert ddb_client.describe_time_to_live(TableName=target)["TimeToLiveDescription"][
        "AttributeName"] == "ttl"
    assert ddb_client.describe_table(TableName=target)["Table"]["StreamSpecification"] == {
        "StreamEnabled": True, "StreamViewType": "KEYS_ONLY"}


def test_an_old_manifest_without_settings_restores_and_says_so(
        ddb_client: Any, tmp_path: Path, capsys: Any) -> None:
    from cloudkeep.restore_settings import apply, plan
    from cloudkeep.sources.dynamodb import DynamoDBSource

    source = DynamoDBSource("anything", REGION, client=ddb_client)
    old = {"type": "dynamodb", "table": "anything", "key_schema": []}
    outcome = apply(source, old, "never-touched", "all")
    assert outcome.recorded is False and outcome.applied == []
    assert "none recorded" in (outcome.note or "")
    assert plan(source, old, "all").as_dict()["recorded"] is False


def _s3() -> Any:
    import boto3

    return boto3.client("s3", region_name=REGION)


def _bucket_settings(s3: Any, bucket: str) -> dict[str, Any]:
    lifecycle = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    return {
        "versioning": s3.get_bucket_versioning(Bucket=bucket).get("Status"),
        "lifecycle": sorted(json.dumps(r, sort_keys=True, default=str) for r in lifecycle),
        "tags": sorted((t["Key"], t["Value"]) for t in s3.get_bucket_tagging(Bucket=bucket)["TagSet"]),
        "cors": s3.get_bucket_cors(Bucket=bucket)["CORSRules"],
        "encryption": s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"],
    }


def test_an_s3_restore_gets_the_buckets_versioning_lifecycle_and_tags(
        moto_server: Any, tmp_path: Path, capsys: Any) -> None:
    s3 = _s3()
    bucket = f"settings-src-{unique('b').split('_')[1]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [
        {"ID": "old-logs", "Status": "Enabled", "Filter": {"Prefix": "logs/"},
         "Expiration": {"Days": 30}},
        {"ID": "noncurrent", "Status": "Enabled", "Filter": {"Prefix": ""},
         "NoncurrentVersionExpiration": {"NoncurrentDays": 7}}]})
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": "team", "Value": "web"},
                                                             {"Key": "env", "Value": "prod"}]})
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [
        {"AllowedMethods": ["GET"], "AllowedOrigins": ["https://example.com"], "MaxAgeSeconds": 300}]})
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [
        {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
    for i in range(4):
        s3.put_object(Bucket=bucket, Key=f"logs/{i}.txt", Body=f"line {i}".encode())
    policy_doc = {
        "version": 1,
        "stores": {"vault": {"type": "file", "path": str(tmp_path / "vault")}},
        "tiers": {"standard": {"schedule": "0 2 * * *", "rpo": "26h", "retention": {"daily": 7}}},
        "datasets": {"site": {"source": {"type": "s3", "bucket": bucket, "region": REGION},
                              "tier": "standard", "store": "vault"}},
    }
    policy = tmp_path / "cloudkeep.yaml"
    policy.write_text(yaml.safe_dump(policy_doc))
    assert cli_json(capsys, "--policy", str(policy), "run", "site")[0]["status"] == "committed"
    recorded = cli_json(capsys, "--policy", str(policy), "show", "site@latest")["source"]["settings"]
    assert recorded["versioning"] == "Enabled" and recorded["tags"] == {"env": "prod", "team": "web"}

    target = f"settings-dst-{unique('b').split('_')[1]}"
    data = cli_json(capsys, "--policy", str(policy), "restore", "site@latest", "--into", target)
    assert data["items"] == 4
    assert {"versioning", "lifecycle", "tags", "cors", "encryption"} <= set(data["settings"]["applied"])
    assert _bucket_settings(s3, target) == _bucket_settings(s3, bucket)

    # into a prefix of a bucket: bucket-wide settings are listed, never applied to the bucket
    shared = f"settings-shr-{unique('b').split('_')[1]}"
    s3.create_bucket(Bucket=shared)
    data = cli_json(capsys, "--policy", str(policy), "restore", "site@latest", "--into", f"{shared}/copy")
    assert data["settings"]["applied"] == []
    reasons = {e["setting"]: e["reason"] for e in data["settings"]["not_applied"]}
    assert set(reasons) >= {"versioning", "lifecycle", "tags"} and "prefix" in reasons["lifecycle"]
    assert s3.get_bucket_versioning(Bucket=shared).get("Status") is None
    # and a dry run says so beforehand, as the restore would
    plan = cli_json(capsys, "--policy", str(policy), "restore", "site@latest", "--into",
                    f"{shared}/again", "--dry-run")
    assert plan["settings"]["to_apply"] == []
    assert {e["setting"] for e in plan["settings"]["not_applied"]} >= {"versioning", "lifecycle", "tags"}
    whole = cli_json(capsys, "--policy", str(policy), "restore", "site@latest", "--into",
                     f"settings-new-{unique('b').split('_')[1]}", "--dry-run")
    assert {"versioning", "lifecycle", "tags"} <= set(whole["settings"]["to_apply"])


INDEXING = {
    "indexingMode": "consistent", "automatic": True,
    "includedPaths": [{"path": "/customer/*"}],
    "excludedPaths": [{"path": "/*"}, {"path": "/\"_etag\"/?"}],
}


def test_a_cosmos_container_restores_its_indexing_policy_ttl_and_unique_keys(
        cosmos_server: Any, cosmos_client: Any, cosmos_database: str, tmp_path: Path,
        capsys: Any) -> None:
    from azure.cosmos import PartitionKey

    from fixtures_azure import cosmos_policy

    database = cosmos_client.get_database_client(cosmos_database)
    container = database.create_container(
        "carts", partition_key=PartitionKey(path="/customer"), indexing_policy=INDEXING,
        default_ttl=3600, unique_key_policy={"uniqueKeys": [{"paths": ["/email"]}]})
    for i in range(6):
        container.upsert_item({"id": f"c{i}", "customer": f"u{i % 2}", "email": f"{i}@x.test", "sku": f"s{i}"})
    policy = cosmos_policy(tmp_path, endpoint=cosmos_server.endpoint, database=cosmos_database,
                           container="carts")
    assert cli_json(capsys, "--policy", str(policy), "run", "carts")[0]["status"] == "committed"
    recorded = cli_json(capsys, "--policy", str(policy), "show", "carts@latest")["source"]["settings"]
    assert recorded["default_ttl"] == 3600
    assert recorded["unique_keys"]["uniqueKeys"][0]["paths"] == ["/email"]
    # the emulator does not report throughput: recorded as unreadable, the backup went on
    assert str(recorded["throughput"]).startswith("unreadable: ")

    data = cli_json(capsys, "--policy", str(policy), "restore", "carts@latest", "--into", "carts-copy")
    assert data["items"] == 6
    assert {"indexing_policy", "default_ttl", "unique_keys", "partition_key"} <= set(data["settings"]["applied"])
    assert [e["setting"] for e in data["settings"]["not_applied"]] == ["throughput"]
    source = container.read()
    restored = database.get_container_client("carts-copy").read()
    for field in ("indexingPolicy", "defaultTtl", "uniqueKeyPolicy", "partitionKey"):
        assert restored.get(field) == source.get(field), field

    bare = cli_json(capsys, "--policy", str(policy), "restore", "carts@latest", "--into", "carts-bare",
                    "--settings", "none")
    assert bare["settings"]["applied"] == []
    plain = database.get_container_client("carts-bare").read()
    assert plain.get("defaultTtl") is None
    assert not (plain.get("uniqueKeyPolicy") or {}).get("uniqueKeys")

    # an existing target with other unique keys: restored with --overwrite, the difference listed
    database.create_container("carts-other", partition_key=PartitionKey(path="/customer"),
                              unique_key_policy={"uniqueKeys": [{"paths": ["/sku"]}]})
    other = cli_json(capsys, "--policy", str(policy), "restore", "carts@latest", "--into",
                     "carts-other", "--overwrite")
    reasons = {e["setting"]: e["reason"] for e in other["settings"]["not_applied"]}
    assert "unique_keys" in reasons and "fixed when a container is created" in reasons["unique_keys"]
    assert "default_ttl" in other["settings"]["applied"]
    assert database.get_container_client("carts-other").read().get("defaultTtl") == 3600


def test_firestore_on_the_emulator_records_and_lists_what_its_admin_api_lacks(
        gcp_project: str, tmp_path: Path, capsys: Any) -> None:
    from google.cloud import firestore

    from fixtures_gcp import gcp_policy

    client = firestore.Client(project=gcp_project)
    for i in range(3):
        client.collection("users").document(f"u{i}").set({"n": i})
    policy = gcp_policy(tmp_path, project=gcp_project, collections=["users"])
    assert cli_json(capsys, "--policy", str(policy), "run", "profiles")[0]["status"] == "committed"
    recorded = cli_json(capsys, "--policy", str(policy), "show", "profiles@latest")["source"]["settings"]
    assert set(recorded) == {"indexes", "ttl_fields"}
    assert all(str(v).startswith("unreadable: ") and "emulator" in str(v) for v in recorded.values())

    data = cli_json(capsys, "--policy", str(policy), "restore", "profiles@latest", "--into", "copy_")
    assert data["items"] == 3
    assert sorted(e["setting"] for e in data["settings"]["not_applied"]) == ["indexes", "ttl_fields"]
    code, out, _ = cli(capsys, "--policy", str(policy), "restore", "profiles@latest", "--into",
                       "again_")
    assert code == 0 and "setting NOT applied: indexes: the backup could not read it" in out


def test_a_damaged_settings_record_is_listed_not_fatal(ddb_client: Any) -> None:
    from cloudkeep.restore_settings import apply
    from cloudkeep.sources.dynamodb import DynamoDBSource

    target = unique("settings_damaged")
    ddb_client.create_table(
        TableName=target, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST")
    source = DynamoDBSource("anything", REGION, client=ddb_client)
    recorded = {"type": "dynamodb", "settings": {
        "ttl": {"enabled": True},                      # no attribute
        "tags": ["not", "a", "mapping"],
        "stream": "garbage",
        "deletion_protection": False,
        "made_up_setting": {"x": 1},
    }}
    outcome = apply(source, recorded, target, "all")
    reasons = dict(outcome.not_applied)
    assert set(reasons) == {"ttl", "tags", "stream", "made_up_setting"}
    assert "not usable" in reasons["ttl"] and "does not know" in reasons["made_up_setting"]
    assert outcome.applied == ["deletion_protection"]
    assert ddb_client.describe_time_to_live(TableName=target)["TimeToLiveDescription"][
        "TimeToLiveStatus"] == "DISABLED"


def test_a_forged_ttl_on_a_key_or_absurd_auto_scaling_is_refused(ddb_client: Any) -> None:
    """A recorded TTL on a key attribute (it would expire restored items) and auto-scaling
    capacities outside 1..40,000 are listed as not applied; the table keeps its items."""
    from cloudkeep.restore_settings import apply
    from cloudkeep.sources.dynamodb import DynamoDBSource

    target = unique("settings_forged")
    ddb_client.create_table(
        TableName=target, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                     {"AttributeName": "at", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "at", "AttributeType": "N"}],
        BillingMode="PAY_PER_REQUEST")
    ddb_client.put_item(TableName=target, Item={"pk": {"S": "a"}, "at": {"N": "1"}})
    source = DynamoDBSource("anything", REGION, client=ddb_client)
    recorded = {"type": "dynamodb", "settings": {
        "ttl": {"enabled": True, "attribute": "at"},
        "auto_scaling": {"targets": [{"resource": "table", "min": 1, "max": 10_000_000,
                                      "dimension": "dynamodb:table:WriteCapacityUnits"}],
                         "policies": []},
    }}
    outcome = apply(source, recorded, target, "all")
    reasons = dict(outcome.not_applied)
    assert set(reasons) == {"ttl", "auto_scaling"} and outcome.applied == []
    assert "key attribute" in reasons["ttl"] and "outside 1..40000" in reasons["auto_scaling"]
    assert ddb_client.describe_time_to_live(TableName=target)["TimeToLiveDescription"][
        "TimeToLiveStatus"] == "DISABLED"
    assert ddb_client.scan(TableName=target)["Count"] == 1
