"""Firestore ``method: export``: Firestore's managed export, driven as a native job.

The job (``cloudkeep.jobs``) asks the Firestore Admin API for ``ExportDocuments`` with a
``snapshot_time`` (the start of the run, rounded down to the minute, as the API requires) into
``gs://<store bucket>/<store prefix>/<dataset>/snapshots/<snapshot id>/export``, and polls the
long-running operation on later runs. When it is done, the export's files (Firestore's own
LevelDB format) become the snapshot's parts, checked by size and sha256 (``codec.framing:
opaque``); the manifest records the operation name, the output URI and the document count the
operation reports, and the snapshot time as its point-in-time consistency.

Restore of such a snapshot runs ``ImportDocuments`` from the recorded output URI into the
database named by ``--into`` (``(default)`` or another database id of the project); Firestore
writes the documents under their original paths (an import cannot rename collections) and
overwrites documents with the same ids.

The Admin API is reached through :class:`AdminApi`, a narrow seam: the Firestore emulator does
not implement it, so tests drive a scripted implementation.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from ... import layout
from ...capabilities import GcsLocation, NativeRestore, able
from ...clouds.gcp import classify, translating
from ...codec import HashingReader, PartLimitError
from ...errors import RestoreError, SourceError, SourceUnreachableError, UsageError
from ...manifest import Codec, PartEntry
from ...retry import Backoff
from .. import JobPoll, NativeJobSource, NativeOutcome

if TYPE_CHECKING:
    from ...manifest import Manifest
    from .. import JobContext

log = logging.getLogger(__name__)

EXPORT_FOLDER = "export"


class AdminApi(Protocol):
    """The three calls of the Firestore Admin API an export snapshot needs."""

    def export_documents(self, *, database: str, collection_ids: list[str], output_uri_prefix: str,
                         snapshot_time: datetime) -> str:
        """Start an export; returns the long-running operation's name."""
        ...

    def import_documents(self, *, database: str, collection_ids: list[str], input_uri_prefix: str) -> str:
        """Start an import; returns the long-running operation's name."""
        ...

    def get_operation(self, name: str) -> dict[str, Any]:
        """``{"done": bool, "error": str | None, "metadata": {...}, "response": {...}}``."""
        ...


class GoogleAdminApi:
    """:class:`AdminApi` on ``google.cloud.firestore_admin_v1.FirestoreAdminClient``."""

    def __init__(self, client: Any = None) -> None:
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            host = os.environ.get("FIRESTORE_EMULATOR_HOST")
            if host:
                # The SDK would go to the real service and fail on credentials: say why instead.
                raise UsageError(
                    f"method: export needs Firestore's Admin API (ExportDocuments), which the "
                    f"Firestore emulator (FIRESTORE_EMULATOR_HOST={host}) does not implement; "
                    "use method: scan with the emulator")
            from google.cloud.firestore_admin_v1 import FirestoreAdminClient

            self._client = FirestoreAdminClient()
        return self._client

    def export_documents(self, *, database: str, collection_ids: list[str], output_uri_prefix: str,
                         snapshot_time: datetime) -> str:
        with _errors("starting the export"):
            op = self.client.export_documents(request={
                "name": database, "collection_ids": collection_ids,
                "output_uri_prefix": output_uri_prefix, "snapshot_time": snapshot_time})
        return str(op.operation.name)

    def import_documents(self, *, database: str, collection_ids: list[str], input_uri_prefix: str) -> str:
        with _errors("starting the import"):
            op = self.client.import_documents(request={
                "name": database, "collection_ids": collection_ids, "input_uri_prefix": input_uri_prefix})
        return str(op.operation.name)

    def get_operation(self, name: str) -> dict[str, Any]:
        from google.cloud.firestore_admin_v1.types import ExportDocumentsMetadata, ExportDocumentsResponse
        from google.protobuf.json_format import MessageToDict

        with _errors(f"reading operation {name}"):
            op = self.client.get_operation(request={"name": name})
        out: dict[str, Any] = {"done": bool(op.done), "error": None, "metadata": {}, "response": {}}
        if op.HasField("error") and op.error.code:
            out["error"] = f"{op.error.code}: {op.error.message}"
        if op.metadata.type_url.endswith("ExportDocumentsMetadata"):
            meta = ExportDocumentsMetadata.deserialize(op.metadata.value)
            out["metadata"] = MessageToDict(ExportDocumentsMetadata.pb(meta))
        if op.HasField("response") and op.response.type_url.endswith("ExportDocumentsResponse"):
            resp = ExportDocumentsResponse.deserialize(op.response.value)
            out["response"] = {"outputUriPrefix": resp.output_uri_prefix}
        return out


