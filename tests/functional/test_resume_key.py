"""The run state's purpose-bound wrap of a snapshot's data key, on moto's KMS: a fan-out worker
(or a resumed run) unwraps the key it needs only under the ``cloudkeep:purpose = resume``
context, never with the snapshot's own context — which is what lets the AWS key policy deny the
backup role every other Decrypt (serverless.yml, docs/threat-model.md) — and the two wraps are
bound to their contexts by KMS itself."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

import boto3
import pytest

from cloudkeep import checkpoint, engine, fanout, keys
from cloudkeep.engine import RunOptions
from cloudkeep.keys import Keyring, resume_context
from cloudkeep.keys.aws_kms import AwsKmsProvider
from cloudkeep.policy import parse_policy
from cloudkeep.queues.inprocess import InProcessQueue
from cloudkeep.stores.memory import MemoryStore
from conftest import REGION
from test_watchdog import MemorySource

pytestmark = pytest.mark.emulator


class Recording:
    """Our KeyProvider protocol around the real aws_kms provider: notes each unwrap's context."""

    def __init__(self, inner: AwsKmsProvider) -> None:
        self.inner, self.name, self.provider = inner, inner.name, inner.provider
        self.unwrapped: list[dict[str, str]] = []

    def key_id(self) -> str:
        return self.inner.key_id()

    def generate(self, context: Mapping[str, str]) -> Any:
        return self.inner.generate(context)

    def wrap(self, data_key: bytes, context: Mapping[str, str]) -> dict[str, Any]:
        return self.inner.wrap(data_key, context)

    def unwrap(self, record: Mapping[str, Any], context: Mapping[str, str]) -> bytes:
        self.unwrapped.append(dict(context))
        return self.inner.unwrap(record, context)


@pytest.fixture
def kms_key(moto_server: Any) -> str:
    return str(boto3.client("kms", region_name=REGION).create_key(Description="envelope")["KeyMetadata"]["KeyId"])


def policy_for(key_id: str) -> Any:
    return parse_policy(f"""
version: 1
stores: {{mem: {{type: file, path: /unused}}}}
keys: {{main: {{provider: aws_kms, key_id: "{key_id}", region: {REGION}}}}}
encryption: {{keys: [main]}}
tiers: {{t: {{schedule: "0 * * * *", rpo: 2h, retention: {{last: 5}}}}}}
datasets:
  orders: {{source: {{type: dynamodb, table: orders, region: {REGION}}}, tier: t, store: mem}}
""")


def test_workers_unwrap_the_data_key_only_under_the_resume_context(kms_key: str) -> None:
    policy = policy_for(kms_key)
    store, source, queue = MemoryStore(), MemorySource(), InProcessQueue()
    provider = Recording(AwsKmsProvider("main", policy.keys["main"]))
    started = engine.backup(policy, "orders", store=store, source=source,
                            options=RunOptions(queue=queue), keyring=Keyring({"main": provider}))
    assert started.status == "unfinished" and started.dispatched == 1
    state = checkpoint.load_run_state(store, "orders", str(started.snapshot_id))
    assert state is not None and state.encryption is not None
    [resume] = state.encryption[keys.RESUME_KEYS]
    assert resume["key"] == "main" and resume["wrapped_key"] != state.encryption["keys"][0]["wrapped_key"]

    # A worker in another process: a fresh keyring, so nothing is cached.
    worker_keys = Recording(AwsKmsProvider("main", policy.keys["main"]))
    keyring = Keyring({"main": worker_keys})
    original = keys.keyring_for
    keys.keyring_for = lambda _policy: keyring  # type: ignore[assignment]
    try:
        [outcome] = fanout.drain(policy, queue, workers=1, store_for=lambda _n: store,
                                 source_for=lambda _n: source)
    finally:
        keys.keyring_for = original  # type: ignore[assignment]
    assert outcome.status == "committed" and outcome.manifest is not None
    assert worker_keys.unwrapped and all(
        c == resume_context("orders", started.snapshot_id or "") for c in worker_keys.unwrapped)
    manifest = json.loads(store.get(f"orders/snapshots/{started.snapshot_id}/manifest.json"))
    encryption = manifest["codec"]["encryption"]
    assert keys.RESUME_KEYS not in encryption and "resume" not in json.dumps(manifest)
    assert encryption["keys"][0]["wrapped_key"] == state.encryption["keys"][0]["wrapped_key"]

    # The restore side unwraps the manifest's own wrap with the snapshot's context.
    reader = Recording(AwsKmsProvider("main", policy.keys["main"]))
    assert Keyring({"main": reader}).authenticate(outcome.manifest) is not None
    assert {"cloudkeep:dataset": "orders", "cloudkeep:snapshot": started.snapshot_id} in reader.unwrapped
    assert not [c for c in reader.unwrapped if c.get("cloudkeep:purpose") == "resume"]


def test_each_wrap_unwraps_only_under_its_own_context(kms_key: str) -> None:
    """KMS binds the context: the resume wrap is no manifest key, and the other way round."""
    kms = boto3.client("kms", region_name=REGION)
    keyring = Keyring({"main": AwsKmsProvider("main", policy_for(kms_key).keys["main"])})
    data_key, record = keyring.seal(["main"], "orders", "20260101T000000Z-abc123")
    [resume] = keyring.wrap_for_resume(["main"], "orders", "20260101T000000Z-abc123", data_key)
    snapshot = {"cloudkeep:dataset": "orders", "cloudkeep:snapshot": "20260101T000000Z-abc123"}
    purpose = resume_context("orders", "20260101T000000Z-abc123")
    for blob, right, wrong in ((resume["wrapped_key"], purpose, snapshot),
                               (record["keys"][0]["wrapped_key"], snapshot, purpose)):
        raw = base64.b64decode(blob)
        assert kms.decrypt(CiphertextBlob=raw, EncryptionContext=right)["Plaintext"] == data_key
        with pytest.raises(kms.exceptions.InvalidCiphertextException):
            kms.decrypt(CiphertextBlob=raw, EncryptionContext=wrong)
    # unseal prefers the resume wrap and needs nothing else
    fresh = Keyring({"main": AwsKmsProvider("main", policy_for(kms_key).keys["main"])})
    broken = dict(record, keys=[dict(record["keys"][0], wrapped_key="AAAA")],
                  resume_keys=[resume])
    assert fresh.unseal("orders", "20260101T000000Z-abc123", broken) == data_key
