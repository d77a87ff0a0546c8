"""Run context on every log line: run id, dataset and snapshot id, carried in context variables.

The engine sets them; :class:`ContextFilter` copies them onto each log record, where any
formatter (Powertools' JSON logger on Lambda, :class:`JsonFormatter` elsewhere) picks them up.
Worker threads get them through ``contextvars.copy_context()``.
"""

from __future__ import annotations

import contextvars
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from .redaction import RedactingFilter, redact

run_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("cloudkeep_run_id", default=None)
dataset: contextvars.ContextVar[str | None] = contextvars.ContextVar("cloudkeep_dataset", default=None)
snapshot_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "cloudkeep_snapshot_id", default=None
)
_VARS = {"run_id": run_id, "dataset": dataset, "snapshot_id": snapshot_id}


@contextmanager
def bind(**values: str | None) -> Iterator[None]:
    """Set context values for the duration of a block."""
    tokens = [(_VARS[k], _VARS[k].set(v)) for k, v in values.items()]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


class ContextFilter(logging.Filter):
    """Adds run_id / dataset / snapshot_id attributes (when set) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in _VARS.items():
            value = var.get()
            if value is not None and not hasattr(record, name):
                setattr(record, name, value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with ``severity`` (Google Cloud Logging reads it) and context."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "severity": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in _VARS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        extra = getattr(record, "cloudkeep", None)
        if isinstance(extra, dict):
            entry.update(extra)
        if record.exc_text:  # set (and redacted) by the handler's RedactingFilter
            entry["exception"] = record.exc_text
        elif record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        # the handler's RedactingFilter cleaned the record; this covers any other way in
        return redact(json.dumps(entry, default=str))


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of each record (tests swap it)."""

    target = "stderr"

    @property  # type: ignore[override]
    def stream(self) -> object:
        import sys

        return getattr(sys, self.target)

    @stream.setter
    def stream(self, value: object) -> None:
        pass


class StdoutHandler(StderrHandler):
    """Writes to whatever ``sys.stdout`` is at the time of each record."""

    target = "stdout"


def install_json_logging(level: int = logging.INFO) -> None:
    """JSON lines on stderr for the cloudkeep loggers (Cloud Functions, Azure Functions), every
    line redacted (``cloudkeep.redaction``)."""
    handler = StderrHandler()
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger("cloudkeep")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
