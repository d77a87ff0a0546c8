"""Start and stop the local stand-ins for the clouds (tests, `make demo`, `make bench`).

Each emulator listens on 127.0.0.1 on a free port and is stopped on exit. Failing to start is an
error, never a skip: CI must not pass without the emulators.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).resolve().parent.parent
DDB_LOCAL_DIR = ROOT / "node_modules" / "amplify-dynamodb-simulator" / "emulator"

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class EmulatorError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EmulatorError(f"{url}: process exited with {proc.returncode}; log:\n{_tail(log)}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return  # it answered
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.2)
    raise EmulatorError(f"{url} did not answer within {timeout:.0f}s; log:\n{_tail(log)}")


def _tail(log: Path) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-20:])
    except OSError:
        return "(no log)"


class _Process:
    name = "emulator"

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._logdir = Path(tempfile.mkdtemp(prefix=f"cloudkeep-{self.name}-"))
        self.log = self._logdir / "server.log"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _spawn(self, argv: list[str], cwd: Path | None = None,
               env: dict[str, str] | None = None) -> None:
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                env={**os.environ, **env} if env else None,
            )

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=5)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=10)
        self.proc = None
        shutil.rmtree(self._logdir, ignore_errors=True)

    def __enter__(self):  # type: ignore[no-untyped-def]
        if self.proc is None:
            self.start()  # type: ignore[attr-defined]
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


class DynamoDBLocal(_Process):
    """The official DynamoDB Local (from the npm package amplify-dynamodb-simulator), in memory."""

    name = "dynamodb-local"

    def start(self, timeout: float = 90) -> DynamoDBLocal:
        jar = DDB_LOCAL_DIR / "DynamoDBLocal.jar"
        if not jar.exists():
            raise EmulatorError(f"DynamoDB Local not found at {jar}: run `make setup` (npm ci)")
        java = shutil.which("java")
        if not java:
            raise EmulatorError("java is not on PATH: DynamoDB Local needs Java 17+")
        self._spawn(
            [java, "-Djava.library.path=./DynamoDBLocal_lib", "-jar", "DynamoDBLocal.jar",
             "-inMemory", "-port", str(self.port), "-disableTelemetry"],
            cwd=DDB_LOCAL_DIR,
        )
        assert self.proc is not None
        _wait_http(self.endpoint, self.proc, self.log, timeout)
        return self

    def env(self) -> dict[str, str]:
        return {"AWS_ENDPOINT_URL_DYNAMODB": self.endpoint, **FAKE_CREDENTIALS}


class MotoServer(_Process):
    """moto in server mode, for S3 and the other AWS services. With ``iam=True`` it enforces IAM
    (``INITIAL_NO_AUTH_ACTION_COUNT``): requests are unauthenticated until :meth:`enforce_iam`."""

    name = "moto"

    def __init__(self, *, iam: bool = False) -> None:
        super().__init__()
        self.iam = iam

    def start(self, timeout: float = 60) -> MotoServer:
        exe = Path(sys.executable).parent / "moto_server"
        if not exe.exists():
            raise EmulatorError(f"moto_server not found next to {sys.executable}: run `make setup`")
        env = {"INITIAL_NO_AUTH_ACTION_COUNT": str(10**9)} if self.iam else None
        self._spawn([str(exe), "-H", "127.0.0.1", "-p", str(self.port)], env=env)
        assert self.proc is not None
        _wait_http(self.endpoint + "/moto-api/", self.proc, self.log, timeout)
        return self

    def reset(self) -> None:
        req = urllib.request.Request(self.endpoint + "/moto-api/reset", method="POST")
        urllib.request.urlopen(req, timeout=30)

    def enforce_iam(self, after: int = 0) -> None:
        """From now on (after ``after`` more requests) every request is checked against IAM."""
        req = urllib.request.Request(self.endpoint + "/moto-api/reset-auth", data=str(after).encode(),
                                     method="POST", headers={"Content-Type": "text/plain"})
        urllib.request.urlopen(req, timeout=30)

    def env(self) -> dict[str, str]:
        return {"AWS_ENDPOINT_URL": self.endpoint, **FAKE_CREDENTIALS}
