"""AWS Lambda entry points of continuous capture (issue #21), run by the backup role (read the
sources, create objects in the vault — never delete or overwrite):

- ``stream``: a DynamoDB Streams event source mapping (serverless.yml ``captureStreams``: batch
  window, ReportBatchItemFailures, bisect on error, retries, an SQS failure destination). The
  reply's ``batchItemFailures`` names the first record not captured.
- ``failures``: the failure destination's queue: a batch Lambda gave up on is recorded as a gap
  of the change log (and the ``capture_gap`` alert raised).
- ``objects``: S3 event notifications (``captureBuckets``): object versions created or removed.

Thin on purpose, as ``aws_lambda``: parse the event, load the policy, call
``cloudkeep.services.capture_aws``, shape the reply. Only AWS SDKs are ever imported here; the
core loads on the first invocation. ``CLOUDKEEP_CAPTURE_DATASETS`` (comma-separated) limits
capture to those datasets; by default every continuous dataset of the event's table or bucket.
"""

from __future__ import annotations

import json
import os
from functools import cache
from types import SimpleNamespace
from typing import Any

from handlers.aws_lambda import BUNDLED_POLICY, _traced, logger, metrics


@cache
def _core() -> SimpleNamespace:
    """The core, imported on the first invocation (not at cold-start import time)."""
    from cloudkeep import function
    from cloudkeep.metrics import EmfSink
    from cloudkeep.services import capture_aws

    return SimpleNamespace(function=function, capture=capture_aws, EmfSink=EmfSink)


def _only() -> list[str] | None:
    names = [n.strip() for n in os.environ.get("CLOUDKEEP_CAPTURE_DATASETS", "").split(",")]
    return [n for n in names if n] or None


@logger.inject_lambda_context(log_event=False)
@_traced
@metrics.log_metrics
def stream(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """A batch of DynamoDB stream records → the change log. Partial failures are reported
    (ReportBatchItemFailures); nothing is raised for a poison record, so Lambda retries from it,
    bisects, and finally hands it to the failure destination."""
    core = _core()
    policy = core.function.load(BUNDLED_POLICY)
    reply = core.capture.capture_dynamodb_stream(policy, event, sink=core.EmfSink(), only=_only())
    logger.info("captured", extra={"captured": reply["captured"], "skipped": reply["skipped"],
                                   "failures": reply["batchItemFailures"]})
    return {"batchItemFailures": reply["batchItemFailures"]}


@logger.inject_lambda_context(log_event=False)
@_traced
@metrics.log_metrics
def failures(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """SQS messages of the stream mapping's failure destination → gaps. A message that cannot be
    recorded is reported back (ReportBatchItemFailures) and retried, then dead-lettered."""
    core = _core()
    policy = core.function.load(BUNDLED_POLICY)
    failed = []
    for record in event.get("Records", []):
        try:
            message = json.loads(record.get("body") or "null")
            if not isinstance(message, dict):
                raise ValueError("the message is not a JSON object")
            gaps = core.capture.capture_stream_failure(policy, message, sink=core.EmfSink(),
                                                       only=_only())
            logger.warning("recorded change-log gaps", extra={"gaps": gaps})
        except Exception:  # noqa: BLE001 - reported back: SQS retries it, then dead-letters it
            logger.exception("failure record %s not recorded", record.get("messageId"))
            failed.append({"itemIdentifier": record.get("messageId")})
    return {"batchItemFailures": failed}


@logger.inject_lambda_context(log_event=False)
@_traced
@metrics.log_metrics
def objects(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """S3 event notifications (or EventBridge S3 events) → blobs and the change log. Raises when
    a version cannot be captured, so the asynchronous invocation is retried (then onError)."""
    core = _core()
    policy = core.function.load(BUNDLED_POLICY)
    reply: dict[str, Any] = core.capture.capture_s3_events(policy, event, sink=core.EmfSink(),
                                                           only=_only())
    return reply
