"""``find``: the snapshots of a dataset that hold one item, with the item as each holds it.

Each trusted snapshot (``catalog.scan``: a forged, replayed or tampered manifest is never
read) is asked what it holds under the key, newest capture first: an incremental snapshot by
its chain, newest link first (the first link that writes or deletes the key decides). Within a
snapshot only the parts whose key index may hold the key are read (``keyindex``); a snapshot
written before indexes existed is read in full, and an index that fails its check makes the
snapshot read in full too (with a warning) — never an item hidden.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from . import keyindex, timeline
from .errors import CloudkeepError, KeyUnavailableError, UsageError
from .itemkeys import key_bytes
from .itemkeys import parse_key as parse_user_key
from .itemread import TempSpaceError, Trusted, entries, part_lines, spec_of, trusted_chain
from .keys import Keyring
from .manifest import Manifest
from .stores import Store
from .trust import Expect

log = logging.getLogger(__name__)

_ABSENT = ("absent", None)


@dataclass
class Found:
    snapshot_id: str
    time: datetime
    item: Any

    def as_dict(self) -> dict[str, Any]:
        return {"snapshot_id": self.snapshot_id, "time": self.time.isoformat(), "item": self.item}


@dataclass
class FindResult:
    """The snapshots holding the key, newest capture first; ``searched``: how many trusted
    snapshots were asked; ``parts_read`` / ``parts_total``: what the key indexes saved."""

    dataset: str
    key: Any
    found: list[Found] = field(default_factory=list)
    searched: int = 0
    parts_read: int = 0
    parts_total: int = 0
    problems: list[str] = field(default_factory=list)  # snapshots that could not be searched

    def as_list(self) -> list[dict[str, Any]]:
        return [f.as_dict() for f in self.found]


def find(store: Store, dataset: str, manifests: list[Manifest], key_text: str, *,
         expect: Expect, keyring: Keyring) -> FindResult:
    """Look up ``key_text`` (the user's ``--key``) in ``manifests`` (the dataset's trusted
    ones). The key is parsed against the newest snapshot's source (a one-line UsageError if it
    is not a key of that form)."""
    ordered = sorted(manifests, key=lambda m: (timeline.capture_time(m), m.snapshot_id),
                     reverse=True)
    if not ordered:
        return FindResult(dataset, None)
    spec_of(ordered[0])
    key = parse_user_key(ordered[0].source, key_text, where="--key")
    result = FindResult(dataset, key)
    lookups: dict[str, tuple[str, Any]] = {}  # snapshot id → ("held", doc) | ("deleted"|"absent", None)
    data_keys: dict[str, bytes | None] = {}
    for manifest in ordered:
        try:
            own_key = parse_user_key(manifest.source, key_text, where="--key")
        except UsageError as exc:  # e.g. a table recreated with another key schema
            log.info("%s@%s: not searched: %s", dataset, manifest.snapshot_id, exc)
            continue
        state, doc = _ABSENT
        try:
            trusted = trusted_chain(store, manifest, expect, keyring, data_keys)
            for link in reversed(trusted.links):
                state, doc = _lookup(store, trusted, link, own_key, lookups, result)
                if state != "absent":
                    break
        except (KeyUnavailableError, TempSpaceError):  # no snapshot could be searched either
            raise
        except CloudkeepError as exc:  # one damaged snapshot never hides the others
            message = f"{dataset}@{manifest.snapshot_id} could not be searched: {exc}"
            log.warning("%s", message)
            result.problems.append(message)
            continue
        result.searched += 1
        if state == "held":
            result.found.append(Found(manifest.snapshot_id, timeline.capture_time(manifest), doc))
    return result


def _lookup(store: Store, trusted: Trusted, link: Manifest, key: Any,
            lookups: dict[str, tuple[str, Any]], result: FindResult) -> tuple[str, Any]:
    """What one snapshot (not its chain) says of ``key``: held (with the item), deleted, or
    absent. Reads only the parts its key index cannot rule out."""
    if link.snapshot_id in lookups:
        return lookups[link.snapshot_id]
    spec = spec_of(link)
    data_key = trusted.data_keys.get(link.snapshot_id)
    parts = keyindex.candidate_parts(store, link, [key], data_key=data_key)
    result.parts_total += len(link.parts)
    result.parts_read += len(parts)
    wanted = key_bytes(key)
    outcome: tuple[str, Any] = _ABSENT
    for part in parts:
        for entry in entries(spec, link, part_lines(store, link, part, data_key)):
            if key_bytes(entry.key) == wanted:
                outcome = ("deleted", None) if entry.line is None else ("held", entry.doc)
    lookups[link.snapshot_id] = outcome
    return outcome


def describe(result: FindResult) -> str:
    """One line saying what was searched (for logs and the table's footer)."""
    return (f"{len(result.found)} of {result.searched} snapshot(s) hold "
            f"{json.dumps(result.key, ensure_ascii=False)}; {result.parts_read} of "
            f"{result.parts_total} part(s) read")

