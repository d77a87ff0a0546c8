"""Item framing (NDJSON), zstd compression, sha256 of stored bytes, and the content digest.

A part is a zstd frame of newline-terminated JSON lines, one item per line. The *content digest*
of a snapshot is order-independent: the sum, modulo 2**256, of sha256 over each item's canonical
line. Any reader that produces the same canonical lines (a restored copy scanned again, say) gets
the same digest, whatever the order or the split into parts.

A source may name top-level keys of its lines that a restored copy cannot reproduce (Firestore's
``update_time``: the service sets it on every write). Those keys are left out of the digest: such
a line enters it re-encoded canonically without them. The manifest records the names
(``content_digest.ignores``), so verify and restore compute the same digest without the source.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO

import zstandard

from . import layout

if TYPE_CHECKING:
    from .manifest import Manifest
    from .stores import Store

log = logging.getLogger(__name__)

COMPRESSION = "zstd"
DEFAULT_LEVEL = 3
DIGEST_ALGORITHM = "sha256-sum-mod-2^256"
_MOD = 1 << 256


def canonical_json(value: object) -> bytes:
    """The one encoding of a JSON value: sorted keys, no spaces, UTF-8 (not \\u escapes)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def digest_form(ignores: Sequence[str]) -> Callable[[bytes], bytes] | None:
    """How a line enters the content digest: as is (None), or without the top-level keys
    ``ignores``, re-encoded canonically."""
    if not ignores:
        return None
    dropped = frozenset(ignores)

    def strip(line: bytes) -> bytes:
        try:
            doc = json.loads(line)
        except ValueError:
            return line  # not an item: it enters as is (verify reports it; the digest differs)
        if not isinstance(doc, dict):
            return line
        return canonical_json({k: v for k, v in doc.items() if k not in dropped})

    return strip


class ContentDigest:
    """Order-independent multiset digest of item lines (see module docstring)."""

    __slots__ = ("value", "count", "_form")

    def __init__(self, value: int = 0, count: int = 0, *, ignores: Sequence[str] = ()) -> None:
        self.value = value
        self.count = count
        self._form = digest_form(ignores)

    def add_line(self, line: bytes) -> None:
        """Add one canonical item line (without its trailing newline)."""
        if self._form is not None:
            line = self._form(line)
        self.value = (self.value + int.from_bytes(hashlib.sha256(line).digest(), "big")) % _MOD
        self.count += 1

    def merge(self, other: ContentDigest) -> None:
        self.value = (self.value + other.value) % _MOD
        self.count += other.count

    def hexdigest(self) -> str:
        return f"{self.value:064x}"


@dataclass
class PartStats:
    """What a finished part contains; goes into the manifest."""

    name: str
    segment: int
    index: int
    items: int
    raw_bytes: int
    stored_bytes: int
    sha256: str
    key_index: str | None = None  # sha256 of the part's key index object (cloudkeep.keyindex)


@dataclass
class PartBuffer:
    """Accumulates encoded item lines of one part, compressed as they come (bounded memory).

    The compressed bytes are held in memory until the part is flushed; a part is closed once its
    raw size reaches the part size, so memory per writer is bounded by the part size's compressed
    form, whatever the table size.
    """

    level: int = DEFAULT_LEVEL
    items: int = 0
    raw_bytes: int = 0
    digest: ContentDigest = field(default_factory=ContentDigest)
    _out: io.BytesIO = field(default_factory=io.BytesIO)
    _compressor: zstandard.ZstdCompressionObj | None = None

    def __post_init__(self) -> None:
        self._compressor = zstandard.ZstdCompressor(level=self.level).compressobj()

    def add_lines(self, lines: list[bytes]) -> None:
        """Add canonical item lines (each without its newline)."""
        assert self._compressor is not None
        for line in lines:
            self.digest.add_line(line)
        chunk = b"\n".join(lines) + b"\n"
        self.items += len(lines)
        self.raw_bytes += len(chunk)
        self._out.write(self._compressor.compress(chunk))

    def finish(self) -> bytes:
        """Close the frame and return the stored bytes."""
        assert self._compressor is not None
        self._out.write(self._compressor.flush())
        self._compressor = None
        return self._out.getvalue()


