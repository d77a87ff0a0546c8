"""Error reports: a pydantic error as one line naming the field and what is wrong, at the line
of the policy file it came from."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from .. import registry
from ..specs import show as _show
from .model import (
    Alerts,
    Dataset,
    EncryptionSpec,
    Policy,
    PubSubAlerts,
    Residency,
    Retention,
    SigningSpec,
    SnsAlerts,
    Tier,
    VerifySchedule,
    WebhookAlerts,
)


def line_of(lines: Mapping[tuple[str, ...], int], path: tuple[str, ...]) -> int | None:
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return lines.get(())


def clean_path(data: Any, loc: tuple[int | str, ...]) -> tuple[str, ...]:
    """Drop the discriminator tags pydantic inserts into error locations."""
    out: list[str] = []
    current = data
    for part in loc:
        if isinstance(current, dict) and part in current:
            out.append(str(part))
            current = current[part]
        elif isinstance(current, list) and isinstance(part, int) and part < len(current):
            out.append(str(part))
            current = current[part]
        elif isinstance(current, dict) and part in (current.get("type"), current.get("provider")):
            continue  # discriminated-union tag
        else:
            out.append(str(part))
            current = None
    return tuple(out)


def dotted(path: tuple[str, ...]) -> str:
    return ".".join(path) if path else "(top level)"


def _allowed_keys(data: Any, parent: tuple[str, ...]) -> list[str] | None:
    model = _model_at(data, parent)
    return sorted(model.model_fields) if model else None


def _model_at(data: Any, path: tuple[str, ...]) -> type[BaseModel] | None:
    """The model that validates the mapping at ``path`` (for "allowed keys" hints)."""
    n = len(path)
    raw = data
    for part in path:
        raw = raw.get(part) if isinstance(raw, dict) else None
    kind = raw.get("type") if isinstance(raw, dict) else None
    if n == 0:
        return Policy
    if n == 2 and path[0] == "stores":
        return registry.STORES.get(str(kind))
    if n == 2 and path[0] == "keys":
        return registry.KEYS.get(str(raw.get("provider")) if isinstance(raw, dict) else "")
    if (n == 1 and path[0] == "encryption") or (n == 3 and path[0] in ("tiers", "datasets")
                                                 and path[2] == "encryption"):
        return EncryptionSpec
    if (n == 1 and path[0] == "signing") or (n == 3 and path[0] in ("tiers", "datasets")
                                              and path[2] == "signing"):
        return SigningSpec
    if n == 1 and path[0] == "residency":
        return Residency
    if n == 2 and path[0] == "tiers":
        return Tier
    if n == 3 and path[0] == "tiers" and path[2] == "retention":
        return Retention
    if n == 3 and path[0] == "tiers" and path[2] == "verify":
        return VerifySchedule
    if n == 1 and path[0] == "alerts":
        return Alerts
    if n == 2 and path[0] == "alerts":
        channels: dict[str, type[BaseModel]] = {"sns": SnsAlerts, "pubsub": PubSubAlerts,
                                                "webhook": WebhookAlerts}
        return channels.get(path[1])
    if n == 2 and path[0] == "datasets":
        return Dataset
    if n == 3 and path[0] == "datasets" and path[2] == "source":
        return registry.SOURCES.get(str(kind))
    return None


def describe(err: Any, data: Any, path: tuple[str, ...]) -> str:
    kind = err["type"]
    got = err.get("input")
    ctx = err.get("ctx") or {}
    if kind in ("extra_forbidden", "invalid_key"):
        allowed = _allowed_keys(data, path[:-1])
        hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
        return f"unknown key '{path[-1]}'{hint}"
    if kind == "missing":
        return "required key is missing"
    if kind == "union_tag_invalid":
        tag = err.get("ctx", {}).get("tag")
        if path[:1] == ("keys",):
            return f"unknown key provider {tag!r} (known: {', '.join(registry.KEYS)})"
        what = "store" if path[:1] == ("stores",) else "source"
        known = registry.STORES if what == "store" else registry.SOURCES
        return f"unknown {what} type {tag!r} (known: {', '.join(known)})"
    if kind == "union_tag_not_found":
        return "required key 'provider' is missing" if path[:1] == ("keys",) else "required key 'type' is missing"
    if kind == "value_error":
        return str(err["msg"]).removeprefix("Value error, ")
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"expected a mapping, got {_show(got)}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"expected a whole number, got {_show(got)}"
    if kind in ("bool_type", "bool_parsing"):
        return f"expected true or false, got {_show(got)}"
    if kind == "string_type":
        return f"expected a string, got {_show(got)}"
    if kind == "greater_than_equal":
        return f"must be at least {ctx.get('ge')}, got {_show(got)}"
    if kind == "less_than_equal":
        return f"must be at most {ctx.get('le')}, got {_show(got)}"
    if kind == "string_too_short":
        return "must not be empty" if not got else f"{got!r} is too short (at least {ctx.get('min_length')} characters)"
    if kind == "string_too_long":
        return f"is too long (at most {ctx.get('max_length')} characters)"
    if kind == "string_pattern_mismatch":
        return f"{got!r} does not match {ctx.get('pattern')}"
    return f"{err['msg']} (got {_show(got)})"
