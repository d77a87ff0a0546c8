"""One redaction for every output path (issue #17.11): a credential in a URL appears in no log
line, table, JSON output, error, traceback, manifest, audit record, verification record, report
or function reply.

The end-to-end test points a store *and* a source at moto through
``http://user:s3cr3t@127.0.0.1:PORT`` (botocore accepts and ignores the user information), backs
up, lists, shows, verifies, reports and fails on purpose, then reads every object in the store.
"""

from __future__ import annotations

import io
import json
import logging
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from cloudkeep.cli import main
from cloudkeep.logctx import JsonFormatter
from cloudkeep.redaction import MARK, RedactingFilter, redact, redact_obj
from helpers import cli

SECRET = "s3cr3t"


# ----------------------------------------------------------------------------- the function


@pytest.mark.parametrize(("text", "secret"), [
    ("Could not connect to the endpoint URL: \"http://user:s3cr3t@127.0.0.1:9/b?list-type=2\"", SECRET),
    ("postgres://admin:s3cr3t@db.internal:5432/app", SECRET),
    ("https://s3cr3t@github.com/acme/repo.git", SECRET),
    ("https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4&X-Amz-Credential=AKIDX%2F20260101&"
     "X-Amz-Signature=0123abcdef9876", "0123abcdef9876"),
    ("https://b.s3.amazonaws.com/k?X-Amz-Security-Token=FQoGZXIvYXdzEJr", "FQoGZXIvYXdzEJr"),
    ("https://acct.blob.core.windows.net/c/b?sv=2022-11-02&ss=b&srt=co&sp=rl&se=2030-01-01&"
     "sig=Zm9vYmFyYmF6cXV4%3D", "Zm9vYmFyYmF6cXV4"),
    ("DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=c2VjcmV0a2V5;EndpointSuffix=core.windows.net",
     "c2VjcmV0a2V5"),
    ("BlobEndpoint=https://acct.blob.core.windows.net/;SharedAccessSignature=sv=2022&sig=abcdefgh123",
     "abcdefgh123"),
    ('{"password": "hunter2hunter2", "key": "orders/x"}', "hunter2hunter2"),
    ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig", "eyJhbGciOiJIUzI1NiJ9"),
    ("aws_access_key_id AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE"),
    ("https://maps.example/api?key=AIzaSyD-abcdefghijklmnop&x=1", "AIzaSyD-abcdefghijklmnop"),
])
def test_redact_removes_every_shape_of_credential(text: str, secret: str) -> None:
    out = redact(text)
    assert secret not in out and MARK in out or "[redacted-" in out
    assert redact(out) == out  # idempotent


def test_redact_leaves_ordinary_text_alone() -> None:
    for text in ("s3://vault/orders/snapshots/x/manifest.json", "file:/srv/backups",
                 "http://127.0.0.1:5000/vault", '{"key": "orders/_audit/2026/01/01/x.json"}',
                 "exit code=2", "part-00000-000001.ndjson.zst: 123 bytes", "ops@example.com",
                 "s3://bucket/data/key=eu-west/part.json"):
        assert redact(text) == text


def test_redact_obj_and_known_values() -> None:
    data = {"error": "http://u:s3cr3t@h/", "n": 3, "list": ["x", "AccountKey=c2VjcmV0a2V5"],
            "t": ("sig=abcdefgh",)}
    out = redact_obj(data)
    assert SECRET not in json.dumps(out) and "c2VjcmV0a2V5" not in json.dumps(out)
    assert out["n"] == 3 and isinstance(out["t"], tuple)
    assert redact("the webhook is https://example.com/hook/zzz", ["https://example.com/hook/zzz"]) == \
        f"the webhook is {MARK}"


def test_the_logging_filter_redacts_messages_arguments_tracebacks_and_fields() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("cloudkeep.test_redaction")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        logger.info("connecting to %s", "http://user:s3cr3t@127.0.0.1:9/", extra={
            "cloudkeep": {"endpoint": "http://user:s3cr3t@127.0.0.1:9/"}})
        try:
            raise RuntimeError("cannot reach http://user:s3cr3t@127.0.0.1:9/")
        except RuntimeError:
            logger.exception("failed")
        plain = logging.StreamHandler(stream)
        plain.setFormatter(logging.Formatter("%(message)s"))
        plain.addFilter(RedactingFilter())
        logger.handlers[:] = [plain]
        try:
            raise RuntimeError("cannot reach http://user:s3cr3t@127.0.0.1:9/")
        except RuntimeError:
            logger.exception("again %s", "sig=abcdef123")
    finally:
        logger.handlers[:] = []
    text = stream.getvalue()
    assert SECRET not in text and "abcdef123" not in text, text
    assert "RuntimeError" in text and "Traceback" in text  # the traceback is there, redacted


# ------------------------------------------------------------------------- end to end, on moto


