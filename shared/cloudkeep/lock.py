"""Fenced locks: a per-dataset lock (and a fan-out worker's segment lease) as a generation
sequence of create-only objects.

The lock of a dataset is the sequence ``<dataset>/lock/<generation>.json``
(``layout.lock_prefix``); the newest generation says who holds it and until when, or that it was
released. Every change creates the next generation, create-only, so each is a compare-and-set:

- *acquire*: the newest generation is released, expired, unreadable or held by a process known to
  be dead (same machine and PID namespace, e.g. a CLI run killed with ``kill -9``: taken over at
  once, not after its lease) → create the next one. Of two runs doing so together exactly one
  succeeds; the other is refused (``LockedError``).
- *renew* (a heartbeat every third of the lease): the holder creates the next generation. If that
  number is taken — someone took the lock over — or a newer generation exists, the holder is
  *fenced*: it has lost the lock for good.
- *release*: the holder creates a ``released`` generation.

Every write a run makes goes through :class:`FencedStore`, which first calls :meth:`Lease.check`:
a fenced holder raises :class:`FencedError`, and so does a holder whose last confirmed renewal is
older than half its lease (it may have been frozen — SIGSTOP, a suspended function instance —
while another run took over) and that cannot re-confirm by renewing right now. A fenced run
therefore writes nothing more. A write already on its way to the store when the process froze
can still land afterwards; it is create-only, so it never replaces or removes anything (see
docs/locking.md).

The previous release's ``<dataset>/lock.json`` is not honoured (treated as stale).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO, Protocol

from . import layout
from .errors import CloudkeepError, LockedError, ObjectExistsError, ObjectNotFoundError
from .stores import Data, ObjectInfo, Store

log = logging.getLogger(__name__)

DEFAULT_LEASE = timedelta(minutes=5)
SAFETY = 0.5  # past this fraction of the lease since the last renewal, a write re-confirms first
LOCK_FORMAT = 1


class FencedError(LockedError):
    """This run lost its lock (another run took it over, or its lease lapsed and could not be
    re-confirmed): it stops and writes nothing more."""


class Clock(Protocol):
    def now(self) -> datetime:
        """Wall-clock time (UTC), as recorded in lock generations."""
        ...

    def elapsed(self) -> float:
        """Seconds on a clock that keeps running while this process is frozen."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def elapsed(self) -> float:
        # CLOCK_BOOTTIME also counts a suspended machine; CLOCK_MONOTONIC a stopped process.
        boottime = getattr(time, "CLOCK_BOOTTIME", None)
        if boottime is not None:
            return time.clock_gettime(boottime)
        return time.monotonic()


class Fence(Protocol):
    def check(self) -> None:
        """Return only while the holder may still write; else raise :class:`FencedError`."""
        ...


