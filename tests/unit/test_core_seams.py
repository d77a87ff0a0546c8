"""The core's seams (#20): capabilities are asked with ``able()``, each half of a two-method
ability separately, and the adapter helpers in ``cloudkeep.sources`` go through them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from cloudkeep.capabilities import (
    DeletesNative,
    Description,
    ExtendsRetention,
    NativeRetention,
    ReadsFromCursor,
    RecordsPlan,
    Resumable,
    ScratchTargets,
    SweepsNative,
    able,
)
from cloudkeep.lock import FencedStore, unwrap
from cloudkeep.sources import native_method, restore_native
from cloudkeep.stores.memory import MemoryStore


class CursorOnly:
    """Resumes a segment from a cursor but records no plan (as Cosmos DB does)."""

    def read_segment_from(self, segment: int, total: int, cursor: dict[str, Any] | None
                          ) -> Iterator[tuple[list[bytes], Callable[[int], Any] | None]]:
        yield [b"{}"], None


class DeletesOnly:
    def delete_native(self, dataset: str, snapshot_id: str, native: dict[str, Any]) -> list[str]:
        return [f"deleted {snapshot_id}"]


class Both(DeletesOnly):
    def sweep_native(self, dataset: str, keep: set[str], older_than: datetime) -> list[str]:
        return []


def test_each_half_of_a_two_method_ability_is_asked_for_on_its_own() -> None:
    source = CursorOnly()
    assert able(source, ReadsFromCursor) is source
    assert able(source, RecordsPlan) is None and able(source, Resumable) is None
    assert able(DeletesOnly(), DeletesNative) is not None
    assert able(DeletesOnly(), SweepsNative) is None and able(DeletesOnly(), NativeRetention) is None
    both = Both()
    assert able(both, NativeRetention) is both and able(both, SweepsNative) is both
    assert able(object(), ScratchTargets) is None


def test_a_fenced_store_is_asked_through_the_store_it_wraps() -> None:
    class Fence:
        def check(self) -> None:
            return None

    class Extending(MemoryStore):
        def extend_retention(self, key: str, until: datetime) -> bool:
            return True

    inner = Extending()
    fenced = FencedStore(inner, Fence())  # type: ignore[arg-type]
    extender = able(unwrap(fenced), ExtendsRetention)
    assert extender is inner and extender.extend_retention("k", datetime.now(UTC)) is True
    assert able(unwrap(FencedStore(MemoryStore(), Fence())), ExtendsRetention) is None  # type: ignore[arg-type]


def test_native_helpers_ask_capabilities() -> None:
    class Scanned:
        kind = "memory"

        def native_method(self) -> str | None:  # a method alone is not a native job source
            return "export"

    class Native(Scanned):
        def start_job(self, ctx: Any) -> dict[str, Any]:
            return {}

        def poll_job(self, ctx: Any, job: dict[str, Any]) -> Any:
            return None

        def finish_job(self, ctx: Any, job: dict[str, Any]) -> Any:
            return None

        def restore_native(self, manifest: Any, target: str, *, overwrite: bool) -> Any:
            return {"via": "import", "target": target, "overwrite": overwrite}

    assert native_method(Scanned()) is None
    assert native_method(Native()) == "export"
    assert restore_native(Scanned(), None, "t", overwrite=False) is None  # type: ignore[arg-type]
    assert restore_native(Native(), None, "t", overwrite=True) == {  # type: ignore[arg-type]
        "via": "import", "target": "t", "overwrite": True}


def test_a_description_and_its_old_dict_form_mean_the_same() -> None:
    old = {"type": "memory", "name": "orders", "method": "export",
           "consistency": {"mode": "point-in-time", "time": "2026-01-01T00:00:00+00:00"},
           "digest_ignores": ["update_time"]}
    typed = Description.coerce(old)
    assert typed.identity == {"type": "memory", "name": "orders"}
    assert typed.method == "export" and typed.digest_ignores == ("update_time",)
    assert Description.coerce(typed) is typed
    assert Description.coerce({"type": "memory"}).consistency == {"mode": "fuzzy"}
