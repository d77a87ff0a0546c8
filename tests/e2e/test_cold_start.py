"""Cold start of the AWS handler: what its import loads (fresh interpreters). The time itself is a
printed figure (bench/bench_cold_start.py, `make bench`), not asserted here."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT

PROBE = """
import json, sys
sys.path[:0] = [{root!r}, {root!r} + "/shared"]
{statement}
print(json.dumps(sorted(sys.modules)))
"""


def modules(statement: str, **env: str) -> set[str]:
    code = PROBE.format(root=str(ROOT), statement=statement)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=ROOT,
                         env={"PATH": "/usr/bin:/bin", "HOME": "/tmp", "AWS_DEFAULT_REGION": "us-east-1", **env})
    return set(json.loads(out.stdout))


def loaded(names: set[str], prefix: str) -> bool:
    return any(m == prefix or m.startswith(prefix + ".") for m in names)


def test_the_handler_import_loads_neither_tracing_nor_the_core() -> None:
    names = modules("import handlers.aws_lambda")
    for heavy in ("aws_xray_sdk", "cloudkeep.engine", "cloudkeep.policy", "cloudkeep.manifest", "pydantic"):
        assert not loaded(names, heavy), f"importing the handler loads {heavy}"
    assert loaded(names, "aws_lambda_powertools.logging")  # logging is set up at import


def test_tracing_is_imported_only_when_enabled() -> None:
    assert loaded(modules("import handlers.aws_lambda", CLOUDKEEP_TRACING="true"), "aws_xray_sdk")
    assert not loaded(modules("import handlers.aws_lambda", CLOUDKEEP_TRACING="true",
                              POWERTOOLS_TRACE_DISABLED="true"), "aws_xray_sdk")
    assert not loaded(modules("import handlers.aws_lambda", POWERTOOLS_TRACE_DISABLED="false"), "aws_xray_sdk")


def test_the_first_invocation_loads_the_core_and_still_no_other_cloud() -> None:
    names = modules("import handlers.aws_lambda as h; h._core()")
    assert loaded(names, "cloudkeep.function") and loaded(names, "cloudkeep.policy")
    for other in ("google.cloud.firestore", "google.cloud.storage", "google.api_core", "grpc", "azure.core",
                  "aws_xray_sdk"):
        assert not loaded(names, other), f"the handler's core loads {other}"


def test_the_capture_handler_loads_its_core_only_on_the_first_invocation() -> None:
    names = modules("import handlers.aws_capture")
    for heavy in ("cloudkeep.changelog", "cloudkeep.services", "cloudkeep.policy", "pydantic",
                  "google.events", "aws_xray_sdk"):
        assert not loaded(names, heavy), f"importing the capture handler loads {heavy}"
    names = modules("import handlers.aws_capture as h; h._core()")
    assert loaded(names, "cloudkeep.services.capture_aws") and loaded(names, "cloudkeep.changelog")
    for other in ("google.cloud.firestore", "google.events", "google.api_core", "grpc", "azure.core",
                  "azure.cosmos", "cloudkeep.sources.firestore.events", "cloudkeep.sources.cosmos.events"):
        assert not loaded(names, other), f"the capture handler's core loads {other}"
