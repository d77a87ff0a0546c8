"""Key providers and the keyring: the envelope around every encrypted snapshot.

A snapshot with encryption has a fresh 256-bit *data key*. Its parts are encrypted with it
(``codec.encrypt_part``), its manifest is authenticated with a key derived from it
(``codec.manifest_tag``), and the data key itself is stored only *wrapped* — once by every key
provider the policy lists for the dataset — in the manifest's ``codec.encryption.keys``.

Providers (policy ``keys:``, each ``{provider: ..., ...}``):

- ``aws_kms``: GenerateDataKey / Encrypt / Decrypt with the snapshot as encryption context;
- ``gcp_kms``: Cloud KMS encrypt / decrypt with the snapshot as additional authenticated data;
- ``azure_key_vault``: Key Vault wrapKey / unwrapKey (RSA-OAEP-256);
- ``local``: a key file (``cloudkeep keys create --path FILE``), refused if others can read it.

A snapshot *without* encryption is signed when the policy gives it signing keys (``signing``,
by default the encryption keys): a fresh 256-bit *signing key* per snapshot keys its manifest's
tag, and is stored wrapped by each signing key in ``authentication.keys`` (the wrap bound to the
purpose ``manifest-signing``; the tag covers the dataset, id and store). An *endorsement* is the same tag kept
beside a manifest written unsigned (by an earlier release), made by ``cloudkeep keys endorse``, so
a policy that requires signatures still reads it (purpose ``manifest-endorsement``).

Reading a snapshot only ever uses the keys the policy defines (a manifest cannot name a key of
its own choosing): a wrapped key is matched to a policy key by provider and key id. So rotation
is: define the new key, list it in ``encryption.keys``, and keep the old key under ``keys:`` for
as long as snapshots wrapped with it are kept.

A snapshot still being written keeps a second wrap of its data key in its run state
(``resume_keys``), made under a purpose-bound context (``cloudkeep:purpose`` = ``resume``):
the invocation that resumes it, or a fan-out worker, unwraps that one. With ``aws_kms`` the key
policy can then let the backup identity decrypt *only* under that context, so it can finish what
it started but never unwrap a committed snapshot's key from its manifest (which only the
restore/drill identity may do; docs/threat-model.md). ``gcp_kms`` binds the same context as
additional authenticated data; Azure Key Vault wrapKey takes no context (no purpose binding).

Each provider's SDK is imported on first use only (registry habit: one cloud SDK per process).
"""

from __future__ import annotations

import base64
import hmac
import logging
import secrets
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import ValidationError

from ..codec import ENC_CHUNK, ENCRYPTION_ALGORITHM, MANIFEST_MAC_ALGORITHM, MANIFEST_MAC_KDF, manifest_tag
from ..errors import KeyUnavailableError, TamperedError
from ..manifest import Authentication, WrappedKey

if TYPE_CHECKING:
    from ..manifest import Manifest

log = logging.getLogger(__name__)

DATA_KEY_BYTES = 32


class KeyProvider(Protocol):
    """Wraps and unwraps data keys. ``context`` (dataset, snapshot id) is bound to every wrap
    where the provider allows it; errors are :class:`KeyUnavailableError` naming the key."""

    name: str
    provider: str

    def key_id(self) -> str:
        """What identifies the key in a manifest (never secret)."""
        ...

    def generate(self, context: Mapping[str, str]) -> tuple[bytes, dict[str, Any]] | None:
        """A new data key and its wrapped record, if the provider makes keys (else None)."""
        ...

    def wrap(self, data_key: bytes, context: Mapping[str, str]) -> dict[str, Any]:
        """The wrapped record of ``data_key``: at least ``wrapped_key`` (base64)."""
        ...

    def unwrap(self, record: Mapping[str, Any], context: Mapping[str, str]) -> bytes:
        ...


class OpensKey(Protocol):
    """A policy key spec (``cloudkeep.specs.KeyModel``): it builds its provider."""

    def open(self, name: str) -> KeyProvider: ...


def open_provider(name: str, spec: OpensKey) -> KeyProvider:
    """Build the provider a policy key spec describes (its SDK loads on first use)."""
    return spec.open(name)


class KeyPolicy(Protocol):
    """What a keyring needs of a policy: its named key specs."""

    @property
    def keys(self) -> Mapping[str, OpensKey]: ...


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: Any, *, what: str) -> bytes:
    try:
        return base64.b64decode(str(text), validate=True)
    except ValueError:
        raise KeyUnavailableError(f"{what}: the wrapped key is not valid base64 (damaged manifest)") from None


