"""Bounded retries (issue 19.9): every AWS client takes its connect timeout and retry budget from
``cloudkeep.awsconfig``, and a tick whose DynamoDB endpoint is closed fails that dataset after
exactly that many attempts (counted on the real botocore client, not timed)."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from cloudkeep import awsconfig
from cloudkeep.policy import parse_policy
from cloudkeep.runtime import tick
from cloudkeep.sources.dynamodb import DynamoDBSource
from cloudkeep.stores.memory import MemoryStore

POLICY = parse_policy("""
version: 1
stores: {mem: {type: file, path: /unused}}
tiers:
  hourly: {schedule: "0 * * * *", rpo: 2h, retention: {last: 5}}
datasets:
  orders: {source: {type: dynamodb, table: orders, region: us-east-1}, tier: hourly, store: mem, offset: 0m}
""")


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def nowhere(monkeypatch: pytest.MonkeyPatch) -> str:
    endpoint = f"http://127.0.0.1:{closed_port()}"
    for name in ("AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return endpoint


def test_a_tick_with_dynamodb_unreachable_fails_after_the_configured_attempts(nowhere: str) -> None:
    source = DynamoDBSource("orders", "us-east-1")
    attempts: list[str] = []
    source.client.meta.events.register("before-send.dynamodb",
                                       lambda request, **_: attempts.append(request.url))
    store = MemoryStore()
    outcome = tick(POLICY, store_for=lambda _n: store, source_for=lambda _n: source)
    [result] = outcome.results
    assert result.status == "failed" and result.exit_code == 3, result.error
    assert "orders" in (result.error or "")
    # one call, retried to the budget and no further: the bound is attempts x connect timeout
    assert len(attempts) == awsconfig.MAX_ATTEMPTS == 3
    assert all(url.startswith(nowhere) for url in attempts)


def test_aws_max_attempts_overrides_the_budget(nowhere: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    source = DynamoDBSource("orders", "us-east-1")
    attempts: list[Any] = []
    source.client.meta.events.register("before-send.dynamodb", lambda **_: attempts.append(1))
    store = MemoryStore()
    [result] = tick(POLICY, store_for=lambda _n: store, source_for=lambda _n: source).results
    assert result.status == "failed" and len(attempts) == 1


def test_every_aws_client_has_the_one_budget(nowhere: str) -> None:
    from types import SimpleNamespace

    from cloudkeep.keys.aws_kms import AwsKmsProvider
    from cloudkeep.queues.sqs import SqsQueue
    from cloudkeep.sources.dynamodb import make_client as dynamodb_client
    from cloudkeep.sources.rds import RdsSource
    from cloudkeep.stores.s3 import make_client as s3_client

    clients = {
        "dynamodb": dynamodb_client("us-east-1"),
        "s3": s3_client("us-east-1"),
        "rds": RdsSource("us-east-1", instance="db").client(),
        "sqs": SqsQueue("https://sqs.us-east-1.amazonaws.com/123456789012/work").client,
        "kms": AwsKmsProvider("k", SimpleNamespace(key_id="alias/backup", region="us-east-1")).client(),
    }
    for name, client in clients.items():
        config = client.meta.config
        assert config.connect_timeout == awsconfig.CONNECT_TIMEOUT, name
        assert config.read_timeout == awsconfig.READ_TIMEOUT, name
        assert config.retries == {"mode": "standard", "total_max_attempts": awsconfig.MAX_ATTEMPTS}, name
