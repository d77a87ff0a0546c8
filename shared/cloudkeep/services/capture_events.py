"""Event-driven continuous capture (issue #21): the use cases behind the capture functions.

Each cloud delivers a dataset's changes as events; each function below turns one delivery into
:class:`~cloudkeep.changes.Change` values and appends them to the change log of every
continuous dataset whose source the event comes from (``spec.event_origin()``), exactly-once in
effect (:func:`cloudkeep.changelog.ingest`):

- :func:`.capture_aws.capture_dynamodb_stream` — a Lambda batch from a table's DynamoDB Stream. Records are
  taken in order; at the first record that cannot be converted (a poison record) or a batch that
  cannot be written, the reply names that record in ``batchItemFailures``: Lambda retries from
  it, bisects the batch, and after ``MaximumRetryAttempts`` sends what is left to the failure
  destination, whose messages :func:`capture_stream_failure` records as gaps.
- :func:`.capture_aws.capture_s3_events` — S3 event notifications: a created version is copied into the
  dataset's blobs (create-only) and logged as the listing line a snapshot writes; a removal is
  logged as a remove.
- :func:`.capture_gcp.capture_firestore_event` — one ``document.written`` CloudEvent.
- :func:`.capture_azure.capture_cosmos_documents` — a batch of documents from the Cosmos DB trigger.

They live in one module per cloud (``capture_aws``, ``capture_gcp``, ``capture_azure``), so a
function bundle holds only its own cloud's sources; this module has what they share. Every
function returns a JSON-ready reply and emits the capture metrics
(:func:`cloudkeep.metrics.capture_metrics`). Nothing here deletes or overwrites an object.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from ..changelog import IngestResult, ingest, record_gap
from ..changes import Change
from ..metrics import MetricsSink, capture_metrics, gap_metrics
from ..policy import Policy

log = logging.getLogger(__name__)

def continuous_datasets(policy: Policy, origin: str, only: Iterable[str] | None = None) -> list[str]:
    """The continuous datasets whose source's events come from ``origin`` (and are among
    ``only``, a deployment's ``CLOUDKEEP_CAPTURE_DATASETS``, when given)."""
    wanted = set(only) if only else None
    return sorted(name for name, ds in policy.datasets.items()
                  if policy.continuous(name) is not None and ds.source.event_origin() == origin
                  and (wanted is None or name in wanted))


def ingest_batch(policy: Policy, dataset: str, changes: Sequence[Change], sink: MetricsSink | None,
            clock: Any = None) -> IngestResult:
    result = ingest(policy, dataset, changes, clock=clock)
    if sink is not None:
        for metric in capture_metrics(policy, dataset, result):
            sink.emit(metric)
    return result


def gap(policy: Policy, dataset: str, start: datetime, end: datetime | None, reason: str,
         sink: MetricsSink | None) -> dict[str, Any]:
    gap = record_gap(policy, dataset, start=start, end=end, reason=reason)
    if sink is not None:
        for metric in gap_metrics(policy, dataset):
            sink.emit(metric)
    return {"dataset": dataset, **gap.as_dict()}
