"""Firestore (Google's emulator) → cloudkeep → Cloud Storage (fake-gcs-server) and back.

The corpus is written and read back through the emulator's own REST API, so the comparison of
source and restored documents does not rely on cloudkeep's encoder: every Firestore value type
(int64 extremes, doubles with -0.0 / NaN / ±Infinity / subnormals, timestamps from year 1 to 9999
with microseconds, bytes with every octet, references — also into another project —, geo points,
empty and nested arrays and maps, null, booleans, unicode), nested subcollections three levels
deep and "missing" parent documents.
"""

from __future__ import annotations

import json
import math
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from tools.emulators import free_port

from cloudkeep.catalog import resolve
from cloudkeep.codec import ContentDigest, iter_lines
from cloudkeep.engine import backup
from cloudkeep.errors import UsageError
from cloudkeep.policy import load_policy
from cloudkeep.sources.firestore import (
    FirestoreSource,
    encode_value,
    fill_value,
    format_timestamp,
    name_order_key,
    parse_timestamp,
)
from cloudkeep.sources.firestore import segments as fs_segments
from fixtures_gcp import FirestoreRest, gcp_policy
from helpers import cli, cli_json

pytestmark = pytest.mark.emulator


def canon(fields: dict[str, Any]) -> str:
    """Fields as comparable text: -0.0 stays distinct from 0.0, 1e300 from its neighbours."""
    return json.dumps(fields, sort_keys=True)


def _deep(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"stringValue": "bottom"}
    for i in range(depth):
        value = {"mapValue": {"fields": {f"level{i}": value, "n": {"integerValue": str(i)}}}}
    return value


def corpus(root: str) -> dict[str, dict[str, Any]]:
    """Documents as REST Value JSON, by relative name (``root`` is the database's documents path)."""
    ints = {"zero": "0", "one": "1", "neg": "-1", "max": str(2**63 - 1), "min": str(-(2**63))}
    doubles: dict[str, Any] = {
        "pi": 3.141592653589793, "neg_zero": -0.0, "zero": 0.0, "tenth": 0.1, "big": 1.7976931348623157e308,
        "subnormal": 5e-324, "nan": "NaN", "inf": "Infinity", "ninf": "-Infinity", "whole": 2.0,
    }
    times = {
        "epoch": "1970-01-01T00:00:00Z", "micro": "2024-02-29T23:59:59.123456Z",
        "milli": "2001-09-09T01:46:40.500Z", "first": "0001-01-01T00:00:00Z",
        "last": "9999-12-31T23:59:59.999999Z", "before_epoch": "1969-12-31T23:59:59.000001Z",
    }
    docs: dict[str, dict[str, Any]] = {
        "users/alice": {
            **{f"int_{k}": {"integerValue": v} for k, v in ints.items()},
            **{f"double_{k}": {"doubleValue": v} for k, v in doubles.items()},
            **{f"time_{k}": {"timestampValue": v} for k, v in times.items()},
            "t": {"booleanValue": True}, "f": {"booleanValue": False}, "null": {"nullValue": None},
        },
        "users/bob": {
            "empty": {"stringValue": ""},
            "unicode": {"stringValue": "東京 café naïve κόσμε 🚀 \u200b"},
            "control": {"stringValue": "line1\nline2\r\n\ttab \"q\" \\ nul:\u0000"},
            "bytes_all": {"bytesValue": _b64(bytes(range(256)))},
            "bytes_empty": {"bytesValue": ""},
            "bytes_nul": {"bytesValue": _b64(b"\x00\x00abc\x00\xff")},
            "ref_same": {"referenceValue": f"{root}/users/alice"},
            "ref_deep": {"referenceValue": f"{root}/users/alice/orders/o1/items/i1"},
            "ref_other_project": {
                "referenceValue": "projects/elsewhere/databases/(default)/documents/things/t1"},
            "geo_origin": {"geoPointValue": {"latitude": 0.0, "longitude": 0.0}},
            "geo_corner": {"geoPointValue": {"latitude": -90.0, "longitude": 180.0}},
            "geo_any": {"geoPointValue": {"latitude": 48.8566, "longitude": -2.25}},
        },
        "users/carol": {
            "empty_array": {"arrayValue": {}},
            "empty_map": {"mapValue": {}},
            "mixed": {"arrayValue": {"values": [
                {"stringValue": "x"}, {"integerValue": "1"}, {"doubleValue": 1.5},
                {"nullValue": None}, {"booleanValue": False}, {"bytesValue": _b64(b"\x01")},
                {"timestampValue": "2020-01-01T00:00:00Z"},
                {"geoPointValue": {"latitude": 1.0, "longitude": 2.0}},
                {"referenceValue": f"{root}/users/bob"},
                {"mapValue": {"fields": {"inner": {"arrayValue": {"values": [{"integerValue": "7"}]}}}}},
                {"mapValue": {}},
            ]}},
            "deep": _deep(15),
            "odd keys": {"mapValue": {"fields": {
                "a.b": {"integerValue": "1"}, "with space": {"integerValue": "2"},
                "ключ": {"stringValue": "значение"}, "emoji🚀": {"booleanValue": True},
                "`quoted`": {"nullValue": None},
            }}},
            "vector_like": {"mapValue": {"fields": {
                "__type__": {"stringValue": "__vector__"},
                "value": {"arrayValue": {"values": [{"doubleValue": 0.5}, {"doubleValue": -1.0}]}},
            }}},
        },
        "users/dave": {"big": {"stringValue": "x" * 600_000}},
        "users/名前 with space": {"id": {"stringValue": "unicode and space in the id"}},
        "users/alice/orders/o1": {"total": {"integerValue": "42"}},
        "users/alice/orders/o2": {"total": {"doubleValue": 9.99}},
        "users/alice/orders/o1/items/i1": {"sku": {"stringValue": "A-1"}},
        "users/alice/orders/o1/items/i2": {"sku": {"stringValue": "A-2"}},
        "users/alice/settings/prefs": {"theme": {"stringValue": "dark"}},
        # users/ghost is never written: a "missing" parent with a subcollection.
        "users/ghost/orders/o9": {"orphan": {"booleanValue": True}},
        "users/empty": {},
        "teams/red": {"members": {"arrayValue": {"values": [
            {"referenceValue": f"{root}/users/alice"}, {"referenceValue": f"{root}/users/bob"}]}}},
        "teams/red/users/alice": {"role": {"stringValue": "same id as a root collection"}},
    }
    for i in range(60):
        docs[f"users/bulk{i:03d}"] = {"i": {"integerValue": str(i)}, "s": {"stringValue": "é" * (i % 7)}}
    return docs


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


