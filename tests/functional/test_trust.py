"""Manifests bound to where they are stored, authentic, and meeting the policy (issue 17, items 2
and 3): replayed, cross-dataset, cross-store, edited and downgraded manifests are refused by every
reader — never listed, verified, restored or counted — and prune never deletes a genuine
snapshot, or what a refused manifest points at, because of them. Over our own protocols (memory
and file stores, a scripted source); the restore across datasets on DynamoDB Local."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from cloudkeep import layout
from cloudkeep.catalog import load_manifest, scan, snapshot_ids
from cloudkeep.drills import run_level
from cloudkeep.engine import RunOptions, backup
from cloudkeep.errors import TamperedError
from cloudkeep.keys import Keyring, keyring_for
from cloudkeep.keys.local import create_key_file
from cloudkeep.manifest import Manifest
from cloudkeep.policy import Policy, PolicyError, parse_policy
from cloudkeep.prune import prune
from cloudkeep.restore import restore
from cloudkeep.runtime import dataset_plan, tick
from cloudkeep.stores.file import FileStore
from cloudkeep.stores.memory import MemoryStore
from cloudkeep.trust import DowngradeError, ForgedManifestError, expect_for
from cloudkeep.verify import verify_integrity
from helpers import cli, cli_json
from test_encryption import MarkerSource

Z = UTC
NOW = datetime(2026, 1, 2, tzinfo=Z)


def sid(hour: int, suffix: str | None = None) -> str:
    return layout.snapshot_id_for(datetime(2026, 1, 1, tzinfo=Z) + timedelta(hours=hour),
                                  suffix or f"{hour:06x}")


def make_policy(tmp: Path, *, keys: bool = False, extra_top: str = "", extra_ds: str = "",
                retention: str = "{last: 3}") -> Policy:
    """Datasets a and b in the file store ``vault`` (and a copy store ``spare``)."""
    if keys and not (tmp / "one.key").exists():
        create_key_file(tmp / "one.key")
    text = f"""
version: 1
{"keys: {one: {provider: local, path: one.key}}" if keys else ""}
{extra_top}
stores: {{vault: {{type: file, path: vault}}, spare: {{type: file, path: spare}}}}
tiers: {{t: {{schedule: "0 * * * *", rpo: 2h, retention: {retention}}}}}
datasets:
  a: {{source: {{type: dynamodb, table: aaa, region: us-east-1}}, tier: t, store: vault{extra_ds}}}
  b: {{source: {{type: dynamodb, table: bbb, region: us-east-1}}, tier: t, store: vault{extra_ds}}}
