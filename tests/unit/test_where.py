"""``--where`` (cloudkeep.where) and the selection (cloudkeep.selection): the grammar, its
semantics on each source's fields, its limits, and keys files."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from cloudkeep.errors import UsageError
from cloudkeep.itemkeys import key_bytes
from cloudkeep.selection import Selection, SelectionRequest
from cloudkeep.where import MAX_CHARS, parse

ITEM = {"status": "open", "total": Decimal("12.5"), "n": Decimal(3), "name": "Zoë", "flag": True,
        "none": None, "m": {"a b": {"c": [Decimal(1), "x"]}}, "and": "keyword-named"}


@pytest.mark.parametrize("text, expected", [
    ('status = "open"', True),
    ("status == 'open'", True),
    ('status != "open"', False),
    ('status <> "closed"', True),
    ("total > 12", True),
    ("total >= 12.5 and total <= 12.50", True),
    ("total < 1.25e1", False),
    ("n = 3.0", True),
    ('n = "3"', False),  # another kind: false, both ways
    ('n != "3"', False),
    ('missing = 1 or missing != 1 or missing < 1', False),
    ("not missing = 1", True),
    ("missing exists", False),
    ("none exists and none = null and not none != null", True),
    ("status != null", True),
    ("flag = true and not flag = false", True),
    ("flag > false", False),
    ('name startswith "Zo"', True),
    ('name > "Z" and name < "a"', True),
    ('total startswith "1"', False),
    ('m.`a b`.c[0] = 1 and m.`a b`.c[1] = "x" and not m.`a b`.c[2] exists', True),
    ('`and` = "keyword-named"', True),
    ('STATUS = "open"', False),  # attribute names are case-sensitive, keywords are not
    ('status = "open" AND NOT (n > 3 OR n < 3)', True),
    ('status = "x" or status = "y" or (total > 1 and n = 3)', True),
    ('status = "a\\"b"', False),
])
def test_where_semantics(text: str, expected: bool) -> None:
    assert parse(text).matches(ITEM) is expected


@pytest.mark.parametrize("text, words", [
    ("", "empty"),
    ("status", "expected a comparison"),
    ("status = ", "expected a value"),
    ('status = "open" extra', "expected 'and', 'or' or the end"),
    ("(status = 1", "expected ')'"),
    ("status ~ 1", "unexpected '~' at character 8"),
    ('status startswith 1', "startswith takes a quoted string"),
    ("and = 1", "expected an attribute name"),
    ("a[-1] = 1", "expected a list index"),
    ('a = "unterminated', "unexpected '\"'"),
    ("__import__('os').system('x')", "expected a comparison"),
    ("a = 1" + " or a = 1" * 128, "more than 128 tests"),
    ("not " * 40 + "a = 1", "nested deeper than 32"),
    ("(" * 40 + "a = 1" + ")" * 40, "nested deeper than 32"),
    ("a = " + "1" * MAX_CHARS, f"at most {MAX_CHARS} characters"),
    ("a = 1e999999999999999999999", "bad number"),
])
def test_bad_expressions_are_one_line_usage_errors(text: str, words: str) -> None:
    with pytest.raises(UsageError, match="^bad --where: ") as e:
        parse(text)
    assert words in str(e.value) and "\n" not in str(e.value)


DDB = {"type": "dynamodb", "key_schema": [{"AttributeName": "pk", "KeyType": "HASH"}]}


def test_fields_per_source_type() -> None:
    ddb = Selection.build(SelectionRequest(where='price > 9 and tags[1] = "b" and m.x = null'), DDB)
    line = {"Item": {"pk": {"S": "a"}, "price": {"N": "10"}, "tags": {"SS": ["a", "b"]},
                     "m": {"M": {"x": {"NULL": True}}}, "raw": {"B": "AAE="}}}
    assert ddb.matches(ddb.fields(line))
    fs = Selection.build(SelectionRequest(where='__name__ startswith "users/u1/" and n > 1'),
                         {"type": "firestore"})
    doc = {"name": "users/u1/orders/o1", "fields": {"n": {"integerValue": "2"}}, "update_time": "x"}
    assert fs.matches(fs.fields(doc))
    assert not fs.matches(fs.fields(doc | {"fields": {"n": {"doubleValue": "NaN"}}}))
    cosmos = Selection.build(SelectionRequest(where="v >= 2"), {"type": "cosmos"})
    assert cosmos.matches(cosmos.fields({"item": {"id": "a", "v": 2.5}, "partition_key": ["p"]}))
    assert cosmos.fields({"delete": True, "id": "a", "partition_key": ["p"]}) is None
    s3 = Selection.build(SelectionRequest(where='metadata.owner = "ann" and size < 10'), {"type": "s3"})
    assert s3.matches(s3.fields({"key": "a", "size": 3, "metadata": {"owner": "ann"}}))
    assert not s3.matches(s3.fields({"key": "a", "size": 30, "metadata": {"owner": "ann"}}))


def test_keys_file_lines_comments_duplicates_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "keys.txt"
    path.write_text('# repaired on 2026-12-07\n{"pk": {"S": "a"}}\n\n  {"pk":{"S":"b"}}  \r\n'
                    '{"pk": {"S": "a"}}\n')
    chosen = Selection.build(SelectionRequest(keys_file=str(path)), DDB)
    assert list(chosen.keys or {}) == [key_bytes({"pk": {"S": "a"}}), key_bytes({"pk": {"S": "b"}})]
    summary = chosen.summary()
    assert summary["keys"] == 2 and summary["keys_file"] == str(path)
    assert len(summary["keys_sha256"]) == 64 and summary["where"] is None
    path.write_text('{"pk": {"S": "a"}}\n{"pk": {"N": "1"}, "x": 1}\n')
    with pytest.raises(UsageError, match=f"^bad key in {path}:2: a key of this table names exactly pk"):
        Selection.build(SelectionRequest(keys_file=str(path)), DDB)
    path.write_bytes(b'{"pk": {"S": "\xff"}}\n')
    with pytest.raises(UsageError, match=":1: not UTF-8"):
        Selection.build(SelectionRequest(keys_file=str(path)), DDB)
    with pytest.raises(UsageError, match="^bad --keys .*nothing: no such file$"):
        Selection.build(SelectionRequest(keys_file=str(tmp_path / "nothing")), DDB)
    with pytest.raises(UsageError, match="not a file$"):
        Selection.build(SelectionRequest(keys_file=str(tmp_path)), DDB)
    path.write_bytes(b'\xef\xbb\xbf{"pk": {"S": "a"}}\r\n')  # a BOM, CRLF: as editors save them
    assert len(Selection.build(SelectionRequest(keys_file=str(path)), DDB).keys or {}) == 1
    with pytest.raises(UsageError, match="not both"):
        Selection.build(SelectionRequest(keys_file=str(path), keys=('{"pk": {"S": "a"}}',)), DDB)
    with pytest.raises(UsageError, match="not addressable item by item"):
        Selection.build(SelectionRequest(keys=("1",)), {"type": "rds"})


def test_keys_asked_one_by_one_name_their_position() -> None:
    with pytest.raises(UsageError, match="^bad --key #2: "):
        Selection.build(SelectionRequest(keys=('{"pk": {"S": "a"}}', '{"pk": 1}')), DDB)
    every: Any = Selection.build(SelectionRequest(), DDB)
    assert every.keys is None and every.wants_key(b"anything") and every.matches({})
