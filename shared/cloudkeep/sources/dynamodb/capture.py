"""Reading a table's DynamoDB stream for ``cloudkeep capture`` (DescribeStream,
GetShardIterator, GetRecords), shard lineage first: a shard is read only once its parent is
read to its end, so an item's changes keep their order when the stream splits a shard.

The position (kept by the core, opaque to it) is ``{"stream": ARN, "time": ..., "shards": {id:
{"after": sequence, "done": bool, "time": last change}}}``. What the stream no longer holds — a
position older than its 24 hours (TrimmedDataAccessException), a shard trimmed before it was read
to its end, a stream replaced by a new one — is reported as a gap, never skipped silently.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

from ... import extras
from ...changes import Change, ChangeBatch, StreamGap, utc
from ...clouds.aws import client_config
from ...errors import SourceError
from .errors import _errors
from .stream import from_stream_record

log = logging.getLogger(__name__)

RECORDS_PER_CALL = 1000
STREAM_RETENTION = timedelta(hours=24)
_GONE = {"TrimmedDataAccessException", "ResourceNotFoundException", "ValidationException"}
_EXPIRED = "ExpiredIteratorException"


def _code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code") or "") or None
    return None


def streams_client(region: str, dynamodb_client: Any) -> Any:
    """A DynamoDB Streams client; where DynamoDB is reached at another endpoint (DynamoDB Local),
    the streams are read there too (``$AWS_ENDPOINT_URL_DYNAMODB_STREAMS`` wins)."""
    with extras.translated():
        import botocore.session

    endpoint = os.environ.get("AWS_ENDPOINT_URL_DYNAMODB_STREAMS")
    if not endpoint:
        used = str(getattr(dynamodb_client.meta, "endpoint_url", "") or "")
        endpoint = used if used and "amazonaws.com" not in used else None
    return botocore.session.get_session().create_client(
        "dynamodbstreams", region_name=region, endpoint_url=endpoint, config=client_config())


def _lineage(shards: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Shards ordered parents first (a parent the stream no longer lists counts as read)."""
    by_id = {s["ShardId"]: s for s in shards}
    out: list[dict[str, Any]] = []
    placed: set[str] = set()

    def place(shard: dict[str, Any], depth: int = 0) -> None:
        if shard["ShardId"] in placed or depth > len(by_id):
            return
        parent = by_id.get(shard.get("ParentShardId") or "")
        if parent is not None:
            place(parent, depth + 1)
        placed.add(shard["ShardId"])
        out.append(shard)

    for shard in sorted(shards, key=lambda s: s["ShardId"]):
        place(shard)
    return out


