"""Azure Functions (Python v2 programming model): a timer trigger for the tick, a queue trigger
for fan-out work items, and an HTTP trigger (function-level auth) for on-demand actions.

The timer's NCRONTAB schedule comes from the app setting ``CLOUDKEEP_TICK`` (default every 15
minutes). Thin on purpose: parse, load the policy, call cloudkeep, reply. No AWS or Google SDK
is imported here.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import azure.functions as func

_HERE = Path(__file__).resolve().parent
if (_HERE / "cloudkeep").is_dir():  # deployed: the package is copied next to this file
    sys.path.insert(0, str(_HERE))

from cloudkeep import function  # noqa: E402
from cloudkeep.actions import handle  # noqa: E402
from cloudkeep.checkpoint import Deadline  # noqa: E402
from cloudkeep.logctx import install_json_logging  # noqa: E402
from cloudkeep.metrics import LogSink  # noqa: E402

BUNDLED_POLICY = _HERE / "cloudkeep.yaml"
DEFAULT_TICK = "0 */15 * * * *"
# The function timeout (host.json functionTimeout); the worker hands the rest on before it.
WORK_TIMEOUT_SECONDS = float(os.environ.get("CLOUDKEEP_WORK_TIMEOUT", "540"))

install_json_logging()
app = func.FunctionApp()


@app.timer_trigger(schedule=os.environ.get("CLOUDKEEP_TICK", DEFAULT_TICK), arg_name="timer",
                   run_on_startup=False, use_monitor=True)
def tick(timer: func.TimerRequest) -> None:
    """Back up what is due now. Raises when a dataset failed, so the run is recorded as failed."""
    policy = function.load(BUNDLED_POLICY)
    function.scheduled_tick(policy, None, LogSink(), Deadline.after(WORK_TIMEOUT_SECONDS, reserve=60.0))


@app.queue_trigger(arg_name="msg", queue_name="%CLOUDKEEP_WORK_QUEUE_NAME%",
                   connection="AzureWebJobsStorage")
def work(msg: func.QueueMessage) -> None:
    """A fan-out work item (one snapshot segment) from the Storage Queue. Raises when it failed:
    the host retries it (maxDequeueCount), then moves it to the poison queue."""
    policy = function.load(BUNDLED_POLICY)
    deadline = Deadline.after(WORK_TIMEOUT_SECONDS, reserve=60.0)
    function.work_item(policy, msg.get_body(), deadline, LogSink())


@app.route(route="invoke", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def invoke(req: func.HttpRequest) -> func.HttpResponse:
    """POST a JSON action: ``{"action": "backup"|"verify"|"restore"|"plan", ...}``."""
    try:
        payload = req.get_json()
    except ValueError:
        payload = None
    status, body = handle(function.load(BUNDLED_POLICY), payload)
    return func.HttpResponse(json.dumps(body, default=str), status_code=status,
                             mimetype="application/json")
