"""Restore drills and samples on the Firestore emulator (scratch collection prefix) and the
Cosmos DB server (scratch container): restore, compare, measure, clean up — and a tampered
snapshot fails its drill, still cleaning up."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
import zstandard

from fixtures_azure import cosmos_policy
from fixtures_gcp import FirestoreRest, gcp_policy
from helpers import cli, cli_json

pytestmark = [pytest.mark.emulator,
              pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")]


def tamper(snapshot_dir: Path, change: Any) -> None:
    """Rewrite one part with one line changed, and make the manifest's size and sha256 agree, so
    that only a content comparison can tell."""
    manifest_path = snapshot_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    part = next(p for p in manifest["parts"] if p["items"] > 0)
    path = snapshot_dir / part["name"]
    lines = zstandard.ZstdDecompressor().decompressobj().decompress(path.read_bytes()).split(b"\n")
    lines[0] = json.dumps(change(json.loads(lines[0])), separators=(",", ":"), sort_keys=True).encode()
    data = zstandard.ZstdCompressor().compress(b"\n".join(lines))
    path.chmod(0o644)
    path.write_bytes(data)
    manifest["totals"]["stored_bytes"] += len(data) - part["stored_bytes"]
    part["sha256"] = hashlib.sha256(data).hexdigest()
    part["stored_bytes"] = len(data)
    raw = len(b"\n".join(lines))  # the uncompressed size too: readers stop past raw_bytes
    manifest["totals"]["raw_bytes"] += raw - part["raw_bytes"]
    part["raw_bytes"] = raw
    manifest_path.chmod(0o644)
    manifest_path.write_text(json.dumps(manifest))


def with_rto(path: Path, rto: str) -> None:
    policy = yaml.safe_load(path.read_text())
    for tier in policy["tiers"].values():
        tier["rto"] = rto
    path.write_text(yaml.safe_dump(policy, allow_unicode=True))


# ------------------------------------------------------------------------------------- Firestore


def test_firestore_drill_and_sample(firestore_rest: FirestoreRest, gcp_project: str, tmp_path: Path,
                                    capsys: Any) -> None:
    docs = {f"users/u{i:03d}": {"n": {"integerValue": str(i)}, "name": {"stringValue": f"user {i}"}}
            for i in range(60)}
    docs |= {f"users/u{i:03d}/orders/o1": {"total": {"doubleValue": i + 0.5}} for i in range(5)}
    firestore_rest.write(docs)
    policy = gcp_policy(tmp_path, project=gcp_project, collections=["users"])
    with_rto(policy, "10m")
    code, _, err = cli(capsys, "--policy", str(policy), "run", "profiles")
    assert code == 0, err

    report = cli_json(capsys, "--policy", str(policy), "verify", "--latest", "profiles",
                      "--level", "drill")
    assert report["ok"], report["problems"]
    assert report["items"] == 65 and report["target"].startswith("cloudkeep_drill_")
    assert report["restore_seconds"] > 0 and report["rto_met"] is True and report["cleaned_up"]
    after = firestore_rest.documents()
    assert not [n for n in after if n.startswith("cloudkeep_drill_")], "scratch documents remain"
    assert len(after) == 65

    # sample: change one document, delete another; both are counted, neither fails the sample
    firestore_rest.write({"users/u001": {"n": {"integerValue": "-1"}}})
    firestore_rest.delete("users/u002")
    report = cli_json(capsys, "--policy", str(policy), "verify", "--latest", "profiles",
                      "--level", "sample", "--sample", "500")
    assert report["ok"], report["problems"]
    assert report["sample"] == {"requested": 500, "compared": 65, "matched": 63, "changed": 1,
                                "deleted": 1, "differs": 0}

    # a snapshot line altered under the same update time: the sample notices (if it picks it),
    # and the drill always does
    listed = cli_json(capsys, "--policy", str(policy), "list", "profiles")
    snap = tmp_path / "vault" / "profiles" / "snapshots" / listed[0]["snapshot_id"]

    def change(doc: dict[str, Any]) -> dict[str, Any]:
        doc["fields"]["name"] = {"stringValue": "forged"}
        return doc

    tamper(snap, change)
    code, out, _ = cli(capsys, "--policy", str(policy), "--format", "json", "verify", "--latest",
                       "profiles", "--level", "sample", "--sample", "500")
    sample = json.loads(out)
    assert code == 1 and sample["sample"]["differs"] == 1
    code, out, _ = cli(capsys, "--policy", str(policy), "--format", "json", "verify", "--latest",
                       "profiles", "--level", "drill")
    drill = json.loads(out)
    assert code == 1 and not drill["ok"] and drill["cleaned_up"] is True
    assert any("digest" in p["message"] for p in drill["problems"]), drill["problems"]
    assert not [n for n in firestore_rest.documents() if n.startswith("cloudkeep_drill_")]


def test_firestore_drills_into_its_own_database(firestore_rest: FirestoreRest, gcp_project: str,
                                                tmp_path: Path, capsys: Any,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """With drill_database the drill restores into that database (infra/gcp creates it and lets
    the restore identity write only there), never into collections of the source's."""
    from google.cloud import firestore

    from cloudkeep.catalog import resolve
    from cloudkeep.drills import run_level
    from cloudkeep.policy import load_policy
    from cloudkeep.registry import open_source
    from cloudkeep.sources.firestore import FirestoreSource

    docs = {f"users/u{i:03d}": {"n": {"integerValue": str(i)}} for i in range(30)}
    firestore_rest.write(docs)
    path = gcp_policy(tmp_path, project=gcp_project, collections=["users"],
                      drill_database="cloudkeep-drill")
    assert cli(capsys, "--policy", str(path), "run", "profiles")[0] == 0
    report = cli_json(capsys, "--policy", str(path), "verify", "--latest", "profiles", "--level", "drill")
    assert report["ok"] and report["items"] == 30 and report["cleaned_up"], report["problems"]
    assert sorted(firestore_rest.documents()) == sorted(docs)  # the source's database untouched

    # Where the drill wrote: keep its copy for a look (no cleanup), then clean up by hand.
    dropped: list[tuple[str, str]] = []
    monkeypatch.setattr(FirestoreSource, "drop_target",
                        lambda self, target, recorded: dropped.append((self._for(target).database, target)))
    policy = load_policy(str(path)).policy
    store, manifest = resolve(policy, "profiles@latest")
    source = open_source(policy.dataset("profiles").source)
    report = run_level(policy, store, manifest, "drill", source=source)
    [(database, target)] = dropped
    assert report.ok and database == "cloudkeep-drill" and target.startswith("cloudkeep_drill_")
    drill = firestore.Client(project=gcp_project, database="cloudkeep-drill")
    copied = [d.id for d in drill.collection(target + "users").stream()]
    assert sorted(copied) == sorted(n.split("/")[1] for n in docs)
    assert not [n for n in firestore_rest.documents() if n.startswith("cloudkeep_drill_")]
    monkeypatch.undo()
    source._for(target).drop_target(target, manifest.source)
    assert [d.id for d in drill.collection(target + "users").stream()] == []