"""
    (tmp / "cloudkeep.yaml").write_text(text)
    return parse_policy(text, base_dir=tmp)


def take(policy: Policy, store: Any, dataset: str, hours: list[int],
         source: Any = None) -> list[Manifest]:
    out = []
    for hour in hours:
        result = backup(policy, dataset, store=store, source=source or MarkerSource(),
                        snapshot_id=sid(hour), options=RunOptions(part_size=400),
                        keyring=keyring_for(policy))
        assert result.manifest is not None
        out.append(result.manifest)
    return out


def replay(store: Any, dataset: str, original: str, new_ids: list[str],
           into: str | None = None) -> None:
    """What an attacker with write access does: the same manifest bytes under other names."""
    body = store.get(layout.manifest_key(dataset, original))
    for new in new_ids:
        store.put(layout.manifest_key(into or dataset, new), body, if_absent=True)


def rewrite(store: Any, dataset: str, snapshot_id: str, edit: Any) -> None:
    key = layout.manifest_key(dataset, snapshot_id)
    doc = json.loads(store.get(key))
    edit(doc)
    store.delete([key])
    store.put(key, json.dumps(doc).encode())


def objects(store: Any, prefix: str) -> set[str]:
    """Every object under ``prefix`` but checkpoints (which prune collects once committed)."""
    return {i.key for i in store.list(prefix) if "/checkpoints/" not in i.key}


# ---- item 2: replayed manifests


@pytest.mark.parametrize("keys", [False, True], ids=["unsigned", "signed"])
def test_a_manifest_replayed_under_three_new_ids_is_refused_and_prune_keeps_every_backup(
        tmp_path: Path, keys: bool) -> None:
    policy = make_policy(tmp_path, keys=keys)
    store = FileStore(tmp_path / "vault")
    genuine = take(policy, store, "a", [1, 2, 3])
    before = objects(store, "a/snapshots/")
    forged = [sid(h, "f0f0f" + str(h)) for h in (10, 11, 12)]
    replay(store, "a", genuine[0].snapshot_id, forged)

    listing = scan(store, "a", expect=expect_for(policy, "a"))
    assert listing.ids == [m.snapshot_id for m in genuine]
    assert [(r.snapshot_id, r.kind) for r in listing.refused] == [(f, "forged") for f in forged]
    with pytest.raises(ForgedManifestError, match="replayed"):
        load_manifest(store, "a", forged[0], expect=expect_for(policy, "a"))
    assert dataset_plan(policy, "a", NOW, store).latest_snapshot == genuine[-1].snapshot_id

    report = prune(policy, "a", NOW, store=store)  # last: 3
    assert report.removed == []
    assert len(report.errors) == 3 and all("replayed" in e for e in report.errors)
    assert set(report.decision.keep) == {m.snapshot_id for m in genuine} | set(forged)
    assert before <= objects(store, "a/snapshots/")  # every genuine object is still there
    for manifest in genuine:
        assert verify_integrity(store, manifest, keyring=keyring_for(policy)).ok


def test_prune_keeps_the_parts_a_refused_manifest_points_at(tmp_path: Path) -> None:
    policy = make_policy(tmp_path)
    store = MemoryStore()
    genuine = take(policy, store, "a", [1, 2, 3, 4])
    replay(store, "a", genuine[0].snapshot_id, [sid(20, "f0f0f0")])
    report = prune(policy, "a", NOW, store=store)
    # last: 3 would remove the oldest, but a replayed manifest points at its parts: evidence
    assert report.removed == []
    rows = {r["snapshot_id"]: r for r in report.as_dict()["snapshots"]}
    assert rows[genuine[0].snapshot_id]["action"] == "keep"
    assert f"parts referenced by refused manifest {sid(20, 'f0f0f0')}" in \
        rows[genuine[0].snapshot_id]["reasons"]
    assert all(store.stat(layout.part_key("a", genuine[0].snapshot_id, p.name))
               for p in genuine[0].parts)


def test_the_cli_never_lists_verifies_restores_or_shows_a_replayed_manifest(
        tmp_path: Path, capsys: Any) -> None:
    policy = make_policy(tmp_path)
    store = FileStore(tmp_path / "vault")
    genuine = take(policy, store, "a", [1, 2, 3])
    forged = [sid(h, "f0f0f" + str(h)) for h in (10, 11, 12)]
    replay(store, "a", genuine[1].snapshot_id, forged)
    p = str(tmp_path / "cloudkeep.yaml")

    code, out, err = cli(capsys, "--policy", p, "--format", "json", "list", "a")
    assert code == 1 and "Traceback" not in err
    assert [r["snapshot_id"] for r in json.loads(out)] == [m.snapshot_id for m in genuine]
    assert all(f"a@{f}" in err for f in forged) and "replayed" in err
    code, out, err = cli(capsys, "--policy", p, "list", "a")
    assert code == 1 and f"a@{forged[0]} (FORGED)" in out
    for command in (["verify", f"a@{forged[0]}"], ["show", f"a@{forged[0]}"],
                    ["restore", f"a@{forged[0]}", "--into", "nowhere"],
                    ["hold", "add", f"a@{forged[0]}", "--reason", "x"]):
        code, out, err = cli(capsys, "--policy", p, *command)
        assert code == 1, (command, out, err)
        assert err.count("\n") == 1 and "replayed" in err and "Traceback" not in err, err
    # @latest is the newest genuine snapshot (the forged ones are newer, and skipped)
    shown = cli_json(capsys, "--policy", p, "show", "a@latest")
    assert shown["snapshot_id"] == genuine[-1].snapshot_id
    code, out, err = cli(capsys, "--policy", p, "--format", "json", "verify", "--latest", "a")
    assert code == 0 and json.loads(out)["snapshot_id"] == genuine[-1].snapshot_id
    code, out, err = cli(capsys, "--policy", p, "--format", "json", "prune")
    reports = {r["dataset"]: r for r in json.loads(out)}
    assert code == 1 and reports["a"]["removed"] == []
    assert {r["snapshot_id"] for r in reports["a"]["refused"]} == set(forged)
    report = cli(capsys, "--policy", p, "--format", "json", "report", "--now", "2026-01-01T04:00:00Z")
    a = {d["dataset"]: d for d in json.loads(report[1])["datasets"]}["a"]
    assert a["snapshot_count"] == 3 and a["status"] == "critical" and len(a["refused"]) == 3


def test_a_manifest_copied_under_another_dataset_never_verifies_or_restores(tmp_path: Path) -> None:
    policy = make_policy(tmp_path)
    store = MemoryStore()
    [a1] = take(policy, store, "a", [1])
    [b1] = take(policy, store, "b", [2])
    # a's manifest under b, at a's id and at a newer id (so it would be b@latest)
    replay(store, "a", a1.snapshot_id, [a1.snapshot_id, sid(30, "a0a0a0")], into="b")
    listing = scan(store, "b", expect=expect_for(policy, "b"))
    assert listing.ids == [b1.snapshot_id] and {r.kind for r in listing.refused} == {"forged"}
    for forged in (a1.snapshot_id, sid(30, "a0a0a0")):
        with pytest.raises(ForgedManifestError, match="says it is a@"):
            load_manifest(store, "b", forged, expect=expect_for(policy, "b"))
    # a manifest that names b but another store (copied in from elsewhere) is refused too
    other = b1.model_copy(update={"store": "spare", "snapshot_id": sid(31, "b0b0b0")})
    store.put(layout.manifest_key("b", other.snapshot_id), other.to_bytes())
    with pytest.raises(ForgedManifestError, match="store 'spare'"):
        load_manifest(store, "b", other.snapshot_id, expect=expect_for(policy, "b"))
    # ... while a copy store holds the primary's manifests as they are
    assert load_manifest(store, "b", b1.snapshot_id, expect=expect_for(policy, "b", "spare")) == b1


@pytest.mark.emulator
def test_restore_of_another_datasets_manifest_is_refused_and_latest_restores_its_own(
        tmp_path: Path, ddb_resource: Any, ddb_client: Any, capsys: Any) -> None:
    from tools.sample_data import ORDERS_TABLE_SCHEMA, seed

    from conftest import REGION, unique
    from helpers import scan_all

    tables = {}
    for name, count in (("a", 30), ("b", 12)):
        tables[name] = unique(f"t{name}")
        handle = ddb_resource.create_table(TableName=tables[name], **ORDERS_TABLE_SCHEMA)
        handle.wait_until_exists()
        seed(handle, count, seed_value=count)
    doc = {"version": 1, "stores": {"vault": {"type": "file", "path": str(tmp_path / "vault")}},
           "tiers": {"t": {"schedule": "0 * * * *", "rpo": "2h", "retention": {"last": 3}}},
           "datasets": {n: {"source": {"type": "dynamodb", "table": t, "region": REGION},
                            "tier": "t", "store": "vault"} for n, t in tables.items()}}
    path = tmp_path / "cloudkeep.yaml"
    path.write_text(yaml.safe_dump(doc))
    p = str(path)
    for name in tables:
        assert cli(capsys, "--policy", p, "run", name)[0] == 0
    [a_row] = cli_json(capsys, "--policy", p, "list", "a")
    store = FileStore(tmp_path / "vault")
    newer = layout.snapshot_id_for(datetime.now(Z) + timedelta(days=1), "a0a0a0")
    replay(store, "a", a_row["snapshot_id"], [newer], into="b")
    code, out, err = cli(capsys, "--policy", p, "verify", f"b@{newer}")
    assert code == 1 and "says it is a@" in err and "Traceback" not in err
    code, out, err = cli(capsys, "--policy", p, "restore", f"b@{newer}", "--into", unique("x"))
    assert code == 1 and "says it is a@" in err
    target = unique("restored")
    code, out, err = cli(capsys, "--policy", p, "restore", "b@latest", "--into", target)
    assert code == 0, err
    assert scan_all(ddb_client, target) == scan_all(ddb_client, tables["b"])  # b's data, not a's


# ---- item 2: authenticity of unencrypted snapshots


def test_unencrypted_snapshots_are_signed_when_the_policy_has_keys(tmp_path: Path) -> None:
    policy = make_policy(tmp_path, keys=True, extra_top="signing: {keys: [one]}")
    store = MemoryStore()
    [m] = take(policy, store, "a", [1])
    assert m.codec.encryption is None and m.authentication is not None
    assert m.authentication.keys and m.authentication.keys[0].key == "one"
    expect = expect_for(policy, "a")
    assert load_manifest(store, "a", m.snapshot_id, expect=expect) == m
    # edited: the tag fails
    rewrite(store, "a", m.snapshot_id, lambda d: d["totals"].update(items=d["totals"]["items"] + 1))
    with pytest.raises(TamperedError, match="failed authentication"):
        load_manifest(store, "a", m.snapshot_id, expect=expect)
    report = run_level(policy, store, Manifest.from_bytes(
        store.get(layout.manifest_key("a", m.snapshot_id)), where="t"), "integrity")
    assert ("manifest authentication" in {p.check for p in report.problems})
    # replayed with its id edited to match its new name: bound, but the tag fails
    [m2] = take(policy, store, "a", [2])
    new = sid(9, "e0e0e0")
    replay(store, "a", m2.snapshot_id, [new])
    rewrite(store, "a", new, lambda d: d.update(snapshot_id=new))
    with pytest.raises(TamperedError, match="failed authentication"):
        load_manifest(store, "a", new, expect=expect)
    # the tag stripped, in a dataset that requires signatures: a downgrade
    rewrite(store, "a", m2.snapshot_id, lambda d: d.update(authentication=None))
    with pytest.raises(DowngradeError, match="requires signatures"):
        load_manifest(store, "a", m2.snapshot_id, expect=expect)


def test_encrypted_manifests_carry_a_signing_key_checkable_without_the_data_key(
        tmp_path: Path, monkeypatch: Any) -> None:
    policy = make_policy(tmp_path, keys=True, extra_top="encryption: {keys: [one]}")
    store = MemoryStore()
    [m] = take(policy, store, "a", [1])
    assert m.codec.encryption is not None and m.authentication is not None
    assert m.authentication.keys  # signed by the (default) signing keys: the encryption keys

    def no_data_key(self: Keyring, manifest: Manifest) -> bytes:
        raise AssertionError("the data key was unwrapped")

    keyring = Keyring.from_policy(policy)
    monkeypatch.setattr(Keyring, "data_key", no_data_key)
    keyring.verify_tag(m)  # a role that may not decrypt snapshots can still tell a forgery
    edited = m.model_copy(update={"trigger": "schedule"})
    with pytest.raises(TamperedError):
        keyring.verify_tag(edited)


# ---- item 3: downgrade


def test_a_plain_manifest_in_an_encrypted_dataset_is_a_downgrade_everywhere(
        tmp_path: Path, capsys: Any) -> None:
    (tmp_path / "plain").mkdir()
    plain_policy = make_policy(tmp_path / "plain")
    policy = make_policy(tmp_path, keys=True, extra_top="encryption: {keys: [one]}")
    store = FileStore(tmp_path / "vault")
    genuine = take(policy, store, "a", [1, 2])
    # the attacker writes a plain, unsigned snapshot (manifest and parts), the newest by its id
    elsewhere = FileStore(tmp_path / "plain" / "vault")
    plain = backup(plain_policy, "a", store=elsewhere, source=MarkerSource(),
                   snapshot_id=sid(2, "ffffff")).manifest
    assert plain is not None and plain.codec.encryption is None and plain.authentication is None
    for info in elsewhere.list("a/snapshots/"):
        store.put(info.key, elsewhere.get(info.key))

    listing = scan(store, "a", expect=expect_for(policy, "a"))
    assert listing.ids == [m.snapshot_id for m in genuine]
    assert [(r.snapshot_id, r.kind) for r in listing.refused] == [(plain.snapshot_id, "downgrade")]
    assert dataset_plan(policy, "a", NOW, store).latest_snapshot == genuine[-1].snapshot_id
    p = str(tmp_path / "cloudkeep.yaml")
    code, out, err = cli(capsys, "--policy", p, "--format", "json", "list", "a")
    assert code == 1 and plain.snapshot_id not in out and "downgrade" in err
    code, out, err = cli(capsys, "--policy", p, "--format", "json", "verify", f"a@{plain.snapshot_id}")
    assert code == 1 and "downgrade" in out
    for command in (["restore", f"a@{plain.snapshot_id}", "--into", "t"],
                    ["show", f"a@{plain.snapshot_id}"]):
        code, out, err = cli(capsys, "--policy", p, *command)
        assert code == 1 and "downgrade" in err and err.count("\n") == 1, (command, err)
    source = MarkerSource()
    with pytest.raises(DowngradeError):
        restore(policy, store, plain, "t", source=source, keyring=keyring_for(policy))
    assert source.restored == []
    report = prune(policy, "a", NOW, store=store)
    assert report.removed == [] and plain.snapshot_id in report.decision.keep
    assert any("downgrade" in e for e in report.errors)
    # the tick: its watchdog sees the genuine newest snapshot, nothing else breaks
    result = tick(policy, datetime(2026, 1, 1, 2, 30, tzinfo=Z), datasets=["a"],
                  store_for=lambda _: store, source_for=lambda _: MarkerSource())
    assert result.freshness[0]["latest_snapshot"] == genuine[-1].snapshot_id


def test_old_unsigned_snapshots_still_read_until_signatures_are_required_then_endorse(
        tmp_path: Path, capsys: Any) -> None:
    # written by a policy without keys (as the previous release wrote every unencrypted snapshot)
    old_policy = make_policy(tmp_path)
    store = FileStore(tmp_path / "vault")
    old = take(old_policy, store, "a", [1, 2])
    assert all(m.authentication is None for m in old)
    # keys arrive: new snapshots are signed, old ones still read (signing not required)
    policy = make_policy(tmp_path, keys=True, extra_top="signing: {keys: [one], required: false}")
    [new] = take(policy, store, "a", [3])
    assert new.authentication is not None
    assert scan(store, "a", expect=expect_for(policy, "a")).ids == [*(m.snapshot_id for m in old),
                                                                    new.snapshot_id]
    # required: the old ones are refused as downgrades ...
    required = make_policy(tmp_path, keys=True, extra_top="signing: {keys: [one]}")
    p = str(tmp_path / "cloudkeep.yaml")
    code, out, err = cli(capsys, "--policy", p, "--format", "json", "list", "a")
    assert code == 1 and [r["snapshot_id"] for r in json.loads(out)] == [new.snapshot_id]
    assert "keys endorse" in err
    # ... --allow-unsigned reads one for one command ...
    code, out, err = cli(capsys, "--policy", p, "verify", f"a@{old[0].snapshot_id}")
    assert code == 1 and "downgrade" in out
    code, out, err = cli(capsys, "--policy", p, "verify", f"a@{old[0].snapshot_id}", "--allow-unsigned")
    assert code == 0, out + err
    assert cli(capsys, "--policy", p, "show", f"a@{old[0].snapshot_id}", "--allow-unsigned")[0] == 0
    # ... and `keys endorse` vouches for them once, create-only: then they read as usual
    replay(store, "a", old[0].snapshot_id, [sid(7, "f0f0f0")])  # a replayed one is never endorsed
    code, out, err = cli(capsys, "--policy", p, "--format", "json", "keys", "endorse", "a")
    rows = {r["snapshot_id"]: r["action"] for r in json.loads(out)}
    assert code == 1 and rows == {old[0].snapshot_id: "endorsed", old[1].snapshot_id: "endorsed",
                                  new.snapshot_id: "signed", sid(7, "f0f0f0"): "refused"}
    assert store.stat(layout.endorsement_key("a", old[0].snapshot_id)) is not None
    listed = cli(capsys, "--policy", p, "--format", "json", "list", "a")
    assert [r["snapshot_id"] for r in json.loads(listed[1])] == [*(m.snapshot_id for m in old),
                                                                  new.snapshot_id]
    assert cli(capsys, "--policy", p, "verify", f"a@{old[1].snapshot_id}")[0] == 0
    # an endorsement does not cover an edit made after it, nor another snapshot
    rewrite(store, "a", old[0].snapshot_id, lambda d: d.update(trigger="schedule"))
    with pytest.raises(TamperedError, match="does not match its endorsement"):
        load_manifest(store, "a", old[0].snapshot_id, expect=expect_for(required, "a"))
    endorsement = store.get(layout.endorsement_key("a", old[1].snapshot_id))
    [other] = take(old_policy, store, "a", [4])
    store.put(layout.endorsement_key("a", other.snapshot_id), endorsement)
    with pytest.raises(TamperedError, match="another snapshot"):
        load_manifest(store, "a", other.snapshot_id, expect=expect_for(required, "a"))


def test_previous_release_encrypted_manifests_tagged_with_the_data_key_still_read(
        tmp_path: Path) -> None:
    # signing: false writes them as the previous release did (the tag keyed by the data key)
    old_policy = make_policy(tmp_path, keys=True, extra_top="encryption: {keys: [one]}\nsigning: false")
    store = MemoryStore()
    source = MarkerSource()
    [old] = take(old_policy, store, "a", [1], source)
    assert old.authentication is not None and old.authentication.keys is None
    policy = make_policy(tmp_path, keys=True, extra_top="encryption: {keys: [one]}")
    assert load_manifest(store, "a", old.snapshot_id, expect=expect_for(policy, "a")) == old
    assert verify_integrity(store, old, keyring=Keyring.from_policy(policy),
                            expect=expect_for(policy, "a")).ok
    restore(policy, store, old, "t", source=source, keyring=Keyring.from_policy(policy))
    assert len(source.restored) == old.totals.items


def test_signing_policy_settings(tmp_path: Path) -> None:
    policy = make_policy(tmp_path, keys=True, extra_top="encryption: {keys: [one]}",
                         extra_ds=", encryption: false")
    assert policy.encryption_keys("a") == [] and policy.signing_keys("a") == ["one"]
    assert not policy.signing_required("a")  # the default: signed, not required
    policy = make_policy(tmp_path, keys=True, extra_top="signing: true\nencryption: {keys: [one]}")
    assert policy.signing_keys("a") == ["one"] and policy.signing_required("a")
    policy = make_policy(tmp_path, keys=True, extra_top="signing: {keys: [one]}",
                         extra_ds=", signing: false")
    assert policy.signing_keys("a") == [] and not policy.signing_required("a")
    with pytest.raises(PolicyError) as exc:
        make_policy(tmp_path, keys=True, extra_top="signing: {keys: [nope]}")
    assert "signing.keys.0: unknown key 'nope' (known: one)" in str(exc.value)
    with pytest.raises(PolicyError) as exc:
        make_policy(tmp_path, keys=True, extra_top="signing: {required: true}")
    assert "datasets.a: signing is required" in str(exc.value)
    with pytest.raises(PolicyError) as exc:
        make_policy(tmp_path, keys=True, extra_top="signing: {requred: true}")
    assert "signing.requred: unknown key 'requred' (allowed: keys, required)" in str(exc.value)


def test_a_run_never_takes_a_replayed_manifest_at_its_slot_for_its_own(tmp_path: Path) -> None:
    policy = make_policy(tmp_path)
    store = MemoryStore()
    [m] = take(policy, store, "a", [1])
    replay(store, "a", m.snapshot_id, [sid(2)])
    with pytest.raises(ForgedManifestError):  # refused loudly, not "exists"
        backup(policy, "a", store=store, source=MarkerSource(), snapshot_id=sid(2))
    assert snapshot_ids(store, "a") == [m.snapshot_id, sid(2)]
    # the tick, finding one at its slot's id, reports a failed backup (and alerts), not "exists"
    from cloudkeep.schedule import slot_snapshot_id

    slot_id = slot_snapshot_id("a", datetime(2026, 1, 1, 3, tzinfo=Z))
    replay(store, "a", m.snapshot_id, [slot_id])
    result = tick(policy, datetime(2026, 1, 1, 3, 30, tzinfo=Z), datasets=["a"],
                  store_for=lambda _: store, source_for=lambda _: MarkerSource())
    assert [(r.snapshot_id, r.status) for r in result.results] == [(None, "failed")]
    assert "replayed" in str(result.results[0].error)
    assert result.freshness[0]["latest_snapshot"] == m.snapshot_id


def test_one_garbage_manifest_never_breaks_list_plan_report_prune_or_the_tick(
        tmp_path: Path, capsys: Any) -> None:
    policy = make_policy(tmp_path)
    store = FileStore(tmp_path / "vault")
    genuine = take(policy, store, "a", [1, 2, 3, 4])
    garbage = sid(4, "fffff1")  # both newer than the newest genuine one
    store.put(layout.manifest_key("a", garbage), b"\x00not a manifest{{{")
    deep = sid(4, "fffff2")
    store.put(layout.manifest_key("a", deep), b"[" * 100_000)
    p = str(tmp_path / "cloudkeep.yaml")
    code, out, err = cli(capsys, "--policy", p, "--format", "json", "list")
    assert code == 0, err
    assert [r["snapshot_id"] for r in json.loads(out) if r["dataset"] == "a"] == \
        [m.snapshot_id for m in genuine]
    assert f"a/snapshots/{garbage}/manifest.json" in err and "Traceback" not in err
    plan = cli_json(capsys, "--policy", p, "plan", "--now", "2026-01-01T04:30:00Z")
    assert {d["dataset"]: d for d in plan}["a"]["latest_snapshot"] == genuine[-1].snapshot_id
    code, out, err = cli(capsys, "--policy", p, "--format", "json", "report",
                         "--now", "2026-01-01T04:30:00Z")
    a = {d["dataset"]: d for d in json.loads(out)["datasets"]}["a"]
    assert a["error"] is None and a["snapshot_count"] == 4 and len(a["problems"]) == 2
    code, out, err = cli(capsys, "--policy", p, "--format", "json", "prune")
    [report] = [r for r in json.loads(out) if r["dataset"] == "a"]
    assert code == 0, err
    assert report["removed"] == [genuine[0].snapshot_id]  # last: 3; the garbage is left alone
    assert store.stat(layout.manifest_key("a", garbage)) is not None
    assert any(garbage in problem for problem in report["problems"])
    result = tick(policy, datetime(2026, 1, 1, 4, 30, tzinfo=Z), datasets=["a"],
                  store_for=lambda _: store, source_for=lambda _: MarkerSource())
    assert result.ok and result.freshness[0]["latest_snapshot"] == genuine[-1].snapshot_id


def test_blob_collection_counts_refused_manifests_and_stops_at_an_unreadable_one(
        tmp_path: Path) -> None:
    import hashlib

    from cloudkeep import blobs

    policy = make_policy(tmp_path)
    store = MemoryStore()
    [m] = take(policy, store, "a", [1])
    body = b"an object's content"
    sha = hashlib.sha256(body).hexdigest()
    store.put(layout.blob_key("a", sha), body)
    later = datetime.now(Z) + timedelta(days=30)
    garbage = sid(2, "9a9a9a")
    store.put(layout.manifest_key("a", garbage), b"not json")
    gc = blobs.collect(store, "a", later)
    assert gc.skipped and "cannot be read" in gc.skipped and gc.removed == []
    assert store.stat(layout.blob_key("a", sha)) is not None
    store.delete([layout.manifest_key("a", garbage)])
    assert blobs.collect(store, "a", later).removed == [sha]  # unreferenced: collected
    assert m.snapshot_id in snapshot_ids(store, "a")


def test_a_downgraded_manifest_never_becomes_the_base_of_an_incremental_snapshot(
        tmp_path: Path) -> None:
    from test_encryption import IncrementalSource

    (tmp_path / "plain").mkdir()
    plain_policy = make_policy(tmp_path / "plain")
    policy = make_policy(tmp_path, keys=True, extra_top="encryption: {keys: [one]}")
    store, source = MemoryStore(), IncrementalSource(segments=2)
    [full] = take(policy, store, "a", [1], source)
    assert full.source["incremental"]["kind"] == "full"
    # a plain manifest planted as the newest snapshot
    elsewhere = MemoryStore()
    plain = backup(plain_policy, "a", store=elsewhere, source=MarkerSource(),
                   snapshot_id=sid(2)).manifest
    assert plain is not None
    for info in elsewhere.list("a/snapshots/"):
        store.put(info.key, elsewhere.get(info.key))
    [after] = take(policy, store, "a", [3], source)
    assert after.source["incremental"]["kind"] == "full"  # not continuing from the forgery
    source.add("round2-")  # new items: the next (incremental) snapshot holds only these
    [then] = take(policy, store, "a", [4], source)
    assert then.source["incremental"]["previous"] == after.snapshot_id
    source.restored = []
    restore(policy, store, then, "t", source=source, keyring=keyring_for(policy))
    assert len(source.restored) == 2 * 2 * source.per_segment
