"""Azure Functions (Python v2 programming model): a timer trigger for the tick, a queue trigger
for fan-out work items, timer triggers for the pruner and the scheduled verifications, and an
HTTP trigger (function-level auth) for on-demand actions, and — continuous capture — a Cosmos DB
trigger (``capture``) on the container named by ``CLOUDKEEP_COSMOS_DATABASE`` and
``CLOUDKEEP_COSMOS_CONTAINER`` (connection ``CLOUDKEEP_COSMOS``, leases in
``CLOUDKEEP_COSMOS_LEASES``), registered only when those settings are there.

One identity per Function App (an app's functions share its identities), so infra/azure deploys
one app per role and the app setting ``CLOUDKEEP_ROLE`` says which functions this app has:
``backup`` (tick, work, capture), ``prune`` (prune), ``restore`` (verify, invoke) or ``all`` (default:
every function, for one app holding the union of the roles). Timer schedules (NCRONTAB) come
from ``CLOUDKEEP_TICK`` (default every 15 minutes), ``CLOUDKEEP_PRUNE_SCHEDULE`` and
``CLOUDKEEP_VERIFY_SCHEDULE``. Thin on purpose: parse, load the policy, call cloudkeep, reply.
No AWS or Google SDK is imported here.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import azure.functions as func

_HERE = Path(__file__).resolve().parent
if (_HERE / "cloudkeep").is_dir():  # deployed: the package is copied next to this file
    sys.path.insert(0, str(_HERE))

from cloudkeep import function  # noqa: E402
from cloudkeep.checkpoint import Deadline  # noqa: E402
from cloudkeep.function import invoke as handle  # noqa: E402
from cloudkeep.logctx import install_json_logging  # noqa: E402
from cloudkeep.metrics import LogSink  # noqa: E402
from cloudkeep.services import capture_azure  # noqa: E402

BUNDLED_POLICY = _HERE / "cloudkeep.yaml"
DEFAULT_TICK = "0 */15 * * * *"
DEFAULT_PRUNE = "0 30 * * * *"  # hourly, off the tick's quarter hours
DEFAULT_VERIFY = "0 */15 * * * *"  # the tiers' verify schedules decide what is due
ROLE_FUNCTIONS = {"backup": {"tick", "work", "capture"}, "prune": {"prune"}, "restore": {"verify", "invoke"}}
ROLE = os.environ.get("CLOUDKEEP_ROLE", "all")
if ROLE != "all" and ROLE not in ROLE_FUNCTIONS:
    raise RuntimeError(f"CLOUDKEEP_ROLE={ROLE!r}: use one of all, {', '.join(ROLE_FUNCTIONS)}")
ENABLED = set().union(*ROLE_FUNCTIONS.values()) if ROLE == "all" else ROLE_FUNCTIONS[ROLE]
CAPTURE_DATABASE = os.environ.get("CLOUDKEEP_COSMOS_DATABASE", "")
CAPTURE_CONTAINER = os.environ.get("CLOUDKEEP_COSMOS_CONTAINER", "")
if not (CAPTURE_DATABASE and CAPTURE_CONTAINER):
    ENABLED = ENABLED - {"capture"}  # no container to capture: no trigger to register
# The function timeout (host.json functionTimeout); the worker hands the rest on before it.
WORK_TIMEOUT_SECONDS = float(os.environ.get("CLOUDKEEP_WORK_TIMEOUT", "540"))

install_json_logging()
app = func.FunctionApp()


def _timer(name: str, setting: str, default: str) -> Any:
    """Register a timer trigger for ``name`` if this app's role has it."""
    def register(fn: Any) -> Any:
        if name not in ENABLED:
            return fn
        return app.timer_trigger(schedule=os.environ.get(setting, default), arg_name="timer",
                                 run_on_startup=False, use_monitor=True)(fn)
    return register


def _enabled(name: str, decorator: Any) -> Any:
    return decorator if name in ENABLED else (lambda fn: fn)


@_timer("tick", "CLOUDKEEP_TICK", DEFAULT_TICK)
def tick(timer: func.TimerRequest) -> None:
    """Back up what is due now. Raises when a dataset failed, so the run is recorded as failed."""
    policy = function.load(BUNDLED_POLICY)
    function.scheduled_tick(policy, None, LogSink(), Deadline.after(WORK_TIMEOUT_SECONDS, reserve=60.0))


@_timer("prune", "CLOUDKEEP_PRUNE_SCHEDULE", DEFAULT_PRUNE)
def prune(timer: func.TimerRequest) -> None:
    """Apply retention to every dataset (the pruner app's identity is the only one that deletes)."""
    function.scheduled_prune(function.load(BUNDLED_POLICY), None, LogSink())


@_timer("verify", "CLOUDKEEP_VERIFY_SCHEDULE", DEFAULT_VERIFY)
def verify(timer: func.TimerRequest) -> None:
    """Run the drills and samples due now (the restore/drill identity)."""
    function.scheduled_verify(function.load(BUNDLED_POLICY), None, LogSink())


@_enabled("work", app.queue_trigger(arg_name="msg", queue_name="%CLOUDKEEP_WORK_QUEUE_NAME%",
                                    connection="AzureWebJobsStorage"))
def work(msg: func.QueueMessage) -> None:
    """A fan-out work item (one snapshot segment) from the Storage Queue. Raises when it failed:
    the host retries it (maxDequeueCount), then moves it to the poison queue."""
    policy = function.load(BUNDLED_POLICY)
    deadline = Deadline.after(WORK_TIMEOUT_SECONDS, reserve=60.0)
    function.work_item(policy, msg.get_body(), deadline, LogSink())


@_enabled("invoke", app.route(route="invoke", methods=["POST"], auth_level=func.AuthLevel.FUNCTION))
def invoke(req: func.HttpRequest) -> func.HttpResponse:
    """POST a JSON action: ``{"action": "backup"|"verify"|"restore"|"plan", ...}``."""
    try:
        payload = req.get_json()
    except ValueError:
        payload = None
    status, body = handle(function.load(BUNDLED_POLICY), payload)
    return func.HttpResponse(json.dumps(body, default=str), status_code=status,
                             mimetype="application/json")


@_enabled("capture", app.cosmos_db_trigger(
    arg_name="documents", connection="CLOUDKEEP_COSMOS", database_name="%CLOUDKEEP_COSMOS_DATABASE%",
    container_name="%CLOUDKEEP_COSMOS_CONTAINER%", lease_container_name="%CLOUDKEEP_COSMOS_LEASES%",
    create_lease_container_if_not_exists=False, max_items_per_invocation=1000))
def capture(documents: func.DocumentList) -> None:
    """A batch of changed documents from the container's change feed → the change log of every
    continuous dataset of that container. Raises when it could not be written: the host retries
    the batch (its retry policy) before moving the lease on. ``CLOUDKEEP_CAPTURE_DATASETS``
    (comma-separated) limits the datasets."""
    policy = function.load(BUNDLED_POLICY)
    only = [n.strip() for n in os.environ.get("CLOUDKEEP_CAPTURE_DATASETS", "").split(",") if n.strip()]
    capture_azure.capture_cosmos_documents(
        policy, CAPTURE_DATABASE, CAPTURE_CONTAINER, [doc.to_json() for doc in documents],
        sink=LogSink(), only=only or None)
