"""Use cases of encryption and signing keys: :func:`create_key`, :func:`check_keys` and
:func:`endorse` (vouch for snapshots written before signatures were required)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from .. import audit, extras, trust
from ..catalog import load_manifest, snapshot_ids, store_named
from ..errors import (
    CloudkeepError,
    KeyUnavailableError,
    ObjectExistsError,
    TamperedError,
    UsageError,
)
from ..holds import who
from ..keys import keyring_for
from ..keys.local import create_key_file
from ..policy import Policy
from ..results import Rows


def create_key(path: str) -> str:
    """Create a key file for the ``local`` key provider at ``path`` (mode 0600, never
    overwritten); returns its key id."""
    return create_key_file(path)


@extras.translating
def check_keys(policy: Policy) -> Rows:
    """Wrap and unwrap a test key with every key the policy defines; one row per key with
    ``ok`` and ``error`` (a key that cannot be reached is a row, not an exception)."""
    keyring = keyring_for(policy)
    rows = []
    context = {"cloudkeep:dataset": "-", "cloudkeep:snapshot": "keys-check"}
    for name, provider in sorted(keyring.providers.items()):
        row: dict[str, Any] = {"key": name, "provider": provider.provider}
        try:
            row["key_id"] = provider.key_id()
            probe = secrets.token_bytes(32)
            ok = provider.unwrap(provider.wrap(probe, context), context) == probe
            row["ok"], row["error"] = ok, None if ok else "unwrap returned another key"
        except KeyUnavailableError as exc:
            row["ok"], row["error"] = False, str(exc)
        rows.append(row)
    return Rows(rows)


@extras.translating
def endorse(policy: Policy, dataset: str, *, store_name: str | None = None,
            dry_run: bool = False) -> Rows:
    """Vouch for ``dataset``'s snapshots written unsigned (or unencrypted) before the policy
    required it: each gets an endorsement by the dataset's signing keys (create-only, beside
    its manifest). A manifest that is forged, replayed or tampered is never endorsed (its row's
    action is ``refused``). One row per snapshot; audited unless ``dry_run``."""
    names = policy.signing_keys(dataset)
    if not names:
        raise UsageError(f"dataset {dataset!r} has no signing keys: set signing.keys (or encryption "
                         "keys) in the policy first")
    store = store_named(policy, dataset, store_name)
    keyring = keyring_for(policy)
    policy_expect = trust.expect_for(policy, dataset, store_name, authenticate=False)
    # bound to its key and store, its tag (if any) checks; what it lacks is judged strictly
    loose = trust.Expect(dataset, policy_expect.stores)
    strict = trust.Expect(dataset, policy_expect.stores, None, policy_expect.require_encryption,
                          True)
    rows: list[dict[str, Any]] = []
    for sid in snapshot_ids(store, dataset):
        row: dict[str, Any] = {"ref": f"{dataset}@{sid}", "snapshot_id": sid}
        try:
            manifest = load_manifest(store, dataset, sid, keyring=keyring, expect=loose)
        except TamperedError as exc:  # forged, replayed, tampered: never endorsed
            row.update(action="refused", detail=str(exc))
        except KeyUnavailableError:
            raise
        except CloudkeepError as exc:
            row.update(action="refused", detail=str(exc))
        else:
            lacking = trust.downgrade(manifest, strict)
            if lacking is None:
                row.update(action="signed", detail="carries its own tag")
            elif trust.read_endorsement(store, dataset, sid) is not None:
                row.update(action="endorsed", detail="already endorsed")
            elif dry_run:
                row.update(action="would endorse", detail=lacking.removeprefix("is ").split(",")[0])
            else:
                try:
                    trust.endorse(store, manifest, keyring, names, by=who(),
                                  at=datetime.now(UTC).isoformat())
                    row.update(action="endorsed", detail=f"endorsed by {', '.join(names)}")
                except ObjectExistsError:
                    row.update(action="endorsed", detail="already endorsed")
        rows.append(row)
    if not dry_run:
        audit.write(store, "endorse", outcome="ok", dataset=dataset,
                    detail={"endorsed": [r["snapshot_id"] for r in rows
                                         if r["detail"].startswith("endorsed by")],
                            "refused": [r["snapshot_id"] for r in rows if r["action"] == "refused"]})
    return Rows(rows)
