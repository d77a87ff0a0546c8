"""Google Cloud emulator fixtures (Firestore emulator, fake-gcs-server) and policy helpers.

Both emulators start once per session (a few seconds) and fail the run if they cannot start —
CI must not pass without them. Tests isolate their data by project (the Firestore emulator keeps
each project apart) and by bucket, so nothing needs wiping between tests.
"""

from __future__ import annotations

import json
import os
import secrets
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tools.emulators_gcp import FakeGcsServer, FirestoreEmulator, PubSubEmulator

DATABASE = "(default)"


@pytest.fixture(scope="session")
def firestore_emulator() -> Iterator[FirestoreEmulator]:
    server = FirestoreEmulator().start()
    old = {k: os.environ.get(k) for k in server.env()}
    os.environ.update(server.env())
    yield server
    server.stop()
    _restore(old)


@pytest.fixture(scope="session")
def fake_gcs() -> Iterator[FakeGcsServer]:
    server = FakeGcsServer().start()
    old = {k: os.environ.get(k) for k in server.env()}
    os.environ.update(server.env())
    yield server
    server.stop()
    _restore(old)


@pytest.fixture(scope="session")
def pubsub_emulator() -> Iterator[PubSubEmulator]:
    server = PubSubEmulator().start()
    old = {k: os.environ.get(k) for k in server.env()}
    os.environ.update(server.env())
    yield server
    server.stop()
    _restore(old)


def _restore(old: dict[str, str | None]) -> None:
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def gcp_project(firestore_emulator: FirestoreEmulator) -> str:
    """A project of its own for the test: the emulator keeps projects apart."""
    return f"test-{secrets.token_hex(5)}"


@pytest.fixture
def firestore_rest(firestore_emulator: FirestoreEmulator, gcp_project: str) -> FirestoreRest:
    return FirestoreRest(firestore_emulator.endpoint, gcp_project)


@pytest.fixture
def gcs_bucket(fake_gcs: FakeGcsServer) -> str:
    from google.cloud import storage

    name = f"vault-{secrets.token_hex(4)}"
    storage.Client(project="test").create_bucket(name)
    return name


class FirestoreRest:
    """The emulator's REST API: seeds and reads documents as REST Value JSON, independently of
    cloudkeep's own encoder (an oracle for the round-trip tests)."""

    def __init__(self, endpoint: str, project: str, database: str = DATABASE) -> None:
        self.endpoint = endpoint
        self.project = project
        self.database = database
        self.root = f"projects/{project}/databases/{database}/documents"

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        url = f"{self.endpoint}/v1/{urllib.parse.quote(path)}"
        request = urllib.request.Request(
            url, data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json", "Authorization": "Bearer owner"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read() or b"null")

    def write(self, docs: dict[str, dict[str, Any]]) -> None:
        """Create or replace documents: relative name → REST ``fields``."""
        items = list(docs.items())
        for start in range(0, len(items), 400):
            writes = [{"update": {"name": f"{self.root}/{name}", "fields": fields}}
                      for name, fields in items[start : start + 400]]
            self._post(f"projects/{self.project}/databases/{self.database}/documents:commit",
                       {"writes": writes})

    def delete(self, *names: str) -> None:
        writes = [{"delete": f"{self.root}/{name}"} for name in names]
        self._post(f"projects/{self.project}/databases/{self.database}/documents:commit",
                   {"writes": writes})

    def documents(self, under: str | None = None) -> dict[str, dict[str, Any]]:
        """Every document of the project (or below root collection ``under``): name → fields."""
        out: dict[str, dict[str, Any]] = {}
        rows = self._post(f"{self.root}:runQuery",
                          {"structuredQuery": {"from": [{"allDescendants": True}]}})
        for row in rows:
            doc = row.get("document")
            if not doc:
                continue
            name = doc["name"][len(self.root) + 1 :]
            if under is None or name.startswith(under + "/"):
                out[name] = doc.get("fields", {})
        return out


def gcp_policy(
    tmp_path: Path,
    *,
    project: str,
    bucket: str | None = None,
    collections: list[str] | None = None,
    dataset: str = "profiles",
    **source_options: Any,
) -> Path:
    """A policy with one Firestore dataset, stored in ``bucket`` on fake-gcs-server (or in a
    file store when no bucket is given)."""
    import yaml

    source: dict[str, Any] = {"type": "firestore", "project": project}
    if collections is not None:
        source["collections"] = collections
    source.update(source_options)
    store: dict[str, Any] = (
        {"type": "gcs", "bucket": bucket, "prefix": "backups/cloudkeep"} if bucket
        else {"type": "file", "path": str(tmp_path / "vault")}
    )
    policy = {
        "version": 1,
        "stores": {"vault": store},
        "tiers": {"standard": {"schedule": "0 2 * * *", "rpo": "26h",
                               "retention": {"daily": 7, "weekly": 4}}},
        "datasets": {dataset: {"source": source, "tier": "standard", "store": "vault"}},
    }
    path = tmp_path / "cloudkeep.yaml"
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    return path
