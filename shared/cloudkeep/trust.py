"""Whether a manifest read from a store may be believed (a writer to the store is not trusted).

Three checks, in this order, by every reader (``catalog``, verify, restore, prune, plan, report,
holds, the tick):

1. **Bound to where it is stored.** A manifest read from ``<dataset>/snapshots/<id>/manifest.json``
   must say ``dataset`` = that dataset and ``snapshot_id`` = that id, and its ``store`` must be the
   dataset's store (in a copy store, which holds the same manifest bytes, the dataset's primary
   store or that copy store). Otherwise it is a genuine manifest replayed under another name, or
   a forgery: :class:`ForgedManifestError`.
2. **Authentic.** A tagged manifest's tag must match its content under the policy's keys (the tag
   covers the dataset, id and store, so an edited copy fails here): ``TamperedError``.
3. **Meets the policy.** In a dataset whose policy encrypts its snapshots (and whose source
   cloudkeep encrypts), an unencrypted manifest is a *downgrade*; in a dataset whose policy
   requires signatures (``signing: {required: true}``), so is an untagged one — unless an
   endorsement (``cloudkeep keys endorse``, a tag kept beside a manifest written before signing
   began) matches it: :class:`DowngradeError`. ``--allow-unsigned`` accepts such a manifest for
   one read (never a forged or tampered one).

A manifest that fails any check is never listed, restored, counted by retention or a reason to
delete anything; it stays in the store as evidence and is reported.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from . import layout
from .codec import canonical_json
from .errors import ObjectNotFoundError, TamperedError
from .keys import keyring_for

if TYPE_CHECKING:
    from .keys import Keyring
    from .manifest import Manifest
    from .policy import Policy
    from .stores import Store

log = logging.getLogger(__name__)

ENDORSEMENT_MAX_BYTES = 64 * 1024


class ForgedManifestError(TamperedError):
    """A manifest does not belong where it is stored (replayed under another id, dataset or
    store, or forged)."""


class DowngradeError(TamperedError):
    """A manifest is unencrypted or untagged where the dataset's policy requires encryption or
    signatures (and no endorsement vouches for it)."""


@dataclass(frozen=True)
class Expect:
    """What a dataset's manifests must be, from the policy. ``stores`` empty: the store name is
    not checked; ``keyring`` None: tags and the policy's requirements are left to the caller
    (verify checks and reports them itself)."""

    dataset: str
    stores: frozenset[str] = frozenset()
    keyring: Keyring | None = None
    require_encryption: bool = False
    require_signature: bool = False
    allow_unsigned: bool = False

    def without_keyring(self) -> Expect:
        return replace(self, keyring=None)


def client_side_encrypted(source_spec: Any) -> bool:
    """Whether cloudkeep encrypts this source's parts when the policy asks for encryption (it does
    not for native jobs — the service writes the data — nor for the S3 source, whose objects are
    copied as they are)."""
    return bool(source_spec.encrypts_parts())


def expect_for(policy: Policy, dataset: str, store_name: str | None = None, *,
               authenticate: bool = True, allow_unsigned: bool = False) -> Expect:
    """What ``dataset``'s manifests read from its own store (or from the copy store
    ``store_name``) must be."""
    spec = policy.dataset(dataset)
    stores = {spec.store} | ({store_name} if store_name else set())
    return Expect(
        dataset=dataset,
        stores=frozenset(stores),
        keyring=keyring_for(policy) if authenticate else None,
        require_encryption=bool(policy.encryption_keys(dataset))
        and client_side_encrypted(spec.source),
        require_signature=policy.signing_required(dataset),
        allow_unsigned=allow_unsigned,
    )


def check_binding(manifest: Manifest, dataset: str, snapshot_id: str, *,
                  stores: frozenset[str] = frozenset(), where: str = "") -> None:
    """Raise ForgedManifestError unless ``manifest`` names the dataset, id (and one of
    ``stores``) it was read under."""
    stored_as = f"{dataset}@{snapshot_id}"
    claims = f"{manifest.dataset}@{manifest.snapshot_id}"
    at = f" ({where})" if where else ""
    if claims != stored_as:
        raise ForgedManifestError(
            f"manifest stored as {stored_as}{at} says it is {claims}: a copied (replayed) or forged "
            "manifest; refused and left in place as evidence")
    if stores and manifest.store not in stores:
        raise ForgedManifestError(
            f"manifest of {stored_as}{at} says it was written to store {manifest.store!r}, not "
            f"{' or '.join(repr(s) for s in sorted(stores))}: a manifest copied from another store "
            "or forged; refused and left in place as evidence (if the store was renamed in the "
            f"policy, give it its old name {manifest.store!r} again)")


def check(store: Store, manifest: Manifest, dataset: str, snapshot_id: str, expect: Expect | None,
          *, where: str = "", keyring: Keyring | None = None) -> None:
    """Every check a reader makes (binding; with a keyring, the tag and the policy). Raises
    ForgedManifestError, TamperedError, DowngradeError or KeyUnavailableError."""
    check_binding(manifest, dataset, snapshot_id,
                  stores=expect.stores if expect is not None else frozenset(), where=where)
    keyring = keyring or (expect.keyring if expect is not None else None)
    if keyring is None:
        return
    keyring.verify_tag(manifest)
    if expect is not None:
        check_policy(store, manifest, expect, keyring)


def downgrade(manifest: Manifest, expect: Expect) -> str | None:
    """What the manifest lacks that the dataset's policy requires (None: nothing)."""
    if expect.require_encryption and manifest.codec.encryption is None:
        return "is not encrypted, but the dataset's policy encrypts its snapshots"
    if expect.require_signature and manifest.authentication is None:
        return "carries no authentication tag, but the dataset's policy requires signatures"
    return None