def _context(dataset: str, snapshot_id: str, purpose: str | None = None) -> dict[str, str]:
    """What a wrapped key is bound to. A data key: its snapshot. A signing or endorsement key:
    its purpose only — the tag it keys already covers the dataset, id and store, so a manifest
    replayed under an edited name fails as *tampered* (its tag), not as an unwrap failure that
    looks like an unreachable key; and a key policy can let a role unwrap signing keys (to tell
    forgeries) but not data keys (AWS: a ``kms:EncryptionContext:cloudkeep:purpose`` condition)."""
    if purpose is not None:
        return {"cloudkeep:purpose": purpose}
    return {"cloudkeep:dataset": dataset, "cloudkeep:snapshot": snapshot_id}


SIGNING = "manifest-signing"
ENDORSEMENT = "manifest-endorsement"
SIGNING_KDF = "HKDF-SHA256(signing key, info=cloudkeep manifest authentication v1)"


RESUME_PURPOSE = "resume"
RESUME_KEYS = "resume_keys"  # the run state's extra wraps (never written into a manifest)


def resume_context(dataset: str, snapshot_id: str) -> dict[str, str]:
    """The purpose-bound context of a run state's wrap (``aws_kms``: the key policy's
    ``kms:EncryptionContext:cloudkeep:purpose`` condition names it)."""
    return _context(dataset, snapshot_id) | {"cloudkeep:purpose": RESUME_PURPOSE}


