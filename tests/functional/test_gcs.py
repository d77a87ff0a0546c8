"""The Cloud Storage store on fake-gcs-server: create-only writes refused, streamed uploads,
a corrupted part caught by verify, policies read from gs://, and exit code 3 when unreachable.
(The shared store contract suite runs on it too: tests/test_store_contract.py.)"""

from __future__ import annotations

import io
import threading
from pathlib import Path
from typing import Any

import pytest
from tools.emulators import free_port

from cloudkeep import layout
from cloudkeep.catalog import resolve
from cloudkeep.errors import ObjectExistsError, ObjectNotFoundError, StoreUnreachableError
from cloudkeep.policy import load_policy
from cloudkeep.stores import CHUNK
from cloudkeep.stores.gcs import GcsStore
from fixtures_gcp import FirestoreRest, gcp_policy
from helpers import cli

pytestmark = pytest.mark.emulator


class _Trickle(io.RawIOBase):
    """A non-seekable stream that returns short reads and records the largest read asked."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)
        self.largest = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        self.largest = max(self.largest, len(buffer))
        chunk = self._data.read(min(len(buffer), 300_000))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def _raw(bucket: str) -> Any:
    from google.cloud import storage

    return storage.Client(project="test").bucket(bucket)


def test_create_only_writes_are_refused_by_fake_gcs_server(gcs_bucket: str) -> None:
    store = GcsStore(gcs_bucket, "cloudkeep")
    store.put("lock.json", b"first", if_absent=True)
    with pytest.raises(ObjectExistsError):
        store.put("lock.json", b"second", if_absent=True)
    assert store.get("lock.json") == b"first"
    # The refusal is the server's (ifGenerationMatch=0 → 412), not a check made beforehand:
    # the SDK call cloudkeep makes, made directly, is refused too.
    from google.api_core.exceptions import PreconditionFailed

    with pytest.raises(PreconditionFailed):
        _raw(gcs_bucket).blob("cloudkeep/lock.json").upload_from_file(
            io.BytesIO(b"third"), size=5, if_generation_match=0)
    store.put("lock.json", b"overwritten")  # without if_absent, a put replaces
    assert store.get("lock.json") == b"overwritten"


def test_of_concurrent_creators_exactly_one_wins(gcs_bucket: str) -> None:
    store = GcsStore(gcs_bucket)
    outcomes: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def attempt(i: int) -> None:
        barrier.wait()
        try:
            store.put("manifest.json", f"writer {i}".encode(), if_absent=True)
            result = f"won {i}"
        except ObjectExistsError:
            result = "refused"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [o for o in outcomes if o.startswith("won")]
    assert len(winners) == 1 and outcomes.count("refused") == 7
    assert store.get("manifest.json") == f"writer {winners[0].split()[1]}".encode()


def test_large_objects_stream_in_chunks_and_stay_create_only(gcs_bucket: str) -> None:
    store = GcsStore(gcs_bucket, "p")
    data = bytes(range(256)) * (CHUNK * 2 // 256 + 1000)  # a bit over two chunks
    stream = _Trickle(data)
    info = store.put("big/part.zst", stream, if_absent=True)  # type: ignore[arg-type]
    assert info.size == len(data)
    assert stream.largest <= CHUNK, "the stream is read one bounded chunk at a time"
    assert store.stat("big/part.zst") is not None
    with store.open("big/part.zst") as reader:
        pieces = []
        while piece := reader.read(1_000_000):
            pieces.append(piece)
    assert b"".join(pieces) == data
    with pytest.raises(ObjectExistsError):
        store.put("big/part.zst", _Trickle(data[::-1]), if_absent=True)  # type: ignore[arg-type]
    assert store.get("big/part.zst") == data


def test_missing_objects_and_buckets(gcs_bucket: str) -> None:
    store = GcsStore(gcs_bucket, "p")
    with pytest.raises(ObjectNotFoundError):
        store.get("nope")
    with pytest.raises(ObjectNotFoundError):
        store.open("nope")
    assert store.stat("nope") is None
    store.delete(["nope", "also/nope"])  # already gone is not an error
    gone = GcsStore("no-such-bucket-here")
    with pytest.raises(StoreUnreachableError):
        gone.put("x", b"1", if_absent=True)
    with pytest.raises(StoreUnreachableError):
        list(gone.list())


def test_verify_detects_a_corrupted_gcs_part(
    firestore_rest: FirestoreRest, gcp_project: str, gcs_bucket: str, tmp_path: Path, capsys: Any,
) -> None:
    firestore_rest.write({f"users/u{i:03d}": {"i": {"integerValue": str(i)}, "pad": {"stringValue": "x" * 200}}
                          for i in range(300)})
    policy = gcp_policy(tmp_path, project=gcp_project, bucket=gcs_bucket, collections=["users"], segments=2)
    assert cli(capsys, "--policy", str(policy), "run", "profiles")[0] == 0
    code, out, err = cli(capsys, "--policy", str(policy), "verify", "profiles@latest")
    assert code == 0, out + err
    store, manifest = resolve(load_policy(str(policy)).policy, "profiles@latest")
    assert isinstance(store, GcsStore) and len(manifest.parts) == 2
    first, second = manifest.parts
    blob = _raw(gcs_bucket).blob(f"backups/cloudkeep/{layout.part_key('profiles', manifest.snapshot_id, first.name)}")
    body = bytearray(blob.download_as_bytes())
    body[len(body) // 2] ^= 0xFF  # one flipped byte, same size
    blob.upload_from_string(bytes(body))
    _raw(gcs_bucket).blob(
        f"backups/cloudkeep/{layout.part_key('profiles', manifest.snapshot_id, second.name)}").delete()

    code, out, err = cli(capsys, "--policy", str(policy), "verify", "profiles@latest")
    assert code == 1
    assert f"part {first.name}: sha256" in out
    assert f"part {second.name}: missing" in out
    assert "Traceback" not in out + err
    code, out, err = cli(capsys, "--policy", str(policy), "restore", "profiles@latest", "--into", "r_")
    assert code == 1 and "damaged" in err
    assert firestore_rest.documents(under="r_users") == {}, "a damaged snapshot writes nothing"


def test_a_policy_is_read_from_a_gs_url(gcs_bucket: str, tmp_path: Path, capsys: Any) -> None:
    text = gcp_policy(tmp_path, project="p", bucket=gcs_bucket, collections=["users"]).read_text()
    GcsStore(gcs_bucket).put("config/cloudkeep.yaml", text.encode())
    code, out, err = cli(capsys, "--policy", f"gs://{gcs_bucket}/config/cloudkeep.yaml", "validate")
    assert code == 0, err
    code, _, err = cli(capsys, "--policy", f"gs://{gcs_bucket}/config/missing.yaml", "validate")
    assert code == 2 and "not found" in err


def test_an_unreachable_store_is_exit_3_without_traceback(
    fake_gcs: Any, tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    policy = gcp_policy(tmp_path, project="p", bucket="no-such-bucket", collections=["users"])
    code, out, err = cli(capsys, "--policy", str(policy), "list")
    assert code == 3 and "bucket 'no-such-bucket' not found" in err and "Traceback" not in err

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{free_port()}")
    code, out, err = cli(capsys, "--policy", str(policy), "list")
    assert code == 3, out + err
    assert "cannot reach gs://no-such-bucket" in err and "Traceback" not in err


def test_the_google_adapters_load_no_sdk_until_used() -> None:
    import json
    import subprocess
    import sys

    probe = ("import json, sys; import cloudkeep.sources.firestore, cloudkeep.stores.gcs; "
             "print(json.dumps(sorted(sys.modules)))")
    loaded = set(json.loads(subprocess.run([sys.executable, "-c", probe], check=True,
                                           capture_output=True, text=True).stdout))
    for sdk in ("google.cloud.firestore", "google.cloud.firestore_v1", "google.cloud.storage",
                "google.api_core", "google.auth", "grpc", "boto3", "azure.core"):
        assert sdk not in loaded, f"{sdk} imported at import time"
