"""The Firestore capture function (handlers/gcp_function.py ``capture``) behind the real
functions-framework server, fed ``google.cloud.firestore.document.v1.written`` CloudEvents built
with the ``cloudevents`` package around google-events' ``DocumentEventData`` — whose documents
are the very protobuf bytes Google's Firestore emulator returns for the written documents. The
captured line of each version is byte for byte the line a scan snapshot writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from tools.emulators import free_port

from capturelog import latest_versions, logged_changes
from cloudkeep.catalog import latest
from cloudkeep.changelog import list_gaps
from cloudkeep.changelog.format import format_time
from cloudkeep.codec import canonical_json, listing_records
from cloudkeep.policy import load_policy
from cloudkeep.registry import store_for_dataset
from conftest import ROOT
from helpers import cli

pytestmark = pytest.mark.emulator

EVENT_TYPE = "google.cloud.firestore.document.v1.written"


@pytest.fixture
def capture_server(tmp_path: Path, gcp_project: str, firestore_emulator: Any) -> Iterator[tuple[str, Path]]:
    """The capture function served by ``functions-framework`` (a process of its own)."""
    policy = {
        "version": 1,
        "stores": {"vault": {"type": "file", "path": str(tmp_path / "vault")}},
        "tiers": {"standard": {"schedule": "0 2 * * *", "rpo": "26h", "retention": {"daily": 7}}},
        "datasets": {"profiles": {"source": {"type": "firestore", "project": gcp_project,
                                             "collections": ["users"]},
                                  "tier": "standard", "store": "vault", "continuous": True}},
    }
    path = tmp_path / "cloudkeep.yaml"
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    port = free_port()
    env = {**os.environ, "CLOUDKEEP_POLICY": str(path),
           "PYTHONPATH": os.pathsep.join([str(ROOT / "shared"), str(ROOT)])}
    log = (tmp_path / "ff.log").open("wb")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "functions-framework"), "--target", "capture",
         "--source", str(ROOT / "handlers" / "gcp_function.py"), "--signature-type", "cloudevent",
         "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, (tmp_path / "ff.log").read_text()
        try:
            urllib.request.urlopen(urllib.request.Request(url, method="GET"), timeout=2)
            break
        except urllib.error.HTTPError:
            break  # it answers
        except OSError:
            assert time.monotonic() < deadline, "functions-framework did not start"
            time.sleep(0.2)
    yield url, path
    proc.terminate()
    proc.wait(timeout=20)
    log.close()


def raw_document(project: str, path: str) -> Any:
    """The emulator's own protobuf Document for ``path`` (google.firestore.v1.Document)."""
    from google.cloud import firestore

    client = firestore.Client(project=project)
    name = f"projects/{project}/databases/(default)/documents/{path}"
    return client._firestore_api.get_document(request={"name": name})


def event_data(new: Any | None, old: Any | None) -> Any:
    """A DocumentEventData whose documents are the emulator's Document bytes (same field
    numbers: google-events' Document is wire-compatible with google.firestore.v1.Document)."""
    from google.cloud.firestore_v1.types import Document as FirestoreDocument
    from google.events.cloud.firestore_v1 import Document, DocumentEventData

    def convert(doc: Any) -> Any:
        return Document.deserialize(FirestoreDocument.serialize(doc))

    kwargs = {}
    if new is not None:
        kwargs["value"] = convert(new)
    if old is not None:
        kwargs["old_value"] = convert(old)
    return DocumentEventData(**kwargs)


