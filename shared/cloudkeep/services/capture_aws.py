"""Event-driven capture on AWS (issue #21): DynamoDB stream batches, their failure records, S3
event notifications (see :mod:`.capture_events`)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from ..changes import Change, utc
from ..codec import canonical_json
from ..errors import CloudkeepError, UsageError
from ..metrics import MetricsSink
from ..policy import Policy
from ..registry import store_for_dataset
from ..sources.dynamodb.events import stream_origin, stream_region_matches
from ..sources.dynamodb.stream import StreamRecordError, from_stream_record
from ..sources.s3 import events as s3_events
from .capture_events import continuous_datasets, gap, ingest_batch

log = logging.getLogger(__name__)

MAX_RECORDS = 10_000  # a Lambda stream batch holds at most 10,000 records


def _region(policy: Policy, dataset: str) -> str:
    """The region of a DynamoDB dataset's table (its spec's required ``region``)."""
    return str(policy.dataset(dataset).source.model_dump().get("region") or "")



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
        if not isinstance(record, Mapping) or not isinstance(record.get("eventSourceARN"), str):
            failed_at, problem = index, f"record {index} is not a stream record (no eventSourceARN)"
            log.error("%s", problem)
            break
        arn = str(record["eventSourceARN"])
        origin = stream_origin(arn)
        names = [n for n in (continuous_datasets(policy, origin, only) if origin else [])
                 if stream_region_matches(arn, _region(policy, n))]
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
            captured[name] = ingest_batch(policy, name, pending[name], sink, clock).as_dict()
        except CloudkeepError as exc:
            problem = f"dataset {name}: the change log could not be written: {exc}"
            log.error("%s", problem)
            failed_at = first if failed_at is None else min(failed_at, first)
    failures = []
    if failed_at is not None:
        body = records[failed_at].get("dynamodb") if isinstance(records[failed_at], Mapping) else None
        sequence = body.get("SequenceNumber") if isinstance(body, Mapping) else None
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
    return [gap(policy, name, start, None, reason, sink)
            for name in continuous_datasets(policy, origin, only)
            if stream_region_matches(str(info.get("streamArn")), _region(policy, name))]


# ---------------------------------------------------------------- S3 event notifications


def capture_s3_events(policy: Policy, event: Mapping[str, Any], *,
                      sink: MetricsSink | None = None, clock: Any = None,
                      only: Iterable[str] | None = None) -> dict[str, Any]:
    """S3 object events into the change log of every continuous dataset of the bucket that backs
    up the object's key. Created versions are copied into the dataset's blobs first (so a logged
    line never points at a missing blob); a version deleted before it could be read is skipped
    (its removal event follows). A removal is logged when it hides the object (a delete marker,
    or a delete that leaves no current version); deleting an older version for good leaves the
    item as it was. Raises when a version cannot be copied or the log not written,
    so the platform retries the whole notification (writes are idempotent)."""
    try:
        objects = list(s3_events.parse_events(event))
    except s3_events.BadEventError as exc:
        raise UsageError(f"bad S3 event: {exc}") from None
    batches: dict[str, list[Change]] = {}
    sources: dict[str, Any] = {}
    vanished = kept = 0
    for obj in objects:
        for name in continuous_datasets(policy, f"s3:{obj.bucket}", only):
            spec = policy.dataset(name).source
            if not spec.captures_key(obj.key):
                continue
            if name not in sources:
                source: Any = spec.open()
                source.attach_store(store_for_dataset(policy, name), name)
                sources[name] = source
            if not obj.created and not obj.marker and s3_events.still_there(sources[name], obj.key):
                # one version deleted for good, but the object still has a current version
                # (its creation was logged): the item did not go away
                kept += 1
                continue
            if obj.created:
                record = s3_events.capture_version(sources[name], obj.key, obj.version)
                if record is None:
                    vanished += 1
                    continue
                line = canonical_json(record)
                change = Change(obj.key, "insert", obj.time, obj.bucket, obj.sequence, line)
            else:
                change = Change(obj.key, "remove", obj.time, obj.bucket, obj.sequence, None)
            batches.setdefault(name, []).append(change)
    captured = {name: ingest_batch(policy, name, changes, sink, clock).as_dict()
                for name, changes in batches.items()}
    return {"captured": captured, "events": len(objects), "vanished": vanished,
            "versions_deleted": kept}
