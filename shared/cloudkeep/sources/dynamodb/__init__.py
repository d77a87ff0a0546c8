"""DynamoDB source: parallel segmented Scan out, parallel BatchWriteItem back in.

Items are written as DynamoDB JSON lines ``{"Item": {...}}`` — the same lines as DynamoDB's own
export to S3 — with numbers kept as strings, binary as base64, and set members sorted so that a
line is canonical (DynamoDB does not keep set order).

Two further methods run a native job instead of a scan (``cloudkeep.jobs``: started by one run,
polled by the next ones, never waited for in a sleeping function):

- ``export``: ``ExportTableToPointInTime`` into the dataset's S3 store, under the snapshot's own
  folder; the export's gzip data files become the snapshot's parts (sizes, sha256, items, content
  digest), the export time its point-in-time consistency. The lines are the same as a scan's, so
  such a snapshot restores through the same path.
- ``native``: an on-demand ``CreateBackup`` named ``cloudkeep-<dataset>-<snapshot id>`` (and
  tagged where DynamoDB allows); retention deletes it with its snapshot; restore runs
  ``RestoreTableFromBackup`` into a new table.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ...clouds.aws import AwsErrors
from ...codec import ContentDigest
from ...errors import RestoreError, SourceError, SourceUnreachableError

if TYPE_CHECKING:
    from datetime import datetime

    from ...manifest import Manifest
    from ...policy import DynamoDBSourceSpec
    from .. import JobContext, JobPoll, NativeOutcome

log = logging.getLogger(__name__)

MIN_SEGMENTS = 4
MAX_DEFAULT_SEGMENTS = 64
BYTES_PER_SEGMENT = 256 * 1024 * 1024
BATCH_SIZE = 25
MAX_UNPROCESSED_ATTEMPTS = 12

_UNREACHABLE_CODES = {
    "ResourceNotFoundException",
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "ExpiredTokenException",
    "MissingAuthenticationTokenException",
}


def make_client(region: str, pool: int = 32) -> Any:
    """A DynamoDB client whose Scan responses skip botocore's parsing (see ``_raw_scan``).

    Built from a botocore session: boto3 adds nothing here but import time."""
    import botocore.session

    from ...awsconfig import client_config

    # timeouts and the retry budget (AWS_MAX_ATTEMPTS / AWS_RETRY_MODE override): awsconfig.py
    config = client_config(max_pool_connections=pool)
    client = botocore.session.get_session().create_client("dynamodb", region_name=region, config=config)
    client.meta.events.register("before-parse.dynamodb.Scan", _raw_scan)
    return client


def _raw_scan(response_dict: dict[str, Any], customized_response_dict: dict[str, Any],
              **_: Any) -> None:
    """Hand Scan's JSON body over as is instead of letting botocore walk it item by item.

    botocore's parsing is most of a backup's CPU time (about 90 µs per item, 5x the JSON
    decoding). The wire form is already what a snapshot stores — typed attribute values with
    numbers as strings and binary as base64 — so items are taken from it unchanged, and one at a
    time (:class:`RawPage`): a page decoded whole takes about 13 times its 1 MB in objects, per
    segment read at once. Errors keep the normal path.
    """
    if response_dict.get("status_code") != 200:
        return
    text = response_dict["body"].decode("utf-8")
    at = text.find(_ITEMS_KEY)
    if at < 0:  # e.g. Select=COUNT, or another spacing: decode it whole
        body = json.loads(text)
        for key in ("Items", "Count", "ScannedCount", "LastEvaluatedKey"):
            if key in body:
                customized_response_dict[key] = body[key]
    else:
        # The page travels in a holder the reader empties: botocore's per-request objects form
        # reference cycles that live until a full garbage collection, with whatever they reach.
        customized_response_dict["_raw_page"] = [RawPage(text, at + len(_ITEMS_KEY) - 1)]
    response_dict["body"] = b"{}"


_ITEMS_KEY = '"Items":['  # a key: inside a JSON string the quotes would be escaped
_WS = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


def _skip(text: str, pos: int) -> int:
    """``pos`` moved past JSON whitespace."""
    found = _WS.match(text, pos)
    return found.end() if found else pos


class RawPage:
    """A Scan response body whose items are decoded one at a time (the rest once they are)."""

    def __init__(self, text: str, bracket: int) -> None:
        self.text = text
        self.bracket = bracket  # index of the Items array's "["
        self.end: int | None = None  # index after its "]", once read

    def items(self) -> Iterator[dict[str, Any]]:
        text = self.text
        pos = _skip(text, self.bracket + 1)
        if text[pos] == "]":
            self.end = pos + 1
            return
        while True:
            item, pos = _DECODER.raw_decode(text, pos)
            yield item
            pos = _skip(text, pos)
            char = text[pos]
            pos = _skip(text, pos + 1)
            if char == "]":
                self.end = pos
                return
            if char != ",":
                raise ValueError(f"unexpected {char!r} in a Scan response at {pos}")

    def rest(self) -> dict[str, Any]:
        """Everything but the items (Count, LastEvaluatedKey, ...), after ``items()`` ran out."""
        if self.end is None:
            for _ in self.items():
                pass
        assert self.end is not None
        rest: dict[str, Any] = json.loads(self.text[: self.bracket] + "[]" + self.text[self.end :])
        return rest


def _key_to_wire(key: dict[str, Any]) -> dict[str, Any]:
    """A key as JSON: binary parts as base64 text (as the raw wire form already has them)."""
    return {k: ({"B": _b64(v["B"])} if "B" in v and not isinstance(v["B"], str) else v)
            for k, v in key.items()}


def _key_from_wire(key: dict[str, Any]) -> dict[str, Any]:
    """A key for the client's ExclusiveStartKey: binary parts back to bytes."""
    return {k: ({"B": base64.b64decode(v["B"])} if "B" in v else v) for k, v in key.items()}


