"""Azure emulator fixtures (Azurite). Failing to start fails the run: nothing here skips."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest
from tools.emulators_azure import Azurite


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
