"""The Key Vault gateway through the official SDK: against the ARM + Key Vault emulator over TLS, and a
tiny TLS server for 429/503. Values go in, fingerprints come out; errors name vault, secret and role."""

from __future__ import annotations

import http.server
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from migration.clouds.azure import ArmGateway
from migration.clouds.keyvault import KeyVaultGateway, vault_name_of
from migration.errors import NotFoundError, PermanentError, TransientError
from migration.platform import ROLE_KEY_VAULT_SECRETS_OFFICER, ROLE_KEY_VAULT_SECRETS_USER
from migration.secrets import SecretValue, fingerprint
from migration.settings import AzureSettings
from sandbox.azure.testing import TEST_SUBSCRIPTION, TEST_TENANT, RunningEmulator, serve_for_tests
from sandbox.azure.tokens import ALL_SANDBOX_AUDIENCES, mint_token

pytestmark = pytest.mark.sandbox

GROUP = f"/subscriptions/{TEST_SUBSCRIPTION}/resourceGroups/rg-kv"
VAULT = f"{GROUP}/providers/Microsoft.KeyVault/vaults/kv-gateway"
VALUE = "s3cr3t-value-that-must-not-leak"


@pytest.fixture()
def emulator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningEmulator]:
    with serve_for_tests(tmp_path) as running:
        token = mint_token(running.config.operator_oids[0], TEST_TENANT, audience=ALL_SANDBOX_AUDIENCES)
        for key, value in {
            "MMRV_ARM_URL": running.url,
            "MMRV_CA_BUNDLE": str(running.ca_path),
            "MMRV_AZURE_ACCESS_TOKEN": token,
            "MMRV_ARM_POLL_SECONDS": "0.05",
            "MMRV_KEYVAULT_VERIFY_CHALLENGE_RESOURCE": "false",
        }.items():
            monkeypatch.setenv(key, value)
        yield running


def _vault(emulator: RunningEmulator) -> tuple[ArmGateway, str]:
    arm = ArmGateway(AzureSettings(), TEST_SUBSCRIPTION)
    arm.put("Microsoft.Resources/resourceGroups", GROUP, {"location": "westeurope"})
    body = {
        "location": "westeurope",
        "properties": {"tenantId": TEST_TENANT, "sku": {"family": "A", "name": "standard"},
                       "enableRbacAuthorization": True},
    }  # fmt: skip
    uri = arm.put("Microsoft.KeyVault/vaults", VAULT, body)["properties"]["vaultUri"]
    return arm, uri


def _grant(arm: ArmGateway, emulator: RunningEmulator, role: str, name: str) -> str:
    assignment = f"{VAULT}/providers/Microsoft.Authorization/roleAssignments/{name}"
    role_id = f"/subscriptions/{TEST_SUBSCRIPTION}/providers/Microsoft.Authorization/roleDefinitions/{role}"
    arm.put(
        "Microsoft.Authorization/roleAssignments",
        assignment,
        {"properties": {"roleDefinitionId": role_id, "principalId": emulator.config.operator_oids[0]}},
    )
    return assignment


def test_write_read_back_and_fingerprints_never_values(emulator: RunningEmulator) -> None:
    arm, uri = _vault(emulator)
    _grant(arm, emulator, ROLE_KEY_VAULT_SECRETS_OFFICER, "11111111-1111-4111-8111-111111111111")
    kv = KeyVaultGateway(AzureSettings(), uri)
    assert kv.vault == "kv-gateway"
    assert kv.find_secret("db-password") is None
    version = kv.set_secret("db-password", SecretValue(VALUE), tags={"managed-by": "mmrv-migrate", "source": "x"})
    found = kv.find_secret("db-password")
    assert found is not None and found.version == version and found.fingerprint == fingerprint(VALUE)
    assert found.tags == {"managed-by": "mmrv-migrate", "source": "x"}
    assert VALUE not in repr(found) and fingerprint(VALUE) not in repr(found)
    assert kv.get_version("db-password", version) == found
    with pytest.raises(NotFoundError):
        kv.get_version("db-password", "0" * 32)
    assert emulator.secret_client(uri).get_secret("db-password").value == VALUE

    emulator.secret_client(uri).update_secret_properties("db-password", enabled=False)
    with pytest.raises(PermanentError, match="'db-password': the secret is disabled in Key Vault"):
        kv.find_secret("db-password")
    emulator.secret_client(uri).update_secret_properties("db-password", enabled=True)

    emulator.secret_client(uri).begin_delete_secret("db-password").wait()
    assert kv.find_secret("db-password") is None  # deleted: absent
    with pytest.raises(PermanentError, match="still recoverable: recover it") as info:
        kv.set_secret("db-password", SecretValue(VALUE), tags={})
    assert info.value.status == 409 and VALUE not in str(info.value)


def test_forbidden_names_the_vault_the_secret_and_the_missing_role(emulator: RunningEmulator) -> None:
    arm, uri = _vault(emulator)
    kv = KeyVaultGateway(AzureSettings(), uri, "kv-gateway")
    with pytest.raises(PermanentError) as info:
        kv.find_secret("db-password")
    read = str(info.value)
    assert "kv-gateway" in read and "'db-password'" in read and info.value.status == 403
    assert "Key Vault Secrets User" in read and "Key Vault Secrets Officer" in read

    _grant(arm, emulator, ROLE_KEY_VAULT_SECRETS_USER, "22222222-2222-4222-8222-222222222222")
    assert kv.find_secret("db-password") is None  # reading is allowed now
    with pytest.raises(PermanentError) as info:
        kv.set_secret("db-password", SecretValue(VALUE), tags={})
    write = str(info.value)
    assert "write of secret 'db-password'" in write and "needs the role Key Vault Secrets Officer" in write
    assert VALUE not in write
    assert info.value.__context__ is None and info.value.__cause__ is None  # no SDK request (with the value) chained


class _StatusHandler(http.server.BaseHTTPRequestHandler):
    status = 503

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        body = b'{"error": {"code": "Throttled", "message": "simulated"}}'
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Retry-After", "0")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.mark.parametrize("status", [429, 503, 500])
def test_throttling_and_server_errors_are_transient(
    status: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ca_path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    handler = type("Handler", (_StatusHandler,), {"status": status})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(context)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("MMRV_CA_BUNDLE", str(ca_path))
        monkeypatch.setenv("MMRV_AZURE_ACCESS_TOKEN", "token")
        monkeypatch.setenv("MMRV_ARM_RETRIES", "0")
        monkeypatch.setenv("MMRV_KEYVAULT_VERIFY_CHALLENGE_RESOURCE", "false")
        uri = f"https://127.0.0.1:{server.server_address[1]}/kv/kv-gateway/"
        with pytest.raises(TransientError) as info:
            KeyVaultGateway(AzureSettings(), uri).find_secret("db-password")
        assert info.value.status == status and "kv-gateway: read of secret 'db-password'" in str(info.value)
    finally:
        server.shutdown()
        server.server_close()


def test_an_unreachable_vault_is_transient(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MMRV_AZURE_ACCESS_TOKEN", "token")
    monkeypatch.setenv("MMRV_ARM_RETRIES", "0")
    with pytest.raises(TransientError, match="connection problem"):
        KeyVaultGateway(AzureSettings(), "https://127.0.0.1:9/").find_secret("db-password")


def test_vault_names_from_uris() -> None:
    assert vault_name_of("https://kv-mmrv-staging.vault.azure.net/") == "kv-mmrv-staging"
    assert vault_name_of("https://127.0.0.1:8443/kv/kv-mmrv-staging/") == "kv-mmrv-staging"
