"""One redaction for every output path: log lines, CLI tables and JSON, error messages and
tracebacks, audit records, alerts, manifests, reports and function replies.

:func:`redact` removes credentials from text: values known to be secret (registered with
:func:`remember`, e.g. the environment variables a policy names for secrets), then anything
shaped like a credential — the user information of any URL (``scheme://user:pass@host``), secret
``key=value`` pairs of query strings, headers and connection strings (``sig=``,
``X-Amz-Signature=``, ``AccountKey=``, SAS tokens, passwords, tokens), bearer tokens, AWS access
key ids and Slack webhook URLs. :func:`redact_obj` does the same to every string of a JSON-like
value; :class:`RedactingFilter` to every log record a handler emits (message, arguments,
exception text, stack and the structured ``cloudkeep`` fields).

Redaction is idempotent and never makes text longer than it needs: ``[redacted]`` replaces the
secret part only, so messages stay readable (``http://[redacted]@127.0.0.1:9000/``).
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterable
from typing import Any

MARK = "[redacted]"

_SECRET_NAMES = (
    r"AccountKey|SharedAccessSignature|SharedAccessKey|password|passwd|pwd|secret|client_secret"
    r"|secret_key|secret_access_key|aws_secret_access_key|session_token|token|access_token"
    r"|refresh_token|id_token|api[_-]?key|apikey|sig|signature|x-amz-signature"
    r"|x-amz-credential|x-amz-security-token|x-goog-signature|x-goog-credential"
)
# Field names of JSON / YAML text that always hold a secret (not "key": cloudkeep's records name
# object keys so).
_SECRET_FIELDS = (
    r"AccountKey|SharedAccessKey|SharedAccessSignature|password|passwd|secret|client_secret"
    r"|secret_key|secret_access_key|aws_secret_access_key|session_token|access_token"
    r"|refresh_token|api[_-]?key|apikey|authorization"
)

_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # the user information of any URL: scheme://user:password@host, scheme://token@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)(?!\[redacted\]@)[^/\s@?#\"'<>]+@"), r"\1" + MARK + "@"),
    # key=value pairs whose name says secret (query strings, connection strings, headers)
    (re.compile(rf"(?i)(?<![A-Za-z0-9_-])({_SECRET_NAMES})=(?!\[redacted\])([^;&\s\"'<>,]+)"),
     r"\1=" + MARK),
    # a bare key=VALUE only when VALUE looks like a key (long, base64-ish): "key=" also appears
    # in ordinary object names (Hive-style partitions such as key=eu-west/)
    (re.compile(r"(?i)(?<![A-Za-z0-9_-])(key)=(?!\[redacted\])([A-Za-z0-9+/_-]{16,}={0,2})(?=$|[;&\s\"'<>,])"),
     r"\1=" + MARK),
    # JSON or YAML fields whose name says secret: "password": "...", 'client_secret': '...'
    (re.compile(rf"(?i)([\"']?(?<![A-Za-z0-9_-])(?:{_SECRET_FIELDS})[\"']?\s*:\s*[\"'])"
                r"(?!\[redacted\])([^\"']+)([\"'])"), r"\1" + MARK + r"\3"),
    (re.compile(r"(?i)\b(bearer|basic)\s+(?!\[redacted\])[A-Za-z0-9._~+/=-]{8,}"), r"\1 " + MARK),
    (re.compile(r"\b(AKIA|ASIA)[A-Z0-9]{16}\b"), "[redacted-aws-key-id]"),
    (re.compile(r"https://hooks\.slack\.com/[^\s\"'<>]+"), "[redacted-webhook]"),
]

_known: set[str] = set()
_known_lock = threading.Lock()


def remember(values: Iterable[str]) -> None:
    """Secret values to redact from every output from now on (environment values a policy names
    for secrets: a webhook URL, a Cosmos DB key, a connection string). Short values (under six
    characters) are ignored: replacing them would mangle ordinary text."""
    with _known_lock:
        _known.update(v for v in values if isinstance(v, str) and len(v) >= 6)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` without credentials: known secret values (``secrets`` and those remembered),
    then anything shaped like one (see the module docstring)."""
    if not text:
        return text
    with _known_lock:
        values = set(_known)
    values.update(v for v in secrets if v)
    for value in sorted(values, key=len, reverse=True):
        if value in text:
            text = text.replace(value, MARK)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact_url(url: str | None) -> str | None:
    """A URL without its credentials (user information and secret query parameters)."""
    return None if url is None else redact(url)


def redact_obj(value: Any, secrets: Iterable[str] = ()) -> Any:
    """A copy of a JSON-like value (dicts, lists, tuples, strings, scalars) with every string
    redacted; other values are returned as they are."""
    values = list(secrets)
    if isinstance(value, str):
        return redact(value, values)
    if isinstance(value, dict):
        return {k: redact_obj(v, values) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact_obj(v, values) for v in value)
    return value


class RedactingFilter(logging.Filter):
    """Redacts every record it sees: the formatted message (its arguments merged in), the
    exception and stack texts, and the structured ``cloudkeep`` fields. Attach it to handlers
    (a filter on a logger misses records of its child loggers).

    An exception is formatted once, redacted, and kept as the record's ``exc_text`` (and its
    ``exception`` / ``exception_name`` fields, which Powertools' JSON formatter prints); the raw
    ``exc_info`` is dropped so that no formatter renders the unredacted traceback again."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format string: keep what there is
            message = str(record.msg)
        record.msg, record.args = redact(message), None
        if record.exc_info and record.exc_info[0] is not None:
            if not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exception_name = record.exc_info[0].__name__
            record.exc_info = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
            record.exception = record.exc_text
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        extra = getattr(record, "cloudkeep", None)
        if isinstance(extra, dict):
            record.cloudkeep = redact_obj(extra)
        return True


def install(*loggers: logging.Logger) -> None:
    """Put a :class:`RedactingFilter` on ``loggers`` and on each of their handlers (once)."""
    for logger in loggers:
        for target in (logger, *logger.handlers):
            if not any(isinstance(f, RedactingFilter) for f in target.filters):
                target.addFilter(RedactingFilter())


def secret_values(policy: Any = None) -> list[str]:
    """Values that must never leave: the environment variables the policy names for secrets
    (the webhook URL, Cosmos DB keys, Azure connection strings)."""
    names: set[str] = set()
    if policy is not None:
        alerts = policy.alerts
        if alerts is not None and alerts.webhook is not None:
            names.add(alerts.webhook.url_env)
        for spec in policy.datasets.values():
            names.update(spec.source.secret_envs())
        for store in policy.stores.values():
            names.update(store.secret_envs())
    return [os.environ[n] for n in sorted(names) if len(os.environ.get(n, "")) >= 6]
