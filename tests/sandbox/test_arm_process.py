"""`python -m sandbox.azure` as the sandbox manager runs it: a plain-HTTP process behind the TLS proxy.

The SDK-level behaviour is proven in the other test_arm_* files (in-process, real TLS); this one
checks the command line: it starts, answers with the public URL it was given, keeps state in
its file, takes the LRO knob, and stops promptly on SIGTERM.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sandbox.azure.testing import TEST_SUBSCRIPTION, TEST_TENANT
from sandbox.azure.tokens import OPERATOR_OID, mint_token

pytestmark = pytest.mark.sandbox

PUBLIC_URL = "https://127.0.0.1:48443"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def process(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    port, state = free_port(), tmp_path / "azure.json"
    command = [
        sys.executable,
        "-m",
        "sandbox.azure",
        "--port",
        str(port),
        "--state",
        str(state),
        "--public-url",
        PUBLIC_URL,
        "--subscription",
        TEST_SUBSCRIPTION,
        "--tenant-id",
        TEST_TENANT,
    ]
    log = (tmp_path / "azure.log").open("wb")
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{base}/_sandbox/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "the emulator did not start"
            time.sleep(0.1)
        yield proc, base, state
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        log.close()


def test_the_command_line_serves_arm_and_stops_on_sigterm(process: tuple[subprocess.Popen[bytes], str, Path]) -> None:
    proc, base, state = process
    headers = {"Authorization": f"Bearer {mint_token(OPERATOR_OID, TEST_TENANT)}"}
    group = f"{base}/subscriptions/{TEST_SUBSCRIPTION}/resourcegroups/rg-cli?api-version=2025-04-01"
    assert httpx.put(group, json={"location": "westeurope"}, headers=headers).status_code == 201
    registry = f"{base}/subscriptions/{TEST_SUBSCRIPTION}/resourcegroups/rg-cli/providers/Microsoft.ContainerRegistry/"
    created = httpx.put(
        f"{registry}registries/mmrvcliacr?api-version=2025-11-01",
        json={"location": "westeurope", "sku": {"name": "Basic"}},
        headers=headers,
    )
    assert created.headers["Azure-AsyncOperation"].startswith(f"{PUBLIC_URL}/subscriptions/{TEST_SUBSCRIPTION}/")
    assert created.headers["Retry-After"] == "1"  # what ARM sends; the SDKs parse it as an int
    knob = httpx.put(f"{base}/_sandbox/lro", json={"polls": 1, "retry_after": 0.2}).json()
    assert (knob["polls"], knob["retry_after"]) == (1, 0.2)
    stored = json.loads(state.read_text())
    assert any(key.endswith("/registries/mmrvcliacr") for key in stored["resources"])
    proc.send_signal(signal.SIGTERM)
    # uvicorn shuts down gracefully, then re-raises the signal so the exit status tells why
    assert proc.wait(timeout=10) in (0, -signal.SIGTERM)
