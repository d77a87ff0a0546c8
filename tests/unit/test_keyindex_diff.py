"""Per-part key indexes (cloudkeep.keyindex) and the flat-memory diff (cloudkeep.itemdiff) over
the in-memory store and the in-memory source, its lines shaped as DynamoDB items."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cloudkeep import function, itemdiff, keyindex, layout, sweep
from cloudkeep.codec import canonical_json
from cloudkeep.copies import copy_snapshot
from cloudkeep.engine import RunOptions, backup
from cloudkeep.itemkeys import parse_key
from cloudkeep.itemread import trusted_chain
from cloudkeep.keys import keyring_for
from cloudkeep.manifest import Manifest, PartEntry
from cloudkeep.policy import Policy, parse_policy
from cloudkeep.registry import open_store
from cloudkeep.sources.memory import MemorySource, MemoryWorld
from cloudkeep.stores.memory import MemoryStore
from cloudkeep.trust import expect_for
from cloudkeep.verify import verify_integrity

SCHEMA = [{"AttributeName": "pk", "KeyType": "HASH"}]
RECORDED = {"type": "dynamodb", "key_schema": SCHEMA}


def policy_for(path: Path | str = "/unused") -> Policy:
    return parse_policy(f"""
version: 1
stores: {{mem: {{type: file, path: {path}}}, other: {{type: file, path: {path}-copy}}}}
tiers: {{t: {{schedule: "0 * * * *", rpo: 2h, retention: {{last: 3}}}}}}
datasets:
  a: {{source: {{type: dynamodb, table: aaa, region: us-east-1}}, tier: t, store: mem}}
""")


def line(key: str, value: Any) -> bytes:
    return canonical_json({"Item": {"pk": {"S": key}, "v": {"S": json.dumps(value)}}})


class DynamoShaped(MemorySource):
    """The in-memory source with its lines as a DynamoDB table's (key attribute ``pk``)."""

    def __init__(self, world: MemoryWorld | None = None) -> None:
        super().__init__(world or MemoryWorld(), "aaa", segments=2, page_size=10)

    def describe(self) -> dict[str, Any]:
        return super().describe() | {"type": "dynamodb", "key_schema": SCHEMA}

    def read_segment_from(self, segment: int, total: int, cursor: dict[str, Any] | None
                          ) -> Iterator[tuple[list[bytes], Callable[[int], Any] | None]]:
        for page, after in super().read_segment_from(segment, total, cursor):
            yield [_reshape(x) for x in page], after


def _reshape(memory_line: bytes) -> bytes:
    doc = json.loads(memory_line)
    return line(doc["key"], doc["item"])


def take(store: Any, source: DynamoShaped, policy: Policy | None = None, **kw: Any) -> Manifest:
    result = backup(policy or policy_for(), "a", store=store, source=source,
                    options=RunOptions(part_size=600), **kw)
    assert result.status == "committed" and result.manifest is not None
    return result.manifest


def key(name: str) -> Any:
    return parse_key(RECORDED, json.dumps({"pk": {"S": name}}))


def test_index_format_round_trips_and_every_alteration_is_refused() -> None:
    builder = keyindex.IndexBuilder(RECORDED, None)
    builder.add_lines([line(f"k{i}", i) for i in range(50)])
    body = builder.finish("0" * 64)
    assert body is not None and len(body) == keyindex.HEADER + 50 * 8
    part = PartEntry(name="part-00000-000000.ndjson.zst", segment=0, index=0, items=50, raw_bytes=1,
                     stored_bytes=1, sha256="0" * 64, key_index=hashlib.sha256(body).hexdigest())
    index = keyindex.parse_index(body, part, keyed=False)
    hasher = keyindex.Hasher(None)
    assert all(index.may_hold(hasher(key(f"k{i}"))) for i in range(50))
    assert sum(index.may_hold(hasher(key(f"other{i}"))) for i in range(1000)) == 0

    def refused(data: bytes, words: str, *, keyed: bool = False, items: int = 50) -> None:
        entry = part.model_copy(update={"key_index": hashlib.sha256(data).hexdigest(), "items": items})
        with pytest.raises(keyindex.KeyIndexError, match=words):
            keyindex.parse_index(data, entry, keyed=keyed)

    with pytest.raises(keyindex.KeyIndexError, match="sha256"):
        keyindex.parse_index(body[:-1] + b"\x00", part, keyed=False)
    refused(body, "is not keyed", keyed=True)
    refused(b"XXXX" + body[4:], "not a cloudkeep key index")
    refused(body, "for a part of 49 items", items=49)
    refused(body, "for a part of 51 items", items=51)
    with pytest.raises(keyindex.KeyIndexError, match="another part"):
        keyindex.parse_index(body, part.model_copy(update={"sha256": "1" * 64}), keyed=False)
    refused(body[:-8], "hashes in")
    swapped = body[: keyindex.HEADER] + body[keyindex.HEADER + 8 : keyindex.HEADER + 16] + \
        body[keyindex.HEADER : keyindex.HEADER + 8] + body[keyindex.HEADER + 16 :]
    refused(swapped, "not sorted")
    # keyed (an encrypted snapshot): other hashes than the plain ones, flagged
    keyed = keyindex.IndexBuilder(RECORDED, b"k" * 32)
    keyed.add_lines([line("k1", 1)])
    keyed_body = keyed.finish("0" * 64)
    assert keyed_body is not None and keyed_body[len(keyindex.MAGIC)] == keyindex.FLAG_KEYED
    assert keyindex.Hasher(None)(key("k1")) not in keyed_body


