"""An encrypted snapshot's recorded read plan is sealed too (sealed.py, runstate.py).

A source's plan can hold item keys: Firestore's segments are document-name ranges, recorded in
the run state (``checkpoints/run.json``) so that a later invocation reads the same plan. For an
encrypted snapshot those names are data, so the run state must not show them; a resumed run
opens the plan and follows it; a plan that does not open is not followed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cloudkeep import layout, sealed
from cloudkeep.checkpoint import CheckpointError, Deadline, load_run_state
from cloudkeep.engine import backup
from cloudkeep.keys import Keyring
from cloudkeep.runstate import prepare_source
from cloudkeep.stores.memory import MemoryStore
from cloudkeep.verify import verify_integrity
from test_checkpoint import Countdown, ResumableSource, opts
from test_sealed_cursor import encrypted_policy

SECRET = "k-secret-bound"


class PlanningSource(ResumableSource):
    """The resumable memory source whose recorded plan names item keys (as Firestore's does)."""

    def __init__(self) -> None:
        super().__init__()
        self.resumed_plans: list[dict[str, Any]] = []

    def plan_state(self) -> dict[str, Any]:
        return super().plan_state() | {"bounds": [f"{SECRET}-{i}" for i in range(self.segments)]}

    def resume_plan(self, state: dict[str, Any], segments: int) -> None:
        self.resumed_plans.append(dict(state))
        super().resume_plan({k: v for k, v in state.items() if k != "bounds"}, segments)


def run_state_body(store: MemoryStore, snapshot_id: str) -> bytes:
    return store.get(layout.run_state_key("a", snapshot_id))


def test_the_run_state_of_an_encrypted_snapshot_shows_no_item_key_and_resumes(tmp_path: Path) -> None:
    policy = encrypted_policy(tmp_path)
    keyring = Keyring.from_policy(policy)
    store, source = MemoryStore(), PlanningSource()
    first = backup(policy, "a", store=store, source=source, keyring=keyring,
                   options=opts(deadline=Deadline(Countdown(4), reserve=1.0)))
    assert first.status == "unfinished", first
    body = run_state_body(store, first.snapshot_id)
    assert SECRET.encode() not in body, body[:300]
    assert sealed.is_sealed(json.loads(body)["source_state"])

    again = PlanningSource()
    second = backup(policy, "a", store=store, source=again, keyring=keyring, options=opts())
    assert second.status == "committed" and second.manifest is not None
    assert second.manifest.snapshot_id == first.snapshot_id
    assert again.resumed_plans and again.resumed_plans[0]["bounds"] == [f"{SECRET}-{i}" for i in range(3)]
    assert (second.manifest.totals.items, second.manifest.content_digest.value) == source.expected()
    assert verify_integrity(store, second.manifest, keyring=keyring).ok


def test_a_sealed_plan_that_does_not_open_is_not_followed(tmp_path: Path) -> None:
    policy = encrypted_policy(tmp_path)
    keyring = Keyring.from_policy(policy)
    store = MemoryStore()
    first = backup(policy, "a", store=store, source=PlanningSource(), keyring=keyring,
                   options=opts(deadline=Deadline(Countdown(4), reserve=1.0)))
    assert first.status == "unfinished", first
    state = load_run_state(store, "a", first.snapshot_id)
    assert state is not None
    moved = sealed.seal(bytes(32), sealed.plan_aad(first.snapshot_id), {"bounds": ["x"]})
    forged = type(state)(**{**vars(state), "source_state": moved})
    source = PlanningSource()
    with pytest.raises(CheckpointError):
        prepare_source(store, source, forged, keyring, policy)
    with pytest.raises(CheckpointError):
        prepare_source(store, source, state, None, policy)  # sealed, and no key to open it
    assert source.resumed_plans == []
    prepare_source(store, source, state, keyring, policy)
    assert source.resumed_plans[0]["bounds"] == [f"{SECRET}-{i}" for i in range(3)]


def test_an_unencrypted_snapshot_keeps_its_plan_plain(tmp_path: Path) -> None:
    from test_checkpoint import POLICY

    store = MemoryStore()
    first = backup(POLICY, "a", store=store, source=PlanningSource(),
                   options=opts(deadline=Deadline(Countdown(4), reserve=1.0)))
    assert first.status == "unfinished", first
    assert json.loads(run_state_body(store, first.snapshot_id))["source_state"]["bounds"][0] == f"{SECRET}-0"