MAX_LINE_BYTES = 32 * 1024 * 1024
"""The longest item line any reader accepts (the largest items of every source — DynamoDB
400 KB, Firestore 1 MiB, Cosmos DB 2 MB — stay far below it, even JSON-escaped)."""

_ZSTD_FEED = 256
"""Compressed bytes handed to zstd at a time. zstd inflates at most one 128 KiB block per
4 bytes of input, so one call yields at most about 8 MiB, however hostile the input."""

_INFLATE_STEP = 1 << 20
"""Most decompressed bytes one gzip (zlib) call may return."""


class PartLimitError(Exception):
    """A part exceeds what its manifest allows: more stored bytes, more decompressed bytes, a
    longer line than any item, more encrypted chunks. Reading stops at once (``check`` names
    the limit, as verify reports it)."""

    def __init__(self, check: str, message: str) -> None:
        self.check = check
        super().__init__(message)


class HashingReader:
    """Wraps a binary stream, counting and hashing every byte read through it.

    With ``limit``, the stream ends after ``limit`` bytes whatever the object holds: at most
    ``limit + 1`` bytes are ever asked of the underlying stream, the one byte past the limit
    only to notice (``exceeded``) that the object is larger than it should be. Readers above
    (decryption, decompression) then see a truncated part and fail as such; callers report
    ``exceeded`` (:meth:`check_size`)."""

    def __init__(self, raw: BinaryIO, *, limit: int | None = None) -> None:
        self._raw = raw
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.limit = limit
        self.exceeded = False

    def read(self, size: int = -1) -> bytes:
        if self.limit is not None:
            room = self.limit - self.size
            if room <= 0:
                if not self.exceeded and room == 0 and self._raw.read(1):
                    self.exceeded = True  # larger than the limit: the extra byte is not hashed
                return b""
            size = room if size < 0 else min(size, room)
        data = self._raw.read(size)
        self.sha256.update(data)
        self.size += len(data)
        return data

    def readable(self) -> bool:
        return True

    def drain(self) -> None:
        """Read (and hash) whatever the decompressor left unread (up to the limit)."""
        while self.read(1 << 20):
            pass

    def check_size(self) -> None:
        """Raise :class:`PartLimitError` if the object held more than ``limit`` bytes (drain
        first)."""
        if self.exceeded:
            raise PartLimitError("size", f"the stored object holds more than the {self.limit} "
                                 "bytes its manifest records; reading stopped there")


def iter_part_lines(stream: BinaryIO, compression: str = COMPRESSION, *,
                    max_raw: int | None = None, max_line: int = MAX_LINE_BYTES) -> Iterator[bytes]:
    """The lines of a part compressed with ``compression`` (a manifest's ``codec.compression``).

    ``max_raw``: more decompressed bytes than this raise :class:`PartLimitError` as soon as they
    appear (a part's ``raw_bytes``); a line longer than ``max_line`` likewise. Memory stays
    bounded by ``max_line`` plus a few MiB whatever the input."""
    if compression == "gzip":
        return iter_gzip_lines(stream, max_raw=max_raw, max_line=max_line)
    if compression == "none":
        return _split_lines(_counted(iter(lambda: stream.read(1 << 20), b""), max_raw), max_line)
    return iter_lines(stream, max_raw=max_raw, max_line=max_line)


def iter_gzip_lines(stream: BinaryIO, *, chunk_size: int = 1 << 20, max_raw: int | None = None,
                    max_line: int = MAX_LINE_BYTES) -> Iterator[bytes]:
    """Decompress a gzip file (one or more members, as DynamoDB's export writes) and yield its
    lines without newlines. Raises :class:`TruncatedPartError` when it ends early and
    :class:`PartLimitError` past ``max_raw`` decompressed bytes or a line of ``max_line``."""
    import zlib

    def chunks() -> Iterator[bytes]:
        dobj: Any = None
        while True:
            chunk = stream.read(chunk_size)
            if not chunk:
                break
            while chunk:
                if dobj is None:
                    dobj = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
                try:
                    out = dobj.decompress(chunk, _INFLATE_STEP)  # bounded output per call
                except zlib.error as exc:
                    raise TruncatedPartError(f"not valid gzip data ({exc})") from None
                yield out
                if dobj.eof:  # a member ends: what follows is the next member
                    chunk, dobj = dobj.unused_data, None
                elif dobj.unconsumed_tail:
                    chunk = dobj.unconsumed_tail
                elif len(out) == _INFLATE_STEP:
                    chunk = b""
                    while len(out) == _INFLATE_STEP and not dobj.eof:  # output held back
                        out = dobj.decompress(b"", _INFLATE_STEP)
                        yield out
                    if dobj.eof:
                        chunk, dobj = dobj.unused_data, None
                else:
                    chunk = b""
        if dobj is not None and not dobj.eof:
            raise TruncatedPartError("the gzip data ends early (truncated part)")

    return _split_lines(_counted(chunks(), max_raw), max_line)


