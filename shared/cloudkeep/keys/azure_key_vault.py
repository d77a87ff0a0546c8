"""The ``azure_key_vault`` key provider: Key Vault wrapKey / unwrapKey (RSA-OAEP-256).

A wrap records the versioned key id Key Vault used, and unwrap asks that version (a rotated key
keeps its older versions). The function's managed identity needs the "Key Vault Crypto User"
role (wrapKey, unwrapKey) on this key only. There is no Key Vault emulator: tests drive this
class through its ``client_factory=`` seam with a scripted client.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any, Literal

from pydantic import Field

from ..clouds.azure import classify, translating
from ..errors import KeyUnavailableError
from ..specs import KeyModel
from . import b64, unb64

ALGORITHM = "RSA-OAEP-256"


class AzureKeyVaultProvider:
    provider = "azure_key_vault"

    def __init__(self, name: str, spec: Any, *, client_factory: Callable[[str], Any] | None = None) -> None:
        self.name = name
        self.key_url = str(spec.key_url).rstrip("/")
        self._factory = client_factory
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def key_id(self) -> str:
        return self.key_url

    def client(self, key_id: str) -> Any:
        with self._lock:
            if key_id not in self._clients:
                if self._factory is not None:
                    self._clients[key_id] = self._factory(key_id)
                else:
                    from azure.identity import DefaultAzureCredential
                    from azure.keyvault.keys.crypto import CryptographyClient

                    self._clients[key_id] = CryptographyClient(key_id, credential=DefaultAzureCredential())
            return self._clients[key_id]

    def _algorithm(self) -> Any:
        try:
            from azure.keyvault.keys.crypto import KeyWrapAlgorithm
        except ImportError:  # a scripted client without the SDK installed
            return ALGORITHM
        return KeyWrapAlgorithm.rsa_oaep_256

    def _call(self, key_id: str, what: str, data: bytes) -> Any:
        with translating(lambda exc: self._unavailable(what, exc), chain=False):
            return getattr(self.client(key_id), what)(self._algorithm(), data)

    def _unavailable(self, what: str, exc: BaseException) -> KeyUnavailableError | None:
        if classify(exc) is None:
            return None
        lines = str(getattr(exc, "message", None) or exc).splitlines()
        why = f"{type(exc).__name__}: {lines[0] if lines else ''}"
        return KeyUnavailableError(f"key {self.name!r} (azure_key_vault {self.key_url}): {what} failed: {why}")

    def generate(self, context: Mapping[str, str]) -> tuple[bytes, dict[str, Any]] | None:
        return None

    def wrap(self, data_key: bytes, context: Mapping[str, str]) -> dict[str, Any]:
        out = self._call(self.key_url, "wrap_key", data_key)
        return {"algorithm": ALGORITHM, "key_version": str(out.key_id or self.key_url),
                "wrapped_key": b64(bytes(out.encrypted_key))}

    def unwrap(self, record: Mapping[str, Any], context: Mapping[str, str]) -> bytes:
        blob = unb64(record.get("wrapped_key"), what=f"key {self.name!r}")
        version = str(record.get("key_version") or self.key_url)
        if not version.startswith(self.key_url):
            raise KeyUnavailableError(f"key {self.name!r}: the recorded key version {version} is not "
                                      f"a version of {self.key_url}")
        out = self._call(version, "unwrap_key", blob)
        return bytes(out.key)


class AzureKeyVaultKeySpec(KeyModel):
    """An Azure Key Vault RSA key: https://VAULT.vault.azure.net/keys/NAME[/VERSION]."""

    IMPLEMENTATION = AzureKeyVaultProvider

    provider: Literal["azure_key_vault"]
    key_url: str = Field(pattern=r"^https://[^/]+/keys/[^/]+(/[^/]+)?/?$")
