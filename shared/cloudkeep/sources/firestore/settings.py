"""A Firestore database's settings, as far as the client libraries reach: the composite indexes
and the TTL fields of the collection groups, read through the Firestore Admin API at backup time
into the manifest (``source["settings"]``: ``indexes``, ``ttl_fields``), created on restore for
the restored collection groups (``PREFIX + group``), read back for a drill.

The Firestore emulator has no Admin API: there both are recorded as ``unreadable: <reason>`` and a
restore lists them as not applied — the backup and the restore of the documents go on. Index
creation and TTL policies are long-running operations on Google's side: a restore starts them and
reports them applied once Firestore accepted them (``gcloud firestore indexes composite list``
shows their progress).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ...restore_settings import unreadable

ORDER = ("indexes", "ttl_fields")
DATA_SETTINGS = frozenset({"ttl_fields"})
TIMEOUT = 20.0  # seconds per Admin API call


def _no_admin() -> str | None:
    host = os.environ.get("FIRESTORE_EMULATOR_HOST")
    if host:
        return (f"the Firestore emulator (FIRESTORE_EMULATOR_HOST={host}) has no Admin API "
                "(indexes and TTL policies)")
    return None


def _client() -> Any:
    from google.cloud.firestore_admin_v1 import FirestoreAdminClient

    return FirestoreAdminClient()


def _group_of(name: str) -> str:
    """``.../collectionGroups/G/indexes/X`` or ``.../collectionGroups/G/fields/F`` → ``G``."""
    return name.split("/collectionGroups/", 1)[1].split("/", 1)[0]


def capture(project: str, database: str, client: Any = None) -> dict[str, Any]:
    """The composite indexes and TTL fields of ``database``; ``unreadable: <reason>`` for what
    the Admin API does not answer (the emulator, a role without datastore.indexes.list)."""
    why = _no_admin()
    if why:
        return {name: unreadable(why) for name in ORDER}
    parent = f"projects/{project}/databases/{database}/collectionGroups/-"
    out: dict[str, Any] = {}
    try:
        admin = client or _client()
    except Exception as exc:  # noqa: BLE001 - no credentials, no SDK: recorded, never fatal
        return {name: unreadable(f"the Firestore Admin API is not reachable: {exc}") for name in ORDER}
    try:
        indexes = []
        for index in admin.list_indexes(parent=parent, timeout=TIMEOUT):
            data = type(index).to_dict(index, use_integers_for_enums=False)
            indexes.append({"collection_group": _group_of(index.name),
                            "query_scope": data.get("query_scope"),
                            "fields": [{k: v for k, v in f.items() if v not in (None, "", 0)}
                                       for f in data.get("fields", [])
                                       if f.get("field_path") != "__name__"]})
        out["indexes"] = sorted(indexes, key=lambda i: (i["collection_group"], str(i["fields"])))
    except Exception as exc:  # noqa: BLE001 - recorded as unreadable, the backup goes on
        out["indexes"] = unreadable(" ".join(str(exc).split())[:300])
    try:
        ttl = []
        for field in admin.list_fields(request={"parent": parent, "filter": "ttlConfig:*"},
                                       timeout=TIMEOUT):
            ttl.append({"collection_group": _group_of(field.name),
                        "field": field.name.rsplit("/fields/", 1)[1]})
        out["ttl_fields"] = sorted(ttl, key=lambda t: (t["collection_group"], t["field"]))
    except Exception as exc:  # noqa: BLE001
        out["ttl_fields"] = unreadable(" ".join(str(exc).split())[:300])
    return out


def apply(project: str, database: str, prefix: str, settings: Mapping[str, Any],
          client: Any = None) -> list[tuple[str, str | None]]:
    """Start creating the recorded indexes and TTL policies for the restored collection groups
    (``prefix + group``); per setting ``(name, None)`` once Firestore accepted every request,
    else the reason (with what to create by hand)."""
    names = [n for n in ORDER if n in settings]
    why = _no_admin()
    if why:
        return [(n, f"{why}; create by hand: {_listing(n, settings[n], prefix)}") for n in names]
    try:
        admin = client or _client()
    except Exception as exc:  # noqa: BLE001
        return [(n, f"the Firestore Admin API is not reachable ({exc}); create by hand: "
                 f"{_listing(n, settings[n], prefix)}") for n in names]
    root = f"projects/{project}/databases/{database}/collectionGroups"
    out: list[tuple[str, str | None]] = []
    for name in names:
        failures = []
        for entry in settings[name] or []:
            group = prefix + str(entry["collection_group"])
            try:
                if name == "indexes":
                    admin.create_index(parent=f"{root}/{group}", timeout=TIMEOUT, index={
                        "query_scope": entry.get("query_scope"), "fields": entry.get("fields", [])})
                else:
                    admin.update_field(timeout=TIMEOUT, field={
                        "name": f"{root}/{group}/fields/{entry['field']}", "ttl_config": {}})
            except Exception as exc:  # noqa: BLE001 - one refused entry is reported, others go on
                if "already exists" not in str(exc).lower():
                    failures.append(f"{group}: {' '.join(str(exc).split())[:160]}")
        out.append((name, "could not be created: " + "; ".join(failures) if failures else None))
    return out


def _listing(name: str, value: Any, prefix: str) -> str:
    if not isinstance(value, list) or not value:
        return "nothing recorded"
    if name == "ttl_fields":
        return ", ".join(f"{prefix}{t['collection_group']}.{t['field']}" for t in value)
    return "; ".join(f"{prefix}{i['collection_group']}({', '.join(str(f.get('field_path')) for f in i['fields'])})"
                     for i in value)


def read(project: str, database: str, prefix: str, client: Any = None) -> dict[str, Any]:
    """The live indexes and TTL fields of the collection groups under ``prefix``, named as the
    snapshot's (``prefix`` taken off), to compare with the manifest."""
    live = capture(project, database, client)
    out: dict[str, Any] = {}
    for name, value in live.items():
        if not isinstance(value, list):
            out[name] = value
            continue
        out[name] = [entry | {"collection_group": entry["collection_group"][len(prefix):]}
                     for entry in value if entry["collection_group"].startswith(prefix)]
    return out


__all__ = ["DATA_SETTINGS", "ORDER", "apply", "capture", "read"]