def _b64(value: object) -> str:
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"cannot encode {type(value).__name__}")


_NESTED = frozenset(("M", "L", "SS", "NS", "BS"))


def _binary_key(value: bytes | str) -> bytes:
    """Binary set members sort by their bytes, whether parsed (bytes) or raw (base64 text)."""
    return base64.b64decode(value) if isinstance(value, str) else value


def _canon(value: dict[str, Any]) -> dict[str, Any]:
    kind = next(iter(value))
    if kind not in _NESTED:
        return value
    inner = value[kind]
    if kind == "M":
        return {"M": {k: _canon(v) for k, v in inner.items()}}
    if kind == "L":
        return {"L": [_canon(v) for v in inner]}
    if kind == "BS":
        return {kind: sorted(inner, key=_binary_key)}
    return {kind: sorted(inner)}


def encode_item(item: dict[str, Any]) -> bytes:
    """One canonical line for an item as the low-level client returns it."""
    canon = {k: (_canon(v) if next(iter(v)) in _NESTED else v) for k, v in item.items()}
    return json.dumps(
        {"Item": canon}, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_b64
    ).encode("utf-8")


def _decode_value(value: dict[str, Any]) -> dict[str, Any]:
    kind = next(iter(value))
    inner = value[kind]
    if kind == "B":
        return {"B": base64.b64decode(inner)}
    if kind == "BS":
        return {"BS": [base64.b64decode(b) for b in inner]}
    if kind == "M":
        return {"M": {k: _decode_value(v) for k, v in inner.items()}}
    if kind == "L":
        return {"L": [_decode_value(v) for v in inner]}
    return value


def decode_line(line: bytes) -> dict[str, Any]:
    """An item for the low-level client from one snapshot line (binary back to bytes)."""
    doc = json.loads(line)
    item = doc["Item"]
    if not isinstance(item, dict):
        raise ValueError("'Item' is not an object")
    return {k: _decode_value(v) for k, v in item.items()}


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


