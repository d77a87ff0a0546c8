"""The Azure stand-ins for the tests and the demo: Azurite (Blob, Queue, Table) and a Cosmos DB
server (npm ``@vercel/cosmosdb-server``). Each listens on 127.0.0.1 on free ports, runs in a
process group of its own and is stopped with it; failing to start raises, never skips.
"""

from __future__ import annotations

import json
import ssl
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tools.emulators import ROOT, EmulatorError, _Process, _tail, free_port

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


COSMOS_PACKAGE = ROOT / "node_modules" / "@vercel" / "cosmosdb-server"
# The Cosmos DB emulator's documented well-known key (public; this server accepts any key, the SDK
# only needs one of the right shape).
COSMOS_KEY = "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=="


class CosmosServer(_Process):
    """``@vercel/cosmosdb-server`` over HTTPS (self-signed certificate), in memory, started through
    its library with keep-alive: the stock CLI closes every connection (about 11 writes/s)."""

    name = "cosmosdb-server"

    def start(self, timeout: float = 60) -> CosmosServer:
        import shutil

        if not (COSMOS_PACKAGE / "package.json").exists():
            raise EmulatorError(f"the Cosmos DB server is not installed at {COSMOS_PACKAGE}: "
                                "run `make setup` (npm ci)")
        node = shutil.which("node")
        if not node:
            raise EmulatorError("node is not on PATH: the Cosmos DB server needs Node.js 20")
        script = (f"require({json.dumps(str(COSMOS_PACKAGE))}).createHttpsServer({{keepAlive: true}})"
                  f".listen({self.port}, '127.0.0.1')")
        self._spawn([node, "-e", script], cwd=ROOT)
        assert self.proc is not None
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # its certificate is self-signed
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise EmulatorError(f"the Cosmos DB server exited with {self.proc.returncode}; "
                                    f"log:\n{_tail(self.log)}")
            try:
                urllib.request.urlopen(self.endpoint + "/", timeout=2, context=context)
                return self
            except urllib.error.HTTPError:
                return self  # it answered
            except OSError:
                time.sleep(0.2)
        raise EmulatorError(f"the Cosmos DB server did not answer within {timeout:.0f}s; "
                            f"log:\n{_tail(self.log)}")

    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def key(self) -> str:
        return COSMOS_KEY

    def env(self) -> dict[str, str]:
        return {"COSMOS_KEY": COSMOS_KEY}

    def client(self) -> Any:
        """A CosmosClient for this server (its certificate is not verified: self-signed)."""
        import warnings

        import urllib3
        from azure.cosmos import CosmosClient

        warnings.filterwarnings("ignore", category=urllib3.exceptions.InsecureRequestWarning)
        return CosmosClient(self.endpoint, credential=COSMOS_KEY, connection_verify=False)


__all__ = ["ACCOUNT", "COSMOS_KEY", "Azurite", "CosmosServer", "Path"]
