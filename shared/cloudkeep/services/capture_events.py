"""Event-driven continuous capture (issue #21): the use cases behind the capture functions.

Each cloud delivers a dataset's changes as events; each function below turns one delivery into
:class:`~cloudkeep.changes.Change` values and appends them to the change log of every
continuous dataset whose source the event comes from (``spec.event_origin()``), exactly-once in
effect (:func:`cloudkeep.changelog.ingest`):

- :func:`capture_dynamodb_stream` — a Lambda batch from a table's DynamoDB Stream. Records are
  taken in order; at the first record that cannot be converted (a poison record) or a batch that
  cannot be written, the reply names that record in ``batchItemFailures``: Lambda retries from
  it, bisects the batch, and after ``MaximumRetryAttempts`` sends what is left to the failure
  destination, whose messages :func:`capture_stream_failure` records as gaps.
- :func:`capture_s3_events` — S3 event notifications: a created version is copied into the
  dataset's blobs (create-only) and logged as the listing line a snapshot writes; a removal is
  logged as a remove.
- :func:`capture_firestore_event` — one ``document.written`` CloudEvent.
- :func:`capture_cosmos_documents` — a batch of documents from the Cosmos DB trigger.

Every function returns a JSON-ready reply and emits the capture metrics
(:func:`cloudkeep.metrics.capture_metrics`). Nothing here deletes or overwrites an object.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from ..changelog import IngestResult, ingest, record_gap
from ..changes import Change, utc
from ..codec import canonical_json
from ..errors import CloudkeepError, UsageError
from ..metrics import MetricsSink, capture_metrics, gap_metrics
from ..policy import Policy
from ..registry import store_for_dataset
from ..sources.cosmos import events as cosmos_events
from ..sources.dynamodb.events import stream_origin
from ..sources.dynamodb.stream import StreamRecordError, from_stream_record
from ..sources.firestore import events as firestore_events
from ..sources.s3 import events as s3_events

log = logging.getLogger(__name__)

MAX_RECORDS = 10_000  # a Lambda stream batch holds at most 10,000 records


def continuous_datasets(policy: Policy, origin: str, only: Iterable[str] | None = None) -> list[str]:
    """The continuous datasets whose source's events come from ``origin`` (and are among
    ``only``, a deployment's ``CLOUDKEEP_CAPTURE_DATASETS``, when given)."""
    wanted = set(only) if only else None
    return sorted(name for name, ds in policy.datasets.items()
                  if policy.continuous(name) is not None and ds.source.event_origin() == origin
                  and (wanted is None or name in wanted))


def _ingest(policy: Policy, dataset: str, changes: Sequence[Change], sink: MetricsSink | None,
            clock: Any = None) -> IngestResult:
    result = ingest(policy, dataset, changes, clock=clock)
    if sink is not None:
        for metric in capture_metrics(policy, dataset, result):
            sink.emit(metric)
    return result


def _gap(policy: Policy, dataset: str, start: datetime, end: datetime | None, reason: str,
         sink: MetricsSink | None) -> dict[str, Any]:
    gap = record_gap(policy, dataset, start=start, end=end, reason=reason)
    if sink is not None:
        for metric in gap_metrics(policy, dataset):
            sink.emit(metric)
    return {"dataset": dataset, **gap.as_dict()}


# ---------------------------------------------------------------- DynamoDB Streams


def capture_dynamodb_stream(policy: Policy, event: Mapping[str, Any], *,
                            sink: MetricsSink | None = None, clock: Any = None,
                            only: Iterable[str] | None = None) -> dict[str, Any]:
    """One Lambda batch of DynamoDB stream records into the change log. The reply has
    ``batchItemFailures`` (the first record not captured, and so every record after it, for
    Lambda's ReportBatchItemFailures), ``captured`` (per dataset: the ingest result), and
    ``skipped`` (records of tables no continuous dataset captures)."""
    records = event.get("Records")
    if not isinstance(records, list) or len(records) > MAX_RECORDS:
        raise UsageError("not a DynamoDB Streams batch (Records: a list of at most 10,000)")
    pending: dict[str, list[Change]] = {}
    order: list[tuple[str, int]] = []  # (dataset, index of its first record in this batch)
    failed_at: int | None = None
    problem = ""
    skipped = 0
    for index, record in enumerate(records):
        arn = str(record.get("eventSourceARN") or "") if isinstance(record, Mapping) else ""
        origin = stream_origin(arn)
        names = continuous_datasets(policy, origin, only) if origin else []
        if not names:
            skipped += 1
            continue
        try:
            change = from_stream_record(record, {"type": "dynamodb"})
        except StreamRecordError as exc:
            failed_at, problem = index, f"record {index} cannot be captured: {exc}"
            log.error("%s (%s)", problem, arn)
            break
        for name in names:
            if name not in pending:
                pending[name] = []
                order.append((name, index))
            pending[name].append(change)
    captured: dict[str, Any] = {}
    for name, first in order:
        try:
            captured[name] = _ingest(policy, name, pending[name], sink, clock).as_dict()
        except CloudkeepError as exc:
            problem = f"dataset {name}: the change log could not be written: {exc}"
            log.error("%s", problem)
            failed_at = first if failed_at is None else min(failed_at, first)
    failures = []
    if failed_at is not None:
        sequence = (records[failed_at].get("dynamodb") or {}).get("SequenceNumber") \
            if isinstance(records[failed_at], Mapping) else None
        failures.append({"itemIdentifier": str(sequence or "")})
    return {"batchItemFailures": failures, "captured": captured, "skipped": skipped,
            **({"error": problem} if problem else {})}


