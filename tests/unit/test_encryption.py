"""Envelope encryption and tamper evidence over our own protocols (memory store, scripted sources),
and the gcp_kms / azure_key_vault providers through their seams with scripted clients (there is
no emulator for Cloud KMS or Key Vault)."""

from __future__ import annotations

import io
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from cloudkeep import layout
from cloudkeep.catalog import load_manifest, snapshot_ids
from cloudkeep.codec import (
    DecryptingReader,
    DecryptionError,
    encrypt_part,
)
from cloudkeep.copies import copy_snapshot
from cloudkeep.engine import RunOptions, backup
from cloudkeep.errors import KeyUnavailableError, TamperedError, UsageError
from cloudkeep.keys import Keyring
from cloudkeep.keys.azure_key_vault import AzureKeyVaultProvider
from cloudkeep.keys.gcp_kms import GcpKmsProvider
from cloudkeep.keys.local import create_key_file, read_key_file
from cloudkeep.manifest import Manifest
from cloudkeep.policy import AzureKeyVaultKeySpec, GcpKmsKeySpec, Policy, parse_policy
from cloudkeep.restore import restore
from cloudkeep.sources.memory import (
    MemoryIncrementalSource,
    MemorySource,
    MemoryWorld,
    encode,
    segment_of,
)
from cloudkeep.stores.memory import MemoryStore
from cloudkeep.verify import verify_integrity

MARKER = "MARKER-plaintext-7f3a"


def policy_text(keys: str, encryption: str, extra: str = "") -> str:
    return f"""
version: 1
keys: {keys}
encryption: {encryption}
stores: {{mem: {{type: file, path: /unused}}, other: {{type: file, path: /unused2}}}}
tiers: {{t: {{schedule: "0 * * * *", rpo: 2h, retention: {{last: 3}}}}}}
datasets:
  a: {{source: {{type: dynamodb, table: aaa, region: us-east-1}}, tier: t, store: mem{extra}}}
"""


@pytest.fixture
def key_dir(tmp_path: Path) -> Path:
    create_key_file(tmp_path / "one.key")
    create_key_file(tmp_path / "two.key")
    return tmp_path


def local_policy(key_dir: Path, *, use: str = "one", extra: str = "") -> Policy:
    return parse_policy(policy_text("{one: {provider: local, path: one.key}, "
                                    "two: {provider: local, path: two.key}}",
                                    f"{{keys: [{use}]}}", extra), base_dir=key_dir)


class MarkerSource(MemorySource):
    """The in-memory source (cloudkeep.sources.memory) whose items carry a marker string (in
    their values: keys are cursors, recorded in checkpoints); restorable into a list
    (``restored``)."""

    def __init__(self, segments: int = 3, per_segment: int = 50) -> None:
        super().__init__(MemoryWorld(), "aaa", segments=segments, page_size=10)
        self.per_segment = per_segment
        self.restored: list[bytes] = []
        self.add("k")

    def add(self, prefix: str) -> None:
        """Put ``segments * per_segment`` more items carrying the marker, their keys starting
        with ``prefix``."""
        for i in range(self.segments * self.per_segment):
            self.put(f"{prefix}{i:05d}", {"v": i, "marker": f"{MARKER}-{prefix}{i}"})

    def lines(self, segment: int) -> list[bytes]:
        """The lines of ``segment`` as a full snapshot reads them now."""
        return [encode(k, v) for k, v in self.live().items()
                if segment_of(k, self.segments) == segment]

    def open_restore(self, target: str, recorded: dict[str, Any], *, overwrite: bool) -> Any:
        source = self

        class Writer:
            def __init__(self) -> None:
                self.target = target

            def write(self, lines: list[bytes]) -> int:
                source.restored.extend(lines)
                return len(lines)

        return Writer()


def take(policy: Policy, store: MemoryStore, source: MemorySource | None = None,
         part_size: int = 400, snapshot_id: str | None = None) -> Manifest:
    result = backup(policy, "a", store=store, source=source or MarkerSource(),
                    options=RunOptions(part_size=part_size), keyring=Keyring.from_policy(policy),
                    snapshot_id=snapshot_id)
    assert result.manifest is not None
    return result.manifest


# ---- the part format


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 48, 100])
def test_encrypted_part_round_trips_at_chunk_edges(size: int) -> None:
    key, body = os.urandom(32), os.urandom(size)
    stored = encrypt_part(key, "sid", "p", body, chunk_size=16)
    reader = DecryptingReader(io.BytesIO(stored), key, "sid", "p", chunk_size=16)
    out = b"".join(iter(lambda: reader.read(7), b""))
    assert out == body