class StreamReader:
    """One capture run over a table's stream (``read``); see the module docstring."""

    def __init__(self, table: str, region: str, client: Any, recorded: dict[str, Any]) -> None:
        self.table = table
        self.region = region
        self.client = client
        self.recorded = recorded
        self._streams: Any = None
        self._floor: datetime | None = None

    @property
    def streams(self) -> Any:
        if self._streams is None:
            self._streams = streams_client(self.region, self.client)
        return self._streams

    def stream_arn(self) -> str:
        with _errors(f"describing {self.table}"):
            table = self.client.describe_table(TableName=self.table)["Table"]
        spec = table.get("StreamSpecification") or {}
        arn = table.get("LatestStreamArn")
        view = spec.get("StreamViewType")
        if not spec.get("StreamEnabled") or not arn:
            raise SourceError(f"table {self.table} has no stream: continuous capture needs a "
                              "stream with NEW_AND_OLD_IMAGES (aws dynamodb update-table "
                              "--stream-specification StreamEnabled=true,"
                              "StreamViewType=NEW_AND_OLD_IMAGES)")
        if view not in ("NEW_IMAGE", "NEW_AND_OLD_IMAGES"):
            raise SourceError(f"table {self.table}'s stream has view type {view}: continuous "
                              "capture needs NEW_AND_OLD_IMAGES (or NEW_IMAGE)")
        return str(arn)

    def _describe(self, arn: str) -> tuple[list[dict[str, Any]], datetime | None]:
        shards: list[dict[str, Any]] = []
        start: str | None = None
        created: datetime | None = None
        while True:
            args: dict[str, Any] = {"StreamArn": arn}
            if start:
                args["ExclusiveStartShardId"] = start
            with _errors(f"describing the stream of {self.table}"):
                desc = self.streams.describe_stream(**args)["StreamDescription"]
            if isinstance(desc.get("CreationRequestDateTime"), datetime):
                created = utc(desc["CreationRequestDateTime"])
            shards += desc.get("Shards", [])
            start = desc.get("LastEvaluatedShardId")
            if not start:
                return shards, created

    def _iterator(self, arn: str, shard: str, after: str | None) -> str | None:
        args: dict[str, Any] = {"StreamArn": arn, "ShardId": shard}
        if after:
            args |= {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": after}
        else:
            args["ShardIteratorType"] = "TRIM_HORIZON"
        with _errors(f"reading shard {shard} of {self.table}'s stream", passthrough=_GONE):
            found: str | None = self.streams.get_shard_iterator(**args).get("ShardIterator")
            return found

    def read(self, position: dict[str, Any] | None, *, now: Callable[[], datetime],
             deadline: float | None) -> Iterator[ChangeBatch]:
        arn = self.stream_arn()
        state: dict[str, Any] = copy.deepcopy(position) if position else {}
        gaps: list[StreamGap] = []
        since: datetime | None = None
        shards, created = self._describe(arn)
        started = now()
        if state.get("stream") != arn:
            if state.get("stream"):
                last = _time_of(state.get("time")) or started
                gaps.append(StreamGap(last, None, f"the table's stream changed ({state['stream']} "
                                      f"→ {arn}): changes between were not captured"))
            state = {"stream": arn, "shards": {}}
            since = max(created or started - STREAM_RETENTION, started - STREAM_RETENTION)
        # A record first returned now was not there when the last read drained the stream, so
        # it is no older than that read (DynamoDB Local stamps records to the minute, DynamoDB
        # to the second: this bounds a change's time more closely).
        self._floor = _time_of(state.get("drained_at"))
        marks: dict[str, Any] = state.setdefault("shards", {})
        listed = {s["ShardId"] for s in shards}
        for sid, mark in list(marks.items()):
            if sid not in listed:
                if not mark.get("done"):
                    gaps.append(StreamGap(_time_of(mark.get("time")) or started, None,
                                          f"shard {sid} was trimmed before it was read to its end"))
                del marks[sid]  # read (or lost): nothing more to remember
        for shard in _lineage(shards):
            sid = shard["ShardId"]
            mark = marks.setdefault(sid, {"after": None, "done": False, "time": None})
            if mark.get("done"):
                continue
            parent = shard.get("ParentShardId")
            if parent in marks and not marks[parent].get("done"):
                continue  # cannot happen in lineage order unless the parent stopped early
            for batch in self._read_shard(arn, sid, mark, state, gaps, started, deadline):
                yield batch
                gaps = []
            if deadline is not None and time.monotonic() > deadline and not mark.get("done"):
                yield ChangeBatch([], copy.deepcopy(state), gaps, since=since)
                return
        state["drained_at"] = started.isoformat()
        yield ChangeBatch([], copy.deepcopy(state), gaps, caught_up=started, since=since)

    def _read_shard(self, arn: str, sid: str, mark: dict[str, Any], state: dict[str, Any],
                    gaps: list[StreamGap], started: datetime,
                    deadline: float | None = None) -> Iterator[ChangeBatch]:
        iterator = self._open(arn, sid, mark, gaps, started)
        while iterator:
            try:
                with _errors(f"reading shard {sid} of {self.table}'s stream",
                             passthrough={"TrimmedDataAccessException", _EXPIRED}):
                    page = self.streams.get_records(ShardIterator=iterator, Limit=RECORDS_PER_CALL)
            except Exception as exc:
                code = _code(exc)
                if code == _EXPIRED:
                    iterator = self._open(arn, sid, mark, gaps, started)
                    continue
                if code == "TrimmedDataAccessException":
                    gaps.append(StreamGap(_time_of(mark.get("time")) or started, None,
                                          f"shard {sid}: {code}: the position is older than the "
                                          "stream keeps (24 hours)"))
                    mark["after"] = None
                    iterator = self._iterator(arn, sid, None)
                    continue
                raise
            records = page.get("Records", [])
            changes: list[Change] = [self._bounded(from_stream_record(r, self.recorded, shard=sid))
                                     for r in records]
            iterator = page.get("NextShardIterator")
            if records:
                mark["after"] = str(records[-1]["dynamodb"]["SequenceNumber"])
                mark["time"] = changes[-1].time.isoformat()
                state["time"] = mark["time"]
            if iterator is None:
                mark["done"] = True
            if records or iterator is None or gaps:
                yield ChangeBatch(changes, copy.deepcopy(state), list(gaps))
                gaps.clear()
            if not records or (deadline is not None and time.monotonic() > deadline):
                return

    def _bounded(self, change: Change) -> Change:
        if self._floor is None or change.time >= self._floor:
            return change
        return dataclasses.replace(change, time=self._floor)

    def _open(self, arn: str, sid: str, mark: dict[str, Any], gaps: list[StreamGap],
              started: datetime) -> str | None:
        try:
            return self._iterator(arn, sid, mark.get("after"))
        except Exception as exc:
            code = _code(exc)
            if code not in _GONE or (code == "ValidationException"
                                     and "SequenceNumber" not in str(exc)):
                raise
            if code == "ResourceNotFoundException":
                raise SourceError(f"the stream of {self.table} or its shard {sid} is gone: "
                                  f"{exc}") from None
            gaps.append(StreamGap(_time_of(mark.get("time")) or started, None,
                                  f"shard {sid}: {code}: the recorded position is older than the "
                                  "stream keeps (24 hours)"))
            mark["after"] = None
            return self._iterator(arn, sid, None)


def _time_of(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return utc(datetime.fromisoformat(text))
    except ValueError:
        return None
