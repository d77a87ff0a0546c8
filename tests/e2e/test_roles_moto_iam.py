"""The split roles with IAM enforced (moto server with INITIAL_NO_AUTH_ACTION_COUNT): IAM users
carry exactly the policies of the packaged template's BackupRole and PrunerRole (`make
deploy-check` builds it), then the Lambda handlers run with their credentials — the tick backs
up creating objects only, the backup credentials are refused the delete of a snapshot part,
the pruner's are refused it by Object Lock while the part's retention runs, and once it has
passed (a short retention, waited for by its own retain-until date) the pruner's handler prunes.

What moto does not evaluate here — bucket policies, IAM conditions (the create-only rule, the
key policy) and the Resource of other services' requests — is asserted on the template itself
in test_deploy_roles.py."""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from tools.emulators import MotoServer

from cloudkeep import layout
from cloudkeep.catalog import snapshot_ids
from cloudkeep.stores.s3 import S3Store
from test_deploy import TEMPLATE
from test_deploy_roles import conditions, resolve
from test_handlers import LambdaContext

pytestmark = pytest.mark.emulator

REGION = "us-east-1"
ACCOUNT = "123456789012"
LOCK = 25  # seconds: the tier's retention (within), hence every object's Object Lock


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    assert TEMPLATE.exists(), "no packaged template: run `make deploy-check` (osls package) first"
    return dict(json.loads(TEMPLATE.read_text()))


@pytest.fixture
def iam_moto() -> Iterator[MotoServer]:
    server = MotoServer(iam=True).start()
    yield server
    server.stop()


def render(value: Any, names: dict[str, str]) -> Any:
    """The template's intrinsics with this test's names (Fn::If already resolved)."""
    if isinstance(value, dict):
        if "Fn::Sub" in value:
            text = value["Fn::Sub"]
            text = text.replace("${AWS::Partition}", "aws").replace("${AWS::Region}", REGION)
            text = text.replace("${AWS::AccountId}", ACCOUNT)
            return re.sub(r"\$\{([\w.]+)\}", lambda m: names.get(m.group(1), f"arn:aws:sqs:{REGION}:{ACCOUNT}:{m.group(1)}"), text)
        if "Fn::GetAtt" in value:
            name = ".".join(value["Fn::GetAtt"])
            return names.get(name, f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}")
        if "Ref" in value:
            return names.get(value["Ref"], f"arn:aws:sqs:{REGION}:{ACCOUNT}:{value['Ref']}")
        return {k: render(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, names) for v in value]
    return value


def user_with_role(iam: Any, template: dict[str, Any], role: str, names: dict[str, str]) -> dict[str, str]:
    """An IAM user holding exactly the policies of the template's ``role``."""
    user = f"{role.lower()}-{secrets.token_hex(3)}"
    iam.create_user(UserName=user)
    props = resolve(template["Resources"][role]["Properties"], conditions(template))
    for policy in props["Policies"]:
        document = render(policy["PolicyDocument"], names)
        for statement in document["Statement"]:
            if not any(str(a).startswith("s3:") for a in statement["Action"]):
                # moto checks the Resource of S3 requests only (other services' requests are
                # matched against "*"): those statements keep their actions, on any resource
                statement["Resource"] = "*"
        iam.put_user_policy(UserName=user, PolicyName=policy["PolicyName"], PolicyDocument=json.dumps(document))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    return {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}


POLICY = """\
version: 1
stores:
  vault: {{type: s3, bucket: {vault}, prefix: cloudkeep, region: us-east-1, object_lock: {{mode: GOVERNANCE}}}}
tiers:
  hourly: {{schedule: "0 * * * *", rpo: 2h, retention: {{within: {lock}s}}}}
datasets:
  orders: {{source: {{type: dynamodb, table: orders, region: us-east-1}}, tier: hourly, store: vault, offset: 0m}}
"""


