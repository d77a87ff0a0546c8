"""Cosmos DB restore: the target container (created with the snapshot's settings when missing)
and the writer, a pool of threads upserting (and, for incremental snapshots, deleting) items; a
429 the SDK gave up on is retried after the server's ``x-ms-retry-after-ms``."""

from __future__ import annotations

import logging
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

from ...capabilities import DeletesItems, ReadsItems
from ...codec import canonical_json
from ...errors import RestoreError, SourceError
from ...retry import Backoff
from .codec import (
    Decoded,
    decode_line,
    encode_item,
    partition_key_paths,
    partition_key_value,
    sdk_partition_key,
)
from .errors import Throttled

if TYPE_CHECKING:
    from .reader import CosmosReader

log = logging.getLogger(__name__)

WRITE_WORKERS = 16
MAX_THROTTLED_ATTEMPTS = 12  # per item, on top of the SDK's own throttling retries


def container_problem(name: str) -> str | None:
    """Why ``name`` cannot be a container id (None: it can)."""
    if not name or len(name) > 255 or any(c in name for c in "/\\?#") or name != name.strip():
        return "a container name has 1 to 255 characters, without / \\ ? # or surrounding spaces"
    return None


def check_container_id(name: str) -> None:
    """Raise RestoreError unless ``name`` can be a container id."""
    problem = container_problem(name)
    if problem:
        raise RestoreError(f"bad target container name {name!r}: {problem}")


def create_container(source: CosmosReader, target: str, recorded: dict[str, Any]) -> dict[str, Any]:
    """Create container ``target`` with the settings the snapshot recorded; its properties."""
    from azure.cosmos import PartitionKey, ThroughputProperties
    from azure.cosmos.exceptions import CosmosResourceExistsError

    pk = recorded.get("partition_key") or {}
    paths = partition_key_paths(pk)
    if not paths:
        raise RestoreError("the snapshot records no partition key: cannot create the container")
    kwargs: dict[str, Any] = {
        "partition_key": PartitionKey(path=paths if len(paths) > 1 else paths[0],
                                      kind=pk.get("kind", "Hash"), version=pk.get("version", 2)),
    }
    if recorded.get("indexing_policy"):
        kwargs["indexing_policy"] = recorded["indexing_policy"]
    if recorded.get("default_ttl") is not None:
        kwargs["default_ttl"] = recorded["default_ttl"]
    if (recorded.get("unique_key_policy") or {}).get("uniqueKeys"):
        kwargs["unique_key_policy"] = recorded["unique_key_policy"]
    if recorded.get("conflict_resolution_policy"):
        kwargs["conflict_resolution_policy"] = recorded["conflict_resolution_policy"]
    if recorded.get("computed_properties"):
        kwargs["computed_properties"] = recorded["computed_properties"]
    throughput = recorded.get("throughput") or {}
    if throughput.get("scope") == "container":
        if throughput.get("autoscale_max_throughput"):
            kwargs["offer_throughput"] = ThroughputProperties(
                auto_scale_max_throughput=throughput["autoscale_max_throughput"])
        elif throughput.get("manual_throughput"):
            kwargs["offer_throughput"] = throughput["manual_throughput"]
    log.info("creating container %s in %s", target, source.database)
    try:
        with source.errors(f"creating container {target}",
                           passthrough=(CosmosResourceExistsError,), creating=True):
            return dict(source.client.get_database_client(source.database).create_container(
                target, **kwargs).read())
    except CosmosResourceExistsError:  # created meanwhile by someone else: use it as is
        props = source.read_properties(target)
        if props is None:
            raise RestoreError(f"container {target!r} could not be created") from None
        return props


class CosmosWriter(DeletesItems, ReadsItems):
    """Upserts (and, for incremental snapshots, deletes) items with a pool of threads; deletes
    and reads items by key (``{"id", "partition_key": [...]}``)."""

    def __init__(self, source: CosmosReader, container: Any, target: str, workers: int) -> None:
        self.source = source
        self.container = container
        self.target = target
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="cosmos-write")

    def write(self, lines: list[bytes]) -> int:
        ops = [decode_line(line) for line in lines]  # a bad line fails before anything is sent
        self._run([self._pool.submit(self._apply, op) for op in ops])
        return len(ops)

    def delete_keys(self, keys: list[Any]) -> int:
        """Delete the items with these keys (id within partition key); an absent one is no error."""
        ops = [Decoded(*_key_parts(k), None) for k in {canonical_json(k): k for k in keys}.values()]
        self._run([self._pool.submit(self._apply, op) for op in ops])
        return len(keys)

    def read_items(self, keys: list[Any]) -> dict[bytes, bytes | None]:
        """``canonical_json(key)`` → the live item as a snapshot line, None where the container
        holds no item with that id in that partition (a query by id scoped to the partition)."""
        wanted = {canonical_json(k): k for k in keys}
        paths = self.source.paths()
        futures = {kb: self._pool.submit(self._read, *_key_parts(k), paths) for kb, k in wanted.items()}
        self._run(list(futures.values()))
        return {kb: future.result() for kb, future in futures.items()}

    def _read(self, item_id: str, partition_key: list[Any], paths: list[str]) -> bytes | None:
        with self.source.errors(f"reading item {item_id!r} of {self.target}"):
            rows = [dict(r) for r in self.container.query_items(
                "SELECT * FROM c WHERE c.id = @id", parameters=[{"name": "@id", "value": item_id}],
                partition_key=sdk_partition_key(partition_key), enable_cross_partition_query=True)]
        rows = [r for r in rows if partition_key_value(r, paths) == partition_key]
        return encode_item(rows[0], paths) if rows else None

    def _run(self, futures: list[Any]) -> None:
        _, pending = wait(futures, return_when=FIRST_EXCEPTION)
        for future in pending:
            future.cancel()
        wait(futures)
        for future in futures:
            error = None if future.cancelled() else future.exception()
            if error is not None:
                raise error

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _apply(self, op: Decoded) -> None:
        from azure.cosmos.exceptions import CosmosResourceNotFoundError

        backoff = Backoff(MAX_THROTTLED_ATTEMPTS, base=0.2, cap=5.0)
        while True:
            try:
                with self.source.errors(f"writing to {self.target}", throttled=True,
                                        passthrough=(CosmosResourceNotFoundError,) if op.doc is None else ()):
                    if op.doc is not None:
                        self.container.upsert_item(op.doc)
                    else:
                        self.container.delete_item(op.id, partition_key=sdk_partition_key(op.partition_key))
                return
            except CosmosResourceNotFoundError:
                return  # deleting an item that is not there: the target already says so
            except Throttled as exc:
                if not backoff.wait(exc.retry_after):
                    raise SourceError(
                        f"{self.source.where}: still throttled (429) after {MAX_THROTTLED_ATTEMPTS} "
                        f"attempts writing to {self.target}; the restore is incomplete"
                    ) from exc


def _key_parts(key: Any) -> tuple[str, list[Any]]:
    """(id, partition key values) of a normalised key; ValueError for anything else."""
    if not isinstance(key, dict) or not isinstance(key.get("id"), str) \
            or not isinstance(key.get("partition_key"), list):
        raise ValueError(f"not a Cosmos DB item key: {key!r}")
    return key["id"], key["partition_key"]
