"""Decompression bombs (issue #17.5): every read path of a part stops at the manifest's
``stored_bytes`` and ``raw_bytes`` and at a line longer than any item — fast, with flat memory.

The attack: a part is replaced in the store by a small zstd frame that inflates to 1 GiB (or
more). Before, verify peaked at 1.09 GB RSS and 4 GiB ended in MemoryError.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import zstandard

from cloudkeep import layout
from cloudkeep.blobs import listing_records
from cloudkeep.codec import (
    MAX_LINE_BYTES,
    ContentDigest,
    DecryptingReader,
    HashingReader,
    PartLimitError,
    encrypt_part,
    iter_gzip_lines,
    iter_lines,
    iter_part_lines,
    open_part,
)
from cloudkeep.drills import verify_sample
from cloudkeep.engine import RunOptions, backup
from cloudkeep.errors import RestoreError
from cloudkeep.keys import Keyring
from cloudkeep.keys.local import create_key_file
from cloudkeep.manifest import Manifest
from cloudkeep.policy import Policy, parse_policy
from cloudkeep.restore import restore
from cloudkeep.stores.file import FileStore
from cloudkeep.verify import verify_integrity
from test_engine import ScriptedSource

GIB = 1 << 30


def zstd_bomb(size: int, fill: bytes = b"\0") -> bytes:
    """A valid zstd frame of ``size`` bytes of ``fill``: a few tens of KB for a GiB."""
    obj = zstandard.ZstdCompressor(level=3).compressobj()
    block = fill * (1 << 24)
    out = [obj.compress(block) for _ in range(size // len(block))]
    out.append(obj.flush())
    return b"".join(out)


@pytest.fixture(scope="module")
def bomb() -> bytes:
    data = zstd_bomb(GIB)
    assert len(data) < 64 * 1024  # the 36 KB part
    return data


class CountingStore:
    """A FileStore whose opened streams count the bytes read from them."""

    def __init__(self, inner: FileStore) -> None:
        self.inner = inner
        self.capabilities = inner.capabilities
        self.bytes_read = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def open(self, key: str) -> Any:
        outer = self
        raw = self.inner.open(key)

        class Counted(io.RawIOBase):
            def read(self, size: int = -1) -> bytes:
                data = raw.read(size)
                outer.bytes_read += len(data)
                return data

            def readable(self) -> bool:
                return True

            def close(self) -> None:
                raw.close()
                super().close()

        return Counted()


class CollectingSource(ScriptedSource):
    """The scripted DynamoDB-like source, which can also be restored into (lines collected)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.restored: list[bytes] = []

    def open_restore(self, target: str, recorded: dict[str, Any], *, overwrite: bool) -> Any:
        source = self

        class Writer:
            def write(self, lines: list[bytes]) -> None:
                source.restored.extend(lines)

        return Writer()

    def sample_check(self, lines: list[bytes]) -> list[str]:
        return ["matched" for _ in lines]


def policy_for(tmp_path: Path, *, encrypted: bool = False) -> Policy:
    keys = ""
    if encrypted:
        create_key_file(tmp_path / "k.key")
        keys = f"keys: {{k: {{provider: local, path: {tmp_path / 'k.key'}}}}}\nencryption: {{keys: [k]}}\n"
    return parse_policy(f"""
version: 1
stores: {{vault: {{type: file, path: {tmp_path / 'vault'}}}}}
tiers: {{t: {{schedule: "0 * * * *", rpo: 2h, retention: {{last: 3}}}}}}
datasets:
  a: {{source: {{type: dynamodb, table: aaa, region: us-east-1}}, tier: t, store: vault}}
{keys}""")


def take(policy: Policy, store: FileStore, **source: Any) -> Manifest:
    result = backup(policy, "a", store=store, source=CollectingSource(**source),
                    options=RunOptions(part_size=2000), keyring=Keyring.from_policy(policy))
    assert result.manifest is not None and len(result.manifest.parts) >= 2
    return result.manifest


def plant(store: FileStore, manifest: Manifest, index: int, body: bytes) -> Path:
    """Overwrite part ``index`` in the file store (as a writer to the store could)."""
    path = store.root / layout.part_key(manifest.dataset, manifest.snapshot_id, manifest.parts[index].name)
    path.write_bytes(body)
    return path


