"""Google Cloud Functions (2nd gen) entry points: ``tick``, ``prune`` and ``verify`` (Pub/Sub
CloudEvents from their own Cloud Scheduler jobs; each function runs as its own service account:
infra/gcp), ``work`` (fan-out work items), ``invoke`` (HTTP, on-demand actions) and ``capture``
(continuous capture: Firestore ``document.written`` events, run by the backup account).

Thin on purpose: parse the event, load the policy, call cloudkeep, shape the reply. Logs are
JSON lines with ``severity`` (Cloud Logging parses them); metrics are log lines ready for
log-based metrics. No AWS or Azure SDK is imported here (a test checks it in a fresh process).
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import functions_framework

from cloudkeep import function
from cloudkeep.checkpoint import Deadline
from cloudkeep.function import invoke as handle
from cloudkeep.logctx import install_json_logging
from cloudkeep.metrics import LogSink
from cloudkeep.services import capture_gcp

BUNDLED_POLICY = Path(__file__).resolve().parent.parent / "cloudkeep.yaml"
# The worker function's timeout (infra/gcp sets it; Cloud Functions does not tell the code).
WORK_TIMEOUT_SECONDS = float(os.environ.get("CLOUDKEEP_WORK_TIMEOUT", "540"))

install_json_logging()


@functions_framework.cloud_event
def tick(cloud_event: Any) -> None:
    """Pub/Sub message from Cloud Scheduler → back up what is due at the event's time.
    Raises when a dataset failed, so the function reports an error (and Pub/Sub may retry)."""
    policy = function.load(BUNDLED_POLICY)
    reply = function.scheduled_tick(policy, function.parse_time(cloud_event["time"]), LogSink(),
                                    Deadline.after(WORK_TIMEOUT_SECONDS, reserve=60.0))
    print(json.dumps({"severity": "INFO", "message": "tick done", "reply": reply}, default=str))


@functions_framework.cloud_event
def prune(cloud_event: Any) -> None:
    """Pub/Sub message from the pruner's Cloud Scheduler job → apply retention to every dataset."""
    policy = function.load(BUNDLED_POLICY)
    reply = function.scheduled_prune(policy, function.parse_time(cloud_event["time"]), LogSink())
    print(json.dumps({"severity": "INFO", "message": "prune done", "reply": reply}, default=str))


@functions_framework.cloud_event
def verify(cloud_event: Any) -> None:
    """Pub/Sub message from the verifier's Cloud Scheduler job → the drills and samples due."""
    policy = function.load(BUNDLED_POLICY)
    reply = function.scheduled_verify(policy, function.parse_time(cloud_event["time"]), LogSink())
    print(json.dumps({"severity": "INFO", "message": "verify done", "reply": reply}, default=str))


@functions_framework.cloud_event
def work(cloud_event: Any) -> None:
    """Pub/Sub message carrying a fan-out work item (one snapshot segment). Raises when it
    failed, so Pub/Sub redelivers it (then to the dead-letter topic)."""
    policy = function.load(BUNDLED_POLICY)
    data = base64.b64decode(cloud_event.data["message"]["data"])
    deadline = Deadline.after(WORK_TIMEOUT_SECONDS, reserve=60.0)
    reply = function.work_item(policy, data, deadline, LogSink())
    print(json.dumps({"severity": "INFO", "message": "work item done", "reply": reply}, default=str))


@functions_framework.cloud_event
def capture(cloud_event: Any) -> None:
    """A Firestore ``google.cloud.firestore.document.v1.written`` event (Eventarc; protobuf or
    JSON ``DocumentEventData``) → the change log of every continuous dataset that backs up the
    document. Raises when it could not be written, so Eventarc retries it (writes are
    idempotent). A malformed event is acknowledged, not retried: one error line, and a gap
    recorded in the change log of the event's database. ``CLOUDKEEP_CAPTURE_DATASETS``
    (comma-separated) limits the datasets."""
    policy = function.load(BUNDLED_POLICY)
    only = [n.strip() for n in os.environ.get("CLOUDKEEP_CAPTURE_DATASETS", "").split(",") if n.strip()]
    source = str(cloud_event.get("source") or "")
    database = source.split("firestore.googleapis.com/", 1)[1] if "firestore.googleapis.com/" in source else None
    reply = capture_gcp.capture_firestore_event(
        policy, cloud_event.data, cloud_event.get("datacontenttype"), str(cloud_event.get("time") or ""),
        sink=LogSink(), only=only or None, database=database)
    if "error" not in reply:
        print(json.dumps({"severity": "INFO", "message": "captured", "reply": reply}, default=str))


@functions_framework.http
def invoke(request: Any) -> tuple[str, int, dict[str, str]]:
    """POST a JSON action: ``{"action": "backup"|"verify"|"restore"|"plan", ...}``."""
    payload = request.get_json(silent=True)
    status, body = handle(function.load(BUNDLED_POLICY), payload)
    return json.dumps(body, default=str), status, {"Content-Type": "application/json"}
