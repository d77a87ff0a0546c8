"""The Store contract (``cloudkeep.stores`` module docstring), run over every store.

Each test in the first part takes the parametrized ``store`` fixture and so runs four times: on the
in-memory store, on a file store in ``tmp_path``, on an S3 store talking to moto server through
the real boto3 and on a GCS store talking to fake-gcs-server through google-cloud-storage (a fresh
bucket per test, and a non-empty prefix so prefix handling is exercised).
The last part holds the few checks that only make sense for one store.
"""

from __future__ import annotations

import hashlib
import io
import random
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cloudkeep.errors import (
    EXIT_UNREACHABLE,
    ObjectExistsError,
    ObjectNotFoundError,
    StoreError,
    StoreUnreachableError,
)
from cloudkeep.stores import CHUNK, ObjectInfo, Store
from cloudkeep.stores.file import FileStore
from cloudkeep.stores.gcs import GcsStore
from cloudkeep.stores.memory import MemoryStore
from cloudkeep.stores.s3 import S3Store
from conftest import REGION

S3_PREFIX = "team/cloudkeep"
MIB = 1024 * 1024
LARGE = 20 * MIB + 123  # three multipart parts on S3: 8 MiB, 8 MiB, 4 MiB + 123 bytes


@pytest.fixture(params=["memory", "file", pytest.param("s3", marks=pytest.mark.emulator),
                        pytest.param("gcs", marks=pytest.mark.emulator),
                        pytest.param("azure_blob", marks=pytest.mark.emulator)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "memory":
        return MemoryStore()
    if request.param == "file":
        return FileStore(tmp_path / "store")
    if request.param == "azure_blob":  # Azurite, a fresh container per test (tests/fixtures_azure.py)
        from cloudkeep.stores.azure_blob import AzureBlobStore

        container = request.getfixturevalue("azure_container")
        return AzureBlobStore(container, S3_PREFIX,
                              connection_string=request.getfixturevalue("azurite").connection_string)
    if request.param == "gcs":  # fake-gcs-server, a fresh bucket per test (tests/fixtures_gcp.py)
        return GcsStore(request.getfixturevalue("gcs_bucket"), S3_PREFIX)
    bucket = request.getfixturevalue("s3_bucket")  # starts moto server once per session
    return S3Store(bucket, S3_PREFIX, region=REGION)


def random_bytes(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class TrickleStream:
    """A binary file-like whose ``read(n)`` returns at most ``min(n, step)`` bytes, as a pipe or a
    socket does. ``on_read`` (if given) is called before every read, to look at the world while a
    ``put`` is in progress."""

    def __init__(self, data: bytes, step: int = 64 * 1024,
                 on_read: Callable[[], None] | None = None) -> None:
        self._data = memoryview(data)
        self._pos = 0
        self._step = step
        self._on_read = on_read
        self.reads = 0
        self.requests: list[int | None] = []

    def read(self, n: int | None = -1) -> bytes:
        if self._on_read is not None:
            self._on_read()
        self.reads += 1
        self.requests.append(n)
        if n is None or n < 0:  # "until EOF", as every Python stream does
            n = len(self._data) - self._pos
        else:
            n = min(n, self._step)
        end = min(self._pos + n, len(self._data))
        chunk = bytes(self._data[self._pos : end])
        self._pos = end
        return chunk

    def readable(self) -> bool:
        return True


# --- put / get / stat -----------------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"hello, store", b"", bytes(range(256)) * 40], ids=["small", "empty", "10k"])
def test_bytes_round_trip(store: Store, body: bytes) -> None:
    info = store.put("dataset/2024/object.bin", body)
    assert isinstance(info, ObjectInfo)
    assert (info.key, info.size) == ("dataset/2024/object.bin", len(body))
    assert store.get("dataset/2024/object.bin") == body
    stat = store.stat("dataset/2024/object.bin")
    assert stat is not None
    assert (stat.key, stat.size) == ("dataset/2024/object.bin", len(body))


def test_stream_round_trip(store: Store) -> None:
    body = random_bytes(300_000, seed=1)
    info = store.put("s/stream.bin", io.BytesIO(body))
    assert info.size == len(body)
    assert store.get("s/stream.bin") == body
    stat = store.stat("s/stream.bin")
    assert stat is not None and stat.size == len(body)


def test_short_reads_stream_round_trip(store: Store) -> None:
    body = random_bytes(200_000, seed=2)
    stream = TrickleStream(body, step=1000)
    info = store.put("s/trickle.bin", stream)
    assert info.size == len(body)
    assert store.get("s/trickle.bin") == body


def test_streams_are_read_in_bounded_chunks(store: Store) -> None:
    body = random_bytes(3 * MIB, seed=11)
    stream = TrickleStream(body, step=MIB)
    store.put("s/bounded.bin", stream)
    assert all(n is not None and 0 < n <= CHUNK for n in stream.requests), stream.requests
    assert store.get("s/bounded.bin") == body


def test_missing_key(store: Store) -> None:
    store.put("present/key", b"x")
    for key in ("absent", "present/absent", "no/such/folder/key"):
        assert store.stat(key) is None
        with pytest.raises(ObjectNotFoundError) as exc_info:
            store.get(key)
        assert exc_info.value.key == key
        with pytest.raises(ObjectNotFoundError):
            store.open(key)


def test_plain_put_overwrites(store: Store) -> None:
    store.put("k", b"first version")
    store.put("k", b"second")
    assert store.get("k") == b"second"
    stat = store.stat("k")
    assert stat is not None and stat.size == len(b"second")


# --- create-only ----------------------------------------------------------------------------------


def test_create_only_refuses_second_put(store: Store) -> None:
    info = store.put("m/manifest.json", b"first", if_absent=True)
    assert info.size == len(b"first")
    with pytest.raises(ObjectExistsError) as exc_info:
        store.put("m/manifest.json", b"second!", if_absent=True)
    assert exc_info.value.key == "m/manifest.json"
    with pytest.raises(ObjectExistsError):
        store.put("m/manifest.json", io.BytesIO(b"third, as a stream"), if_absent=True)
    assert store.get("m/manifest.json") == b"first"
    stat = store.stat("m/manifest.json")
    assert stat is not None and stat.size == len(b"first")

    store.put("m/manifest.json", b"overwritten")  # a plain put still overwrites
    assert store.get("m/manifest.json") == b"overwritten"
    with pytest.raises(ObjectExistsError):
        store.put("m/manifest.json", b"again", if_absent=True)
    assert store.get("m/manifest.json") == b"overwritten"


def test_create_only_after_delete_succeeds(store: Store) -> None:
    store.put("lock/lease", b"one", if_absent=True)
    store.delete(["lock/lease"])
    store.put("lock/lease", b"two", if_absent=True)
    assert store.get("lock/lease") == b"two"


def test_create_only_race_has_one_winner(store: Store) -> None:
    writers = 8
    barrier = threading.Barrier(writers)
    bodies = [f"writer {i} ".encode() * (100 + i) for i in range(writers)]
    won: list[int] = []
    refused: list[int] = []
    other: list[BaseException] = []
    guard = threading.Lock()

    def write(i: int) -> None:
        barrier.wait()
        try:
            store.put("race/manifest.json", bodies[i], if_absent=True)
        except ObjectExistsError:
            with guard:
                refused.append(i)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            with guard:
                other.append(exc)
        else:
            with guard:
                won.append(i)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert other == []
    assert len(won) == 1, f"winners: {won}"
    assert len(refused) == writers - 1
    assert store.get("race/manifest.json") == bodies[won[0]]


# --- large (multipart on S3) ----------------------------------------------------------------------


def test_large_stream_with_short_reads_round_trips(store: Store) -> None:
    body = random_bytes(LARGE, seed=3)
    stream = TrickleStream(body, step=256 * 1024)
    info = store.put("big/blob.bin", stream)
    assert stream.reads > 1
    assert info.size == LARGE
    stat = store.stat("big/blob.bin")
    assert stat is not None and stat.size == LARGE
    got = store.get("big/blob.bin")
    assert len(got) == LARGE
    assert digest(got) == digest(body)


def test_exactly_one_chunk_round_trips(store: Store) -> None:
    body = random_bytes(CHUNK, seed=4)
    assert store.put("big/one-chunk.bin", io.BytesIO(body)).size == CHUNK
    got = store.get("big/one-chunk.bin")
    assert len(got) == CHUNK and digest(got) == digest(body)


def test_large_create_only_refused(store: Store) -> None:
    first = random_bytes(LARGE, seed=5)
    second = random_bytes(LARGE, seed=6)
    store.put("big/segment.bin", TrickleStream(first, step=512 * 1024), if_absent=True)
    with pytest.raises(ObjectExistsError):
        store.put("big/segment.bin", TrickleStream(second, step=512 * 1024), if_absent=True)
    got = store.get("big/segment.bin")
    assert len(got) == LARGE and digest(got) == digest(first)
    assert [(i.key, i.size) for i in store.list("big/")] == [("big/segment.bin", LARGE)]


# --- open -----------------------------------------------------------------------------------------


def test_open_reads_in_chunks(store: Store) -> None:
    body = random_bytes(100_000, seed=7)
    store.put("o/obj", body)
    chunks: list[bytes] = []
    with store.open("o/obj") as fh:
        while chunk := fh.read(4096):
            assert len(chunk) <= 4096
            chunks.append(chunk)
    assert len(chunks) >= 100_000 // 4096
    assert b"".join(chunks) == body


def test_open_read_all(store: Store) -> None:
    store.put("o/small", b"abc")
    with store.open("o/small") as fh:
        assert fh.read() == b"abc"
        assert fh.read() == b""


# --- list -----------------------------------------------------------------------------------------

LIST_KEYS = {
    "a/1": b"1",
    "a/2": b"22",
    "a/b-1": b"333",  # '-' sorts before '/': key order is not folder-walk order
    "a/b/2": b"4444",
    "a/b0": b"55555",
    "a/x/y/deep": b"666666",
    "ab/3": b"7777777",
    "b/4": b"88888888",
}


def _listing(store: Store, prefix: str) -> list[tuple[str, int]]:
    return [(i.key, i.size) for i in store.list(prefix)]


def _expected(prefix: str) -> list[tuple[str, int]]:
    return [(k, len(v)) for k, v in sorted(LIST_KEYS.items()) if k.startswith(prefix)]


@pytest.mark.parametrize("prefix", ["a/", "", "a", "a/b", "a/b/", "a/x", "ab/", "b/"])
def test_list_prefix(store: Store, prefix: str) -> None:
    for key, body in LIST_KEYS.items():
        store.put(key, body)
    got = _listing(store, prefix)
    assert got == _expected(prefix)
    assert got == sorted(got)


def test_list_prefix_only_inside(store: Store) -> None:
    for key, body in LIST_KEYS.items():
        store.put(key, body)
    assert _listing(store, "a/") == [
        ("a/1", 1), ("a/2", 2), ("a/b-1", 3), ("a/b/2", 4), ("a/b0", 5), ("a/x/y/deep", 6),
    ]
    assert [k for k, _ in _listing(store, "")] == sorted(LIST_KEYS)


@pytest.mark.parametrize("prefix", ["c/", "c", "a/zzz", "b/4/"])
def test_list_empty_prefix_matches_nothing(store: Store, prefix: str) -> None:
    for key, body in LIST_KEYS.items():
        store.put(key, body)
    assert _listing(store, prefix) == []


def test_list_of_empty_store(store: Store) -> None:
    assert _listing(store, "") == []
    assert _listing(store, "a/") == []


# --- delete ---------------------------------------------------------------------------------------


def test_delete(store: Store) -> None:
    for key in ("d/1", "d/2", "d/sub/3", "keep/4"):
        store.put(key, key.encode())
    store.delete(k for k in ["d/1", "d/sub/3", "never/was/there"])  # any iterable; missing is fine
    assert store.stat("d/1") is None and store.stat("d/sub/3") is None
    with pytest.raises(ObjectNotFoundError):
        store.get("d/1")
    assert _listing(store, "") == [("d/2", 3), ("keep/4", 6)]
    assert _listing(store, "d/sub/") == []

    store.delete(["d/1"])  # already gone: not an error
    store.delete([])
    store.delete(["d/2", "keep/4"])
    assert _listing(store, "") == []
    store.put("d/sub/3", b"back")  # the key can be written again after its folder went away
    assert store.get("d/sub/3") == b"back"


def test_delete_many(store: Store) -> None:
    keys = [f"many/{i:04d}" for i in range(1203)] if isinstance(store, S3Store) else [
        f"many/{i:04d}" for i in range(50)
    ]  # more than one S3 delete batch (1000)
    for key in keys:
        store.put(key, b"x")
    store.delete(keys[:-1])
    assert _listing(store, "many/") == [(keys[-1], 1)]


# --- keys -----------------------------------------------------------------------------------------

INVALID_KEYS = ["", "/abs", "a//b", "a/../b", "./a", "a/.", "a/"]


@pytest.mark.parametrize("key", INVALID_KEYS)
def test_invalid_keys_are_refused(store: Store, key: str) -> None:
    operations: dict[str, Callable[[], Any]] = {
        "put": lambda: store.put(key, b"x"),
        "put if_absent": lambda: store.put(key, b"x", if_absent=True),
        "get": lambda: store.get(key),
        "open": lambda: store.open(key),
        "stat": lambda: store.stat(key),
        "delete": lambda: store.delete([key]),
    }
    for name, op in operations.items():
        with pytest.raises(StoreError, match="invalid object key") as exc_info:
            op()
        assert not isinstance(exc_info.value, (ObjectNotFoundError, ObjectExistsError)), name
    assert _listing(store, "") == []


# --- file store specifics -------------------------------------------------------------------------


def _all_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_file_refused_create_only_leaves_no_temp_files(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = FileStore(root)
    store.put("m/manifest.json", b"first", if_absent=True)
    with pytest.raises(ObjectExistsError):
        store.put("m/manifest.json", TrickleStream(b"second" * 1000, step=100), if_absent=True)
    assert _all_files(root) == ["m/manifest.json"]
    assert store.get("m/manifest.json") == b"first"


def test_file_create_only_lost_race_leaves_no_temp_files(tmp_path: Path) -> None:
    # The target appears while our data is being written (after the early existence check), so the
    # refusal comes from the atomic link itself.
    root = tmp_path / "store"
    store = FileStore(root)
    rival = FileStore(root)
    state = {"raced": False}

    def rival_writes_first() -> None:
        if not state["raced"]:
            state["raced"] = True
            rival.put("m/manifest.json", b"rival")

    with pytest.raises(ObjectExistsError):
        store.put("m/manifest.json", TrickleStream(b"mine" * 1000, step=100, on_read=rival_writes_first),
                  if_absent=True)
    assert state["raced"]
    assert store.get("m/manifest.json") == b"rival"
    assert _all_files(root) == ["m/manifest.json"]


def test_file_failing_stream_leaves_nothing(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = FileStore(root)
    store.put("keep", b"kept")

    def boom_later() -> None:
        if stream.reads == 3:
            raise RuntimeError("source broke")

    for if_absent in (False, True):
        stream = TrickleStream(b"z" * 10_000, step=100, on_read=boom_later)
        with pytest.raises(RuntimeError, match="source broke"):
            store.put("d/broken", stream, if_absent=if_absent)
        assert store.stat("d/broken") is None
        assert _all_files(root) == ["keep"]
    stream = TrickleStream(b"z" * 10_000, step=100, on_read=boom_later)
    with pytest.raises(RuntimeError):
        store.put("keep", stream)  # a failed overwrite keeps the old object whole
    assert store.get("keep") == b"kept"
    assert _all_files(root) == ["keep"]


@pytest.mark.parametrize("if_absent", [False, True])
def test_file_reader_never_sees_partial_new_object(tmp_path: Path, if_absent: bool) -> None:
    store = FileStore(tmp_path / "store")
    target = tmp_path / "store" / "snap" / "data.bin"
    body = random_bytes(50_000, seed=8)

    def not_visible_yet() -> None:
        assert not target.exists()
        assert store.stat("snap/data.bin") is None
        assert _listing(store, "") == []  # the temporary file is not listed either

    stream = TrickleStream(body, step=1000, on_read=not_visible_yet)
    store.put("snap/data.bin", stream, if_absent=if_absent)
    assert stream.reads > 10
    assert target.read_bytes() == body
    assert _all_files(tmp_path / "store") == ["snap/data.bin"]


def test_file_reader_sees_old_object_during_overwrite(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")
    store.put("snap/data.bin", b"old content")
    body = random_bytes(50_000, seed=9)

    def still_old() -> None:
        assert store.get("snap/data.bin") == b"old content"
        assert _listing(store, "") == [("snap/data.bin", len(b"old content"))]

    stream = TrickleStream(body, step=1000, on_read=still_old)
    store.put("snap/data.bin", stream)
    assert stream.reads > 10
    assert store.get("snap/data.bin") == body


# --- S3 store specifics ---------------------------------------------------------------------------


@pytest.fixture
def s3_client(moto_server: Any) -> Any:
    import boto3

    return boto3.client("s3", region_name=REGION)


@pytest.mark.emulator
def test_s3_unknown_bucket_is_unreachable(moto_server: Any) -> None:
    store = S3Store("cloudkeep-no-such-bucket", S3_PREFIX, region=REGION)
    operations: dict[str, Callable[[], Any]] = {
        "put": lambda: store.put("k", b"x"),
        "put if_absent": lambda: store.put("k", b"x", if_absent=True),
        "get": lambda: store.get("k"),
        "open": lambda: store.open("k"),
        "list": lambda: list(store.list("")),
        "delete": lambda: store.delete(["k"]),
    }
    for name, op in operations.items():
        with pytest.raises(StoreUnreachableError) as exc_info:
            op()
        assert exc_info.value.exit_code == EXIT_UNREACHABLE == 3, name
        assert "cloudkeep-no-such-bucket" in str(exc_info.value), name


@pytest.mark.emulator
def test_s3_keys_live_under_the_prefix(s3_bucket: str, s3_client: Any) -> None:
    store = S3Store(s3_bucket, "/" + S3_PREFIX + "/", region=REGION)  # slashes around are dropped
    store.put("a/1", b"one")
    # Neighbours outside the store's prefix: at the bucket root, a sibling prefix, the bare prefix.
    for raw in ("a/1", "a/2", "team/cloudkeep2/a/3", "team/cloudkeepx", "team/other"):
        s3_client.put_object(Bucket=s3_bucket, Key=raw, Body=b"outside")
    raw_keys = [o["Key"] for o in s3_client.list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert f"{S3_PREFIX}/a/1" in raw_keys
    assert _listing(store, "") == [("a/1", 3)]
    assert _listing(store, "a/") == [("a/1", 3)]
    assert store.get("a/1") == b"one"
    with pytest.raises(ObjectNotFoundError):
        store.get("a/2")
    store.delete(["a/1", "a/2"])
    remaining = sorted(o["Key"] for o in s3_client.list_objects_v2(Bucket=s3_bucket)["Contents"])
    assert remaining == ["a/1", "a/2", "team/cloudkeep2/a/3", "team/cloudkeepx", "team/other"]


@pytest.mark.emulator
def test_s3_large_object_is_multipart_and_refusal_leaves_no_upload(s3_bucket: str, s3_client: Any) -> None:
    store = S3Store(s3_bucket, S3_PREFIX, region=REGION)
    body = random_bytes(LARGE, seed=10)
    store.put("big/blob", TrickleStream(body, step=100_000), if_absent=True)
    head = s3_client.head_object(Bucket=s3_bucket, Key=f"{S3_PREFIX}/big/blob")
    assert head["ContentLength"] == LARGE
    assert head["ETag"].strip('"').endswith("-3")  # three full-size parts: 8 MiB, 8 MiB, rest
    with pytest.raises(ObjectExistsError):
        store.put("big/blob", TrickleStream(body[::-1], step=100_000), if_absent=True)
    assert s3_client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []
    assert digest(store.get("big/blob")) == digest(body)
