"""DynamoDB source: parallel segmented Scan out, parallel BatchWriteItem back in.

The adapter is :class:`DynamoDBSource`; its parts: ``codec.py`` (items ⇄ lines, raw Scan pages),
``schema.py`` (a table's recorded schema), ``restore.py`` (the writer), ``native.py`` (exports and
on-demand backups), ``errors.py`` (botocore errors → cloudkeep's).
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ...capabilities import CapturesChanges, Description, Resumable, SampleCheck, read_from_start
from ...codec import ContentDigest
from ...errors import SourceError, SourceUnreachableError
from .. import NamesTargets
from .capture import StreamReader
from .codec import decode_line, encode_item, key_from_wire, key_id, key_to_wire, make_client
from .errors import _errors
from .native import NativeJobs
from .restore import DynamoDBWriter, drop_table, open_restore, until_processed
from .schema import schema_of

if TYPE_CHECKING:
    from ...changes import ChangeBatch
    from ...manifest import Manifest
    from .spec import DynamoDBSourceSpec

log = logging.getLogger(__name__)

MIN_SEGMENTS = 4
MAX_DEFAULT_SEGMENTS = 64
BYTES_PER_SEGMENT = 256 * 1024 * 1024


PAGE_SIZE_ENV = "CLOUDKEEP_DYNAMODB_PAGE_SIZE"


def _page_size_from_env() -> int | None:
    """Items per Scan page (Scan's Limit) from ``$CLOUDKEEP_DYNAMODB_PAGE_SIZE``; default
    DynamoDB's own 1 MB pages. Parts and checkpoints close at page ends, so smaller pages give
    finer checkpoints (tests use it to get many of them from a small table)."""
    text = os.environ.get(PAGE_SIZE_ENV, "").strip()
    if not text:
        return None
    try:
        value = int(text)
        if value < 1:
            raise ValueError
    except ValueError:
        raise SourceError(f"${PAGE_SIZE_ENV}: {text!r} is not a positive whole number") from None
    return value

class DynamoDBSource(NativeJobs, Resumable, SampleCheck, NamesTargets, CapturesChanges):
    kind = "dynamodb"

    def __init__(
        self,
        table: str,
        region: str,
        *,
        segments: int | None = None,
        consistent_read: bool = False,
        page_size: int | None = None,
        method: str = "scan",
        client: Any = None,
    ) -> None:
        self.table = table
        self.region = region
        self.method = method
        self.segments = segments
        self.consistent_read = consistent_read
        self.page_size = page_size  # Scan's Limit; None: DynamoDB's 1 MB pages
        self._client = client
        self._client_lock = threading.Lock()
        self._keys: list[str] | None = None  # primary key attribute names

    @classmethod
    def from_spec(cls, spec: DynamoDBSourceSpec) -> DynamoDBSource:
        return cls(
            spec.table, spec.region, segments=spec.segments, consistent_read=spec.consistent_read,
            method=spec.method,
            page_size=_page_size_from_env(),
        )

    @property
    def client(self) -> Any:
        with self._client_lock:
            if self._client is None:
                self._client = make_client(self.region)
            return self._client

    # ---------------------------------------------------------------- reading

    def describe(self) -> Description:
        """The table's schema (a scan is fuzzy: no consistency time)."""
        table = self._describe(self.table)
        if table is None:
            raise SourceUnreachableError(
                f"DynamoDB table {self.table!r} not found in region {self.region}"
            )
        return Description(schema_of(table) | {"type": "dynamodb", "region": self.region})

    # ---------------------------------------------------------------- change capture

    def change_stream_id(self) -> str:
        return f"dynamodb-{self.region}-{self.table}"

    def read_changes(self, position: dict[str, Any] | None, *, now: Callable[[], datetime],
                     deadline: float | None) -> Iterator[ChangeBatch]:
        """The table's stream after ``position`` (``capture.StreamReader``)."""
        recorded = {"type": "dynamodb", "key_schema": self.describe().identity["key_schema"]}
        return StreamReader(self.table, self.region, self.client, recorded).read(
            position, now=now, deadline=deadline)

    def plan_segments(self, described: dict[str, Any]) -> int:
        """The policy's ``segments``, else one per 256 MiB of table, at least 4, at most 64."""
        if self.segments:
            return self.segments
        size = int(described.get("table_size_bytes") or 0)
        return max(MIN_SEGMENTS, min(MAX_DEFAULT_SEGMENTS, math.ceil(size / BYTES_PER_SEGMENT)))

    def read_segment(self, segment: int, total: int) -> Iterator[list[bytes]]:
        return read_from_start(self, segment, total)

    def read_segment_from(
        self, segment: int, total: int, cursor: dict[str, Any] | None
    ) -> Iterator[tuple[list[bytes], Callable[[int], Any] | None]]:
        """Pages of one Scan segment, each with a function giving the cursor after its i-th
        line: that item's primary key in wire form (binary parts as base64 text) — a Scan
        continues after any item's key given as ExclusiveStartKey. ``cursor`` starts after such
        a key (None: from the segment's beginning)."""
        params: dict[str, Any] = {
            "TableName": self.table,
            "Segment": segment,
            "TotalSegments": total,
            "ConsistentRead": self.consistent_read,
        }
        if self.page_size:
            params["Limit"] = self.page_size
        if cursor:
            params["ExclusiveStartKey"] = key_from_wire(cursor)
        keys = self._key_names()
        while True:
            with _errors(f"scanning {self.table}"):
                page = self.client.scan(**params)
            holder = page.get("_raw_page")
            raw = holder.pop() if holder else None
            items = raw.items() if raw is not None else iter(page.get("Items", []))
            lines: list[bytes] = []
            cursors: list[dict[str, Any]] = []  # only the keys are kept, not the items
            for item in items:
                lines.append(encode_item(item))
                cursors.append(key_to_wire({k: item[k] for k in keys}))
            if raw is not None:
                page = raw.rest()
                del raw
            if lines:
                yield lines, cursors.__getitem__
            last = page.get("LastEvaluatedKey")
            if not last:
                return
            params["ExclusiveStartKey"] = key_from_wire(key_to_wire(last))

    def _key_names(self) -> list[str]:
        if self._keys is None:
            table = self._describe(self.table)
            if table is None:
                raise SourceUnreachableError(
                    f"DynamoDB table {self.table!r} not found in region {self.region}")
            self._keys = [k["AttributeName"] for k in table["KeySchema"]]
        return self._keys

    def plan_state(self) -> dict[str, Any]:
        """The key attributes (cursors are item keys); a Scan segment is (segment, total)."""
        return {"key": self._key_names()}

    def resume_plan(self, state: dict[str, Any], segments: int) -> None:
        if state.get("key"):
            self._keys = [str(k) for k in state["key"]]

    def scan_digest(self, target: str) -> tuple[int, str]:
        digest = ContentDigest()
        other = DynamoDBSource(target, self.region, client=self.client)
        total = other.plan_segments(other.describe().identity)
        def one(segment: int) -> ContentDigest:
            part = ContentDigest()
            for lines in other.read_segment(segment, total):
                for line in lines:
                    part.add_line(line)
            return part

        with ThreadPoolExecutor(max_workers=min(total, 16)) as pool:
            for part in pool.map(one, range(total)):
                digest.merge(part)
        return digest.count, digest.hexdigest()

    # ---------------------------------------------------------------- restore

    def open_restore(
        self, target: str, recorded: dict[str, Any], *, overwrite: bool
    ) -> DynamoDBWriter:
        return open_restore(self.client, target, self._describe(target), recorded, overwrite=overwrite)

    # ---------------------------------------------------------------- drills and samples

    def target_problem(self, target: str, manifest: Manifest) -> str | None:
        """A restore target is a table name (DynamoDB's rules)."""
        if not re.fullmatch(r"[A-Za-z0-9_.-]{3,255}", target):
            return "a DynamoDB table name has 3 to 255 letters, digits, '_', '.' or '-'"
        return None

    def scratch_target(self, token: str) -> str:
        """A table name for a restore drill, next to the source table (deleted after the drill)."""
        return f"{self.table[:200]}-cloudkeep-drill-{token}"

    def drop_target(self, target: str, recorded: dict[str, Any]) -> None:
        """Delete a drill's scratch table (gone already is fine)."""
        if target == self.table:
            raise SourceError(f"refusing to delete the source table {target!r}")
        if drop_table(self.client, target):
            log.info("deleted scratch table %s", target)

    def sample_check(self, lines: list[bytes]) -> list[str]:
        """Per snapshot line: ``matched`` (the live item is identical), ``changed`` (it differs:
        DynamoDB keeps no item version, so a difference is taken as a later change) or
        ``deleted`` (no item with that key any more). Reads with BatchGetItem."""
        table = self._describe(self.table)
        if table is None:
            raise SourceUnreachableError(f"DynamoDB table {self.table!r} not found in region {self.region}")
        key_names = [k["AttributeName"] for k in table["KeySchema"]]
        wanted: list[tuple[str, dict[str, Any]]] = []
        for line in lines:
            item = decode_line(line)
            key = {k: item[k] for k in key_names}
            wanted.append((key_id(key), key))
        live: dict[str, bytes] = {}
        for start in range(0, len(wanted), 100):
            unique = {kid: key for kid, key in wanted[start : start + 100]}
            pending: dict[str, Any] = {self.table: {"Keys": list(unique.values()),
                                                    "ConsistentRead": True}}

            def call(pending: dict[str, Any]) -> dict[str, Any]:
                with _errors(f"reading sample items of {self.table}"):
                    response: dict[str, Any] = self.client.batch_get_item(RequestItems=pending)
                for item in response.get("Responses", {}).get(self.table, []):
                    live[key_id({k: item[k] for k in key_names})] = encode_item(item)
                return response

            if not until_processed(call, pending, "UnprocessedKeys"):
                raise SourceError(f"DynamoDB kept sample reads of {self.table} unprocessed (throttled?)")
        out = []
        for (kid, _), line in zip(wanted, lines, strict=True):
            found = live.get(kid)
            out.append("deleted" if found is None else "matched" if found == line else "changed")
        return out

    def _describe(self, table: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        try:
            with _errors(f"describing {table}", passthrough={"ResourceNotFoundException"}):
                return dict(self.client.describe_table(TableName=table)["Table"])
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ResourceNotFoundException":
                return None
            raise
        raise AssertionError("unreachable")  # pragma: no cover
