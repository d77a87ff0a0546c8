"""Item keys: one normalised spelling per item, per source type (cloudkeep.itemkeys)."""

from __future__ import annotations

import pytest

from cloudkeep.errors import UsageError
from cloudkeep.itemkeys import key_bytes, key_hash, key_of, parse_key

DDB = {"type": "dynamodb", "key_schema": [{"AttributeName": "sk", "KeyType": "RANGE"},
                                          {"AttributeName": "pk", "KeyType": "HASH"}]}


def test_dynamodb_key_from_line_equals_parsed_key_in_any_number_spelling() -> None:
    line = {"Item": {"pk": {"S": "u#1"}, "sk": {"N": "1.50"}, "name": {"S": "x"}}}
    from_line = key_of(DDB, line)
    assert from_line == {"pk": {"S": "u#1"}, "sk": {"N": "1.5"}}
    assert parse_key(DDB, '{"sk": {"N": "1.500"}, "pk": {"S": "u#1"}}') == from_line
    assert key_hash(from_line) == key_hash(parse_key(DDB, '{"pk":{"S":"u#1"},"sk":{"N":"15E-1"}}'))
    assert key_hash(from_line) != key_hash(parse_key(DDB, '{"pk":{"S":"u#1"},"sk":{"N":"2"}}'))


@pytest.mark.parametrize("text, words", [
    ('{"pk": {"S": "a"}}', "exactly pk, sk"),
    ('{"pk": "a", "sk": {"N": "1"}}', "not DynamoDB JSON"),
    ('{"pk": {"S": "a"}, "sk": {"N": "one"}}', "not a number"),
    ('{"pk": ', "not valid JSON"),
    ('"a"', "JSON object"),
])
def test_dynamodb_bad_keys_are_one_line_usage_errors(text: str, words: str) -> None:
    with pytest.raises(UsageError, match=words) as e:
        parse_key(DDB, text)
    assert str(e.value).startswith("bad --key: ") and "\n" not in str(e.value)


def test_firestore_cosmos_s3_keys() -> None:
    fs = {"type": "firestore"}
    assert key_of(fs, {"name": "users/alice", "fields": {}}) == "users/alice"
    assert parse_key(fs, "users/alice") == parse_key(fs, '"users/alice"') == "users/alice"
    assert parse_key(fs, "projects/p/databases/(default)/documents/users/alice") == "users/alice"
    with pytest.raises(UsageError, match="not a document path"):
        parse_key(fs, "users")
    cosmos = {"type": "cosmos"}
    item = {"item": {"id": "o1", "v": 1}, "partition_key": ["t-a"]}
    gone = {"delete": True, "id": "o1", "partition_key": ["t-a"]}
    assert key_of(cosmos, item) == key_of(cosmos, gone) == {"id": "o1", "partition_key": ["t-a"]}
    assert parse_key(cosmos, '{"id": "o1", "partition_key": "t-a"}') == key_of(cosmos, item)
    s3 = {"type": "s3"}
    assert key_of(s3, {"key": "a/b.txt", "size": 1}) == parse_key(s3, "a/b.txt") == "a/b.txt"
    assert key_bytes(key_of(cosmos, item)) == b'{"id":"o1","partition_key":["t-a"]}'


def test_a_source_without_item_keys_is_refused() -> None:
    with pytest.raises(UsageError, match="not addressable item by item"):
        parse_key({"type": "rds"}, "1")
    assert key_of({"type": "rds"}, {"x": 1}) is None
