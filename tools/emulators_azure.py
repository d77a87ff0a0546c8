"""Azurite (Blob, Queue, Table) for the tests and the demo: 127.0.0.1, free ports, stopped on exit."""

from __future__ import annotations

import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from tools.emulators import ROOT, EmulatorError, _Process, free_port

AZURITE = ROOT / "node_modules" / ".bin" / "azurite"
ACCOUNT = "devstoreaccount1"
# Azurite's documented development key (public; it protects nothing).
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class Azurite(_Process):
    name = "azurite"

    def start(self, timeout: float = 60) -> Azurite:
        if not AZURITE.exists():
            raise EmulatorError(f"Azurite not found at {AZURITE}: run `make setup` (npm ci)")
        self.queue_port, self.table_port = free_port(), free_port()
        self._data = tempfile.mkdtemp(prefix="cloudkeep-azurite-data-")
        self._spawn([str(AZURITE), "--silent", "--disableTelemetry", "--skipApiVersionCheck",
                     "--location", self._data,
                     "--blobHost", "127.0.0.1", "--blobPort", str(self.port),
                     "--queueHost", "127.0.0.1", "--queuePort", str(self.queue_port),
                     "--tableHost", "127.0.0.1", "--tablePort", str(self.table_port)])
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise EmulatorError(f"azurite exited with {self.proc.returncode}")
            try:
                urllib.request.urlopen(f"{self.endpoint}/{ACCOUNT}?comp=list", timeout=2)
                return self
            except urllib.error.HTTPError:
                return self  # it answered
            except OSError:
                time.sleep(0.2)
        raise EmulatorError(f"azurite did not answer within {timeout:.0f}s")

    @property
    def connection_string(self) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
                f"BlobEndpoint={self.endpoint}/{ACCOUNT};"
                f"QueueEndpoint=http://127.0.0.1:{self.queue_port}/{ACCOUNT};")

    def env(self) -> dict[str, str]:
        return {"AZURE_STORAGE_CONNECTION_STRING": self.connection_string}

    def stop(self) -> None:
        super().stop()
        import shutil

        shutil.rmtree(getattr(self, "_data", ""), ignore_errors=True)


__all__ = ["ACCOUNT", "Azurite", "Path"]
