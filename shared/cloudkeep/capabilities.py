"""What an adapter can do beyond its base protocol: one small protocol per ability.

A source (``cloudkeep.sources.Source``) or a store (``cloudkeep.stores.Store``) *declares* each
optional ability by inheriting its protocol here (``class DynamoDBSource(Resumable, SampleCheck,
...)``); the core asks with :func:`able` — the one place where an adapter is probed. Nothing else
in the core uses ``getattr``/``hasattr`` on an adapter, compares a type name, or ``isinstance``-es
an adapter class.

The method names are the ones the engine always called; a capability only makes them typed and
visible. :class:`Description` is the typed answer of ``Source.describe()``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast, runtime_checkable

if TYPE_CHECKING:
    from .manifest import Manifest
    from .stores import Store

C = TypeVar("C")

#: The keys ``describe()`` used to carry in its dict; :meth:`Description.coerce` moves them.
_RESERVED = ("method", "consistency", "digest_ignores")


@dataclass(frozen=True)
class Description:
    """What a source says about the dataset it reads, before reading it.

    ``identity`` goes into the manifest as ``source`` (the source's identity and everything a
    restore needs to recreate the target: key schema, indexes, ...; it must hold ``type``).
    ``method`` (``scan`` unless the source reads another way) and ``consistency`` (``{"mode":
    "point-in-time", "time": ...}``, default fuzzy) become the manifest's own fields;
    ``digest_ignores`` are top-level keys of its lines that a restored copy cannot reproduce
    (e.g. Firestore's ``update_time``), left out of the content digest (``codec.py``)."""

    identity: dict[str, Any]
    method: str = "scan"
    consistency: dict[str, Any] = field(default_factory=lambda: {"mode": "fuzzy"})
    digest_ignores: tuple[str, ...] = ()

    @classmethod
    def coerce(cls, value: Description | Mapping[str, Any]) -> Description:
        """``value`` as a Description; a plain dict (the previous form of ``describe()``) has its
        reserved keys moved out of the identity."""
        if isinstance(value, Description):
            return value
        identity = dict(value)
        method = str(identity.pop("method", "scan"))
        consistency = dict(identity.pop("consistency", {"mode": "fuzzy"}))
        ignores = tuple(str(k) for k in identity.pop("digest_ignores", ()))
        return cls(identity=identity, method=method, consistency=consistency, digest_ignores=ignores)


def able(obj: object, capability: Callable[..., C]) -> C | None:
    """``obj`` as ``capability`` when it has that ability, else None. The single place the core
    asks an adapter what it can do. (``capability`` is a protocol class; typed as a callable
    because mypy refuses protocols with unimplemented methods where a ``type[C]`` is expected.)"""
    return cast(C, obj) if isinstance(obj, cast(type, capability)) else None


# --- sources -------------------------------------------------------------------------------


@runtime_checkable
class Resumable(Protocol):
    """Reads that continue after a crash from a recorded cursor, with a plan fixed at start."""

    def plan_state(self) -> dict[str, Any]:
        """The plan to record when a snapshot starts (e.g. the segments' boundaries)."""
        ...

    def resume_plan(self, state: dict[str, Any], segments: int) -> None:
        """Read by the plan ``plan_state`` recorded (another invocation, maybe another host)."""
        ...

    def read_segment_from(
        self, segment: int, total: int, cursor: dict[str, Any] | None
    ) -> Iterator[tuple[list[bytes], Callable[[int], Any] | None]]:
        """Pages of one segment from ``cursor`` (None: its beginning), each with a function
        giving the cursor after its i-th line."""
        ...


@runtime_checkable
class Incremental(Protocol):
    """Snapshots that continue from the dataset's latest committed one (chains)."""

    def set_previous(self, manifest: Manifest | None) -> None:
        """The latest committed snapshot of the dataset (None: there is none), before describe."""
        ...


@runtime_checkable
class CopiesObjects(Protocol):
    """A source that copies objects into the store as blobs (S3) instead of item lines."""

    def attach_store(self, store: Store, dataset: str, retain_until: datetime | None = None) -> None:
        """The store to write blobs to and restore them from, with the snapshot's lock date."""
        ...


@runtime_checkable
class Summarizes(Protocol):
    """A source that adds what it learnt while reading to the manifest's ``source``."""

    def read_summary(self) -> dict[str, Any]: ...


@runtime_checkable
class NativeRestore(Protocol):
    """A source that restores some snapshots its own way (RestoreTableFromBackup, an import)."""

    def restore_native(self, manifest: Manifest, target: str, *, overwrite: bool) -> Any:
        """Restore ``manifest`` into ``target``; None when its parts are restored line by line."""
        ...


@runtime_checkable
class NativeCheck(Protocol):
    """A source whose native snapshots (backups, exports, DB snapshots) can be checked in place."""

    def check_native(self, manifest: Manifest) -> list[str]:
        """Problems with what ``manifest`` says the cloud holds (empty: all there)."""
        ...


@runtime_checkable
class Drillable(Protocol):
    """A source that runs its own restore drill (RDS: a temporary instance from the snapshot)."""

    def drill(self, manifest: Manifest, *, poll_interval: float = 30.0, timeout: float = 3 * 3600.0,
              sleep: Callable[[float], None] = ...,
              on_available: Callable[[str], None] | None = None) -> dict[str, Any]:
        """Restore a temporary copy from ``manifest``'s snapshot, polling every
        ``poll_interval`` seconds (``sleep``) up to ``timeout``; ``on_available`` checks the copy
        once it is usable; then delete it. Returns what happened (``problems``: what failed)."""
        ...


@runtime_checkable
class SampleCheck(Protocol):
    """A source that compares sampled snapshot lines with the live items."""

    def sample_check(self, lines: list[bytes]) -> list[str]:
        """Per line: ``matched``, ``changed``, ``deleted`` or ``differs``."""
        ...


@runtime_checkable
class NativeRetention(Protocol):
    """A source whose native artifacts (backups, DB snapshots) prune deletes with the snapshot."""

    def delete_native(self, dataset: str, snapshot_id: str, native: dict[str, Any]) -> list[str]: ...

    def sweep_native(self, dataset: str, keep: set[str], older_than: datetime) -> list[str]: ...


# --- stores --------------------------------------------------------------------------------


@runtime_checkable
class LockModes(Protocol):
    """A store that can write new objects in another Object Lock mode (a tier's immutability)."""

    def with_lock_mode(self, mode: str) -> Any: ...


@runtime_checkable
class ExtendsRetention(Protocol):
    """A store whose objects' retention dates can be moved later (never earlier)."""

    def extend_retention(self, key: str, until: datetime) -> bool: ...


@runtime_checkable
class LegalHolds(Protocol):
    """A store with object-level legal holds."""

    def set_legal_hold(self, key: str, hold: bool) -> None: ...


# --- s20-aws: stores a cloud's own service writes into or copies inside ----------------------


def read_from_start(source: Resumable, segment: int, total: int) -> Iterator[list[bytes]]:
    """``read_segment`` of a resumable source: the pages of ``read_segment_from`` from the
    segment's beginning, without their cursors."""
    return (lines for lines, _ in source.read_segment_from(segment, total, None))


@runtime_checkable
class ServerSideCopy(Protocol):
    """A store whose objects are S3 objects: an S3 service can copy into and out of it, or export
    into it, without the bytes passing through cloudkeep (the S3 source's server-side copies, a
    DynamoDB export)."""

    def location(self, key: str) -> tuple[str, str]:
        """The bucket and full object key of store key ``key``."""
        ...

    def copy_client(self) -> Any:
        """The S3 client that reaches this store's bucket (its ``meta.endpoint_url`` tells
        whether a source's client is on the same service)."""
        ...