class Lease:
    """A lock held by one run, fenced (see the module docstring). ``DatasetLock`` is the
    dataset's; with ``prefix`` the same lock guards something else (a fan-out segment)."""

    def __init__(self, store: Store, dataset: str, run_id: str, *,
                 lease: timedelta | None = None, prefix: str | None = None,
                 what: str | None = None, clock: Clock | None = None,
                 heartbeat: bool = True) -> None:
        self.store = store
        self.dataset = dataset
        self.run_id = run_id
        self.lease = lease or DEFAULT_LEASE
        self.prefix = prefix or layout.lock_prefix(dataset)
        self.what = what or f"dataset {dataset!r}"
        self.clock: Clock = clock or SystemClock()
        self.generation: int | None = None  # the generation this holder created last
        self.fenced: str | None = None  # why this holder lost the lock
        self._confirmed = 0.0  # clock.elapsed() before the last confirmed generation was written
        self._mutex = threading.Lock()
        self._heartbeat = heartbeat
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- generations

    def _generations(self) -> list[int]:
        out = []
        for info in self.store.list(self.prefix):
            rest = info.key[len(self.prefix):]
            n = layout.parse_sequence_name(rest) if "/" not in rest else None
            if n is not None:
                out.append(n)
        return sorted(out)

    def _read(self, generation: int) -> dict[str, Any] | None:
        try:
            data = json.loads(self.store.get(layout.generation_key(self.prefix, generation)))
        except ObjectNotFoundError:
            return None
        except ValueError:
            return {"state": "unreadable", "run_id": "unreadable"}
        return data if isinstance(data, dict) else {"state": "unreadable", "run_id": "unreadable"}

    def _body(self, generation: int, state: str) -> bytes:
        now = self.clock.now()
        return json.dumps({
            "format": LOCK_FORMAT,
            "generation": generation,
            "state": state,
            "what": self.what,
            "run_id": self.run_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "process_ns": _process_namespace(),
            "at": now.isoformat(),
            "expires_at": (now + self.lease).isoformat() if state == "held" else now.isoformat(),
            "lease_seconds": self.lease.total_seconds(),
        }).encode()

    def _create(self, generation: int, state: str) -> None:
        self.store.put(layout.generation_key(self.prefix, generation),
                       self._body(generation, state), if_absent=True)

    def holder(self) -> dict[str, Any] | None:
        """The newest generation's record if it is held and live (None: free to take)."""
        found = self._generations()
        if not found:
            return None
        record = self._read(found[-1])
        if record is None or not _live(record, self.clock.now()):
            return None
        return record

    # ---------------------------------------------------------------- acquire / renew / release

    def acquire(self) -> None:
        """Take the lock, or raise ``LockedError`` naming the live holder."""
        for _ in range(5):
            found = self._generations()
            newest = found[-1] if found else 0
            record = self._read(newest) if found else None
            if record is not None and _live(record, self.clock.now()) \
                    and record.get("run_id") != self.run_id:
                raise LockedError(
                    f"{self.what} is being backed up by run {record.get('run_id')} on "
                    f"{record.get('host')} (lock lease until {record.get('expires_at')}); "
                    "try again later"
                )
            if record is not None and record.get("state") == "held":
                log.warning("%s: taking over the %s lock of run %s", self.what,
                            "dead holder's" if _holder_dead(record) else "expired",
                            record.get("run_id"))
            started = self.clock.elapsed()
            try:
                self._create(newest + 1, "held")
            except ObjectExistsError:
                continue  # another run changed the lock meanwhile: look again
            self.generation, self._confirmed, self.fenced = newest + 1, started, None
            break
        else:
            raise LockedError(f"could not take the lock of {self.what}; try again")
        if self._heartbeat:
            self._stop.clear()
            self._thread = threading.Thread(target=self._beat, name=f"lock-{self.dataset}",
                                            daemon=True)
            self._thread.start()

    def renew(self) -> bool:
        """Create the next generation. False when it could not be confirmed (``fenced`` says
        whether the lock is lost for good, or the store could not be reached)."""
        with self._mutex:
            if self.fenced is not None or self.generation is None:
                return False
            nxt = self.generation + 1
            started = self.clock.elapsed()
            try:
                self._create(nxt, "held")
                newest = max(self._generations(), default=nxt)
            except ObjectExistsError:
                self._fence(f"generation {nxt} of its lock was created by another run")
                return False
            except CloudkeepError as exc:
                log.warning("%s: could not renew the lock: %s", self.what, exc)
                return False
            if newest != nxt:
                # A newer generation exists (older ones may have been pruned and re-created).
                self._fence(f"its lock is at generation {newest}, not {nxt}")
                return False
            self.generation, self._confirmed = nxt, started
            return True

    def check(self) -> None:
        """Return only if this run may still write: it holds the lock and has confirmed it within
        ``SAFETY`` of its lease (renewing now if not). Else raise :class:`FencedError`."""
        if self.fenced is None and self.generation is None:
            raise FencedError(f"{self.what}: this run does not hold the lock")
        if self.fenced is None and \
                self.clock.elapsed() - self._confirmed > self.lease.total_seconds() * SAFETY:
            if not self.renew() and self.fenced is None:
                self._fence("its lease may have lapsed and could not be re-confirmed")
        if self.fenced is not None:
            raise FencedError(f"{self.what}: run {self.run_id} lost the lock ({self.fenced}); "
                              "it stops and writes nothing more")

    def _fence(self, why: str) -> None:
        if self.fenced is None:
            self.fenced = why
            log.error("%s: run %s is fenced: %s", self.what, self.run_id, why)
        self._stop.set()

    def _beat(self) -> None:
        interval = self.lease.total_seconds() / 3
        while not self._stop.wait(interval):
            if not self.renew() and self.fenced is not None:
                return

    def release(self) -> None:
        """Stop renewing and create a ``released`` generation (nothing if the lock was lost)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        with self._mutex:
            if self.generation is None or self.fenced is not None:
                self.generation = None
                return
            try:
                self._create(self.generation + 1, "released")
            except ObjectExistsError:
                log.warning("%s: the lock was taken over before its release", self.what)
            except CloudkeepError as exc:
                log.warning("%s: could not release the lock (its lease runs out): %s",
                            self.what, exc)
            self.generation = None

    def __enter__(self) -> Lease:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


DatasetLock = Lease


class FencedStore:
    """A store whose every write and delete first checks ``fence`` (a fenced run writes nothing
    more); reads pass through. Other attributes are the wrapped store's."""

    def __init__(self, store: Store, fence: Fence) -> None:
        self.inner = store
        self.fence = fence
        self.capabilities = store.capabilities

    def describe(self) -> str:
        return self.inner.describe()

    def put(self, key: str, data: Data, *, if_absent: bool = False,
            retain_until: datetime | None = None) -> ObjectInfo:
        self.fence.check()
        return self.inner.put(key, data, if_absent=if_absent, retain_until=retain_until)

    def open(self, key: str) -> BinaryIO:
        return self.inner.open(key)

    def get(self, key: str) -> bytes:
        return self.inner.get(key)

    def stat(self, key: str) -> ObjectInfo | None:
        return self.inner.stat(key)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return self.inner.list(prefix)

    def delete(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        if keys:
            self.fence.check()
            self.inner.delete(keys)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def unwrap(store: Store) -> Store:
    """The store under any ``FencedStore`` wrappers (for adapters that need the real type)."""
    while isinstance(store, FencedStore):
        store = store.inner
    return store


def _live(record: dict[str, Any], now: datetime) -> bool:
    """A generation that still holds the lock: held, not expired, holder not known dead."""
    if record.get("state") != "held":
        return False
    try:
        expires = datetime.fromisoformat(str(record["expires_at"]))
    except (KeyError, ValueError):
        return False
    # A lease never runs longer than MAX_LEASE from now: an expiry further out is a forged or
    # wildly skewed record, not a holder (taken over; a real holder is then fenced, never
    # raced, since renewals are compare-and-set).
    return now < expires <= now + MAX_LEASE and not _holder_dead(record)


MAX_LEASE = timedelta(hours=1)


def _process_namespace() -> str | None:
    """This machine's boot and PID namespace: PIDs are comparable only within one of them."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            boot = fh.read().strip()
        return f"{socket.gethostname()}/{boot}/{os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return None


def _holder_dead(holder: dict[str, Any]) -> bool:
    """True only when the holder ran in our PID namespace and its process is gone."""
    mine = _process_namespace()
    if mine is None or holder.get("process_ns") != mine:
        return False
    try:
        pid = int(holder["pid"])
    except (KeyError, TypeError, ValueError):
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return _zombie(pid)


def _zombie(pid: int) -> bool:
    """A killed child not yet reaped by its parent is dead too."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False
