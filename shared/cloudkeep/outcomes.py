"""Result types of the core's use cases, shared by the engine, fan-out, native jobs, the tick,
metrics and the front ends (a leaf: it imports no core module that could import it back).

- :class:`RunResult`: the outcome of one snapshot run (``engine.backup``, ``jobs.run_native``, a
  tick's backup).
- :class:`PruneReport`: what one prune of a dataset decided and did (``prune.prune``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from .manifest import Manifest
from .retention import Decision


@dataclass
class RunResult:
    dataset: str
    status: Literal["committed", "exists", "locked", "failed", "unfinished", "pending"]
    snapshot_id: str | None = None
    manifest: Manifest | None = None
    error: str | None = None
    exit_code: int = 0
    copies: list[dict[str, object]] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    segments: int | None = None  # unfinished: the snapshot's segments, how many are done,
    segments_done: int | None = None  # and how many were handed to a queue (fan-out)
    dispatched: int | None = None
    job: dict[str, object] | None = None  # a pending native job's state (cloudkeep.jobs)

    @property
    def copy_failures(self) -> list[dict[str, object]]:
        """Copies that failed (the snapshot itself stays committed; ``run`` exits 1)."""
        return [c for c in self.copies if not c.get("verified") and c.get("error")]

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"dataset": self.dataset, "status": self.status,
                                  "snapshot_id": self.snapshot_id}
        if self.manifest is not None:
            out |= self.manifest.summary()
        if self.error:
            out["error"] = self.error
        if self.copies:
            out["copies"] = self.copies
        if self.copy_failures:
            out["copy_failed"] = sorted({str(c.get("store")) for c in self.copy_failures})
            if not self.error:
                out["error"] = "; ".join(
                    f"copy of {c.get('snapshot_id') or self.snapshot_id} to {c.get('store')} "
                    f"failed: {c.get('error')}" for c in self.copy_failures)
        if self.pruned:
            out["pruned"] = self.pruned
        if self.status == "unfinished":
            out |= {"segments": self.segments, "segments_done": self.segments_done}
            if self.dispatched is not None:
                out["dispatched"] = self.dispatched
        if self.job:
            out["job"] = self.job
        return out


@dataclass
class PruneReport:
    dataset: str
    dry_run: bool
    decision: Decision
    removed: list[str] = field(default_factory=list)
    locked: list[dict[str, str]] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    extended: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    blobs: dict[str, Any] | None = None  # S3 source: garbage collection of unreferenced blobs
    copy_blobs: dict[str, dict[str, Any]] = field(default_factory=dict)  # ... in copy stores
    native_deleted: list[str] = field(default_factory=list)  # backup / snapshot ARNs
    collected: dict[str, int] = field(default_factory=dict)  # leftovers of the backup path, by kind
    problems: list[str] = field(default_factory=list)  # unreadable records (kept, reported)
    refused: list[dict[str, Any]] = field(default_factory=list)  # manifests not trusted (kept)

    def as_dict(self) -> dict[str, Any]:
        times = self.decision.times  # the time retention judged each by (its capture time)

        def row(sid: str, action: str, reasons: list[str]) -> dict[str, Any]:
            at = times.get(sid)
            return {"snapshot_id": sid, "action": action, "reasons": reasons,
                    "time": at.isoformat() if at is not None else None}

        rows = [row(s, "keep", self.decision.reasons.get(s, [])) for s in self.decision.keep]
        rows += [row(s, "remove", ["no rule keeps it"]) for s in self.decision.remove]
        rows.sort(key=lambda r: str(r["snapshot_id"]), reverse=True)
        return {
            "dataset": self.dataset,
            "dry_run": self.dry_run,
            "snapshots": rows,
            "removed": self.removed,
            "locked": self.locked,
            "orphans_removed": self.orphans,
            "retention_extended": self.extended,
            "native_deleted": self.native_deleted,
            "collected": self.collected,
            "errors": self.errors,
            "problems": self.problems,
            "refused": self.refused,
        } | ({"blobs": self.blobs} if self.blobs is not None else {}) | (
            {"copy_blobs": self.copy_blobs} if self.copy_blobs else {})
