"""Continuous capture of a versioned S3 bucket on moto server (issue #21): object versions and
delete markers become changes (content into the dataset's blobs), `restore --at` a moment
between two phases and the last capture, `history` of one object. Phases are separated by
waiting for the next whole second on the clock."""

from __future__ import annotations

import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from cloudkeep import layout
from cloudkeep.stores.file import FileStore
from conftest import REGION
from helpers import cli, cli_json
from test_continuous_dynamodb import next_second


@pytest.fixture
def s3(moto_server: Any) -> Any:
    import boto3

    return boto3.client("s3", region_name=REGION)


def bucket_of(s3: Any, prefix: str, *, versioned: bool = True) -> str:
    name = f"{prefix}-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=name)
    if versioned:
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


def contents(s3: Any, bucket: str) -> dict[str, bytes]:
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            out[obj["Key"]] = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
    return out


def policy_for(tmp_path: Path, bucket: str) -> str:
    doc = {"version": 1, "stores": {"vault": {"type": "file", "path": str(tmp_path / "vault")}},
           "tiers": {"standard": {"schedule": "0 2 * * *", "rpo": "26h",
                                  "retention": {"last": 3}, "continuous": True}},
           "datasets": {"files": {"source": {"type": "s3", "bucket": bucket, "region": REGION},
                                  "tier": "standard", "store": "vault"}}}
    path = tmp_path / "cloudkeep.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(path)


def test_object_versions_restore_to_a_moment_and_list_history(
        s3: Any, tmp_path: Path, capsys: Any) -> None:
    bucket = bucket_of(s3, "cont")
    policy = policy_for(tmp_path, bucket)
    for key in ("a.txt", "b.txt", "c.txt"):
        s3.put_object(Bucket=bucket, Key=key, Body=f"{key} v0".encode())
    assert cli(capsys, "--policy", policy, "run", "files")[0] == 0
    next_second()
    s3.put_object(Bucket=bucket, Key="a.txt", Body=b"a v1")
    s3.delete_object(Bucket=bucket, Key="b.txt")
    s3.put_object(Bucket=bucket, Key="d/e.bin", Body=bytes(range(256)))
    phase1 = contents(s3, bucket)
    second_phase = next_second()
    first = cli_json(capsys, "--policy", policy, "capture", "files", "--once")
    assert first["changes"] == 3 + 3 and first["gaps"] == []
    s3.put_object(Bucket=bucket, Key="a.txt", Body=b"a v2")
    s3.delete_object(Bucket=bucket, Key="c.txt")
    live = contents(s3, bucket)
    done = cli_json(capsys, "--policy", policy, "capture", "files", "--once")
    assert done["changes"] == 2
    assert cli_json(capsys, "--policy", policy, "capture", "files", "--once")["changes"] == 0

    before = (second_phase - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    then = bucket_of(s3, "then", versioned=False)
    cli_json(capsys, "--policy", policy, "restore", "files", "--at", before, "--into", then)
    assert contents(s3, then) == phase1
    now = bucket_of(s3, "now", versioned=False)
    cli_json(capsys, "--policy", policy, "restore", "files", "--at", done["caught_up"],
             "--into", now)
    assert contents(s3, now) == live

    versions = cli_json(capsys, "--policy", policy, "history", "files", "--key", '"a.txt"')
    logged = [v for v in versions if v["event"] != "snapshot"]
    assert [v["event"] for v in logged] == ["insert", "modify", "modify"]
    assert [v["item"]["size"] for v in logged] == [len(b"a.txt v0"), 4, 4]
    assert sum(1 for v in versions if v["event"] == "snapshot") == 1
    gone = cli_json(capsys, "--policy", policy, "history", "files", "--key", '"b.txt"')
    assert [v["event"] for v in gone if v["event"] != "snapshot"] == ["insert", "remove"]

    # the blobs the log references stay through prune; the log before the oldest kept
    # snapshot goes
    assert cli(capsys, "--policy", policy, "prune", "files")[0] == 0
    store = FileStore(str(tmp_path / "vault"))
    assert any(True for _ in store.list(layout.changelog_index_prefix("files")))
    cli_json(capsys, "--policy", policy, "restore", "files", "--at", done["caught_up"],
             "--into", f"{now}/again")
    assert {k.split("/", 1)[1]: v for k, v in contents(s3, now).items() if k.startswith("again/")} == live


def test_an_unversioned_bucket_is_refused_with_the_reason(s3: Any, tmp_path: Path, capsys: Any) -> None:
    bucket = bucket_of(s3, "plain", versioned=False)
    policy = policy_for(tmp_path, bucket)
    code, _, err = cli(capsys, "--policy", policy, "capture", "files", "--once")
    assert code == 1 and "versioning" in err