def forged(manifest: Manifest, index: int, body: bytes, *, raw_bytes: int) -> Manifest:
    """The manifest as an attacker who also rewrote it would make it: the bomb's size and
    sha256, and a huge raw size (an unencrypted, untagged manifest cannot prove otherwise)."""
    import hashlib

    doc = json.loads(manifest.to_bytes())
    part = doc["parts"][index]
    part.update(stored_bytes=len(body), sha256=hashlib.sha256(body).hexdigest(), raw_bytes=raw_bytes)
    return Manifest.model_validate(doc)


# ------------------------------------------------------------------------- the readers themselves


def test_zstd_reader_stops_at_raw_bytes_and_at_the_line_limit(bomb: bytes) -> None:
    with pytest.raises(PartLimitError) as err:
        list(iter_lines(io.BytesIO(bomb), max_raw=10_000))
    assert err.value.check == "decompressed size" and "10000 bytes" in str(err.value)
    # no raw limit at all (a forged manifest): the line limit still stops it early
    reader = HashingReader(io.BytesIO(bomb))
    with pytest.raises(PartLimitError) as err:
        list(iter_lines(reader, chunk_size=1024))  # type: ignore[arg-type]
    assert err.value.check == "line length"
    assert reader.size < len(bomb) // 4  # it stopped after a few KB of the frame


def test_a_newline_bomb_stops_at_raw_bytes() -> None:
    frame = zstd_bomb(1 << 28, fill=b"\n")
    lines = iter_lines(io.BytesIO(frame), max_raw=5_000_000)
    count = 0
    with pytest.raises(PartLimitError):
        for _ in lines:
            count += 1
    assert count <= 5_000_000


def test_exact_raw_bytes_is_accepted_and_one_more_is_not() -> None:
    data = b"".join(b'{"n":%d}\n' % i for i in range(10_000))
    frame = zstandard.ZstdCompressor().compress(data)
    assert len(list(iter_lines(io.BytesIO(frame), max_raw=len(data)))) == 10_000
    with pytest.raises(PartLimitError):
        list(iter_lines(io.BytesIO(frame), max_raw=len(data) - 1))
    gz = gzip.compress(data)
    assert len(list(iter_part_lines(io.BytesIO(gz), "gzip", max_raw=len(data)))) == 10_000
    with pytest.raises(PartLimitError):
        list(iter_part_lines(io.BytesIO(gz), "gzip", max_raw=len(data) - 1))
    assert len(list(iter_part_lines(io.BytesIO(data), "none", max_raw=len(data)))) == 10_000
    with pytest.raises(PartLimitError):
        list(iter_part_lines(io.BytesIO(data), "none", max_raw=len(data) - 1))


def test_gzip_bomb_of_several_members_stops_early() -> None:
    # DynamoDB export parts are gzip, possibly of several members: each member is bounded too
    member = gzip.compress(b"\0" * (64 << 20), compresslevel=9)
    body = member * 4  # 256 MiB of zeros from about 260 KB
    reader = HashingReader(io.BytesIO(body))
    with pytest.raises(PartLimitError) as err:
        list(iter_gzip_lines(reader))  # type: ignore[arg-type]
    assert err.value.check == "line length"
    with pytest.raises(PartLimitError) as err:
        list(iter_gzip_lines(io.BytesIO(body), max_raw=1_000_000))
    assert err.value.check == "decompressed size"


def test_a_long_line_is_refused_before_it_is_held_whole() -> None:
    data = b"x" * (MAX_LINE_BYTES + 10) + b"\n"
    with pytest.raises(PartLimitError) as err:
        list(iter_part_lines(io.BytesIO(data), "none"))
    assert err.value.check == "line length"
    assert list(iter_part_lines(io.BytesIO(b"ab\ncd\n"), "none", max_line=2)) == [b"ab", b"cd"]
    with pytest.raises(PartLimitError):
        list(iter_part_lines(io.BytesIO(b"ab\ncde\n"), "none", max_line=2))


def test_stored_bytes_bound_what_is_read_from_the_store() -> None:
    reader = HashingReader(io.BytesIO(b"x" * 1000), limit=100)
    reader.drain()
    assert reader.size == 100 and reader.exceeded
    with pytest.raises(PartLimitError):
        reader.check_size()
    exact = HashingReader(io.BytesIO(b"x" * 100), limit=100)
    exact.drain()
    assert exact.size == 100 and not exact.exceeded
    exact.check_size()


