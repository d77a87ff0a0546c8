"""Without a cloud's extra, its client builders (clouds/aws.py, the GCS and Azure Blob stores)
raise one CloudkeepError naming the extra, so the core's handlers that catch CloudkeepError (an audit record it could not write,
a copy, an index) report it instead of letting a bare ModuleNotFoundError end the command, and the
Python API (cloudkeep.services) raises what docs/python-api.md promises: a CloudkeepError with an
exit code.

The SDKs are made unimportable for the test (``sys.modules[name] = None`` is how
Python marks a module as absent); nothing of them is replaced.
"""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from cloudkeep import audit, services
from cloudkeep.clouds import aws
from cloudkeep.errors import EXIT_USAGE, CloudkeepError
from cloudkeep.extras import MissingExtraError
from cloudkeep.policy import load_policy, parse_policy
from cloudkeep.stores.azure_blob import AzureBlobStore
from cloudkeep.stores.gcs import GcsStore
from cloudkeep.stores.s3 import S3Store

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "prev-main"
ABSENT = ("boto3", "botocore", "botocore.config", "botocore.exceptions", "botocore.session")


@pytest.fixture
def no_aws_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ABSENT:
        monkeypatch.setitem(sys.modules, name, None)


def test_a_client_without_boto3_is_one_line_naming_the_extra(no_aws_sdk: None) -> None:
    with pytest.raises(MissingExtraError) as caught:
        aws.client("s3", "us-east-1")
    assert caught.value.exit_code == EXIT_USAGE
    assert str(caught.value) == ("boto3 is not installed (No module named 'boto3'): "
                                 "pip install 'cloudkeep[aws]'")
    assert aws.fault_of(ValueError("not botocore's")) is None  # no botocore: nothing is its


def test_an_s3_store_without_boto3_raises_a_cloudkeep_error(no_aws_sdk: None) -> None:
    store = S3Store("acme-backups", region="us-east-1")
    for call in (lambda: store.put("a/b", b"x", if_absent=True), lambda: list(store.list("a/")),
                 lambda: store.get("a/b")):
        with pytest.raises(MissingExtraError, match=r"pip install 'cloudkeep\[aws\]'"):
            call()


def test_the_audit_record_is_reported_not_raised(no_aws_sdk: None, caplog: pytest.LogCaptureFixture) -> None:
    store = S3Store("acme-backups", region="us-east-1")
    with caplog.at_level(logging.WARNING, logger="cloudkeep.audit"):
        audit.write(store, "backup", dataset="orders", outcome="failed")
    assert any("could not write the audit record" in r.getMessage()
               and "cloudkeep[aws]" in r.getMessage() for r in caplog.records)


def test_the_python_api_raises_a_cloudkeep_error(no_aws_sdk: None) -> None:
    policy = parse_policy("""
version: 1
stores: {v: {type: s3, bucket: acme-backups, region: us-east-1}}
tiers: {t: {schedule: "0 2 * * *", rpo: 26h, retention: {daily: 7}}}
datasets:
  orders: {source: {type: dynamodb, table: orders, region: us-east-1}, tier: t, store: v}
""")
    with pytest.raises(CloudkeepError) as caught:
        services.list_snapshots(policy)
    assert isinstance(caught.value, MissingExtraError) and caught.value.exit_code == EXIT_USAGE
    run = services.backup(policy, ["orders"])
    assert [(r.status, r.error) for r in run.results] == [
        ("failed", "boto3 is not installed (No module named 'boto3'): pip install 'cloudkeep[aws]'")]


@pytest.mark.parametrize("absent,store,extra", [
    (("google", "google.cloud", "google.cloud.storage"), lambda: GcsStore("acme-backups"), "gcp"),
    (("azure", "azure.storage", "azure.storage.blob"),
     lambda: AzureBlobStore("backups", account_url="https://acme.blob.core.windows.net"), "azure"),
])
def test_a_gcs_or_azure_store_without_its_sdk_raises_a_cloudkeep_error(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        absent: tuple[str, ...], store: Any, extra: str) -> None:
    for name in absent:
        monkeypatch.setitem(sys.modules, name, None)
    made = store()
    for call in (lambda: made.put("a/b", b"x", if_absent=True), lambda: list(made.list("a/"))):
        with pytest.raises(MissingExtraError, match=rf"pip install 'cloudkeep\[{extra}\]'") as caught:
            call()
        assert caught.value.exit_code == EXIT_USAGE and "\n" not in str(caught.value)
    with caplog.at_level(logging.WARNING, logger="cloudkeep.audit"):
        assert audit.write(made, "backup", dataset="orders", outcome="failed") is None
    assert any(f"cloudkeep[{extra}]" in r.getMessage() for r in caplog.records)


def test_discovery_without_the_aws_extra_names_it(no_aws_sdk: None) -> None:
    from cloudkeep.starter import discover_aws

    result = discover_aws({"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"}, "us-east-1")
    assert result.attempted and not result.proposals
    assert result.error == "boto3 is not installed (No module named 'boto3'): pip install 'cloudkeep[aws]'"


def test_every_use_case_raises_a_missing_sdk_as_a_cloudkeep_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The previous release's fixture snapshot of a DynamoDB table (a file store: reading it needs
    no SDK): restoring it, or sampling it against the live table, needs boto3/botocore; without
    them the Python API raises MissingExtraError (not the ModuleNotFoundError of whichever import
    came first)."""
    fixture = tmp_path / "prev-main"
    shutil.copytree(FIXTURE, fixture, ignore=shutil.ignore_patterns("*.py", "README.md", "__pycache__"))
    (fixture / "local.key").chmod(0o600)
    policy = load_policy(str(fixture / "cloudkeep.yaml")).policy
    assert services.list_snapshots(policy, "orders").rows  # the store itself needs no SDK
    for name in ABSENT:
        monkeypatch.setitem(sys.modules, name, None)
    for call in (lambda: services.restore(policy, "orders@latest", "orders_restored"),
                 lambda: services.verify(policy, "catalog@latest", level="sample")):
        with pytest.raises(MissingExtraError, match=r"pip install 'cloudkeep\[aws\]'") as caught:
            call()
        assert caught.value.exit_code == EXIT_USAGE