def test_backup_creates_only_and_only_the_pruner_deletes_after_the_lock(
        iam_moto: MotoServer, template: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint = {"endpoint_url": iam_moto.endpoint, "region_name": REGION,
                "aws_access_key_id": "admin", "aws_secret_access_key": "admin"}
    s3, iam, ddb = (boto3.client(n, **endpoint) for n in ("s3", "iam", "dynamodb"))
    vault, config = f"vault-{secrets.token_hex(4)}", f"config-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=vault, ObjectLockEnabledForBucket=True)
    s3.create_bucket(Bucket=config)
    s3.put_object(Bucket=config, Key="cloudkeep.yaml", Body=POLICY.format(vault=vault, lock=LOCK))
    ddb.create_table(TableName="orders", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                     BillingMode="PAY_PER_REQUEST")
    for i in range(20):
        ddb.put_item(TableName="orders", Item={"pk": {"S": f"k{i}"}, "n": {"N": str(i)}})
    names = {"VaultBucket": vault, "VaultBucket.Arn": f"arn:aws:s3:::{vault}",
             "ConfigBucket": config, "ConfigBucket.Arn": f"arn:aws:s3:::{config}"}
    backup = user_with_role(iam, template, "BackupRole", names)
    pruner = user_with_role(iam, template, "PrunerRole", names)
    iam.create_user(UserName="inspector")  # this test's own eyes: reads everything
    iam.put_user_policy(UserName="inspector", PolicyName="all", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    key = iam.create_access_key(UserName="inspector")["AccessKey"]
    iam_moto.enforce_iam()  # from here on, every request is checked against the users' policies
    s3 = boto3.client("s3", endpoint_url=iam_moto.endpoint, region_name=REGION,
                      aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])

    for var in ("AWS_ENDPOINT_URL_DYNAMODB", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", iam_moto.endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("CLOUDKEEP_POLICY", f"s3://{config}/cloudkeep.yaml")
    monkeypatch.delenv("CLOUDKEEP_WORK_QUEUE", raising=False)
    import handlers.aws_lambda as aws_lambda

    def as_role(creds: dict[str, str], name: str) -> None:
        """As the Lambda function ``name`` would run: its own process, its role's credentials."""
        for k, v in creds.items():
            monkeypatch.setenv(k, v)
        monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", f"cloudkeep-{name}")
        monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # it caches the credentials it found

    # The tick, with the backup role's credentials: this hour's slot, one snapshot.
    slot = datetime.now(UTC).replace(minute=5, second=0, microsecond=0)
    as_role(backup, "tick")
    reply = aws_lambda.tick({"time": slot.isoformat()}, LambdaContext())
    assert [d["status"] for d in reply["datasets"]] == ["committed"], reply
    store = S3Store(vault, "cloudkeep", region=REGION, lock_mode="GOVERNANCE", client=s3)
    [first] = snapshot_ids(store, "orders")
    part = next(i.key for i in store.list(layout.snapshot_prefix("orders", first)) if "/part-" in i.key)
    full = f"cloudkeep/{part}"
    version = s3.list_object_versions(Bucket=vault, Prefix=full)["Versions"][0]["VersionId"]
    head = s3.head_object(Bucket=vault, Key=full)
    assert head["ObjectLockMode"] == "GOVERNANCE"
    retain_until = head["ObjectLockRetainUntilDate"]

    # The backup role's credentials cannot delete a snapshot part (nor change the bucket).
    mine = boto3.client("s3", region_name=REGION, **{k.lower(): v for k, v in backup.items()})
    batch = mine.delete_objects(Bucket=vault, Delete={"Objects": [{"Key": full, "VersionId": version}]})
    assert [(e["Key"], e["Code"]) for e in batch["Errors"]] == [(full, "AccessDenied")]
    assert not batch.get("Deleted")
    for attempt in (lambda: mine.delete_object(Bucket=vault, Key=full),
                    lambda: mine.delete_object(Bucket=vault, Key=full, VersionId=version),
                    lambda: mine.put_bucket_lifecycle_configuration(
                        Bucket=vault, LifecycleConfiguration={"Rules": []}),
                    lambda: mine.put_object(Bucket=config, Key="cloudkeep.yaml", Body=b"version: 1")):
        with pytest.raises(ClientError) as refused:
            attempt()
        assert refused.value.response["Error"]["Code"] == "AccessDenied"
    assert s3.head_object(Bucket=vault, Key=full, VersionId=version)["ContentLength"] > 0

    # The pruner's credentials may delete — but not while the part's Object Lock runs.
    theirs = boto3.client("s3", region_name=REGION, **{k.lower(): v for k, v in pruner.items()})
    assert datetime.now(UTC) < retain_until, "the machine was too slow for the test's lock"
    with pytest.raises(ClientError) as locked:
        theirs.delete_object(Bucket=vault, Key=full, VersionId=version)
    assert locked.value.response["Error"]["Code"] == "AccessDenied"
    assert s3.head_object(Bucket=vault, Key=full, VersionId=version)["ContentLength"] > 0

    # Once the part's retain-until date has passed (retention `within` is the lock's length, so
    # the next snapshot, captured after it, leaves the first outside retention), the next slot's
    # tick backs up again and the pruner's handler removes the first snapshot.
    past = retain_until + timedelta(seconds=2)  # and clear of `within`'s inclusive edge
    while datetime.now(UTC) <= past:
        time.sleep(max(0.1, (past - datetime.now(UTC)).total_seconds() + 0.2))
    as_role(backup, "tick")
    reply = aws_lambda.tick({"time": (slot + timedelta(hours=1)).isoformat()}, LambdaContext())
    assert [d["status"] for d in reply["datasets"]] == ["committed"], reply
    first_, second = snapshot_ids(store, "orders")
    assert first_ == first
    as_role(pruner, "prune")
    reply = aws_lambda.prune({"time": (slot + timedelta(hours=1, minutes=5)).isoformat()},
                             LambdaContext())
    [report] = reply["prunes"]
    assert report["removed"] == [first] and report["locked"] == [] and not report["failed"], json.dumps(report)
    assert snapshot_ids(store, "orders") == [second]
    assert s3.list_object_versions(Bucket=vault, Prefix=full).get("Versions", []) == []
    audit = [json.loads(store.get(i.key)) for i in store.list("_audit/")
             if i.key.endswith("-prune.json")]
    assert [(a["event"], a["actor"]["function"]) for a in audit] == [("prune", "cloudkeep-prune")]
