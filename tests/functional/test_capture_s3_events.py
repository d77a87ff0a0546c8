"""The S3 capture Lambda (handlers/aws_capture.py ``objects``) on moto server: S3 event
notifications (and their EventBridge form) for a versioned bucket, delivered twice and out of
order. Each created version's content lands create-only in the dataset's blobs and its log line
is the listing line a snapshot writes; a delete marker is logged as a remove."""

from __future__ import annotations

import hashlib
import json
import secrets
import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from capturelog import latest_versions, logged_changes
from cloudkeep import layout
from cloudkeep.catalog import latest
from cloudkeep.codec import canonical_json, listing_records
from cloudkeep.policy import load_policy
from cloudkeep.registry import store_for_dataset
from conftest import REGION
from helpers import cli

pytestmark = pytest.mark.emulator


@dataclass
class LambdaContext:
    function_name: str = "cloudkeep-capture-objects"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:cloudkeep-capture-objects"
    aws_request_id: str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


class Notifier:
    """Builds S3 event notification records (schema 2.1) as S3 sends them for each write."""

    def __init__(self, bucket: str) -> None:
        self.bucket = bucket
        self.sequencer = 0x0062E99A88DC407460
        self.at = datetime.now(UTC)

    def record(self, name: str, key: str, version: str | None, *, size: int = 0, etag: str = "") -> dict[str, Any]:
        self.sequencer += 0x10
        self.at += timedelta(milliseconds=7)
        obj: dict[str, Any] = {"key": urllib.parse.quote_plus(key), "sequencer": f"{self.sequencer:X}"}
        if name.startswith("ObjectCreated"):
            obj |= {"size": size, "eTag": etag}
        if version:
            obj["versionId"] = version
        return {
            "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": REGION,
            "eventTime": self.at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{self.at.microsecond // 1000:03d}Z",
            "eventName": name, "userIdentity": {"principalId": "AWS:AIDAEXAMPLE"},
            "requestParameters": {"sourceIPAddress": "127.0.0.1"},
            "responseElements": {"x-amz-request-id": secrets.token_hex(8).upper(),
                                 "x-amz-id-2": secrets.token_hex(16)},
            "s3": {"s3SchemaVersion": "1.0", "configurationId": "cloudkeep-capture",
                   "bucket": {"name": self.bucket, "ownerIdentity": {"principalId": "A3NL1KOZZKExample"},
                              "arn": f"arn:aws:s3:::{self.bucket}"},
                   "object": obj},
        }


def test_object_events_capture_versions_into_blobs_and_the_log(
        moto_server: Any, tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3
    from handlers import aws_capture

    s3 = boto3.client("s3", region_name=REGION)
    bucket = f"src-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    policy = {
        "version": 1,
        "stores": {"vault": {"type": "file", "path": str(tmp_path / "vault")}},
        "tiers": {"standard": {"schedule": "0 2 * * *", "rpo": "26h", "retention": {"last": 3}}},
        "datasets": {"files": {"source": {"type": "s3", "bucket": bucket, "region": REGION,
                                          "exclude": ["tmp/*"]},
                               "tier": "standard", "store": "vault", "continuous": True}},
    }
    path = tmp_path / "cloudkeep.yaml"
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    monkeypatch.setenv("CLOUDKEEP_POLICY", str(path))
    notes = Notifier(bucket)
    events: list[dict[str, Any]] = []
    bodies: dict[str, bytes] = {}

    def put(key: str, body: bytes, **extra: Any) -> dict[str, Any]:
        resp = s3.put_object(Bucket=bucket, Key=key, Body=body, **extra)
        bodies[resp["VersionId"]] = body
        events.append(notes.record("ObjectCreated:Put", key, resp["VersionId"], size=len(body),
                                   etag=resp["ETag"].strip('"')))
        return resp

    v1 = put("docs/report.txt", b"first draft\n", ContentType="text/plain", Metadata={"owner": "ops"},
             Tagging="team=data")
    put("docs/report.txt", b"second draft\n", ContentType="text/plain", Metadata={"owner": "ops"},
        Tagging="team=data")
    put("images/caf\u00e9 \u2615.png", b"\x89PNG" + bytes(range(256)))
    put("tmp/scratch", b"not backed up")
    put("gone.txt", b"soon deleted")
    marker = s3.delete_object(Bucket=bucket, Key="gone.txt")
    events.append(notes.record("ObjectRemoved:DeleteMarkerCreated", "gone.txt", marker["VersionId"]))
    events.append(notes.record("ObjectRestore:Completed", "docs/report.txt", None))

    # out of order (the second draft before the first), one twice, the delete in EventBridge form
    delete = events[5]
    bridge = {"version": "0", "id": secrets.token_hex(8), "detail-type": "Object Deleted",
              "source": "aws.s3", "account": "123456789012", "time": delete["eventTime"],
              "region": REGION, "resources": [f"arn:aws:s3:::{bucket}"],
              "detail": {"version": "0", "bucket": {"name": bucket},
                         "object": {"key": "gone.txt", "version-id": marker["VersionId"],
                                    "sequencer": delete["s3"]["object"]["sequencer"]},
                         "request-id": "r", "requester": "123456789012",
                         "deletion-type": "Delete Marker Created"}}
    deliveries = [{"Records": [events[1]]}, {"Records": [events[0], events[2]]},
                  {"Records": [events[3], events[4]]}, {"Records": [events[1]]}, bridge,
                  {"Records": [events[6]]}, {"Event": "s3:TestEvent", "Bucket": bucket}]
    for delivery in deliveries:
        aws_capture.objects(delivery, LambdaContext())
    # the first draft deleted for good: the object (its second draft) stays
    s3.delete_object(Bucket=bucket, Key="docs/report.txt", VersionId=v1["VersionId"])
    reply = aws_capture.objects({"Records": [notes.record("ObjectRemoved:Delete", "docs/report.txt",
                                                          v1["VersionId"])]}, LambdaContext())
    assert reply["versions_deleted"] == 1 and reply["captured"] == {}

    store = store_for_dataset(load_policy(str(path)).policy, "files")
    changes = logged_changes(store, "files")
    assert {c.key for c in changes} == {"docs/report.txt", "images/caf\u00e9 \u2615.png", "gone.txt"}
    report = [json.loads(c.line) for c in changes if c.key == "docs/report.txt" and c.line]
    assert len(report) == 2 and {r["version"] for r in report} == {v1["VersionId"], events[1]["s3"]["object"]["versionId"]}
    for record in report:  # every captured version's content is in its blob
        blob = store.get(layout.blob_key("files", record["sha256"]))
        assert blob == bodies[record["version"]]
        assert hashlib.sha256(blob).hexdigest() == record["sha256"]
        assert record["tags"] == {"team": "data"} and record["metadata"] == {"owner": "ops"}
    final = latest_versions(store, "files")
    assert final[json.dumps("gone.txt")].event == "remove"
    assert json.loads(final[json.dumps("docs/report.txt")].line)["sha256"] == hashlib.sha256(b"second draft\n").hexdigest()

    code, out, err = cli(capsys, "--policy", str(path), "verify", "--log", "files")
    assert code == 0, out + err  # the handler's segments: checksums, order, no holes
    # the lines are what a snapshot of the bucket writes
    code, _, err = cli(capsys, "--policy", str(path), "run", "files")
    assert code == 0, err
    manifest = latest(store, "files")
    assert manifest is not None
    snapshot = {r["key"]: canonical_json(r) for r in listing_records(store, manifest)}
    assert set(snapshot) == {"docs/report.txt", "images/caf\u00e9 \u2615.png"}
    for key, line in snapshot.items():
        assert final[json.dumps(key)].line == line, key


def test_a_bad_notification_is_one_clear_error(moto_server: Any, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from handlers import aws_capture

    from cloudkeep.errors import UsageError

    path = tmp_path / "cloudkeep.yaml"
    path.write_text(yaml.safe_dump({
        "version": 1, "stores": {"vault": {"type": "file", "path": str(tmp_path / "v")}},
        "tiers": {"t": {"schedule": "0 2 * * *", "rpo": "26h", "retention": {"last": 1}}},
        "datasets": {"files": {"source": {"type": "s3", "bucket": "some-bucket", "region": REGION},
                               "tier": "t", "store": "vault", "continuous": True}}}))
    monkeypatch.setenv("CLOUDKEEP_POLICY", str(path))
    with pytest.raises(UsageError, match="bad S3 event: .*sequencer"):
        aws_capture.objects({"Records": [{"eventName": "ObjectCreated:Put", "eventTime": "2026-01-01T00:00:00Z",
                                          "s3": {"bucket": {"name": "some-bucket"},
                                                 "object": {"key": "a", "sequencer": "zz"}}}]},
                            LambdaContext())
    with pytest.raises(UsageError, match="not an S3 notification"):
        aws_capture.objects({"hello": "world"}, LambdaContext())
