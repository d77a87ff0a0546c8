"""The change log's core over the in-memory store: the stream-record converter, the segment
format, exactly-once ingest, gaps (issue #21)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cloudkeep import layout
from cloudkeep.changelog import Change, ingest, list_gaps, record_gap
from cloudkeep.changelog.dynamodb import StreamRecordError, from_stream_record
from cloudkeep.changelog.format import decode_change, encode_change
from cloudkeep.clock import SimulatedClock
from cloudkeep.policy import parse_policy
from cloudkeep.sources.dynamodb.codec import encode_item
from cloudkeep.stores.memory import MemoryStore

T0 = datetime(2026, 12, 7, 12, 0, 0, tzinfo=UTC)
RECORDED = {"type": "dynamodb", "key_schema": [{"AttributeName": "pk", "KeyType": "HASH"},
                                               {"AttributeName": "sk", "KeyType": "RANGE"}]}
POLICY = """
version: 1
stores: {mem: {type: file, path: /unused}}
tiers: {t: {schedule: "0 * * * *", rpo: 2h, retention: {last: 3}}}
datasets:
  a: {source: {type: dynamodb, table: aaa, region: us-east-1}, tier: t, store: mem}
"""


def record(name: str, seq: int, pk: str, *, value: str = "v", when: Any = None,
           binary: Any = "AAE=") -> dict[str, Any]:
    body: dict[str, Any] = {
        "ApproximateCreationDateTime": when if when is not None else (T0 + timedelta(seconds=seq)).timestamp(),
        "Keys": {"pk": {"S": pk}, "sk": {"N": "1.50"}}, "SequenceNumber": str(seq),
        "StreamViewType": "NEW_AND_OLD_IMAGES"}
    if name != "REMOVE":
        body["NewImage"] = {"pk": {"S": pk}, "sk": {"N": "1.50"}, "v": {"S": value},
                            "b": {"B": binary}, "ss": {"SS": ["z", "a"]}}
    return {"eventName": name, "eventSourceARN": "arn:aws:dynamodb:us-east-1:1:table/t/stream/s",
            "dynamodb": body}


def test_a_stream_record_becomes_the_snapshot_line_and_a_normalised_key() -> None:
    lam = from_stream_record(record("MODIFY", 7, "a"), RECORDED)
    # GetRecords: binary as bytes, the time as a datetime — the same change
    raw = record("MODIFY", 7, "a", when=T0 + timedelta(seconds=7), binary=b"\x00\x01")
    api = from_stream_record(raw, RECORDED, shard="arn:aws:dynamodb:us-east-1:1:table/t/stream/s")
    assert lam == api
    assert lam.key == {"pk": {"S": "a"}, "sk": {"N": "1.5"}}
    assert lam.event == "modify" and lam.time == T0 + timedelta(seconds=7)
    assert lam.sequence == "7".rjust(40, "0")
    assert lam.line == encode_item({"pk": {"S": "a"}, "sk": {"N": "1.50"}, "v": {"S": "v"},
                                    "b": {"B": b"\x00\x01"}, "ss": {"SS": ["a", "z"]}})
    assert json.loads(lam.line)["Item"]["ss"] == {"SS": ["a", "z"]}
    removed = from_stream_record(record("REMOVE", 8, "a"), RECORDED)
    assert removed.event == "remove" and removed.line is None


@pytest.mark.parametrize("bad, message", [
    ({"eventName": "INSERT"}, "no 'dynamodb' body"),
    ({"eventName": "OOPS", "dynamodb": {}}, "unknown eventName"),
    ({"eventName": "INSERT", "dynamodb": {"Keys": {"pk": {"S": "a"}}, "SequenceNumber": "1",
                                          "ApproximateCreationDateTime": 1, "StreamViewType": "KEYS_ONLY"}},
     "NEW_IMAGE or NEW_AND_OLD_IMAGES"),
    ({"eventName": "REMOVE", "dynamodb": {"Keys": {"pk": {"S": "a"}}, "SequenceNumber": "x1"}},
     "not a numeric sequence"),
])
def test_a_bad_stream_record_says_what_is_wrong(bad: dict[str, Any], message: str) -> None:
    with pytest.raises(StreamRecordError, match=message):
        from_stream_record(bad, RECORDED)


def test_a_change_line_round_trips_with_the_item_bytes_unchanged() -> None:
    change = from_stream_record(record("INSERT", 3, "ü"), RECORDED)
    line = encode_change(change)
    assert change.line is not None and change.line in line
    assert decode_change(line) == change
    with pytest.raises(ValueError):
        decode_change(line.replace(b'"event":"insert"', b'"event":"remove"'))
    with pytest.raises(ValueError):
        decode_change(b'{"event":"insert"}')


def test_ingest_is_exactly_once_and_create_only() -> None:
    policy = parse_policy(POLICY)
    store = MemoryStore()
    batch = [from_stream_record(record("INSERT", n, f"k{n}"), RECORDED) for n in range(1, 6)]
    clock = SimulatedClock(T0 + timedelta(seconds=30))
    first = ingest(policy, "a", batch, clock=clock, store=store)
    assert (first.changes, first.written, first.duplicates, first.segments) == (5, 5, 0, 1)
    assert first.lag is not None and timedelta(seconds=24) < first.lag < timedelta(seconds=27)
    keys = sorted(i.key for i in store.list(""))
    again = ingest(policy, "a", list(reversed(batch)), clock=clock, store=store)  # redelivered
    assert (again.written, again.duplicates, again.segments) == (0, 5, 0)
    assert sorted(i.key for i in store.list("")) == keys
    assert len([k for k in keys if k.startswith(layout.changelog_index_prefix("a"))]) == 1


def test_gaps_are_recorded_once_and_alerted() -> None:
    policy = parse_policy(POLICY)
    store = MemoryStore()
    for _ in range(2):
        record_gap(policy, "a", start=T0, end=None, reason="expired iterator", store=store)
    gaps = list_gaps(store, "a")
    assert len(gaps) == 1 and gaps[0].start == T0 and gaps[0].end is None
    states = [i.key for i in store.list(layout.alert_states_prefix("a"))]
    assert states, "the capture_gap alert is raised"
    state = json.loads(store.get(states[-1]))
    assert [a["kind"] for a in state["open"]] == ["capture_gap"]


def test_change_rejects_inconsistent_values() -> None:
    with pytest.raises(ValueError):
        Change(key={"pk": 1}, event="remove", time=T0, shard="s", sequence="1", line=b"{}")
    with pytest.raises(ValueError):
        Change(key={"pk": 1}, event="insert", time=T0.replace(tzinfo=None), shard="s",
               sequence="1", line=b"{}")