class Keyring:
    """The key providers a policy defines, and the data keys unwrapped so far (per process)."""

    def __init__(self, providers: Mapping[str, KeyProvider]) -> None:
        self.providers = dict(providers)
        self._cache: dict[tuple[str, str, str], bytes] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_policy(cls, policy: KeyPolicy) -> Keyring:
        return cls({name: open_provider(name, spec) for name, spec in policy.keys.items()})

    # ---- writing

    def seal(self, names: Sequence[str], dataset: str, snapshot_id: str) -> tuple[bytes, dict[str, Any]]:
        """A fresh data key for a snapshot, wrapped by every provider in ``names`` (all must
        succeed: a snapshot is restorable from each key it claims). Returns the key and the
        manifest's ``codec.encryption`` record."""
        data_key, records = self._make_key(names, _context(dataset, snapshot_id))
        with self._lock:
            self._cache[(dataset, snapshot_id, _fingerprint(records))] = data_key
        return data_key, {"algorithm": ENCRYPTION_ALGORITHM, "chunk_size": ENC_CHUNK,
                          "associated_data": "snapshot id and part name", "keys": records}

    def _make_key(self, names: Sequence[str], context: Mapping[str, str]
                  ) -> tuple[bytes, list[dict[str, Any]]]:
        """A fresh 256-bit key wrapped by every provider in ``names`` (all must succeed)."""
        records: list[dict[str, Any]] = []
        data_key: bytes | None = None
        for name in names:
            provider = self._provider(name)
            record: dict[str, Any] | None = None
            if data_key is None:
                made = provider.generate(context)
                if made is not None:
                    data_key, record = made
            if data_key is None:
                data_key = secrets.token_bytes(DATA_KEY_BYTES)
            if record is None:
                record = provider.wrap(data_key, context)
            if len(data_key) != DATA_KEY_BYTES:
                raise KeyUnavailableError(f"key {name!r} made a data key of {len(data_key)} bytes, not 32")
            records.append({"key": name, "provider": provider.provider, "key_id": provider.key_id()}
                           | record)
        if data_key is None:
            raise KeyUnavailableError("encryption needs at least one key")
        return data_key, records

    def wrap_for_resume(self, names: Sequence[str], dataset: str, snapshot_id: str,
                        data_key: bytes) -> list[dict[str, Any]]:
        """The run state's wrap of ``data_key``, by the first key in ``names``, under
        :func:`resume_context` (so it unwraps only as a resume, never as a manifest's key)."""
        provider = self._provider(names[0])
        record = provider.wrap(data_key, resume_context(dataset, snapshot_id))
        return [{"key": names[0], "provider": provider.provider, "key_id": provider.key_id()} | record]

    def sign(self, manifest: Manifest, data_key: bytes) -> Manifest:
        """The manifest with its authentication tag."""
        tag = manifest_tag(data_key, authenticated_content(manifest))
        return manifest.model_copy(update={"authentication": Authentication(
            algorithm=MANIFEST_MAC_ALGORITHM, key_derivation=MANIFEST_MAC_KDF, tag=tag)})

    def sign_with(self, manifest: Manifest, names: Sequence[str]) -> Manifest:
        """The manifest with its authentication tag, keyed by a fresh signing key wrapped by every
        key in ``names`` (all must succeed) — checkable without the snapshot's data key."""
        signing_key, records = self._make_key(
            names, _context(manifest.dataset, manifest.snapshot_id, SIGNING))
        tag = manifest_tag(signing_key, authenticated_content(manifest))
        return manifest.model_copy(update={"authentication": Authentication(
            algorithm=MANIFEST_MAC_ALGORITHM, key_derivation=SIGNING_KDF, tag=tag,
            keys=[WrappedKey.model_validate(r) for r in records])})

    def endorse(self, manifest: Manifest, names: Sequence[str]) -> dict[str, Any]:
        """The ``authentication`` record of an endorsement: a tag over ``manifest`` (written
        unsigned) keyed by a fresh key wrapped by every key in ``names``."""
        key, records = self._make_key(
            names, _context(manifest.dataset, manifest.snapshot_id, ENDORSEMENT))
        return {"algorithm": MANIFEST_MAC_ALGORITHM, "key_derivation": SIGNING_KDF,
                "tag": manifest_tag(key, authenticated_content(manifest)), "keys": records}

    # ---- reading

    def data_key(self, manifest: Manifest) -> bytes | None:
        """The snapshot's data key (None if it is not encrypted), unwrapped with the first
        policy key that can. Raises KeyUnavailableError naming every key tried."""
        encryption = manifest.codec.encryption
        if encryption is None:
            return None
        records = [r.model_dump(exclude_none=True) for r in encryption.keys]
        return self._unwrap(manifest.dataset, manifest.snapshot_id, records)

    def unseal(self, dataset: str, snapshot_id: str, encryption: Mapping[str, Any]) -> bytes:
        """The data key of a snapshot still being written, from the ``codec.encryption`` record
        :meth:`seal` returned (kept in its run state, so a resumed run or a worker uses it):
        its purpose-bound ``resume_keys`` first, then the manifest's own wraps (a run state
        written before there were resume wraps, or a key that cannot unwrap them)."""
        records = [dict(r) for r in encryption.get("keys", [])]
        resume = [dict(r) for r in encryption.get(RESUME_KEYS, [])]
        if resume:
            try:
                return self._unwrap(dataset, snapshot_id, resume,
                                    context=resume_context(dataset, snapshot_id))
            except KeyUnavailableError as exc:
                log.warning("%s@%s: the run state's resume wrap cannot be unwrapped (%s); "
                            "trying the snapshot's own wraps", dataset, snapshot_id, exc)
        return self._unwrap(dataset, snapshot_id, records)

    def _unwrap(self, dataset: str, snapshot_id: str, records: list[dict[str, Any]],
                purpose: str | None = None, context: dict[str, str] | None = None) -> bytes:
        bound = purpose or (context or {}).get("cloudkeep:purpose")
        cache_key = (dataset, snapshot_id, f"{bound}:{_fingerprint(records)}" if bound
                     else _fingerprint(records))
        with self._lock:
            if cache_key in self._cache:
                return self._cache[cache_key]
        ref = f"{dataset}@{snapshot_id}"
        context = context or _context(dataset, snapshot_id, purpose)
        failures: list[str] = []
        for record in records:
            provider = self._match(record, failures)
            if provider is None:
                continue
            try:
                data_key = provider.unwrap(record, context)
            except KeyUnavailableError as exc:
                failures.append(str(exc))
                continue
            if len(data_key) != DATA_KEY_BYTES:
                failures.append(f"key {provider.name!r} unwrapped a key of the wrong size")
                continue
            with self._lock:
                self._cache[cache_key] = data_key
            return data_key
        wrapped_with = ", ".join(f"{r.get('key')} ({r.get('provider')} {r.get('key_id')})" for r in records)
        if failures:
            raise KeyUnavailableError(f"cannot unwrap the data key of {ref}: " + "; ".join(failures))
        defined = ", ".join(f"{p.name} ({p.provider} {p.key_id()})" for p in self.providers.values()) or "none"
        raise KeyUnavailableError(
            f"snapshot {ref} is encrypted with {wrapped_with}, and the policy defines none of these "
            f"keys (policy keys: {defined}); add the key under keys: to read it"
        )

    def verify_tag(self, manifest: Manifest) -> None:
        """Check the manifest's tag without unwrapping its data key when it has a signing key
        (so a role that may not decrypt snapshots can still tell a forged manifest). An unsigned,
        unencrypted manifest passes (whether that is allowed is the policy's: cloudkeep.trust).
        Raises TamperedError if the manifest was edited, KeyUnavailableError without a key."""
        ref = f"{manifest.dataset}@{manifest.snapshot_id}"
        auth = manifest.authentication
        encrypted = manifest.codec.encryption is not None
        if auth is None:
            if encrypted:
                raise TamperedError(f"manifest of {ref} is encrypted but its authentication tag is "
                                    "missing (edited after commit)")
            return
        failure = ("failed authentication: its content does not match its tag (edited after "
                   "commit, or replayed under another name)")
        if auth.keys:
            self._check_tag(manifest, [k.model_dump(exclude_none=True) for k in auth.keys],
                            auth.tag, SIGNING, failure)
            return
        if not encrypted:
            raise TamperedError(f"manifest of {ref} carries a tag but neither an encryption "
                                "record nor a signing key (edited after commit)")
        data_key = self.data_key(manifest)
        assert data_key is not None
        if not hmac.compare_digest(manifest_tag(data_key, authenticated_content(manifest)), auth.tag):
            raise TamperedError(f"manifest of {ref} {failure}")

    def authenticate(self, manifest: Manifest) -> bytes | None:
        """Check the manifest's tag (:meth:`verify_tag`); returns the data key (None for an
        unencrypted snapshot)."""
        self.verify_tag(manifest)
        return self.data_key(manifest)

    def check_endorsement(self, manifest: Manifest, record: Mapping[str, Any]) -> None:
        """Check an endorsement's ``authentication`` record against ``manifest``. Raises
        TamperedError if it does not match, KeyUnavailableError without a key."""
        ref = f"{manifest.dataset}@{manifest.snapshot_id}"
        try:
            auth = Authentication.model_validate(record)
        except ValidationError:
            raise TamperedError(f"the endorsement of {ref} is damaged") from None
        if not auth.keys:
            raise TamperedError(f"the endorsement of {ref} names no key")
        self._check_tag(manifest, [k.model_dump(exclude_none=True) for k in auth.keys], auth.tag,
                        ENDORSEMENT, "does not match its endorsement (edited after it was endorsed, "
                        "or the endorsement belongs to another snapshot)")

    def _check_tag(self, manifest: Manifest, records: list[dict[str, Any]], tag: str,
                   purpose: str, failure: str) -> None:
        key = self._unwrap(manifest.dataset, manifest.snapshot_id, records, purpose)
        expected = manifest_tag(key, authenticated_content(manifest))
        if not hmac.compare_digest(expected, tag):
            raise TamperedError(f"manifest of {manifest.dataset}@{manifest.snapshot_id} {failure}")

    # ---- helpers

    def _provider(self, name: str) -> KeyProvider:
        try:
            return self.providers[name]
        except KeyError:
            raise KeyUnavailableError(f"unknown key {name!r} (policy keys: "
                                      f"{', '.join(sorted(self.providers)) or 'none'})") from None

    def _match(self, record: Mapping[str, Any], failures: list[str]) -> KeyProvider | None:
        candidates = [p for p in self.providers.values()
                      if p.provider == record.get("provider") and _same_key(p, record, failures)]
        # prefer the key of the same name (two names for one key are the same key anyway)
        candidates.sort(key=lambda p: p.name != record.get("key"))
        return candidates[0] if candidates else None


