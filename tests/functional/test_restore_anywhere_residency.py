"""Residency of a restore target that already exists elsewhere (issue #23 §2), on moto server: an
S3 bucket keeps its own region whatever ``--region`` (or the source's region) says, so a restore
into an existing bucket outside ``residency.allowed_regions`` is refused before anything is
written — no object, no audit record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import REGION, unique
from helpers import cli, cli_json

pytestmark = pytest.mark.emulator


def test_an_existing_bucket_in_a_region_outside_residency_is_refused_unwritten(
        moto_server: Any, tmp_path: Path, capsys: Any) -> None:
    import boto3

    s3 = boto3.client("s3", region_name=REGION)
    bucket = f"src-{unique('b').replace('_', '-')}"
    s3.create_bucket(Bucket=bucket)
    for i in range(5):
        s3.put_object(Bucket=bucket, Key=f"docs/{i}.txt", Body=f"document {i}".encode())
    outside = f"far-{unique('b').replace('_', '-')}"
    s3.create_bucket(Bucket=outside,
                     CreateBucketConfiguration={"LocationConstraint": "ap-southeast-2"})
    inside = f"near-{unique('b').replace('_', '-')}"
    s3.create_bucket(Bucket=inside)
    policy = {
        "version": 1,
        "residency": {"allowed_regions": [REGION]},
        "stores": {"vault": {"type": "file", "path": str(tmp_path / "vault")}},
        "tiers": {"t": {"schedule": "0 2 * * *", "rpo": "26h", "retention": {"daily": 7}}},
        "datasets": {"files": {"source": {"type": "s3", "bucket": bucket, "region": REGION},
                               "tier": "t", "store": "vault"}},
    }
    path = tmp_path / "cloudkeep.yaml"
    path.write_text(yaml.safe_dump(policy))
    [row] = cli_json(capsys, "--policy", str(path), "run", "files")
    ref = f"files@{row['snapshot_id']}"
    before = sorted(str(p) for p in (tmp_path / "vault").rglob("*"))
    for extra in ([], ["--region", REGION]):  # the region checked is not where the bucket is
        code, out, err = cli(capsys, "--policy", str(path), "restore", ref,
                             "--into", f"{outside}/restored", *extra)
        assert code == 2, out + err
        assert err.strip().splitlines() == [
            f"error: refusing to restore into '{outside}/restored': it exists in region "
            f"'ap-southeast-2', outside residency.allowed_regions ({REGION}); nothing was written"]
    assert s3.list_objects_v2(Bucket=outside).get("KeyCount", 0) == 0
    assert sorted(str(p) for p in (tmp_path / "vault").rglob("*")) == before  # not even an audit
    # an existing bucket inside, and a bucket still to be made (in the checked region), restore
    assert cli_json(capsys, "--policy", str(path), "restore", ref,
                    "--into", f"{inside}/restored")["items"] == 5
    fresh = f"new-{unique('b').replace('_', '-')}"
    assert cli_json(capsys, "--policy", str(path), "restore", ref, "--into", fresh)["items"] == 5


def test_credentials_that_cannot_be_used_fail_before_the_restore_starts(
        moto_server: Any, tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A profile that does not exist is refused (exit 3) before the restore begins: no target,
    and not even a "failed" audit record in the store — nothing was attempted."""
    import boto3

    monkeypatch.delenv("AWS_ENDPOINT_URL_DYNAMODB", raising=False)
    from test_restore_anywhere import backed_up, seed, table_names

    ddb = boto3.client("dynamodb", region_name=REGION)
    table = unique("orders")
    seed(ddb, table, 5)
    policy, ref = backed_up(tmp_path, capsys, table)
    before = sorted(str(p) for p in (tmp_path / "vault").rglob("*"))
    target = unique("x")
    code, out, err = cli(capsys, "--policy", policy, "restore", ref, "--into", target,
                         "--profile", "no-such-profile-here")
    assert code == 3, out + err
    assert "no-such-profile-here" in err and len(err.strip().splitlines()) == 1
    assert target not in table_names(ddb)
    assert sorted(str(p) for p in (tmp_path / "vault").rglob("*")) == before  # no audit record
