"""Restore writers item by item (``capabilities.DeletesItems`` / ``ReadsItems``), on every source
that restores item by item — DynamoDB (DynamoDB Local), S3 (moto server), Firestore and Cosmos DB
(their emulators) — through the real SDKs. A snapshot is restored into a scratch target; the
writer then reads items back by key (equal to the snapshot's lines but for what a restored copy
cannot keep: the manifest's ``content_digest.ignores``), deletes some (absent ones too) and
writes one back. Each source is judged by its own ``scan_digest``."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from cloudkeep.capabilities import Closes, DeletesItems, ReadsItems, able
from cloudkeep.itemkeys import key_bytes, key_of, parse_key
from cloudkeep.manifest import Manifest
from cloudkeep.restore import restore
from test_source_contract import BUILDERS, Rig, committed, params, stored_lines

ITEM_BY_ITEM = ["dynamodb", "s3", "firestore", "cosmos"]
ABSENT = {  # a key in each source's own form that no seeded item has
    "dynamodb": '{"pk": {"S": "absent-1"}}',
    "s3": '"absent/1.bin"',
    "firestore": '"users/absent-1"',
    "cosmos": '{"id": "absent-1", "partition_key": "p0"}',
}


@pytest.fixture
def rig(request: pytest.FixtureRequest) -> Rig:
    built = BUILDERS[request.param](request)
    built.name = request.param
    return built


@pytest.fixture
def restored(rig: Rig) -> Iterator[tuple[Manifest, Any, str, Any]]:
    """(manifest, source, scratch target holding the restored snapshot, writer into it)."""
    manifest = committed(rig.backup())
    source = rig.source()
    target = source.scratch_target(secrets.token_hex(4))
    try:
        restore(rig.policy, rig.store, manifest, target, source=source)
        writer = rig.source().open_restore(target, manifest.source, overwrite=True)
        yield manifest, source, target, writer
        closing = able(writer, Closes)
        if closing is not None:
            closing.close()
    finally:
        source.drop_target(target, manifest.source)


def comparable(manifest: Manifest, line: bytes | None) -> Any:
    """A line without the keys a restored copy cannot reproduce."""
    if line is None:
        return None
    doc = json.loads(line)
    return {k: v for k, v in doc.items() if k not in manifest.content_digest.ignores}


@pytest.mark.parametrize("rig", params(ITEM_BY_ITEM), indirect=True)
def test_a_writer_reads_items_back_by_key(rig: Rig, restored: tuple[Manifest, Any, str, Any]) -> None:
    manifest, _source, _target, writer = restored
    reader = able(writer, ReadsItems)
    assert reader is not None
    lines = stored_lines(rig.store, manifest)[:7]
    keys = [key_of(manifest.source, json.loads(line)) for line in lines]
    absent = parse_key(manifest.source, ABSENT[rig.name])
    live = reader.read_items([*keys, absent, keys[0]])  # a key asked twice is read once
    assert set(live) == {key_bytes(k) for k in [*keys, absent]}
    assert live[key_bytes(absent)] is None
    for key, line in zip(keys, lines, strict=True):
        assert comparable(manifest, live[key_bytes(key)]) == comparable(manifest, line)


@pytest.mark.parametrize("rig", params(ITEM_BY_ITEM), indirect=True)
def test_a_writer_deletes_items_by_key_and_nothing_else(
        rig: Rig, restored: tuple[Manifest, Any, str, Any]) -> None:
    manifest, source, target, writer = restored
    deleter, reader = able(writer, DeletesItems), able(writer, ReadsItems)
    assert deleter is not None and reader is not None
    lines = stored_lines(rig.store, manifest)
    gone = [key_of(manifest.source, json.loads(line)) for line in lines[:3]]
    absent = parse_key(manifest.source, ABSENT[rig.name])
    assert deleter.delete_keys([*gone, absent, gone[0]]) == 5  # how many were asked
    count, _ = source.scan_digest(target)
    assert count == manifest.totals.items - 3
    live = reader.read_items([*gone, key_of(manifest.source, json.loads(lines[3]))])
    assert [live[key_bytes(k)] for k in gone] == [None, None, None]
    assert comparable(manifest, live[key_bytes(key_of(manifest.source, json.loads(lines[3])))]) \
        == comparable(manifest, lines[3])
    assert deleter.delete_keys(gone) == 3  # deleting what is gone is no error
    writer.write(lines[:3])  # written back: the target is the snapshot again
    assert source.scan_digest(target) == (manifest.totals.items, manifest.content_digest.value)


@pytest.mark.emulator
def test_dynamodb_keys_with_a_number_and_binary_in_any_spelling(ddb_client: Any) -> None:
    from cloudkeep.sources.dynamodb.restore import DynamoDBWriter

    table = f"items-{secrets.token_hex(4)}"
    ddb_client.create_table(
        TableName=table, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "B"},
                              {"AttributeName": "sk", "AttributeType": "N"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                   {"AttributeName": "sk", "KeyType": "RANGE"}])
    try:
        for i in range(3):
            ddb_client.put_item(TableName=table, Item={"pk": {"B": b"\x00\xff"},
                                                       "sk": {"N": f"{i}.50"}, "v": {"N": str(i)}})
        recorded = {"type": "dynamodb", "key_schema": [
            {"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}]}
        writer = DynamoDBWriter(ddb_client, table)
        keys = [parse_key(recorded, json.dumps({"pk": {"B": "AP8="}, "sk": {"N": n}}))
                for n in ("0.5", "1.500", "15E-1", "2.5", "7")]
        live = writer.read_items(keys)
        assert len(live) == 4  # "1.500" and "15E-1" are one key
        assert json.loads(live[key_bytes(keys[1])] or b"")["Item"]["v"] == {"N": "1"}
        assert live[key_bytes(keys[4])] is None
        assert writer.delete_keys(keys[1:3]) == 2
        assert ddb_client.scan(TableName=table, Select="COUNT")["Count"] == 2
        assert writer.read_items([keys[1]]) == {key_bytes(keys[1]): None}
    finally:
        ddb_client.delete_table(TableName=table)