def check_policy(store: Store, manifest: Manifest, expect: Expect, keyring: Keyring) -> None:
    """Raise DowngradeError if ``manifest`` (already authenticated) lacks what the policy
    requires and no valid endorsement vouches for it (``allow_unsigned`` lets it through,
    logged)."""
    lacking = downgrade(manifest, expect)
    if lacking is None:
        return
    ref = f"{manifest.dataset}@{manifest.snapshot_id}"
    record = read_endorsement(store, manifest.dataset, manifest.snapshot_id)
    if record is not None:
        keyring.check_endorsement(manifest, record.get("authentication") or {})
        return
    if expect.allow_unsigned:
        log.warning("%s %s; read anyway (--allow-unsigned)", ref, lacking)
        return
    raise DowngradeError(
        f"manifest of {ref} {lacking}: a downgrade (forged, or written before the policy "
        f"required it); refused and left in place as evidence. If it is genuine: "
        f"cloudkeep keys endorse {manifest.dataset}, or pass --allow-unsigned for one read")


def read_endorsement(store: Store, dataset: str, snapshot_id: str) -> dict[str, Any] | None:
    """The endorsement record beside a manifest (None if there is none). Raises TamperedError
    for one that is not an endorsement."""
    key = layout.endorsement_key(dataset, snapshot_id)
    info = store.stat(key)
    if info is None:
        return None
    if info.size > ENDORSEMENT_MAX_BYTES:
        raise TamperedError(f"the endorsement of {dataset}@{snapshot_id} is {info.size} bytes "
                            f"(at most {ENDORSEMENT_MAX_BYTES}): not an endorsement")
    try:
        data = json.loads(store.get(key))
    except ObjectNotFoundError:
        return None
    except (ValueError, RecursionError):
        raise TamperedError(f"the endorsement of {dataset}@{snapshot_id} is damaged") from None
    if (not isinstance(data, dict) or data.get("dataset") != dataset
            or data.get("snapshot_id") != snapshot_id):
        raise TamperedError(f"the endorsement of {dataset}@{snapshot_id} is damaged or belongs "
                            "to another snapshot")
    return data


def endorse(store: Store, manifest: Manifest, keyring: Keyring, names: list[str], *,
            by: str, at: str) -> str:
    """Write the endorsement of an unsigned manifest (create-only). Returns its key."""
    record = {
        "format": 1,
        "dataset": manifest.dataset,
        "snapshot_id": manifest.snapshot_id,
        "store": manifest.store,
        "endorsed_at": at,
        "endorsed_by": by,
        "authentication": keyring.endorse(manifest, names),
    }
    key = layout.endorsement_key(manifest.dataset, manifest.snapshot_id)
    store.put(key, canonical_json(record), if_absent=True)
    return key


def sign_new(policy: Policy, manifest: Manifest, keyring: Keyring | None = None,
             data_key: bytes | None = None) -> Manifest:
    """A new manifest as it is committed: tagged with a fresh signing key wrapped by the
    dataset's signing keys; without signing keys, an encrypted one with its data key and an
    unencrypted one not at all."""
    keyring = keyring or keyring_for(policy)
    names = policy.signing_keys(manifest.dataset)
    if names:  # checkable without the data key (by roles that may not decrypt snapshots)
        return keyring.sign_with(manifest, names)
    if manifest.codec.encryption is not None:
        if data_key is None:
            raise ValueError("an encrypted manifest is signed with its data key")
        return keyring.sign(manifest, data_key)
    return manifest
