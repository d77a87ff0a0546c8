"""The ``aws_kms`` key provider: AWS KMS GenerateDataKey / Encrypt / Decrypt.

The snapshot (dataset and id) is the KMS encryption context of every call, so CloudTrail names
the snapshot behind each use of the key and a wrapped key cannot be unwrapped for another one.
The function's role needs kms:GenerateDataKey, kms:Encrypt and kms:Decrypt on this key only.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field

from ..clouds.aws import AwsErrors, Fault
from ..clouds.aws import client as aws_client
from ..errors import KeyUnavailableError
from ..specs import KeyModel
from . import b64, unb64


class AwsKmsProvider:
    provider = "aws_kms"

    def __init__(self, name: str, spec: Any, *, client: Any = None) -> None:
        self.name = name
        self.key = str(spec.key_id)
        self.region = str(spec.region)
        self._client = client
        self._lock = threading.Lock()

    def key_id(self) -> str:
        return self.key

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = aws_client("kms", self.region)
            return self._client

    def _call(self, what: str, **kwargs: Any) -> dict[str, Any]:
        with _KmsErrors(f"key {self.name!r} (aws_kms {self.key} in {self.region})", subject=what):
            result: dict[str, Any] = getattr(self.client(), what)(**kwargs)
        return result

    def generate(self, context: Mapping[str, str]) -> tuple[bytes, dict[str, Any]] | None:
        out = self._call("generate_data_key", KeyId=self.key, KeySpec="AES_256",
                         EncryptionContext=dict(context))
        return bytes(out["Plaintext"]), self._record(out)

    def wrap(self, data_key: bytes, context: Mapping[str, str]) -> dict[str, Any]:
        out = self._call("encrypt", KeyId=self.key, Plaintext=data_key, EncryptionContext=dict(context))
        return self._record(out)

    def unwrap(self, record: Mapping[str, Any], context: Mapping[str, str]) -> bytes:
        blob = unb64(record.get("wrapped_key"), what=f"key {self.name!r}")
        out = self._call("decrypt", CiphertextBlob=blob, KeyId=self.key, EncryptionContext=dict(context))
        return bytes(out["Plaintext"])

    def _record(self, out: Mapping[str, Any]) -> dict[str, Any]:
        return {"algorithm": "SYMMETRIC_DEFAULT", "region": self.region,
                "key_arn": str(out.get("KeyId", "")), "wrapped_key": b64(bytes(out["CiphertextBlob"]))}


class _KmsErrors(AwsErrors):
    """KMS failures → KeyUnavailableError (``doing``: the key; ``subject``: the KMS call), with
    no chained botocore exception."""

    CHAIN = False

    def unreachable(self, fault: Fault) -> BaseException:
        return KeyUnavailableError(f"{self.doing} unreachable: {fault.message}")

    def refused(self, fault: Fault) -> BaseException:
        return KeyUnavailableError(
            f"{self.doing}: {self.subject} failed: {fault.code or 'error'}: {fault.message}".rstrip(": "))


class AwsKmsKeySpec(KeyModel):
    """An AWS KMS key (id, ARN or alias) in one region."""

    IMPLEMENTATION = AwsKmsProvider

    provider: Literal["aws_kms"]
    key_id: str = Field(min_length=1)
    region: str = Field(min_length=1)