def test_encrypted_parts_are_bounded_in_chunks_and_bytes(bomb: bytes) -> None:
    key = os.urandom(32)
    stored = encrypt_part(key, "sid", "p", bomb)
    hashing, lines = open_part(io.BytesIO(stored), compression="zstd", stored_bytes=len(stored),
                               raw_bytes=50_000, data_key=key, snapshot_id="sid", part_name="p")
    with pytest.raises(PartLimitError) as err:
        list(lines)
    assert err.value.check == "decompressed size"
    # more chunks than the part's size allows: refused before decrypting them
    many = encrypt_part(key, "sid", "p", b"y" * 64, chunk_size=16)
    reader = DecryptingReader(io.BytesIO(many), key, "sid", "p", chunk_size=16, max_chunks=2)
    with pytest.raises(PartLimitError):
        reader.read()
    assert DecryptingReader(io.BytesIO(many), key, "sid", "p", chunk_size=16).read() == b"y" * 64


# -------------------------------------------------------------- verify, sample, restore, listing


def test_verify_reports_a_planted_bomb_reading_only_the_recorded_bytes(tmp_path: Path, bomb: bytes) -> None:
    policy = policy_for(tmp_path)
    files = FileStore(tmp_path / "vault")
    manifest = take(policy, files)
    plant(files, manifest, 0, bomb)
    store = CountingStore(files)
    report = verify_integrity(store, manifest)  # type: ignore[arg-type]
    checks = {(p.part, p.check) for p in report.problems}
    name = manifest.parts[0].name
    assert (name, "size") in checks, report.problems
    assert not report.ok
    # every part read at most up to its recorded size (+1 byte to notice more)
    assert store.bytes_read <= manifest.totals.stored_bytes + len(manifest.parts)
    # the other parts still verify: only the planted part has problems
    assert {p.part for p in report.problems if p.part} == {name}


def test_verify_of_a_forged_manifest_stops_at_the_line_limit(tmp_path: Path, bomb: bytes) -> None:
    policy = policy_for(tmp_path)
    files = FileStore(tmp_path / "vault")
    manifest = take(policy, files)
    plant(files, manifest, 0, bomb)
    report = verify_integrity(files, forged(manifest, 0, bomb, raw_bytes=4 * GIB))
    assert (manifest.parts[0].name, "line length") in {(p.part, p.check) for p in report.problems}
    # and with the part's true raw size left in the manifest: the decompressed size limit
    report = verify_integrity(files, forged(manifest, 0, bomb, raw_bytes=manifest.parts[0].raw_bytes))
    problem = next(p for p in report.problems if p.part == manifest.parts[0].name)
    assert problem.check == "decompressed size" and "raw_bytes" in problem.message


def test_encrypted_snapshot_with_a_planted_bomb_fails_verify_and_restore(tmp_path: Path, bomb: bytes) -> None:
    policy = policy_for(tmp_path, encrypted=True)
    files = FileStore(tmp_path / "vault")
    manifest = take(policy, files)
    keyring = Keyring.from_policy(policy)
    # the worst case: an attacker holding the data key encrypts a bomb under the part's name
    data_key = keyring.data_key(manifest)
    body = encrypt_part(data_key, manifest.snapshot_id, manifest.parts[0].name, bomb)
    plant(files, manifest, 0, body)
    report = verify_integrity(files, manifest, keyring=keyring)
    assert (manifest.parts[0].name, "size") in {(p.part, p.check) for p in report.problems}
    report = verify_integrity(files, forged(manifest, 0, body, raw_bytes=manifest.parts[0].raw_bytes),
                              keyring=keyring)
    checks = {(p.part, p.check) for p in report.problems}
    assert (manifest.parts[0].name, "decompressed size") in checks
    assert (None, "manifest authentication") in checks


def test_restore_refuses_a_planted_bomb(tmp_path: Path, bomb: bytes) -> None:
    policy = policy_for(tmp_path)
    files = FileStore(tmp_path / "vault")
    manifest = take(policy, files)
    source = CollectingSource()
    plant(files, manifest, 0, bomb)
    with pytest.raises(RestoreError, match="refusing to restore a damaged snapshot"):
        restore(policy, files, manifest, "t", source=source)  # type: ignore[arg-type]
    assert source.restored == []
    # a forged manifest whose sizes match the bomb: the read stops at the line limit
    with pytest.raises(RestoreError, match="is damaged: a line is longer than"):
        restore(policy, files, forged(manifest, 0, bomb, raw_bytes=4 * GIB), "t",
                source=source, workers=1)  # type: ignore[arg-type]
    with pytest.raises(RestoreError, match=r"is damaged: the part inflates to more than .*raw_bytes"):
        restore(policy, files, forged(manifest, 0, bomb, raw_bytes=manifest.parts[0].raw_bytes), "t",
                source=source, workers=1)  # type: ignore[arg-type]


