"""Cold starts: importing the core loads no cloud SDK; each adapter loads only its own."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json, sys, time
t0 = time.perf_counter()
import {modules}
elapsed = time.perf_counter() - t0
loaded = sorted(m for m in sys.modules if m.count('.') <= 2)
print(json.dumps({{"seconds": elapsed, "top": loaded}}))
"""


CLOUD_SDKS = ("boto3", "botocore", "google.cloud.firestore", "google.cloud.storage",
              "google.api_core", "google.auth", "grpc", "azure.core", "azure.cosmos",
              "azure.storage")


def probe(*modules: str) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", PROBE.format(modules=", ".join(modules))],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def test_core_and_cli_import_no_cloud_sdk() -> None:
    result = probe("cloudkeep.cli", "cloudkeep.engine", "cloudkeep.policy", "cloudkeep.verify",
                   "cloudkeep.restore", "cloudkeep.catalog")
    top = set(result["top"])  # type: ignore[arg-type]
    # (a namespace-package .pth of functions-framework preloads empty "google" and "google.cloud"
    # modules in every interpreter of this virtualenv, so look for the SDKs themselves)
    for sdk in CLOUD_SDKS + ("rich",):
        assert sdk not in top, f"{sdk} imported at import time"
    print(f"core import: {result['seconds'] * 1000:.0f} ms")


def test_the_s3_store_loads_boto3_only_when_used() -> None:
    result = probe("cloudkeep.stores.s3", "cloudkeep.sources.dynamodb")
    top = set(result["top"])  # type: ignore[arg-type]
    for sdk in ("google.cloud.firestore", "google.api_core", "azure.core", "boto3"):
        assert sdk not in top, f"{sdk} imported at import time"
