"""Packaging: the declared dependencies, the extras, the built wheel in fresh virtualenvs.

- The pinned requirement files are derived from pyproject.toml and every import is declared
  (tools/requirements.py, also run by `make lint`).
- A missing SDK is one line naming the extra (cloudkeep.extras).
- The wheel builds; fresh virtualenvs with ``[aws]``, ``[gcp]`` and ``[azure]`` (installed from
  the wheel, nothing else from this checkout) each back up, verify and restore their cloud's
  source on its emulator into their cloud's store, encrypted; a virtualenv without an extra
  gets the one-line hint and exit 2.

Speed: the dependencies are downloaded once into a wheelhouse kept in ``~/.cache/cloudkeep-tests``
(keyed by the pins; downloaded again when they change), and the virtualenvs are installed from it
offline, in parallel, once per session.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tools import requirements as reqs

from cloudkeep.cli import entrypoint
from cloudkeep.errors import EXIT_USAGE, StoreUnreachableError
from cloudkeep.extras import MissingExtraError, distribution_of, hint, translated
from conftest import REGION, ROOT, unique

pytestmark = pytest.mark.emulator

MARKER = "PLAINTEXT-MARKER-5f1d"
# Outside the checkout, so that a fresh clone on the same machine (CI) finds it; keyed by the pins.
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cloudkeep-tests"
VENVS = ("core", "aws", "gcp", "azure")


# --------------------------------------------------------------------------------------------
# The requirement files and the import audit


def test_requirement_files_are_derived_from_pyproject_and_every_import_is_declared() -> None:
    assert reqs.check() == []
    groups = reqs.lists()
    assert {"aws", "gcp", "azure", "all"} <= set(groups)
    core = {r.name.lower() for r in groups["core"]}
    assert "cryptography" in core  # encryption is the core's
    assert not core & {"boto3", "botocore", "google-cloud-storage", "azure-cosmos"}  # clouds are extras
    assert {"boto3"} <= set(reqs.expand(groups, "aws"))
    assert {"google-cloud-firestore", "google-cloud-storage", "requests"} <= set(reqs.expand(groups, "gcp"))
    assert {"azure-cosmos", "azure-storage-blob"} <= set(reqs.expand(groups, "azure"))
    # each function bundle keeps only its own cloud
    aws = (ROOT / "handlers" / "requirements-aws.txt").read_text()
    gcp = (ROOT / "handlers" / "requirements-gcp.txt").read_text()
    azure = (ROOT / "handlers" / "azure" / "requirements.txt").read_text()
    assert "boto3==" in aws and "google" not in aws and "azure" not in aws and "click" not in aws
    assert "google-cloud-firestore==" in gcp and "boto3" not in gcp and "azure" not in gcp
    assert "azure-cosmos==" in azure and "boto3" not in azure and "google" not in azure


def test_the_check_reports_drift(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pins = tmp_path / "requirements.txt"
    text = reqs.PINS.read_text()
    pins.write_text(text.replace("cryptography==", "cryptography==1.").replace("rich==", "nothing==")
                    + "leftpad==1.0\n")
    monkeypatch.setattr(reqs, "PINS", pins)
    problems = "\n".join(reqs.check())
    assert "cryptography==1." in problems and "outside pyproject.toml's range" in problems
    assert "no pin for rich" in problems
    assert "leftpad is pinned but pyproject.toml does not declare it" in problems

    bundle = tmp_path / "requirements-aws.txt"
    bundle.write_text((ROOT / "handlers" / "requirements-aws.txt").read_text() + "requests==2.0\n")
    monkeypatch.setattr(reqs, "PINS", reqs.ROOT / "requirements.txt")
    monkeypatch.setattr(reqs, "BUNDLES", {str(bundle): reqs.BUNDLES["handlers/requirements-aws.txt"]})
    assert any("is out of date" in p for p in reqs.check())


def test_an_undeclared_sdk_import_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    found = reqs.third_party_imports()
    assert "google.cloud.storage.fileio.BlobWriter" in found or any(
        m.startswith("google.cloud.storage") for m in found)
    monkeypatch.setattr(reqs, "third_party_imports", lambda: {"snowflake.connector": ["x.py"],
                                                              "google.cloud.bigquery": ["y.py"]})
    problems = reqs.check_imports(reqs.lists())
    assert len(problems) == 2 and all("does not map" in p for p in problems)


# --------------------------------------------------------------------------------------------
# The hint


def test_a_missing_sdk_is_one_line_naming_the_extra() -> None:
    assert distribution_of("google.cloud.storage.fileio") == ("google-cloud-storage", "gcp")
    assert distribution_of("botocore.exceptions") == ("botocore", "aws")
    assert distribution_of("azure.storage.blob") == ("azure-storage-blob", "azure")
    assert distribution_of("cryptography.hazmat.primitives") == ("cryptography", None)
    assert distribution_of("numpy") is None

    error = hint(ModuleNotFoundError("No module named 'google'", name="google.cloud.storage"))
    assert isinstance(error, MissingExtraError) and error.exit_code == EXIT_USAGE == 2
    assert str(error) == ("google-cloud-storage is not installed (No module named "
                          "'google.cloud.storage'): pip install 'cloudkeep[gcp]'")
    assert "\n" not in str(error)
    core = hint(ModuleNotFoundError(name="cryptography"))
    assert core is not None and str(core).endswith("pip install cryptography")

    # wrapped by an adapter (raise ... from, or raised while handling it): still found
    try:
        try:
            raise ModuleNotFoundError("No module named 'boto3'", name="boto3")
        except ModuleNotFoundError as exc:
            raise StoreUnreachableError("store unreachable") from exc
    except StoreUnreachableError as wrapped:
        found = hint(wrapped)
        assert found is not None and found.extra == "aws" and found.__cause__ is wrapped

    assert hint(ModuleNotFoundError(name="numpy")) is None  # not ours: stays the bug it is
    assert hint(ValueError("x")) is None
    with pytest.raises(MissingExtraError, match=r"pip install 'cloudkeep\[azure\]'"), translated():
        raise ModuleNotFoundError(name="azure.cosmos")
    with pytest.raises(KeyError), translated():
        raise KeyError("passes through")


# --------------------------------------------------------------------------------------------
# The wheel in fresh virtualenvs


def _run(*args: str | Path, timeout: float = 600, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, env=env)
    assert done.returncode == 0, f"{args}: {done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done.stdout


def _cloud_pins() -> list[str]:
    """The pins of the core and the three cloud extras (what the virtualenvs install)."""
    groups = reqs.lists()
    pins, problems = reqs.read_pins()
    assert not problems
    wanted = {r.name.lower(): r for r in groups["core"]} | reqs.expand(groups, "all")
    return sorted(f"{pins[name][0]}=={pins[name][2]}" for name in wanted)


def _wheelhouse(pip: Path) -> Path:
    """Every dependency's wheel (and the build backend), downloaded once per set of pins."""
    pins = _cloud_pins()
    key = hashlib.sha256("\n".join(pins).encode()).hexdigest()[:16]
    house = CACHE / f"wheelhouse-{key}"
    if (house / ".complete").exists():
        return house
    partial = CACHE / f"wheelhouse-{key}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    _run(pip, "download", "-q", "-d", partial, "setuptools>=68", "wheel", *pins, timeout=900)
    (partial / ".complete").write_text("\n".join(pins) + "\n")
    shutil.rmtree(house, ignore_errors=True)
    partial.rename(house)
    return house


