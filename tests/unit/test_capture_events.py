"""Pure parts of event-driven capture: parsing S3 notifications, Firestore event times and
names, Cosmos DB trigger documents, stream ARNs, and which items a dataset captures."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cloudkeep.sources.cosmos.events import BadDocumentError
from cloudkeep.sources.cosmos.events import to_change as cosmos_change
from cloudkeep.sources.cosmos.spec import CosmosSourceSpec
from cloudkeep.sources.dynamodb.events import stream_origin
from cloudkeep.sources.dynamodb.spec import DynamoDBSourceSpec
from cloudkeep.sources.firestore.events import parse_event_time, split_name
from cloudkeep.sources.firestore.spec import FirestoreSourceSpec
from cloudkeep.sources.s3.events import BadEventError, parse_events
from cloudkeep.sources.s3.spec import S3SourceSpec


def s3_record(name: str, key: str, sequencer: str = "0A1B", version: str | None = "v1") -> dict:
    obj = {"key": key, "sequencer": sequencer, **({"versionId": version} if version else {})}
    return {"eventName": name, "eventTime": "2026-12-07T10:00:00.123Z",
            "s3": {"bucket": {"name": "b"}, "object": obj}}


def test_s3_notifications_are_parsed_url_decoded_and_ordered_per_key() -> None:
    events = list(parse_events({"Records": [
        s3_record("ObjectCreated:Put", "caf%C3%A9+%E2%98%95.png", "0A"),
        s3_record("ObjectRemoved:DeleteMarkerCreated", "a%2Bb", "0B"),
        s3_record("ObjectRestore:Completed", "x"),  # not a new version: ignored
    ]}))
    assert [(e.key, e.created, e.marker) for e in events] == [("caf\u00e9 \u2615.png", True, False),
                                                             ("a+b", False, True)]
    assert events[0].time == datetime(2026, 12, 7, 10, 0, 0, 123000, tzinfo=UTC)
    later = next(parse_events({"Records": [s3_record("ObjectCreated:Put", "k", "100")]}))
    earlier = next(parse_events({"Records": [s3_record("ObjectCreated:Put", "k", "FF")]}))
    assert earlier.sequence < later.sequence  # hex sequencers of one key, left-padded (as S3 says), sort as text
    assert list(parse_events({"Event": "s3:TestEvent"})) == []


@pytest.mark.parametrize(("event", "message"), [
    ({"hello": 1}, "no Records"),
    ({"Records": [s3_record("ObjectCreated:Put", "k", "zz")]}, "sequencer"),
    ({"Records": [s3_record("ObjectCreated:Put", "")]}, "no object key"),
    ({"Records": [s3_record("ObjectCreated:Put", "k" * 1025)]}, "1,024"),
    ({"Records": [{"eventName": "ObjectCreated:Put", "eventTime": "yesterday",
                   "s3": {"bucket": {"name": "b"}, "object": {"key": "k", "sequencer": "1"}}}]},
     "event time"),
    ({"detail-type": "Object Tagged", "detail": {}}, "not an S3 object event"),
])
def test_bad_s3_notifications_say_why(event: dict, message: str) -> None:
    with pytest.raises(BadEventError, match=message):
        list(parse_events(event))


def test_firestore_event_times_and_names() -> None:
    assert parse_event_time("2026-12-07T10:00:00.123456789Z") == (1796637600, 123456789)
    assert parse_event_time("2026-12-07T11:00:00+01:00") == (1796637600, 0)
    with pytest.raises(ValueError):
        parse_event_time("2026-12-07 10:00")
    assert split_name("projects/p/databases/(default)/documents/users/a/orders/o1") == (
        "projects/p/databases/(default)", "users/a/orders/o1")
    with pytest.raises(ValueError):
        split_name("users/a")


def test_cosmos_trigger_documents() -> None:
    doc = {"id": "c1", "tenant": "t", "n": 1, "_ts": 1796637600, "_lsn": 42, "_etag": "e", "_rid": "r"}
    change = cosmos_change(doc, ["/tenant"])
    assert change.partition_key == ["t"] and b"_lsn" not in change.line
    assert change.sequence.startswith("001796637600-00000000000000000042-")
    assert cosmos_change(dict(doc, _lsn=43), ["/tenant"]).sequence > change.sequence
    for bad, message in (({"id": 1}, "string id"), ({"id": "x"}, "_ts"),
                         ({"id": "x", "_ts": 1, "_lsn": -1}, "_lsn"), ("{", "not JSON")):
        with pytest.raises(BadDocumentError, match=message):
            cosmos_change(bad, ["/tenant"])


def test_origins_and_captured_keys() -> None:
    arn = "arn:aws:dynamodb:eu-west-1:123456789012:table/orders/stream/2026-01-01T00:00:00.000"
    assert stream_origin(arn) == "dynamodb:orders"
    assert stream_origin("arn:aws:sqs:eu-west-1:123456789012:q") is None
    assert DynamoDBSourceSpec(type="dynamodb", table="orders", region="eu-west-1").event_origin() == "dynamodb:orders"
    fs = FirestoreSourceSpec(type="firestore", project="p", collections=["users"], recursive=False)
    assert fs.event_origin() == "firestore:projects/p/databases/(default)"
    assert fs.captures_key("users/a") and not fs.captures_key("users/a/orders/o1")
    assert not fs.captures_key("other/a") and not fs.captures_key("users")
    assert not FirestoreSourceSpec(type="firestore", project="p").captures_key("cloudkeep_drill_x_/a")
    s3 = S3SourceSpec(type="s3", bucket="bkt", region="eu-west-1", prefix="data/", exclude=["*.tmp"])
    assert s3.event_origin() == "s3:bkt"
    assert s3.captures_key("data/a.csv") and not s3.captures_key("data/a.tmp")
    assert not s3.captures_key("logs/a.csv")
    cosmos = CosmosSourceSpec(type="cosmos", endpoint="https://a.documents.azure.com", database="d",
                              container="c")
    assert cosmos.event_origin() == "cosmos:d/c"