def _counted(chunks: Iterator[bytes], max_raw: int | None) -> Iterator[bytes]:
    """``chunks``, stopping with :class:`PartLimitError` once they add up to more than
    ``max_raw`` bytes."""
    total = 0
    for data in chunks:
        total += len(data)
        if max_raw is not None and total > max_raw:
            raise PartLimitError("decompressed size", f"the part inflates to more than the "
                                 f"{max_raw} bytes its manifest records (raw_bytes); reading "
                                 "stopped")
        yield data


def _split_lines(chunks: Iterator[bytes], max_line: int = MAX_LINE_BYTES) -> Iterator[bytes]:
    """Lines (without newlines) of the byte stream ``chunks``; a line longer than ``max_line``
    raises :class:`PartLimitError` before it is held whole."""
    pending: list[bytes] = []
    held = 0
    for data in chunks:
        if b"\n" not in data:
            if data:
                pending.append(data)
                held += len(data)
                if held > max_line:
                    raise _line_too_long(max_line)
            continue
        lines = data.split(b"\n")
        if pending:
            lines[0] = b"".join((*pending, lines[0]))
            pending = []
        tail = lines.pop()
        for line in lines:
            if len(line) > max_line:
                raise _line_too_long(max_line)
        yield from lines
        if tail:
            pending, held = [tail], len(tail)
            if held > max_line:
                raise _line_too_long(max_line)
        else:
            held = 0
    if pending:
        raise TruncatedPartError("the last line is incomplete")


def _line_too_long(max_line: int) -> PartLimitError:
    return PartLimitError("line length", f"a line is longer than {max_line} bytes, more than any "
                          "item; reading stopped")


def iter_lines(stream: BinaryIO, *, chunk_size: int = 1 << 20, max_raw: int | None = None,
               max_line: int = MAX_LINE_BYTES) -> Iterator[bytes]:
    """Decompress a zstd part from ``stream`` and yield its lines without newlines.

    Raises ``zstandard.ZstdError`` on corrupt data, :class:`TruncatedPartError` when the frame or
    the last line is incomplete or bytes follow the end of the frame, and
    :class:`PartLimitError` past ``max_raw`` decompressed bytes or a line of ``max_line``.
    Compressed input is fed in small slices, so no single step inflates to more than a few MiB.
    """
    return _split_lines(_counted(_zstd_chunks(stream, chunk_size), max_raw), max_line)


def _zstd_chunks(stream: BinaryIO, chunk_size: int) -> Iterator[bytes]:
    dobj = zstandard.ZstdDecompressor().decompressobj()
    out: list[bytes] = []
    held = 0
    while True:
        chunk = stream.read(chunk_size)
        if not chunk:
            break
        view = memoryview(chunk)
        for start in range(0, len(view), _ZSTD_FEED):
            if dobj.eof:
                raise TruncatedPartError("unexpected bytes after the end of the compressed data")
            data = dobj.decompress(view[start : start + _ZSTD_FEED])
            if data:
                out.append(data)
                held += len(data)
                if held >= _INFLATE_STEP:  # hand on about 1 MiB at a time
                    yield b"".join(out)
                    out, held = [], 0
    if out:
        yield b"".join(out)
    if not dobj.eof:
        raise TruncatedPartError("the compressed data ends early (truncated part)")
    if dobj.unused_data:
        raise TruncatedPartError("unexpected bytes after the end of the compressed data")


