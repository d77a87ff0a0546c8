"""Use cases of continuous capture (issue #21): :func:`capture` a dataset's change stream,
:func:`restore_at` a moment, the :func:`history` of one item, the :func:`recovery_window`."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from .. import audit, catalog, extras
from ..capabilities import Description
from ..changelog import at as _at
from ..changelog import history as _history
from ..changelog import run as _run
from ..changelog import verify as _verify
from ..changelog import window as _window
from ..changelog.ingest import Clock
from ..errors import CloudkeepError, UsageError
from ..itemkeys import parse_key
from ..keys import keyring_for
from ..policy import Policy
from ..progress import Progress
from ..registry import open_source
from ..sources import check_restore_target
from ..trust import expect_for


@extras.translating
def capture(policy: Policy, dataset: str, *, once: bool = False,
            budget: timedelta | None = None, clock: Clock | None = None) -> _run.CaptureResult:
    """Read ``dataset``'s change stream from its last recorded position into its change log
    (``once``: until caught up; else following it until ``budget`` runs out). Gaps are recorded
    and alerted. UsageError (exit 2) for a dataset that is not continuous."""
    return _run.capture(policy, dataset, once=once, budget=budget, clock=clock)


@extras.translating
def restore_at(policy: Policy, dataset: str, at: str, into: str, *, overwrite: bool = False,
               store_name: str | None = None, allow_unsigned: bool = False,
               progress: Progress | None = None) -> _at.AtResult:
    """Restore ``dataset`` as it was at ``at`` (ISO 8601) into ``into``: the newest base
    snapshot before it plus the change log replayed up to it. OutsideWindowError (exit 2) for a
    moment outside the recoverable window or inside a gap, before anything is written; audited."""
    if "@" in dataset:
        raise UsageError("restore --at takes a DATASET, not a snapshot reference")
    spec = policy.dataset(dataset)
    source = open_source(spec.source)
    store = catalog.store_named(policy, dataset, store_name)
    try:
        newest = catalog.newest(store, dataset)
        if newest is not None:  # the target name is checked before anything is read
            manifest = catalog.load_manifest(store, dataset, newest.snapshot_id)
            check_restore_target(source, manifest, into)
        result = _at.restore_at(policy, dataset, at, into, overwrite=overwrite,
                                store_name=store_name, allow_unsigned=allow_unsigned,
                                progress=progress, source=source)
    except CloudkeepError as exc:
        audit.write(store, "restore", outcome="failed", dataset=dataset,
                    detail={"target": into, "at": at, "error": str(exc)})
        raise
    audit.write(store, "restore", outcome="ok", dataset=dataset,
                snapshot_id=result.base, detail=result.as_dict())
    return result


@extras.translating
def history(policy: Policy, dataset: str, key_text: str, *, since: str | None = None,
            store_name: str | None = None, allow_unsigned: bool = False) -> list[dict[str, Any]]:
    """Every version of the item ``key_text`` (JSON in the source's own form), oldest first:
    ``[{"time", "event", "item", "source"}]``."""
    if key_text.strip()[:1] in ("{", "["):  # bad JSON is bad usage, whatever the source says
        try:
            json.loads(key_text)
        except ValueError:
            raise UsageError(f"bad --key: {key_text[:80]!r} is not valid JSON") from None
    store = catalog.store_named(policy, dataset, store_name)
    newest = catalog.newest(store, dataset)
    recorded: dict[str, Any]
    if newest is not None:
        recorded = dict(catalog.load_manifest(store, dataset, newest.snapshot_id).source)
    else:
        source = open_source(policy.dataset(dataset).source)
        recorded = {"type": source.kind} | dict(Description.coerce(source.describe()).identity)
    key = parse_key(recorded, key_text, where="--key")
    moment = None if since is None else _at.parse_moment(since, where="--since")[0]
    expect = expect_for(policy, dataset, store_name, allow_unsigned=allow_unsigned)
    log_store = _at.log_store_for(policy, dataset, store, store_name)
    return [v.as_dict() for v in _history.versions(store, dataset, key, since=moment,
                                                   keyring=keyring_for(policy), expect=expect,
                                                   log_store=log_store)]


def recovery_window(policy: Policy, dataset: str) -> _window.Window:
    """``dataset``'s recoverable window and gaps (from its own store)."""
    return _window.compute(catalog.store_named(policy, dataset, None), dataset)


def describe_window(summary: dict[str, Any]) -> str:
    """One line of a continuous dataset's window and gaps, for a table."""
    return _window.describe(summary)


@extras.translating
def verify_log(policy: Policy, dataset: str, *, store_name: str | None = None) -> _verify.LogReport:
    """Check ``dataset``'s change log: every segment whole and in order, no holes."""
    store = catalog.store_named(policy, dataset, store_name)
    return _verify.verify_log(store, dataset, keyring_for(policy))