def _renamed(docs: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {prefix + name: fields for name, fields in docs.items()}


def _lines(store: Any, manifest: Any) -> list[dict[str, Any]]:
    from cloudkeep import layout

    out = []
    for part in manifest.parts:
        with store.open(layout.part_key(manifest.dataset, manifest.snapshot_id, part.name)) as f:
            out.extend(json.loads(line) for line in iter_lines(f))
    return out


def test_round_trip_is_lossless_for_every_value_type_and_subcollection(
    firestore_rest: FirestoreRest, gcp_project: str, gcs_bucket: str, tmp_path: Path, capsys: Any,
) -> None:
    docs = corpus(firestore_rest.root)
    firestore_rest.write(docs)
    firestore_rest.write({"other/x": {"not": {"stringValue": "backed up"}}})
    source_docs = {n: f for n, f in firestore_rest.documents().items() if not n.startswith("other/")}
    assert len(source_docs) == len(docs)
    policy = gcp_policy(tmp_path, project=gcp_project, bucket=gcs_bucket, collections=["users", "teams"])

    code, _, err = cli(capsys, "--policy", str(policy), "run", "profiles")
    assert code == 0, err
    listed = cli_json(capsys, "--policy", str(policy), "list", "profiles")
    assert [r["items"] for r in listed] == [len(docs)]
    assert listed[0]["consistency"] == "point-in-time"
    ref = f"profiles@{listed[0]['snapshot_id']}"

    code, out, err = cli(capsys, "--policy", str(policy), "verify", ref)
    assert code == 0 and "OK" in out, out + err

    # The snapshot's lines are the emulator's own REST JSON, document for document.
    loaded = load_policy(str(policy)).policy
    store, manifest = resolve(loaded, ref)
    lines = _lines(store, manifest)
    assert {line["name"] for line in lines} == set(source_docs)
    for line in lines:
        assert canon(line["fields"]) == canon(source_docs[line["name"]]), line["name"]
        assert parse_timestamp(line["update_time"])  # present, RFC 3339
    assert manifest.source["collections"] == ["users", "teams"]
    assert manifest.method == "query"
    assert manifest.content_digest.ignores == ["update_time"]

    code, out, err = cli(capsys, "--policy", str(policy), "restore", ref, "--into", "restored_")
    assert code == 0, err
    after = firestore_rest.documents()
    restored = {n[len("restored_"):]: f for n, f in after.items() if n.startswith("restored_")}
    assert sorted(restored) == sorted(source_docs)
    for name, fields in source_docs.items():
        assert canon(restored[name]) == canon(fields), f"{name} differs after restore"
    # References are kept as they were (rewriting is opt-in) and the missing parent stays missing.
    assert restored["users/bob"]["ref_same"] == source_docs["users/bob"]["ref_same"]
    assert "users/ghost" not in after and "restored_users/ghost" not in after

    # The restored copy, read back as a backup reads it, has the snapshot's content digest.
    source = FirestoreSource(gcp_project, collections=["users", "teams"])
    assert source.scan_digest("restored_") == (len(docs), manifest.content_digest.value)
    assert source.scan_digest("") == (len(docs), manifest.content_digest.value)


def test_reads_are_consistent_at_one_read_time(
    firestore_rest: FirestoreRest, gcp_project: str, gcs_bucket: str, tmp_path: Path,
) -> None:
    firestore_rest.write({f"users/u{i:02d}": {"v": {"integerValue": "1"}} for i in range(40)})
    firestore_rest.write({"users/u00/log/l1": {"v": {"integerValue": "1"}}})
    source = FirestoreSource(gcp_project, collections=["users"], segments=3)
    described = source.describe()
    time.sleep(0.05)
    # Changes after the read time, while the run is going: none of them may show.
    firestore_rest.write({"users/u05": {"v": {"integerValue": "2"}}, "users/new": {"v": {"integerValue": "3"}},
                          "users/u00/log/l2": {"v": {"integerValue": "4"}}})
    firestore_rest.delete("users/u10", "users/u00/log/l1")

    total = source.plan_segments(described)
    assert total == 3
    lines = [json.loads(line) for s in range(total) for page in source.read_segment(s, total) for line in page]
    by_name = {line["name"]: line for line in lines}
    assert len(by_name) == len(lines) == 41
    assert "users/new" not in by_name and "users/u00/log/l2" not in by_name
    assert "users/u10" in by_name and "users/u00/log/l1" in by_name
    assert by_name["users/u05"]["fields"]["v"] == {"integerValue": "1"}

    # Through the engine, the manifest records the read time as a point-in-time consistency.
    policy = load_policy(str(gcp_policy(tmp_path, project=gcp_project, bucket=gcs_bucket,
                                        collections=["users"]))).policy
    run_source = FirestoreSource(gcp_project, collections=["users"])
    result = backup(policy, "profiles", source=run_source)
    manifest = result.manifest
    assert manifest is not None
    assert manifest.consistency.mode == "point-in-time"
    assert manifest.consistency.time is not None
    read_time = manifest.source["read_time"]
    seconds, nanos = parse_timestamp(read_time)
    assert manifest.consistency.time.timestamp() == pytest.approx(seconds + nanos / 1e9, abs=1e-6)
    slack = timedelta(seconds=1)  # the emulator's clock is this machine's
    assert manifest.started_at - slack <= manifest.consistency.time <= manifest.finished_at + slack
    assert manifest.totals.items == 41  # 40 - 1 deleted + new, + l2


def test_several_segments_by_document_name_ranges_where_partition_queries_are_missing(
    firestore_rest: FirestoreRest, gcp_project: str, gcs_bucket: str, tmp_path: Path, capsys: Any,
) -> None:
    docs: dict[str, dict[str, Any]] = {}
    for i in range(150):
        docs[f"users/u{i:04d}"] = {"i": {"integerValue": str(i)}}
        if i % 10 == 0:
            docs[f"users/u{i:04d}/orders/o1"] = {"parent": {"integerValue": str(i)}}
            docs[f"users/u{i:04d}/orders/o1/lines/l1"] = {"deep": {"booleanValue": True}}
    docs["users/missing/orders/o1"] = {"orphan": {"booleanValue": True}}
    for i in range(7):
        docs[f"teams/t{i}"] = {"i": {"integerValue": str(i)}}
    firestore_rest.write(docs)
    policy = gcp_policy(tmp_path, project=gcp_project, bucket=gcs_bucket,
                        collections=["users", "teams"], segments=4)

    code, _, err = cli(capsys, "--policy", str(policy), "run", "profiles")
    assert code == 0, err
    loaded = load_policy(str(policy)).policy
    store, manifest = resolve(loaded, "profiles@latest")
    assert manifest.segments == 8  # 4 name ranges for each root collection
    per_segment: dict[int, int] = {}
    for part in manifest.parts:
        per_segment[part.segment] = per_segment.get(part.segment, 0) + part.items
    assert sorted(per_segment) == list(range(8)), "every range holds documents"
    users = [per_segment[s] for s in range(4)]
    assert sum(users) == 150 + 15 + 15 + 1 and max(users) - min(users) <= 2, users
    assert manifest.totals.items == len(docs)
    lines = _lines(store, manifest)
    assert sorted(line["name"] for line in lines) == sorted(docs), "no document twice, none lost"

    # The split came from the fallback, and the plan is the same through the Python API.
    source = FirestoreSource(gcp_project, collections=["users", "teams"], segments=4)
    assert source.plan_segments(source.describe()) == 8
    assert source.split_methods == {
        "users": "document-name ranges (partition query unavailable)",
        "teams": "document-name ranges (partition query unavailable)",
    }
    ranges = source._ranges or []
    bounds = [r[1] for r in ranges if r[0] == "users" and r[1] is not None]
    assert bounds == sorted(bounds, key=name_order_key)

    code, _, err = cli(capsys, "--policy", str(policy), "restore", "profiles@latest", "--into", "copy_")
    assert code == 0, err
    after = firestore_rest.documents()
    assert {n[len("copy_"):]: canon(f) for n, f in after.items() if n.startswith("copy_")} == {
        n: canon(f) for n, f in docs.items()}


def test_a_large_collection_is_split_without_being_asked(
    firestore_rest: FirestoreRest, gcp_project: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(fs_segments, "DOCS_PER_SEGMENT", 25)
    firestore_rest.write({f"logs/l{i:03d}": {"i": {"integerValue": str(i)}} for i in range(120)})
    policy = load_policy(str(gcp_policy(tmp_path, project=gcp_project, collections=["logs"]))).policy
    result = backup(policy, "profiles")
    assert result.manifest is not None
    assert result.manifest.segments == 5  # ceil(120 / 25)
    assert result.manifest.totals.items == 120
    assert sorted(p.items for p in result.manifest.parts) == [24] * 5


def test_restore_refuses_a_non_empty_target_unless_overwrite(
    firestore_rest: FirestoreRest, gcp_project: str, gcs_bucket: str, tmp_path: Path, capsys: Any,
) -> None:
    firestore_rest.write({f"users/u{i}": {"v": {"integerValue": str(i)}} for i in range(5)})
    firestore_rest.write({"users/u1/orders/o1": {"v": {"integerValue": "10"}}})
    policy = gcp_policy(tmp_path, project=gcp_project, bucket=gcs_bucket, collections=["users"])
    assert cli(capsys, "--policy", str(policy), "run", "profiles")[0] == 0
    # The target holds only a "missing" parent document with a subcollection: still not empty.
    firestore_rest.write({"r_users/x/sub/y": {"keep": {"booleanValue": True}}})
    before = firestore_rest.documents()

    code, out, err = cli(capsys, "--policy", str(policy), "restore", "profiles@latest", "--into", "r_")
    assert code == 1
    assert "r_users" in err and "--overwrite" in err and "Traceback" not in err
    assert firestore_rest.documents() == before, "nothing was written"

    # In place: the source collection itself is not empty either.
    code, _, err = cli(capsys, "--policy", str(policy), "restore", "profiles@latest", "--into", "")
    assert code == 1 and "users" in err

    firestore_rest.write({"users/u2": {"v": {"stringValue": "changed"}}})
    code, out, err = cli(capsys, "--policy", str(policy), "restore", "profiles@latest", "--into", "r_",
                         "--overwrite")
    assert code == 0, err
    code, out, err = cli(capsys, "--policy", str(policy), "restore", "profiles@latest", "--into", "",
                         "--overwrite")
    assert code == 0, err
    after = firestore_rest.documents()
    assert after["users/u2"] == {"v": {"integerValue": "2"}}, "in-place restore puts the snapshot back"
    assert after["r_users/u1/orders/o1"] == {"v": {"integerValue": "10"}}
    assert after["r_users/x/sub/y"] == {"keep": {"booleanValue": True}}, "--overwrite deletes nothing"

    code, _, err = cli(capsys, "--policy", str(policy), "restore", "profiles@latest", "--into", "a/b")
    assert code == 2 and "prefix" in err


def test_references_are_rewritten_only_when_asked(
    firestore_rest: FirestoreRest, gcp_project: str, tmp_path: Path, capsys: Any,
) -> None:
    root = firestore_rest.root
    firestore_rest.write({
        "users/a": {"friend": {"referenceValue": f"{root}/users/b"},
                    "list": {"arrayValue": {"values": [{"referenceValue": f"{root}/users/b/pets/p"}]}},
                    "outside": {"referenceValue": f"{root}/elsewhere/z"},
                    "other_db": {"referenceValue": "projects/x/databases/(default)/documents/users/b"}},
        "users/b": {"n": {"integerValue": "1"}},
        "users/b/pets/p": {"name": {"stringValue": "rex"}},
    })
    policy = gcp_policy(tmp_path, project=gcp_project, collections=["users"], rewrite_references=True)
    assert cli(capsys, "--policy", str(policy), "run", "profiles")[0] == 0
    code, _, err = cli(capsys, "--policy", str(policy), "restore", "profiles@latest", "--into", "copy_")
    assert code == 0, err
    restored = firestore_rest.documents()["copy_users/a"]
    assert restored["friend"] == {"referenceValue": f"{root}/copy_users/b"}
    assert restored["list"]["arrayValue"]["values"][0] == {"referenceValue": f"{root}/copy_users/b/pets/p"}
    assert restored["outside"] == {"referenceValue": f"{root}/elsewhere/z"}
    assert restored["other_db"] == {"referenceValue": "projects/x/databases/(default)/documents/users/b"}

    store, manifest = resolve(load_policy(str(policy)).policy, "profiles@latest")
    source = FirestoreSource(gcp_project, collections=["users"], rewrite_references=True)
    assert source.scan_digest("copy_") == (3, manifest.content_digest.value)


def test_every_root_collection_when_none_are_named_and_recursive_off(
    firestore_rest: FirestoreRest, gcp_project: str, tmp_path: Path, capsys: Any,
) -> None:
    firestore_rest.write({"a/1": {}, "a/1/sub/x": {}, "b/2": {}, "ghost/g/sub/y": {}})
    policy = gcp_policy(tmp_path, project=gcp_project)
    assert cli(capsys, "--policy", str(policy), "run", "profiles")[0] == 0
    store, manifest = resolve(load_policy(str(policy)).policy, "profiles@latest")
    assert manifest.source["collections"] == ["a", "b", "ghost"]
    assert sorted(line["name"] for line in _lines(store, manifest)) == ["a/1", "a/1/sub/x", "b/2", "ghost/g/sub/y"]

    flat = tmp_path / "flat"
    flat.mkdir()
    policy = gcp_policy(flat, project=gcp_project, collections=["a", "ghost"], recursive=False)
    assert cli(capsys, "--policy", str(policy), "run", "profiles")[0] == 0
    store, manifest = resolve(load_policy(str(policy)).policy, "profiles@latest")
    assert [line["name"] for line in _lines(store, manifest)] == ["a/1"]


def test_an_empty_collection_gives_an_empty_snapshot_that_restores(
    firestore_emulator: Any, gcp_project: str, gcs_bucket: str, tmp_path: Path, capsys: Any,
) -> None:
    policy = gcp_policy(tmp_path, project=gcp_project, bucket=gcs_bucket, collections=["nothing"])
    assert cli(capsys, "--policy", str(policy), "run", "profiles")[0] == 0
    assert [r["items"] for r in cli_json(capsys, "--policy", str(policy), "list")] == [0]
    assert cli(capsys, "--policy", str(policy), "verify", "profiles@latest")[0] == 0
    code, _, err = cli(capsys, "--policy", str(policy), "restore", "profiles@latest", "--into", "r_")
    assert code == 0, err


def test_an_unreachable_emulator_is_exit_3_without_traceback(
    firestore_emulator: Any, gcp_project: str, tmp_path: Path, capsys: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dead = f"127.0.0.1:{free_port()}"
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", dead)
    policy = gcp_policy(tmp_path, project=gcp_project, collections=["users"])
    started = time.monotonic()
    code, out, err = cli(capsys, "--policy", str(policy), "run", "profiles")
    assert code == 3, out + err
    assert f"cannot reach the Firestore emulator at {dead}" in out + err
    assert "Traceback" not in out + err
    assert time.monotonic() - started < 30, "an unreachable source must fail fast"


# ------------------------------------------------------------------------------------ pure parts


@pytest.mark.parametrize("text", [
    "1970-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999Z",
    "1969-12-31T23:59:59.000000001Z", "2024-02-29T12:00:00.100Z", "2024-02-29T12:00:00.000100Z",
])
def test_timestamps_round_trip_with_nanoseconds(text: str) -> None:
    assert format_timestamp(*parse_timestamp(text)) == text


def test_timestamps_are_canonical_and_checked() -> None:
    assert format_timestamp(*parse_timestamp("2020-01-01T00:00:00.5Z")) == "2020-01-01T00:00:00.500Z"
    assert parse_timestamp("1970-01-01T00:00:01.000000002Z") == (1, 2)
    for bad in ("2020-01-01 00:00:00Z", "2020-01-01T00:00:00+01:00", "2020-13-01T00:00:00Z", ""):
        with pytest.raises(ValueError):
            parse_timestamp(bad)


def test_values_round_trip_through_protobuf() -> None:
    from google.cloud.firestore_v1.types import document

    root = "projects/p/databases/(default)/documents"
    for name, fields in corpus(root).items():
        for key, value in fields.items():
            pb = document.Value.pb()()
            fill_value(pb, value)
            encoded = encode_value(pb)
            if key == "geo_origin":  # proto3 JSON leaves out coordinates of +0.0, as REST does
                assert encoded == {"geoPointValue": {}}
            else:
                assert canon(encoded) == canon(value), f"{name}.{key}"
            again = document.Value.pb()()
            fill_value(again, encoded)
            assert canon(encode_value(again)) == canon(encoded)
    pb = document.Value.pb()()
    fill_value(pb, {"doubleValue": "NaN"})
    assert math.isnan(pb.double_value)
    for bad in ({"integerValue": True}, {"doubleValue": "nan"}, {"bytesValue": "%%%"},
                {"unknownValue": 1}, {"stringValue": "a", "integerValue": "1"}):
        with pytest.raises(ValueError):
            fill_value(document.Value.pb()(), bad)


def test_document_names_sort_as_firestore_sorts_them() -> None:
    names = ["users/b", "users/a/x/1", "users/a", "users/__id5__", "users/__id-3__", "users/é", "users/z"]
    assert sorted(names, key=name_order_key) == [
        "users/__id-3__", "users/__id5__", "users/a", "users/a/x/1", "users/b", "users/z", "users/é"]


def test_the_digest_ignores_update_time_only() -> None:
    one = b'{"fields":{"a":{"integerValue":"1"}},"name":"c/d","update_time":"2020-01-01T00:00:00Z"}'
    two = b'{"fields":{"a":{"integerValue":"1"}},"name":"c/d","update_time":"2024-05-05T05:05:05.5Z"}'
    other = b'{"fields":{"a":{"integerValue":"2"}},"name":"c/d","update_time":"2020-01-01T00:00:00Z"}'
    digests = []
    for line in (one, two, other):
        d = ContentDigest(ignores=["update_time"])
        d.add_line(line)
        digests.append(d.hexdigest())
    assert digests[0] == digests[1] != digests[2]


def test_bad_restore_targets_and_policy_collections_are_refused() -> None:
    from cloudkeep.errors import PolicyError
    from cloudkeep.policy import parse_policy

    source = FirestoreSource("p", collections=["users"])
    with pytest.raises(UsageError):
        source.open_restore("a/b", {"collections": ["users"]}, overwrite=True)
    with pytest.raises(UsageError):
        source.open_restore("__", {"collections": ["x__"]}, overwrite=True)
    text = """
version: 1
stores: {v: {type: file, path: /tmp/x}}
tiers: {t: {schedule: "0 2 * * *", rpo: 26h, retention: {daily: 7}}}
datasets:
  d: {source: {type: firestore, project: p, collections: [users, "a/b", __x__, users]}, tier: t, store: v}
"""
    with pytest.raises(PolicyError) as info:
        parse_policy(text)
    assert "a/b" in str(info.value)
