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
    from .changes import ChangeBatch
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
    asks an adapter what it can do. (``capability`` is typed as a callable returning ``C`` rather
    than ``type[C]``: mypy accepts a protocol class only there.)"""
    if isinstance(obj, capability):  # type: ignore[arg-type]  # a runtime-checkable protocol
        return cast(C, obj)
    return None


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


# --- s20-core: abilities the core used to find by duck typing ----------------------------------


@runtime_checkable
class ScratchTargets(Protocol):
    """A source that verify's restore drill can restore into a scratch target, digest and drop."""

    def scratch_target(self, token: str) -> str:
        """The name of a new, empty scratch target (``token`` makes it unique)."""
        ...

    def drop_target(self, target: str, recorded: dict[str, Any]) -> None:
        """Delete the scratch target ``target`` (restored from a snapshot of ``recorded``)."""
        ...

    def scan_digest(self, target: str) -> tuple[int, str]:
        """(items, content digest) of the restored target, read the way a backup reads it."""
        ...


@runtime_checkable
class Closes(Protocol):
    """A restore writer that must be closed once the restore is over (flushes, clients)."""

    def close(self) -> None: ...


# The two halves of :class:`Resumable`, asked for separately: a source may resume a segment from
# a cursor without recording a plan (Cosmos DB's change feed continuation), or the reverse.


@runtime_checkable
class ReadsFromCursor(Protocol):
    """Pages of a segment from a recorded cursor (``Resumable.read_segment_from``)."""

    def read_segment_from(
        self, segment: int, total: int, cursor: dict[str, Any] | None
    ) -> Iterator[tuple[list[bytes], Callable[[int], Any] | None]]: ...


@runtime_checkable
class RecordsPlan(Protocol):
    """A read plan recorded at the start and followed on resume (``Resumable.plan_state`` and
    ``resume_plan``)."""

    def plan_state(self) -> dict[str, Any]: ...

    def resume_plan(self, state: dict[str, Any], segments: int) -> None: ...


# ... and the two halves of :class:`NativeRetention`: deleting what a snapshot's manifest records,
# and sweeping tagged leftovers no snapshot records, are asked for separately.


@runtime_checkable
class DeletesNative(Protocol):
    """Native artifacts deleted with their snapshot (``NativeRetention.delete_native``)."""

    def delete_native(self, dataset: str, snapshot_id: str, native: dict[str, Any]) -> list[str]: ...


@runtime_checkable
class SweepsNative(Protocol):
    """Tagged native leftovers swept (``NativeRetention.sweep_native``)."""

    def sweep_native(self, dataset: str, keep: set[str], older_than: datetime) -> list[str]: ...


def pages_from_start(source: ReadsFromCursor, segment: int, total: int) -> Iterator[list[bytes]]:
    """``Source.read_segment`` of a source that reads from a cursor: the segment's pages from its
    beginning, without the cursors."""
    for lines, _ in source.read_segment_from(segment, total, None):
        yield lines


@runtime_checkable
class GcsLocation(Protocol):
    """A store in a Cloud Storage bucket, which a Google service can write into itself (a
    Firestore managed export)."""

    def gs_uri(self, key: str) -> str:
        """The ``gs://bucket/object`` URI of store key ``key``."""
        ...


# --- queues --------------------------------------------------------------------------------


@runtime_checkable
class InProcess(Protocol):
    """A work queue that lives in this process (the CLI's local fan-out): only workers here can
    take its items, so whoever fills it also drains it before returning. Its length is how many
    items wait."""

    def __len__(self) -> int: ...


# --- stores a cloud's own service writes into or copies inside -----------------------------


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



# --- item by item (diff, find, history, partial restore, replay of a change log) ---------------


@runtime_checkable
class DeletesItems(Protocol):
    """A restore writer that deletes items by key: a partial restore's ``--delete-missing`` and
    the replay of a change log's removes. Keys are in the normalised form of
    ``cloudkeep.itemkeys`` (``SourceModel.item_key``); deleting an absent item is not an error."""

    def delete_keys(self, keys: list[Any]) -> int:
        """Delete these items from the target; how many were asked (idempotent)."""
        ...


@runtime_checkable
class ReadsItems(Protocol):
    """A restore writer that reads the target's current items by key, as lines in the snapshot's
    own encoding (a partial restore's ``--dry-run`` comparing snapshot and live item)."""

    def read_items(self, keys: list[Any]) -> dict[bytes, bytes | None]:
        """``itemkeys.key_bytes(key)`` → the live item's line (None: no such item)."""
        ...


# --- the rate of a restore (cloudkeep.governor; s16-anywhere) ---------------------------------


@runtime_checkable
class ReportsWriteCapacity(Protocol):
    """A restore writer that knows its target's provisioned write capacity (a provisioned
    DynamoDB table): ``restore --capacity-share`` writes at a share of it."""

    def write_capacity(self) -> float | None:
        """Write capacity units per second of the target (one unit writes one item of up to
        1 KB); None when the target has none to share (on-demand)."""
