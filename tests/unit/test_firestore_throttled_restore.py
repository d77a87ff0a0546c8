"""A Firestore restore target that throttles (RESOURCE_EXHAUSTED, 429) is backed off by the
restore's governor, not failed as "cannot reach" (issue #23 §3). The emulator never throttles,
so the writer runs against a reader of our own that answers with the SDK's real BatchWrite
response and exception types."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cloudkeep.errors import ThrottledError
from cloudkeep.governor import Governor
from cloudkeep.manifest import Manifest
from cloudkeep.sources.firestore import restore as firestore_restore
from cloudkeep.sources.firestore.restore import FirestoreWriter


class ThrottlingReader:
    """The part of FirestoreReader a writer uses; ``script``: per BatchWrite call, "429" (the
    call is refused RESOURCE_EXHAUSTED), "8" (every write's status is RESOURCE_EXHAUSTED) or "ok"."""

    root = "projects/p/databases/(default)/documents"
    database_path = "projects/p/databases/(default)"

    def __init__(self, script: list[str]) -> None:
        self.script = script
        self.written: list[str] = []

    def where(self) -> str:
        return "Firestore p"

    def _types(self) -> Any:
        from google.cloud.firestore_v1.types import document, firestore, query, write

        from cloudkeep.sources.firestore.reader import Types
        return Types(document, firestore, query, write)

    def _call(self, doing: str, fn: Any, *, passthrough: tuple[type[BaseException], ...] = ()) -> Any:
        from google.api_core.exceptions import ResourceExhausted
        from google.cloud.firestore_v1.types import firestore
        from google.rpc import status_pb2

        step = self.script.pop(0) if self.script else "ok"
        if step == "429":
            assert ResourceExhausted in passthrough
            raise ResourceExhausted("Quota exceeded.")
        request = self.last_request
        response = firestore.BatchWriteResponse.pb()()
        for w in request.writes:
            response.status.append(status_pb2.Status(code=8 if step == "8" else 0))
            if step == "ok":
                self.written.append(w.update.name.rsplit("/documents/", 1)[1])
        return response

    def _call_capture(self, request: Any) -> None:
        self.last_request = request


def writer(reader: ThrottlingReader) -> FirestoreWriter:
    w = FirestoreWriter(reader, "", None)  # type: ignore[arg-type]
    original = w._sender

    def sender(t: Any, request: Any) -> Any:
        reader._call_capture(request)
        return original(t, request)

    w._sender = sender  # type: ignore[method-assign]
    return w


LINES = [json.dumps({"name": f"users/u{i}", "fields": {}}).encode() for i in range(7)]


def manifest() -> Manifest:
    return Manifest.model_construct(totals=None)  # the governor reads totals only for a capacity share


@pytest.mark.parametrize("script", [["429"], ["8"]])
def test_a_throttled_batch_write_is_throttled_error(
        script: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(firestore_restore, "MAX_WRITE_ATTEMPTS", 1)
    reader = ThrottlingReader(script * 100)
    with pytest.raises(ThrottledError, match="RESOURCE_EXHAUSTED"):
        writer(reader).write(LINES)
    assert reader.written == []


def test_the_governor_backs_off_a_throttled_firestore_target_and_writes_everything(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(firestore_restore, "MAX_WRITE_ATTEMPTS", 1)
    slept: list[float] = []
    now = [0.0]

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    governor = Governor(sleep=sleep, clock=lambda: now[0])
    reader = ThrottlingReader(["429", "8", "429", "ok"])
    governed = governor.govern(writer(reader), manifest())
    assert governed.write(LINES) == len(LINES)
    assert sorted(reader.written) == sorted(f"users/u{i}" for i in range(7))  # each exactly once
    assert governor.throttled == 3 and len(slept) == 3
