"""The spec seam (issue #20): every source, store and key type is known through its spec class in
``cloudkeep.registry``; the policy's unions, the per-type rules the core asks (native jobs,
client-side encryption, blobs, chains, line checks, secrets, policy URLs, path resolution) and
``spec.open()`` all come from there."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cloudkeep import blobs, registry, trust
from cloudkeep.errors import UsageError
from cloudkeep.manifest import Manifest
from cloudkeep.policy import Policy, load_policy, parse_policy
from cloudkeep.queues import open_queue
from cloudkeep.redaction import secret_values
from cloudkeep.specs import KeyModel, SourceModel, StoreModel
from cloudkeep.stores.file import FileStore


def test_the_registry_names_every_type_once_in_the_schema_order() -> None:
    assert list(registry.SOURCES) == ["dynamodb", "firestore", "cosmos", "s3", "rds"]
    assert list(registry.STORES) == ["file", "s3", "gcs", "azure_blob"]
    assert list(registry.KEYS) == ["aws_kms", "gcp_kms", "azure_key_vault", "local"]
    assert list(registry.URL_SCHEMES) == ["s3", "gs", "az"]
    for table, base in ((registry.SOURCES, SourceModel), (registry.STORES, StoreModel),
                        (registry.KEYS, KeyModel)):
        for name, cls in table.items():
            assert issubclass(cls, base) and cls.type_name() == name
    assert registry.source_spec("nosuch") is None and registry.store_spec("dynamodb") is None


def test_the_policy_unions_are_the_registrys_classes() -> None:
    schema = Policy.model_json_schema()
    unions = [(schema["$defs"]["Dataset"]["properties"]["source"], registry.SOURCES),
              (schema["properties"]["stores"]["additionalProperties"], registry.STORES),
              (schema["properties"]["keys"]["additionalProperties"], registry.KEYS)]
    for union, table in unions:
        mapping = union["discriminator"]["mapping"]
        assert {k: ref.rsplit("/", 1)[-1] for k, ref in mapping.items()} == {
            k: c.__name__ for k, c in table.items()}
        assert [o["$ref"].rsplit("/", 1)[-1] for o in union["oneOf"]] == [c.__name__ for c in table.values()]


POLICY = """\
version: 1
stores:
  local: {type: file, path: ./vault}
  lake: {type: s3, bucket: my-lake, region: eu-west-1}
  blob: {type: azure_blob, container: backups, account_url: "https://acct.blob.core.windows.net",
         connection_string_env: MY_AZ_CONN}
tiers:
  t: {schedule: "0 2 * * *", rpo: 26h, retention: {daily: 7}}
keys:
  k: {provider: local, path: keys/k.key}
datasets:
  scan: {source: {type: dynamodb, table: orders, region: eu-west-1}, tier: t, store: local}
  export: {source: {type: dynamodb, table: orders, region: eu-west-1, method: export}, tier: t, store: lake}
  db: {source: {type: rds, instance: db1, region: eu-west-1}, tier: t, store: local}
  objects: {source: {type: s3, bucket: my-src, region: eu-west-1}, tier: t, store: local}
  docs: {source: {type: cosmos, endpoint: "https://x.documents.azure.com", database: d, container: c,
                  key_env: MY_COSMOS_KEY, incremental: true}, tier: t, store: blob}
