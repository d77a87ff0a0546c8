"""The ``gcp_kms`` key provider: Cloud KMS encrypt / decrypt of the data key.

The snapshot (dataset and id) is the additional authenticated data of both calls. The function's
service account needs roles/cloudkms.cryptoKeyEncrypterDecrypter on this key only. There is no
Cloud KMS emulator: tests drive this class through its ``client=`` seam with a scripted client.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from ..clouds.gcp import classify
from ..codec import canonical_json
from ..errors import KeyUnavailableError
from . import b64, unb64


class GcpKmsProvider:
    provider = "gcp_kms"

    def __init__(self, name: str, spec: Any, *, client: Any = None) -> None:
        self.name = name
        self.key_name = str(spec.key_name)
        self._client = client
        self._lock = threading.Lock()

    def key_id(self) -> str:
        return self.key_name

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                import importlib

                kms: Any = importlib.import_module("google.cloud.kms")
                self._client = kms.KeyManagementServiceClient()
            return self._client

    def _call(self, what: str, request: dict[str, Any]) -> Any:
        failure = None
        try:
            return getattr(self.client(), what)(request=request)
        except Exception as exc:
            failure = classify(exc)
            if failure is None or failure.kind in ("connection", "corrupt"):
                raise
        raise KeyUnavailableError(
            f"key {self.name!r} (gcp_kms {self.key_name}): {what} failed: "
            f"{type(failure.error).__name__}: {getattr(failure.error, 'message', None) or failure.error}"
        ) from None

    def generate(self, context: Mapping[str, str]) -> tuple[bytes, dict[str, Any]] | None:
        return None

    def wrap(self, data_key: bytes, context: Mapping[str, str]) -> dict[str, Any]:
        out = self._call("encrypt", {"name": self.key_name, "plaintext": data_key,
                                     "additional_authenticated_data": canonical_json(dict(context))})
        return {"algorithm": "GOOGLE_SYMMETRIC_ENCRYPTION", "key_version": str(getattr(out, "name", "")),
                "wrapped_key": b64(bytes(out.ciphertext))}

    def unwrap(self, record: Mapping[str, Any], context: Mapping[str, str]) -> bytes:
        blob = unb64(record.get("wrapped_key"), what=f"key {self.name!r}")
        out = self._call("decrypt", {"name": self.key_name, "ciphertext": blob,
                                     "additional_authenticated_data": canonical_json(dict(context))})
        return bytes(out.plaintext)
