"""Firestore source: a point-in-time read of root collections (with their subcollections) by
document-name ranges, and a batched restore under a collection-name prefix.

Lines. One document per line, canonical JSON::

    {"fields": {<Firestore REST Value JSON>}, "name": "users/u1/orders/o1", "update_time": "…Z"}

``name`` is the document's path below the database root (the project and database are in the
manifest's ``source``); ``fields`` are Firestore REST ``Value`` JSON exactly as the REST API
writes them (``integerValue`` as a string, ``doubleValue`` with ``"NaN"``/``"Infinity"``/
``"-Infinity"`` as strings, ``timestampValue`` in RFC 3339 with up to nanoseconds, ``bytesValue``
in base64, ``referenceValue``, ``geoPointValue``, ``arrayValue``, ``mapValue``, ``nullValue``,
``booleanValue``, ``stringValue``). Documents are read as raw protobuf from the Firestore API,
never through the SDK's Python conversion (which refuses references to other databases), so what
is stored is what Firestore holds. Subcollections are simply documents with longer names;
"missing" parent documents (never written, but with subcollections) stay missing on restore.

Consistency. ``describe()`` takes the server's current time as ``read_time`` and every read of the
run — listing, counting, splitting, reading — is made at that time: the snapshot is point-in-time
(recorded in the manifest). Firestore serves such reads for one hour (seven days at whole minutes
with point-in-time recovery enabled), so a run must finish within the hour.

Segments. Each root collection is one ordered range of document names; a large one (more than
``DOCS_PER_SEGMENT`` documents, or ``segments`` in the policy) is split into several. Split points
come from a partition query where the service offers one; where it does not (the emulator answers
UNIMPLEMENTED), from one keys-only pass over the names at the same read time, keeping every
n-th name. Each segment pages through its range by cursor on the document name, so memory is
bounded by one page whatever the collection size.

Digest. A restored copy has new update times and, with a prefix, new names, so ``update_time`` is
left out of the content digest (``digest_ignores``), and :meth:`FirestoreSource.scan_digest`
reads a restored prefix with the prefix (and rewritten references, if any) mapped back: a
restored copy scans to the manifest's digest.

Restore. ``restore SNAPSHOT --into PREFIX`` writes each root collection ``C`` of the snapshot as
``PREFIX + C`` in the policy's project and database (``--into ""`` restores in place), same
document ids, with BatchWrite in batches of up to 500 and retries of the writes Firestore reports
as transient. It refuses a target collection that already holds documents unless
``--overwrite``. References are written as they were unless the policy's source says
``rewrite_references: true``: then references into the snapshot's collections point at the
restored copies.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ...capabilities import Description, ReadsFromCursor, Resumable, SampleCheck
from ...codec import ContentDigest
from ...errors import RestoreError, SourceError
from .codec import (
    EPOCH,
    check_collection_id,
    check_prefix,
    encode_document,
    encode_value,
    fill_value,
    format_timestamp,
    name_order_key,
    parse_timestamp,
    prefix_problem,
    reference_mapper,
)
from .export import AdminApi, FirestoreExportJobs
from .reader import CALL_TIMEOUT, DEFAULT_DATABASE
from .restore import FirestoreWriter
from .segments import SegmentReader

if TYPE_CHECKING:
    from ...manifest import Manifest
    from .spec import FirestoreSourceSpec

__all__ = [
    "DEFAULT_DATABASE", "AdminApi", "FirestoreSource", "FirestoreWriter", "check_collection_id",
    "encode_document", "encode_value", "fill_value", "format_timestamp", "name_order_key",
    "parse_timestamp",
]

log = logging.getLogger(__name__)

DIGEST_IGNORES = ("update_time",)
METHOD = "query"


class FirestoreSource(SegmentReader, FirestoreExportJobs, Resumable, ReadsFromCursor, SampleCheck):
    """Firestore documents read by queries at one read time (``method: scan``), or Firestore's
    managed export driven as a native job (``method: export``, see ``cloudkeep.sources.firestore.export``)."""

    kind = "firestore"

    def __init__(
        self,
        project: str,
        database: str = DEFAULT_DATABASE,
        *,
        collections: Sequence[str] | None = None,
        recursive: bool = True,
        segments: int | None = None,
        rewrite_references: bool = False,
        method: str = "scan",
        client: Any = None,
        admin: AdminApi | None = None,
        drill_database: str | None = None,
    ) -> None:
        SegmentReader.__init__(self, project, database, collections=collections,
                               recursive=recursive, segments=segments, client=client)
        self.method = method
        self.drill_database = drill_database
        self._drills: set[str] = set()  # scratch targets handed out (they live in drill_database)
        self._drill_source: FirestoreSource | None = None
        self._origin_root: str | None = None  # a drill database's source: the source's root
        self._admin = admin
        self.rewrite_references = rewrite_references

    @classmethod
    def from_spec(cls, spec: FirestoreSourceSpec) -> FirestoreSource:
        return cls(spec.project, spec.database, collections=spec.collections,
                   recursive=spec.recursive, segments=spec.segments,
                   rewrite_references=spec.rewrite_references, method=spec.method,
                   drill_database=spec.drill_database)

    # ---------------------------------------------------------------- reading

    def describe(self) -> Description:
        read_time = self._server_time()
        self._read_time = read_time
        collections = list(self.collections) if self.collections else self._root_collections()
        self._collections_read = collections
        self._counts = {c: self._count(c) for c in collections}
        self._ranges = None
        known = [n for n in self._counts.values() if n is not None]
        moment = (EPOCH + timedelta(seconds=read_time[0], microseconds=read_time[1] // 1000))
        return Description(
            identity={
                "type": "firestore",
                "project": self.project,
                "database": self.database,
                "collections": collections,
                "recursive": self.recursive,
                "read_time": format_timestamp(*read_time),
                "item_count_estimate": sum(known) if len(known) == len(collections) else None,
            },
            method=METHOD,
            consistency={"mode": "point-in-time", "time": moment.isoformat()},
            digest_ignores=DIGEST_IGNORES,
        )

    def scan_digest(self, target: str) -> tuple[int, str]:
        """(documents, content digest) of the copy restored under the prefix ``target`` (``""``:
        the source itself), read as a backup reads it with the prefix — and rewritten references,
        if the policy rewrites them — mapped back, so it equals the snapshot's digest."""
        if self._for(target) is not self:
            return self._for(target).scan_digest(target)
        check_prefix(target, self.collections or [])
        self._read_time = self._server_time()
        if self.collections:
            names = [target + c for c in self.collections]
        else:
            names = [c for c in self._root_collections() if c.startswith(target)]
        refs = None
        if self.rewrite_references and target:
            originals = {target + c: c for c in (self.collections or [n[len(target):] for n in names])}
            refs = reference_mapper(self.root, self._origin_root or self.root, originals)
        digest = ContentDigest(ignores=DIGEST_IGNORES)
        prefix = len(self.root) + 1
        for name in names:
            for doc in self._documents(name, None, None):
                digest.add_line(encode_document(doc, doc.name[prefix + len(target):], refs))
        return digest.count, digest.hexdigest()

    # ---------------------------------------------------------------- restore

    def open_restore(self, target: str, recorded: dict[str, Any], *, overwrite: bool) -> FirestoreWriter:
        if self._for(target) is not self:
            return self._for(target).open_restore(target, recorded, overwrite=overwrite)
        collections = [str(c) for c in recorded.get("collections") or []]
        check_prefix(target, collections)
        busy = [target + c for c in collections if self._has_documents(target + c)]
        if busy and not overwrite:
            shown = ", ".join(busy[:5]) + (f" and {len(busy) - 5} more" if len(busy) > 5 else "")
            raise RestoreError(
                f"target collection(s) {shown} in {self.where()} already hold documents; refusing "
                f"to write into them (pass --overwrite to write the snapshot's documents over them)"
            )
        refs = back = None
        if self.rewrite_references:
            source_root = (f"projects/{recorded.get('project', self.project)}/databases/"
                           f"{recorded.get('database', DEFAULT_DATABASE)}/documents")
            refs = reference_mapper(source_root, self.root, {c: target + c for c in collections})
            back = reference_mapper(self.root, source_root, {target + c: c for c in collections})
        return FirestoreWriter(self, target, refs, back)

    # ---------------------------------------------------------------- drills and samples

    def target_problem(self, target: str, manifest: Manifest) -> str | None:
        """A restore target is a collection-name prefix (empty: the original collections, in
        place); a managed export restores into a database instead ((default) or its id)."""
        if manifest.method == "export" and manifest.native:
            if target == "(default)" or re.fullmatch(r"[a-z][a-z0-9-]{2,61}[a-z0-9]", target):
                return None
            return ("a Firestore export restores into a database: '(default)' or a database id "
                    "(4 to 63 lowercase letters, digits or '-', starting with a letter)")
        return prefix_problem(target, [str(c) for c in manifest.source.get("collections") or []])

    def scratch_target(self, token: str) -> str:
        """A collection-name prefix for a restore drill (its collections are deleted after it):
        in ``drill_database`` where the policy names one (then the drill never writes the
        source's database), else in the source's own database."""
        target = f"cloudkeep_drill_{token}_"
        if self.drill_database:
            self._drills.add(target)
        return target

    def _for(self, target: str) -> FirestoreSource:
        """The source that holds ``target``: a drill database's, for this source's drills."""
        if target not in self._drills or not self.drill_database:
            return self
        if self._drill_source is None:
            drill = FirestoreSource(self.project, self.drill_database, collections=self.collections,
                                    recursive=self.recursive, segments=self.segments,
                                    rewrite_references=self.rewrite_references)
            drill._origin_root = self.root
            self._drill_source = drill
        return self._drill_source

    def drop_target(self, target: str, recorded: dict[str, Any]) -> None:
        """Delete every document a restore under the prefix ``target`` wrote (subcollections
        too)."""
        if self._for(target) is not self:
            self._for(target).drop_target(target, recorded)
            return
        if not target:
            raise SourceError("refusing to delete the source's own collections")
        collections = [str(c) for c in recorded.get("collections") or []]
        check_prefix(target, collections)
        for collection in collections:
            ref = self.client.collection(target + collection)

            def delete(ref: Any = ref) -> Any:
                return self.client.recursive_delete(ref)

            self._call(f"deleting the scratch collection {target + collection}", delete)
        log.info("deleted scratch collections %s*", target)

    def sample_check(self, lines: list[bytes]) -> list[str]:
        """Per snapshot line: ``matched``, ``changed`` (a later update time), ``deleted``, or
        ``differs`` (same update time, different content: the snapshot is wrong)."""
        t = self._types()
        names: list[str] = []
        recorded: list[dict[str, Any]] = []
        for line in lines:
            doc = json.loads(line)
            names.append(f"{self.root}/{doc['name']}")
            recorded.append(doc)
        live: dict[str, Any] = {}
        for start in range(0, len(names), 100):
            request = t.firestore.BatchGetDocumentsRequest.pb()(
                database=self.database_path, documents=sorted(set(names[start : start + 100])))

            def fetch(request: Any = request) -> dict[str, Any]:
                found: dict[str, Any] = {}
                stream = self._api.batch_get_documents(
                    request=t.firestore.BatchGetDocumentsRequest.wrap(request),
                    metadata=self._metadata, retry=None, timeout=CALL_TIMEOUT)
                for response in stream:
                    pb = t.firestore.BatchGetDocumentsResponse.pb(response)
                    if pb.WhichOneof("result") == "found":
                        found[pb.found.name] = pb.found
                return found

            live.update(self._call("reading sample documents", fetch))
        cut = len(self.root) + 1
        out = []
        for name, doc, line in zip(names, recorded, lines, strict=True):
            found = live.get(name)
            if found is None:
                out.append("deleted")
                continue
            fresh = encode_document(found, name[cut:])
            if json.loads(fresh).get("update_time") != doc.get("update_time"):
                out.append("changed")
            else:
                out.append("matched" if fresh == line else "differs")
        return out