"""


def test_type_rules_come_from_the_specs(tmp_path: Path) -> None:
    policy = parse_policy(POLICY, base_dir=tmp_path)
    source = {name: ds.source for name, ds in policy.datasets.items()}
    assert [n for n, s in source.items() if s.runs_native_jobs()] == ["export", "db"]
    assert [n for n, s in source.items() if trust.client_side_encrypted(s)] == ["scan", "docs"]
    assert [n for n, s in source.items() if s.CHAINS] == ["docs"]
    assert [n for n, s in source.items() if s.USES_BLOBS] == ["objects"]
    assert [n for n, s in policy.stores.items() if s.locks_objects()] == []
    # relative paths resolved against the policy's folder, by each spec
    assert policy.stores["local"].open().describe() == str(FileStore(tmp_path / "vault").describe())
    assert Path(policy.keys["k"].path) == tmp_path / "keys/k.key"  # type: ignore[attr-defined]


def test_secrets_named_by_specs_are_redacted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MY_COSMOS_KEY", "cosmos-secret-value")
    monkeypatch.setenv("MY_AZ_CONN", "AccountName=acct;AccountKey=az-secret-value")
    policy = parse_policy(POLICY, base_dir=tmp_path)
    assert secret_values(policy) == ["AccountName=acct;AccountKey=az-secret-value", "cosmos-secret-value"]


def _manifest(source_type: str) -> Manifest:
    return Manifest.model_construct(source={"type": source_type})


@pytest.mark.parametrize(("kind", "uses"), [("s3", True), ("dynamodb", False), ("future-type", False)])
def test_blobs_are_known_by_the_manifests_source_type(kind: str, uses: bool) -> None:
    assert blobs.uses_blobs(_manifest(kind)) is uses


@pytest.mark.parametrize(("kind", "good", "bad", "message"), [
    ("dynamodb", {"Item": {"id": {"S": "1"}}}, {"id": 1}, "not a DynamoDB item"),
    ("firestore", {"name": "p/d/c/x", "fields": {}}, {"name": "x"}, "not a Firestore document"),
    ("cosmos", {"item": {"id": "a"}, "partition_key": ["a"]}, {"item": {"id": "a"}}, "not a Cosmos DB item"),
    ("s3", {"key": "a", "size": 1, "sha256": "0" * 64}, {"key": "a", "size": 1}, "not an S3 object record"),
    ("rds", {"anything": 1}, [1], "not a JSON object"),
    ("unknown", {}, "text", "not a JSON object"),
])
def test_line_checks_come_from_the_source_spec(kind: str, good: Any, bad: Any, message: str) -> None:
    check = registry.line_check(kind)
    assert check(json.loads(json.dumps(good))) is None
    problem = check(bad)
    assert problem is not None and message in problem


def test_cosmos_deletion_lines_need_an_id() -> None:
    check = registry.line_check("cosmos")
    assert check({"delete": True, "id": "x", "partition_key": ["x"]}) is None
    assert check({"delete": True, "partition_key": ["x"]}) == "deletion line without an id"


@pytest.mark.parametrize(("url", "message"), [
    ("s3://bucket-only", "bad policy URL 's3://bucket-only' (expected s3://BUCKET/KEY)"),
    ("gs://b//k", "bad policy URL 'gs://b//k' (expected gs://BUCKET/KEY)"),
    ("az://acct/container", "(expected az://ACCOUNT/CONTAINER/KEY)"),
    ("s3://Bad_Bucket/k", "bad policy URL 's3://Bad_Bucket/k': Value error, bad S3 bucket name"),
    ("ftp://host/x", "cannot read a policy from ftp:// (supported: a local path, s3://, gs://, az://)"),
])
def test_policy_urls_are_read_through_the_store_specs(url: str, message: str) -> None:
    with pytest.raises(UsageError) as err:
        load_policy(url)
    assert message in str(err.value)


def test_at_url_builds_each_store_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", "ap-south-1")
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)
    s3, key = registry.URL_SCHEMES["s3"].for_url(["bkt", "a", "b.yaml"]) or (None, "")
    assert s3 is not None and (s3.bucket, s3.region, key) == ("bkt", "ap-south-1", "a/b.yaml")  # type: ignore[attr-defined]
    az, key = registry.URL_SCHEMES["az"].for_url(["acct", "cont", "p.yaml"]) or (None, "")
    assert az is not None and key == "p.yaml"
    assert str(az.location()) == "azure_blob cont at https://acct.blob.core.windows.net"


def test_queues_open_by_kind_and_refuse_the_rest() -> None:
    assert open_queue("inprocess:").describe()
    for bad in ("sqs:", "nosuch:x", "pubsub"):
        with pytest.raises(UsageError, match="bad work queue"):
            open_queue(bad)
