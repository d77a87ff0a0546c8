"""``restore --capacity-share`` of a provisioned DynamoDB target whose global secondary index has
less write capacity than the table (issue #23 §3), on DynamoDB Local: every item written to the
table is written to the index too, so the share is of the index's capacity — the table's would
take all of the index's and throttle the application."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from conftest import unique
from helpers import cli_json, scan_all
from test_restore_anywhere import backed_up, seed

pytestmark = pytest.mark.emulator


def test_capacity_share_counts_the_smallest_index(ddb_client: Any, tmp_path: Path,
                                                  capsys: Any) -> None:
    table = unique("orders")
    seed(ddb_client, table, 12)
    policy, ref = backed_up(tmp_path, capsys, table)
    target = unique("indexed")
    ddb_client.create_table(
        TableName=target,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "n", "AttributeType": "N"}],
        ProvisionedThroughput={"ReadCapacityUnits": 5, "WriteCapacityUnits": 100},
        GlobalSecondaryIndexes=[{
            "IndexName": "by_n", "KeySchema": [{"AttributeName": "n", "KeyType": "HASH"}],
            "Projection": {"ProjectionType": "ALL"},
            "ProvisionedThroughput": {"ReadCapacityUnits": 5, "WriteCapacityUnits": 8}}])
    ddb_client.get_waiter("table_exists").wait(TableName=target)
    t0 = time.monotonic()
    result = cli_json(capsys, "--policy", policy, "restore", ref, "--into", target,
                      "--capacity-share", "0.5")
    elapsed = time.monotonic() - t0
    assert result["rate"]["max_rate"] == 4
    assert result["rate"]["basis"] == "--capacity-share 0.5 of 8 write units/s, 1 unit(s) per item"
    assert result["items"] == 12 and len(scan_all(ddb_client, target)) == 12
    assert elapsed >= 3.0, elapsed  # 12 items at 4 items/s
