"""Partial restore under attack: a where-expression on a value that has no order, and an
``invoke`` payload naming a file of the function's own host."""

from __future__ import annotations

import json
import tracemalloc
from decimal import Decimal
from pathlib import Path

import pytest

from cloudkeep import function
from cloudkeep.errors import UsageError
from cloudkeep.itemkeys import parse_key
from cloudkeep.policy import parse_policy
from cloudkeep.selection import Selection, SelectionRequest
from cloudkeep.where import parse


@pytest.mark.parametrize("text", ["a < 1", "a = 1", "a != 1", "a >= 0", "not (a > 1)"])
def test_a_nan_number_in_an_item_matches_no_comparison_and_raises_nothing(text: str) -> None:
    for nan in (Decimal("NaN"), Decimal("sNaN"), Decimal("-NaN")):
        # not (a > 1) is the negation of a false test: true, like an attribute of another kind
        assert parse(text).matches({"a": nan}) is text.startswith("not")
    assert parse("a exists").matches({"a": Decimal("NaN")})


def test_invoke_refuses_a_keys_file_of_the_functions_own_host(tmp_path: Path) -> None:
    policy = parse_policy(f"""
version: 1
stores: {{mem: {{type: file, path: {tmp_path}/vault}}}}
tiers: {{t: {{schedule: "0 * * * *", rpo: 2h, retention: {{last: 3}}}}}}
datasets:
  a: {{source: {{type: s3, bucket: bucket-a, region: us-east-1}}, tier: t, store: mem}}
""")
    secret = tmp_path / "environ"
    secret.write_text("AWS_SECRET_ACCESS_KEY=do-not-echo\n")
    for extra in ({"keys_file": str(secret)}, {"keys_file": "/proc/self/environ", "keys": []}):
        status, body = function.invoke(policy, {"action": "restore", "ref": "a@latest",
                                                "into": "bucket-b", "dry_run": True, **extra})
        assert status == 400, body
        assert "'keys_file' is not accepted" in body["error"]
        assert "do-not-echo" not in str(body)


@pytest.mark.parametrize("typo", ["dry-run", "dryRun", "filter", "Keys", "delete-missing"])
def test_invoke_refuses_a_misspelt_restore_field_rather_than_restore_everything(
        tmp_path: Path, typo: str) -> None:
    """A misspelt ``dry_run`` or selection, ignored, would turn the request into a whole
    restore over the live dataset (``overwrite``): it is a 400 naming the field."""
    policy = parse_policy(f"""
version: 1
stores: {{mem: {{type: file, path: {tmp_path}/vault}}}}
tiers: {{t: {{schedule: "0 * * * *", rpo: 2h, retention: {{last: 3}}}}}}
datasets:
  a: {{source: {{type: s3, bucket: bucket-a, region: us-east-1}}, tier: t, store: mem}}
""")
    status, body = function.invoke(policy, {"action": "restore", "ref": "a@latest",
                                            "into": "bucket-a", "overwrite": True, typo: True})
    assert status == 400, body
    assert f"unknown field(s) for action 'restore': {typo}" in body["error"]
    assert not list((tmp_path / "vault").rglob("*")), "a refused request wrote something"


@pytest.mark.parametrize("bare", ["2024", "true", "null", "1e3", "-0"])
def test_a_bare_s3_key_that_reads_as_a_json_number_or_literal_is_that_text(bare: str) -> None:
    recorded = {"type": "s3", "bucket": "b"}
    assert parse_key(recorded, bare) == bare
    assert parse_key(recorded, json.dumps(bare)) == bare
    with pytest.raises(UsageError, match="a DynamoDB key is a JSON object"):
        parse_key({"type": "dynamodb", "key_schema": [{"AttributeName": "pk", "KeyType": "HASH"}]},
                  bare)


@pytest.mark.parametrize("field", ["keys", "key"])
def test_invoke_refuses_an_empty_key_list_rather_than_restore_everything(
        tmp_path: Path, field: str) -> None:
    """An automation that found no key to repair sends ``keys: []``: that must never become a
    whole restore over the live dataset (``overwrite``)."""
    policy = parse_policy(f"""
version: 1
stores: {{mem: {{type: file, path: {tmp_path}/vault}}}}
tiers: {{t: {{schedule: "0 * * * *", rpo: 2h, retention: {{last: 3}}}}}}
datasets:
  a: {{source: {{type: s3, bucket: bucket-a, region: us-east-1}}, tier: t, store: mem}}
""")
    status, body = function.invoke(policy, {"action": "restore", "ref": "a@latest",
                                            "into": "bucket-a", "overwrite": True, field: []})
    assert status == 400, body
    assert f"'{field}' is an empty list" in body["error"]


@pytest.mark.parametrize("text", ["[" * 30000, "[" * 20000 + "]" * 20000, '{"a":' * 12000])
def test_a_key_nested_past_the_stack_is_a_one_line_usage_error(text: str) -> None:
    with pytest.raises(UsageError, match="bad --key"):
        parse_key({"type": "s3", "bucket": "b"}, text)


def test_a_dynamodb_key_of_the_wrong_type_is_refused_before_anything_is_read() -> None:
    """``{"S": "1"}`` for a number key names no item (DynamoDB refuses the request, after the
    selected items were written): a usage error naming the attribute and its type."""
    recorded = {"type": "dynamodb",
                "key_schema": [{"AttributeName": "pk", "KeyType": "HASH"},
                               {"AttributeName": "sk", "KeyType": "RANGE"}],
                "attribute_definitions": [{"AttributeName": "pk", "AttributeType": "S"},
                                          {"AttributeName": "sk", "AttributeType": "N"}]}
    good = parse_key(recorded, '{"pk": {"S": "a"}, "sk": {"N": "1.50"}}')
    assert good == {"pk": {"S": "a"}, "sk": {"N": "1.5"}}
    with pytest.raises(UsageError, match="key attribute 'sk' is of type N in this table, not S"):
        parse_key(recorded, '{"pk": {"S": "a"}, "sk": {"S": "1"}}')
    with pytest.raises(UsageError, match="key attribute 'pk' is of type S in this table, not B"):
        parse_key(recorded, '{"pk": {"B": "AQI="}, "sk": {"N": "1"}}')
    del recorded["attribute_definitions"]  # an older manifest: the type is not known
    assert parse_key(recorded, '{"pk": {"S": "a"}, "sk": {"S": "1"}}')["sk"] == {"S": "1"}


def test_a_keys_file_of_one_endless_line_is_refused_without_reading_it_whole(
        tmp_path: Path) -> None:
    huge = tmp_path / "keys.bin"
    with huge.open("wb") as out:
        for _ in range(32):
            out.write(b"\xff" * (1 << 20))  # 32 MiB of not UTF-8, no newline
    tracemalloc.start()
    try:
        with pytest.raises(UsageError, match=r"keys.bin:1: a key is at most"):
            Selection.build(SelectionRequest(keys_file=str(huge)), {"type": "s3", "bucket": "b"})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, f"{peak} bytes held reading a keys file line"