def test_restore_of_intact_parts_still_checks_out(tmp_path: Path) -> None:
    policy = policy_for(tmp_path)
    files = FileStore(tmp_path / "vault")
    manifest = take(policy, files)
    source = CollectingSource()
    result = restore(policy, files, manifest, "t", source=source)  # type: ignore[arg-type]
    assert result.digest_ok and result.items == manifest.totals.items
    digest = ContentDigest()
    for line in source.restored:
        digest.add_line(line)
    assert digest.hexdigest() == manifest.content_digest.value


def test_sample_reports_a_planted_bomb(tmp_path: Path, bomb: bytes) -> None:
    policy = policy_for(tmp_path)
    files = FileStore(tmp_path / "vault")
    manifest = take(policy, files)
    plant(files, manifest, 0, bomb)
    store = CountingStore(files)
    report = verify_sample(policy, store, forged(manifest, 0, bomb, raw_bytes=manifest.parts[0].raw_bytes),  # type: ignore[arg-type]
                           items=5, source=CollectingSource(), seed=1)
    problem = next(p for p in report.problems if p.part == manifest.parts[0].name)
    assert problem.check == "decompressed size"
    assert store.bytes_read <= manifest.totals.stored_bytes + len(bomb)


def test_s3_listing_parts_are_read_within_their_limits(tmp_path: Path, bomb: bytes) -> None:
    policy = policy_for(tmp_path)
    files = FileStore(tmp_path / "vault")
    manifest = take(policy, files)
    plant(files, manifest, 0, bomb)
    with pytest.raises(PartLimitError):
        list(listing_records(files, forged(manifest, 0, bomb, raw_bytes=manifest.parts[0].raw_bytes)))
    assert list(listing_records(files, manifest, tolerant=True)) == []  # stops quietly at the bomb


# ----------------------------------------------------------------------- the CLI: flat memory


_MEASURED = """\
import atexit, os, sys

def _report():  # the peak of this process since exec (VmHWM), not of the forked parent
    with open("/proc/self/status") as status:
        line = next(l for l in status if l.startswith("VmHWM:"))
    with open(os.environ["CK_PEAK_FILE"], "w") as out:
        out.write(line.split()[1])

atexit.register(_report)
from cloudkeep.cli import run_cli
run_cli()
"""


def _run_measured(args: list[str], env: dict[str, str], peak_file: Path) -> tuple[int, int, str]:
    """Run the CLI in a child process: its exit code, its own peak RSS in bytes, its stderr."""
    proc = subprocess.run([sys.executable, "-c", _MEASURED, *args], capture_output=True, text=True,
                          env=env | {"CK_PEAK_FILE": str(peak_file)}, timeout=600)
    return proc.returncode, int(peak_file.read_text()) * 1024, proc.stderr


def test_cli_verify_of_a_4gib_bomb_keeps_memory_flat(tmp_path: Path) -> None:
    policy = policy_for(tmp_path)
    files = FileStore(tmp_path / "vault")
    manifest = take(policy, files, segments=1, per_segment=200)
    policy_file = tmp_path / "cloudkeep.yaml"
    policy_file.write_text(f"""
version: 1
stores: {{vault: {{type: file, path: {tmp_path / 'vault'}}}}}
tiers: {{t: {{schedule: "0 * * * *", rpo: 2h, retention: {{last: 3}}}}}}
datasets:
  a: {{source: {{type: dynamodb, table: aaa, region: us-east-1}}, tier: t, store: vault}}
""")
    big = zstd_bomb(4 * GIB)  # ended in MemoryError before
    plant(files, manifest, 0, big)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    code, peak, err = _run_measured(["--policy", str(policy_file), "verify", f"a@{manifest.snapshot_id}"], env,
                                    tmp_path / "peak")
    assert code == 1, err
    assert "Traceback" not in err
    assert peak < 200 * 1024 * 1024, f"verify peaked at {peak / 2**20:.0f} MiB"
