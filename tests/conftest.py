"""Shared fixtures: the emulators (started once per session), policies, stores.

An emulator that cannot start fails the run: nothing here skips.

The tests are arranged by tier (tests/README.md): tests/unit, tests/contract, tests/functional,
tests/e2e. This directory (conftest, helpers, fixtures_gcp, fixtures_azure) and every tier
directory are on ``sys.path``, so a test imports a helper or another test module by its bare
name (``from helpers import cli``, ``from test_engine import ScriptedSource``) from any tier.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
TIERS = ("unit", "contract", "functional", "e2e")
sys.path.insert(0, str(ROOT))
for _tier in TIERS:
    sys.path.insert(0, str(ROOT / "tests" / _tier))

from tools.emulators import DynamoDBLocal, MotoServer  # noqa: E402

REGION = "us-east-1"


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    server = MotoServer().start()
    old = {k: os.environ.get(k) for k in server.env()}
    os.environ.update(server.env())
    yield server
    server.stop()
    _restore_env(old)


@pytest.fixture(scope="session")
def ddb_local() -> Iterator[DynamoDBLocal]:
    server = DynamoDBLocal().start()
    old = {k: os.environ.get(k) for k in server.env()}
    os.environ.update(server.env())
    yield server
    server.stop()
    _restore_env(old)


def _restore_env(old: dict[str, str | None]) -> None:
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def ddb_client(ddb_local: DynamoDBLocal) -> Any:
    import boto3

    return boto3.client("dynamodb", region_name=REGION, endpoint_url=ddb_local.endpoint)


@pytest.fixture
def ddb_resource(ddb_local: DynamoDBLocal) -> Any:
    import boto3

    return boto3.resource("dynamodb", region_name=REGION, endpoint_url=ddb_local.endpoint)


@pytest.fixture
def s3_bucket(moto_server: MotoServer) -> str:
    import boto3

    name = f"vault-{secrets.token_hex(4)}"
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=name)
    return name


def unique(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(4)}"


def write_policy(tmp_path: Path, *, table: str, store: dict[str, Any] | None = None,
                 segments: int | None = None, dataset: str = "orders") -> Path:
    """A policy file with one DynamoDB dataset and the given store (default: a file store)."""
    import yaml

    source: dict[str, Any] = {"type": "dynamodb", "table": table, "region": REGION}
    if segments:
        source["segments"] = segments
    policy = {
        "version": 1,
        "stores": {"vault": store or {"type": "file", "path": str(tmp_path / "vault")}},
        "tiers": {
            "standard": {"schedule": "0 2 * * *", "rpo": "26h",
                         "retention": {"daily": 7, "weekly": 4}},
        },
        "datasets": {dataset: {"source": source, "tier": "standard", "store": "vault"}},
    }
    path = tmp_path / "cloudkeep.yaml"
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    return path


# Each cloud's emulator fixtures live in their own module.
pytest_plugins = ["fixtures_gcp", "fixtures_azure"]