@pytest.fixture(scope="session")
def venvs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """Fresh virtualenvs, one per extra (and one with the core only), installed from the built
    wheel and the wheelhouse, offline. Each yields its bin/ directory."""
    pip = Path(sys.executable).parent / "pip"
    house = _wheelhouse(pip)
    base = tmp_path_factory.mktemp("venvs")
    offline = ("--no-index", "--find-links", str(house))
    source = base / "source"  # a clean copy: no stale build/ or egg-info of the checkout ends up in it
    shutil.copytree(ROOT / "shared" / "cloudkeep", source / "shared" / "cloudkeep",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    _run(pip, "wheel", "-q", "--no-deps", *offline, "-w", base / "dist", source, timeout=600)
    [wheel] = (base / "dist").glob("cloudkeep-*.whl")
    installs = []
    for name in VENVS:
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(base / name)], check=True)
        target = str(wheel) if name == "core" else f"{wheel}[{name}]"
        installs.append(subprocess.Popen(
            [str(pip), "--python", str(base / name / "bin" / "python"), "install", "-q", "--no-compile",
             *offline, target], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    for name, process in zip(VENVS, installs, strict=True):
        out, _ = process.communicate(timeout=900)
        assert process.returncode == 0, f"installing {name}: {out[-4000:]}"
    yield {name: base / name / "bin" for name in VENVS}


def cloudkeep(bin_dir: Path, *args: str | Path, cwd: Path,
              **extra_env: str) -> subprocess.CompletedProcess[str]:
    """The virtualenv's own `cloudkeep` command: nothing from this checkout on its path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")} | extra_env
    env["PATH"] = f"{bin_dir}:/usr/bin:/bin"
    return subprocess.run([str(bin_dir / "cloudkeep"), *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


def ok(bin_dir: Path, *args: str | Path, cwd: Path) -> str:
    done = cloudkeep(bin_dir, *args, cwd=cwd)
    assert done.returncode == 0, f"cloudkeep {args}: {done.stdout}\n{done.stderr}"
    return done.stdout


def encrypted_policy(path: Path, policy: dict[str, Any]) -> Path:
    """The policy with a local key (created by the virtualenv's CLI) encrypting every dataset."""
    key = path.parent / "cloudkeep.key"
    assert entrypoint(["keys", "create", "--path", str(key)]) == 0  # (the core's: in-process is quicker)
    policy = {"version": policy["version"], "keys": {"offline": {"provider": "local", "path": str(key)}},
              "encryption": {"keys": ["offline"]}, **{k: v for k, v in policy.items() if k != "version"}}
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    return path


def round_trip(bin_dir: Path, policy: Path, dataset: str, into: str) -> dict[str, Any]:
    """Back up, verify and restore with the virtualenv's CLI; returns the snapshot as `show`
    prints it."""
    cwd = policy.parent
    ok(bin_dir, "--policy", policy, "run", dataset, cwd=cwd)
    ref = f"{dataset}@latest"
    assert "OK" in ok(bin_dir, "--policy", policy, "verify", ref, cwd=cwd)
    shown: dict[str, Any] = json.loads(ok(bin_dir, "--policy", policy, "--format", "json", "show", ref, cwd=cwd))
    assert shown["codec"]["encryption"]["keys"], "the snapshot is not encrypted"
    ok(bin_dir, "--policy", policy, "restore", ref, "--into", into, cwd=cwd)
    return shown


def assert_no_plaintext(objects: dict[str, bytes]) -> None:
    assert any("/part-" in key for key in objects), sorted(objects)
    leaked = [key for key, body in objects.items() if MARKER.encode() in body]
    assert not leaked, f"plaintext in {leaked}"


def test_the_wheel_installs_the_core_alone(venvs: dict[str, Path], tmp_path: Path) -> None:
    where = _run(venvs["core"] / "python", "-c", "import cloudkeep, sys; print(cloudkeep.__file__)")
    assert where.startswith(str(venvs["core"].parent)), where  # the wheel, not this checkout
    probe = "import importlib.util as u; print([m for m in ('boto3', 'google', 'azure', 'cryptography') if u.find_spec(m)])"
    assert _run(venvs["core"] / "python", "-c", probe).strip() == "['cryptography']"  # no cloud SDK
    ok(venvs["core"], "keys", "create", "--path", tmp_path / "k.key", cwd=tmp_path)  # encryption: core
    assert (Path(where.strip()).parent / "py.typed").is_file()  # the Python API is typed (PEP 561)


def test_aws_extra_backs_up_verifies_and_restores_dynamodb_encrypted(
    venvs: dict[str, Path], ddb_resource: Any, s3_bucket: str, tmp_path: Path,
) -> None:
    import boto3

    table = unique("orders")
    created = ddb_resource.create_table(
        TableName=table, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
    created.wait_until_exists()
    items = [{"pk": f"order#{i:03}", "note": f"{MARKER} {i}", "n": i} for i in range(40)]
    with created.batch_writer() as batch:
        for item in items:
            batch.put_item(Item=item)
    policy = encrypted_policy(tmp_path / "cloudkeep.yaml", {
        "version": 1,
        "stores": {"vault": {"type": "s3", "bucket": s3_bucket, "prefix": "ck", "region": REGION}},
        "tiers": {"standard": {"schedule": "0 2 * * *", "rpo": "26h", "retention": {"daily": 7}}},
        "datasets": {"orders": {"source": {"type": "dynamodb", "table": table, "region": REGION},
                                "tier": "standard", "store": "vault"}},
    })
    target = unique("restored")
    round_trip(venvs["aws"], policy, "orders", target)

    restored = ddb_resource.Table(target).scan()["Items"]
    assert sorted(restored, key=lambda i: i["pk"]) == items
    s3 = boto3.client("s3", region_name=REGION)
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=s3_bucket)
            for o in page.get("Contents", [])]
    assert_no_plaintext({k: s3.get_object(Bucket=s3_bucket, Key=k)["Body"].read() for k in keys})


def test_gcp_extra_backs_up_verifies_and_restores_firestore_encrypted(
    venvs: dict[str, Path], firestore_rest: Any, gcp_project: str, gcs_bucket: str, tmp_path: Path,
) -> None:
    from google.cloud import storage

    from fixtures_gcp import gcp_policy

    docs = {f"users/u{i}": {"note": {"stringValue": f"{MARKER} {i}"}, "n": {"integerValue": str(i)}}
            for i in range(20)}
    docs["users/u1/orders/o1"] = {"total": {"doubleValue": 12.5}}
    firestore_rest.write(docs)
    written = gcp_policy(tmp_path, project=gcp_project, bucket=gcs_bucket, collections=["users"])
    policy = encrypted_policy(written, yaml.safe_load(written.read_text()))
    round_trip(venvs["gcp"], policy, "profiles", "restored_")

    after = firestore_rest.documents()
    restored = {name[len("restored_"):]: fields for name, fields in after.items()
                if name.startswith("restored_")}
    assert restored == docs
    blobs = storage.Client(project="test").list_blobs(gcs_bucket)
    assert_no_plaintext({b.name: b.download_as_bytes() for b in blobs})


def test_azure_extra_backs_up_verifies_and_restores_cosmos_encrypted(
    venvs: dict[str, Path], cosmos_server: Any, cosmos_client: Any, cosmos_database: str,
    azure_container: str, azurite: Any, tmp_path: Path,
) -> None:
    from azure.cosmos import PartitionKey
    from azure.storage.blob import ContainerClient

    from fixtures_azure import cosmos_policy

    container = cosmos_client.get_database_client(cosmos_database).create_container(
        "carts", partition_key=PartitionKey(path="/pk"))
    items = [{"id": f"c{i}", "pk": f"p{i % 3}", "note": f"{MARKER} {i}", "n": i} for i in range(25)]
    for item in items:
        container.upsert_item(item)
    written = cosmos_policy(tmp_path, endpoint=cosmos_server.endpoint, database=cosmos_database,
                            container="carts",
                            store={"type": "azure_blob", "container": azure_container, "prefix": "backups"})
    policy = encrypted_policy(written, yaml.safe_load(written.read_text()))
    round_trip(venvs["azure"], policy, "carts", "carts_restored")

    restored = cosmos_client.get_database_client(cosmos_database).get_container_client("carts_restored")
    got = [{k: v for k, v in doc.items() if not k.startswith("_")}
           for doc in restored.query_items("SELECT * FROM c", enable_cross_partition_query=True)]
    assert sorted(got, key=lambda d: d["id"]) == sorted(items, key=lambda d: d["id"])
    blobs = ContainerClient.from_connection_string(azurite.connection_string, azure_container)
    assert_no_plaintext({b.name: blobs.download_blob(b.name).readall() for b in blobs.list_blobs()})


@pytest.mark.parametrize(("venv", "source", "extra"), [
    ("core", {"type": "dynamodb", "table": "orders-table", "region": REGION}, "aws"),
    ("aws", {"type": "firestore", "project": "p-hint"}, "gcp"),
    ("gcp", {"type": "cosmos", "endpoint": "https://127.0.0.1:9/", "database": "d", "container": "c"}, "azure"),
    ("azure", {"type": "dynamodb", "table": "orders-table", "region": REGION}, "aws"),
])
def test_without_the_extra_a_one_line_hint(venvs: dict[str, Path], tmp_path: Path, venv: str,
                                           source: dict[str, Any], extra: str) -> None:
    policy = tmp_path / "cloudkeep.yaml"
    policy.write_text(yaml.safe_dump({
        "version": 1,
        "stores": {"vault": {"type": "file", "path": str(tmp_path / "vault")}},
        "tiers": {"standard": {"schedule": "0 2 * * *", "rpo": "26h", "retention": {"daily": 7}}},
        "datasets": {"data": {"source": source, "tier": "standard", "store": "vault"}},
    }))
    done = cloudkeep(venvs[venv], "--policy", policy, "run", "data", cwd=tmp_path, COSMOS_KEY="k")
    assert done.returncode == EXIT_USAGE, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    wanted = "is not installed (No module named"
    [line] = [line for line in done.stderr.splitlines() if wanted in line]  # one line, no more
    assert line.endswith(f"pip install 'cloudkeep[{extra}]'"), line
    assert "failed" in done.stdout and "cloudkeep[" in done.stdout  # the run's table says it too
    assert not any((tmp_path / "vault").rglob("manifest*"))  # nothing committed
