"""AWS Lambda entry points: ``tick`` (EventBridge schedule; backs up), ``work`` (SQS fan-out work
items), ``prune`` (its own EventBridge schedule; retention), ``verify`` (its own schedule; the
scheduled drills and samples) and ``invoke`` (direct invocation). Each runs with its own role
(serverless.yml, docs/threat-model.md).

Thin on purpose: parse the event, load the policy, call cloudkeep, shape the reply. Only AWS
SDKs are ever imported here (a test checks it in a fresh process).

Cold start (bench/bench_cold_start.py, `make bench`): importing this module costs little more
than ``import boto3``. It sets up logging and metrics only; the core (policy, engine, models) is
imported on the first invocation (:func:`_core`), and X-Ray tracing (Powertools' Tracer, which
loads ``aws_xray_sdk``, ~400 ms) only when ``CLOUDKEEP_TRACING=true`` is set (and
``POWERTOOLS_TRACE_DISABLED`` is not true). Lambda's active tracing (serverless.yml) still
records each invocation without it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from functools import cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

from cloudkeep.logctx import ContextFilter, StdoutHandler
from cloudkeep.redaction import RedactingFilter

BUNDLED_POLICY = Path(__file__).resolve().parent.parent / "cloudkeep.yaml"
_TRUE = {"1", "true", "yes", "on"}
TRACING = (os.environ.get("CLOUDKEEP_TRACING", "").strip().lower() in _TRUE
           and os.environ.get("POWERTOOLS_TRACE_DISABLED", "").strip().lower() not in _TRUE)

logger = Logger(service="cloudkeep", logger_handler=StdoutHandler())
metrics = Metrics(namespace="cloudkeep", service="cloudkeep")

logging.getLogger("cloudkeep")  # make sure the core's parent logger exists before copying
copy_config_to_registered_loggers(source_logger=logger, include={"cloudkeep"})
for _handler in logging.getLogger("cloudkeep").handlers:
    _handler.addFilter(ContextFilter())  # run_id, dataset, snapshot_id on every line
    _handler.addFilter(RedactingFilter())  # and never a credential
logger.registered_handler.addFilter(RedactingFilter())

F = TypeVar("F", bound=Callable[..., Any])


def _traced(handler: F) -> F:
    """Powertools' ``capture_lambda_handler`` when tracing is on; the handler itself otherwise."""
    if not TRACING:
        return handler
    from aws_lambda_powertools import Tracer

    return Tracer(service="cloudkeep").capture_lambda_handler(handler)  # type: ignore[no-any-return]


@cache
def _core() -> SimpleNamespace:
    """The core, imported on the first invocation (not at cold-start import time)."""
    from cloudkeep import function
    from cloudkeep.checkpoint import Deadline
    from cloudkeep.function import invoke as handle
    from cloudkeep.metrics import EmfSink

    return SimpleNamespace(function=function, handle=handle, Deadline=Deadline, EmfSink=EmfSink)


@logger.inject_lambda_context(log_event=False)
@_traced
@metrics.log_metrics
def tick(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """EventBridge scheduled event → back up what is due at the event's time."""
    core = _core()
    metrics.add_metric(name="TickInvoked", unit="Count", value=1)
    policy = core.function.load(BUNDLED_POLICY)
    # TickCompleted is the heartbeat the TickNotReporting alarm watches: the tick ran through,
    # watchdog included (a failed dataset still counts; a crash or a timeout does not)
    try:
        reply = core.function.scheduled_tick(policy, core.function.parse_time(event.get("time")),
                                             core.EmfSink(), core.Deadline.from_lambda_context(context))
    except core.function.TickFailedError:
        metrics.add_metric(name="TickCompleted", unit="Count", value=1)
        raise
    metrics.add_metric(name="TickCompleted", unit="Count", value=1)
    return reply


@logger.inject_lambda_context(log_event=False)
@_traced
@metrics.log_metrics
def prune(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """EventBridge scheduled event → apply retention to every dataset (the pruner role)."""
    core = _core()
    policy = core.function.load(BUNDLED_POLICY)
    return core.function.scheduled_prune(policy, core.function.parse_time(event.get("time")), core.EmfSink())


@logger.inject_lambda_context(log_event=False)
@_traced
@metrics.log_metrics
def verify(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """EventBridge scheduled event → the drills and samples due (the restore/drill role)."""
    core = _core()
    policy = core.function.load(BUNDLED_POLICY)
    return core.function.scheduled_verify(policy, core.function.parse_time(event.get("time")), core.EmfSink())


@logger.inject_lambda_context(log_event=False)
@_traced
@metrics.log_metrics
def work(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """SQS batch of fan-out work items (one snapshot segment each). Failed items are reported
    back (ReportBatchItemFailures): SQS redelivers only those, then moves them to the DLQ."""
    core = _core()
    policy = core.function.load(BUNDLED_POLICY)
    deadline = core.Deadline.from_lambda_context(context)
    failures = []
    for record in event.get("Records", []):
        try:
            core.function.work_item(policy, record.get("body"), deadline, core.EmfSink())
        except Exception:
            logger.exception("work item %s failed", record.get("messageId"))
            failures.append({"itemIdentifier": record.get("messageId")})
    return {"batchItemFailures": failures}


@logger.inject_lambda_context(log_event=False)
@_traced
def invoke(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Direct invocation: ``{"action": "backup"|"verify"|"restore"|"plan", ...}``."""
    core = _core()
    status, body = core.handle(core.function.load(BUNDLED_POLICY), event)
    return {"statusCode": status, **body}
