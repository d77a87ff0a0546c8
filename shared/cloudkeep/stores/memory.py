"""An in-memory store, for unit tests of code that uses the Store protocol."""

from __future__ import annotations

import builtins
import io
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import BinaryIO

from ..errors import ObjectExistsError, ObjectNotFoundError
from . import CHUNK, BaseStore, Data, ObjectInfo, StoreCapabilities, as_stream, check_key


class MemoryStore(BaseStore):
    capabilities = StoreCapabilities(conditional_create=True, object_lock=False)

    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, datetime]] = {}
        self._lock = threading.Lock()

    def describe(self) -> str:
        return f"memory:{id(self):x}"  # one name per instance (caches key on it)

    def put(
        self, key: str, data: Data, *, if_absent: bool = False, retain_until: datetime | None = None
    ) -> ObjectInfo:
        check_key(key)
        body = data if isinstance(data, bytes) else _read_all(as_stream(data))
        now = datetime.now(UTC)
        with self._lock:
            if if_absent and key in self.objects:
                raise ObjectExistsError(key)
            self.objects[key] = (bytes(body), now)
        return ObjectInfo(key, len(body), now)

    def open(self, key: str) -> BinaryIO:
        return io.BytesIO(self.get(key))

    def get(self, key: str) -> bytes:
        check_key(key)
        try:
            return self.objects[key][0]
        except KeyError:
            raise ObjectNotFoundError(key) from None

    def stat(self, key: str) -> ObjectInfo | None:
        entry = self.objects.get(check_key(key))
        return ObjectInfo(key, len(entry[0]), entry[1]) if entry else None

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        with self._lock:
            items = sorted((k, v) for k, v in self.objects.items() if k.startswith(prefix))
        for key, (body, modified) in items:
            yield ObjectInfo(key, len(body), modified)

    def delete_batch(self, keys: builtins.list[str]) -> builtins.list[str]:
        with self._lock:
            for key in keys:
                self.objects.pop(key, None)
        return []


def _read_all(stream: BinaryIO) -> bytes:
    # In bounded reads, as every store does (the contract): some streams only honour read(n).
    buf = bytearray()
    while chunk := stream.read(CHUNK):
        buf += chunk
    return bytes(buf)
