"""A backup run that freezes itself (SIGSTOP) right after writing its Nth part, for the
stalled-run test (tests/test_backup_path.py). The freeze comes at a known point — after a
write has landed, before the next one is attempted — so what the run writes after it is thawed
is exactly what fencing lets through.

    python stall_child.py POLICY DATASET LEASE_SECONDS STOP_AFTER_PARTS PART_SIZE

Prints the run's result as JSON; exits 1 with the error on stderr when the run failed.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from datetime import timedelta
from typing import Any

from cloudkeep.engine import RunOptions, backup
from cloudkeep.errors import CloudkeepError
from cloudkeep.policy import load_policy
from cloudkeep.registry import store_for_dataset


class FreezeAfterParts:
    """A store that stops this whole process (every thread, the lock's heartbeat too) after its
    ``n``-th part write has completed."""

    def __init__(self, inner: Any, n: int) -> None:
        self.inner = inner
        self.capabilities = inner.capabilities
        self.n = n
        self.parts = 0

    def put(self, key: str, data: Any, **kw: Any) -> Any:
        info = self.inner.put(key, data, **kw)
        if "/part-" in key:
            self.parts += 1
            if self.parts == self.n:
                print(f"frozen after {key}", file=sys.stderr, flush=True)
                # Aimed at this thread, so this thread stops before it does anything more (a
                # process-wide kill may be taken by another thread while this one runs on).
                signal.pthread_kill(threading.get_ident(), signal.SIGSTOP)
        return info

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def main() -> int:
    policy_path, dataset, lease, stop_after, part_size = sys.argv[1:6]
    policy = load_policy(policy_path).policy
    store = FreezeAfterParts(store_for_dataset(policy, dataset), int(stop_after))
    options = RunOptions(part_size=int(part_size), workers=1, checkpoint_every=1,
                         lease=timedelta(seconds=float(lease)))
    try:
        result = backup(policy, dataset, store=store, options=options)  # type: ignore[arg-type]
    except CloudkeepError as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1
    print(json.dumps(result.as_dict(), default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
