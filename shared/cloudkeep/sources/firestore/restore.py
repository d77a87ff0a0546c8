"""Firestore restore writer: BatchWrite of decoded documents, retrying what Firestore reports
as transient."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ...errors import RestoreError, ThrottledError
from ...retry import Backoff
from .codec import fill_value
from .reader import CALL_TIMEOUT, Types

if TYPE_CHECKING:
    from .reader import FirestoreReader

WRITE_BATCH = 500  # BatchWrite accepts up to 500 writes ...
WRITE_BATCH_BYTES = 8 * 1024 * 1024  # ... in a request of at most 10 MiB
MAX_WRITE_ATTEMPTS = 8
_RETRYABLE_WRITE_CODES = {4, 8, 10, 13, 14}  # DEADLINE_EXCEEDED RESOURCE_EXHAUSTED ABORTED INTERNAL UNAVAILABLE
RESOURCE_EXHAUSTED = 8  # too fast: ThrottledError, which a restore's governor backs off


class FirestoreWriter:
    """Writes decoded documents with BatchWrite; retries the writes Firestore reports transient."""

    def __init__(self, source: FirestoreReader, prefix: str, refs: Callable[[str], str] | None) -> None:
        self.source = source
        self.prefix = prefix
        self.target = f"{source.where()}, collections prefixed {prefix!r}" if prefix else source.where()
        self._refs = refs

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