def test_encrypted_part_detects_truncation_reordering_and_another_name() -> None:
    key, body = os.urandom(32), os.urandom(64)
    stored = encrypt_part(key, "sid", "p", body, chunk_size=16)
    header, chunks = stored[:11], [stored[11 + i * 32: 11 + (i + 1) * 32] for i in range(4)]

    def read(data: bytes, *, name: str = "p", sid: str = "sid") -> bytes:
        return DecryptingReader(io.BytesIO(data), key, sid, name, chunk_size=16).read()

    assert read(stored) == body
    for bad in (stored[:-32],                                        # last chunk dropped
                header + chunks[1] + chunks[0] + chunks[2] + chunks[3],  # chunks reordered
                stored + b"x"):                                      # bytes appended
        with pytest.raises(DecryptionError):
            read(bad)
    with pytest.raises(DecryptionError):
        read(stored, name="q")   # the same bytes under another part name
    with pytest.raises(DecryptionError):
        read(stored, sid="other")  # ... or in another snapshot
    with pytest.raises(DecryptionError):
        read(b"not encrypted at all")


# ---- snapshots


def test_encrypted_snapshot_holds_no_plaintext_and_restores(key_dir: Path) -> None:
    policy, store, source = local_policy(key_dir), MemoryStore(), MarkerSource()
    manifest = take(policy, store, source)
    assert manifest.codec.encryption is not None and manifest.authentication is not None
    assert all(p.name.endswith(".ndjson.zst.enc") for p in manifest.parts) and len(manifest.parts) > 3
    for info in store.list(""):
        assert MARKER.encode() not in store.get(info.key), info.key
    keyring = Keyring.from_policy(policy)
    assert verify_integrity(store, manifest, keyring=keyring).ok
    restore(policy, store, manifest, "target", source=source, keyring=keyring)
    expected = sorted(line for s in range(source.segments) for line in source.lines(s))
    assert sorted(source.restored) == expected


def test_dataset_or_tier_may_opt_out_and_override_keys(key_dir: Path) -> None:
    off = local_policy(key_dir, extra=", encryption: false")
    assert off.encryption_keys("a") == []
    assert take(off, MemoryStore()).codec.encryption is None
    other = local_policy(key_dir, extra=", encryption: {keys: [two, one]}")
    manifest = take(other, MemoryStore())
    assert manifest.codec.encryption is not None
    assert [k.key for k in manifest.codec.encryption.keys] == ["two", "one"]