def _same_key(provider: KeyProvider, record: Mapping[str, Any], failures: list[str]) -> bool:
    region = getattr(provider, "region", None)
    if region is not None and record.get("region") not in (None, region):
        return False  # the same alias in another region is another key
    try:
        return provider.key_id() == record.get("key_id")
    except KeyUnavailableError as exc:  # e.g. a local key file that is missing or unsafe
        if str(exc) not in failures:
            failures.append(str(exc))
        return False


def _fingerprint(records: Sequence[Mapping[str, Any]]) -> str:
    return "|".join(str(r.get("wrapped_key")) for r in records)


def authenticated_content(manifest: Manifest) -> dict[str, Any]:
    """What the tag covers: the whole manifest but the tag, as JSON, fields at their default left
    out (so a later cloudkeep that adds a defaulted field still authenticates old manifests)."""
    return manifest.model_dump(mode="json", exclude_defaults=True, exclude={"authentication"})


_KEYRINGS: dict[int, tuple[KeyPolicy, Keyring]] = {}
_KEYRINGS_LOCK = threading.Lock()
_KEYRINGS_KEPT = 8  # a warm function loads the policy on every invocation: keep only the newest


def keyring_for(policy: KeyPolicy) -> Keyring:
    """The keyring of ``policy``, one per policy object (data keys are cached in it)."""
    with _KEYRINGS_LOCK:
        entry = _KEYRINGS.pop(id(policy), None)
        if entry is None or entry[0] is not policy:
            entry = (policy, Keyring.from_policy(policy))
        _KEYRINGS[id(policy)] = entry  # (re)inserted last: the dict is in least-recent order
        while len(_KEYRINGS) > _KEYRINGS_KEPT:
            del _KEYRINGS[next(iter(_KEYRINGS))]
        return entry[1]
