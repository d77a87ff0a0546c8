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


# ------------------------------------------------------------------ window, replay, prune


from cloudkeep.changelog import positions  # noqa: E402
from cloudkeep.changelog import prune as log_prune  # noqa: E402
from cloudkeep.changelog.gaps import Gap  # noqa: E402
from cloudkeep.changelog.reader import LogError, changes_between, entries  # noqa: E402
from cloudkeep.changelog.replay import Replay  # noqa: E402
from cloudkeep.changelog.window import ClosedGap, Window  # noqa: E402
from cloudkeep.retention import Decision, SnapshotInfo  # noqa: E402
from cloudkeep.timeline import Captured  # noqa: E402


def change(n: int, pk: str, *, at: datetime, event: str = "MODIFY", value: str = "v") -> Change:
    return from_stream_record(record(event, n, pk, value=value, when=at.timestamp()), RECORDED,
                              shard="shard-1")


def test_the_window_locates_a_base_and_refuses_gaps_and_outside_moments() -> None:
    bases = [Captured("20261207T100000Z-aaaa", T0), Captured("20261207T140000Z-bbbb", T0 + timedelta(hours=4))]
    gap = Gap(T0 + timedelta(hours=2), None, "expired iterator", "", "k")
    win = Window("a", since=T0 - timedelta(hours=1), complete_until=T0 + timedelta(hours=6),
                 bases=bases, gaps=[ClosedGap(gap, T0 + timedelta(hours=4), bases[1].snapshot_id)])
    assert win.locate(T0 + timedelta(hours=1))[0] == bases[0]
    base, why = win.locate(T0 + timedelta(hours=3))
    assert base is None and why is not None and "inside a gap" in why and "expired iterator" in why
    assert win.locate(T0 + timedelta(hours=5))[0] == bases[1]  # the snapshot closed the gap
    base, why = win.locate(T0 - timedelta(minutes=1))
    assert base is None and why is not None and "before the start" in why
    base, why = win.locate(T0 + timedelta(hours=7))
    assert base is None and why is not None and "after the end" in why
    open_gap = Window("a", since=T0, complete_until=T0 + timedelta(hours=6), bases=bases[:1],
                      gaps=[ClosedGap(gap, None, None)])
    base, why = open_gap.locate(T0 + timedelta(hours=5))
    assert base is None and why is not None and "still open" in why


def test_replay_keeps_each_items_last_change_however_batches_arrive() -> None:
    policy = parse_policy(POLICY)
    store = MemoryStore()
    a1 = change(1, "a", at=T0 + timedelta(seconds=1), value="1")
    b2 = change(2, "b", at=T0 + timedelta(seconds=2), event="INSERT")
    a3 = change(3, "a", at=T0 + timedelta(seconds=3), value="3")
    b4 = change(4, "b", at=T0 + timedelta(seconds=4), event="REMOVE")
    a5 = change(5, "a", at=T0 + timedelta(seconds=5), value="5")
    # delivered out of order, overlapping and twice (a bisected, retried Lambda batch)
    for batch in ([a3, b4, a5], [a1, b2], [a1, b2, a3], [a3, b4, a5]):
        ingest(policy, "a", batch, store=store)
    replay = Replay(store, "a", T0, T0 + timedelta(seconds=4), keyring=None, recorded=RECORDED)
    final = {json.dumps(c.key, sort_keys=True): c for _, c in replay.final.values()}
    assert final[json.dumps(a3.key, sort_keys=True)].line == a3.line
    assert final[json.dumps(b4.key, sort_keys=True)].event == "remove"
    assert list(replay.lines()) == [a3.line]
    later = Replay(store, "a", T0, T0 + timedelta(seconds=9), keyring=None, recorded=RECORDED)
    assert list(later.lines()) == [a5.line]
    # a key the index proves absent is not read at all; a forged entry is refused loudly
    assert [c.sequence for c in changes_between(store, "a", T0, T0 + timedelta(minutes=1),
                                                key=a1.key)] != []
    entry = entries(store, "a")[0]
    forged = json.loads(store.get(entry.key))
    forged["changes"] -= 1
    store.objects[entry.key] = (json.dumps(forged).encode(), store.objects[entry.key][1])
    with pytest.raises(LogError):
        list(changes_between(store, "a", T0, T0 + timedelta(minutes=1)))