def snapshot_time_for(at: datetime) -> datetime:
    """The export's snapshot time: the run's start rounded down to the minute (the Admin API
    takes only whole minutes in the past)."""
    return at.astimezone(UTC).replace(second=0, microsecond=0)


class FirestoreExportJobs(NativeJobSource, NativeRestore):
    """The export job of :class:`~cloudkeep.sources.firestore.FirestoreSource` (a base): a native
    job, and the native restore of its snapshots."""

    kind: str
    method: str
    project: str
    database: str
    collections: list[str] | None
    _admin: AdminApi | None

    @property
    def database_path(self) -> str:
        return f"projects/{self.project}/databases/{self.database}"

    @property
    def admin(self) -> AdminApi:
        if self._admin is None:
            self._admin = GoogleAdminApi()
        return self._admin

    def native_method(self) -> str | None:
        return "export" if self.method == "export" else None

    def start_job(self, ctx: JobContext) -> dict[str, Any]:
        bucket = able(ctx.store, GcsLocation)
        if bucket is None:
            raise SourceError(
                f"dataset {ctx.dataset!r}: method: export has Firestore write its export into the "
                f"store's bucket, so the store must be of type gcs (it is {ctx.store.describe()})"
            )
        # A folder per attempt: a failed export's partial files never mix with the next one's.
        folder = (layout.snapshot_prefix(ctx.dataset, ctx.snapshot_id) + EXPORT_FOLDER + "/"
                  + ctx.started_at.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ"))
        uri = bucket.gs_uri(folder)
        at = snapshot_time_for(ctx.started_at)
        name = self.admin.export_documents(database=self.database_path,
                                           collection_ids=list(self.collections or []),
                                           output_uri_prefix=uri, snapshot_time=at)
        log.info("started Firestore export %s of %s into %s (snapshot time %s)", name,
                 self.database_path, uri, at.isoformat())
        described = {"type": "firestore", "project": self.project, "database": self.database,
                     "collections": self.collections}
        return {"kind": "firestore-export", "operation": name, "output_uri_prefix": uri,
                "folder": folder, "snapshot_time": at.isoformat(), "described": described}

    def poll_job(self, ctx: JobContext, job: dict[str, Any]) -> JobPoll:
        op = self.admin.get_operation(job["operation"])
        if not op.get("done"):
            progress = (op.get("metadata") or {}).get("progressDocuments") or {}
            return JobPoll("running", job, f"export {op.get('metadata', {}).get('operationState', 'running')}"
                           f" ({progress.get('completedWork', 0)}/{progress.get('estimatedWork', '?')} documents)")
        if op.get("error"):
            return JobPoll("failed", job, f"Firestore export {job['operation']} failed: {op['error']}")
        return JobPoll("done", job | {"operation_result": op})

    def finish_job(self, ctx: JobContext, job: dict[str, Any]) -> NativeOutcome:
        op = job.get("operation_result") or self.admin.get_operation(job["operation"])
        meta = op.get("metadata") or {}
        output = (op.get("response") or {}).get("outputUriPrefix") or job["output_uri_prefix"]
        snapshot_folder = layout.snapshot_prefix(ctx.dataset, ctx.snapshot_id)
        parts: list[PartEntry] = []
        for index, info in enumerate(sorted(ctx.store.list(job["folder"] + "/"),
                                            key=lambda i: i.key)):
            with ctx.store.open(info.key) as stream:
                hashing = HashingReader(stream, limit=info.size)  # never past the listed size
                try:
                    hashing.drain()
                    hashing.check_size()
                except PartLimitError as exc:
                    raise SourceError(f"Firestore export file {info.key}: {exc}; the snapshot "
                                      "is not committed") from None
            sha = hashing.sha256.hexdigest() if hashing.size else hashlib.sha256(b"").hexdigest()
            parts.append(PartEntry(name=info.key[len(snapshot_folder):], segment=0, index=index, items=0,
                                   raw_bytes=hashing.size, stored_bytes=hashing.size, sha256=sha))
        if not parts:
            raise SourceError(f"Firestore export {job['operation']} is done but wrote nothing under "
                              f"{job['output_uri_prefix']}; the snapshot is not committed")
        documents = (meta.get("progressDocuments") or {}).get("completedWork")
        described = dict(job["described"]) | {
            "method": "export",
            "consistency": {"mode": "point-in-time", "time": job["snapshot_time"]}}
        native = {"kind": "firestore-export", "operation": job["operation"], "output_uri_prefix": output,
                  "snapshot_time": job["snapshot_time"],
                  "documents": int(documents) if documents is not None else None,
                  "bytes": (meta.get("progressBytes") or {}).get("completedWork")}
        return NativeOutcome(described=described, native=native, parts=parts,
                             codec=Codec(framing="opaque", compression="none", level=None))

    def restore_native(self, manifest: Manifest, target: str, *, overwrite: bool,
                       poll_interval: float = 10.0, timeout: float = 6 * 3600.0,
                       sleep: Callable[[float], None] = time.sleep) -> dict[str, Any] | None:
        """ImportDocuments from the export into database ``target`` (``(default)`` or a database
        id); waits for the operation (a restore is run by hand, not by the scheduled tick)."""
        if manifest.method != "export" or not manifest.native:
            return None
        if "/" in target:
            raise RestoreError(f"restore of a Firestore export: --into names a database of project "
                               f"{self.project} (e.g. '(default)'), not {target!r}")
        database = f"projects/{self.project}/databases/{target}"
        uri = manifest.native["output_uri_prefix"]
        name = self.admin.import_documents(database=database,
                                           collection_ids=list(manifest.source.get("collections") or []),
                                           input_uri_prefix=uri)
        log.info("importing %s into %s (operation %s)", uri, database, name)
        # Polls at a fixed interval (no growth, no jitter) until the deadline.
        polls = Backoff(None, base=poll_interval, cap=poll_interval, budget=timeout, sleep=sleep,
                        jitter=False)
        while True:
            op = self.admin.get_operation(name)
            if op.get("done"):
                break
            if not polls.wait():
                raise RestoreError(f"import {name} still running after {timeout:.0f}s; it goes on "
                                   "in Firestore (check it with gcloud firestore operations describe)")
        if op.get("error"):
            raise RestoreError(f"import {name} of {uri} failed: {op['error']}")
        documents = (op.get("metadata") or {}).get("progressDocuments", {}).get("completedWork")
        return {"items": int(documents or manifest.native.get("documents") or 0),
                "via": f"Firestore ImportDocuments {name} from {uri}"}


def _errors(doing: str) -> translating:
    """Admin API errors as cloudkeep errors: no access, no database, no service → unreachable."""

    def translate(exc: BaseException) -> BaseException | None:
        failure = classify(exc)
        if failure is None or failure.kind in ("connection", "corrupt"):
            return None
        if failure.kind in ("denied", "not-found", "no-credentials", "auth") or failure.status == 503:
            return SourceUnreachableError(f"Firestore Admin API: {doing}: {exc}")
        return SourceError(f"Firestore Admin API: {doing}: {exc}")

    return translating(translate)
