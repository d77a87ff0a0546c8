"""The ``gcp_kms`` key provider: Cloud KMS encrypt / decrypt of the data key.

The snapshot (dataset and id) is the additional authenticated data of both calls. The function's
service account needs roles/cloudkms.cryptoKeyEncrypterDecrypter on this key only. There is no
Cloud KMS emulator: tests drive this class through its ``client=`` seam with a scripted client.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field

from ..clouds.gcp import classify, translating
from ..clouds.lazy import Lazy
from ..codec import canonical_json
from ..errors import KeyUnavailableError
from ..specs import KeyModel
from . import b64, unb64


def _kms_client() -> Any:
    import importlib

    kms: Any = importlib.import_module("google.cloud.kms")
    return kms.KeyManagementServiceClient()


class GcpKmsProvider:
    provider = "gcp_kms"

    def __init__(self, name: str, spec: Any, *, client: Any = None) -> None:
        self.name = name
        self.key_name = str(spec.key_name)
        self._client = Lazy(_kms_client, client)

    def key_id(self) -> str:
        return self.key_name

    def client(self) -> Any:
        return self._client.get()

    def _call(self, what: str, request: dict[str, Any]) -> Any:
        with translating(lambda exc: self._unavailable(what, exc), chain=False):
            return getattr(self.client(), what)(request=request)

    def _unavailable(self, what: str, exc: BaseException) -> KeyUnavailableError | None:
        failure = classify(exc)
        if failure is None or failure.kind in ("connection", "corrupt"):
            return None
        return KeyUnavailableError(
            f"key {self.name!r} (gcp_kms {self.key_name}): {what} failed: "
            f"{type(exc).__name__}: {getattr(exc, 'message', None) or exc}")

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


class GcpKmsKeySpec(KeyModel):
    """A Cloud KMS key: projects/P/locations/L/keyRings/R/cryptoKeys/K."""

    IMPLEMENTATION = GcpKmsProvider

    provider: Literal["gcp_kms"]
    key_name: str = Field(pattern=r"^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$")
