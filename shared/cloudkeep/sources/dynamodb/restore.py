"""Restoring DynamoDB snapshot lines: the target table prepared, then parallel BatchWriteItem."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from ...capabilities import DeletesItems, ReadsItems, ReportsWriteCapacity
from ...codec import canonical_json
from ...errors import RestoreError, SourceError, ThrottledError
from ...retry import Backoff
from .codec import decode_line, encode_item, key_from_wire
from .errors import _errors
from .schema import create_params, key_signature, schema_of
from .settings import creation_settings
from .spec import _typed as normal_number

log = logging.getLogger(__name__)

BATCH_SIZE = 25
GET_BATCH = 100  # BatchGetItem reads at most 100 keys a request
MAX_UNPROCESSED_ATTEMPTS = 12


def unprocessed_backoff() -> Backoff:
    """The retries of a batch call's unprocessed items (BatchWriteItem, BatchGetItem)."""
    return Backoff(attempts=MAX_UNPROCESSED_ATTEMPTS, base=0.05, cap=5.0)


def until_processed(call: Callable[[dict[str, Any]], dict[str, Any]], pending: dict[str, Any],
                    unprocessed: str) -> bool:
    """Call ``call(pending)`` and again with the response's ``unprocessed`` items, with backoff,
    until none are left (True) or the attempts ran out (False)."""
    backoff = unprocessed_backoff()
    while True:
        pending = call(pending).get(unprocessed) or {}
        if not pending:
            return True
        if not backoff.wait():
            return False


def open_restore(client: Any, target: str, existing: dict[str, Any] | None,
                 recorded: dict[str, Any], *, overwrite: bool) -> DynamoDBWriter:
    """A writer into table ``target`` (DescribeTable's ``existing``, None: there is none): made
    with the ``recorded`` schema when absent; else its key schema must be the snapshot's, and it
    must be empty unless ``overwrite``."""
    if existing is None:
        create_table(client, target, recorded)
    else:
        mine = key_signature(recorded)
        theirs = key_signature(schema_of(existing))
        if mine != theirs:
            raise RestoreError(
                f"target table {target!r} exists with key schema {theirs}, but the snapshot's "
                f"is {mine}; restore into a new table name instead"
            )
        with _errors(f"reading {target}"):
            probe = client.scan(TableName=target, Limit=1, Select="COUNT")
        non_empty = probe.get("Count", 0) > 0 or bool(probe.get("LastEvaluatedKey"))
        if non_empty and not overwrite:
            raise RestoreError(
                f"target table {target!r} is not empty; refusing to write into it "
                f"(pass --overwrite to write the snapshot's items over it)"
            )
    return DynamoDBWriter(client, target)


def create_table(client: Any, target: str, recorded: dict[str, Any]) -> None:
    """Create ``target`` with the recorded schema and wait until it exists. The recorded settings
    CreateTable takes (encryption, on-demand limits) are given to it; if the target refuses them
    (a KMS key this account cannot use), the table is made without them and the settings step
    after the data tries again and reports it."""
    from botocore.exceptions import ClientError

    log.info("creating table %s", target)
    params = create_params(target, recorded)
    extra = creation_settings(recorded)
    refused = {"ValidationException", "AccessDeniedException", "KMSAccessDeniedException",
               "InvalidKeyUsageException", "NotFoundException", "DisabledException"}
    try:
        with _errors(f"creating table {target}", passthrough=refused if extra else set()):
            client.create_table(**params, **extra)
    except ClientError as exc:
        log.warning("creating table %s with its recorded %s failed (%s); creating it without",
                    target, ", ".join(extra), exc.response.get("Error", {}).get("Code"))
        with _errors(f"creating table {target}"):
            client.create_table(**params)
    with _errors(f"creating table {target}"):
        client.get_waiter("table_exists").wait(
            TableName=target, WaiterConfig={"Delay": 1, "MaxAttempts": 600}
        )


def drop_table(client: Any, target: str) -> bool:
    """Delete table ``target`` and wait until it is gone; False when there was none."""
    from botocore.exceptions import ClientError

    gone = "ResourceNotFoundException"
    try:
        with _errors(f"deleting table {target}", passthrough={gone}):
            client.delete_table(TableName=target)
    except ClientError as exc:
        if exc.response["Error"]["Code"] == gone:
            return False
        raise
    with _errors(f"waiting for table {target} to be deleted"):
        client.get_waiter("table_not_exists").wait(
            TableName=target, WaiterConfig={"Delay": 1, "MaxAttempts": 600})
    return True


