"""Event-driven capture on Azure (issue #21): the Cosmos DB trigger's document batches (see
:mod:`.capture_events`).

The trigger reads the latest-version change feed, which reports no deletes (and only the newest
of several writes between two polls). A log fed by it alone would let ``restore --at`` bring a
deleted item back, so every batch also records an open gap (:data:`NO_DELETES`) from the newest
base snapshot captured at or before the batch's first change: ``restore --at`` refuses every
moment after that snapshot (saying why), ``list``/``plan``/``report`` show the gap, the
``capture_gap`` alert fires once per snapshot interval, and the next base snapshot closes it. The
log still serves ``history``. For restorable moments use ``cloudkeep capture`` on a container
whose feed is in all-versions-and-deletes mode (docs/continuous-setup.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from .. import catalog
from ..changelog import list_gaps
from ..changelog.format import format_time
from ..changes import Change
from ..metrics import MetricsSink
from ..policy import Policy
from ..registry import store_for_dataset
from ..sources.cosmos import events as cosmos_events
from .capture_events import continuous_datasets, gap, ingest_batch

log = logging.getLogger(__name__)

NO_DELETES = ("the Cosmos DB trigger reads the latest-version change feed, which reports no "
              "deletes: a moment after this base snapshot cannot be restored (a deleted item "
              "would come back); use `cloudkeep capture` on an all-versions-and-deletes feed")


def capture_cosmos_documents(policy: Policy, database: str, container: str,
                             documents: Sequence[Any], *, sink: MetricsSink | None = None,
                             clock: Any = None, only: Iterable[str] | None = None,
                             paths: Callable[[str], list[str]] | None = None) -> dict[str, Any]:
    """A batch of documents from the Cosmos DB trigger on ``database``/``container`` into the
    change log of every continuous dataset of that container. ``paths(dataset)``: the
    container's partition key paths (default: read from the container through the source)."""
    names = continuous_datasets(policy, f"cosmos:{database}/{container}", only)
    captured = {}
    for name in names:
        key_paths = (paths or _cosmos_paths(policy))(name)
        changes = []
        bad: list[str] = []
        for doc in documents:
            try:
                one = cosmos_events.to_change(doc, key_paths)
            except cosmos_events.BadDocumentError as exc:
                bad.append(str(exc))
                continue
            changes.append(Change({"id": one.id, "partition_key": one.partition_key}, "modify",
                                  one.time, f"{database}/{container}", one.sequence, one.line))
        captured[name] = ingest_batch(policy, name, changes, sink, clock).as_dict()
        first = min((c.time for c in changes), default=None)
        if bad:
            # a poison document is not retried (it would fail again and hold the lease back):
            # the rest is captured, the document's change is a gap
            problem = (f"{len(bad)} bad Cosmos DB trigger document(s) on {database}/{container}"
                       f" not captured: {bad[0]}")
            log.error("dataset %s: %s", name, problem)
            gap(policy, name, first or datetime.now(UTC), None, problem, sink)
        if documents:
            no_deletes_gap(policy, name, first or datetime.now(UTC), sink)
    return {"captured": captured, "documents": len(documents)}


def no_deletes_gap(policy: Policy, dataset: str, first: datetime,
                   sink: MetricsSink | None) -> None:
    """Record (once per base snapshot) that the log misses deletes from the newest base snapshot
    captured at or before ``first`` (else from ``first``) until the next base snapshot: see the
    module docstring. The reason names the newest snapshot, so a batch after a new snapshot
    records a new (open) gap even when its first change is older than that snapshot."""
    store = store_for_dataset(policy, dataset)
    snapshots = catalog.committed(store, dataset)
    bases = [s.captured_at for s in snapshots if s.captured_at <= first]
    start = bases[-1] if bases else first
    reason = NO_DELETES + (f" (written after snapshot {snapshots[-1].snapshot_id})" if snapshots
                           else " (written before the first snapshot)")
    if any(format_time(g.start) == format_time(start) and g.reason == reason
           for g in list_gaps(store, dataset)):
        return  # recorded (and alerted) already for this snapshot interval
    gap(policy, dataset, start, None, reason, sink)


_PATHS: dict[tuple[str, str], list[str]] = {}


def _cosmos_paths(policy: Policy) -> Callable[[str], list[str]]:
    """Partition key paths read from the container once per process."""
    def read(name: str) -> list[str]:
        spec = policy.dataset(name).source
        cache_key = (name, spec.model_dump_json())
        if cache_key not in _PATHS:
            source: Any = spec.open()
            _PATHS[cache_key] = list(source.paths())
        return _PATHS[cache_key]

    return read