@runtime_checkable
class CapturesChanges(Protocol):
    """A source whose changes ``cloudkeep capture`` reads from the service's change stream
    (DynamoDB Streams, S3 object versions, the Cosmos DB change feed; s16-capture)."""

    def change_stream_id(self) -> str:
        """The stream read (its positions are kept per stream: a new stream starts afresh)."""
        ...

    def read_changes(self, position: dict[str, Any] | None, *, now: Callable[[], datetime],
                     deadline: float | None) -> Iterator[ChangeBatch]:
        """Batches of changes after ``position`` (None: from the oldest the stream keeps), each
        with the position after it; stops once caught up (the last batch says ``caught_up``) or
        when ``time.monotonic()`` passes ``deadline``."""


@runtime_checkable
class ReadsTarget(Protocol):
    """A source whose restore target can be read item by item without creating or changing
    anything (a partial restore's ``--dry-run``)."""

    def target_reader(self, target: str, recorded: dict[str, Any]) -> ReadsItems | None:
        """A reader of the target's items by key; None when the target does not exist (then
        every item would be new). Closed with ``Closes`` when it has that ability."""
        ...


@runtime_checkable
class LocatesTargets(Protocol):
    """A source whose restore target may already exist somewhere else than the region it is
    opened in (an S3 bucket is global: an existing bucket keeps its own region). Residency is
    checked against that region before anything is written (``cloudkeep.target``)."""

    def target_region(self, target: str) -> str | None:
        """The region of the existing target ``target`` (None: it does not exist yet and will be
        made in the source's region). Reads only."""
        ...


read_from_start = pages_from_start  # ``read_segment`` of a Resumable source


# --- s16-cold: storage classes and rehydration (cloudkeep.storageclass, docs/cold-tiers.md) ----


@runtime_checkable
class SetsStorageClass(Protocol):
    """A store whose pruner moves objects to another storage class in place, without rewriting
    them (Azure Set Blob Tier)."""

    def set_storage_class(self, key: str, store_class: str) -> None: ...


@runtime_checkable
class LifecycleRules(Protocol):
    """A store that moves objects between classes by the cloud's own lifecycle rules (S3, GCS):
    ``lifecycle_rules`` is the configuration for ``{prefix: [(days, store class), ...]}``,
    ``apply_lifecycle`` installs it (an administrator's act), ``current_lifecycle`` reads it."""

    def lifecycle_rules(self, plans: dict[str, list[tuple[int, str]]]) -> Any: ...

    def apply_lifecycle(self, rules: Any) -> None: ...

    def current_lifecycle(self) -> Any: ...


@runtime_checkable
class Rehydrates(Protocol):
    """A store with offline classes: ``readiness(key)`` is ``online`` (readable now), ``archived``
    (offline, no rehydration asked), ``rehydrating`` or ``ready`` (a readable copy exists);
    ``rehydrate(key, days=...)`` asks for one (S3 RestoreObject for ``days``, Azure Set Blob
    Tier back to an online tier); ``rehydration_hours(store_class)`` is the documented wait."""

    def readiness(self, key: str) -> tuple[str, str | None]: ...

    def rehydrate(self, key: str, *, days: int) -> None: ...

    def rehydration_hours(self, store_class: str | None) -> float: ...

    def is_offline(self, store_class: str) -> bool: ...


# --- s16-settings: a source's settings captured into the manifest and restored ----------------


@runtime_checkable
class RestoresSettings(Protocol):
    """A source whose settings (TTL, streams, tags, indexing policy, lifecycle, ...) are recorded
    in the manifest (``source["settings"]``: name → value, or ``"unreadable: <reason>"``) and
    applied to a restore target (``cloudkeep.restore_settings``)."""

    def recorded_settings(self, recorded: Mapping[str, Any]) -> dict[str, Any] | None:
        """The settings a manifest's ``source`` records (None: none recorded, an old manifest)."""
        ...

    def data_settings(self) -> frozenset[str]:
        """The names of the settings that shape the data itself (``--settings data``)."""
        ...

    def apply_settings(self, target: str, settings: Mapping[str, Any],
                       recorded: Mapping[str, Any]) -> list[tuple[str, str | None]]:
        """Apply ``settings`` to the restored ``target`` in the source's order, waiting until it
        is usable again; per setting ``(name, None)`` when the target now has it, else
        ``(name, why it could not be applied)``. Never raises for one setting."""
        ...

    def read_settings(self, target: str, recorded: Mapping[str, Any]) -> dict[str, Any]:
        """The live settings of ``target``, in the form ``recorded_settings`` gives."""
        ...


@runtime_checkable
class RefusesSettingsTargets(Protocol):
    """A source some of whose settings do not apply to some targets (S3: bucket settings on a
    ``BUCKET/PREFIX`` target); ``restore --dry-run`` lists them as a restore would."""

    def settings_not_applicable(self, target: str, names: list[str],
                                recorded: Mapping[str, Any]) -> dict[str, str]:
        """Of ``names``, those that would not be applied to ``target``, with why. Reads and
        writes nothing."""
        ...
