"""AWS Lambda entry points: ``tick`` (EventBridge schedule; backs up), ``work`` (SQS fan-out work
items), ``prune`` (its own EventBridge schedule; retention), ``verify`` (its own schedule; the
scheduled drills and samples) and ``invoke`` (direct invocation). Each runs with its own role
(serverless.yml, docs/threat-model.md).

Thin on purpose: parse the event, load the policy, call cloudkeep, shape the reply. Only AWS
SDKs are ever imported here (a test checks it in a fresh process).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

from cloudkeep import function
from cloudkeep.checkpoint import Deadline
from cloudkeep.function import invoke as handle
from cloudkeep.logctx import ContextFilter, StdoutHandler
from cloudkeep.metrics import EmfSink
from cloudkeep.redaction import RedactingFilter

BUNDLED_POLICY = Path(__file__).resolve().parent.parent / "cloudkeep.yaml"

logger = Logger(service="cloudkeep", logger_handler=StdoutHandler())
metrics = Metrics(namespace="cloudkeep", service="cloudkeep")
tracer = Tracer(service="cloudkeep")

logging.getLogger("cloudkeep")  # make sure the core's parent logger exists before copying
copy_config_to_registered_loggers(source_logger=logger, include={"cloudkeep"})
for _handler in logging.getLogger("cloudkeep").handlers:
    _handler.addFilter(ContextFilter())  # run_id, dataset, snapshot_id on every line
    _handler.addFilter(RedactingFilter())  # and never a credential
logger.registered_handler.addFilter(RedactingFilter())


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def tick(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """EventBridge scheduled event → back up what is due at the event's time."""
    metrics.add_metric(name="TickInvoked", unit="Count", value=1)
    policy = function.load(BUNDLED_POLICY)
    # TickCompleted is the heartbeat the TickNotReporting alarm watches: the tick ran through,
    # watchdog included (a failed dataset still counts; a crash or a timeout does not)
    try:
        reply = function.scheduled_tick(policy, function.parse_time(event.get("time")), EmfSink(),
                                        Deadline.from_lambda_context(context))
    except function.TickFailedError:
        metrics.add_metric(name="TickCompleted", unit="Count", value=1)
        raise
    metrics.add_metric(name="TickCompleted", unit="Count", value=1)
    return reply


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def prune(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """EventBridge scheduled event → apply retention to every dataset (the pruner role)."""
    policy = function.load(BUNDLED_POLICY)
    return function.scheduled_prune(policy, function.parse_time(event.get("time")), EmfSink())


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def verify(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """EventBridge scheduled event → the drills and samples due (the restore/drill role)."""
    policy = function.load(BUNDLED_POLICY)
    return function.scheduled_verify(policy, function.parse_time(event.get("time")), EmfSink())


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def work(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """SQS batch of fan-out work items (one snapshot segment each). Failed items are reported
    back (ReportBatchItemFailures): SQS redelivers only those, then moves them to the DLQ."""
    policy = function.load(BUNDLED_POLICY)
    deadline = Deadline.from_lambda_context(context)
    failures = []
    for record in event.get("Records", []):
        try:
            function.work_item(policy, record.get("body"), deadline, EmfSink())
        except Exception:
            logger.exception("work item %s failed", record.get("messageId"))
            failures.append({"itemIdentifier": record.get("messageId")})
    return {"batchItemFailures": failures}


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
def invoke(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Direct invocation: ``{"action": "backup"|"verify"|"restore"|"plan", ...}``."""
    status, body = handle(function.load(BUNDLED_POLICY), event)
    return {"statusCode": status, **body}
