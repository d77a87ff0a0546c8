"""Azure emulator fixtures (Azurite, the Cosmos DB server). Failing to start fails the run:
nothing here skips. Tests keep apart by container (Azurite) and by database (Cosmos DB)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tools.emulators_azure import Azurite, CosmosServer


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    server = Azurite().start()
    old = {k: os.environ.get(k) for k in server.env()}
    os.environ.update(server.env())
    yield server
    server.stop()
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def azure_container(azurite: Azurite) -> str:
    from azure.storage.blob import BlobServiceClient

    name = f"vault-{secrets.token_hex(4)}"
    BlobServiceClient.from_connection_string(azurite.connection_string).create_container(name)
    return name


@pytest.fixture(scope="session")
def cosmos_server() -> Iterator[CosmosServer]:
    server = CosmosServer().start()
    old = {k: os.environ.get(k) for k in server.env()}
    os.environ.update(server.env())  # COSMOS_KEY, as a deployment would set it
    yield server
    server.stop()
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def cosmos_client(cosmos_server: CosmosServer) -> Any:
    return cosmos_server.client()


@pytest.fixture
def cosmos_database(cosmos_client: Any) -> str:
    """A database of its own for the test."""
    name = f"db-{secrets.token_hex(4)}"
    cosmos_client.create_database(name)
    return name


def cosmos_policy(
    tmp_path: Path,
    *,
    endpoint: str,
    database: str,
    container: str,
    store: dict[str, Any] | None = None,
    dataset: str = "carts",
    extra_datasets: dict[str, dict[str, Any]] | None = None,
    **source_options: Any,
) -> Path:
    """A policy with one Cosmos DB dataset (the key comes from $COSMOS_KEY, as in production;
    the emulator's self-signed certificate needs verify_tls: false), stored in ``store`` (default:
    a file store in ``tmp_path``)."""
    import yaml

    source: dict[str, Any] = {"type": "cosmos", "endpoint": endpoint, "database": database,
                              "container": container, "verify_tls": False, **source_options}
    datasets: dict[str, Any] = {dataset: {"source": source, "tier": "standard", "store": "vault"}}
    for name, options in (extra_datasets or {}).items():
        datasets[name] = {"source": {**source, **options}, "tier": "standard", "store": "vault"}
    policy = {
        "version": 1,
        "stores": {"vault": store or {"type": "file", "path": str(tmp_path / "vault")}},
        "tiers": {"standard": {"schedule": "0 2 * * *", "rpo": "26h",
                               "retention": {"daily": 7, "weekly": 4}}},
        "datasets": datasets,
    }
    path = tmp_path / "cloudkeep.yaml"
    path.write_text(yaml.safe_dump(policy, sort_keys=False, allow_unicode=True))
    return path
