"""The shell examples of the docs pages that README's content moved into (issue 20.8), run as
written against DynamoDB Local: cli.md's report, observability.md's verification levels and audit
log — in a working folder whose ``cloudkeep.yaml`` backs up an ``orders`` dataset — and what each
did is checked in the store."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from tools.sample_data import ORDERS_TABLE_SCHEMA, seed

from conftest import REGION, unique

pytestmark = pytest.mark.emulator

# the repository root, wherever the tiers put this file
ROOT = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").is_file())
DOCS = ROOT / "docs"
VENV_BIN = str(Path(sys.executable).parent)
MARK = re.compile(r"<!-- test: ([\w ]+?) -->\s*\n\s*```sh[^\n]*\n(.*?)```", re.S)


def marked(doc: str) -> dict[str, str]:
    """NAME → script of the ``sh`` blocks of ``doc`` marked ``<!-- test: NAME -->``."""
    return dict(MARK.findall((DOCS / doc).read_text(encoding="utf-8")))


def run_block(script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``script`` in bash -euo pipefail, in ``cwd``, with the emulators' environment and the
    project's virtualenv first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUDKEEP_", "PYTEST"))}
    env |= {"PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin", "HOME": str(cwd)}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=300)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def records(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(folder.rglob("*.json"))]


def last_json(stdout: str, opener: str) -> str:
    """The JSON document a block's last command printed (from its first line starting with
    ``opener`` to the end), after the tables its earlier commands printed."""
    match = re.search(rf"^{re.escape(opener)}", stdout, re.M)
    assert match, stdout
    return stdout[match.start():]


def test_the_pages_examples_are_marked() -> None:
    assert set(marked("cli.md")) == {"report"}
    assert set(marked("observability.md")) == {"verification levels", "audit log"}
    assert set(marked("s3-source.md")) == {"s3 restore"}


def test_report_verification_and_audit_examples(ddb_resource: Any, tmp_path: Path) -> None:
    table = unique("orders")
    handle = ddb_resource.create_table(TableName=table, **ORDERS_TABLE_SCHEMA)
    handle.wait_until_exists()
    seed(handle, 250)
    (tmp_path / "cloudkeep.yaml").write_text(yaml.safe_dump({
        "version": 1, "stores": {"vault": {"type": "file", "path": "vault"}},
        "tiers": {"standard": {"schedule": "0 2 * * *", "rpo": "26h", "retention": {"daily": 7}}},
        "datasets": {"orders": {"source": {"type": "dynamodb", "table": table, "region": REGION},
                                "tier": "standard", "store": "vault"}}}))
    run_block("cloudkeep run orders", tmp_path)
    (snapshot,) = [p.parent.name for p in (tmp_path / "vault/orders/snapshots").glob("*/manifest.json")]

    run_block(marked("observability.md")["verification levels"], tmp_path)
    checks = records(tmp_path / "vault/orders/verifications" / snapshot)
    assert sorted(c["level"] for c in checks) == ["drill", "integrity", "sample"]
    assert all(c["ok"] for c in checks), checks
    (sample,) = [c for c in checks if c["level"] == "sample"]
    assert sample["sample"]["compared"] == 200 and sample["sample"]["matched"] == 200
    (drill,) = [c for c in checks if c["level"] == "drill"]
    assert drill["cleaned_up"] is True
    assert drill["target"] != table and "cloudkeep-drill" in drill["target"]

    audit = run_block(marked("observability.md")["audit log"], tmp_path)
    events = json.loads(last_json(audit.stdout, "["))
    assert {e["event"] for e in events} >= {"backup", "verify"}
    assert all(e["dataset"] == "orders" for e in events)

    report = run_block(marked("cli.md")["report"], tmp_path)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "orders" in page and "<script" not in page
    data = json.loads(last_json(report.stdout, "{"))
    assert data["cloudkeep_version"]
    assert "orders" in json.dumps(data["datasets"])


def empty_bucket(s3: Any, bucket: str) -> None:
    """Remove ``bucket`` (the example's fixed names) with everything in it, if it exists."""
    if bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        return
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=obj["Key"])
    s3.delete_bucket(Bucket=bucket)


def test_s3_source_restore_example(moto_server: Any, tmp_path: Path) -> None:
    import boto3

    s3 = boto3.client("s3", region_name=REGION)
    for bucket in ("acme-assets", "acme-assets-restored"):
        empty_bucket(s3, bucket)
    s3.create_bucket(Bucket="acme-assets")
    bodies = {"public/a.jpg": b"\xff\xd8jpeg" * 100, "public/img/b.png": b"\x89PNG" * 50,
              "public/tmp/c.png": b"scratch", "public/notes.txt": b"not an image",
              "private/d.jpg": b"outside the prefix"}
    for key, body in bodies.items():
        s3.put_object(Bucket="acme-assets", Key=key, Body=body, Metadata={"owner": "ops"})
    (tmp_path / "cloudkeep.yaml").write_text(yaml.safe_dump({
        "version": 1, "stores": {"vault": {"type": "file", "path": "vault"}},
        "tiers": {"standard": {"schedule": "0 2 * * *", "rpo": "26h", "retention": {"daily": 7}}},
        "datasets": {"assets": {"source": {"type": "s3", "bucket": "acme-assets", "prefix": "public/",
                                           "include": ["*.jpg", "*.png"], "exclude": ["tmp/*"],
                                           "region": REGION},
                                "tier": "standard", "store": "vault"}}}))
    run_block("cloudkeep run assets", tmp_path)
    done = run_block(marked("s3-source.md")["s3 restore"], tmp_path)
    assert "restored assets@" in done.stdout

    wanted = {"public/a.jpg", "public/img/b.png"}

    def objects(bucket: str, prefix: str = "") -> dict[str, bytes]:
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
        return {o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed}

    assert objects("acme-assets-restored") == {k: bodies[k] for k in wanted}
    assert objects("acme-assets", "restore-0301/") == {f"restore-0301/{k}": bodies[k] for k in wanted}
    head = s3.head_object(Bucket="acme-assets-restored", Key="public/a.jpg")
    assert head["Metadata"] == {"owner": "ops"}
