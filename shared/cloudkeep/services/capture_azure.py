"""Event-driven capture on Azure (issue #21): the Cosmos DB trigger's document batches (see
:mod:`.capture_events`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..changes import Change
from ..errors import UsageError
from ..metrics import MetricsSink
from ..policy import Policy
from ..sources.cosmos import events as cosmos_events
from .capture_events import continuous_datasets, ingest_batch


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
        for doc in documents:
            try:
                one = cosmos_events.to_change(doc, key_paths)
            except cosmos_events.BadDocumentError as exc:
                raise UsageError(f"bad Cosmos DB trigger document: {exc}") from None
            changes.append(Change({"id": one.id, "partition_key": one.partition_key}, "modify",
                                  one.time, f"{database}/{container}", one.sequence, one.line))
        captured[name] = ingest_batch(policy, name, changes, sink, clock).as_dict()
    return {"captured": captured, "documents": len(documents)}


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
