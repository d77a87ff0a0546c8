"""The audit log: one immutable JSON record per backup, verification, restore, prune, hold and
policy change, written create-only under ``_audit/<yyyy>/<mm>/<dd>/`` of the store concerned
(``layout.audit_key``). A record is never rewritten; two records never share a key.

A record says what happened (``event``, ``dataset``, ``snapshot_id``, ``outcome``, ``detail``),
when (``at``), and who or what triggered it (``actor``: ``{"kind": "cli", "user": ...}``,
``{"kind": "schedule", ...}`` or ``{"kind": "function", "platform": ...}``). Writing a record is
best effort: a store that refuses it is logged, and the operation it records still stands.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import logging
import os
import secrets
import socket
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from typing import Any

from . import __version__, layout, sequences
from . import clock as _clock
from .errors import CloudkeepError, ObjectExistsError, UsageError
from .redaction import redact
from .specs import parse_duration
from .stores import Store

log = logging.getLogger(__name__)

EVENTS = ("backup", "verify", "restore", "prune", "hold_add", "hold_remove", "policy_change",
          "endorse")

_actor: ContextVar[dict[str, Any] | None] = ContextVar("cloudkeep_audit_actor", default=None)


def cli_user() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def current_actor() -> dict[str, Any]:
    """Who is acting now: what :func:`acting_as` set, else the local user (the CLI)."""
    actor = _actor.get()
    return dict(actor) if actor else {"kind": "cli", "user": cli_user()}


@contextlib.contextmanager
def acting_as(kind: str, **detail: Any) -> Iterator[None]:
    """Records written inside are attributed to ``kind`` (``schedule``, ``function``, ``cli``)."""
    token = _actor.set({"kind": kind, **{k: v for k, v in detail.items() if v is not None}})
    try:
        yield
    finally:
        _actor.reset(token)


def function_actor() -> dict[str, Any]:
    """The deployed function's identity as its platform exposes it (names only, no secrets)."""
    for platform, name_var in (("aws", "AWS_LAMBDA_FUNCTION_NAME"), ("gcp", "K_SERVICE"),
                               ("gcp", "FUNCTION_TARGET"), ("azure", "WEBSITE_SITE_NAME")):
        if os.environ.get(name_var):
            return {"platform": platform, "function": os.environ[name_var]}
    return {"platform": "local", "host": socket.gethostname()}


def write(store: Store, event: str, *, outcome: str, dataset: str | None = None,
          snapshot_id: str | None = None, detail: dict[str, Any] | None = None,
          at: datetime | None = None) -> str | None:
    """Append one record; returns its key, or None if the store refused it (logged)."""
    at = (at or _clock.now()).astimezone(UTC)
    record = {
        "event": event,
        "at": at.isoformat(),
        "actor": current_actor(),
        "dataset": dataset,
        "snapshot_id": snapshot_id,
        "outcome": outcome,
        "detail": detail or {},
        "cloudkeep_version": __version__,
    }
    # error texts in ``detail`` are meant to be secret-free; redact anyway (the log is immutable)
    body = redact(json.dumps(record, indent=2, default=str)).encode()
    name_at = at
    for _ in range(1000):
        key = layout.audit_key(name_at, event)
        try:
            store.put(key, body, if_absent=True)
            return key
        except ObjectExistsError:
            # another record of the same event in the same microsecond: the next microsecond
            name_at += timedelta(microseconds=1 + secrets.randbelow(50))
        except CloudkeepError as exc:
            log.warning("could not write the audit record of %s: %s", event, exc)
            return None
    log.warning("could not find a free audit key for %s", event)
    return None


def parse_since(text: str | None, now: datetime | None = None) -> datetime | None:
    """``--since``: an ISO 8601 time (UTC when no offset) or a duration back from now (``7d``)."""
    if not text:
        return None
    now = now or _clock.now()
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        raise UsageError(f"bad --since {text!r} (use ISO 8601, e.g. 2026-01-31T00:00:00Z, or a "
                         "duration such as 24h or 7d)") from None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)


def read(store: Store, since: datetime | None = None) -> Iterator[dict[str, Any]]:
    """The records of ``store`` at or after ``since``, oldest first. Listing starts at the day of
    ``since`` so an old log is not read whole; unreadable records are reported as such."""
    prefixes = [layout.AUDIT_PREFIX]
    if since is not None:
        today = _clock.now()
        day = since.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        if (today - day) <= timedelta(days=62):
            prefixes = []
            while day <= today + timedelta(days=1):
                prefixes.append(layout.audit_day_prefix(day))
                day += timedelta(days=1)
    for prefix in prefixes:
        for info in store.list(prefix):
            if not info.key.endswith(".json") or info.key == layout.policy_digest_key() \
                    or info.key.startswith(layout.policy_digests_prefix()):
                continue
            try:
                record = json.loads(store.get(info.key))
            except (CloudkeepError, ValueError) as exc:
                yield {"event": "unreadable", "at": None, "key": info.key, "detail": {"error": str(exc)}}
                continue
            if not isinstance(record, dict):
                continue
            record["key"] = info.key
            if since is not None:
                try:
                    if datetime.fromisoformat(str(record.get("at"))) < since:
                        continue
                except ValueError:
                    pass
            yield record


# ---------------------------------------------------------------------------------- policy digest


def policy_digest(policy: Any) -> str:
    import hashlib

    text = json.dumps(policy.model_dump(mode="json"), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def note_policy(store: Store, policy: Any, *, at: datetime | None = None) -> bool:
    """Record a ``policy_change`` when the policy's digest differs from the last one this store
    saw (the first policy seen is recorded too). Returns True when a change was recorded."""
    digest = policy_digest(policy)
    previous: str | None = None
    try:
        found = sequences.newest(store, layout.policy_digests_prefix(), _parse_digest)
        if found is not None:
            previous = found[1]
        elif store.stat(layout.policy_digest_key()) is not None:  # the previous release's
            previous = _parse_digest(store.get(layout.policy_digest_key()), "")
    except (CloudkeepError, ValueError, AttributeError) as exc:
        log.warning("could not read the last policy digest: %s", exc)
    if previous == digest:
        return False
    write(store, "policy_change", outcome="changed" if previous else "first-seen",
          detail={"digest": digest, "previous_digest": previous,
                  "datasets": sorted(policy.datasets), "tiers": sorted(policy.tiers)}, at=at)
    try:  # appended, create-only (the tick never overwrites; prune removes superseded ones)
        sequences.append(store, layout.policy_digests_prefix(), json.dumps(
            {"digest": digest, "at": (at or _clock.now()).isoformat()}).encode())
    except CloudkeepError as exc:
        log.warning("could not record the policy digest: %s", exc)
    return True


def _parse_digest(data: bytes, key: str) -> str:
    doc = json.loads(data)
    if not isinstance(doc, dict) or not isinstance(doc.get("digest"), str):
        raise ValueError(f"{key or 'policy digest'}: no digest")
    return str(doc["digest"])
