"""Sources read a dataset as independent segments of encoded item lines, and write items back.

Guarantees every source gives:

- ``describe()`` returns the source's identity and everything a restore needs to recreate the
  target (key schema, indexes, ...); it goes into the manifest as ``source``. It may also carry
  ``"method"`` (default ``"scan"``) and ``"consistency"`` (``{"mode": "point-in-time", "time":
  ...}``; default fuzzy), which the engine moves to the manifest's own fields, and
  ``"digest_ignores"``: top-level keys of its lines that a restored copy cannot reproduce (e.g.
  Firestore's ``update_time``), left out of the content digest (see ``codec.py``).
- ``read_segment(segment, total)`` yields pages (lists) of *canonical* item lines: UTF-8 JSON
  without newlines, one item each, encoded losslessly, so the same item always gives the same
  bytes. Memory is bounded by one page.
- ``open_restore(target, recorded, overwrite)`` prepares a target (refusing a non-empty one unless
  ``overwrite``) and returns a writer whose ``write(lines)`` is safe to call from several threads.

Optional hooks, called when present: ``set_previous(manifest)`` (the dataset's latest committed
snapshot, before ``describe``), ``attach_store(store, dataset, retain_until)`` (the store a source
that copies objects — S3 — writes its blobs to, and restores them from), and ``read_summary()``
(merged into the manifest's ``source`` once every segment is read).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol


class RestoreWriter(Protocol):
    target: str

    def write(self, lines: list[bytes]) -> int:
        """Write decoded items of ``lines``; returns how many were written."""
        ...


class Source(Protocol):
    kind: str

    def describe(self) -> dict[str, Any]: ...

    def plan_segments(self, described: dict[str, Any]) -> int: ...

    def read_segment(self, segment: int, total: int) -> Iterator[list[bytes]]: ...

    def open_restore(self, target: str, recorded: dict[str, Any], *, overwrite: bool) -> RestoreWriter:
        ...

    def scan_digest(self, target: str) -> tuple[int, str]:
        """(items, content digest) of a live target, read the way a backup reads it."""
        ...
