"""Stores hold bytes under keys. Every implementation passes ``tests/contract/test_store_contract.py``.

Guarantees every store gives (the contract):

- ``put(key, data, if_absent=True)`` is create-only and atomic: exactly one of several concurrent
  writers of a key succeeds, the others get :class:`~cloudkeep.errors.ObjectExistsError`, and a
  reader never sees a partially written object.
- ``put`` accepts bytes or a binary stream; streams are sent in bounded chunks (never read whole).
- ``open(key)`` returns a binary stream; ``get(key)`` the whole object; a missing key raises
  :class:`~cloudkeep.errors.ObjectNotFoundError`.
- ``list(prefix)`` yields every object under ``prefix`` in key order, with its size.
- ``delete(keys)`` removes the keys; keys already gone are not an error.

:class:`BaseStore` is the base of cloudkeep's stores: it batches ``delete`` by the store's
declared ``capabilities.max_delete_batch`` (S3: 1000 keys per DeleteObjects).
"""

from __future__ import annotations

import io
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO, ClassVar, Protocol, runtime_checkable

from ..errors import ObjectLockedError, StoreError

Data = bytes | BinaryIO

CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    modified: datetime | None = None
    storage_class: str | None = None  # the store's own class when the listing says (s16-cold)


@dataclass(frozen=True)
class StoreCapabilities:
    conditional_create: bool = True
    object_lock: bool = False
    max_delete_batch: int = 1000


@runtime_checkable
class Store(Protocol):
    """Bytes under keys (see the module docstring for the contract)."""

    capabilities: StoreCapabilities

    def describe(self) -> str: ...

    def put(
        self, key: str, data: Data, *, if_absent: bool = False, retain_until: datetime | None = None
    ) -> ObjectInfo: ...

    def open(self, key: str) -> BinaryIO: ...

    def get(self, key: str) -> bytes: ...

    def stat(self, key: str) -> ObjectInfo | None: ...

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]: ...

    def delete(self, keys: Iterable[str]) -> None: ...


@runtime_checkable
class HasTemporaries(Protocol):
    """A store whose interrupted writes can leave temporary objects that ``list`` hides (the file
    store's ``.tmp-*`` files of a process killed mid-write)."""

    def temporaries(self, prefix: str = "") -> Iterator[ObjectInfo]: ...


class BaseStore(ABC):
    """What every store shares: ``delete`` in batches of at most the declared
    ``capabilities.max_delete_batch`` keys (each key checked), handed to :meth:`delete_batch`."""

    capabilities: StoreCapabilities = StoreCapabilities()
    #: Why objects refused by retention could not be deleted (ObjectLockedError's detail).
    LOCKED_DETAIL: ClassVar[str] = ""

    def delete(self, keys: Iterable[str]) -> None:
        """Delete ``keys`` (gone already is fine), batch by batch. Keys an immutability policy
        still protects raise ObjectLockedError at the end, after everything else was deleted."""
        limit = max(1, self.capabilities.max_delete_batch)
        locked: list[str] = []
        batch: list[str] = []
        for key in keys:
            batch.append(check_key(key))
            if len(batch) >= limit:
                locked += self.delete_batch(batch)
                batch = []
        if batch:
            locked += self.delete_batch(batch)
        if locked:
            raise ObjectLockedError(sorted(set(locked)), self.LOCKED_DETAIL)

    @abstractmethod
    def delete_batch(self, keys: list[str]) -> list[str]:
        """Delete at most ``max_delete_batch`` checked keys; returns those still protected by an
        immutability policy (not deleted)."""


def as_stream(data: Data) -> BinaryIO:
    return io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview)) else data


def check_key(key: str) -> str:
    """Keys are relative, '/'-separated, without empty, '.' or '..' segments."""
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in key.split("/")):
        raise StoreError(f"invalid object key {key!r}")
    return key