def test_verify_names_swapped_parts_edited_manifest_and_flipped_byte(key_dir: Path) -> None:
    policy = local_policy(key_dir)
    keyring = Keyring.from_policy(policy)

    def problems(store: MemoryStore, sid: str) -> set[tuple[str | None, str]]:
        data = store.get(layout.manifest_key("a", sid))
        manifest = Manifest.from_bytes(data, where="test")
        report = verify_integrity(store, manifest, keyring=Keyring.from_policy(policy))
        assert not report.ok
        return {(p.part, p.check) for p in report.problems}

    # swapped parts: both fail their sha256 and their decryption (bound to their names)
    store = MemoryStore()
    m = take(policy, store)
    k0, k1 = (layout.part_key("a", m.snapshot_id, p.name) for p in m.parts[:2])
    b0, b1 = store.get(k0), store.get(k1)
    store.delete([k0, k1])
    store.put(k0, b1)
    store.put(k1, b0)
    found = problems(store, m.snapshot_id)
    assert (m.parts[0].name, "decrypt") in found and (m.parts[1].name, "decrypt") in found
    assert (m.parts[0].name, "sha256") in found

    # swapped parts with the manifest's sha256 and sizes swapped to match: the tag catches that
    store = MemoryStore()
    m = take(policy, store)
    k0, k1 = (layout.part_key("a", m.snapshot_id, p.name) for p in m.parts[:2])
    b0, b1 = store.get(k0), store.get(k1)
    store.delete([k0, k1])
    store.put(k0, b1)
    store.put(k1, b0)
    doc = json.loads(store.get(layout.manifest_key("a", m.snapshot_id)))
    p0, p1 = doc["parts"][0], doc["parts"][1]
    for field in ("sha256", "stored_bytes", "items", "raw_bytes"):
        p0[field], p1[field] = p1[field], p0[field]
    _rewrite(store, m.snapshot_id, doc)
    found = problems(store, m.snapshot_id)
    assert (None, "manifest authentication") in found
    assert (m.parts[0].name, "decrypt") in found  # and the parts still refuse their new names

    # an edited manifest field
    store = MemoryStore()
    m = take(policy, store)
    doc = json.loads(store.get(layout.manifest_key("a", m.snapshot_id)))
    doc["trigger"] = "schedule"
    _rewrite(store, m.snapshot_id, doc)
    assert problems(store, m.snapshot_id) == {(None, "manifest authentication")}
    with pytest.raises(TamperedError, match="failed authentication"):
        load_manifest(store, "a", m.snapshot_id, keyring=keyring)

    # a stripped tag
    doc["trigger"], doc["authentication"] = "manual", None
    _rewrite(store, m.snapshot_id, doc)
    with pytest.raises(TamperedError, match="tag is missing"):
        load_manifest(store, "a", m.snapshot_id, keyring=keyring)

    # one flipped byte in a part
    store = MemoryStore()
    m = take(policy, store)
    key = layout.part_key("a", m.snapshot_id, m.parts[1].name)
    body = bytearray(store.get(key))
    body[len(body) // 2] ^= 0x01
    store.delete([key])
    store.put(key, bytes(body))
    found = problems(store, m.snapshot_id)
    assert {(m.parts[1].name, "decrypt"), (m.parts[1].name, "sha256")} <= found


def _rewrite(store: MemoryStore, sid: str, doc: dict[str, Any]) -> None:
    key = layout.manifest_key("a", sid)
    store.delete([key])
    store.put(key, json.dumps(doc).encode())


def test_restore_refuses_a_tampered_manifest_before_writing(key_dir: Path) -> None:
    policy, store, source = local_policy(key_dir), MemoryStore(), MarkerSource()
    m = take(policy, store, source)
    doc = json.loads(store.get(layout.manifest_key("a", m.snapshot_id)))
    doc["content_digest"]["ignores"] = ["v"]
    _rewrite(store, m.snapshot_id, doc)
    edited = Manifest.from_bytes(store.get(layout.manifest_key("a", m.snapshot_id)), where="t")
    with pytest.raises(TamperedError):
        restore(policy, store, edited, "target", source=source, keyring=Keyring.from_policy(policy))
    assert source.restored == []


def test_rotation_new_snapshots_use_the_new_key_old_ones_still_restore(key_dir: Path) -> None:
    store, source = MemoryStore(), MarkerSource()
    old = take(local_policy(key_dir, use="one"), store, source)
    rotated = local_policy(key_dir, use="two")  # key one stays defined under keys:
    new = take(rotated, store, source)
    assert old.codec.encryption is not None and new.codec.encryption is not None
    assert [k.key for k in old.codec.encryption.keys] == ["one"]
    assert [k.key for k in new.codec.encryption.keys] == ["two"]
    keyring = Keyring.from_policy(rotated)
    for manifest in (old, new):
        assert verify_integrity(store, manifest, keyring=keyring).ok
        source.restored = []
        restore(rotated, store, manifest, "t", source=source, keyring=keyring)
        assert len(source.restored) == manifest.totals.items
    # once key one is gone from the policy, its snapshots say so (and nothing else breaks)
    only_two = parse_policy(policy_text("{two: {provider: local, path: two.key}}", "{keys: [two]}"),
                            base_dir=key_dir)
    with pytest.raises(KeyUnavailableError, match="defines none of these keys"):
        verify_integrity(store, old, keyring=Keyring.from_policy(only_two))
    assert verify_integrity(store, new, keyring=Keyring.from_policy(only_two)).ok


def test_a_snapshot_wrapped_by_two_keys_restores_with_either(key_dir: Path) -> None:
    store = MemoryStore()
    m = take(local_policy(key_dir, use="one, two"), store)
    for name in ("one", "two"):
        alone = parse_policy(policy_text(f"{{{name}: {{provider: local, path: {name}.key}}}}",
                                         f"{{keys: [{name}]}}"), base_dir=key_dir)
        assert verify_integrity(store, m, keyring=Keyring.from_policy(alone)).ok


def test_wrong_or_missing_key_is_key_unavailable(key_dir: Path, tmp_path: Path) -> None:
    store = MemoryStore()
    m = take(local_policy(key_dir), store)
    create_key_file(tmp_path / "stranger.key")
    # the policy's key "one" now points at another file: a wrong key
    wrong = parse_policy(policy_text("{one: {provider: local, path: stranger.key}}", "{keys: [one]}"),
                         base_dir=tmp_path)
    with pytest.raises(KeyUnavailableError) as exc:
        load_manifest(store, "a", m.snapshot_id, keyring=Keyring.from_policy(wrong))
    assert exc.value.exit_code == 3
    missing = parse_policy(policy_text("{one: {provider: local, path: gone.key}}", "{keys: [one]}"),
                           base_dir=tmp_path)
    with pytest.raises(KeyUnavailableError, match="gone.key not found"):
        load_manifest(store, "a", m.snapshot_id, keyring=Keyring.from_policy(missing))
    with pytest.raises(KeyUnavailableError, match="gone.key not found"):
        take(missing, MemoryStore())  # a backup fails before reading anything


def test_key_files_are_private_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    key_id = create_key_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and key_id.startswith("local-")
    assert len(read_key_file(path)) == 32
    with pytest.raises(UsageError, match="never overwrites"):
        create_key_file(path)
    path.chmod(0o640)
    with pytest.raises(KeyUnavailableError, match="chmod 600"):
        read_key_file(path)
    path.chmod(0o604)
    with pytest.raises(KeyUnavailableError, match="group or others"):
        read_key_file(path)
    bad = tmp_path / "bad.key"
    bad.write_text("hello")
    bad.chmod(0o600)
    with pytest.raises(KeyUnavailableError, match="not a cloudkeep key file"):
        read_key_file(bad)


def test_copies_carry_encrypted_bytes_as_they_are(key_dir: Path) -> None:
    policy, primary, copy = local_policy(key_dir), MemoryStore(), MemoryStore()
    m = take(policy, primary)
    copy_snapshot(policy, primary, m, "other", target=copy)
    for part in m.parts:
        key = layout.part_key("a", m.snapshot_id, part.name)
        assert copy.get(key) == primary.get(key)
    again = load_manifest(copy, "a", m.snapshot_id, keyring=Keyring.from_policy(policy))
    assert verify_integrity(copy, again, keyring=Keyring.from_policy(policy)).ok


class IncrementalSource(MarkerSource, MemoryIncrementalSource):
    """The marker source taking incremental snapshots: after the first, each holds only the
    items added since the previous one (a chain)."""


def test_incremental_chain_restores_with_encryption(key_dir: Path) -> None:
    policy, store, source = local_policy(key_dir), MemoryStore(), IncrementalSource(segments=2)
    manifests = []
    for n in range(3):
        if n:
            source.add(f"round{n}-")  # new items: the next snapshot holds only these
        manifests.append(take(policy, store, source, snapshot_id=f"2026010{n + 1}T000000Z-abcd"))
    assert manifests[2].source["incremental"]["previous"] == manifests[1].snapshot_id
    source.restored = []
    result = restore(policy, store, manifests[2], "t", source=source, keyring=Keyring.from_policy(policy))
    assert result.chain == [m.snapshot_id for m in manifests]
    assert len(source.restored) == 3 * 2 * source.per_segment
    # an edited link of the chain stops the restore before anything is written
    doc = json.loads(store.get(layout.manifest_key("a", manifests[1].snapshot_id)))
    doc["run_id"] = "0" * 16
    _rewrite(store, manifests[1].snapshot_id, doc)
    source.restored = []
    with pytest.raises(TamperedError):
        restore(policy, store, manifests[2], "t", source=source, keyring=Keyring.from_policy(policy))
    assert source.restored == []
    assert snapshot_ids(store, "a") == sorted(m.snapshot_id for m in manifests)


# ---- policy


def test_policy_reports_encryption_and_residency_problems_with_field_paths() -> None:
    from cloudkeep.errors import PolicyError

    text = """
version: 1
keys:
  main: {provider: aws_kms, key_id: alias/cloudkeep, region: eu-west-1}
  odd: {provider: hsm}
encryption: {keys: [main, ghost]}
residency: {allowed_regions: [eu-west-1, europe-west1]}
stores:
  vault: {type: s3, bucket: acme-backups, region: us-east-1}
  gcs: {type: gcs, bucket: acme-gcs}
  disk: {type: file, path: ./b}
tiers: {t: {schedule: "0 * * * *", rpo: 2h, retention: {last: 3}, encryption: {keys: []}}}
datasets:
  a: {source: {type: dynamodb, table: aaa, region: us-west-2}, tier: t, store: disk, encryption: true}
  b: {source: {type: firestore, project: p, region: europe-west1}, tier: t, store: disk}
"""
    with pytest.raises(PolicyError) as exc:
        parse_policy(text, source="p.yaml")
    problems = "\n".join(exc.value.problems)
    assert "keys.odd: unknown key provider 'hsm'" in problems
    assert "encryption.keys.1: unknown key 'ghost'" in problems
    assert "stores.vault.region: store region 'us-east-1' is outside residency.allowed_regions" in problems
    assert "stores.gcs.region: residency is set but this store declares no region" in problems
    assert "datasets.a.source.region: source region 'us-west-2' is outside" in problems
    assert "datasets.a.encryption: encryption: true needs its keys" in problems
    assert "tiers.t.encryption.keys:" in problems
    assert "datasets.b" not in problems and "stores.disk" not in problems


def test_policy_key_shapes() -> None:
    policy = parse_policy(policy_text(
        '{main: {provider: aws_kms, key_id: "alias/cloudkeep", region: eu-west-1}, '
        'gcp: {provider: gcp_kms, key_name: "projects/p/locations/l/keyRings/r/cryptoKeys/k"}, '
        'az: {provider: azure_key_vault, key_url: "https://v.vault.azure.net/keys/k"}, '
        'offline: {provider: local, path: ./cloudkeep.key}}', "{keys: [main, offline]}"),
        base_dir=Path("/srv/policy"))
    assert policy.encryption_keys("a") == ["main", "offline"]
    assert policy.keys["offline"].path == "/srv/policy/cloudkeep.key"  # type: ignore[union-attr]


# ---- gcp_kms and azure_key_vault through their seams (no emulators exist for them)


class ScriptedGcpKms:
    """Plays Cloud KMS encrypt/decrypt: a per-key secret, AAD checked, like the service."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.fail: Exception | None = None

    def encrypt(self, request: dict[str, Any]) -> Any:
        self.calls.append(("encrypt", request["name"]))
        blob = json.dumps({"k": request["name"], "p": request["plaintext"].hex(),
                           "a": request["additional_authenticated_data"].hex()}).encode()[::-1]
        return type("R", (), {"ciphertext": blob, "name": request["name"] + "/cryptoKeyVersions/1"})

    def decrypt(self, request: dict[str, Any]) -> Any:
        self.calls.append(("decrypt", request["name"]))
        if self.fail:
            raise self.fail
        doc = json.loads(request["ciphertext"][::-1])
        if doc["k"] != request["name"] or doc["a"] != request["additional_authenticated_data"].hex():
            from google.api_core.exceptions import InvalidArgument

            raise InvalidArgument("Decryption failed: the ciphertext is invalid.")
        return type("R", (), {"plaintext": bytes.fromhex(doc["p"])})


def test_gcp_kms_wraps_and_unwraps_with_scripted_kms_client(key_dir: Path) -> None:
    client = ScriptedGcpKms()
    name = "projects/p/locations/europe-west1/keyRings/r/cryptoKeys/k"
    provider = GcpKmsProvider("gcp", GcpKmsKeySpec(provider="gcp_kms", key_name=name), client=client)
    keyring = Keyring({"gcp": provider, **Keyring.from_policy(local_policy(key_dir)).providers})
    policy = parse_policy(policy_text(
        f'{{gcp: {{provider: gcp_kms, key_name: "{name}"}}, one: {{provider: local, path: one.key}}}}',
        "{keys: [gcp, one]}"), base_dir=key_dir)
    store = MemoryStore()
    result = backup(policy, "a", store=store, source=MarkerSource(), keyring=keyring)
    assert result.manifest is not None
    wrapped = result.manifest.codec.encryption.keys[0]  # type: ignore[union-attr]
    assert (wrapped.provider, wrapped.key_id, wrapped.algorithm) == ("gcp_kms", name, "GOOGLE_SYMMETRIC_ENCRYPTION")
    fresh = Keyring({"gcp": GcpKmsProvider("gcp", provider_spec_gcp(name), client=client)})
    assert verify_integrity(store, result.manifest, keyring=fresh).ok
    assert ("decrypt", name) in client.calls
    # the service refusing: a clear KeyUnavailableError (exit 3) naming the key
    from google.api_core.exceptions import PermissionDenied

    client.fail = PermissionDenied("Permission 'cloudkms.cryptoKeyVersions.useToDecrypt' denied")
    denied = Keyring({"gcp": GcpKmsProvider("gcp", provider_spec_gcp(name), client=client)})
    with pytest.raises(KeyUnavailableError, match="gcp_kms .*decrypt failed: PermissionDenied"):
        denied.data_key(result.manifest)


def provider_spec_gcp(name: str) -> GcpKmsKeySpec:
    return GcpKmsKeySpec(provider="gcp_kms", key_name=name)


class ScriptedKeyVault:
    """Plays a Key Vault key's wrapKey / unwrapKey for one key version."""

    def __init__(self, key_id: str, versions: dict[str, bytes]) -> None:
        self.key_id, self.versions = key_id, versions

    def wrap_key(self, algorithm: Any, key: bytes) -> Any:
        version = self.key_id if "/keys/k/" in self.key_id else self.key_id + "/v2"
        secret = self.versions[version]
        blob = bytes(a ^ b for a, b in zip(key, secret * 2, strict=False))
        return type("W", (), {"key_id": version, "encrypted_key": blob, "algorithm": algorithm})

    def unwrap_key(self, algorithm: Any, encrypted_key: bytes) -> Any:
        from azure.core.exceptions import HttpResponseError

        if str(algorithm) not in ("RSA-OAEP-256", "KeyWrapAlgorithm.rsa_oaep_256"):
            raise HttpResponseError(message="unsupported algorithm")
        secret = self.versions.get(self.key_id)
        if secret is None:
            raise HttpResponseError(message=f"(KeyNotFound) A key with (name/id) {self.key_id} was not found")
        return type("U", (), {"key": bytes(a ^ b for a, b in zip(encrypted_key, secret * 2, strict=False))})


def test_azure_key_vault_unwraps_with_the_recorded_version_with_scripted_vault_client() -> None:
    url = "https://v.vault.azure.net/keys/k"
    versions = {url + "/v1": os.urandom(16), url + "/v2": os.urandom(16)}
    opened: list[str] = []

    def factory(key_id: str) -> ScriptedKeyVault:
        opened.append(key_id)
        return ScriptedKeyVault(key_id, versions)

    spec = AzureKeyVaultKeySpec(provider="azure_key_vault", key_url=url)
    keyring = Keyring({"az": AzureKeyVaultProvider("az", spec, client_factory=factory)})
    data_key, record = keyring.seal(["az"], "a", "20260101T000000Z-abcd")
    assert record["keys"][0]["key_version"] == url + "/v2"
    policy = parse_policy(policy_text(f'{{az: {{provider: azure_key_vault, key_url: "{url}"}}}}',
                                      "{keys: [az]}"))
    store = MemoryStore()
    result = backup(policy, "a", store=store, source=MarkerSource(), keyring=keyring)
    assert result.manifest is not None
    fresh = Keyring({"az": AzureKeyVaultProvider("az", spec, client_factory=factory)})
    assert verify_integrity(store, result.manifest, keyring=fresh).ok
    assert opened[-1] == url + "/v2"  # unwrap asked the version that wrapped
    del versions[url + "/v2"]  # that version deleted from the vault
    gone = Keyring({"az": AzureKeyVaultProvider("az", spec, client_factory=factory)})
    with pytest.raises(KeyUnavailableError, match="unwrap_key failed: HttpResponseError"):
        gone.data_key(result.manifest)
    assert len(data_key) == 32


def test_key_providers_load_no_cloud_sdk_at_import() -> None:
    from test_imports import probe

    result = probe("cloudkeep.keys", "cloudkeep.keys.local", "cloudkeep.keys.aws_kms",
                   "cloudkeep.keys.gcp_kms", "cloudkeep.keys.azure_key_vault")
    top = set(result["top"])  # type: ignore[arg-type]
    for sdk in ("boto3", "botocore", "google.cloud.kms", "google.api_core", "azure.keyvault",
                "azure.identity", "azure.core", "cryptography"):
        assert sdk not in top, f"{sdk} imported at import time"


def test_keyring_for_is_one_per_policy_and_bounded(key_dir: Path) -> None:
    from cloudkeep.keys import _KEYRINGS, _KEYRINGS_KEPT, keyring_for

    first = local_policy(key_dir)
    assert keyring_for(first) is keyring_for(first)
    others = [local_policy(key_dir) for _ in range(_KEYRINGS_KEPT + 3)]
    for policy in others:
        keyring_for(policy)
    assert len(_KEYRINGS) == _KEYRINGS_KEPT
    assert keyring_for(others[-1]) is keyring_for(others[-1])
