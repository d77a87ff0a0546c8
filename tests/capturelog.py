"""Test helpers for continuous capture: read a dataset's change log straight from the store
(unencrypted segments, in key order), independently of replay."""

from __future__ import annotations

import json
from typing import Any

from cloudkeep import layout
from cloudkeep.changelog.format import decode_change
from cloudkeep.changes import Change
from cloudkeep.codec import iter_lines


def logged_changes(store: Any, dataset: str) -> list[Change]:
    """Every change of every segment (a change delivered twice may appear twice)."""
    out: list[Change] = []
    for info in store.list(layout.changelog_segments_prefix(dataset)):
        with store.open(info.key) as stream:
            out.extend(decode_change(line) for line in iter_lines(stream))
    return out


def latest_versions(store: Any, dataset: str) -> dict[str, Change]:
    """Per item (its key as JSON text), the change with the highest (time, sequence)."""
    out: dict[str, Change] = {}
    for change in logged_changes(store, dataset):
        key = json.dumps(change.key, sort_keys=True)
        if key not in out or (change.time, change.sequence) > (out[key].time, out[key].sequence):
            out[key] = change
    return out
