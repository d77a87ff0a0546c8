"""Firestore ``method: export`` — the managed export driven as a native job across runs.

The Firestore emulator does not implement the Admin API (ExportDocuments / ImportDocuments /
long-running operations), so these tests drive the narrow seam ``firestore_export.AdminApi``
with a scripted implementation; the store is a real Cloud Storage emulator (fake-gcs-server),
into which the scripted "service" writes its export files the way Firestore would.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cloudkeep.catalog import resolve
from cloudkeep.engine import backup
from cloudkeep.jobs import read_job
from cloudkeep.policy import load_policy
from cloudkeep.restore import restore
from cloudkeep.sources.firestore import FirestoreSource
from cloudkeep.verify import verify_integrity
from fixtures_gcp import gcp_policy
from helpers import cli

pytestmark = pytest.mark.emulator


class ScriptedAdminApi:
    """Answers like Firestore's Admin API: an operation is running for ``polls_needed`` polls,
    then done — and on completion the export's files appear in the bucket."""

    def __init__(self, polls_needed: int = 1, error: str | None = None) -> None:
        self.polls_needed = polls_needed
        self.error = error
        self.exports: list[dict[str, Any]] = []
        self.imports: list[dict[str, Any]] = []
        self.polls: dict[str, int] = {}

    def export_documents(self, *, database: str, collection_ids: list[str], output_uri_prefix: str,
                         snapshot_time: datetime) -> str:
        name = f"{database}/operations/export-{len(self.exports)}"
        self.exports.append({"name": name, "database": database, "collection_ids": collection_ids,
                             "output_uri_prefix": output_uri_prefix, "snapshot_time": snapshot_time})
        return name

    def import_documents(self, *, database: str, collection_ids: list[str], input_uri_prefix: str) -> str:
        name = f"{database}/operations/import-{len(self.imports)}"
        self.imports.append({"name": name, "database": database, "collection_ids": collection_ids,
                             "input_uri_prefix": input_uri_prefix})
        return name

    def get_operation(self, name: str) -> dict[str, Any]:
        self.polls[name] = self.polls.get(name, 0) + 1
        if "/import-" in name:
            return {"done": True, "error": None,
                    "metadata": {"progressDocuments": {"completedWork": "3"}}, "response": {}}
        if self.polls[name] <= self.polls_needed:
            return {"done": False, "error": None, "metadata": {
                "operationState": "PROCESSING",
                "progressDocuments": {"completedWork": "1", "estimatedWork": "3"}}, "response": {}}
        if self.error:
            return {"done": True, "error": self.error, "metadata": {}, "response": {}}
        export = next(e for e in self.exports if e["name"] == name)
        _write_export_files(export["output_uri_prefix"])
        return {"done": True, "error": None,
                "metadata": {"operationState": "SUCCESSFUL",
                             "progressDocuments": {"completedWork": "3", "estimatedWork": "3"},
                             "progressBytes": {"completedWork": "1234"}},
                "response": {"outputUriPrefix": export["output_uri_prefix"]}}


EXPORT_FILES = {
    "export.overall_export_metadata": b"\x00overall metadata\xff",
    "all_namespaces/all_kinds/all_namespaces_all_kinds.export_metadata": b"kinds metadata",
    "all_namespaces/all_kinds/output-0": bytes(range(256)) * 40,
}


def _write_export_files(uri: str) -> None:
    from google.cloud import storage

    bucket_name, _, prefix = uri.removeprefix("gs://").partition("/")
    bucket = storage.Client(project="test").bucket(bucket_name)
    for name, body in EXPORT_FILES.items():
        bucket.blob(f"{prefix}/{name}").upload_from_string(body)


def _setup(tmp_path: Path, bucket: str, admin: ScriptedAdminApi) -> tuple[Any, FirestoreSource]:
    path = gcp_policy(tmp_path, project="acme", bucket=bucket, collections=["users"], method="export")
    policy = load_policy(str(path)).policy
    return policy, FirestoreSource("acme", collections=["users"], method="export", admin=admin)


