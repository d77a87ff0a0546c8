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

Sources that run a *native job* (a DynamoDB export or on-demand backup, an RDS snapshot, a
Firestore managed export) implement :class:`NativeJobSource` instead of being scanned: the engine
calls ``start_job`` once, records the job in the store (``cloudkeep.jobs``), and later
invocations call ``poll_job`` until it is done, then ``finish_job``, whose outcome becomes the
manifest. None of these calls waits for the job.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from ..capabilities import NativeRestore, able
from ..cliargs import check_text
from ..errors import UsageError

if TYPE_CHECKING:
    from ..capabilities import Description
    from ..manifest import Codec, Manifest, PartEntry
    from ..stores import Store


class RestoreWriter(Protocol):
    target: str

    def write(self, lines: list[bytes]) -> int:
        """Write decoded items of ``lines``; returns how many were written."""
        ...


class Source(Protocol):
    kind: str

    def describe(self) -> Description | dict[str, Any]:
        """What the source reads (a plain dict is the previous form, see Description.coerce)."""
        ...

    def plan_segments(self, described: dict[str, Any]) -> int: ...

    def read_segment(self, segment: int, total: int) -> Iterator[list[bytes]]: ...

    def open_restore(self, target: str, recorded: dict[str, Any], *, overwrite: bool) -> RestoreWriter:
        ...

    def scan_digest(self, target: str) -> tuple[int, str]:
        """(items, content digest) of a live target, read the way a backup reads it."""
        ...


@dataclass(frozen=True)
class JobContext:
    """What a native job is for: the snapshot it makes, in which store."""

    dataset: str
    snapshot_id: str
    store: Store
    started_at: datetime


@dataclass
class JobPoll:
    """One look at a running job. ``job`` is the (possibly updated) state to record."""

    state: Literal["running", "done", "failed"]
    job: dict[str, Any]
    message: str = ""


@dataclass
class NativeOutcome:
    """A finished job, as the manifest records it."""

    described: dict[str, Any]  # like Source.describe(): may carry method and consistency
    native: dict[str, Any]  # what was made and where (ARNs, operation, output URI)
    parts: list[PartEntry] = field(default_factory=list)
    codec: Codec | None = None
    content_digest: str = "0" * 64
    digest_ignores: list[str] = field(default_factory=list)


@runtime_checkable
class NativeJobSource(Protocol):
    kind: str

    def native_method(self) -> str | None:
        """The method name if this source is set to run a native job, else None (scan)."""
        ...

    def start_job(self, ctx: JobContext) -> dict[str, Any]:
        """Start the job; returns its state (ids) to record. Does not wait."""
        ...

    def poll_job(self, ctx: JobContext, job: dict[str, Any]) -> JobPoll: ...

    def finish_job(self, ctx: JobContext, job: dict[str, Any]) -> NativeOutcome: ...


def native_method(source: object) -> str | None:
    """The native method ``source`` is set to run, or None when it is read by scanning."""
    job = able(source, NativeJobSource)
    return job.native_method() if job is not None else None


@runtime_checkable
class NamesTargets(Protocol):
    """A source with naming rules for its restore targets (table, container, bucket names)."""

    def target_problem(self, target: str, manifest: Manifest) -> str | None:
        """What is wrong with ``target`` as the name of a restore target of ``manifest``, or
        None. Guarantees nothing is read or written: a check of the name alone."""
        ...


def check_restore_target(source: object, manifest: Manifest, target: str) -> None:
    """Refuse a restore target that cannot be one before anything is read or written:
    UsageError ``bad --into '…': why`` (exit 2). No surrounding spaces or control characters
    anywhere; then the source's own rules (:class:`NamesTargets`); a source without rules
    refuses only an empty name."""
    check_text(target, "--into", empty=True)
    problem = (source.target_problem(target, manifest) if isinstance(source, NamesTargets)
               else ("it is empty" if not target else None))
    if problem:
        raise UsageError(f"bad --into {target!r}: {problem}")


def restore_native(source: object, manifest: Manifest, target: str, *, overwrite: bool) -> Any:
    """Let a source restore a snapshot its own way (RestoreTableFromBackup, a Firestore import);
    None when the snapshot's parts are restored line by line as usual."""
    native = able(source, NativeRestore)
    return native.restore_native(manifest, target, overwrite=overwrite) if native is not None else None