@pytest.fixture
def setup(tmp_path: Path, moto_server: Any) -> Iterator[dict[str, Any]]:
    import boto3

    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=moto_server.endpoint)
    src, vault = f"src-{secrets.token_hex(4)}", f"vault-{secrets.token_hex(4)}"
    for bucket in (src, vault):
        s3.create_bucket(Bucket=bucket)
    for i in range(5):
        s3.put_object(Bucket=src, Key=f"docs/{i}.txt", Body=f"document {i}".encode())
    secret_url = moto_server.endpoint.replace("http://", f"http://user:{SECRET}@")
    policy = {
        "version": 1,
        "stores": {
            "vault": {"type": "s3", "bucket": vault, "region": "us-east-1", "endpoint_url": secret_url},
            "broken": {"type": "s3", "bucket": "nowhere-bucket", "region": "us-east-1",
                       "endpoint_url": f"http://user:{SECRET}@127.0.0.1:9/"},
        },
        "tiers": {"t": {"schedule": "0 2 * * *", "rpo": "26h", "retention": {"daily": 7}}},
        "datasets": {
            "files": {"source": {"type": "s3", "bucket": src, "region": "us-east-1",
                                 "endpoint_url": secret_url}, "tier": "t", "store": "vault"},
            "lost": {"source": {"type": "s3", "bucket": src, "region": "us-east-1",
                                "endpoint_url": secret_url}, "tier": "t", "store": "broken"},
        },
    }
    path = tmp_path / "cloudkeep.yaml"
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    yield {"policy": str(path), "s3": s3, "vault": vault, "tmp": tmp_path}


def test_a_secret_in_an_endpoint_url_leaks_nowhere(setup: dict[str, Any], capsys: Any,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # a broken endpoint fails fast: no retries against a closed port
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    policy, s3, vault, tmp = setup["policy"], setup["s3"], setup["vault"], setup["tmp"]
    outputs: list[str] = []

    def run(*args: str) -> int:
        code, out, err = cli(capsys, "--policy", policy, *args)
        outputs.extend([out, err])
        return code

    assert run("validate") == 0
    assert run("run", "files") == 0
    assert run("--format", "json", "run", "files") == 0
    assert run("run", "lost") == 3  # the broken store: an error message naming the endpoint
    assert run("--format", "json", "run", "lost") == 3
    assert run("--debug", "run", "lost") == 3  # log lines and the traceback of the error
    assert run("list") == 3  # the broken store is named
    assert run("--format", "json", "list", "files") == 0
    assert run("show", "files@latest") == 0
    assert run("--format", "json", "show", "files@latest") == 0
    assert run("verify", "files@latest") == 0
    assert run("--format", "json", "verify", "files@latest") == 0
    report = tmp / "report.html"
    assert run("report", "--output", str(report)) in (0, 1, 3)
    assert run("--format", "json", "report") in (0, 1, 3)
    assert run("list", "lost") == 3
    assert run("--debug", "show", "lost@latest") == 3
    assert run("restore", "files@latest", "--into", f"restored-{secrets.token_hex(3)}") in (0, 1, 3)
    joined = "\n".join(outputs)
    assert "[redacted]@127.0.0.1" in joined  # the failing endpoint was named, redacted
    assert SECRET not in joined
    assert SECRET not in report.read_text()
    # everything the store holds: manifests, listings, audit records, verifications
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=vault)
            for o in page.get("Contents", [])]
    assert any(k.endswith("manifest.json") for k in keys)
    assert any(k.startswith("_audit/") for k in keys)
    assert any("/verifications/" in k for k in keys)
    manifest = next(k for k in keys if k.endswith("manifest.json"))
    assert "[redacted]@127.0.0.1" in s3.get_object(Bucket=vault, Key=manifest)["Body"].read().decode()
    for key in keys:
        body = s3.get_object(Bucket=vault, Key=key)["Body"].read()
        assert SECRET.encode() not in body, key


def test_unexpected_errors_and_debug_tracebacks_are_redacted(capsys: Any) -> None:
    @main.command("boom-test")
    def boom() -> None:
        raise RuntimeError(f"failed talking to http://user:{SECRET}@127.0.0.1:9/?sig=abcdef123")

    try:
        code, out, err = cli(capsys, "boom-test")
        assert code == 1 and "unexpected RuntimeError" in err and "[redacted]@127.0.0.1" in err
        code, out, err = cli(capsys, "--debug", "boom-test")
        assert code == 1 and "Traceback" in err and "RuntimeError" in err
        assert SECRET not in out + err and "abcdef123" not in out + err
        code, out, err = cli(capsys, "run", "--queue", f"sqs:https://user:{SECRET}@sqs.example/q",
                             "--workers", "0")
        assert code == 2 and SECRET not in out + err
    finally:
        main.commands.pop("boom-test", None)
    assert isinstance(main, click.Group)
