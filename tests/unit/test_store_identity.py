"""Store identity and copy arithmetic (issue #17.7): a copy at the location of the primary store
or of another copy store is no second copy, and ``min_copies`` above the copy stores at distinct
locations would keep retention from ever removing anything. Every command loading the policy
refuses both, with exit 2 and the field path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cloudkeep.errors import PolicyError
from cloudkeep.policy import (
    AzureBlobStoreSpec,
    FileStoreSpec,
    GcsStoreSpec,
    S3StoreSpec,
    StoreLocation,
    parse_policy,
)

CLI = Path(sys.executable).with_name("cloudkeep")


def policy(stores: str, *, copy_to: str = "[]", min_copies: int = 0, dataset_copy_to: str | None = None,
           store: str = "vault") -> str:
    override = f", copy_to: {dataset_copy_to}" if dataset_copy_to is not None else ""
    return f"""\
version: 1
stores:
{stores}
tiers:
  t: {{schedule: "0 2 * * *", rpo: 26h, retention: {{daily: 7}}, copy_to: {copy_to}, min_copies: {min_copies}}}
datasets:
  orders: {{source: {{type: dynamodb, table: orders, region: eu-west-1}}, tier: t, store: {store}{override}}}
"""


def problems(text: str, base_dir: Path | None = None) -> list[str]:
    with pytest.raises(PolicyError) as err:
        parse_policy(text, source="p.yaml", base_dir=base_dir)
    return err.value.problems


# ---------------------------------------------------------------------------- same location


@pytest.mark.parametrize(("a", "b"), [
    ("./backups", "backups/"),
    ("./backups", "./x/../backups"),
    ("backups", "{base}/backups"),
], ids=["trailing-slash", "dot-dot", "relative-vs-absolute"])
def test_file_stores_at_the_same_folder(tmp_path: Path, a: str, b: str) -> None:
    stores = f"  vault: {{type: file, path: {a}}}\n  copy: {{type: file, path: {b.format(base=tmp_path)}}}"
    found = problems(policy(stores, copy_to="[copy]"), tmp_path)
    assert found == [f"p.yaml:6: tiers.t.copy_to.0: store 'copy' is at the same location as 'vault', "
                     f"the store of dataset 'orders' (folder {tmp_path}/backups): a copy there is no "
                     "second copy"]


def test_a_file_store_through_a_symbolic_link_is_the_same_folder(tmp_path: Path) -> None:
    (tmp_path / "backups").mkdir()
    os.symlink(tmp_path / "backups", tmp_path / "alias")
    stores = "  vault: {type: file, path: ./backups}\n  copy: {type: file, path: ./alias}"
    assert "is at the same location as 'vault'" in problems(policy(stores, copy_to="[copy]"), tmp_path)[0]


def test_a_copy_inside_the_primary_folder_overlaps(tmp_path: Path) -> None:
    stores = "  vault: {type: file, path: ./backups}\n  copy: {type: file, path: ./backups/copy}"
    (found,) = problems(policy(stores, copy_to="[copy]"), tmp_path)
    assert f"(folder {tmp_path}/backups/copy) overlaps 'vault'" in found and "one inside the other" in found


def test_distinct_folders_are_fine(tmp_path: Path) -> None:
    stores = "  vault: {type: file, path: ./backups}\n  copy: {type: file, path: ./backups-copy}"
    parsed = parse_policy(policy(stores, copy_to="[copy]", min_copies=1), base_dir=tmp_path)
    assert parsed.tiers["t"].min_copies == 1


@pytest.mark.parametrize(("a", "b", "same"), [
    ({"prefix": "/x/"}, {"prefix": "x"}, True),
    ({"prefix": "x", "region": "eu-west-1"}, {"prefix": "x", "region": "us-east-1"}, True),
    ({}, {"endpoint_url": "https://s3.eu-west-1.amazonaws.com/"}, True),
    ({}, {"endpoint_url": "https://s3-eu-west-1.amazonaws.com"}, True),
    ({"endpoint_url": "http://127.0.0.1:9000"}, {"endpoint_url": "HTTP://user:secret@127.0.0.1:9000/"}, True),
    ({"endpoint_url": "https://minio.example"}, {"endpoint_url": "https://minio.example:443/"}, True),
    ({"prefix": "x"}, {"prefix": "x/y"}, True),
    ({"prefix": ""}, {"prefix": "y"}, True),
    ({"prefix": "x"}, {"prefix": "xy"}, False),
    ({"prefix": "x"}, {"prefix": "y"}, False),
    ({}, {"endpoint_url": "http://127.0.0.1:9000"}, False),
    ({"endpoint_url": "http://127.0.0.1:9000"}, {"endpoint_url": "http://127.0.0.1:9001"}, False),
    ({"bucket": "other-bucket"}, {}, False),
])
def test_s3_locations(a: dict[str, str], b: dict[str, str], same: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)

    def spec(extra: dict[str, str]) -> S3StoreSpec:
        return S3StoreSpec.model_validate({"type": "s3", "bucket": "acme-b", "region": "eu-west-1"} | extra)

    assert spec(a).location().overlaps(spec(b).location()) is same


def test_s3_without_endpoint_follows_boto3s_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    plain = S3StoreSpec(type="s3", bucket="acme-b", region="eu-west-1")
    local = S3StoreSpec(type="s3", bucket="acme-b", region="eu-west-1", endpoint_url="http://127.0.0.1:5000")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:5000/")
    assert plain.location() == local.location()
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:6000")
    assert plain.location() != local.location()


def test_gcs_and_azure_locations(monkeypatch: pytest.MonkeyPatch) -> None:
    a = GcsStoreSpec(type="gcs", bucket="acme-b", prefix="x", project="one")
    b = GcsStoreSpec(type="gcs", bucket="acme-b", prefix="/x/", project="two")
    assert a.location() == b.location()
    assert not a.location().overlaps(GcsStoreSpec(type="gcs", bucket="acme-c", prefix="x").location())
    monkeypatch.delenv("AZ_ONE", raising=False)
    monkeypatch.delenv("AZ_TWO", raising=False)

    def blob(**kw: str) -> StoreLocation:
        return AzureBlobStoreSpec.model_validate({"type": "azure_blob", "container": "backups"} | kw).location()

    assert blob(account_url="https://acme.blob.core.windows.net/", connection_string_env="AZ_ONE") == blob(
        account_url="HTTPS://ACME.blob.core.windows.net:443", connection_string_env="AZ_TWO")
    assert blob(account_url="https://acme.blob.core.windows.net", connection_string_env="AZ_ONE") != blob(
        account_url="https://other.blob.core.windows.net", connection_string_env="AZ_ONE")
    # the connection string wins when it is set, as it does for the store itself
    monkeypatch.setenv("AZ_ONE", "DefaultEndpointsProtocol=https;AccountName=acme;AccountKey=c2VjcmV0;"
                                 "EndpointSuffix=core.windows.net")
    assert blob(connection_string_env="AZ_ONE") == blob(account_url="https://acme.blob.core.windows.net",
                                                        connection_string_env="AZ_TWO")
    monkeypatch.setenv("AZ_TWO", "AccountName=devstoreaccount1;AccountKey=a2V5;"
                                 "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1/")
    assert blob(connection_string_env="AZ_TWO", account_url="https://acme.blob.core.windows.net") != blob(
        connection_string_env="AZ_ONE")
    assert "c2VjcmV0" not in str(blob(connection_string_env="AZ_ONE"))


def test_the_location_of_a_file_store_is_its_resolved_folder(tmp_path: Path) -> None:
    assert FileStoreSpec(type="file", path=f"{tmp_path}/a/../b/").location() == StoreLocation(
        "file", "", "", f"{tmp_path}/b")


# ------------------------------------------------------------------------ copies of a dataset


def test_a_copy_store_listed_twice_or_at_the_same_place_as_another(tmp_path: Path) -> None:
    stores = ("  vault: {type: file, path: ./backups}\n  far: {type: file, path: /srv/far}\n"
              "  far2: {type: file, path: /srv/far/}")
    assert problems(policy(stores, copy_to="[far, far]"), tmp_path) == [
        "p.yaml:7: tiers.t.copy_to.1: store 'far' is listed twice"]
    assert problems(policy(stores, copy_to="[far, far2]"), tmp_path) == [
        "p.yaml:7: tiers.t.copy_to.1: store 'far2' is at the same location as store 'far' (folder "
        "/srv/far): a copy there is no second copy"]
    assert problems(policy(stores, dataset_copy_to="[far, far2]"), tmp_path) == [
        "p.yaml:9: datasets.orders.copy_to.1: store 'far2' is at the same location as store 'far' "
        "(folder /srv/far): a copy there is no second copy"]


def test_the_dataset_own_store_in_the_tiers_copy_to(tmp_path: Path) -> None:
    stores = "  vault: {type: file, path: ./backups}\n  far: {type: file, path: /srv/far}"
    assert problems(policy(stores, copy_to="[far, vault]"), tmp_path) == [
        "p.yaml:6: tiers.t.copy_to.1: store 'vault' is the store of dataset 'orders': a copy there "
        "is no second copy"]


def test_min_copies_above_the_distinct_copy_stores(tmp_path: Path) -> None:
    stores = ("  vault: {type: file, path: ./backups}\n  far: {type: file, path: /srv/far}\n"
              "  other: {type: file, path: /srv/other}")
    assert problems(policy(stores, copy_to="[]", min_copies=1), tmp_path) == [
        "p.yaml:7: tiers.t.min_copies: min_copies: 1 needs as many copy stores at distinct "
        "locations, but copy_to names 0: retention could never remove a snapshot"]
    assert problems(policy(stores, copy_to="[far]", min_copies=2), tmp_path)[0].startswith(
        "p.yaml:7: tiers.t.min_copies: min_copies: 2 needs")
    parse_policy(policy(stores, copy_to="[far, other]", min_copies=2), base_dir=tmp_path)
    # a dataset's own copy_to: counted for that dataset
    assert problems(policy(stores, copy_to="[far, other]", min_copies=2, dataset_copy_to="[far]"),
                    tmp_path) == [
        "p.yaml:9: datasets.orders.copy_to: tier 't' needs 2 verified copies (min_copies) but "
        "dataset 'orders' copies to 1 store(s) at distinct locations: retention could never remove "
        "its snapshots"]
    parse_policy(policy(stores, copy_to="[]", min_copies=2, dataset_copy_to="[far, other]"),
                 base_dir=tmp_path)


def test_min_copies_counts_only_copies_away_from_the_primary(tmp_path: Path) -> None:
    stores = ("  vault: {type: file, path: ./backups}\n  far: {type: file, path: /srv/far}\n"
              "  twin: {type: file, path: ./backups/}")
    found = problems(policy(stores, copy_to="[far, twin]", min_copies=2), tmp_path)
    assert found[0].startswith("p.yaml:7: tiers.t.copy_to.1: store 'twin' is at the same location as 'vault'")
    assert found[1] == ("p.yaml:7: tiers.t.min_copies: tier 't' needs 2 verified copies (min_copies) "
                        "but dataset 'orders' copies to 1 store(s) at distinct locations: retention "
                        "could never remove its snapshots")


@pytest.mark.parametrize("command", [["validate"], ["plan"], ["list"], ["run"], ["prune", "--dry-run"],
                                     ["report"]])
def test_every_command_refuses_such_a_policy(tmp_path: Path, command: list[str]) -> None:
    stores = ("  vault: {type: s3, bucket: acme-b, prefix: x, region: eu-west-1}\n"
              "  copy: {type: s3, bucket: acme-b, prefix: /x/, region: us-east-1}")
    (tmp_path / "p.yaml").write_text(policy(stores, copy_to="[copy]", min_copies=1))
    env = {"PATH": "/usr/bin:/bin", "NO_COLOR": "1"}
    result = subprocess.run([str(CLI), "--policy", "p.yaml", *command], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120, env=env)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "p.yaml:6: tiers.t.copy_to.0: store 'copy' is at the same location as 'vault'" in result.stderr
    assert "p.yaml:6: tiers.t.min_copies: tier 't' needs 1 verified copies" in result.stderr
