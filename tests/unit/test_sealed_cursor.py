"""An encrypted snapshot's checkpoints keep their cursors sealed (sealed.py).

A cursor is where a segment's reading continues: an item's key. For an encrypted snapshot that
key is data, so a checkpoint must not show it in plain text; a resumed run opens it and reads on
exactly; a sealed cursor that does not open (altered, or moved from another segment) makes the
segment start over rather than resume at a place nobody vouches for.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cloudkeep import sealed
from cloudkeep.checkpoint import Deadline
from cloudkeep.engine import backup
from cloudkeep.keys import Keyring
from cloudkeep.keys.local import create_key_file
from cloudkeep.policy import Policy, parse_policy
from cloudkeep.stores.memory import MemoryStore
from cloudkeep.verify import verify_integrity
from test_checkpoint import Countdown, ResumableSource, opts


def encrypted_policy(tmp_path: Path) -> Policy:
    create_key_file(tmp_path / "k.key")
    return parse_policy(f"""
version: 1
stores: {{mem: {{type: file, path: {tmp_path / 'unused'}}}}}
keys: {{k: {{provider: local, path: {tmp_path / 'k.key'}}}}}
encryption: {{keys: [k]}}
tiers: {{t: {{schedule: "0 * * * *", rpo: 2h, retention: {{last: 3}}}}}}
datasets:
  a: {{source: {{type: dynamodb, table: aaa, region: us-east-1}}, tier: t, store: mem}}
""")


def checkpoints(store: MemoryStore) -> dict[str, bytes]:
    return {info.key: store.get(info.key) for info in store.list("a/")
            if "/checkpoints/segment-" in info.key}


def test_a_checkpoint_of_an_encrypted_snapshot_shows_no_item_key(tmp_path: Path) -> None:
    policy = encrypted_policy(tmp_path)
    keyring = Keyring.from_policy(policy)
    store, source = MemoryStore(), ResumableSource()
    first = backup(policy, "a", store=store, source=source, keyring=keyring,
                   options=opts(deadline=Deadline(Countdown(4), reserve=1.0)))
    assert first.status == "unfinished", first
    saved = checkpoints(store)
    cursors = [json.loads(body)["cursor"] for body in saved.values()]
    assert cursors and all(sealed.is_sealed(c) for c in cursors if c is not None)
    assert any(c is not None for c in cursors)
    for key, body in saved.items():
        assert b'"k0' not in body, f"{key} shows an item key: {body[:200]!r}"

    second = backup(policy, "a", store=store, source=ResumableSource(), keyring=keyring, options=opts())
    assert second.status == "committed" and second.manifest is not None
    assert second.manifest.snapshot_id == first.snapshot_id
    assert (second.manifest.totals.items, second.manifest.content_digest.value) == source.expected()
    assert verify_integrity(store, second.manifest, keyring=keyring).ok


def test_a_sealed_cursor_opens_only_where_it_was_sealed() -> None:
    key = bytes(range(32))
    value = sealed.seal(key, sealed.cursor_aad("s1", 0), {"last": "k00042"})
    assert b"k00042" not in json.dumps(value).encode()
    assert sealed.unseal(key, sealed.cursor_aad("s1", 0), value) == {"last": "k00042"}
    for aad in (sealed.cursor_aad("s1", 1), sealed.cursor_aad("s2", 0)):
        with pytest.raises(sealed.SealError):
            sealed.unseal(key, aad, value)
    with pytest.raises(sealed.SealError):
        sealed.unseal(bytes(32), sealed.cursor_aad("s1", 0), value)
    assert sealed.unseal(key, b"any", {"last": "plain"}) == {"last": "plain"}  # older checkpoints


def test_an_altered_sealed_cursor_restarts_its_segment_and_the_snapshot_is_still_exact(
        tmp_path: Path) -> None:
    policy = encrypted_policy(tmp_path)
    keyring = Keyring.from_policy(policy)
    store, source = MemoryStore(), ResumableSource()
    first = backup(policy, "a", store=store, source=source, keyring=keyring,
                   options=opts(deadline=Deadline(Countdown(4), reserve=1.0)))
    assert first.status == "unfinished"
    for key, body in checkpoints(store).items():  # a store writer swaps every cursor's bytes
        doc = json.loads(body)
        if sealed.is_sealed(doc["cursor"]):
            doc["cursor"] = sealed.seal(bytes(32), b"forged", {"last": "k99999"})
            store.delete([key])
            store.put(key, json.dumps(doc).encode(), if_absent=True)
    again = ResumableSource()
    second = backup(policy, "a", store=store, source=again, keyring=keyring, options=opts())
    assert second.status == "committed" and second.manifest is not None
    assert again.resumed_at == []  # nothing resumed at a forged place
    assert (second.manifest.totals.items, second.manifest.content_digest.value) == source.expected()
    assert verify_integrity(store, second.manifest, keyring=keyring).ok