def test_prune_keeps_the_windows_base_and_removes_the_log_it_no_longer_needs() -> None:
    policy = parse_policy(POLICY.replace("retention: {last: 3}}}",
                                         "retention: {last: 3}, continuous: {window: 2h}}}"))
    infos = [SnapshotInfo("s1", T0), SnapshotInfo("s2", T0 + timedelta(hours=3)),
             SnapshotInfo("s3", T0 + timedelta(hours=5))]
    decision = Decision(keep=["s3", "s2"], remove=["s1"], reasons={})
    now = T0 + timedelta(hours=6)
    assert log_prune.keep_base(policy, "a", decision, infos, now).remove == ["s1"]
    kept = log_prune.keep_base(policy, "a", Decision(keep=["s3"], remove=["s2", "s1"], reasons={}),
                               infos, now)
    assert kept.keep == ["s3", "s2"] and kept.remove == ["s1"]  # s2: the base at now - 2h
    assert "continuous" in kept.reasons["s2"][0]

    store = MemoryStore()
    old = [change(1, "a", at=T0 + timedelta(minutes=10))]
    new = [change(2, "a", at=T0 + timedelta(hours=4))]
    ingest(policy, "a", old, store=store)
    ingest(policy, "a", new, store=store)
    positions.append(store, "a", positions.Position("s", None, T0, now), now)
    positions.append(store, "a", positions.Position("s", None, T0, now, 0), now)
    stale = layout.changelog_segment_key("a", T0, "orphan", 0)
    store.objects[stale] = (b"x", datetime.now(UTC) - timedelta(days=2))
    fresh = layout.changelog_segment_key("a", T0, "orphan2", 0)
    store.objects[fresh] = (b"x", datetime.now(UTC))
    counts = log_prune.collect(store, "a", [i for i in infos if i.id in kept.keep], now)
    assert counts["changelog_entries"] == 1 and counts["changelog_segments"] == 2
    assert [e.first_time for e in entries(store, "a")] == [new[0].time]
    assert fresh in store.objects and stale not in store.objects


def test_a_segment_left_by_a_crash_before_its_entry_is_not_reused() -> None:
    policy = parse_policy(POLICY)
    store = MemoryStore()
    batch = [change(1, "a", at=T0), change(2, "b", at=T0)]
    name = layout.changelog_entry_name(T0, "shard-1", batch[0].sequence, batch[1].sequence)
    crashed = layout.changelog_segment_key("a", T0, name, 0)
    store.put(crashed, b"half-written", if_absent=True)
    done = ingest(policy, "a", batch, store=store)
    assert done.written == 2
    [entry] = entries(store, "a")
    assert entry.segment == layout.changelog_segment_key("a", T0, name, 1)
    assert store.get(crashed) == b"half-written"  # never overwritten (prune removes it later)
    assert [c.sequence for c in changes_between(store, "a", T0, T0)] == [c.sequence for c in batch]


def test_bad_input_is_one_line_and_exit_2(tmp_path: Any, capsys: Any) -> None:
    from helpers import cli

    path = tmp_path / "cloudkeep.yaml"
    path.write_text(POLICY.replace("/unused", str(tmp_path / "vault")).replace(
        "tier: t, store: mem}", "tier: t, store: mem}\n  c: {source: {type: dynamodb, table: ccc, "
        "region: us-east-1}, tier: t, store: mem, continuous: true}"))
    policy = str(path)
    for args, needle in [
        (["capture", "a", "--once"], "not captured continuously"),
        (["capture", "c", "--budget", "soon"], "--budget"),
        (["restore", "c", "--at", "yesterday", "--into", "x1"], "not an ISO 8601 time"),
        (["restore", "c", "--at", "2026-12-07T10:00:00Z", "--into", "x1"], "no change log yet"),
        (["restore", "c@latest", "--at", "2026-12-07T10:00:00Z", "--into", "x1"], "DATASET"),
        (["history", "c", "--key", "{nope"], "--key"),
        (["verify", "--log", "c", "--latest", "c"], "takes no snapshot"),
    ]:
        code, out, err = cli(capsys, "--policy", policy, *args)
        assert code == 2, (args, out, err)
        assert needle in err and "Traceback" not in err, (args, err)


def test_an_event_driven_producer_marks_its_log_complete(monkeypatch: Any) -> None:
    from cloudkeep.changelog import mark_complete
    from cloudkeep.changelog.window import compute

    policy = parse_policy(POLICY)
    store = MemoryStore()
    ingest(policy, "a", [change(1, "a", at=T0 + timedelta(minutes=5))], store=store)
    win = compute(store, "a")
    assert win.since == T0 + timedelta(minutes=5) and win.complete_until == win.since
    import cloudkeep.changelog as package

    monkeypatch.setattr(package, "store_for_dataset", lambda _p, _d: store)  # the policy's store
    mark_complete(policy, "a", "arn:stream", T0 + timedelta(minutes=9), since=T0)
    mark_complete(policy, "a", "arn:stream", T0 + timedelta(minutes=7))  # older: the max stays
    win = compute(store, "a")
    assert win.since == T0 and win.complete_until == T0 + timedelta(minutes=9)
