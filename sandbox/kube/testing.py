"""Running the emulator from tests and scripts: a subprocess on a free port, stopped for sure.

Usage: `with EmulatorProcess(tmp_path, clusters=["staging"]) as kube:` then `kube.url("staging")`
(http://127.0.0.1:PORT/clusters/staging) and `kube.token()` (a bearer token it accepts).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from sandbox.kube.auth import unsigned_jwt


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_token(oid: str = "11111111-2222-3333-4444-555555555555", **claims: object) -> str:
    now = int(time.time())
    return unsigned_jwt({"oid": oid, "iat": now, "exp": now + 3600, **claims})


class EmulatorProcess:
    def __init__(
        self,
        workdir: Path,
        *,
        clusters: Sequence[str] = ("default",),
        extra_args: Sequence[str] = (),
        port: int | None = None,
        tls: tuple[Path, Path] | None = None,
        env: dict[str, str] | None = None,
        state_name: str = "kube-state.json",
    ) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.state = workdir / state_name
        self.log_path = workdir / f"kube-{self.port}.log"
        self.scheme = "https" if tls else "http"
        self.args = [sys.executable, "-m", "sandbox.kube", "--port", str(self.port), "--state", str(self.state)]
        for cluster in clusters:
            self.args += ["--cluster", cluster]
        if tls:
            self.args += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
        self.args += list(extra_args)
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def url(self, cluster: str) -> str:
        return f"{self.base_url}/clusters/{cluster}"

    @staticmethod
    def token() -> str:
        return make_token()

    def start(self, timeout: float = 20.0, verify: str | bool = False) -> EmulatorProcess:
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError("the emulator is already running")
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, env=self.env)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"emulator exited with {self.process.returncode}: {self.log_tail()}")
            try:
                if httpx.get(f"{self.base_url}/healthz", verify=verify, timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"emulator did not come up: {self.log_tail()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
