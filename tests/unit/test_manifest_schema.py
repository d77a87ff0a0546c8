"""The manifest's JSON schema in the repo is the one the models generate."""

from __future__ import annotations

import json
from pathlib import Path

from cloudkeep.manifest import json_schema

SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "manifest.schema.json"


def test_schema_file_is_current() -> None:
    assert json.loads(SCHEMA.read_text()) == json_schema(), (
        "schemas/manifest.schema.json is stale: run `make schema`"
    )


def test_schema_requires_the_fields_a_reader_needs() -> None:
    required = set(json_schema()["required"])
    assert {"snapshot_id", "dataset", "parts", "totals", "codec", "content_digest",
            "source", "started_at", "finished_at"} <= required