# ------------------------------------------------------------------------------------- Cosmos DB


def test_cosmos_drill_and_sample(cosmos_server: Any, cosmos_client: Any, cosmos_database: str,
                                 tmp_path: Path, capsys: Any) -> None:
    from azure.cosmos import PartitionKey

    database = cosmos_client.get_database_client(cosmos_database)
    container = database.create_container("carts", partition_key=PartitionKey(path="/pk"))
    for i in range(40):
        container.upsert_item({"id": f"c{i}", "pk": f"p{i % 4}", "lines": [{"sku": i, "qty": 2}]})
    policy = cosmos_policy(tmp_path, endpoint=cosmos_server.endpoint, database=cosmos_database,
                           container="carts")
    with_rto(policy, "10m")
    code, _, err = cli(capsys, "--policy", str(policy), "run", "carts")
    assert code == 0, err

    def containers() -> list[str]:
        return sorted(c["id"] for c in database.list_containers())

    report = cli_json(capsys, "--policy", str(policy), "verify", "--latest", "carts", "--level", "drill")
    assert report["ok"], report["problems"]
    assert report["items"] == 40 and report["target"].startswith("carts-cloudkeep-drill-")
    assert report["restore_seconds"] > 0 and report["rto_met"] is True and report["cleaned_up"]
    assert containers() == ["carts"]

    container.upsert_item({"id": "c1", "pk": "p1", "lines": []})
    container.delete_item("c2", partition_key="p2")
    code, out, err = cli(capsys, "--policy", str(policy), "--format", "json", "verify", "--latest",
                         "carts", "--level", "sample", "--sample", "100")
    report = json.loads(out)
    assert code == 0 and report["ok"], report["problems"]
    assert report["sample"] == {"requested": 100, "compared": 40, "matched": 38, "changed": 1,
                                "deleted": 1, "differs": 0}

    listed = cli_json(capsys, "--policy", str(policy), "list", "carts")
    snap = tmp_path / "vault" / "carts" / "snapshots" / listed[0]["snapshot_id"]

    def change(doc: dict[str, Any]) -> dict[str, Any]:
        doc["item"]["forged"] = True
        return doc

    tamper(snap, change)
    code, out, _ = cli(capsys, "--policy", str(policy), "--format", "json", "verify", "--latest",
                       "carts", "--level", "drill")
    drill = json.loads(out)
    assert code == 1 and not drill["ok"] and drill["cleaned_up"] is True
    assert any("digest" in p["message"] for p in drill["problems"]), drill["problems"]
    assert containers() == ["carts"]