class DynamoDBSource:
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

    def describe(self) -> dict[str, Any]:
        table = self._describe(self.table)
        if table is None:
            raise SourceUnreachableError(
                f"DynamoDB table {self.table!r} not found in region {self.region}"
            )
        return _schema_of(table) | {"type": "dynamodb", "region": self.region}

    def plan_segments(self, described: dict[str, Any]) -> int:
        """The policy's ``segments``, else one per 256 MiB of table, at least 4, at most 64."""
        if self.segments:
            return self.segments
        size = int(described.get("table_size_bytes") or 0)
        return max(MIN_SEGMENTS, min(MAX_DEFAULT_SEGMENTS, math.ceil(size / BYTES_PER_SEGMENT)))

    def read_segment(self, segment: int, total: int) -> Iterator[list[bytes]]:
        for lines, _ in self.read_segment_from(segment, total, None):
            yield lines

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
            params["ExclusiveStartKey"] = _key_from_wire(cursor)
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
                cursors.append(_key_to_wire({k: item[k] for k in keys}))
            if raw is not None:
                page = raw.rest()
                del raw
            if lines:
                yield lines, cursors.__getitem__
            last = page.get("LastEvaluatedKey")
            if not last:
                return
            params["ExclusiveStartKey"] = _key_from_wire(_key_to_wire(last))

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
        described = other.describe()
        total = other.plan_segments(described)
        from concurrent.futures import ThreadPoolExecutor

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
        existing = self._describe(target)
        if existing is None:
            self._create_table(target, recorded)
        else:
            mine = _key_signature(recorded)
            theirs = _key_signature(_schema_of(existing))
            if mine != theirs:
                raise RestoreError(
                    f"target table {target!r} exists with key schema {theirs}, but the snapshot's "
                    f"is {mine}; restore into a new table name instead"
                )
            with _errors(f"reading {target}"):
                probe = self.client.scan(TableName=target, Limit=1, Select="COUNT")
            non_empty = probe.get("Count", 0) > 0 or bool(probe.get("LastEvaluatedKey"))
            if non_empty and not overwrite:
                raise RestoreError(
                    f"target table {target!r} is not empty; refusing to write into it "
                    f"(pass --overwrite to write the snapshot's items over it)"
                )
        return DynamoDBWriter(self.client, target)

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
        from botocore.exceptions import ClientError

        try:
            with _errors(f"deleting table {target}", passthrough={"ResourceNotFoundException"}):
                self.client.delete_table(TableName=target)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ResourceNotFoundException":
                return
            raise
        with _errors(f"waiting for table {target} to be deleted"):
            self.client.get_waiter("table_not_exists").wait(
                TableName=target, WaiterConfig={"Delay": 1, "MaxAttempts": 600})
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
            wanted.append((_key_id(key), key))
        live: dict[str, bytes] = {}
        for start in range(0, len(wanted), 100):
            unique = {kid: key for kid, key in wanted[start : start + 100]}
            pending: dict[str, Any] = {self.table: {"Keys": list(unique.values()),
                                                    "ConsistentRead": True}}
            for attempt in range(MAX_UNPROCESSED_ATTEMPTS):
                with _errors(f"reading sample items of {self.table}"):
                    response = self.client.batch_get_item(RequestItems=pending)
                for item in response.get("Responses", {}).get(self.table, []):
                    live[_key_id({k: item[k] for k in key_names})] = encode_item(item)
                pending = response.get("UnprocessedKeys") or {}
                if not pending:
                    break
                time.sleep(min(5.0, 0.05 * (2**attempt)) * random.uniform(0.5, 1.0))
            else:
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

    def _create_table(self, target: str, recorded: dict[str, Any]) -> None:
        billing = recorded.get("billing_mode", "PAY_PER_REQUEST")
        params: dict[str, Any] = {
            "TableName": target,
            "KeySchema": recorded["key_schema"],
            "AttributeDefinitions": recorded["attribute_definitions"],
            "BillingMode": billing,
        }
        throughput = recorded.get("provisioned_throughput")
        if billing == "PROVISIONED":
            params["ProvisionedThroughput"] = throughput
        gsis = []
        for gsi in recorded.get("global_secondary_indexes", []):
            entry = {k: gsi[k] for k in ("IndexName", "KeySchema", "Projection")}
            if billing == "PROVISIONED":
                entry["ProvisionedThroughput"] = gsi.get("ProvisionedThroughput", throughput)
            gsis.append(entry)
        if gsis:
            params["GlobalSecondaryIndexes"] = gsis
        lsis = [
            {k: lsi[k] for k in ("IndexName", "KeySchema", "Projection")}
            for lsi in recorded.get("local_secondary_indexes", [])
        ]
        if lsis:
            params["LocalSecondaryIndexes"] = lsis
        if recorded.get("table_class"):
            params["TableClass"] = recorded["table_class"]
        log.info("creating table %s", target)
        with _errors(f"creating table {target}"):
            self.client.create_table(**params)
            self.client.get_waiter("table_exists").wait(
                TableName=target, WaiterConfig={"Delay": 1, "MaxAttempts": 600}
            )


    # ---------------------------------------------------------------- native jobs

    def native_method(self) -> str | None:
        return self.method if self.method in ("export", "native") else None

    def start_job(self, ctx: JobContext) -> dict[str, Any]:
        described = self.describe()
        if self.method == "export":
            return self._start_export(ctx, described)
        name = backup_name(ctx.dataset, ctx.snapshot_id)
        with _errors(f"creating backup {name} of {self.table}"):
            details = self.client.create_backup(TableName=self.table, BackupName=name)["BackupDetails"]
        arn = details["BackupArn"]
        tagged = self._tag(arn, ctx)
        log.info("started on-demand backup %s of %s", arn, self.table)
        return {"kind": "backup", "backup_arn": arn, "backup_name": name, "tagged": tagged,
                "described": described}

    def _start_export(self, ctx: JobContext, described: dict[str, Any]) -> dict[str, Any]:
        import uuid
        from datetime import UTC

        from ... import layout
        from ...stores.s3 import S3Store

        if not isinstance(ctx.store, S3Store):
            raise SourceError(
                f"dataset {ctx.dataset!r}: method: export writes DynamoDB's export into the store's "
                f"bucket, so the store must be of type s3 (it is {ctx.store.describe()})"
            )
        # A folder per attempt: a failed export's partial files never mix with the next one's.
        folder = (layout.snapshot_prefix(ctx.dataset, ctx.snapshot_id) + EXPORT_FOLDER + "/"
                  + ctx.started_at.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ"))
        prefix = f"{ctx.store.prefix}/{folder}" if ctx.store.prefix else folder
        token = str(uuid.uuid5(uuid.NAMESPACE_URL,
                               f"cloudkeep:{ctx.dataset}:{ctx.snapshot_id}:{ctx.started_at.isoformat()}"))
        with _errors(f"exporting {self.table}", hints=_EXPORT_HINTS):
            desc = self.client.export_table_to_point_in_time(
                TableArn=described["table_arn"], S3Bucket=ctx.store.bucket, S3Prefix=prefix,
                ExportFormat="DYNAMODB_JSON", ClientToken=token,
            )["ExportDescription"]
        log.info("started export %s of %s into s3://%s/%s", desc["ExportArn"], self.table,
                 ctx.store.bucket, prefix)
        return {"kind": "export", "export_arn": desc["ExportArn"], "s3_bucket": ctx.store.bucket,
                "s3_prefix": prefix, "folder": folder, "requested_at": ctx.started_at.isoformat(),
                "described": described}

    def _tag(self, arn: str, ctx: JobContext) -> bool:
        """Tag the backup (cloudkeep:dataset, cloudkeep:snapshot) where DynamoDB allows it; its
        name carries the same two facts either way, and retention matches on both."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.tag_resource(ResourceArn=arn, Tags=[
                {"Key": TAG_DATASET, "Value": ctx.dataset}, {"Key": TAG_SNAPSHOT, "Value": ctx.snapshot_id}])
            return True
        except (ClientError, BotoCoreError) as exc:
            log.info("backup %s not tagged (%s); it is known by its name", arn, exc)
            return False

    def poll_job(self, ctx: JobContext, job: dict[str, Any]) -> JobPoll:
        from .. import JobPoll

        if job["kind"] == "export":
            with _errors(f"reading export {job['export_arn']}"):
                desc = self.client.describe_export(ExportArn=job["export_arn"])["ExportDescription"]
            status = desc.get("ExportStatus")
            if status == "COMPLETED":
                return JobPoll("done", job)
            if status == "FAILED":
                return JobPoll("failed", job, f"export {job['export_arn']} failed: "
                                f"{desc.get('FailureCode')}: {desc.get('FailureMessage')}")
            return JobPoll("running", job, f"export {status}")
        with _errors(f"reading backup {job['backup_arn']}"):
            details = self.client.describe_backup(
                BackupArn=job["backup_arn"])["BackupDescription"]["BackupDetails"]
        status = details.get("BackupStatus")
        if status == "AVAILABLE":
            return JobPoll("done", job)
        if status == "DELETED":
            return JobPoll("failed", job, f"backup {job['backup_arn']} was deleted before it was available")
        return JobPoll("running", job, f"backup {status}")

    def finish_job(self, ctx: JobContext, job: dict[str, Any]) -> NativeOutcome:
        from datetime import UTC, datetime

        from .. import NativeOutcome

        described = dict(job["described"])
        if job["kind"] == "export":
            return self._finish_export(ctx, job, described)
        with _errors(f"reading backup {job['backup_arn']}"):
            desc = self.client.describe_backup(BackupArn=job["backup_arn"])["BackupDescription"]
        details = desc["BackupDetails"]
        created = details.get("BackupCreationDateTime") or ctx.started_at
        if isinstance(created, (int, float)):
            created = datetime.fromtimestamp(created, UTC)
        described |= {"method": "native", "consistency": {"mode": "point-in-time", "time": created}}
        native = {
            "kind": "dynamodb-backup", "backup_arn": details["BackupArn"],
            "backup_name": details.get("BackupName"), "size_bytes": details.get("BackupSizeBytes"),
            "item_count": (desc.get("SourceTableDetails") or {}).get("ItemCount"),
            "tags": {TAG_DATASET: ctx.dataset, TAG_SNAPSHOT: ctx.snapshot_id} if job.get("tagged") else {},
        }
        return NativeOutcome(described=described, native=native)

    def _finish_export(self, ctx: JobContext, job: dict[str, Any], described: dict[str, Any]) -> NativeOutcome:
        import hashlib

        from ... import layout
        from ...codec import HashingReader, PartLimitError, TruncatedPartError, iter_gzip_lines
        from ...manifest import Codec, PartEntry
        from .. import NativeOutcome

        with _errors(f"reading export {job['export_arn']}"):
            desc = self.client.describe_export(ExportArn=job["export_arn"])["ExportDescription"]
        at = desc.get("ExportTime") or desc.get("StartTime") or job["requested_at"]
        snapshot_folder = layout.snapshot_prefix(ctx.dataset, ctx.snapshot_id)
        files = sorted((i.key, i.size) for i in ctx.store.list(job["folder"] + "/")
                       if "/data/" in i.key and not i.key.endswith("/"))
        parts: list[PartEntry] = []
        digest = ContentDigest()
        for index, (key, size) in enumerate(files):
            part_digest = ContentDigest()
            items = raw = 0
            with ctx.store.open(key) as stream:
                # No manifest yet to bound it: the listed size bounds the stored bytes, and a
                # line longer than any item stops the read (memory stays flat either way).
                hashing = HashingReader(stream, limit=size)
                try:
                    for line in iter_gzip_lines(hashing):  # type: ignore[arg-type]
                        raw += len(line) + 1  # every decompressed byte: verify caps at raw_bytes
                        if not line:
                            continue
                        part_digest.add_line(line)
                        items += 1
                    hashing.drain()
                    hashing.check_size()
                except (PartLimitError, TruncatedPartError) as exc:
                    raise SourceError(f"export {job['export_arn']}: data file {key}: {exc}; the "
                                      "snapshot is not committed") from None
            sha = hashing.sha256.hexdigest() if hashing.size else hashlib.sha256(b"").hexdigest()
            parts.append(PartEntry(name=key[len(snapshot_folder):], segment=0, index=index, items=items,
                                   raw_bytes=raw, stored_bytes=hashing.size, sha256=sha))
            digest.merge(part_digest)
        expected = desc.get("ItemCount")
        if expected is not None and int(expected) != digest.count:
            raise SourceError(
                f"export {job['export_arn']} reports {expected} items but its data files hold "
                f"{digest.count}; the snapshot is not committed"
            )
        described |= {"method": "export", "consistency": {"mode": "point-in-time", "time": at}}
        native = {"kind": "dynamodb-export", "export_arn": job["export_arn"],
                  "s3_uri": f"s3://{job['s3_bucket']}/{job['s3_prefix']}", "item_count": expected,
                  "billed_size_bytes": desc.get("BilledSizeBytes")}
        return NativeOutcome(described=described, native=native, parts=parts,
                             codec=Codec(compression="gzip", level=None), content_digest=digest.hexdigest())

    # ------------------------------------------------------- native restore and retention

    def restore_native(self, manifest: Manifest, target: str, *, overwrite: bool) -> dict[str, Any] | None:
        """RestoreTableFromBackup into a new table ``target`` (native snapshots only)."""
        if manifest.method != "native" or not manifest.native:
            return None
        arn = manifest.native["backup_arn"]
        if self._describe(target) is not None:
            raise RestoreError(
                f"table {target!r} exists: RestoreTableFromBackup creates the table itself, so a "
                "native snapshot restores only into a new table name"
                + (" (--overwrite cannot apply)" if overwrite else "")
            )
        with _errors(f"restoring backup {arn} into {target}"):
            self.client.restore_table_from_backup(TargetTableName=target, BackupArn=arn)
            self.client.get_waiter("table_exists").wait(
                TableName=target, WaiterConfig={"Delay": 5, "MaxAttempts": 720})
        items, _ = DynamoDBSource(target, self.region, client=self.client).scan_digest(target)
        return {"items": items, "via": f"RestoreTableFromBackup {arn}"}

    def check_native(self, manifest: Manifest) -> list[str]:
        """Problems with what a native snapshot recorded (its backup gone or not available)."""
        if not manifest.native or manifest.native.get("kind") != "dynamodb-backup":
            return []
        from botocore.exceptions import ClientError

        arn = manifest.native["backup_arn"]
        try:
            with _errors(f"reading backup {arn}", passthrough={"BackupNotFoundException"}):
                details = self.client.describe_backup(BackupArn=arn)["BackupDescription"]["BackupDetails"]
        except ClientError:
            return [f"backup {arn} no longer exists"]
        status = details.get("BackupStatus")
        return [] if status == "AVAILABLE" else [f"backup {arn} is {status}"]

    def delete_native(self, dataset: str, snapshot_id: str, native: dict[str, Any]) -> list[str]:
        """Delete the backup a pruned snapshot recorded — only if its name says cloudkeep made it
        for this very snapshot."""
        if native.get("kind") != "dynamodb-backup":
            return []
        arn, name = native["backup_arn"], native.get("backup_name")
        if name != backup_name(dataset, snapshot_id):
            log.warning("not deleting backup %s: its name %r is not cloudkeep's for %s@%s", arn, name,
                        dataset, snapshot_id)
            return []
        return [arn] if self._delete_backup(arn) else []

    def sweep_native(self, dataset: str, keep: set[str], older_than: datetime) -> list[str]:
        """Delete cloudkeep's backups of ``dataset`` (known by name) whose snapshot is neither
        committed nor pending (``keep``) and that were made before ``older_than``."""
        from ... import layout

        head = f"cloudkeep-{dataset}-"
        deleted = []
        params: dict[str, Any] = {"TableName": self.table, "BackupType": "USER"}
        while True:
            with _errors(f"listing backups of {self.table}"):
                page = self.client.list_backups(**params)
            for summary in page.get("BackupSummaries", []):
                name = summary.get("BackupName", "")
                sid = name[len(head):] if name.startswith(head) else ""
                created = summary.get("BackupCreationDateTime")
                if (not layout.SNAPSHOT_ID_RE.match(sid) or sid in keep or created is None
                        or created >= older_than):
                    continue
                if self._delete_backup(summary["BackupArn"]):
                    deleted.append(summary["BackupArn"])
            last = page.get("LastEvaluatedBackupArn")
            if not last:
                return deleted
            params["ExclusiveStartBackupArn"] = last

    def _delete_backup(self, arn: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            with _errors(f"deleting backup {arn}", passthrough={"BackupNotFoundException"}):
                self.client.delete_backup(BackupArn=arn)
        except ClientError:
            return False
        log.info("deleted backup %s", arn)
        return True


EXPORT_FOLDER = "export"
TAG_DATASET = "cloudkeep:dataset"
TAG_SNAPSHOT = "cloudkeep:snapshot"
_EXPORT_HINTS = {
    "PointInTimeRecoveryUnavailableException":
        "method: export needs point-in-time recovery on the table "
        "(aws dynamodb update-continuous-backups --point-in-time-recovery-specification "
        "PointInTimeRecoveryEnabled=true)",
}


def backup_name(dataset: str, snapshot_id: str) -> str:
    """The name of the on-demand backup cloudkeep makes for a snapshot (DynamoDB allows
    [a-zA-Z0-9_.-], up to 255 characters — a dataset name and a snapshot id fit)."""
    return f"cloudkeep-{dataset}-{snapshot_id}"


def _schema_of(table: dict[str, Any]) -> dict[str, Any]:
    billing = (table.get("BillingModeSummary") or {}).get("BillingMode", "PROVISIONED")
    pt = table.get("ProvisionedThroughput") or {}
    out: dict[str, Any] = {
        "table": table["TableName"],
        "table_arn": table.get("TableArn"),
        "key_schema": table["KeySchema"],
        "attribute_definitions": table["AttributeDefinitions"],
        "billing_mode": billing,
        "item_count_estimate": table.get("ItemCount"),
        "table_size_bytes": table.get("TableSizeBytes"),
    }
    if billing == "PROVISIONED":
        out["provisioned_throughput"] = {
            "ReadCapacityUnits": int(pt.get("ReadCapacityUnits") or 1),
            "WriteCapacityUnits": int(pt.get("WriteCapacityUnits") or 1),
        }
    gsis = []
    for gsi in table.get("GlobalSecondaryIndexes", []):
        entry = {k: gsi[k] for k in ("IndexName", "KeySchema", "Projection")}
        if billing == "PROVISIONED":
            gpt = gsi.get("ProvisionedThroughput") or {}
            entry["ProvisionedThroughput"] = {
                "ReadCapacityUnits": int(gpt.get("ReadCapacityUnits") or 1),
                "WriteCapacityUnits": int(gpt.get("WriteCapacityUnits") or 1),
            }
        gsis.append(entry)
    if gsis:
        out["global_secondary_indexes"] = gsis
    lsis = [
        {k: lsi[k] for k in ("IndexName", "KeySchema", "Projection")}
        for lsi in table.get("LocalSecondaryIndexes", [])
    ]
    if lsis:
        out["local_secondary_indexes"] = lsis
    table_class = (table.get("TableClassSummary") or {}).get("TableClass")
    if table_class:
        out["table_class"] = table_class
    return out


def _key_signature(schema: dict[str, Any]) -> str:
    types = {a["AttributeName"]: a["AttributeType"] for a in schema["attribute_definitions"]}
    keys = sorted(schema["key_schema"], key=lambda k: k["KeyType"])  # HASH before RANGE
    return ", ".join(f"{k['AttributeName']} {types.get(k['AttributeName'], '?')} {k['KeyType']}" for k in keys)


def _key_id(key: dict[str, Any]) -> str:
    """A hashable form of a key (parsed or raw attribute values alike)."""
    return json.dumps({k: {t: (_b64(v) if isinstance(v, (bytes, bytearray)) else v)
                           for t, v in value.items()} for k, value in key.items()}, sort_keys=True)


class DynamoDBWriter:
    """Writes items with BatchWriteItem, retrying unprocessed items with jittered backoff."""

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

    def _batch(self, requests: list[dict[str, Any]]) -> None:
        pending = {self.target: requests}
        for attempt in range(MAX_UNPROCESSED_ATTEMPTS):
            with _errors(f"writing to {self.target}"):
                resp = self.client.batch_write_item(RequestItems=pending)
            pending = resp.get("UnprocessedItems") or {}
            if not pending:
                return
            time.sleep(min(5.0, 0.05 * (2**attempt)) * random.uniform(0.5, 1.0))
        left = sum(len(v) for v in pending.values())
        raise SourceError(
            f"DynamoDB kept {left} item(s) unprocessed after {MAX_UNPROCESSED_ATTEMPTS} attempts "
            f"writing to {self.target} (throttled?); the restore is incomplete"
        )


class _errors(AwsErrors):
    """Maps botocore exceptions to cloudkeep errors, in one place for this adapter."""

    SERVICE = "DynamoDB"
    UNREACHABLE = frozenset(_UNREACHABLE_CODES)
