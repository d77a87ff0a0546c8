"""Firestore restore writer: BatchWrite of decoded documents, retrying what Firestore reports
as transient."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ...capabilities import DeletesItems, ReadsItems
from ...codec import canonical_json
from ...errors import RestoreError, ThrottledError
from ...retry import Backoff
from .codec import encode_document, fill_value
from .reader import CALL_TIMEOUT, Types

if TYPE_CHECKING:
    from .reader import FirestoreReader

GET_BATCH = 100  # documents per BatchGetDocuments request
WRITE_BATCH = 500  # BatchWrite accepts up to 500 writes ...
WRITE_BATCH_BYTES = 8 * 1024 * 1024  # ... in a request of at most 10 MiB
MAX_WRITE_ATTEMPTS = 8
_RETRYABLE_WRITE_CODES = {4, 8, 10, 13, 14}  # DEADLINE_EXCEEDED RESOURCE_EXHAUSTED ABORTED INTERNAL UNAVAILABLE
RESOURCE_EXHAUSTED = 8  # too fast: ThrottledError, which a restore's governor backs off


class FirestoreWriter(DeletesItems, ReadsItems):
    """Writes decoded documents with BatchWrite; retries the writes Firestore reports transient.
    Deletes documents and reads them back by path (relative to the database, before the
    target's collection-name prefix)."""

    def __init__(self, source: FirestoreReader, prefix: str, refs: Callable[[str], str] | None,
                 back: Callable[[str], str] | None = None) -> None:
        self.source = source
        self.prefix = prefix
        self.target = f"{source.where()}, collections prefixed {prefix!r}" if prefix else source.where()
        self._refs = refs
        self._back = back  # references of the target mapped back to the snapshot's (read_items)

    def delete_keys(self, keys: list[Any]) -> int:
        """Delete the documents at these paths (``users/alice``) under the target's prefix; an
        absent document is no error. Subcollections below a deleted document are left as they
        are (Firestore never deletes them with their parent)."""
        t = self.source._types()
        batch: list[Any] = []
        for path in dict.fromkeys(self._path(k) for k in keys):
            write = t.write.Write.pb()()
            write.delete = f"{self.source.root}/{self.prefix}{path}"
            batch.append(write)
            if len(batch) >= WRITE_BATCH:
                self._commit(t, batch)
                batch = []
        if batch:
            self._commit(t, batch)
        return len(keys)

    def read_items(self, keys: list[Any]) -> dict[bytes, bytes | None]:
        """``canonical_json(path)`` → the live document as a snapshot line (its name without the
        target's prefix), None where there is no document (BatchGetDocuments)."""
        t = self.source._types()
        paths = {canonical_json(k): self._path(k) for k in keys}
        out: dict[bytes, bytes | None] = dict.fromkeys(paths)
        by_name = {f"{self.source.root}/{self.prefix}{p}": k for k, p in paths.items()}
        names = sorted(by_name)
        cut = len(self.source.root) + 1 + len(self.prefix)
        for start in range(0, len(names), GET_BATCH):
            request = t.firestore.BatchGetDocumentsRequest.pb()(
                database=self.source.database_path, documents=names[start : start + GET_BATCH])

            def fetch(request: Any = request) -> list[Any]:
                stream = self.source._api.batch_get_documents(
                    request=t.firestore.BatchGetDocumentsRequest.wrap(request),
                    metadata=self.source._metadata, retry=None, timeout=CALL_TIMEOUT)
                found = []
                for response in stream:
                    pb = t.firestore.BatchGetDocumentsResponse.pb(response)
                    if pb.WhichOneof("result") == "found":
                        found.append(pb.found)
                return found

            for doc in self.source._call(f"reading documents of {self.target}", fetch):
                if doc.name in by_name:
                    out[by_name[doc.name]] = encode_document(doc, doc.name[cut:], self._back)
        return out

    @staticmethod
    def _path(key: Any) -> str:
        path = str(key)
        parts = path.split("/")
        if len(parts) % 2 or any(not p for p in parts):
            raise ValueError(f"{path!r} is not a document path (collection/document[/...])")
        return path

    def write(self, lines: list[bytes]) -> int:
        t = self.source._types()
        batch: list[Any] = []
        size = 0
        for line in lines:
            write = self._write_of(t, line)
            n = write.ByteSize()
            if batch and (len(batch) >= WRITE_BATCH or size + n > WRITE_BATCH_BYTES):
                self._commit(t, batch)
                batch, size = [], 0
            batch.append(write)
            size += n
        if batch:
            self._commit(t, batch)
        return len(lines)

    def _write_of(self, t: Types, line: bytes) -> Any:
        doc = json.loads(line)
        name = doc["name"]
        if not isinstance(name, str) or name.count("/") % 2 != 1 or "" in name.split("/"):
            raise ValueError(f"bad document name {name!r}")
        write = t.write.Write.pb()()
        write.update.name = f"{self.source.root}/{self.prefix}{name}"
        fields = doc["fields"]
        if not isinstance(fields, dict):
            raise ValueError("'fields' is not an object")
        for key, value in fields.items():
            fill_value(write.update.fields[key], value, self._refs)
        return write

    def _commit(self, t: Types, writes: list[Any]) -> None:
        pending = writes
        backoff = Backoff(MAX_WRITE_ATTEMPTS, base=0.1, cap=5.0)
        while True:
            request = t.firestore.BatchWriteRequest.pb()(database=self.source.database_path)
            request.writes.extend(pending)
            response = self._send(t, request)
            failed = [(w, s) for w, s in zip(pending, response.status, strict=False) if s.code]
            refused = [(w, s) for w, s in failed if s.code not in _RETRYABLE_WRITE_CODES]
            if refused:
                write, status = refused[0]
                raise RestoreError(
                    f"Firestore refused {len(refused)} document(s), e.g. "
                    f"{write.update.name[len(self.source.root) + 1:]}: {status.message} (code {status.code})"
                )
            if not failed:
                return
            pending = [w for w, _ in failed]
            if not backoff.wait():
                if any(status.code == RESOURCE_EXHAUSTED for _, status in failed):
                    raise ThrottledError(
                        f"Firestore kept {len(pending)} write(s) to {self.target} throttled "
                        f"(RESOURCE_EXHAUSTED) after {MAX_WRITE_ATTEMPTS} attempts")
                raise RestoreError(
                    f"Firestore kept {len(pending)} write(s) failing after {MAX_WRITE_ATTEMPTS} "
                    f"attempts (contention or quota?)"
                )

    def _send(self, t: Types, request: Any) -> Any:
        """One BatchWrite (the reader's retries of transient errors); a call still refused as
        RESOURCE_EXHAUSTED (429) after them is ThrottledError, not "cannot reach"."""
        from google.api_core.exceptions import ResourceExhausted

        try:
            return self.source._call(f"writing to {self.target}", self._sender(t, request),
                                     passthrough=(ResourceExhausted,))
        except ResourceExhausted as exc:
            raise ThrottledError(f"Firestore throttled writing to {self.target} "
                                 f"(RESOURCE_EXHAUSTED): {exc.message}") from None

    def _sender(self, t: Types, request: Any) -> Callable[[], Any]:
        def send() -> Any:
            return t.firestore.BatchWriteResponse.pb(self.source._api.batch_write(
                request=t.firestore.BatchWriteRequest.wrap(request),
                metadata=self.source._metadata, retry=None, timeout=CALL_TIMEOUT,
            ))

        return send
