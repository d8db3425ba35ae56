"""Run the emulator in-process behind real TLS, for tests that drive it with the official SDKs.

    with serve_tls(EmulatorConfig(state_file=tmp / "azure.json"), tmp) as emulator:
        client = ResourceManagementClient(SandboxCredential(), sub, base_url=emulator.url,
                                          credential_scopes=[ARM_SCOPE], connection_verify=emulator.ca_path)

uvicorn terminates TLS itself here (a trustme CA, certificate for 127.0.0.1 and localhost), so
the SDKs talk to it exactly as they talk to the sandbox's TLS proxy. The server runs on a
thread of the calling process; leaving the `with` stops it.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import trustme
import uvicorn
from azure.keyvault.secrets import SecretClient

from sandbox.azure.app import build_app
from sandbox.azure.config import EmulatorConfig, LroSettings
from sandbox.azure.tokens import SandboxCredential

ARM_SCOPE = "https://management.azure.com/.default"
# the subscriptions and tenant of deployments/mmrv.yaml (staging, production), so flow tests
# can run the real spec against a test emulator
TEST_SUBSCRIPTION = "6f1c2a4e-3b5d-4e8f-9a0b-1c2d3e4f5a6b"
TEST_OTHER_SUBSCRIPTION = "9b8a7c6d-5e4f-4a3b-8c1d-0e9f8a7b6c5d"
TEST_TENANT = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
Client = TypeVar("Client")


def fast_config(state_file: Path | None, **overrides: Any) -> EmulatorConfig:
    """A config for tests: known subscriptions and tenant, operations done after two quick polls
    (or half a second unpolled). Keyword arguments override any EmulatorConfig field."""
    values: dict[str, Any] = {
        "state_file": state_file,
        "subscriptions": (TEST_SUBSCRIPTION, TEST_OTHER_SUBSCRIPTION),
        "tenant_id": TEST_TENANT,
        "lro": LroSettings(polls=2, seconds=0.5, retry_after=0.05),
    }
    values.update(overrides)
    return EmulatorConfig(**values)


@dataclass
class RunningEmulator:
    url: str
    ca_path: Path
    config: EmulatorConfig
    port: int

    def credential(self, oid: str | None = None) -> SandboxCredential:
        """A credential for `oid` (default: the first operator) in the emulator's tenant."""
        return SandboxCredential(oid or self.config.operator_oids[0], self.config.tenant_id)

    def arm_client(self, client_class: type[Client], subscription_id: str, **kwargs: Any) -> Client:
        """A management client of the official SDK pointed at the emulator."""
        credential = kwargs.pop("credential", None) or self.credential()
        return client_class(  # type: ignore[call-arg]
            credential,
            subscription_id,
            base_url=self.url,
            credential_scopes=[ARM_SCOPE],
            connection_verify=str(self.ca_path),
            **kwargs,
        )

    def secret_client(self, vault_url: str, oid: str | None = None) -> SecretClient:
        """A Key Vault SecretClient for `vault_url` (a vault's properties.vault_uri) acting as `oid`."""
        return SecretClient(
            vault_url, self.credential(oid), verify_challenge_resource=False, connection_verify=str(self.ca_path)
        )


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """(CA bundle, server certificate chain, server key) for 127.0.0.1 and localhost."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1", "localhost")
    ca_path, cert_path, key_path = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    ca.cert_pem.write_to_path(str(ca_path))
    issued.private_key_pem.write_to_path(str(key_path))
    with cert_path.open("wb") as handle:
        for pem in issued.cert_chain_pems:
            handle.write(pem.bytes())
    return ca_path, cert_path, key_path


@contextlib.contextmanager
def serve_tls(config: EmulatorConfig, cert_dir: Path, *, port: int = 0) -> Iterator[RunningEmulator]:
    ca_path, cert_path, key_path = (
        (cert_dir / "ca.pem", cert_dir / "server.pem", cert_dir / "server.key")
        if (cert_dir / "ca.pem").exists()
        else make_certificates(cert_dir)
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Measured here: without TCP_NODELAY on the *listening* socket (accepted ones inherit it),
    # each TLS response waits ~45 ms for a delayed ACK (uvicorn writes head and body apart);
    # asyncio's own per-connection setting does not take effect on this kernel.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", port))
    bound = sock.getsockname()[1]
    url = f"https://127.0.0.1:{bound}"
    if config.public_url is None:
        config.public_url = url
    server = uvicorn.Server(
        uvicorn.Config(
            build_app(config),
            ssl_certfile=str(cert_path),
            ssl_keyfile=str(key_path),
            access_log=False,
            log_level="warning",
            # no startup/shutdown hooks; with "on", a forced stop logs a cancelled lifespan task
            lifespan="off",
        )
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="azure-emulator", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the Azure emulator did not start")
        time.sleep(0.01)
    try:
        yield RunningEmulator(url=url, ca_path=ca_path, config=config, port=bound)
    finally:
        # idle TLS keep-alive connections of SDK clients would hold a graceful shutdown for the
        # 30 s asyncio gives a TLS close; a test server has nothing worth waiting for
        server.should_exit = True
        server.force_exit = True
        thread.join(timeout=10)
        sock.close()
        if thread.is_alive():
            raise RuntimeError("the Azure emulator did not stop within 10 s")


@contextlib.contextmanager
def serve_for_tests(home: Path, **overrides: Any) -> Iterator[RunningEmulator]:
    """`fast_config` with its state file and certificates under `home`, served over TLS."""
    with serve_tls(fast_config(home / "azure.json", **overrides), home / "certs") as running:
        yield running