def open_part(stream: BinaryIO, *, compression: str, stored_bytes: int | None,
              raw_bytes: int | None, data_key: bytes | None = None, snapshot_id: str = "",
              part_name: str = "", max_line: int = MAX_LINE_BYTES) -> tuple[HashingReader, Iterator[bytes]]:
    """Read one stored part within its manifest's limits: the hashing reader of the stored
    bytes (at most ``stored_bytes``) and the part's lines (at most ``raw_bytes`` decompressed,
    lines of at most ``max_line``), decrypted first when ``data_key`` is given (at most as many
    chunks as ``stored_bytes`` can hold). Every limit fails with :class:`PartLimitError` as soon
    as it is crossed; the caller drains the hashing reader and compares its sha256."""
    hashing = HashingReader(stream, limit=stored_bytes)
    plain: Any = hashing
    if data_key is not None:
        plain = DecryptingReader(hashing, data_key, snapshot_id, part_name,  # type: ignore[arg-type]
                                 max_chunks=None if stored_bytes is None else
                                 max_encrypted_chunks(stored_bytes))
    return hashing, iter_part_lines(plain, compression, max_raw=raw_bytes, max_line=max_line)


class TruncatedPartError(Exception):
    """A part ends early."""


# --------------------------------------------------------------------------------------------
# Envelope encryption (AES-256-GCM) of parts, and the manifest's authentication tag.
#
# An encrypted part is a header followed by chunks::
#
#     b"CKE1" + 7-byte random nonce prefix
#     chunk_0 … chunk_n: AES-256-GCM(data key, nonce = prefix + uint32 counter + last flag,
#                                    plaintext ≤ ENC_CHUNK bytes, associated data = part AAD)
#
# The associated data binds the snapshot id and the part name (a part cannot be moved to another
# place or snapshot unnoticed); the counter and the last-chunk flag in the nonce make reordering,
# dropping or truncating chunks fail authentication. Chunks keep reading streamed: every chunk is
# authenticated before any of its plaintext is used. The data key is fresh for every snapshot.

ENCRYPTION_ALGORITHM = "AES-256-GCM"
ENC_MAGIC = b"CKE1"
ENC_CHUNK = 1 << 20
_NONCE_PREFIX = 7
_TAG = 16
MANIFEST_MAC_ALGORITHM = "HMAC-SHA256"
MANIFEST_MAC_KDF = "HKDF-SHA256(data key, info=cloudkeep manifest authentication v1)"


def part_aad(snapshot_id: str, part_name: str) -> bytes:
    """Associated data of a part: what the part is (not secret, not stored)."""
    return b"cloudkeep part v1\x00" + snapshot_id.encode() + b"\x00" + part_name.encode()


_MAX_CHUNKS = 1 << 32  # the nonce's counter is 4 bytes


