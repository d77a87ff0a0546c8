"""The change log against a forged or damaged store and bad input (issue #21, review)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cloudkeep import layout
from cloudkeep.changelog import ingest, positions
from cloudkeep.changelog import prune as log_prune
from cloudkeep.changelog.at import parse_moment
from cloudkeep.changelog.format import parse_time
from cloudkeep.changelog.reader import entries
from cloudkeep.errors import UsageError
from cloudkeep.policy import parse_policy
from cloudkeep.retention import SnapshotInfo
from cloudkeep.stores.memory import MemoryStore
from test_changelog import POLICY, T0, change


def _logged() -> tuple[MemoryStore, list[SnapshotInfo], datetime]:
    policy = parse_policy(POLICY)
    store = MemoryStore()
    ingest(policy, "a", [change(1, "a", at=T0 + timedelta(minutes=10))], store=store)
    ingest(policy, "a", [change(2, "a", at=T0 + timedelta(hours=4))], store=store)
    now = T0 + timedelta(hours=6)
    positions.append(store, "a", positions.Position("s", None, T0, now), now)
    kept = [SnapshotInfo("s2", T0 + timedelta(hours=3))]
    return store, kept, now


def test_a_forged_old_entry_never_makes_prune_delete_a_needed_segment() -> None:
    store, kept, now = _logged()
    needed = [e for e in entries(store, "a") if e.first_time > T0 + timedelta(hours=1)][0]
    forged = json.loads(store.get(needed.key))
    forged["first_time"] = forged["last_time"] = "2026-12-07T12:05:00.000000Z"
    forged["name"] = "forged"
    key = layout.changelog_entry_key("a", T0 + timedelta(minutes=5), "forged")
    store.put(key, json.dumps(forged).encode(), if_absent=True)
    log_prune.collect(store, "a", kept, now)
    assert key not in store.objects  # the forged entry is old: it goes
    assert needed.segment in store.objects  # the segment it named is still needed
    assert [e.key for e in entries(store, "a")] == [needed.key]


def test_an_unreadable_entry_keeps_every_segment_prune_cannot_account_for() -> None:
    store, kept, now = _logged()
    needed = [e for e in entries(store, "a") if e.first_time > T0 + timedelta(hours=1)][0]
    data, _ = store.objects[needed.key]
    store.objects[needed.key] = (b"{damaged", datetime.now(UTC))
    # its segment is more than a day old: an orphan, were the entry not merely unreadable
    segment_data, _ = store.objects[needed.segment]
    store.objects[needed.segment] = (segment_data, datetime.now(UTC) - timedelta(days=3))
    log_prune.collect(store, "a", kept, now)
    assert needed.segment in store.objects
    store.objects[needed.key] = (data, datetime.now(UTC))
    assert [e.key for e in entries(store, "a")] == [needed.key]


@pytest.mark.parametrize("text", ["9999-12-31T23:59:59Z", "0001-01-01T00:00:00+01:00", "",
                                  "2026-13-01T00:00:00Z"])
def test_an_at_out_of_range_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError, match="--at"):
        parse_moment(text)


def test_at_with_an_offset_is_the_same_moment_in_utc() -> None:
    at, end = parse_moment("2026-12-07T14:06:59+02:00")
    assert at == datetime(2026, 12, 7, 12, 6, 59, tzinfo=UTC)
    assert end == at + timedelta(microseconds=999_999)
    assert parse_moment("2026-12-07T12:06:59.250Z")[1] == at + timedelta(milliseconds=250)


def test_a_forged_time_out_of_range_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_time("0001-01-01T00:00:00+01:00")


def test_the_html_report_shows_the_point_in_time_window_and_its_gaps(tmp_path: Any) -> None:
    from cloudkeep import report, report_html
    from cloudkeep.changelog import record_gap
    from cloudkeep.registry import store_for_dataset

    policy = parse_policy(POLICY.replace("/unused", str(tmp_path / "vault")).replace(
        "store: mem}", "store: mem, continuous: true}"))
    store = store_for_dataset(policy, "a")
    ingest(policy, "a", [change(1, "a", at=T0 + timedelta(minutes=1))], store=store)
    record_gap(policy, "a", start=T0 + timedelta(minutes=2), end=None, reason="iterator <expired>",
               store=store)
    now = T0 + timedelta(hours=1)
    html = report_html.render(report.build(policy, now))
    assert "point-in-time" in html and "no recoverable window yet" in html
    assert "1 gap(s), 1 open" in html and "iterator &lt;expired&gt;" in html


def test_s3_versions_of_one_key_in_the_same_second_replay_in_write_order() -> None:
    from cloudkeep.sources.s3.versions import VersionReader

    same = T0
    # as ListObjectVersions lists them: newest first; the ids sort the other way round
    listed = [{"Key": "k", "VersionId": "a-newest", "IsLatest": True, "_marker": False},
              {"Key": "k", "VersionId": "m-middle", "IsLatest": False, "_marker": False},
              {"Key": "k", "VersionId": "z-oldest", "IsLatest": False, "_marker": False}]
    entries_ = [e | {"_at": same, "_vid": e["VersionId"], "_pos": n} for n, e in enumerate(listed)]
    ordered = VersionReader._ordered(list(reversed(entries_)))
    assert [e["_vid"] for e in ordered] == ["z-oldest", "m-middle", "a-newest"]
    assert [e["_first"] for e in ordered] == [True, False, False]
    sequences = [e["_seq"] for e in ordered]
    assert sequences == sorted(sequences) and len(set(sequences)) == 3


def test_replay_refuses_a_span_larger_than_its_memory_bound(monkeypatch: Any) -> None:
    from cloudkeep.changelog import replay
    from test_changelog import RECORDED

    policy = parse_policy(POLICY)
    store = MemoryStore()
    batch = [change(n, f"item-{n}", at=T0 + timedelta(seconds=n), value="x" * 100)
             for n in range(1, 40)]
    ingest(policy, "a", batch, store=store)
    whole = replay.Replay(store, "a", T0, T0 + timedelta(minutes=1), keyring=None, recorded=RECORDED)
    assert len(whole.final) == 39
    monkeypatch.setattr(replay, "MAX_REPLAY_BYTES", 2000)
    with pytest.raises(replay.ReplayTooLargeError, match="nearer the moment"):
        replay.Replay(store, "a", T0, T0 + timedelta(minutes=1), keyring=None, recorded=RECORDED)
    # the same item changed many times holds one entry: within the bound
    again = [change(n, "hot", at=T0 + timedelta(hours=1, seconds=n), value="y" * 100)
             for n in range(100, 160)]
    ingest(policy, "a", again, store=store)
    hot = replay.Replay(store, "a", T0 + timedelta(hours=1), T0 + timedelta(hours=2), keyring=None,
                        recorded=RECORDED)
    assert len(hot.final) == 1


def test_sequences_of_different_lengths_sort_as_numbers_and_overlong_ones_are_refused() -> None:
    from cloudkeep.changelog.dynamodb import StreamRecordError, from_stream_record
    from test_changelog import RECORDED, record

    short = from_stream_record(record("MODIFY", 9, "a", when=T0.timestamp()), RECORDED)
    long = from_stream_record(record("MODIFY", 10**20, "a", when=T0.timestamp()), RECORDED)
    assert short.sequence < long.sequence and len(short.sequence) == len(long.sequence) == 40
    for bad in [str(10**40), "١٢"]:  # 41 digits; Arabic-Indic digits
        body = record("MODIFY", 1, "a")
        body["dynamodb"]["SequenceNumber"] = bad
        with pytest.raises(StreamRecordError, match="sequence"):
            from_stream_record(body, RECORDED)