def test_a_line_without_a_key_leaves_its_part_without_an_index() -> None:
    builder = keyindex.IndexBuilder(RECORDED, None)
    builder.add_lines([line("a", 1), b'{"Item": {"other": {"S": "x"}}}', line("b", 2)])
    assert builder.finish("0" * 64) is None
    none = keyindex.IndexBuilder({"type": "rds"}, None)
    none.add_lines([b"{}"])
    assert none.finish("0" * 64) is None


def test_backup_indexes_every_part_and_candidate_parts_skips_the_rest() -> None:
    store, source = MemoryStore(), DynamoShaped()
    source.fill(120)
    manifest = take(store, source)
    assert len(manifest.parts) > 6 and all(p.key_index for p in manifest.parts)
    for wanted in ("k00007", "k00100"):
        (holder,) = keyindex.candidate_parts(store, manifest, [key(wanted)])
        assert any(json.loads(x)["Item"]["pk"]["S"] == wanted for x in _lines(store, manifest, holder))
    two = keyindex.candidate_parts(store, manifest, [key("k00007"), key("k00100")])
    assert 1 <= len(two) <= 2
    assert keyindex.candidate_parts(store, manifest, [key("absent")]) == []
    assert verify_integrity(store, manifest).ok
    # a removed index: verify names it; the reader falls back to every part
    removed = layout.key_index_key("a", manifest.snapshot_id, manifest.parts[1].name)
    del store.objects[removed]
    report = verify_integrity(store, manifest)
    assert [p.check for p in report.problems] == ["key index"]
    assert keyindex.candidate_parts(store, manifest, [key("absent")]) == manifest.parts


def test_an_index_name_already_taken_is_not_trusted() -> None:
    """A forged object at the index's name before the part is written: the part goes without
    an index (never the forger's), and is read."""
    store, source = MemoryStore(), DynamoShaped()
    source.fill(30)
    sid = "20260101T020000Z-abcdef"
    first = layout.part_name(0, 0)
    store.put(layout.key_index_key("a", sid, first), keyindex.MAGIC + b"\x00" + bytes(8))
    manifest = take(store, source, snapshot_id=sid)
    entry = next(p for p in manifest.parts if p.name == first)
    assert entry.key_index is None and all(p.key_index for p in manifest.parts if p is not entry)
    holders = [p for p in manifest.parts if any(
        json.loads(x)["Item"]["pk"]["S"] == "k00001" for x in _lines(store, manifest, p))]
    found = keyindex.candidate_parts(store, manifest, [key("k00001")])
    assert entry in found and set(p.name for p in holders) <= {p.name for p in found}


def _lines(store: Any, manifest: Manifest, part: PartEntry) -> list[bytes]:
    from cloudkeep.itemread import part_lines
    return list(part_lines(store, manifest, part, None))


def test_sweep_removes_orphan_indexes_only_and_copies_carry_them(tmp_path: Path) -> None:
    policy = policy_for(tmp_path / "vault")
    store = open_store(policy.stores["mem"])
    source = DynamoShaped()
    source.fill(40)
    manifest = take(store, source, policy)
    sid = manifest.snapshot_id
    orphan = layout.key_index_key("a", sid, layout.part_name(0, 999))
    store.put(orphan, b"left by a crashed writer")
    infos = list(store.list(layout.snapshot_prefix("a", sid)))
    doomed = sweep._unreferenced(store, "a", sid, infos, None) or []
    assert orphan in doomed
    assert not [k for k in doomed if k.endswith(".keys") and k != orphan]
    # a copy store holds the indexes too, and verifies
    copy = open_store(policy.stores["other"])
    copy_snapshot(policy, store, manifest, "other", target=copy)
    for part in manifest.parts:
        assert copy.stat(layout.key_index_key("a", sid, part.name)) is not None
    assert verify_integrity(copy, manifest).ok