def capture_stream_failure(policy: Policy, message: Mapping[str, Any], *,
                           sink: MetricsSink | None = None,
                           only: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """A message of the stream mapping's failure destination (``DDBStreamBatchInfo``: a batch
    Lambda gave up on after its retries) recorded as a gap of every dataset of that table, from
    the batch's first record on: its changes are not in the log, so no moment from then on can
    be restored until the next base snapshot closes the gap."""
    info = message.get("DDBStreamBatchInfo")
    if not isinstance(info, Mapping):
        raise UsageError("not a DynamoDB stream failure record (no DDBStreamBatchInfo)")
    origin = stream_origin(str(info.get("streamArn") or ""))
    if origin is None:
        raise UsageError("the failure record names no DynamoDB stream (streamArn)")
    try:
        start = utc(datetime.fromisoformat(str(info.get("approximateArrivalOfFirstRecord"))
                                           .replace("Z", "+00:00")))
    except ValueError:
        raise UsageError("the failure record has no approximateArrivalOfFirstRecord") from None
    raw = message.get("requestContext")
    context: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    reason = (f"stream batch lost after retries ({context.get('condition', 'failed')}): shard "
              f"{info.get('shardId')}, sequence numbers {info.get('startSequenceNumber')} to "
              f"{info.get('endSequenceNumber')}, {info.get('batchSize')} record(s)")
    return [_gap(policy, name, start, None, reason, sink)
            for name in continuous_datasets(policy, origin, only)]


# ---------------------------------------------------------------- S3 event notifications


def capture_s3_events(policy: Policy, event: Mapping[str, Any], *,
                      sink: MetricsSink | None = None, clock: Any = None,
                      only: Iterable[str] | None = None) -> dict[str, Any]:
    """S3 object events into the change log of every continuous dataset of the bucket that backs
    up the object's key. Created versions are copied into the dataset's blobs first (so a logged
    line never points at a missing blob); a version deleted before it could be read is skipped
    (its removal event follows). Raises when a version cannot be copied or the log not written,
    so the platform retries the whole notification (writes are idempotent)."""
    try:
        objects = list(s3_events.parse_events(event))
    except s3_events.BadEventError as exc:
        raise UsageError(f"bad S3 event: {exc}") from None
    batches: dict[str, list[Change]] = {}
    sources: dict[str, Any] = {}
    vanished = 0
    for obj in objects:
        for name in continuous_datasets(policy, f"s3:{obj.bucket}", only):
            spec = policy.dataset(name).source
            if not spec.captures_key(obj.key):
                continue
            if obj.created:
                if name not in sources:
                    source: Any = spec.open()
                    source.attach_store(store_for_dataset(policy, name), name)
                    sources[name] = source
                record = s3_events.capture_version(sources[name], obj.key, obj.version)
                if record is None:
                    vanished += 1
                    continue
                line = canonical_json(record)
                change = Change(obj.key, "insert", obj.time, obj.bucket, obj.sequence, line)
            else:
                change = Change(obj.key, "remove", obj.time, obj.bucket, obj.sequence, None)
            batches.setdefault(name, []).append(change)
    captured = {name: _ingest(policy, name, changes, sink, clock).as_dict()
                for name, changes in batches.items()}
    return {"captured": captured, "events": len(objects), "vanished": vanished}


# ---------------------------------------------------------------- Firestore document events


def capture_firestore_event(policy: Policy, data: bytes | str | dict[str, Any],
                            content_type: str | None, event_time: str, *,
                            sink: MetricsSink | None = None, clock: Any = None,
                            only: Iterable[str] | None = None,
                            message: Any = None) -> dict[str, Any]:
    """One ``google.cloud.firestore.document.v1.written`` event (its data and ``time``) into the
    change log of every continuous dataset that backs up the document. ``message``: the
    ``DocumentEventData`` class (google-events; imported on first use when not given)."""
    try:
        change = firestore_events.to_change(firestore_events.decode(data, content_type, message),
                                            event_time)
    except ValueError as exc:
        raise UsageError(f"bad Firestore document event: {exc}") from None
    captured = {}
    for name in continuous_datasets(policy, f"firestore:{change.database}", only):
        if not policy.dataset(name).source.captures_key(change.path):
            continue
        entry = Change(change.path, change.event, change.time, change.database, change.sequence,
                       change.line)
        captured[name] = _ingest(policy, name, [entry], sink, clock).as_dict()
    return {"captured": captured, "document": change.path, "event": change.event}


# ---------------------------------------------------------------- Cosmos DB trigger


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
        captured[name] = _ingest(policy, name, changes, sink, clock).as_dict()
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
