"""Restore anywhere (issue #23 §2-3) through the CLI, on real servers:

- into another AWS account (``--role-arn`` + ``--external-id``, moto server's STS: the table is
  made in the assumed role's account) and another region (moto's DynamoDB keeps regions apart);
- an S3 bucket in another account;
- a target region outside ``residency.allowed_regions``: exit 2, one line, nothing written;
- Firestore into another project (the emulator keeps projects apart);
- an encrypted snapshot restored with only the store and one of its two key providers reachable;
- ``--max-rate 200``: 2,000 items take no less than 10 s (a lower bound, on a monotonic clock);
- ``--capacity-share`` of a provisioned DynamoDB Local table;
- a target that throttles (an HTTP proxy in front of DynamoDB Local answering BatchWriteItem with
  ProvisionedThroughputExceededException, parsed by the real botocore) slows the restore down but
  does not fail it.
"""

from __future__ import annotations

import http.client
import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import REGION, unique, write_policy
from helpers import cli, cli_json, scan_all

pytestmark = pytest.mark.emulator

OTHER_ACCOUNT = "111111111111"
ROLE = f"arn:aws:iam::{OTHER_ACCOUNT}:role/cloudkeep-restore"
EXTERNAL_ID = "ext-7f3a9c21-anywhere"


def assumed(region: str, role: str = ROLE) -> Any:
    """A boto3 session in the role's account (moto's STS: credentials of that account)."""
    import boto3

    creds = boto3.client("sts", region_name=REGION).assume_role(
        RoleArn=role, RoleSessionName="test-oracle")["Credentials"]
    return boto3.Session(aws_access_key_id=creds["AccessKeyId"],
                         aws_secret_access_key=creds["SecretAccessKey"],
                         aws_session_token=creds["SessionToken"], region_name=region)


def seed(client: Any, table: str, n: int, *, pad: int = 0) -> None:
    client.create_table(TableName=table, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                        BillingMode="PAY_PER_REQUEST")
    client.get_waiter("table_exists").wait(TableName=table)
    for start in range(0, n, 25):
        client.batch_write_item(RequestItems={table: [
            {"PutRequest": {"Item": {"pk": {"S": f"item#{i:05d}"}, "n": {"N": str(i)},
                                     "pad": {"S": "x" * pad}}}}
            for i in range(start, min(n, start + 25))]})


def table_names(client: Any) -> list[str]:
    return list(client.list_tables()["TableNames"])


