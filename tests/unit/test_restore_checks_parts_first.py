"""A part is checked against its manifest (sha256, size) before any of its items is written.

A store can hold a part of the right size whose bytes are another valid part (a replay from
another snapshot) or a bit-flipped one that still decompresses. Restore used to stream such a part
into the target and only then find the sha256 wrong: the target had received items the snapshot
never held. Now nothing of the part reaches the target.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import zstandard

from cloudkeep import layout
from cloudkeep.codec import iter_part_lines
from cloudkeep.errors import RestoreError
from cloudkeep.restore import restore
from cloudkeep.stores import ObjectInfo
from cloudkeep.stores.file import FileStore
from test_part_limits import CollectingSource, policy_for, take


class ReplayingStore:
    """A file store whose part ``key`` serves ``body`` instead, reporting the recorded size (what
    a store holding a replayed object looks like to a reader)."""

    def __init__(self, inner: FileStore, key: str, body: bytes, size: int) -> None:
        self.inner, self.key, self.body, self.size = inner, key, body, size

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def open(self, key: str) -> Any:
        if key == self.key:
            return io.BytesIO(self.body)
        return self.inner.open(key)

    def stat(self, key: str) -> ObjectInfo | None:
        info = self.inner.stat(key)
        if key == self.key and info is not None:
            return ObjectInfo(key=info.key, size=self.size, modified=info.modified)
        return info


def test_a_forged_part_of_the_right_size_writes_nothing_of_itself(tmp_path: Path) -> None:
    policy = policy_for(tmp_path)
    files = FileStore(tmp_path / "vault")
    manifest = take(policy, files)
    oracle = CollectingSource()
    restore(policy, files, manifest, "t", source=oracle)  # type: ignore[arg-type]
    victim = manifest.parts[0]
    key = layout.part_key(manifest.dataset, manifest.snapshot_id, victim.name)
    lines = list(iter_part_lines(io.BytesIO(files.get(key)), manifest.codec.compression))
    at = next(i for i, c in enumerate(lines[0]) if chr(c).isdigit())  # a digit: another value,
    forged_line = lines[0][:at] + (b"7" if lines[0][at:at + 1] != b"7" else b"3") + lines[0][at + 1:]
    # the same length, still valid JSON
    assert forged_line != lines[0]
    body = zstandard.ZstdCompressor(level=19).compress(b"\n".join([forged_line, *lines[1:]]) + b"\n")
    assert len(body) <= victim.stored_bytes
    store = ReplayingStore(files, key, body, victim.stored_bytes)
    source = CollectingSource()
    with pytest.raises(RestoreError, match=f"part {victim.name} failed its sha256 check"):
        restore(policy, store, manifest, "t", source=source, workers=1)  # type: ignore[arg-type]
    assert forged_line not in source.restored
    assert set(source.restored) <= set(oracle.restored)  # only the snapshot's own items


def test_an_intact_snapshot_still_restores_every_item(tmp_path: Path) -> None:
    policy = policy_for(tmp_path)
    files = FileStore(tmp_path / "vault")
    manifest = take(policy, files)
    source = CollectingSource()
    result = restore(policy, files, manifest, "t", source=source)  # type: ignore[arg-type]
    assert len(source.restored) == manifest.totals.items == result.items
