"""Partial restore on the Cosmos DB emulator, as an unlucky operator spells a key: a partition
key given as ``1.0`` for an item whose partition key is ``1``. Cosmos DB finds the item under
either spelling; the snapshot's key is ``1``. ``--delete-missing`` must never delete an item the
snapshot holds because the operator spelled its key another way."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fixtures_azure import cosmos_policy
from helpers import cli_json
from test_cosmos import create_container
from test_partial_restore_dynamodb import dump, live  # noqa: F401  (the live fixture)

pytestmark = [pytest.mark.emulator,
              pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")]


def test_a_key_spelled_another_way_is_never_deleted_as_missing(
    cosmos_server: Any, cosmos_client: Any, cosmos_database: str, tmp_path: Path, capsys: Any,
) -> None:
    container = create_container(cosmos_client, cosmos_database, "spelled")
    for i in range(4):
        container.upsert_item({"id": f"x{i}", "pk": i, "v": "kept"})
    policy = cosmos_policy(tmp_path, endpoint=cosmos_server.endpoint, database=cosmos_database,
                           container="spelled")
    p = ("--policy", str(policy))
    ref = f"carts@{cli_json(capsys, *p, 'run', 'carts')[0]['snapshot_id']}"
    args = [*p, "restore", ref, "--into", "spelled", "--overwrite", "--delete-missing",
            "--key", json.dumps({"id": "x1", "partition_key": 1.0})]
    plan = cli_json(capsys, *args, "--dry-run")
    assert (plan["missing"], plan["deleted"]) == (1, 0), plan
    assert [i["action"] for i in plan["items"]] == ["missing"]
    done = cli_json(capsys, *args)
    assert (done["missing"], done["deleted"]) == (1, 0), done
    items = {r["id"]: r for r in container.read_all_items()}
    assert sorted(items) == ["x0", "x1", "x2", "x3"], "an item the snapshot holds was deleted"
    assert items["x1"]["v"] == "kept"


def test_delete_missing_creates_no_table_and_never_deletes_a_key_spelled_minus_zero(
        ddb_client: Any, live: Any, capsys: Any) -> None:  # noqa: F811
    policy, table = live
    p = ("--policy", str(policy))
    assert cli_json(capsys, *p, "run", "orders")[0]["snapshot_id"]
    absent = f"{table}-none"
    done = cli_json(capsys, *p, "restore", "orders@latest", "--into", absent, "--delete-missing",
                    "--key", json.dumps({"pk": {"S": "nobody"}, "sk": {"N": "0"}}))
    assert (done["put"], done["missing"], done["deleted"]) == (0, 1, 0), done
    assert absent not in ddb_client.list_tables()["TableNames"], "created a table to delete nothing"
    # DynamoDB finds item user#000/0 under the key spelled -0: not a missing key to delete
    before = dump(ddb_client, table)
    minus_zero = json.dumps({"pk": {"S": "user#000"}, "sk": {"N": "-0"}})
    done = cli_json(capsys, *p, "restore", "orders@latest", "--into", table, "--overwrite",
                    "--delete-missing", "--key", minus_zero)
    assert done["deleted"] == 0 and dump(ddb_client, table) == before, done
