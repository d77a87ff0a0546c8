"""Alerts: backup failures, RPO breaches, failed verifications and failed copies, each raised
once and cleared by one recovery message.

The memory is the append-only sequence ``<dataset>/alerts/state/<seq>.json``
(``layout.alert_states_prefix``; the newest entry is current, a tick that changes it appends one,
create-only — the backup identity never overwrites; prune removes superseded entries): the
dataset's open alerts, each ``{kind, since, message, notified}``. Every tick hands :func:`update` what it
observed for the kinds it checked (a message for a breach, ``None`` for "fine now"); a kind that
was not checked keeps its state. A new breach opens an alert and sends it; a breach that stays
sends nothing more; a kind found fine again closes its alert and sends one recovery. An alert
whose sending failed stays marked unsent and is sent again by the next tick (so a lost message
is retried, never repeated once delivered).

Channels (policy ``alerts:``): SNS, Pub/Sub and a generic webhook whose body is Slack-compatible
(``{"text": ...}``); the webhook URL comes from an environment variable, never the policy. Every
text sent is passed through :func:`redact`.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from . import clock as _clock
from . import layout, sequences
from .clouds.aws import client_config
from .errors import CloudkeepError, ObjectNotFoundError
from .redaction import redact as redact
from .redaction import secret_values as secret_values
from .stores import Store

log = logging.getLogger(__name__)

KINDS = ("backup_failed", "rpo_breach", "verification_failed", "copy_failed")
TITLES = {
    "backup_failed": "backup failed",
    "copy_failed": "copy failed",
    "rpo_breach": "RPO breached",
    "verification_failed": "verification failed",
}
SEND_TIMEOUT = 10.0


# ------------------------------------------------------------------------------------- redaction

# One redaction for every output path: cloudkeep.redaction (redact and secret_values are
# imported above and stay importable from here).


# -------------------------------------------------------------------------------------- messages


@dataclass(frozen=True)
class Alert:
    """One message: an alert (``status="alert"``) or its recovery (``status="recovery"``)."""

    status: str  # "alert" | "recovery"
    kind: str
    dataset: str
    tier: str | None
    since: str
    message: str
    at: str

    @property
    def text(self) -> str:
        if self.status == "alert":
            head = f":rotating_light: cloudkeep ALERT: {self.dataset}: {TITLES.get(self.kind, self.kind)}"
        else:
            head = f":white_check_mark: cloudkeep RECOVERED: {self.dataset}: {TITLES.get(self.kind, self.kind)}"
        return f"{head} — {self.message} (since {self.since[:19].replace('T', ' ')} UTC)"

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "kind": self.kind, "dataset": self.dataset, "tier": self.tier,
                "since": self.since, "at": self.at, "message": self.message, "text": self.text}

    def redacted(self, secrets: Iterable[str]) -> Alert:
        values = list(secrets)
        return Alert(self.status, self.kind, self.dataset, self.tier, self.since,
                     redact(self.message, values), self.at)


class Channel(Protocol):
    name: str

    def send(self, alert: Alert) -> None:
        """Deliver one (already redacted) alert; raise on failure."""
        ...


class SnsChannel:
    name = "sns"

    def __init__(self, topic_arn: str, client: Any = None) -> None:
        self.topic_arn = topic_arn
        self._client = client

    def send(self, alert: Alert) -> None:
        if self._client is None:
            import boto3

            self._client = boto3.client("sns", region_name=self.topic_arn.split(":")[3],
                                        config=client_config())
        subject = re.sub(r"[^\x20-\x7e]", "", f"cloudkeep {alert.status}: {alert.dataset} {alert.kind}")
        self._client.publish(
            TopicArn=self.topic_arn, Subject=subject[:100], Message=json.dumps(alert.as_dict()),
            MessageAttributes={
                "status": {"DataType": "String", "StringValue": alert.status},
                "kind": {"DataType": "String", "StringValue": alert.kind},
                "dataset": {"DataType": "String", "StringValue": alert.dataset},
            },
        )


class PubSubChannel:
    name = "pubsub"

    def __init__(self, topic: str, client: Any = None) -> None:
        self.topic = topic
        self._client = client

    def send(self, alert: Alert) -> None:
        if self._client is None:
            from google.cloud import pubsub_v1  # type: ignore[attr-defined]

            self._client = pubsub_v1.PublisherClient()
        future = self._client.publish(self.topic, json.dumps(alert.as_dict()).encode(),
                                      status=alert.status, kind=alert.kind, dataset=alert.dataset)
        future.result(timeout=SEND_TIMEOUT)


class WebhookChannel:
    """POSTs ``{"text": ...}``: Slack's incoming-webhook body (Mattermost, Rocket.Chat, Google
    Chat and most chat tools take it as is)."""

    name = "webhook"

    def __init__(self, url_env: str) -> None:
        self.url_env = url_env

    def send(self, alert: Alert) -> None:
        import urllib.error
        import urllib.request

        url = os.environ.get(self.url_env)
        if not url:
            raise CloudkeepError(f"the webhook URL variable {self.url_env} is not set")
        body = json.dumps({"text": alert.text}).encode()
        request = urllib.request.Request(url, data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=SEND_TIMEOUT) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            raise CloudkeepError(f"webhook answered HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            # the URL itself is a secret: name only the variable
            raise CloudkeepError(f"webhook ({self.url_env}) unreachable: "
                                 f"{type(exc).__name__}") from None


@dataclass
class MemoryChannel:
    """For tests."""

    name: str = "memory"
    sent: list[Alert] = field(default_factory=list)

    def send(self, alert: Alert) -> None:
        self.sent.append(alert)


def channels_for(policy: Any) -> list[Channel]:
    """The channels the policy's ``alerts:`` names (none without it)."""
    config = getattr(policy, "alerts", None)
    out: list[Channel] = []
    if config is None:
        return out
    if config.sns is not None:
        out.append(SnsChannel(config.sns.topic_arn))
    if config.pubsub is not None:
        out.append(PubSubChannel(config.pubsub.topic))
    if config.webhook is not None:
        out.append(WebhookChannel(config.webhook.url_env))
    return out


