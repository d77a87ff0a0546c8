"""The policy file: pydantic models, loading, and error reports that name every problem.

A policy names the stores backups go to, the tiers (schedule, RPO, retention) and the datasets.
Loading either returns a frozen, fully cross-checked :class:`Policy` or raises
:class:`~cloudkeep.errors.PolicyError` listing *every* problem as ``file:line: field.path: what``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Union
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.functional_validators import BeforeValidator

from .errors import PolicyError, UsageError
from .layout import DATASET_NAME_RE

DEFAULT_POLICY_FILE = "cloudkeep.yaml"
POLICY_ENV = "CLOUDKEEP_POLICY"

# --------------------------------------------------------------------------------------------
# Scalar types


_DURATION_RE = re.compile(r"^(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(text: object) -> timedelta:
    """Parse ``90m``, ``26h``, ``7d``, ``2w``, ``1h30m`` into a positive timedelta."""
    if isinstance(text, timedelta):
        return text
    if not isinstance(text, str):
        raise ValueError(f"expected a duration such as 90m, 26h or 7d, got {text!r}")
    match = _DURATION_RE.match(text.strip())
    if not text.strip() or not match:
        raise ValueError(f"bad duration {text!r} (use e.g. 90m, 26h, 7d, 2w or 1h30m)")
    weeks, days, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    value = timedelta(weeks=weeks, days=days, hours=hours, minutes=minutes, seconds=seconds)
    if value <= timedelta(0):
        raise ValueError(f"duration {text!r} must be longer than zero")
    return value


def format_duration(value: timedelta) -> str:
    """The inverse of :func:`parse_duration` (largest units first)."""
    seconds = int(value.total_seconds())
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            out.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(out) or "0s"


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]

_RATE_RE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")


def validate_schedule(expr: object) -> str:
    """Accept a 5-field cron expression or ``rate(N minutes|hours|days)``."""
    if not isinstance(expr, str):
        raise ValueError(f"expected a cron expression or rate(...), got {expr!r}")
    text = expr.strip()
    if text.startswith("rate"):
        match = _RATE_RE.match(text)
        if not match:
            raise ValueError(f"bad rate expression {expr!r} (use e.g. rate(15 minutes), rate(1 hour))")
        number, unit = int(match.group(1)), match.group(2)
        if number < 1:
            raise ValueError(f"bad rate expression {expr!r}: the interval must be at least 1")
        if (number == 1) != (not unit.endswith("s")):
            raise ValueError(
                f"bad rate expression {expr!r}: use the singular unit for 1 and the plural otherwise"
            )
        return text
    fields = text.split()
    if len(fields) != 5:
        raise ValueError(
            f"bad cron expression {expr!r}: expected 5 fields (minute hour day month weekday), "
            f"got {len(fields)}"
        )
    from croniter import croniter

    if not croniter.is_valid(text):
        raise ValueError(f"bad cron expression {expr!r}")
    return text


Schedule = Annotated[str, BeforeValidator(validate_schedule)]

# --------------------------------------------------------------------------------------------
# Models


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FileStoreSpec(Model):
    """A folder on local disk (or a mounted volume). Relative paths are relative to the policy."""

    type: Literal["file"]
    path: str = Field(min_length=1)


_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class S3StoreSpec(Model):
    """An S3 bucket (or S3-compatible endpoint)."""

    type: Literal["s3"]
    bucket: str
    prefix: str = ""
    region: str = Field(min_length=1)
    endpoint_url: str | None = None

    @field_validator("bucket")
    @classmethod
    def _bucket_name(cls, value: str) -> str:
        if not _BUCKET_RE.match(value) or ".." in value:
            raise ValueError(f"bad S3 bucket name {value!r}")
        return value

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return value.strip("/")


StoreSpec = Annotated[Union[FileStoreSpec, S3StoreSpec], Field(discriminator="type")]
STORE_TYPES = ("file", "s3")


class Retention(Model):
    """How many snapshots to keep per period (restic ``forget`` semantics)."""

    last: int | None = Field(default=None, ge=0)
    hourly: int | None = Field(default=None, ge=0)
    daily: int | None = Field(default=None, ge=0)
    weekly: int | None = Field(default=None, ge=0)
    monthly: int | None = Field(default=None, ge=0)
    yearly: int | None = Field(default=None, ge=0)


class Tier(Model):
    """How often a dataset is backed up, how stale it may get, and how long snapshots live."""

    schedule: Schedule
    rpo: Duration
    retention: Retention


class DynamoDBSourceSpec(Model):
    """A DynamoDB table read by a parallel segmented Scan."""

    type: Literal["dynamodb"]
    table: str = Field(min_length=3, max_length=255, pattern=r"^[A-Za-z0-9_.-]+$")
    region: str = Field(min_length=1)
    segments: int | None = Field(default=None, ge=1, le=1_000_000)
    consistent_read: bool = False


SourceSpec = Annotated[Union[DynamoDBSourceSpec], Field(discriminator="type")]
SOURCE_TYPES = ("dynamodb",)


class Dataset(Model):
    """One thing to back up: where it is read from, how often, and where it goes."""

    source: SourceSpec
    tier: str
    store: str


class Policy(Model):
    """A whole policy file (version 1)."""

    version: Literal[1]
    timezone: str = "UTC"
    stores: dict[str, StoreSpec]
    tiers: dict[str, Tier]
    datasets: dict[str, Dataset]

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Europe/Paris)")
        return value

    def dataset(self, name: str) -> Dataset:
        try:
            return self.datasets[name]
        except KeyError:
            known = ", ".join(sorted(self.datasets)) or "none"
            raise UsageError(f"unknown dataset {name!r} (known: {known})") from None


# --------------------------------------------------------------------------------------------
# Loading


@dataclass(frozen=True)
class LoadedPolicy:
    """A validated policy and where it came from."""

    policy: Policy
    source: str


def resolve_policy_path(explicit: str | None) -> str:
    """``--policy`` if given, else ``./cloudkeep.yaml`` if present, else ``$CLOUDKEEP_POLICY``."""
    if explicit:
        return explicit
    if Path(DEFAULT_POLICY_FILE).exists():
        return DEFAULT_POLICY_FILE
    env = os.environ.get(POLICY_ENV)
    if env:
        return env
    raise UsageError(
        f"no policy file: pass --policy FILE, create ./{DEFAULT_POLICY_FILE}, or set {POLICY_ENV}"
    )


def load_policy(location: str) -> LoadedPolicy:
    """Read, parse and validate a policy from a local path or an ``s3://`` URL."""
    text = _read_text(location)
    base_dir = Path.cwd() if "://" in location else Path(location).resolve().parent
    return LoadedPolicy(parse_policy(text, source=location, base_dir=base_dir), location)


