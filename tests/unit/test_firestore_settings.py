"""Firestore's settings (composite indexes, TTL fields) through the Admin API's own message types:
there is no local Admin API (the emulator lacks it), so a client of our own answers with the
SDK's real ``Index`` / ``Field`` messages and records the requests a restore makes."""

from __future__ import annotations

from typing import Any

import pytest

from cloudkeep.sources.firestore import settings

ROOT = "projects/p/databases/(default)/collectionGroups"


class AdminClient:
    def __init__(self, *, refuse_group: str | None = None) -> None:
        from google.cloud.firestore_admin_v1.types import Field, Index

        order = Index.IndexField.Order.ASCENDING
        self.indexes = [Index(
            name=f"{ROOT}/users/indexes/i1", query_scope=Index.QueryScope.COLLECTION,
            fields=[Index.IndexField(field_path="team", order=order),
                    Index.IndexField(field_path="tags", array_config=Index.IndexField.ArrayConfig.CONTAINS),
                    Index.IndexField(field_path="__name__", order=order)])]
        self.fields = [Field(name=f"{ROOT}/sessions/fields/expires_at")]
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.refuse_group = refuse_group

    def list_indexes(self, *, parent: str, timeout: float) -> list[Any]:
        assert parent == f"{ROOT}/-"
        return self.indexes

    def list_fields(self, *, request: dict[str, Any], timeout: float) -> list[Any]:
        assert request == {"parent": f"{ROOT}/-", "filter": "ttlConfig:*"}
        return self.fields

    def create_index(self, *, parent: str, index: dict[str, Any], timeout: float) -> None:
        if self.refuse_group and parent.endswith("/" + self.refuse_group):
            raise RuntimeError("403 Missing or insufficient permissions.")
        self.calls.append(("create_index", {"parent": parent, "index": index}))

    def update_field(self, *, field: dict[str, Any], timeout: float) -> None:
        self.calls.append(("update_field", field))


@pytest.fixture(autouse=True)
def _no_emulator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FIRESTORE_EMULATOR_HOST", raising=False)


def test_capture_records_composite_indexes_and_ttl_fields() -> None:
    recorded = settings.capture("p", "(default)", AdminClient())
    assert recorded == {
        "indexes": [{"collection_group": "users", "query_scope": "COLLECTION", "fields": [
            {"field_path": "team", "order": "ASCENDING"},
            {"field_path": "tags", "array_config": "CONTAINS"}]}],
        "ttl_fields": [{"collection_group": "sessions", "field": "expires_at"}],
    }


def test_apply_creates_them_for_the_restored_collection_groups() -> None:
    admin = AdminClient()
    recorded = settings.capture("p", "(default)", admin)
    result = settings.apply("p", "(default)", "copy_", recorded, admin)
    assert result == [("indexes", None), ("ttl_fields", None)]
    assert admin.calls == [
        ("create_index", {"parent": f"{ROOT}/copy_users", "index": {
            "query_scope": "COLLECTION", "fields": recorded["indexes"][0]["fields"]}}),
        ("update_field", {"name": f"{ROOT}/copy_sessions/fields/expires_at", "ttl_config": {}}),
    ]


def test_a_refused_index_is_listed_and_the_emulator_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    admin = AdminClient(refuse_group="copy_users")
    recorded = settings.capture("p", "(default)", admin)
    result = dict(settings.apply("p", "(default)", "copy_", recorded, admin))
    assert result["ttl_fields"] is None
    assert "copy_users" in str(result["indexes"]) and "insufficient permissions" in str(result["indexes"])
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", "127.0.0.1:1")
    assert all(str(v).startswith("unreadable: ") for v in settings.capture("p", "(default)").values())
