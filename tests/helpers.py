"""Helpers shared by the tests (not fixtures)."""

from __future__ import annotations

import json
from typing import Any

from cloudkeep.cli import entrypoint


def cli(capsys: Any, *args: str) -> tuple[int, str, str]:
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = entrypoint(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def cli_json(capsys: Any, *args: str) -> Any:
    code, out, err = cli(capsys, "--format", "json", *args)
    assert code == 0, err
    return json.loads(out)


def normalize(value: Any) -> Any:
    """A low-level DynamoDB attribute value with set members sorted (sets have no order)."""
    if isinstance(value, dict):
        if len(value) == 1:
            (kind, inner), = value.items()
            if kind in ("SS", "NS", "BS"):
                return {kind: sorted(inner)}
        return {k: normalize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalize(v) for v in value]
    return value


def scan_all(client: Any, table: str) -> dict[tuple[str, ...], dict[str, Any]]:
    """Every item of ``table`` keyed by its primary key values, normalized."""
    desc = client.describe_table(TableName=table)["Table"]
    keys = [k["AttributeName"] for k in desc["KeySchema"]]
    out: dict[tuple[str, ...], dict[str, Any]] = {}
    params: dict[str, Any] = {"TableName": table}
    while True:
        page = client.scan(**params)
        for item in page["Items"]:
            key = tuple(json.dumps(item[k], sort_keys=True, default=repr) for k in keys)
            assert key not in out, f"duplicate key {key}"
            out[key] = normalize(item)
        if "LastEvaluatedKey" not in page:
            return out
        params["ExclusiveStartKey"] = page["LastEvaluatedKey"]