@pytest.mark.parametrize("bucket_items", [3, 40, itemdiff.BUCKET_ITEMS])
def test_diff_counts_the_same_whatever_the_bucket_size(bucket_items: int) -> None:
    store, world = MemoryStore(), MemoryWorld()
    source = DynamoShaped(world)
    source.fill(300)
    before = take(store, source)
    for i in range(0, 30):
        source.put(f"k{i:05d}", {"changed": i})
    for i in range(30, 37):
        source.delete(f"k{i:05d}")
    for i in range(9):
        source.put(f"new{i}", {"n": i})
    source.put("k00040", json.loads(json.dumps(world.items("aaa")["k00040"])))  # same content
    after = take(store, DynamoShaped(world))
    policy = policy_for()
    expect, keyring = expect_for(policy, "a"), keyring_for(policy)
    a = trusted_chain(store, before, expect, keyring)
    b = trusted_chain(store, after, expect, keyring)
    with itemdiff.diff(store, a, store, b, keys=True, bucket_items=bucket_items) as result:
        assert (result.added, result.removed, result.changed, result.unchanged) == (9, 7, 30, 263)
        items = list(result.items())
    assert len(items) == 46
    assert {i["change"] for i in items if i["key"]["pk"]["S"].startswith("new")} == {"added"}
    assert all(i["fields"] == ["Item.v"] for i in items if i["change"] == "changed")


def test_a_damaged_part_fails_the_diff_naming_it() -> None:
    store, source = MemoryStore(), DynamoShaped()
    source.fill(40)
    manifest = take(store, source)
    policy = policy_for()
    chain = trusted_chain(store, manifest, expect_for(policy, "a"), keyring_for(policy))
    victim = layout.part_key("a", manifest.snapshot_id, manifest.parts[2].name)
    body, at = store.objects[victim]
    store.objects[victim] = (body[:-1] + bytes([body[-1] ^ 1]), at)
    with pytest.raises(itemdiff.SnapshotReadError, match=f"{manifest.parts[2].name} failed its sha256"):
        itemdiff.diff(store, chain, store, chain)


def test_invoke_diff_and_find(tmp_path: Path) -> None:
    policy = policy_for(tmp_path / "vault")
    store = open_store(policy.stores["mem"])
    world = MemoryWorld()
    source = DynamoShaped(world)
    source.fill(20)
    one = take(store, source, policy)
    source.put("k00003", {"x": 1})
    source.delete("k00004")
    two = take(store, DynamoShaped(world), policy)
    body = function.run_action(policy, {"action": "diff", "ref_a": f"a@{one.snapshot_id}",
                                        "ref_b": f"a@{two.snapshot_id}", "keys": True})
    assert body["ok"] and (body["added"], body["removed"], body["changed"]) == (0, 1, 1)
    assert len(body["items"]) == 2
    found = function.run_action(policy, {"action": "find", "dataset": "a",
                                         "key": {"pk": {"S": "k00003"}}})
    assert [f["snapshot_id"] for f in found["snapshots"]] == [two.snapshot_id, one.snapshot_id]
    status, reply = function.invoke(policy, {"action": "find", "dataset": "a", "key": "{bad"})
    assert status == 400 and "not valid JSON" in reply["error"]


def test_snapshots_held_by_the_service_cannot_be_read_item_by_item() -> None:
    store, source = MemoryStore(), DynamoShaped()
    source.fill(5)
    manifest = take(store, source)
    policy = policy_for()
    native = manifest.model_copy(update={"parts": [], "native": {"backup_arn": "arn:x"}})
    with pytest.raises(itemdiff.SnapshotReadError, match="native backup") as raised:
        trusted_chain(store, native, expect_for(policy, "a"), keyring_for(policy))
    assert raised.value.exit_code == 2  # asking for it is bad usage, not a failed read
    opaque = manifest.model_copy(update={"codec": manifest.codec.model_copy(update={"framing": "opaque"})})
    with pytest.raises(itemdiff.SnapshotReadError, match="export format") as raised:
        trusted_chain(store, opaque, expect_for(policy, "a"), keyring_for(policy))
    assert raised.value.exit_code == 2


