"""Verifying a dataset's change log: every committed segment is there, whole (size, sha256,
decryption), holds what its index entry says in sequence order, and no segment the captures
recorded is missing (no holes: for each shard, the highest sequence a position says was ingested
is covered by a segment). Unreferenced segments are reported (prune removes them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import layout
from ..stores import Store
from .positions import all_streams
from .reader import LogError, entries, read_segment
from .window import compute

if TYPE_CHECKING:
    from ..keys import Keyring


@dataclass
class LogReport:
    dataset: str
    segments: int = 0
    changes: int = 0
    unreferenced: int = 0
    problems: list[str] = field(default_factory=list)
    window: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "ok": self.ok, "segments": self.segments,
                "changes": self.changes, "unreferenced_segments": self.unreferenced,
                "problems": self.problems, "window": self.window}


def verify_log(store: Store, dataset: str, keyring: Keyring | None) -> LogReport:
    """Check the whole change log of ``dataset`` (see the module docstring)."""
    report = LogReport(dataset)
    try:
        found = entries(store, dataset)
    except LogError as exc:
        report.problems.append(str(exc))
        return report
    highest: dict[str, str] = {}
    referenced = set()
    for entry in found:
        referenced.add(entry.segment)
        try:
            count = 0
            for _ in read_segment(store, dataset, entry, keyring):
                count += 1
            report.segments += 1
            report.changes += count
        except LogError as exc:
            report.problems.append(str(exc))
            continue
        if entry.last_seq > highest.get(entry.shard, ""):
            highest[entry.shard] = entry.last_seq
    for stream in all_streams(store, dataset):
        for shard, sequence in (stream.logged or {}).items():
            # a shard none of whose segments is left was pruned whole (nothing to compare)
            if shard in highest and highest[shard] < sequence:
                report.problems.append(
                    f"hole in the change log: stream {stream.stream} recorded shard {shard} "
                    f"ingested up to sequence {sequence.lstrip('0') or '0'}, but no segment "
                    "holds it (a segment or its index entry is missing)")
    for info in store.list(layout.changelog_segments_prefix(dataset)):
        if info.key not in referenced:
            report.unreferenced += 1
    report.window = compute(store, dataset).as_dict()
    return report