def test_export_spans_runs_and_restores_by_import_with_scripted_admin_api(
    gcs_bucket: str, tmp_path: Path
) -> None:
    admin = ScriptedAdminApi(polls_needed=1)
    policy, source = _setup(tmp_path, gcs_bucket, admin)
    before = datetime.now(UTC)

    first = backup(policy, "profiles", source=source)
    assert first.status == "pending" and first.snapshot_id
    sid = first.snapshot_id
    [export] = admin.exports
    assert export["database"] == "projects/acme/databases/(default)"
    assert export["collection_ids"] == ["users"]
    assert export["output_uri_prefix"].startswith(
        f"gs://{gcs_bucket}/backups/cloudkeep/profiles/snapshots/{sid}/export/")
    at = export["snapshot_time"]
    assert at.second == 0 and at.microsecond == 0 and at <= before, "a whole minute in the past"
    assert admin.polls == {}, "starting does not poll"

    second = backup(policy, "profiles", source=source)
    assert (second.status, second.snapshot_id) == ("pending", sid)
    third = backup(policy, "profiles", source=source)
    assert (third.status, third.snapshot_id) == ("committed", sid)
    manifest = third.manifest
    assert manifest is not None
    assert manifest.native is not None
    assert manifest.native["operation"] == export["name"]
    assert manifest.native["output_uri_prefix"] == export["output_uri_prefix"]
    assert manifest.native["documents"] == 3
    assert manifest.method == "export"
    assert manifest.consistency.mode == "point-in-time" and manifest.consistency.time == at
    assert manifest.codec.framing == "opaque"
    folder = export["output_uri_prefix"].rsplit(f"{sid}/", 1)[1] + "/"
    assert {p.name.removeprefix(folder): p.sha256 for p in manifest.parts} == {
        name: hashlib.sha256(body).hexdigest() for name, body in EXPORT_FILES.items()}

    store, loaded = resolve(policy, "profiles@latest")
    record = read_job(store, "profiles", sid)
    assert record is not None and record["state"] == "finished" and record["polls"] == 2
    assert verify_integrity(store, loaded).ok

    done = restore(policy, store, loaded, "(default)", source=source)
    assert done.items == 3 and done.via and "ImportDocuments" in done.via
    assert admin.imports == [{"name": "projects/acme/databases/(default)/operations/import-0",
                              "database": "projects/acme/databases/(default)",
                              "collection_ids": ["users"],
                              "input_uri_prefix": export["output_uri_prefix"]}]

    # A changed export file is caught by verify.
    from google.cloud import storage

    name = f"backups/cloudkeep/profiles/snapshots/{sid}/{folder}all_namespaces/all_kinds/output-0"
    storage.Client(project="test").bucket(gcs_bucket).blob(name).upload_from_string(b"tampered")
    report = verify_integrity(store, loaded)
    assert not report.ok and {p.check for p in report.problems} >= {"sha256", "size"}


def test_a_failed_export_is_reported_then_retried_with_scripted_admin_api(
    gcs_bucket: str, tmp_path: Path
) -> None:
    admin = ScriptedAdminApi(polls_needed=0, error="7: the service account may not write the bucket")
    policy, source = _setup(tmp_path, gcs_bucket, admin)
    sid = backup(policy, "profiles", source=source).snapshot_id
    failed = backup(policy, "profiles", source=source, snapshot_id=sid)
    assert failed.status == "failed" and failed.error and "may not write the bucket" in failed.error
    # The next run of that snapshot starts a new export, into a folder of its own.
    admin.error = None
    assert backup(policy, "profiles", source=source, snapshot_id=sid).status == "pending"
    assert len(admin.exports) == 2
    assert admin.exports[0]["output_uri_prefix"] != admin.exports[1]["output_uri_prefix"]
    done = backup(policy, "profiles", source=source, snapshot_id=sid)
    assert done.status == "committed" and done.manifest is not None
    assert done.manifest.native is not None
    assert done.manifest.native["operation"] == admin.exports[1]["name"]


def test_export_needs_a_gcs_store_with_scripted_admin_api(tmp_path: Path, capsys: Any) -> None:
    path = gcp_policy(tmp_path, project="acme", collections=["users"], method="export")
    code, _, err = cli(capsys, "--policy", str(path), "validate")
    assert code == 2 and "datasets.profiles.source.method" in err and "type gcs" in err


def test_export_on_the_firestore_emulator_is_one_clear_line(firestore_emulator: Any, gcs_bucket: str,
                                                            tmp_path: Path, capsys: Any) -> None:
    """The real Admin API client against the emulator: refused up front with the reason (the
    emulator has no Admin API), not a credentials error from the real service."""
    path = gcp_policy(tmp_path, project="acme", bucket=gcs_bucket, collections=["users"],
                      method="export")
    code, out, err = cli(capsys, "--policy", str(path), "--format", "json", "run", "profiles")
    assert code == 2, err
    import json

    [row] = json.loads(out)
    assert row["status"] == "failed"
    assert "Admin API" in row["error"] and "emulator" in row["error"] and "method: scan" in row["error"]
    assert "Traceback" not in err and "credentials" not in (row["error"] + err).lower()
