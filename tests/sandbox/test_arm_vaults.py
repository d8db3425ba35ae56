"""Key Vault's management plane (azure-mgmt-keyvault) against the emulator: names, soft delete, purge."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.keyvault import KeyVaultManagementClient
from azure.mgmt.resource.resources import ResourceManagementClient

from sandbox.azure.testing import (
    TEST_SUBSCRIPTION,
    TEST_TENANT,
    RunningEmulator,
    serve_for_tests,
)

pytestmark = pytest.mark.sandbox

SUB = TEST_SUBSCRIPTION
LOCATION = "westeurope"
TAGS = {"managed-by": "mmrv-migrate"}


def error_code(exc: HttpResponseError) -> str:
    return str(exc.error.code)  # type: ignore[union-attr]


def vault_body(**properties: Any) -> dict[str, Any]:
    return {
        "location": LOCATION,
        "tags": TAGS,
        "properties": {
            "tenantId": TEST_TENANT,
            "sku": {"family": "A", "name": "standard"},
            "enableRbacAuthorization": True,
            **properties,
        },
    }


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    with serve_for_tests(tmp_path_factory.mktemp("azure-vaults")) as running:
        running.arm_client(ResourceManagementClient, SUB).resource_groups.create_or_update(
            "rg-kv", {"location": LOCATION}
        )
        running.arm_client(ResourceManagementClient, SUB).resource_groups.create_or_update(
            "rg-kv-other", {"location": LOCATION}
        )
        yield running


@pytest.fixture(scope="module")
def vaults(emulator: RunningEmulator) -> KeyVaultManagementClient:
    return emulator.arm_client(KeyVaultManagementClient, SUB)


def test_vault_lifecycle(emulator: RunningEmulator, vaults: KeyVaultManagementClient) -> None:
    vault = vaults.vaults.begin_create_or_update(
        "rg-kv", "kv-mmrv-life", vault_body(enablePurgeProtection=True)
    ).result()
    assert vault.id == f"/subscriptions/{SUB}/resourceGroups/rg-kv/providers/Microsoft.KeyVault/vaults/kv-mmrv-life"
    assert (vault.type, vault.location, vault.tags) == ("Microsoft.KeyVault/vaults", LOCATION, TAGS)
    props = vault.properties
    assert props.vault_uri == f"{emulator.url}/kv/kv-mmrv-life/"
    assert (props.tenant_id, props.sku.name, props.provisioning_state) == (TEST_TENANT, "standard", "Succeeded")
    assert (props.enable_rbac_authorization, props.enable_soft_delete, props.soft_delete_retention_in_days) == (
        True,
        True,
        90,
    )
    assert props.enable_purge_protection is True
    assert [v.name for v in vaults.vaults.list_by_resource_group("rg-kv")] == ["kv-mmrv-life"]
    assert "kv-mmrv-life" in [v.name for v in vaults.vaults.list_by_subscription()]
    updated = vaults.vaults.update("rg-kv", "kv-mmrv-life", {"tags": {**TAGS, "env": "prod"}})
    assert updated.tags["env"] == "prod"
    with pytest.raises(HttpResponseError) as info:
        vaults.vaults.begin_create_or_update("rg-kv", "kv-mmrv-life", vault_body(enablePurgeProtection=False))
    assert info.value.status_code == 400  # purge protection is for ever


@pytest.mark.parametrize("name", ["kv", "9starts-with-digit", "ends-with-", "double--hyphen", "x" * 25])
def test_vault_names_follow_the_rules(vaults: KeyVaultManagementClient, name: str) -> None:
    with pytest.raises(HttpResponseError) as info:
        vaults.vaults.begin_create_or_update("rg-kv", name, vault_body())
    assert (info.value.status_code, error_code(info.value)) == (400, "VaultNameNotValid")
    assert (
        vaults.vaults.check_name_availability({"name": name, "type": "Microsoft.KeyVault/vaults"}).name_available
        is False
    )


def test_vault_names_are_global(vaults: KeyVaultManagementClient) -> None:
    vaults.vaults.begin_create_or_update("rg-kv", "kv-mmrv-taken", vault_body()).result()
    with pytest.raises(HttpResponseError) as info:
        vaults.vaults.begin_create_or_update("rg-kv-other", "kv-mmrv-taken", vault_body())
    assert (info.value.status_code, error_code(info.value)) == (409, "VaultAlreadyExists")
    status = vaults.vaults.check_name_availability({"name": "kv-mmrv-taken", "type": "Microsoft.KeyVault/vaults"})
    assert (status.name_available, status.reason) == (False, "AlreadyExists")


def test_a_deleted_vault_is_soft_deleted_then_recovered_or_purged(vaults: KeyVaultManagementClient) -> None:
    vaults.vaults.begin_create_or_update("rg-kv", "kv-mmrv-soft", vault_body()).result()
    vaults.vaults.delete("rg-kv", "kv-mmrv-soft")
    with pytest.raises(ResourceNotFoundError):
        vaults.vaults.get("rg-kv", "kv-mmrv-soft")
    deleted = vaults.vaults.get_deleted("kv-mmrv-soft", LOCATION)
    assert deleted.properties.vault_id.endswith("/vaults/kv-mmrv-soft")
    assert deleted.properties.scheduled_purge_date > deleted.properties.deletion_date
    assert "kv-mmrv-soft" in [v.name for v in vaults.vaults.list_deleted()]
    with pytest.raises(HttpResponseError) as info:
        vaults.vaults.begin_create_or_update("rg-kv", "kv-mmrv-soft", vault_body())
    assert (info.value.status_code, error_code(info.value)) == (409, "ConflictError")
    recovered = vaults.vaults.begin_create_or_update("rg-kv", "kv-mmrv-soft", vault_body(createMode="recover")).result()
    assert recovered.properties.provisioning_state == "Succeeded"
    assert "kv-mmrv-soft" not in [v.name for v in vaults.vaults.list_deleted()]
    vaults.vaults.delete("rg-kv", "kv-mmrv-soft")
    vaults.vaults.begin_purge_deleted("kv-mmrv-soft", LOCATION).result()
    assert "kv-mmrv-soft" not in [v.name for v in vaults.vaults.list_deleted()]
    assert vaults.vaults.check_name_availability(
        {"name": "kv-mmrv-soft", "type": "Microsoft.KeyVault/vaults"}
    ).name_available


def test_purge_protection_forbids_purging(vaults: KeyVaultManagementClient) -> None:
    vaults.vaults.begin_create_or_update("rg-kv", "kv-mmrv-guarded", vault_body(enablePurgeProtection=True)).result()
    vaults.vaults.delete("rg-kv", "kv-mmrv-guarded")
    with pytest.raises(HttpResponseError) as info:
        vaults.vaults.begin_purge_deleted("kv-mmrv-guarded", LOCATION)
    assert info.value.status_code == 409


def test_soft_delete_cannot_be_switched_off(vaults: KeyVaultManagementClient) -> None:
    with pytest.raises(HttpResponseError) as info:
        vaults.vaults.begin_create_or_update("rg-kv", "kv-mmrv-nosoft", vault_body(enableSoftDelete=False))
    assert info.value.status_code == 400


def test_the_access_model_defaults_by_api_version(emulator: RunningEmulator) -> None:
    """API 2026-02-01 and later create RBAC vaults by default; earlier ones use access policies."""
    body = {"location": LOCATION, "properties": {"tenantId": TEST_TENANT, "sku": {"family": "A", "name": "standard"}}}
    current = emulator.arm_client(KeyVaultManagementClient, SUB)
    assert (
        current.vaults.begin_create_or_update("rg-kv", "kv-mmrv-new", body)
        .result()
        .properties.enable_rbac_authorization
    )
    older = emulator.arm_client(KeyVaultManagementClient, SUB, api_version="2024-11-01")
    legacy = older.vaults.begin_create_or_update("rg-kv", "kv-mmrv-old", body).result()
    assert legacy.properties.enable_rbac_authorization is False
    rewritten = current.vaults.begin_create_or_update("rg-kv", "kv-mmrv-old", body).result()
    assert rewritten.properties.enable_rbac_authorization is False  # an update keeps the model