def test_no_room_for_temporary_files_is_one_clear_error(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    store, source = MemoryStore(), DynamoShaped()
    source.fill(5)
    manifest = take(store, source)
    policy = policy_for()
    chain = trusted_chain(store, manifest, expect_for(policy, "a"), keyring_for(policy))
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    monkeypatch.setattr(tempfile, "tempdir", str(not_a_folder))
    with pytest.raises(itemdiff.DiffSpaceError, match="temporary files in .*file"):
        itemdiff.diff(store, chain, store, chain)


def test_a_copy_goes_on_without_an_index_the_source_lost(tmp_path: Path) -> None:
    policy = policy_for(tmp_path / "vault")
    store = open_store(policy.stores["mem"])
    source = DynamoShaped()
    source.fill(40)
    manifest = take(store, source, policy)
    lost = manifest.parts[0]
    index = tmp_path / "vault" / layout.key_index_key("a", manifest.snapshot_id, lost.name)
    index.unlink()
    copy = open_store(policy.stores["other"])
    copy_snapshot(policy, store, manifest, "other", target=copy)  # the data is what matters
    report = verify_integrity(copy, manifest)
    assert [(p.part, p.check) for p in report.problems] == [(lost.name, "key index")]
    assert keyindex.candidate_parts(copy, manifest, [key("k00001")]) == manifest.parts


def _rerecord(manifest: Manifest, part: PartEntry, body: bytes) -> Manifest:
    """``manifest`` (unsigned: nothing authenticates it) edited to record ``body`` as
    ``part``'s index — what a forger who can rewrite an unsigned manifest does."""
    parts = [p.model_copy(update={"key_index": hashlib.sha256(body).hexdigest()})
             if p.name == part.name else p for p in manifest.parts]
    return manifest.model_copy(update={"parts": parts})


def test_an_index_of_another_part_or_snapshot_or_a_short_one_never_hides_an_item() -> None:
    """Unsigned manifest: an index moved from another part or another snapshot, or one with
    fewer hashes than its part has items, with the manifest's sha256 made to match: refused
    (verify names it), and the part holding the key is still read."""
    store, source = MemoryStore(), DynamoShaped()
    source.fill(120)
    manifest = take(store, source)
    holder = next(p for p in manifest.parts if any(
        json.loads(x)["Item"]["pk"]["S"] == "k00007" for x in _lines(store, manifest, p)))
    other = next(p for p in manifest.parts if p.name != holder.name and p.items == holder.items)
    at = layout.key_index_key("a", manifest.snapshot_id, holder.name)
    own = store.get(at)
    later = take(store, source)  # the same keys, another snapshot
    theirs = store.get(layout.key_index_key("a", later.snapshot_id, other.name))
    moved = store.get(layout.key_index_key("a", manifest.snapshot_id, other.name))
    count = int.from_bytes(own[keyindex.HEADER - 8 : keyindex.HEADER], "big")
    short = own[: keyindex.HEADER - 8] + (count - 1).to_bytes(8, "big") + \
        own[keyindex.HEADER : keyindex.HEADER + (count - 1) * 8]
    empty = own[: keyindex.HEADER - 8] + bytes(8)
    for forged in (moved, theirs, short, empty):
        store.objects[at] = (forged, store.objects[at][1])
        edited = _rerecord(manifest, holder, forged)
        read = keyindex.candidate_parts(store, edited, [key("k00007")])
        assert holder.name in {p.name for p in read}
        (entry,) = [p for p in edited.parts if p.name == holder.name]
        assert keyindex.check(store, edited, entry) is not None


def test_find_without_temporary_space_is_one_clear_error(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """No room to spool a part: find stops with one error naming the temporary folder (not a
    traceback, not every snapshot reported as unsearchable)."""
    import tempfile

    from cloudkeep import itemfind
    from cloudkeep.itemread import TempSpaceError

    store, source = MemoryStore(), DynamoShaped()
    source.fill(5)
    manifest = take(store, source)
    policy = policy_for()
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    monkeypatch.setattr(tempfile, "tempdir", str(not_a_folder))
    with pytest.raises(TempSpaceError, match="temporary .*file"):
        itemfind.find(store, "a", [manifest], json.dumps({"pk": {"S": "k00001"}}),
                      expect=expect_for(policy, "a"), keyring=keyring_for(policy))


def test_verify_rebuilds_each_index_from_its_part_and_names_a_forged_one() -> None:
    """An index crafted to pass every format check (its part's sha256, one hash per item,
    sorted) but listing other keys, recorded by an edited unsigned manifest: verify, which
    reads every line anyway, rebuilds the index and names it."""
    store, source = MemoryStore(), DynamoShaped()
    source.fill(40)
    manifest = take(store, source)
    assert verify_integrity(store, manifest).ok
    part = manifest.parts[0]
    builder = keyindex.IndexBuilder(RECORDED, None)
    builder.add_lines([line(f"forged{i}", i) for i in range(part.items)])
    forged = builder.finish(part.sha256)
    assert forged is not None
    at = layout.key_index_key("a", manifest.snapshot_id, part.name)
    store.objects[at] = (forged, store.objects[at][1])
    edited = _rerecord(manifest, part, forged)
    report = verify_integrity(store, edited)
    assert [(p.part, p.check) for p in report.problems] == [(part.name, "key index")]
    assert "does not list" in report.problems[0].message
