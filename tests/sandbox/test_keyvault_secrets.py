"""The Key Vault data plane of the emulator, driven by azure-keyvault-secrets' SecretClient.

Proves the challenge protocol (401 + WWW-Authenticate, then success), Azure RBAC on the data
plane (no role: 403 ForbiddenByRbac; Secrets User: read; Officer: write), access-policy
vaults, versions, soft delete with recover and purge, paging, and that values stay out of logs.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.keyvault import KeyVaultManagementClient
from azure.mgmt.msi import ManagedServiceIdentityClient
from azure.mgmt.resource.resources import ResourceManagementClient

from sandbox.azure.testing import (
    TEST_SUBSCRIPTION,
    TEST_TENANT,
    RunningEmulator,
    fast_config,
    serve_for_tests,
    serve_tls,
)
from sandbox.azure.tokens import OPERATOR_OID, mint_token

pytestmark = pytest.mark.sandbox

SUB = TEST_SUBSCRIPTION
RG = "rg-secrets"
LOCATION = "westeurope"
SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
SECRETS_OFFICER = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"


def grant(emulator: RunningEmulator, scope: str, role: str, principal: str) -> None:
    emulator.arm_client(AuthorizationManagementClient, SUB).role_assignments.create(
        scope,
        str(uuid.uuid5(uuid.NAMESPACE_URL, f"{scope}|{role}|{principal}")),
        {
            "properties": {
                "roleDefinitionId": f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{role}",
                "principalId": principal,
            }
        },
    )


def make_vault(emulator: RunningEmulator, name: str, **properties: Any) -> Any:
    body = {
        "location": LOCATION,
        "properties": {
            "tenantId": TEST_TENANT,
            "sku": {"family": "A", "name": "standard"},
            "enableRbacAuthorization": True,
            **properties,
        },
    }
    return emulator.arm_client(KeyVaultManagementClient, SUB).vaults.begin_create_or_update(RG, name, body).result()


def make_identity(emulator: RunningEmulator, name: str) -> str:
    client = emulator.arm_client(ManagedServiceIdentityClient, SUB)
    return str(client.user_assigned_identities.create_or_update(RG, name, {"location": LOCATION}).principal_id)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    with serve_for_tests(tmp_path_factory.mktemp("azure-keyvault")) as running:
        running.arm_client(ResourceManagementClient, SUB).resource_groups.create_or_update(RG, {"location": LOCATION})
        yield running


@pytest.fixture(scope="module")
def vault(emulator: RunningEmulator) -> Any:
    """An RBAC vault where the operator is Secrets Officer (as the platform phase sets it up)."""
    made = make_vault(emulator, "kv-mmrv-data")
    grant(emulator, made.id, SECRETS_OFFICER, OPERATOR_OID)
    return made


@pytest.fixture(scope="module")
def http(emulator: RunningEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(verify=str(emulator.ca_path)) as client:
        yield client


def vault_token(oid: str = OPERATOR_OID, audience: str = "https://vault.azure.net") -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(oid, TEST_TENANT, audience=audience)}"}


def test_no_token_gets_the_challenge_then_the_sdk_succeeds(
    emulator: RunningEmulator, vault: Any, http: httpx.Client
) -> None:
    uri = vault.properties.vault_uri
    response = http.get(f"{uri}secrets?api-version=7.5")
    assert response.status_code == 401
    challenge = response.headers["WWW-Authenticate"]
    assert f'authorization="https://login.microsoftonline.com/{TEST_TENANT}"' in challenge
    assert 'resource="https://vault.azure.net"' in challenge
    assert response.json()["error"]["code"] == "Unauthorized"
    client = emulator.secret_client(uri)
    assert client.set_secret("challenge", "answered").value == "answered"
    assert client.get_secret("challenge").value == "answered"


def test_tokens_for_other_services_and_missing_api_versions_are_refused(vault: Any, http: httpx.Client) -> None:
    uri = vault.properties.vault_uri
    arm_token = http.get(f"{uri}secrets?api-version=7.5", headers=vault_token(audience="https://management.azure.com"))
    assert arm_token.status_code == 401 and "AKV10022" in arm_token.json()["error"]["message"]
    no_version = http.get(f"{uri}secrets", headers=vault_token())
    assert no_version.status_code == 400


def test_versions_properties_and_ids(emulator: RunningEmulator, vault: Any, http: httpx.Client) -> None:
    client = emulator.secret_client(vault.properties.vault_uri)
    first = client.set_secret("database-url", "postgres://one", content_type="text/plain", tags={"from": "aws"})
    second = client.set_secret("database-url", "postgres://two")
    assert first.properties.version != second.properties.version
    assert (first.name, first.properties.content_type, first.properties.tags) == (
        "database-url",
        "text/plain",
        {"from": "aws"},
    )
    assert first.properties.enabled is True and first.properties.created_on is not None
    assert first.properties.recovery_level == "Recoverable+Purgeable"
    assert client.get_secret("database-url").value == "postgres://two"
    assert client.get_secret("database-url", first.properties.version).value == "postgres://one"
    versions = {p.version for p in client.list_properties_of_secret_versions("database-url")}
    assert versions == {first.properties.version, second.properties.version}
    assert "database-url" in {p.name for p in client.list_properties_of_secrets()}
    updated = client.update_secret_properties("database-url", content_type="application/x-url", tags={"env": "stg"})
    assert (updated.content_type, updated.tags, updated.version) == (
        "application/x-url",
        {"env": "stg"},
        second.properties.version,
    )
    resolved = http.get(f"{second.id}?api-version=7.5", headers=vault_token())
    assert resolved.json()["value"] == "postgres://two"  # the id handed out resolves
    client.update_secret_properties("database-url", first.properties.version, enabled=False)
    with pytest.raises(HttpResponseError) as disabled:
        client.get_secret("database-url", first.properties.version)
    assert disabled.value.status_code == 403


def test_reading_needs_a_role_on_the_vault(emulator: RunningEmulator, vault: Any) -> None:
    emulator.secret_client(vault.properties.vault_uri).set_secret("api-key", "s3cr3t")
    reader = make_identity(emulator, "id-reader")
    as_reader = emulator.secret_client(vault.properties.vault_uri, oid=reader)
    with pytest.raises(HttpResponseError) as refused:
        as_reader.get_secret("api-key")
    assert refused.value.status_code == 403
    assert refused.value.error.code == "Forbidden"  # type: ignore[union-attr]
    assert "ForbiddenByRbac" in refused.value.response.text()
    grant(emulator, vault.id, SECRETS_USER, reader)
    assert as_reader.get_secret("api-key").value == "s3cr3t"
    assert "api-key" in {p.name for p in as_reader.list_properties_of_secrets()}
    with pytest.raises(HttpResponseError) as no_write:
        as_reader.set_secret("api-key", "overwritten")
    assert no_write.value.status_code == 403


def test_a_role_at_the_resource_group_covers_the_vault(emulator: RunningEmulator, vault: Any) -> None:
    emulator.secret_client(vault.properties.vault_uri).set_secret("group-scoped", "yes")
    principal = make_identity(emulator, "id-group-reader")
    grant(emulator, f"/subscriptions/{SUB}/resourceGroups/{RG}", SECRETS_USER, principal)
    assert emulator.secret_client(vault.properties.vault_uri, oid=principal).get_secret("group-scoped").value == "yes"


def test_soft_delete_recover_and_purge(emulator: RunningEmulator, vault: Any) -> None:
    client = emulator.secret_client(vault.properties.vault_uri)
    client.set_secret("session-key", "k1")
    deleted = client.begin_delete_secret("session-key").result()
    assert deleted.name == "session-key"
    assert deleted.recovery_id == f"{vault.properties.vault_uri}deletedsecrets/session-key"
    assert deleted.scheduled_purge_date > deleted.deleted_date
    with pytest.raises(ResourceNotFoundError):
        client.get_secret("session-key")
    assert "session-key" in {d.name for d in client.list_deleted_secrets()}
    with pytest.raises(ResourceExistsError):
        client.set_secret("session-key", "reuse")  # the name is held until recovered or purged
    client.begin_recover_deleted_secret("session-key").result()
    assert client.get_secret("session-key").value == "k1"
    client.begin_delete_secret("session-key").result()
    client.purge_deleted_secret("session-key")
    with pytest.raises(ResourceNotFoundError):
        client.get_deleted_secret("session-key")
    assert client.set_secret("session-key", "fresh").value == "fresh"


def test_purge_protection_forbids_purging_secrets(emulator: RunningEmulator) -> None:
    guarded = make_vault(emulator, "kv-mmrv-guarded", enablePurgeProtection=True)
    grant(emulator, guarded.id, SECRETS_OFFICER, OPERATOR_OID)
    client = emulator.secret_client(guarded.properties.vault_uri)
    assert client.set_secret("kept", "v").properties.recovery_level == "Recoverable"
    client.begin_delete_secret("kept").result()
    with pytest.raises(HttpResponseError) as info:
        client.purge_deleted_secret("kept")
    assert info.value.status_code == 403


def test_listing_pages_through_next_links(emulator: RunningEmulator) -> None:
    paged = make_vault(emulator, "kv-mmrv-paged")
    grant(emulator, paged.id, SECRETS_OFFICER, OPERATOR_OID)
    client = emulator.secret_client(paged.properties.vault_uri)
    for index in range(7):
        client.set_secret(f"s{index}", str(index))
    pages = list(client.list_properties_of_secrets(max_page_size=3).by_page())
    assert [len(list(page)) for page in pages] == [3, 3, 1]


def test_access_policy_vaults_check_the_policy(emulator: RunningEmulator) -> None:
    policy = {"tenantId": TEST_TENANT, "objectId": OPERATOR_OID, "permissions": {"secrets": ["get", "set", "list"]}}
    legacy = make_vault(emulator, "kv-mmrv-policies", enableRbacAuthorization=False, accessPolicies=[policy])
    assert legacy.properties.enable_rbac_authorization is False
    client = emulator.secret_client(legacy.properties.vault_uri)
    assert client.set_secret("legacy", "ok").value == "ok"
    stranger = make_identity(emulator, "id-stranger")
    with pytest.raises(HttpResponseError) as info:
        emulator.secret_client(legacy.properties.vault_uri, oid=stranger).get_secret("legacy")
    assert info.value.status_code == 403 and "AccessDenied" in info.value.response.text()
    with pytest.raises(HttpResponseError):
        client.begin_delete_secret("legacy")  # no delete permission in the policy


def test_secret_values_never_reach_the_log(
    emulator: RunningEmulator, vault: Any, caplog: pytest.LogCaptureFixture
) -> None:
    value = f"never-log-{uuid.uuid4().hex}"
    with caplog.at_level(logging.DEBUG):
        client = emulator.secret_client(vault.properties.vault_uri)
        client.set_secret("quiet", value)
        assert client.get_secret("quiet").value == value
    emulator_records = [r for r in caplog.records if r.name.startswith(("sandbox", "uvicorn"))]
    assert emulator_records, "the emulator logs its requests"
    assert not any(value in r.getMessage() for r in emulator_records)


def test_secrets_survive_a_restart(tmp_path: Path) -> None:
    config = fast_config(tmp_path / "azure.json")
    with serve_tls(config, tmp_path / "certs") as first:
        first.arm_client(ResourceManagementClient, SUB).resource_groups.create_or_update(RG, {"location": LOCATION})
        made = make_vault(first, "kv-mmrv-restart")
        grant(first, made.id, SECRETS_OFFICER, OPERATOR_OID)
        first.secret_client(made.properties.vault_uri).set_secret("kept", "across-restarts")
        port = first.port
    with serve_tls(fast_config(tmp_path / "azure.json"), tmp_path / "certs", port=port) as second:
        assert second.secret_client(made.properties.vault_uri).get_secret("kept").value == "across-restarts"
