"""Cosmos DB (NoSQL API) source: every feed range read in parallel, written back concurrently.

Lines. One item per line, canonical JSON (sorted keys, no spaces, UTF-8)::

    {"_cloudkeep": {"_etag": …, "_rid": …, "_self": …, "_ts": …, "_attachments": …},
     "item": {<the document without those five system properties>},
     "partition_key": [<its partition key value(s)>]}

``item`` is the document as Cosmos DB returns it (nested JSON, unicode, nulls, booleans, numbers
as doubles — integers are exact up to 2^53, as in Cosmos DB itself). The system properties are
kept under ``_cloudkeep`` for reference; a restored copy gets new ones, so ``_cloudkeep`` is left
out of the content digest (``digest_ignores``). ``partition_key`` is the wire form of the
partition key: one value per path of the container's partition key (several for hierarchical
keys), ``{}`` for a path the document does not have. The item is wrapped (not flattened next to
``_cloudkeep``) so that no document field can collide with cloudkeep's own keys.

Reading. Each feed range (one per physical partition) is a segment, read by a ``SELECT * FROM c``
query scoped to it, page by page (constant memory). A transient failure (throttling after the
SDK's own retries, timeouts, a dropped connection) resumes the range from the continuation token
of the last page read, a few times, instead of starting over. A plain read is fuzzy: items are
read at different moments between the start and the end of the run.

Restore. ``restore REF --into CONTAINER`` writes into CONTAINER in the same database, creating it
when missing with the recorded partition key, indexing policy, unique keys, default TTL,
conflict resolution policy, computed properties and (container-level) throughput. Items are
upserted by a pool of threads; a 429 the SDK gave up on is retried after the server's
``x-ms-retry-after-ms``. A non-empty target is refused unless ``--overwrite``.

Incremental snapshots (``incremental: true``). Every snapshot of such a dataset records, per
feed range, a change-feed continuation taken *before* it reads anything. The next snapshot reads
the change feed from those continuations until it is caught up and stores, per item, its latest
state or a deletion line ``{"_cloudkeep": {...}, "delete": true, "id": …, "partition_key": […]}``.
Restore replays the chain (see ``cloudkeep.chain``): the full snapshot, then each incremental one
in order. Deletes are only in the change feed's *all versions and deletes* mode, which needs
continuous backup on the account and a change feed retention on the container; where the
container has none, or the previous continuation is older than that retention, or the chain
already holds ``full_every`` incremental snapshots, the snapshot is a full one (the manifest
says why). The change feed is read through the narrow :class:`ChangeFeed` seam.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import suppress
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ... import clock as _clock
from ...capabilities import (
    CapturesChanges,
    Description,
    Incremental,
    ReadsFromCursor,
    ReadsTarget,
    RestoresSettings,
    SampleCheck,
)
from ...clouds.azure import retry_after_seconds
from ...codec import ContentDigest
from ...errors import CloudkeepError, RestoreError, SourceError
from ...redaction import redact_url
from ...restore_settings import NOT_HERE
from . import settings as container_settings
from .capture import FeedCapture
from .changefeed import PAGE_SIZE, Change, ChangeFeed, IncrementalPlan, SdkChangeFeed, plan_incremental
from .codec import (
    SYSTEM_PROPERTIES,
    UNDEFINED,
    Decoded,
    canonical,
    decode_line,
    encode_delete,
    encode_item,
    partition_key_paths,
    partition_key_value,
    path_segments,
    sdk_partition_key,
)
from .errors import map_error
from .reader import CosmosReader
from .restore import WRITE_WORKERS, CosmosWriter, check_container_id, container_problem, create_container

if TYPE_CHECKING:
    from ...changes import ChangeBatch
    from ...manifest import Manifest
    from .spec import CosmosSourceSpec

__all__ = [
    "SYSTEM_PROPERTIES", "UNDEFINED", "Change", "ChangeFeed", "CosmosSource", "CosmosWriter",
    "Decoded", "IncrementalPlan", "SdkChangeFeed", "canonical", "decode_line", "encode_delete",
    "encode_item", "map_error", "partition_key_paths", "partition_key_value", "path_segments",
    "plan_incremental", "retry_after_seconds", "sdk_partition_key",
]

log = logging.getLogger(__name__)

DIGEST_IGNORES = ("_cloudkeep",)


class CosmosSource(CosmosReader, Incremental, ReadsFromCursor, SampleCheck, ReadsTarget, CapturesChanges,
                   RestoresSettings):
    """A Cosmos DB (NoSQL API) container: read by feed range (full snapshots) or from the change
    feed (incremental ones), restored by a pool of writers."""

    kind = "cosmos"

    def __init__(
        self,
        endpoint: str,
        database: str,
        container: str,
        *,
        key: str | None = None,
        verify_tls: bool = True,
        incremental: bool = False,
        full_every: int = 24,
        page_size: int = PAGE_SIZE,
        write_workers: int = WRITE_WORKERS,
        client: Any = None,
        change_feed: ChangeFeed | None = None,
        credential_hint: str = "COSMOS_KEY",
    ) -> None:
        CosmosReader.__init__(self, endpoint, database, container, key=key, verify_tls=verify_tls,
                              page_size=page_size, client=client, change_feed=change_feed,
                              credential_hint=credential_hint)
        self.incremental = incremental
        self.full_every = full_every
        self.write_workers = write_workers
        self._previous: Manifest | None = None

    @classmethod
    def from_spec(cls, spec: CosmosSourceSpec) -> CosmosSource:
        return cls(spec.endpoint, spec.database, spec.container, key=os.environ.get(spec.key_env) or None,
                   verify_tls=spec.verify_tls, incremental=spec.incremental,
                   full_every=spec.full_every, credential_hint=spec.key_env)

    # ---------------------------------------------------------------- change capture

    def change_stream_id(self) -> str:
        return f"cosmos-{self.database}-{self.container}"

    def read_changes(self, position: dict[str, Any] | None, *, now: Callable[[], datetime],
                     deadline: float | None) -> Iterator[ChangeBatch]:
        """The change feed after ``position`` (``capture.FeedCapture``)."""
        return FeedCapture(self).read(position, now=now, deadline=deadline)

    # ---------------------------------------------------------------- describing

    def set_previous(self, manifest: Manifest | None) -> None:
        """The dataset's latest committed snapshot (engine hook, called before describe)."""
        self._previous = manifest

    def describe(self) -> Description:
        props = self.container_properties()
        out: dict[str, Any] = {
            "type": "cosmos",
            "endpoint": redact_url(self.endpoint),  # recorded in the manifest: no credentials
            "database": self.database,
            "container": self.container,
            "container_rid": props.get("_rid"),
            "partition_key": props.get("partitionKey"),
            "indexing_policy": props.get("indexingPolicy"),
            "unique_key_policy": props.get("uniqueKeyPolicy"),
            "default_ttl": props.get("defaultTtl"),
            "feed_ranges": len(self.feed_ranges()),
        }
        for key, name in (("conflictResolutionPolicy", "conflict_resolution_policy"),
                          ("computedProperties", "computed_properties")):
            if props.get(key):
                out[name] = props[key]
        out.update(self._throughput())
        out["settings"] = container_settings.from_properties(props) | {
            "throughput": container_settings.throughput_setting(out)}
        method = "query"
        if self.incremental:
            out["incremental"] = self._describe_incremental(out)
            if out["incremental"]["kind"] == "incremental":
                method = "change-feed"
        return Description(identity=out, method=method, digest_ignores=DIGEST_IGNORES)

    def _describe_incremental(self, described: dict[str, Any]) -> dict[str, Any]:
        identity = {k: described[k] for k in ("endpoint", "database", "container", "container_rid")}
        retention = self.change_feed.retention()
        # the clock the previous snapshot's times were recorded with (simulated under --now)
        plan = plan_incremental(self._previous, identity, retention, self.full_every, _clock.now())
        self._plan = plan
        log.info("%s: %s snapshot (%s)", self.where, plan.kind, plan.reason)
        record: dict[str, Any] = {"kind": plan.kind, "reason": plan.reason, "previous": None,
                                  "base": None, "sequence": 0}
        if plan.kind == "incremental":
            assert plan.previous is not None
            before = plan.previous.source["incremental"]
            record |= {"previous": plan.previous.snapshot_id,
                       "base": before.get("base") or plan.previous.snapshot_id,
                       "sequence": int(before.get("sequence") or 0) + 1}
        if retention is not None:
            # Taken before anything is read: what changes from here on is in the next snapshot.
            record["continuations"] = [{"range": r, "token": self.change_feed.start(r)}
                                       for r in self.feed_ranges()]
            record["retention_minutes"] = int(retention.total_seconds() // 60)
        return record

    def _throughput(self) -> dict[str, Any]:
        """The container's (or its database's shared) provisioned throughput, where the account
        reports it (serverless accounts and the local emulator do not, and a managed identity
        with data-plane roles only may not read it): otherwise None, with the reason."""
        def container_level() -> Any:
            return self.container_of(self.client).get_throughput()

        def database_level() -> Any:
            return self.client.get_database_client(self.database).get_throughput()

        attempts = (("container", container_level), ("database", database_level))
        notes = []
        for scope, read in attempts:
            try:
                with self.errors(f"reading the {scope} throughput"):
                    tp = read()
            except CloudkeepError as exc:  # also 403: data-plane roles may not read offers
                notes.append(f"{scope}: {str(exc).split(chr(10))[0][:160]}")
                continue
            entry: dict[str, Any] = {"scope": scope}
            if getattr(tp, "auto_scale_max_throughput", None):
                entry["autoscale_max_throughput"] = int(tp.auto_scale_max_throughput)
            elif getattr(tp, "offer_throughput", None):
                entry["manual_throughput"] = int(tp.offer_throughput)
            return {"throughput": entry}
        return {"throughput": None, "throughput_note": "not reported: " + "; ".join(notes)}

    def scan_digest(self, target: str) -> tuple[int, str]:
        """(items, content digest) of container ``target`` in the same database, read as a full
        backup reads it."""
        other = CosmosSource(self.endpoint, self.database, target, key=self._key,
                             verify_tls=self.verify_tls, page_size=self.page_size, client=self.client)
        paths = other.paths()
        digest = ContentDigest(ignores=DIGEST_IGNORES)
        container = other.container_of(other.client)
        for feed_range in other.feed_ranges():
            for docs in other._query_range(container, feed_range):
                for doc in docs:
                    digest.add_line(encode_item(doc, paths))
        return digest.count, digest.hexdigest()

    # ---------------------------------------------------------------- restore

    def open_restore(self, target: str, recorded: dict[str, Any], *, overwrite: bool) -> CosmosWriter:
        check_container_id(target)
        # another account (restore --endpoint) may not have the database yet: made, or read
        with self.errors(f"opening database {self.database}", creating=True):
            self.client.create_database_if_not_exists(self.database)
        existing = self.read_properties(target)
        if existing is None:
            existing = create_container(self, target, recorded)
        else:
            mine = recorded.get("partition_key") or {}
            theirs = existing.get("partitionKey") or {}
            if partition_key_paths(mine) != partition_key_paths(theirs) or \
                    mine.get("kind", "Hash") != theirs.get("kind", "Hash"):
                raise RestoreError(
                    f"target container {target!r} exists with partition key "
                    f"{partition_key_paths(theirs)}, but the snapshot's is {partition_key_paths(mine)}; "
                    f"restore into a new container instead"
                )
            if self._has_items(target) and not overwrite:
                raise RestoreError(
                    f"target container {target!r} is not empty; refusing to write into it "
                    f"(pass --overwrite to write the snapshot's items over it)"
                )
        container = self.container_of(self.client, target)
        container = self.container_of(self.client, target)
        return CosmosWriter(self, container, target, self.write_workers)

    def target_reader(self, target: str, recorded: dict[str, Any]) -> CosmosWriter | None:
        """Reads container ``target`` by key (None: no such container); writes nothing."""
        check_container_id(target)
        if self.read_properties(target) is None:
            return None
        return CosmosWriter(self, self.container_of(self.client, target), target, self.write_workers)

    # ---------------------------------------------------------------- settings

    def recorded_settings(self, recorded: Mapping[str, Any]) -> dict[str, Any] | None:
        return container_settings.recorded_settings(recorded)

    def data_settings(self) -> frozenset[str]:
        return container_settings.DATA_SETTINGS

    def apply_settings(self, target: str, settings: Mapping[str, Any],
                       recorded: Mapping[str, Any]) -> list[tuple[str, str | None]]:
        """The container was created with ``settings``; an existing one (``--overwrite``) gets
        its indexing policy, default TTL and throughput replaced; then each is checked."""
        live = self.read_settings(target, recorded)
        diff = container_settings.differences(settings, live)
        replace = {k: settings[k] for k in ("indexing_policy", "default_ttl")
                   if k in settings and diff.get(k) is not None}
        out: dict[str, str | None] = {}
        if replace and not partition_key_paths(live.get("partition_key") or {}):
            out.update({k: f"{k} could not be applied: the target reports no partition key"
                        for k in replace})
            replace = {}
        if replace:
            from azure.cosmos import PartitionKey

            pk = live.get("partition_key") or {}
            paths = partition_key_paths(pk)
            try:
                with self.errors(f"replacing the settings of container {target}"):
                    self.client.get_database_client(self.database).replace_container(
                        target, partition_key=PartitionKey(
                            path=paths if len(paths) > 1 else paths[0], kind=pk.get("kind", "Hash"),
                            version=pk.get("version", 2)),
                        indexing_policy=settings.get("indexing_policy") or live.get("indexing_policy"),
                        default_ttl=settings.get("default_ttl"))
            except CloudkeepError as exc:
                out.update({k: f"{k} could not be applied: {exc}" for k in replace})
            except (KeyError, TypeError, ValueError, AttributeError) as exc:  # a damaged record
                out.update({k: f"the manifest's record of {k} is not usable ({exc})" for k in replace})
        throughput = settings.get("throughput")
        if isinstance(throughput, dict) and diff.get("throughput") is not None and \
                throughput.get("scope") == "container":
            out["throughput"] = self._replace_throughput(target, throughput)
        live = self.read_settings(target, recorded)
        for name, why in container_settings.differences(settings, live).items():
            if name in out and out[name] is not None:
                continue
            if why is not None and name in container_settings.FIXED:
                why = (f"{name} is fixed when a container is created and the existing target "
                       f"differs: {why}")
            out[name] = why
        for name in settings:
            out.setdefault(name, f"{NOT_HERE}the target does not report it")
        order = list(container_settings.ORDER) + sorted(set(settings) - set(container_settings.ORDER))
        return [(name, out[name]) for name in order if name in out]

    def _replace_throughput(self, target: str, throughput: Mapping[str, Any]) -> str | None:
        from azure.cosmos import ThroughputProperties

        problem = container_settings.throughput_problem(throughput)
        if problem is not None:
            return problem

        value: Any = (ThroughputProperties(auto_scale_max_throughput=throughput["autoscale_max_throughput"])
                      if throughput.get("autoscale_max_throughput")
                      else throughput.get("manual_throughput"))
        try:
            with self.errors(f"replacing the throughput of container {target}"):
                self.container_of(self.client, target).replace_throughput(value)
        except CloudkeepError as exc:
            return f"throughput could not be applied: {str(exc).splitlines()[0][:200]}"
        except (KeyError, TypeError, ValueError) as exc:
            return f"the manifest's record of throughput is not usable ({exc})"
        return None

    def read_settings(self, target: str, recorded: Mapping[str, Any]) -> dict[str, Any]:
        props = self.read_properties(target) or {}
        out = container_settings.from_properties(props)
        other = CosmosSource(self.endpoint, self.database, target, key=self._key,
                             verify_tls=self.verify_tls, page_size=self.page_size, client=self.client)
        found = other._throughput()
        if found.get("throughput"):
            out["throughput"] = found["throughput"]
        return out

    # ---------------------------------------------------------------- drills and samples

    def target_problem(self, target: str, manifest: Manifest) -> str | None:
        """A restore target is a container id of the source's database."""
        return container_problem(target)

    def scratch_target(self, token: str) -> str:
        """A container name for a restore drill, in the source's database (deleted after it)."""
        return f"{self.container[:200]}-cloudkeep-drill-{token}"

    def drop_target(self, target: str, recorded: dict[str, Any]) -> None:
        """Delete a drill's scratch container (gone already is fine)."""
        if target == self.container:
            raise SourceError(f"refusing to delete the source container {target!r}")
        from azure.cosmos.exceptions import CosmosResourceNotFoundError

        gone = CosmosResourceNotFoundError
        with suppress(gone), self.errors(f"deleting container {target}", passthrough=(gone,)):
            self.client.get_database_client(self.database).delete_container(target)
            log.info("deleted scratch container %s", target)

    def sample_check(self, lines: list[bytes]) -> list[str]:
        """Per snapshot line: ``matched``, ``changed`` (another etag), ``deleted``, or ``differs``
        (same etag, different content: the snapshot is wrong). Reads each item by id within its
        partition (a query: it answers "none" where a point read of a missing item may fail)."""
        container = self.container_of(self.client)
        paths = self.paths()
        out = []
        for line in lines:
            decoded = decode_line(line)
            recorded = json.loads(line)
            with self.errors(f"reading sample item {decoded.id!r}"):
                rows = [dict(r) for r in container.query_items(
                    "SELECT * FROM c WHERE c.id = @id",
                    parameters=[{"name": "@id", "value": decoded.id}],
                    partition_key=sdk_partition_key(decoded.partition_key),
                    enable_cross_partition_query=True)]
            # an id is unique per partition only: keep the one of this line's partition
            rows = [r for r in rows if partition_key_value(r, paths) == decoded.partition_key]
            if not rows:
                out.append("deleted")
                continue
            fresh = encode_item(rows[0], paths)
            etag = (recorded.get("_cloudkeep") or {}).get("_etag")
            if etag is None or json.loads(fresh).get("_cloudkeep", {}).get("_etag") != etag:
                out.append("changed" if fresh != line else "matched")
            else:
                out.append("matched" if fresh == line else "differs")
        return out

    def _has_items(self, target: str) -> bool:
        with self.errors(f"reading {target}"):
            rows = self.container_of(self.client, target).query_items(
                "SELECT TOP 1 c.id FROM c", enable_cross_partition_query=True, max_item_count=1)
            return any(True for _ in rows)

