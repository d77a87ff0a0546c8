"""A per-dataset lock in the store: a create-only object with a lease, renewed by a heartbeat.

Only one run of a dataset at a time. The lock object is created with a create-only write, so of
two runs starting together exactly one wins. A crashed run stops renewing, its lease expires, and
the next run takes the lock over; a takeover is itself decided by a create-only marker, so two
runs cannot both take over the same expired lock. A holder that is known dead — a process of the
same machine and PID namespace that no longer exists, e.g. a CLI run killed with ``kill -9`` — is
taken over at once instead of after its lease.

The same lock, under another key, is the lease of a worker on one segment of a fan-out snapshot.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from . import layout
from .errors import LockedError, ObjectExistsError, ObjectNotFoundError
from .stores import Store

log = logging.getLogger(__name__)

DEFAULT_LEASE = timedelta(minutes=5)


class DatasetLock:
    def __init__(self, store: Store, dataset: str, run_id: str, *, lease: timedelta = DEFAULT_LEASE,
                 key: str | None = None, what: str | None = None):
        self.store = store
        self.dataset = dataset
        self.run_id = run_id
        self.lease = lease
        self.key = key or layout.lock_key(dataset)
        self.what = what or f"dataset {dataset!r}"
        self._custom_key = key is not None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _body(self) -> bytes:
        now = datetime.now(UTC)
        return json.dumps(
            {
                "run_id": self.run_id,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "process_ns": _process_namespace(),
                "renewed_at": now.isoformat(),
                "expires_at": (now + self.lease).isoformat(),
            }
        ).encode()

    def acquire(self) -> None:
        for _ in range(3):
            try:
                self.store.put(self.key, self._body(), if_absent=True)
                break
            except ObjectExistsError:
                holder = self._read()
                if holder is None:
                    continue  # released between our write and our read: try again
                if not _expired(holder):
                    raise LockedError(
                        f"{self.what} is being backed up by run "
                        f"{holder.get('run_id')} on {holder.get('host')} (lock lease until "
                        f"{holder.get('expires_at')}); try again later"
                    ) from None
                self._take_over(holder)
        else:
            raise LockedError(f"could not take the lock of {self.what}; try again")
        self._thread = threading.Thread(target=self._heartbeat, name=f"lock-{self.dataset}", daemon=True)
        self._thread.start()

    def _take_over(self, holder: dict[str, Any]) -> None:
        old = str(holder.get("run_id", "unknown"))
        marker = (f"{self.key}.takeover-{old}" if self._custom_key
                  else layout.lock_takeover_key(self.dataset, old))
        try:
            self.store.put(marker, self.run_id.encode(), if_absent=True)
        except ObjectExistsError:
            info = self.store.stat(marker)
            stale = info and info.modified and (
                datetime.now(UTC) - info.modified > self.lease
            )
            if not stale:
                raise LockedError(
                    f"another run is taking over the expired lock of {self.what}"
                ) from None
            self.store.delete([marker])
            self.store.put(marker, self.run_id.encode(), if_absent=True)
        log.warning("%s: taking over the expired lock of run %s", self.what, old)
        current = self._read()
        if current is not None and current.get("run_id") == holder.get("run_id"):
            self.store.delete([self.key])
        self.store.delete([marker])

    def _read(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.store.get(self.key))
        except ObjectNotFoundError:
            return None
        except ValueError:
            return {"run_id": "unreadable", "expires_at": "1970-01-01T00:00:00+00:00"}
        return data if isinstance(data, dict) else {"run_id": "unreadable"}

    def _heartbeat(self) -> None:
        interval = self.lease.total_seconds() / 3
        while not self._stop.wait(interval):
            try:
                holder = self._read()
                if holder is None or holder.get("run_id") != self.run_id:
                    log.error("%s: lost the lock (held by %s)", self.what,
                              holder and holder.get("run_id"))
                    return
                self.store.put(self.key, self._body())
            except Exception as exc:  # noqa: BLE001 - a heartbeat must not kill the run
                log.warning("%s: could not renew the lock: %s", self.what, exc)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        holder = self._read()
        if holder is not None and holder.get("run_id") == self.run_id:
            self.store.delete([self.key])

    def __enter__(self) -> DatasetLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _expired(holder: dict[str, Any]) -> bool:
    try:
        expires = datetime.fromisoformat(str(holder["expires_at"]))
    except (KeyError, ValueError):
        return True
    return datetime.now(UTC) >= expires or _holder_dead(holder)


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
    return False
