"""Resume mid-segment on the other sources, against their emulators: a Firestore snapshot (at its
recorded read time, by document-name cursor) and a Cosmos DB snapshot (by query continuation)
stopped by a time budget over and over, each invocation with a fresh source, gives exactly the
source's content."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from cloudkeep import layout
from cloudkeep.checkpoint import Deadline
from cloudkeep.codec import iter_lines
from cloudkeep.engine import RunOptions, RunResult, backup
from cloudkeep.policy import Policy, load_policy
from cloudkeep.registry import open_source, open_store
from fixtures_azure import cosmos_policy
from fixtures_gcp import FirestoreRest, gcp_policy


class Countdown:
    """A scripted clock: time enough for ``calls`` checks, then none."""

    def __init__(self, calls: int) -> None:
        self.calls = calls

    def __call__(self) -> float:
        self.calls -= 1
        return 1000.0 if self.calls >= 0 else 0.0


def run_until_committed(policy: Policy, dataset: str, between: Any = None,
                        tune: Any = None) -> tuple[RunResult, int]:
    rounds = 0
    while True:
        rounds += 1
        assert rounds < 200
        source = open_source(policy.dataset(dataset).source)  # a fresh invocation
        if tune is not None:
            tune(source)
        result = backup(policy, dataset, source=source,
                        options=RunOptions(part_size=600, checkpoint_every=1, workers=2,
                                           deadline=Deadline(Countdown(1), reserve=1.0)))
        if result.status == "committed":
            return result, rounds
        assert result.status == "unfinished"
        if between is not None:
            between(rounds)


def names_in(policy: Policy, result: RunResult, key: Any) -> list[str]:
    store = open_store(policy.stores["vault"])
    assert result.manifest is not None
    out = []
    for part in result.manifest.parts:
        data = store.get(layout.part_key(result.dataset, result.manifest.snapshot_id, part.name))
        out.extend(str(key(json.loads(line))) for line in iter_lines(io.BytesIO(data)))
    return out


def test_firestore_resumes_at_its_read_time_by_document_name(
    firestore_rest: FirestoreRest, gcp_project: str, tmp_path: Path,
) -> None:
    docs: dict[str, dict[str, Any]] = {}
    for i in range(240):
        docs[f"users/u{i:04d}"] = {"i": {"integerValue": str(i)}, "pad": {"stringValue": "p" * 30}}
        if i % 10 == 0:
            docs[f"users/u{i:04d}/orders/o1"] = {"parent": {"integerValue": str(i)}}
    firestore_rest.write(docs)
    policy = load_policy(str(gcp_policy(tmp_path, project=gcp_project, collections=["users"],
                                        segments=2))).policy

    def change_the_source(round_: int) -> None:
        # Written after the snapshot's read time: a resumed read must not see these.
        firestore_rest.write({f"users/late{round_:03d}": {"late": {"booleanValue": True}}})

    result, rounds = run_until_committed(policy, "profiles", change_the_source)
    assert rounds >= 3
    names = names_in(policy, result, lambda line: line["name"])
    assert len(names) == len(set(names)), "no document twice"
    assert sorted(names) == sorted(docs), "none lost, none from after the read time"
    assert result.manifest is not None and result.manifest.consistency.mode == "point-in-time"


def test_cosmos_resumes_a_feed_range_from_its_continuation(
    cosmos_server: Any, cosmos_client: Any, cosmos_database: str, tmp_path: Path,
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from azure.cosmos import PartitionKey

    container = cosmos_client.get_database_client(cosmos_database).create_container(
        "resumable", partition_key=PartitionKey(path="/pk"))
    docs = [{"id": f"d{i:04d}", "pk": f"p{i % 7}", "pad": "c" * 40} for i in range(150)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(container.upsert_item, docs))
    policy = load_policy(str(cosmos_policy(tmp_path, endpoint=cosmos_server.endpoint,
                                           database=cosmos_database, container="resumable"))).policy

    def small_pages(source: Any) -> None:
        source.page_size = 10  # small query pages: many continuations

    result, rounds = run_until_committed(policy, "carts", tune=small_pages)
    assert rounds >= 3
    ids = names_in(policy, result, lambda line: line["item"]["id"])
    assert sorted(ids) == sorted(d["id"] for d in docs) and len(ids) == len(set(ids))
