"""Loading a policy: from a local file or a bucket URL (with limits), parsed, validated and
cross-checked, every problem reported as ``file:line: field.path: what``."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from .. import registry
from ..codec import HashingReader
from ..errors import ObjectNotFoundError, PolicyError, UsageError
from ..redaction import remember, secret_values
from .checks import check_copy_stores, check_nested_stores, check_signing, cross_check
from .messages import clean_path, describe, dotted, line_of
from .model import Policy
from .yamlload import MAX_POLICY_BYTES, parse_yaml

DEFAULT_POLICY_FILE = "cloudkeep.yaml"
POLICY_ENV = "CLOUDKEEP_POLICY"


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
    """Read, parse and validate a policy from a local path or an ``s3://``, ``gs://`` or
    ``az://ACCOUNT/CONTAINER/KEY`` URL."""
    text = _read_text(location)
    base_dir = Path.cwd() if "://" in location else Path(location).resolve().parent
    policy = parse_policy(text, source=location, base_dir=base_dir)
    remember(secret_values(policy))  # redacted from every output from now on
    return LoadedPolicy(policy, location)


POLICY_URL_SCHEMES = tuple(registry.URL_SCHEMES)


def _read_text(location: str) -> str:
    data = _read_url(location) if "://" in location else _read_file(location)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"cannot read policy file {location}: {exc}") from None


_NOT_REGULAR = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a device"),
                (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket"))


def _read_file(location: str) -> bytes:
    """A local policy file: a regular file of at most :data:`MAX_POLICY_BYTES`. Opened without
    blocking and checked before a byte is read, so a FIFO, a directory or ``/dev/zero`` is
    refused at once."""
    try:
        fd = os.open(location, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise UsageError(f"policy file not found: {location}") from None
    except OSError as exc:
        raise UsageError(f"cannot read policy file {location}: {exc.strerror or exc}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = next((name for test, name in _NOT_REGULAR if test(mode)), "not a file")
            raise UsageError(f"cannot read policy file {location}: it is {kind}, not a regular file")
        os.set_blocking(fd, True)
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(fd, min(1 << 16, MAX_POLICY_BYTES + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_POLICY_BYTES:
                raise UsageError(f"policy file {location} is too large (more than "
                                 f"{MAX_POLICY_BYTES} bytes)")
        return b"".join(chunks)
    except OSError as exc:
        raise UsageError(f"cannot read policy file {location}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def _read_url(location: str) -> bytes:
    """A policy object in a bucket, read through the store adapter of its cloud."""
    scheme, _, rest = location.partition("://")
    spec_class = registry.URL_SCHEMES.get(scheme)
    if spec_class is None:
        raise UsageError(
            f"cannot read a policy from {scheme}:// (supported: a local path, "
            f"{', '.join(s + '://' for s in POLICY_URL_SCHEMES)})"
        )
    try:
        found = spec_class.for_url(rest.split("/"))
    except ValidationError as exc:
        raise UsageError(f"bad policy URL {location!r}: {exc.errors()[0]['msg']}") from None
    if found is None:
        raise UsageError(f"bad policy URL {location!r} (expected {spec_class.URL_SHAPE})")
    spec, key = found
    try:
        with spec.open().open(key) as stream:
            reader = HashingReader(stream, limit=MAX_POLICY_BYTES)  # never reads past the limit
            body = b"".join(iter(lambda: reader.read(1 << 16), b""))
    except ObjectNotFoundError:
        raise UsageError(f"policy not found: {location}") from None
    if reader.exceeded:
        raise UsageError(f"policy {location} is too large (more than {MAX_POLICY_BYTES} bytes)")
    return body


def parse_policy(text: str, *, source: str = "<policy>", base_dir: Path | None = None) -> Policy:
    """Validate policy text. Raises PolicyError with every problem, each with its field path."""
    data, lines = parse_yaml(text, source)
    problems: list[tuple[int | None, str]] = []
    policy: Policy | None = None
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = err["loc"]
            if loc and loc[-1] == "[key]":  # a mapping key that is not a string, e.g. `1: {...}`
                path = clean_path(data, loc[:-1])
                message = f"name {err.get('input')!r} must be a string (quote it)"
            else:
                path = clean_path(data, loc)
                message = describe(err, data, path)
            problems.append((line_of(lines, path), f"{dotted(path)}: {message}"))
    problems.extend((line_of(lines, p), f"{dotted(p)}: {m}") for p, m in cross_check(data))
    if policy is not None and not problems:
        policy = _resolve_paths(policy, base_dir or Path.cwd())
        problems.extend((line_of(lines, p), f"{dotted(p)}: {m}") for p, m in check_signing(policy))
        problems.extend((line_of(lines, p), f"{dotted(p)}: {m}") for p, m in check_copy_stores(policy))
        problems.extend((line_of(lines, p), f"{dotted(p)}: {m}") for p, m in check_nested_stores(policy))
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
    return policy


def _resolve_paths(policy: Policy, base_dir: Path) -> Policy:
    def resolved(text: str) -> str:
        path = Path(os.path.expanduser(text))
        return str(path if path.is_absolute() else base_dir / path)

    stores = {name: spec.resolve_paths(resolved) for name, spec in policy.stores.items()}
    keys = {name: key.resolve_paths(resolved) for name, key in policy.keys.items()}
    return policy.model_copy(update={"stores": stores, "keys": keys})