def post(url: str, project: str, path: str, data: Any, at: datetime, *, as_json: bool = False) -> int:
    """POST one document.written CloudEvent (binary content mode) to the function."""
    from cloudevents.conversion import to_binary
    from cloudevents.http import CloudEvent
    from google.events.cloud.firestore_v1 import DocumentEventData

    attributes = {
        "type": EVENT_TYPE, "specversion": "1.0",
        "source": f"//firestore.googleapis.com/projects/{project}/databases/(default)",
        "subject": f"documents/{path}", "id": f"{path}-{at.timestamp()}",
        "time": at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "datacontenttype": "application/json" if as_json else "application/protobuf",
    }
    body = data if isinstance(data, bytes) else (
        DocumentEventData.to_json(data) if as_json else DocumentEventData.serialize(data))
    headers, payload = to_binary(CloudEvent(attributes, body), data_marshaller=lambda d: d)
    request = urllib.request.Request(url, data=payload.encode() if isinstance(payload, str) else payload,
                                     headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_document_written_events_capture_the_scan_readers_lines(
        capture_server: tuple[str, Path], gcp_project: str, firestore_rest: Any, capsys: Any) -> None:
    url, policy_path = capture_server
    fields = {"name": {"stringValue": "Alice"}, "n": {"integerValue": "9223372036854775807"},
              "at": {"timestampValue": "2026-12-07T10:11:12.123456Z"}, "x": {"doubleValue": "NaN"},
              "tags": {"arrayValue": {"values": [{"stringValue": "a"}, {"nullValue": None}]}},
              "geo": {"geoPointValue": {"latitude": 1.5, "longitude": -0.0}},
              "blob": {"bytesValue": "AAEC"}}
    firestore_rest.write({"users/alice": fields, "users/bob": {"v": {"integerValue": "1"}},
                          "other/zed": {"v": {"integerValue": "1"}}})
    alice_v1 = raw_document(gcp_project, "users/alice")
    bob = raw_document(gcp_project, "users/bob")
    zed = raw_document(gcp_project, "other/zed")
    firestore_rest.write({"users/alice": {**fields, "name": {"stringValue": "Alice B."}},
                          "users/alice/orders/o1": {"total": {"integerValue": "3"}}})
    alice_v2 = raw_document(gcp_project, "users/alice")
    order = raw_document(gcp_project, "users/alice/orders/o1")
    firestore_rest.delete("users/bob")
    now = datetime.now(UTC)

    # delivered out of order, the update twice, one as JSON; a collection the dataset skips
    assert post(url, gcp_project, "users/alice", event_data(alice_v2, alice_v1), now) == 200
    assert post(url, gcp_project, "users/alice", event_data(alice_v1, None), now) == 200
    assert post(url, gcp_project, "users/bob", event_data(bob, None), now, as_json=True) == 200
    assert post(url, gcp_project, "users/bob", event_data(None, bob), now) == 200
    assert post(url, gcp_project, "users/alice/orders/o1", event_data(order, None), now) == 200
    assert post(url, gcp_project, "users/alice", event_data(alice_v2, alice_v1), now) == 200
    assert post(url, gcp_project, "other/zed", event_data(zed, None), now) == 200
    # a malformed event is acknowledged (Eventarc would retry it for days): one error line,
    # and a gap from its time, so `restore --at` after it is refused until the next snapshot
    assert post(url, gcp_project, "users/x", b"not a protobuf", now) == 200

    policy = load_policy(str(policy_path)).policy
    store = store_for_dataset(policy, "profiles")
    changes = logged_changes(store, "profiles")
    assert {c.key for c in changes} == {"users/alice", "users/bob", "users/alice/orders/o1"}
    assert sorted(c.event for c in changes if c.key == "users/alice") == ["insert", "modify"]  # the repeat: written once
    final = latest_versions(store, "profiles")
    assert final[json.dumps("users/bob")].event == "remove"
    assert final[json.dumps("users/bob")].line is None
    gaps = list_gaps(store, "profiles")
    assert len(gaps) == 1 and gaps[0].end is None and format_time(gaps[0].start) == format_time(now)
    assert "bad Firestore document event" in gaps[0].reason
    errors = [line for line in (policy_path.parent / "ff.log").read_text().splitlines()
              if "bad Firestore document event" in line and '"ERROR"' in line]
    assert len(errors) == 1, errors
    assert "Traceback" not in (policy_path.parent / "ff.log").read_text()

    # a scan snapshot now: its lines are the captured lines, byte for byte
    code, _, err = cli(capsys, "--policy", str(policy_path), "run", "profiles")
    assert code == 0, err
    manifest = latest(store, "profiles")
    assert manifest is not None
    snapshot = {r["name"]: canonical_json(r) for r in listing_records(store, manifest)}
    assert set(snapshot) == {"users/alice", "users/alice/orders/o1"}
    for path in snapshot:
        assert final[json.dumps(path)].line == snapshot[path], path
    assert final[json.dumps("users/alice")].time == datetime.fromtimestamp(
        alice_v2.update_time.timestamp(), UTC)
