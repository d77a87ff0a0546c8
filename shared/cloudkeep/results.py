"""Result types the services layer returns (:mod:`cloudkeep.services`), shared by its front ends:
the CLI, the function's ``invoke`` action and scheduled entry points, and the report.

A leaf module: it imports nothing of cloudkeep, so every layer may use it. A field that holds an
object of a core module (a backup's ``RunResult``, a tick's ``TickResult``, a ``Manifest``) is
typed ``Any`` here and named in its docstring; ``as_dict()`` gives the JSON form the CLI prints
with ``--format json`` and the function replies with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class BackupRun:
    """What ``services.run`` did: each dataset's outcome (``results``: ``engine.RunResult``),
    the datasets not due (with ``due``), the tick's whole outcome (``tick``:
    ``runtime.TickResult``, with ``due`` only) and every copy that failed."""

    results: list[Any]
    not_due: list[str] = field(default_factory=list)
    tick: Any = None
    copy_failures: list[dict[str, Any]] = field(default_factory=list)
    drained: bool = False  # fan-out items were run here (an in-process queue)

    @property
    def failed(self) -> list[Any]:
        return [r for r in self.results if r.status == "failed"]

    @property
    def ok(self) -> bool:
        """No dataset failed and no copy failed (a snapshot whose copy failed stays committed)."""
        return not self.failed and not self.copy_failures

    def rows(self) -> list[dict[str, Any]]:
        """One row per dataset: its outcome, or ``{"status": "not-due"}``."""
        return ([r.as_dict() for r in self.results]
                + [{"dataset": n, "status": "not-due"} for n in self.not_due])


@dataclass
class SnapshotListing:
    """Committed snapshots, oldest capture first (``rows``: a manifest summary with capture
    time, holds, verified copies, last verification and drill), the manifests that were
    refused (``refused``: ``catalog.Refusal``; never listed) and the problems met reading the
    hold ledgers and verification records."""

    rows: list[dict[str, Any]]
    refused: list[Any] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    windows: dict[str, dict[str, Any]] = field(default_factory=dict)  # continuous datasets

    @property
    def tampering(self) -> bool:
        return any(r.tampering for r in self.refused)

    @property
    def key_unavailable(self) -> bool:
        return any(r.kind == "key-unavailable" for r in self.refused)


@dataclass
class SnapshotDetail:
    """One snapshot: its manifest as JSON with its ref, capture time, store location, legal
    holds, copies and verifications (``data``), and the problems met reading those records."""

    data: dict[str, Any]
    problems: list[str] = field(default_factory=list)


@dataclass
class HoldRelease:
    """A released legal hold and the snapshot's holds that remain (``rest``: ``holds.Hold``)."""

    ref: str
    hold_id: str
    reason: str
    rest: list[Any] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"ref": self.ref, "released": True, "hold_id": self.hold_id, "reason": self.reason,
                "holds": [h.as_dict() for h in self.rest]}


@dataclass
class Rows:
    """Rows of a listing (holds, audit records, key checks, endorsements) and the problems met
    reading them (reported as warnings, never hiding the other rows)."""

    rows: list[dict[str, Any]]
    problems: list[str] = field(default_factory=list)


@dataclass
class AuditLog(Rows):
    """Audit records, oldest first, and the time they start at (``since``: ``datetime``)."""

    since: Any = None


@dataclass
class Report:
    """The report (``data``: per dataset status, newest snapshot, verifications, retention,
    holds, alerts; JSON-ready and redacted) and where its HTML was written, if asked."""

    data: dict[str, Any]

    @property
    def failed(self) -> list[dict[str, Any]]:
        """The datasets whose report could not be made (each row carries ``exit_code``)."""
        return [r for r in self.data["datasets"] if r.get("error")]