@pytest.fixture
def moto_dynamodb(moto_server: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """DynamoDB on moto server (accounts and regions apart), not DynamoDB Local."""
    import boto3

    monkeypatch.delenv("AWS_ENDPOINT_URL_DYNAMODB", raising=False)
    return boto3.client("dynamodb", region_name=REGION)


def backed_up(tmp_path: Path, capsys: Any, table: str, **policy: Any) -> tuple[str, str]:
    path = write_policy(tmp_path, table=table)
    if policy:
        data = yaml.safe_load(path.read_text())
        data.update(policy)
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    code, out, err = cli(capsys, "--policy", str(path), "run", "orders")
    assert code == 0, out + err
    [row] = cli_json(capsys, "--policy", str(path), "list", "orders")
    return str(path), f"orders@{row['snapshot_id']}"


# ---------------------------------------------------------------------- another account, region


def test_restore_into_another_account_and_region_via_role_arn(
        moto_dynamodb: Any, tmp_path: Path, capsys: Any) -> None:
    import boto3

    table = unique("orders")
    seed(moto_dynamodb, table, 40)
    policy, ref = backed_up(tmp_path, capsys, table)
    target = unique("elsewhere")
    code, out, err = cli(capsys, "--policy", policy, "--format", "json", "restore", ref,
                         "--into", target, "--region", "eu-west-1", "--role-arn", ROLE,
                         "--external-id", EXTERNAL_ID)
    assert code == 0, err
    result = json.loads(out)
    assert result["items"] == 40 and result["content_digest_ok"] is True
    assert result["place"] == {"region": "eu-west-1", "role_arn": ROLE, "external_id": True,
                               "account": OTHER_ACCOUNT}
    # the table is in the assumed role's account, in eu-west-1 — and nowhere else
    other = assumed("eu-west-1").client("dynamodb")
    described = other.describe_table(TableName=target)["Table"]
    assert described["TableArn"].startswith(f"arn:aws:dynamodb:eu-west-1:{OTHER_ACCOUNT}:table/")
    assert scan_all(other, target) == scan_all(moto_dynamodb, table)
    assert target not in table_names(boto3.client("dynamodb", region_name="eu-west-1"))
    assert target not in table_names(moto_dynamodb)
    assert target not in table_names(assumed(REGION).client("dynamodb"))
    # the external id is in no output, log or audit record
    assert EXTERNAL_ID not in out + err
    audit = "".join(p.read_text() for p in (tmp_path / "vault").rglob("*") if p.is_file()
                    and "audit" in str(p))
    assert ROLE in audit and EXTERNAL_ID not in audit

    # the text output says where
    code, out, err = cli(capsys, "--policy", policy, "restore", ref, "--into", unique("again"),
                         "--region", "eu-west-1", "--role-arn", ROLE)
    assert code == 0, err
    assert f"at region eu-west-1, account {OTHER_ACCOUNT}" in out


def test_restore_into_another_region_of_the_same_account(
        moto_dynamodb: Any, tmp_path: Path, capsys: Any) -> None:
    import boto3

    table = unique("orders")
    seed(moto_dynamodb, table, 30)
    policy, ref = backed_up(tmp_path, capsys, table)
    target = unique("west")
    result = cli_json(capsys, "--policy", policy, "restore", ref, "--into", target,
                      "--region", "us-west-2")
    assert result["items"] == 30 and result["place"] == {"region": "us-west-2"}
    west = boto3.client("dynamodb", region_name="us-west-2")
    assert scan_all(west, target) == scan_all(moto_dynamodb, table)
    assert target not in table_names(moto_dynamodb)
    # the Python API takes the options one by one too
    from cloudkeep import services
    from cloudkeep.policy import load_policy

    again = unique("west_api")
    done = services.restore(load_policy(policy).policy, ref, again, region="us-west-2")
    assert done.items == 30 and done.place == {"region": "us-west-2"}
    assert again in table_names(west)


def test_a_profile_that_does_not_exist_fails_before_writing(
        moto_dynamodb: Any, tmp_path: Path, capsys: Any) -> None:
    table = unique("orders")
    seed(moto_dynamodb, table, 5)
    policy, ref = backed_up(tmp_path, capsys, table)
    target = unique("x")
    code, out, err = cli(capsys, "--policy", policy, "restore", ref, "--into", target,
                         "--profile", "no-such-profile-here")
    assert code == 3, out + err
    assert err.strip().splitlines() == [
        "error: cannot use AWS credentials profile no-such-profile-here: The config profile "
        "(no-such-profile-here) could not be found"]
    assert target not in table_names(moto_dynamodb)


def test_residency_refuses_a_target_region_before_anything_is_written(
        moto_dynamodb: Any, tmp_path: Path, capsys: Any) -> None:
    import boto3

    table = unique("orders")
    seed(moto_dynamodb, table, 5)
    policy, ref = backed_up(tmp_path, capsys, table,
                            residency={"allowed_regions": [REGION, "us-west-2"]})
    target = unique("outside")
    before = sorted(str(p) for p in (tmp_path / "vault").rglob("*"))
    for extra in ([], ["--role-arn", ROLE]):
        code, out, err = cli(capsys, "--policy", policy, "restore", ref, "--into", target,
                             "--region", "eu-west-1", *extra)
        assert code == 2, out + err
        assert err.strip().splitlines() == [
            "error: refusing to restore into region 'eu-west-1': outside "
            f"residency.allowed_regions ({REGION}, us-west-2); nothing was written"], err
    assert target not in table_names(boto3.client("dynamodb", region_name="eu-west-1"))
    assert target not in table_names(assumed("eu-west-1").client("dynamodb"))
    assert sorted(str(p) for p in (tmp_path / "vault").rglob("*")) == before  # not even an audit
    # an allowed region restores
    result = cli_json(capsys, "--policy", policy, "restore", ref, "--into", target,
                      "--region", "us-west-2")
    assert result["items"] == 5


def test_an_option_the_source_does_not_take_is_refused(
        moto_dynamodb: Any, tmp_path: Path, capsys: Any) -> None:
    table = unique("orders")
    seed(moto_dynamodb, table, 3)
    policy, ref = backed_up(tmp_path, capsys, table)
    code, _, err = cli(capsys, "--policy", policy, "restore", ref, "--into", unique("x"),
                       "--project", "some-project")
    assert code == 2 and "--project does not apply to a restore of a dynamodb source" in err
    code, _, err = cli(capsys, "--policy", policy, "restore", ref, "--into", unique("x"),
                       "--external-id", "abc123")
    assert code == 2 and "--external-id needs --role-arn" in err


def test_s3_restore_into_a_bucket_in_another_account(moto_server: Any, tmp_path: Path,
                                                     capsys: Any) -> None:
    import boto3

    s3 = boto3.client("s3", region_name=REGION)
    bucket = f"src-{unique('b').replace('_', '-')}"
    s3.create_bucket(Bucket=bucket)
    for i in range(12):
        s3.put_object(Bucket=bucket, Key=f"docs/{i}.txt", Body=f"document {i}".encode() * (i + 1))
    policy = {
        "version": 1,
        "stores": {"vault": {"type": "file", "path": str(tmp_path / "vault")}},
        "tiers": {"t": {"schedule": "0 2 * * *", "rpo": "26h", "retention": {"daily": 7}}},
        "datasets": {"files": {"source": {"type": "s3", "bucket": bucket, "region": REGION},
                               "tier": "t", "store": "vault"}},
    }
    path = tmp_path / "cloudkeep.yaml"
    path.write_text(yaml.safe_dump(policy))
    [row] = cli_json(capsys, "--policy", str(path), "run", "files")
    target = f"dst-{unique('b').replace('_', '-')}"
    result = cli_json(capsys, "--policy", str(path), "restore", f"files@{row['snapshot_id']}",
                      "--into", f"{target}/restored", "--role-arn", ROLE, "--external-id", EXTERNAL_ID)
    assert result["items"] == 12 and result["place"]["account"] == OTHER_ACCOUNT
    theirs = assumed(REGION).client("s3")
    keys = sorted(o["Key"] for o in theirs.list_objects_v2(Bucket=target)["Contents"])
    assert keys == sorted(f"restored/docs/{i}.txt" for i in range(12))
    body = theirs.get_object(Bucket=target, Key="restored/docs/3.txt")["Body"].read()
    assert body == b"document 3" * 4
    assert target not in [b["Name"] for b in s3.list_buckets()["Buckets"]]  # not in ours


# ---------------------------------------------------------------------------- another project


def test_firestore_restore_into_another_project(firestore_emulator: Any, gcp_project: str,
                                                tmp_path: Path, capsys: Any) -> None:
    from fixtures_gcp import FirestoreRest, gcp_policy

    source = FirestoreRest(firestore_emulator.endpoint, gcp_project)
    source.write({f"users/u{i}": {"n": {"integerValue": str(i)}} for i in range(7)})
    policy = str(gcp_policy(tmp_path, project=gcp_project, collections=["users"]))
    [row] = cli_json(capsys, "--policy", policy, "run", "profiles")
    other = f"{gcp_project}-dr"
    result = cli_json(capsys, "--policy", policy, "restore", f"profiles@{row['snapshot_id']}",
                      "--into", "", "--project", other)
    assert result["items"] == 7 and result["place"] == {"project": other}
    restored = FirestoreRest(firestore_emulator.endpoint, other).documents()
    assert restored == source.documents()
    assert len(source.documents()) == 7  # the source project is untouched


# ------------------------------------------------------------------- encryption, one key away


def test_encrypted_snapshot_restores_with_one_key_provider_unreachable(
        moto_server: Any, ddb_client: Any, tmp_path: Path, capsys: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3

    table = unique("orders")
    seed(ddb_client, table, 50)
    kms = boto3.client("kms", region_name=REGION)
    key_id = kms.create_key(Description="anywhere")["KeyMetadata"]["KeyId"]
    bucket = f"vault-{unique('e').replace('_', '-')}"
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=bucket)
    code, _, err = cli(capsys, "keys", "create", "--path", str(tmp_path / "cloudkeep.key"))
    assert code == 0, err
    path = write_policy(tmp_path, table=table, store={"type": "s3", "bucket": bucket, "region": REGION})
    data = yaml.safe_load(path.read_text())
    data["keys"] = {"cloud": {"provider": "aws_kms", "key_id": key_id, "region": REGION},
                    "offline": {"provider": "local", "path": "./cloudkeep.key"}}
    data["encryption"] = {"keys": ["cloud", "offline"]}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    [row] = cli_json(capsys, "--policy", str(path), "run", "orders")
    ref = f"orders@{row['snapshot_id']}"

    # KMS unreachable (nothing listens there): the local key opens the snapshot
    with monkeypatch.context() as m:
        m.setenv("AWS_ENDPOINT_URL_KMS", "http://127.0.0.1:9")
        target = unique("no_kms")
        result = cli_json(capsys, "--policy", str(path), "restore", ref, "--into", target)
        assert result["items"] == 50 and result["content_digest_ok"] is True
        assert scan_all(ddb_client, target) == scan_all(ddb_client, table)
    # the local key file gone: KMS opens it
    (tmp_path / "cloudkeep.key").rename(tmp_path / "elsewhere.key")
    target = unique("no_file")
    result = cli_json(capsys, "--policy", str(path), "restore", ref, "--into", target)
    assert result["items"] == 50
    # both gone: exit 3, naming both
    monkeypatch.setenv("AWS_ENDPOINT_URL_KMS", "http://127.0.0.1:9")
    code, _, err = cli(capsys, "--policy", str(path), "restore", ref, "--into", unique("none"))
    assert code == 3 and "'cloud'" in err and "cloudkeep.key" in err and "Traceback" not in err


# ------------------------------------------------------------------------------- the governor


def test_max_rate_200_takes_at_least_10_s_for_2000_items(ddb_client: Any, tmp_path: Path,
                                                         capsys: Any) -> None:
    table = unique("orders")
    seed(ddb_client, table, 2000)
    policy, ref = backed_up(tmp_path, capsys, table)
    target = unique("governed")
    t0 = time.monotonic()
    result = cli_json(capsys, "--policy", policy, "restore", ref, "--into", target,
                      "--max-rate", "200")
    elapsed = time.monotonic() - t0
    assert result["items"] == 2000 and result["content_digest_ok"] is True
    assert elapsed >= 10.0, elapsed
    assert result["rate"]["max_rate"] == 200 and result["rate"]["basis"] == "--max-rate 200"
    assert len(scan_all(ddb_client, target)) == 2000


def test_capacity_share_of_a_provisioned_target(ddb_client: Any, tmp_path: Path,
                                                capsys: Any) -> None:
    table = unique("orders")
    seed(ddb_client, table, 40)
    policy, ref = backed_up(tmp_path, capsys, table)
    target = unique("provisioned")
    ddb_client.create_table(TableName=target, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                            ProvisionedThroughput={"ReadCapacityUnits": 5, "WriteCapacityUnits": 40})
    ddb_client.get_waiter("table_exists").wait(TableName=target)
    t0 = time.monotonic()
    result = cli_json(capsys, "--policy", policy, "restore", ref, "--into", target,
                      "--capacity-share", "0.5")
    elapsed = time.monotonic() - t0
    assert result["rate"]["max_rate"] == 20
    assert result["rate"]["basis"] == "--capacity-share 0.5 of 40 write units/s, 1 unit(s) per item"
    assert elapsed >= 2.0 and result["items"] == 40
    # an on-demand target: said, not applied
    result = cli_json(capsys, "--policy", policy, "restore", ref, "--into", unique("ondemand"),
                      "--capacity-share", "0.5")
    assert result["rate"]["max_rate"] is None and "not applied" in result["rate"]["basis"]


class ThrottlingProxy:
    """An HTTP proxy to DynamoDB Local that answers the first ``throttles`` BatchWriteItem calls
    as DynamoDB does when a table's write capacity is exceeded (HTTP 400,
    ProvisionedThroughputExceededException) and forwards everything else."""

    def __init__(self, upstream: str, throttles: int) -> None:
        self.upstream = upstream.split("//", 1)[1]
        self.left = throttles
        self.throttled = 0
        self.forwarded_writes = 0
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                action = self.headers.get("X-Amz-Target", "")
                if action.endswith(".BatchWriteItem"):
                    with proxy.lock:
                        throttle = proxy.left > 0
                        if throttle:
                            proxy.left -= 1
                            proxy.throttled += 1
                        else:
                            proxy.forwarded_writes += 1
                    if throttle:
                        self._answer(400, json.dumps({
                            "__type": "com.amazonaws.dynamodb.v20120810#"
                                      "ProvisionedThroughputExceededException",
                            "message": "The level of configured provisioned throughput for the "
                                       "table was exceeded."}).encode())
                        return
                conn = http.client.HTTPConnection(proxy.upstream, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                conn.request("POST", self.path, body=body, headers=headers)
                response = conn.getresponse()
                self._answer(response.status, response.read())
                conn.close()

            def _answer(self, status: int, data: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.0")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ThrottlingProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def throttled_restore(ddb_local: Any, tmp_path: Path, capsys: Any) -> Iterator[tuple[str, str]]:
    table = unique("orders")
    import boto3

    seed(boto3.client("dynamodb", region_name=REGION, endpoint_url=ddb_local.endpoint), table, 300)
    yield backed_up(tmp_path, capsys, table)


def test_a_throttled_target_slows_the_restore_but_does_not_fail_it(
        ddb_local: Any, ddb_client: Any, throttled_restore: tuple[str, str], capsys: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    policy, ref = throttled_restore
    target = unique("throttled")
    with ThrottlingProxy(ddb_local.endpoint, throttles=8) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", proxy.endpoint)
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")  # botocore retries once, then cloudkeep backs off
        code, out, err = cli(capsys, "--policy", policy, "--format", "json", "restore", ref,
                             "--into", target)
    assert code == 0, err
    result = json.loads(out)
    assert proxy.throttled == 8 and proxy.forwarded_writes >= 300 // 25
    assert result["items"] == 300 and result["content_digest_ok"] is True
    assert result["rate"]["throttled"] >= 1 and result["rate"]["throttle_seconds"] > 0
    assert result["rate"]["max_rate"] is None
    assert len(scan_all(ddb_client, target)) == 300


# ------------------------------------------------------------------ another Cosmos DB account


def test_cosmos_restore_into_another_account_with_its_key_from_key_env(
        cosmos_server: Any, cosmos_client: Any, cosmos_database: str, tmp_path: Path, capsys: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from azure.cosmos import PartitionKey
    from tools.emulators_azure import CosmosServer

    from fixtures_azure import cosmos_policy

    container = cosmos_client.get_database_client(cosmos_database).create_container(
        "carts", partition_key=PartitionKey(path="/tenant"))
    for i in range(20):
        container.upsert_item({"id": f"c{i}", "tenant": f"t{i % 3}", "total": i})
    policy = str(cosmos_policy(tmp_path, endpoint=cosmos_server.endpoint, database=cosmos_database,
                               container="carts"))
    [row] = cli_json(capsys, "--policy", policy, "run", "carts")
    ref = f"carts@{row['snapshot_id']}"
    other = CosmosServer().start()  # another account: a server of its own
    try:
        monkeypatch.delenv("COSMOS_KEY")  # the source account's key is not there at all
        monkeypatch.setenv("DR_COSMOS_KEY", other.key)
        code, out, err = cli(capsys, "--policy", policy, "--format", "json", "restore", ref,
                             "--into", "carts", "--endpoint", other.endpoint,
                             "--key-env", "DR_COSMOS_KEY")
        assert code == 0, err
        result = json.loads(out)
        assert result["items"] == 20
        assert result["place"] == {"endpoint": other.endpoint, "key_env": "DR_COSMOS_KEY"}
        assert other.key not in out + err
        restored = other.client().get_database_client(cosmos_database).get_container_client("carts")
        items = sorted((d["id"], d["tenant"], d["total"]) for d in restored.read_all_items())
        assert items == sorted((f"c{i}", f"t{i % 3}", i) for i in range(20))
        # the variable must be set; the key itself is never an option
        code, _, err = cli(capsys, "--policy", policy, "restore", ref, "--into", "again",
                           "--endpoint", other.endpoint, "--key-env", "NOT_SET_ANYWHERE")
        assert code == 2 and "--key-env NOT_SET_ANYWHERE: that environment variable is not set" in err
    finally:
        other.stop()


def test_assumed_role_credentials_are_refreshed_before_they_expire(
        moto_dynamodb: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A restore longer than the role's session keeps writing: when the credentials' clock
    reaches their expiry, botocore assumes the role again (moto's STS) and carries on."""
    from datetime import timedelta

    from cloudkeep.clouds import aws

    access = aws.Access(role_arn=ROLE, external_id=EXTERNAL_ID)
    client = aws.client("dynamodb", "eu-west-2", access=access)
    session_creds = aws.botocore_session(access, "eu-west-2").get_credentials()
    first = session_creds.get_frozen_credentials().access_key
    table = unique("refresh")
    seed(client, table, 3)
    # five minutes before they expire: inside botocore's mandatory refresh window (10 minutes)
    later = aws.credentials_clock() + timedelta(seconds=aws.ROLE_SESSION_SECONDS - 300)
    monkeypatch.setattr(aws, "credentials_clock", lambda: later)
    assert table in table_names(client)  # the call itself refreshed the credentials
    second = session_creds.get_frozen_credentials().access_key
    assert second != first
    assert client.describe_table(TableName=table)["Table"]["TableArn"].startswith(
        f"arn:aws:dynamodb:eu-west-2:{OTHER_ACCOUNT}:")


def test_invoke_restore_takes_the_same_place_and_rate(moto_dynamodb: Any, tmp_path: Path,
                                                      capsys: Any) -> None:
    from cloudkeep.function import invoke
    from cloudkeep.policy import load_policy

    table = unique("orders")
    seed(moto_dynamodb, table, 12)
    path, ref = backed_up(tmp_path, capsys, table, residency={"allowed_regions": [REGION, "us-west-2"]})
    policy = load_policy(path).policy
    target = unique("invoked")
    status, body = invoke(policy, {"action": "restore", "ref": ref, "into": target,
                                   "region": "eu-west-1"})
    assert status == 400 and "outside residency.allowed_regions" in body["error"]
    status, body = invoke(policy, {"action": "restore", "ref": ref, "into": target,
                                   "max_rate": "fast"})
    assert status == 400 and body["error"] == "payload: 'max_rate' must be a number"
    status, body = invoke(policy, {"action": "restore", "ref": ref, "into": target,
                                   "region": "us-west-2", "role_arn": ROLE,
                                   "external_id": EXTERNAL_ID, "max_rate": 1000})
    assert status == 200, body
    assert body["items"] == 12 and body["place"]["account"] == OTHER_ACCOUNT
    assert body["rate"]["max_rate"] == 1000
    assert EXTERNAL_ID not in json.dumps(body)
    assert len(scan_all(assumed("us-west-2").client("dynamodb"), target)) == 12
