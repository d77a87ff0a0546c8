"""The connect timeout and retry budget of every AWS client cloudkeep makes, in one place.

Every botocore client (DynamoDB, S3 store and source, RDS, STS, KMS, SQS, SNS, discovery) is built
with :func:`client_config`: botocore's *standard* retry mode with ``MAX_ATTEMPTS`` attempts in
all (the first and two retries, exponential backoff with jitter: at most 1 s, then 2 s), a
``CONNECT_TIMEOUT`` per connection attempt and a ``READ_TIMEOUT`` per response.

So a call to an endpoint that cannot be reached fails, with exit code 3, within a bounded time:
connection refused (the endpoint is down) — within the backoff, under ``3 s``; no answer at all (a
black-holed address) — under ``MAX_ATTEMPTS × CONNECT_TIMEOUT + 3 s = 9 s``. A tick whose
DynamoDB table is unreachable fails that dataset after one such call and goes on with the others.

``AWS_MAX_ATTEMPTS`` and ``AWS_RETRY_MODE`` in the environment override the attempts and the mode
(botocore's own variables; e.g. more attempts for a heavily throttled table).
"""

from __future__ import annotations

import os
from typing import Any

CONNECT_TIMEOUT = 2.0  # seconds per connection attempt
READ_TIMEOUT = 60.0  # seconds to wait for a response once connected
MAX_ATTEMPTS = 3  # attempts in all, retries included
RETRY_MODE = "standard"


def max_attempts() -> int:
    """The attempts per call: ``AWS_MAX_ATTEMPTS`` when set to a positive number, else
    :data:`MAX_ATTEMPTS`."""
    text = os.environ.get("AWS_MAX_ATTEMPTS", "")
    return int(text) if text.isdigit() and int(text) > 0 else MAX_ATTEMPTS


def client_config(**overrides: Any) -> Any:
    """A botocore ``Config`` with cloudkeep's timeouts and retry budget (``overrides`` are other
    Config options, e.g. ``max_pool_connections``)."""
    from botocore.config import Config

    retries = {"mode": os.environ.get("AWS_RETRY_MODE", RETRY_MODE),
               "total_max_attempts": max_attempts()}  # attempts in all, the first included
    options: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT, "read_timeout": READ_TIMEOUT,
                               "retries": retries}
    options.update(overrides)
    return Config(**options)