def _read_text(location: str) -> str:
    if location.startswith("s3://"):
        from .stores.s3 import read_url

        return read_url(location).decode("utf-8")
    if "://" in location:
        scheme = location.split("://", 1)[0]
        raise UsageError(f"cannot read a policy from {scheme}:// (supported: a local path, s3://)")
    try:
        return Path(location).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"policy file not found: {location}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read policy file {location}: {exc}") from None


def parse_policy(text: str, *, source: str = "<policy>", base_dir: Path | None = None) -> Policy:
    """Validate policy text. Raises PolicyError with every problem, each with its field path."""
    data, lines = _parse_yaml(text, source)
    problems: list[tuple[int | None, str]] = []
    policy: Policy | None = None
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            path = _clean_path(data, err["loc"])
            problems.append((_line_of(lines, path), f"{_dotted(path)}: {_describe(err, data, path)}"))
    problems.extend((_line_of(lines, p), f"{_dotted(p)}: {m}") for p, m in _cross_check(data))
    if problems:
        unique: dict[str, int | None] = {}
        for line, message in problems:
            unique.setdefault(message, line)
        ordered = sorted(unique.items(), key=lambda kv: (kv[1] or 0, kv[0]))
        raise PolicyError(
            [f"{source}:{line}: {msg}" if line else f"{source}: {msg}" for msg, line in ordered],
            source=source,
        )
    assert policy is not None
    return _resolve_paths(policy, base_dir or Path.cwd())


def _resolve_paths(policy: Policy, base_dir: Path) -> Policy:
    stores: dict[str, Any] = {}
    for name, spec in policy.stores.items():
        if isinstance(spec, FileStoreSpec):
            path = Path(os.path.expanduser(spec.path))
            spec = spec.model_copy(update={"path": str(path if path.is_absolute() else base_dir / path)})
        stores[name] = spec
    return policy.model_copy(update={"stores": stores})


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys (YAML allows them silently)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found duplicate key {key!r}",
                key_node.start_mark,
            )
        seen[key] = key_node
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,  # type: ignore[arg-type]
)


