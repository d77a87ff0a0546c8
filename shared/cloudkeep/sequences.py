"""Append-only state sequences: state that changes, kept as create-only entries.

The backup path never overwrites an object (a frozen or fenced writer could otherwise replace
newer state with older). A value that changes — a checkpoint, a job record, the alert state, the
policy digest — is a sequence of entries ``<prefix><seq:012d>.json`` (``layout.sequence_key``),
each written create-only; the entry with the highest number is the current value. A writer that
finds its number taken moves on to the next free one. Prune removes superseded entries, always
keeping the newest few (``collect``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from . import layout
from .errors import CloudkeepError, ObjectExistsError, ObjectNotFoundError
from .stores import Store

log = logging.getLogger(__name__)

KEEP = 3  # entries prune leaves in every sequence (the newest is the current value)
_ATTEMPTS = 50

T = TypeVar("T")


def numbers(store: Store, prefix: str) -> list[int]:
    """The entries' numbers under ``prefix``, ascending."""
    out = []
    for info in store.list(prefix):
        rest = info.key[len(prefix):]
        if "/" in rest:
            continue
        n = layout.parse_sequence_name(rest)
        if n is not None:
            out.append(n)
    return sorted(out)


def newest(store: Store, prefix: str, parse: Callable[[bytes, str], T]) -> tuple[int, T] | None:
    """The newest readable entry (number, value): an unreadable newest entry (``parse`` raises
    ``ValueError`` or a ``CloudkeepError``) is skipped for the one before it. None when the
    sequence has no entry."""
    for n in reversed(numbers(store, prefix)):
        key = layout.sequence_key(prefix, n)
        try:
            data = store.get(key)
        except ObjectNotFoundError:
            continue  # removed by prune meanwhile: an older one would be superseded anyway
        try:
            return n, parse(data, key)
        except (ValueError, CloudkeepError) as exc:
            log.warning("%s: unreadable entry (%s); using the one before it", key, exc)
    return None


def append(store: Store, prefix: str, body: bytes, *, after: int | None = None) -> int:
    """Write ``body`` create-only as the next entry (after ``after`` when given, else after the
    newest listed one); a number found taken moves to the next. Returns the entry's number."""
    n = (after if after is not None else max(numbers(store, prefix), default=-1)) + 1
    for _ in range(_ATTEMPTS):
        try:
            store.put(layout.sequence_key(prefix, n), body, if_absent=True)
            return n
        except ObjectExistsError:
            n = max([n, *numbers(store, prefix)]) + 1
    raise ObjectExistsError(layout.sequence_key(prefix, n))


def superseded(store: Store, prefix: str, keep: int = KEEP) -> list[str]:
    """Keys of the entries older than the newest ``keep`` (what prune may remove)."""
    found = numbers(store, prefix)
    return [layout.sequence_key(prefix, n) for n in found[: max(0, len(found) - max(1, keep))]]
