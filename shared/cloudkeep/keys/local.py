"""The ``local`` key provider: a key file on disk, for the demo and for air-gapped restores.

The file holds one line, ``cloudkeep-key-v1 <base64 of 32 random bytes>``, and must be readable
by its owner only (``cloudkeep keys create --path FILE`` writes it with mode 0600). A data key is
wrapped with AES-256-GCM under the file's key, the snapshot bound as associated data. The key id
recorded in manifests is a fingerprint (an HMAC of a fixed label under the key), never the key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import stat
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import Field

from ..codec import canonical_json
from ..errors import KeyUnavailableError, UsageError
from ..specs import KeyModel
from . import b64, unb64

HEADER = "cloudkeep-key-v1"
WRAP_ALGORITHM = "AES-256-GCM"


def create_key_file(path: str | Path) -> str:
    """Write a new key file (mode 0600; refuses to replace an existing file). Returns its key id."""
    target = Path(path)
    key = os.urandom(32)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UsageError(f"{target} already exists; cloudkeep never overwrites a key file") from None
    except OSError as exc:
        raise UsageError(f"cannot create key file {target}: {exc.strerror}") from None
    with os.fdopen(fd, "w", encoding="ascii") as out:
        os.fchmod(out.fileno(), 0o600)  # whatever the umask
        out.write(f"{HEADER} {base64.b64encode(key).decode('ascii')}\n")
    return fingerprint(key)


def fingerprint(key: bytes) -> str:
    return "local-" + hmac.new(key, b"cloudkeep local key id", hashlib.sha256).hexdigest()[:16]


def read_key_file(path: str | Path) -> bytes:
    """The key in ``path``; refuses a file that group or others may read or write."""
    target = Path(path)
    try:
        info = target.stat()
    except FileNotFoundError:
        raise KeyUnavailableError(
            f"key file {target} not found (create one with: cloudkeep keys create --path {target})"
        ) from None
    except OSError as exc:
        raise KeyUnavailableError(f"cannot read key file {target}: {exc.strerror}") from None
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise KeyUnavailableError(
            f"key file {target} is accessible to group or others (mode {mode:04o}); "
            f"refusing to use it: run chmod 600 {target}"
        )
    try:
        text = target.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyUnavailableError(f"cannot read key file {target}: {exc}") from None
    head, _, body = text.partition(" ")
    try:
        key = base64.b64decode(body, validate=True) if head == HEADER else b""
    except ValueError:
        key = b""
    if len(key) != 32:
        raise KeyUnavailableError(f"{target} is not a cloudkeep key file "
                                  f"(made by: cloudkeep keys create --path FILE)")
    return key


class LocalKeyProvider:
    provider = "local"

    def __init__(self, name: str, spec: Any) -> None:
        self.name = name
        self.path = str(spec.path)
        self._key: bytes | None = None
        self._lock = threading.Lock()

    def _load(self) -> bytes:
        with self._lock:
            if self._key is None:
                self._key = read_key_file(self.path)
            return self._key

    def key_id(self) -> str:
        return fingerprint(self._load())

    def generate(self, context: Mapping[str, str]) -> tuple[bytes, dict[str, Any]] | None:
        return None

    def wrap(self, data_key: bytes, context: Mapping[str, str]) -> dict[str, Any]:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        nonce = os.urandom(12)
        wrapped = nonce + AESGCM(self._load()).encrypt(nonce, data_key, canonical_json(dict(context)))
        return {"algorithm": WRAP_ALGORITHM, "wrapped_key": b64(wrapped)}

    def unwrap(self, record: Mapping[str, Any], context: Mapping[str, str]) -> bytes:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        wrapped = unb64(record.get("wrapped_key"), what=f"key {self.name!r}")
        try:
            return AESGCM(self._load()).decrypt(wrapped[:12], wrapped[12:], canonical_json(dict(context)))
        except (InvalidTag, ValueError):
            raise KeyUnavailableError(
                f"key {self.name!r} (local {self.path}) cannot unwrap the data key: wrong key, or "
                "the wrapped key was altered"
            ) from None


class LocalKeySpec(KeyModel):
    """A key file (``cloudkeep keys create --path FILE``); relative to the policy's folder."""

    IMPLEMENTATION = LocalKeyProvider

    provider: Literal["local"]
    path: str = Field(min_length=1)

    def resolve_paths(self, resolve: Callable[[str], str]) -> Self:
        return self.model_copy(update={"path": resolve(self.path)})