class Notifier:
    """Sends each alert once to every channel (de-duplicated within a process), redacted."""

    def __init__(self, channels: list[Channel], secrets: Iterable[str] = ()) -> None:
        self.channels = channels
        self.secrets = list(secrets)
        self._seen: set[tuple[str, str, str, str]] = set()
        self.sent: list[Alert] = []

    def send(self, alert: Alert) -> bool:
        """True when every channel took it (or there is no channel)."""
        key = (alert.status, alert.kind, alert.dataset, alert.since)
        if key in self._seen:
            return True
        safe = alert.redacted(self.secrets)
        ok = True
        for channel in self.channels:
            try:
                channel.send(safe)
            except Exception as exc:  # noqa: BLE001 - one channel failing must not stop the others
                ok = False
                log.error("alert channel %s failed: %s", channel.name,
                          redact(str(exc), self.secrets))
        if ok:
            self._seen.add(key)
            self.sent.append(safe)
        log.warning("%s", safe.text) if alert.status == "alert" else log.info("%s", safe.text)
        return ok


# ------------------------------------------------------------------------------------ the state


def _parse_state(data: bytes, key: str) -> dict[str, Any]:
    doc = json.loads(data)
    if not isinstance(doc, dict) or not isinstance(doc.get("open"), list):
        raise ValueError(f"{key} is not an alert state")
    return doc


def load_state(store: Store, dataset: str) -> dict[str, Any]:
    """The newest readable alert state (or the previous release's single one), else none open."""
    try:
        found = sequences.newest(store, layout.alert_states_prefix(dataset), _parse_state)
        if found is not None:
            return found[1]
        key = layout.alert_state_key(dataset)
        return _parse_state(store.get(key), key)
    except ObjectNotFoundError:
        return {"dataset": dataset, "open": []}
    except (CloudkeepError, ValueError) as exc:
        log.warning("dataset %s: unreadable alert state (%s); starting afresh", dataset, exc)
        return {"dataset": dataset, "open": []}


def open_alerts(store: Store, dataset: str) -> list[dict[str, Any]]:
    return list(load_state(store, dataset)["open"])


def update(store: Store, dataset: str, observed: dict[str, str | None], notifier: Notifier, *,
           tier: str | None = None, now: datetime | None = None) -> list[Alert]:
    """Apply what a tick observed (kind → breach message, or None for fine) to the dataset's
    alert state; send what opened or closed. Returns the messages sent."""
    now = now or _clock.now()
    state = load_state(store, dataset)
    current = {a["kind"]: a for a in state["open"] if isinstance(a, dict) and "kind" in a}
    sent: list[Alert] = []
    changed = False
    for kind, message in observed.items():
        entry = current.get(kind)
        if message is not None:
            if entry is None:
                entry = {"kind": kind, "since": now.isoformat(),
                         "message": redact(message, notifier.secrets), "notified": False}
                current[kind] = entry
                changed = True
            if not entry.get("notified"):
                alert = Alert("alert", kind, dataset, tier, entry["since"], entry["message"],
                              now.isoformat())
                if notifier.send(alert):
                    entry["notified"] = True
                    sent.append(alert)
                changed = True
        elif entry is not None:
            recovery = Alert("recovery", kind, dataset, tier, entry["since"],
                             f"resolved after: {entry['message']}", now.isoformat())
            if entry.get("notified"):
                notifier.send(recovery)  # a recovery that fails to send is not retried
                sent.append(recovery)
            del current[kind]
            changed = True
    if changed:
        state = {"dataset": dataset, "updated_at": now.isoformat(),
                 "open": sorted(current.values(), key=lambda a: (a["since"], a["kind"]))}
        try:
            sequences.append(store, layout.alert_states_prefix(dataset),
                             json.dumps(state, indent=2).encode())
        except CloudkeepError as exc:
            log.error("dataset %s: could not save the alert state: %s", dataset, exc)
    return sent
