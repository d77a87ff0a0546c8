"""Without the ``aws`` extra, the AWS plumbing (clouds/aws.py) raises one CloudkeepError naming
the extra, so the core's handlers that catch CloudkeepError (an audit record it could not write,
a copy, an index) report it instead of letting a bare ModuleNotFoundError end the command, and the
Python API (cloudkeep.services) raises what docs/python-api.md promises: a CloudkeepError with an
exit code.

boto3 and botocore are made unimportable for the test (``sys.modules[name] = None`` is how
Python marks a module as absent); nothing of them is replaced.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from cloudkeep import audit, services
from cloudkeep.clouds import aws
from cloudkeep.errors import EXIT_USAGE, CloudkeepError
from cloudkeep.extras import MissingExtraError
from cloudkeep.policy import parse_policy
from cloudkeep.stores.s3 import S3Store

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


def test_the_python_api_raises_a_cloudkeep_error(no_aws_sdk: None, tmp_path: Path) -> None:
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