def max_encrypted_chunks(stored_bytes: int, chunk_size: int = ENC_CHUNK) -> int:
    """How many chunks an encrypted part of ``stored_bytes`` bytes can hold, at most."""
    body = max(0, stored_bytes - len(ENC_MAGIC) - _NONCE_PREFIX)
    return max(1, -(-body // (chunk_size + _TAG)))


def _nonce(prefix: bytes, counter: int, last: bool) -> bytes:
    return prefix + counter.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


def encrypt_part(data_key: bytes, snapshot_id: str, part_name: str, body: bytes,
                 *, chunk_size: int = ENC_CHUNK) -> bytes:
    """The stored form of a compressed part under ``data_key`` (see the format above)."""
    import os

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    aead = AESGCM(data_key)
    aad = part_aad(snapshot_id, part_name)
    prefix = os.urandom(_NONCE_PREFIX)
    out = [ENC_MAGIC, prefix]
    view = memoryview(body)
    count = max(1, -(-len(body) // chunk_size))
    for i in range(count):
        chunk = view[i * chunk_size : (i + 1) * chunk_size]
        out.append(aead.encrypt(_nonce(prefix, i, i == count - 1), chunk, aad))
    return b"".join(out)


class DecryptionError(Exception):
    """A part's bytes failed authentication (altered, truncated, or not this part's bytes)."""


class DecryptingReader:
    """A binary stream of the plaintext of an encrypted part read from ``raw``.

    Every chunk is authenticated before its plaintext is returned; a chunk that fails, a missing
    last chunk or bytes after it raise :class:`DecryptionError`; more than ``max_chunks`` chunks
    (or than the nonce can count) raise :class:`PartLimitError`. Memory holds about two chunks.
    """

    def __init__(self, raw: BinaryIO, data_key: bytes, snapshot_id: str, part_name: str,
                 *, chunk_size: int = ENC_CHUNK, max_chunks: int | None = None) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._raw = raw
        self._aead = AESGCM(data_key)
        self._aad = part_aad(snapshot_id, part_name)
        self._size = chunk_size + _TAG
        self._prefix: bytes | None = None
        self._counter = 0
        self._ahead = b""
        self._plain = b""
        self._done = False
        self._max_chunks = min(max_chunks or _MAX_CHUNKS, _MAX_CHUNKS)

    def _fill(self, n: int) -> bytes:
        out = [self._ahead]
        have = len(self._ahead)
        while have < n:
            data = self._raw.read(n - have)
            if not data:
                break
            out.append(data)
            have += len(data)
        joined = b"".join(out)
        self._ahead = joined[n:]
        return joined[:n]

    def _next_chunk(self) -> bytes:
        from cryptography.exceptions import InvalidTag

        if self._prefix is None:
            header = self._fill(len(ENC_MAGIC) + _NONCE_PREFIX)
            if header[: len(ENC_MAGIC)] != ENC_MAGIC or len(header) < len(ENC_MAGIC) + _NONCE_PREFIX:
                raise DecryptionError("not an encrypted cloudkeep part (bad header)")
            self._prefix = header[len(ENC_MAGIC):]
        if self._counter >= self._max_chunks:
            raise PartLimitError("size", f"the encrypted part holds more than the "
                                 f"{self._max_chunks} chunks its size allows; reading stopped")
        chunk = self._fill(self._size)
        if not self._ahead:
            self._ahead = self._raw.read(1)  # one byte of look-ahead: is this the last chunk?
        last = not self._ahead
        if len(chunk) < _TAG:
            raise DecryptionError("the encrypted part ends early (truncated)")
        try:
            plain = self._aead.decrypt(_nonce(self._prefix, self._counter, last), chunk, self._aad)
        except InvalidTag:
            raise DecryptionError(
                f"chunk {self._counter} failed authentication: the part's bytes were altered, "
                "truncated, or belong to another part or snapshot"
            ) from None
        self._counter += 1
        self._done = last
        return plain

    def read(self, size: int = -1) -> bytes:
        while not self._done and (size < 0 or len(self._plain) < size):
            chunk = self._next_chunk()
            self._plain = self._plain + chunk if self._plain else chunk
        if size < 0:
            out, self._plain = self._plain, b""
        else:
            out, self._plain = self._plain[:size], self._plain[size:]
        return out

    def readable(self) -> bool:
        return True


def manifest_mac_key(data_key: bytes) -> bytes:
    """The key of the manifest's tag, derived from the snapshot's data key (never the same key)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=b"cloudkeep manifest authentication v1").derive(data_key)


def manifest_tag(data_key: bytes, content: object) -> str:
    """HMAC-SHA256 over the canonical JSON of a manifest's content (without its tag)."""
    import hmac

    return hmac.new(manifest_mac_key(data_key), canonical_json(content), hashlib.sha256).hexdigest()


def listing_records(store: Store, manifest: Manifest, *, tolerant: bool = False
                    ) -> Iterator[dict[str, Any]]:
    """The object records of a snapshot's listing, in listing (key) order, streamed part by
    part. ``tolerant``: stop quietly at a damaged part instead of raising (used to find
    unchanged objects: a record not found is simply copied again)."""
    for part in manifest.parts:
        key = layout.part_key(manifest.dataset, manifest.snapshot_id, part.name)
        try:
            with store.open(key) as stream:
                # within the manifest's limits: stored_bytes, raw_bytes, line length
                _, lines = open_part(stream, compression=manifest.codec.compression,
                                     stored_bytes=part.stored_bytes, raw_bytes=part.raw_bytes)
                for line in lines:
                    record = json.loads(line)
                    if isinstance(record, dict):
                        yield record
        except Exception as exc:
            if not tolerant:
                raise
            log.warning("cannot read listing part %s (%s): unchanged objects after it are copied "
                        "again", key, exc)
            return