def _parse_yaml(text: str, source: str) -> tuple[Any, dict[tuple[str, ...], int]]:
    try:
        loader = _UniqueKeyLoader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        what = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        raise PolicyError([f"{where}: YAML syntax error: {what}"], source=source) from None
    except yaml.YAMLError as exc:
        raise PolicyError([f"{source}: YAML syntax error: {exc}"], source=source) from None
    if not isinstance(data, dict):
        kind = "empty" if data is None else f"a {type(data).__name__}"
        raise PolicyError([f"{source}: the policy must be a mapping with version, stores, tiers "
                           f"and datasets; this file is {kind}"], source=source)
    lines: dict[tuple[str, ...], int] = {}
    if node is not None:
        _index_lines(node, (), lines)
    return data, lines


def _index_lines(node: yaml.Node, path: tuple[str, ...], out: dict[tuple[str, ...], int]) -> None:
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            sub = (*path, str(key_node.value))
            out[sub] = key_node.start_mark.line + 1
            _index_lines(value_node, sub, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index_lines(item, (*path, str(i)), out)


def _line_of(lines: Mapping[tuple[str, ...], int], path: tuple[str, ...]) -> int | None:
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return lines.get(())


def _clean_path(data: Any, loc: tuple[int | str, ...]) -> tuple[str, ...]:
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
        elif isinstance(current, dict) and current.get("type") == part:
            continue  # discriminated-union tag
        else:
            out.append(str(part))
            current = None
    return tuple(out)


def _dotted(path: tuple[str, ...]) -> str:
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
        return {"file": FileStoreSpec, "s3": S3StoreSpec}.get(str(kind))
    if n == 2 and path[0] == "tiers":
        return Tier
    if n == 3 and path[0] == "tiers" and path[2] == "retention":
        return Retention
    if n == 2 and path[0] == "datasets":
        return Dataset
    if n == 3 and path[0] == "datasets" and path[2] == "source":
        return {"dynamodb": DynamoDBSourceSpec}.get(str(kind))
    return None


def _describe(err: Any, data: Any, path: tuple[str, ...]) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(data, path[:-1])
        hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
        return f"unknown key '{path[-1]}'{hint}"
    if kind == "missing":
        return "required key is missing"
    if kind == "union_tag_invalid":
        what = "store" if path[:1] == ("stores",) else "source"
        known = STORE_TYPES if what == "store" else SOURCE_TYPES
        tag = err.get("ctx", {}).get("tag")
        return f"unknown {what} type {tag!r} (known: {', '.join(known)})"
    if kind == "union_tag_not_found":
        return "required key 'type' is missing"
    if kind == "literal_error" and path == ("version",):
        return f"unsupported policy version {err.get('input')!r} (this cloudkeep reads version 1)"
    message = str(err["msg"])
    if kind == "value_error":
        message = message.removeprefix("Value error, ")
        return message
    got = err.get("input")
    if not isinstance(got, (dict, list)):
        message += f" (got {got!r})"
    return message


def _cross_check(data: dict[str, Any]) -> Iterator[tuple[tuple[str, ...], str]]:
    """References between sections; runs on the raw data so it reports alongside type errors."""
    stores = data.get("stores") if isinstance(data.get("stores"), dict) else {}
    tiers = data.get("tiers") if isinstance(data.get("tiers"), dict) else {}
    datasets = data.get("datasets")
    if not isinstance(datasets, dict):
        return
    for name, spec in datasets.items():
        if not DATASET_NAME_RE.match(str(name)):
            yield (("datasets", str(name)),
                   f"bad dataset name {name!r} (letters, digits, '_', '.', '-'; up to 128)")
        if not isinstance(spec, dict):
            continue
        tier = spec.get("tier")
        if isinstance(tier, str) and tier not in tiers:
            known = ", ".join(sorted(map(str, tiers))) or "none defined"
            yield (("datasets", str(name), "tier"), f"unknown tier {tier!r} (known: {known})")
        store = spec.get("store")
        if isinstance(store, str) and store not in stores:
            known = ", ".join(sorted(map(str, stores))) or "none defined"
            yield (("datasets", str(name), "store"), f"unknown store {store!r} (known: {known})")