class DynamoDBWriter(DeletesItems, ReadsItems, ReportsWriteCapacity):
    """Writes (and deletes) items with BatchWriteItem, retrying unprocessed items with jittered
    backoff; items still unprocessed after that raise ThrottledError (the restore's governor
    backs off); reads items back by key with BatchGetItem (consistent reads)."""

    def write_capacity(self) -> float | None:
        """The table's provisioned WriteCapacityUnits, or the lowest of its global secondary
        indexes' when lower (every item written to the table is written to each index too, so
        the smallest one is what the restore shares with the application); None: on-demand."""
        with _errors(f"describing {self.target}"):
            table = self.client.describe_table(TableName=self.target)["Table"]
        if (table.get("BillingModeSummary") or {}).get("BillingMode") == "PAY_PER_REQUEST":
            return None
        units = (table.get("ProvisionedThroughput") or {}).get("WriteCapacityUnits")
        if not units:
            return None
        indexes = [(index.get("ProvisionedThroughput") or {}).get("WriteCapacityUnits")
                   for index in table.get("GlobalSecondaryIndexes") or []]
        return float(min([units, *(u for u in indexes if u)]))

    def __init__(self, client: Any, target: str) -> None:
        self.client = client
        self.target = target

    def write(self, lines: list[bytes]) -> int:
        written = 0
        for start in range(0, len(lines), BATCH_SIZE):
            chunk = lines[start : start + BATCH_SIZE]
            requests = [{"PutRequest": {"Item": decode_line(line)}} for line in chunk]
            self._batch(requests)
            written += len(chunk)
        return written

    def delete_keys(self, keys: list[Any]) -> int:
        """Delete the items with these normalised keys (``cloudkeep.itemkeys``; DynamoDB JSON of
        the key attributes, binary as base64); an absent item is no error."""
        unique = list({canonical_json(k): k for k in keys}.values())  # one request per key
        for start in range(0, len(unique), BATCH_SIZE):
            self._batch([{"DeleteRequest": {"Key": key_from_wire(k)}}
                         for k in unique[start : start + BATCH_SIZE]])
        return len(keys)

    def read_items(self, keys: list[Any]) -> dict[bytes, bytes | None]:
        """``canonical_json(key)`` → the live item as a snapshot line (``encode_item``), None
        where the table holds no item with that key."""
        wanted = {canonical_json(k): k for k in keys}
        out: dict[bytes, bytes | None] = dict.fromkeys(wanted)
        pending_keys = list(wanted.values())
        for start in range(0, len(pending_keys), GET_BATCH):
            chunk = pending_keys[start : start + GET_BATCH]
            names = list(chunk[0])

            def call(pending: dict[str, Any], names: list[str] = names) -> dict[str, Any]:
                with _errors(f"reading items of {self.target}"):
                    response: dict[str, Any] = self.client.batch_get_item(RequestItems=pending)
                for item in response.get("Responses", {}).get(self.target, []):
                    line = encode_item(item)
                    wire = json.loads(line)["Item"]
                    key = {n: normal_number(wire[n]) for n in names if n in wire}
                    out[canonical_json(key)] = line
                return response

            request = {self.target: {"Keys": [key_from_wire(k) for k in chunk], "ConsistentRead": True}}
            if not until_processed(call, request, "UnprocessedKeys"):
                raise SourceError(f"DynamoDB kept reads of {self.target} unprocessed after "
                                  f"{MAX_UNPROCESSED_ATTEMPTS} attempts (throttled?)")
        return {k: v for k, v in out.items() if k in wanted}

    def _batch(self, requests: list[dict[str, Any]]) -> None:
        left: list[int] = []

        def call(pending: dict[str, Any]) -> dict[str, Any]:
            with _errors(f"writing to {self.target}"):
                resp: dict[str, Any] = self.client.batch_write_item(RequestItems=pending)
            left[:] = [sum(len(v) for v in (resp.get("UnprocessedItems") or {}).values())]
            return resp

        if not until_processed(call, {self.target: requests}, "UnprocessedItems"):
            raise ThrottledError(
                f"DynamoDB kept {left[0]} item(s) unprocessed after {MAX_UNPROCESSED_ATTEMPTS} "
                f"attempts writing to {self.target} (throttled?); the restore is incomplete"
            )

