"""The ARM emulator against the official SDKs: resource groups, ACR, AKS, managed identities.

One HTTPS emulator per module (uvicorn's own TLS, a trustme CA), driven exactly as the tool
drives Azure: `begin_*().result()` must complete, models must come back whole, and every
rejection rule the tool could trip over must answer with ARM's status and code.
"""

from __future__ import annotations

import base64
import json
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.containerregistry import ContainerRegistryManagementClient
from azure.mgmt.containerregistry.models import Registry, Sku
from azure.mgmt.containerservice import ContainerServiceClient
from azure.mgmt.msi import ManagedServiceIdentityClient
from azure.mgmt.resource.resources import ResourceManagementClient

from sandbox.azure.config import EmulatorConfig
from sandbox.azure.testing import (
    TEST_OTHER_SUBSCRIPTION,
    TEST_SUBSCRIPTION,
    TEST_TENANT,
    RunningEmulator,
    fast_config,
    serve_for_tests,
    serve_tls,
)
from sandbox.azure.tokens import OPERATOR_OID, mint_token

pytestmark = pytest.mark.sandbox

SUB, OTHER_SUB, TENANT = TEST_SUBSCRIPTION, TEST_OTHER_SUBSCRIPTION, TEST_TENANT
LOCATION = "westeurope"
KUBERNETES_URL = "https://127.0.0.1:6443/clusters/{cluster}"
TAGS = {"managed-by": "mmrv-migrate", "mmrv-migrate/spec": "mmrv"}
ACR_API = "api-version=2025-11-01"


def make_config(state_file: Path) -> EmulatorConfig:
    return fast_config(state_file, kubernetes_url=KUBERNETES_URL)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    with serve_for_tests(tmp_path_factory.mktemp("azure"), kubernetes_url=KUBERNETES_URL) as running:
        yield running


@pytest.fixture(scope="module")
def groups(emulator: RunningEmulator) -> ResourceManagementClient:
    return emulator.arm_client(ResourceManagementClient, SUB)


@pytest.fixture(scope="module")
def registries(emulator: RunningEmulator) -> ContainerRegistryManagementClient:
    return emulator.arm_client(ContainerRegistryManagementClient, SUB)


@pytest.fixture(scope="module")
def clusters(emulator: RunningEmulator) -> ContainerServiceClient:
    return emulator.arm_client(ContainerServiceClient, SUB)


@pytest.fixture(scope="module")
def identities(emulator: RunningEmulator) -> ManagedServiceIdentityClient:
    return emulator.arm_client(ManagedServiceIdentityClient, SUB)


@pytest.fixture(scope="module")
def http(emulator: RunningEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emulator.url, verify=str(emulator.ca_path)) as client:
        yield client


def bearer(
    oid: str = OPERATOR_OID, audience: str = "https://management.azure.com", tid: str = TENANT
) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(oid, tid, audience=audience)}"}


def error_code(exc: HttpResponseError) -> str:
    return str(exc.error.code)  # type: ignore[union-attr]


def make_group(groups: ResourceManagementClient, name: str) -> None:
    groups.resource_groups.create_or_update(name, {"location": LOCATION, "tags": TAGS})


def cluster_body(version: str = "1.30", **properties: Any) -> dict[str, Any]:
    return {
        "location": LOCATION,
        "tags": TAGS,
        "identity": {"type": "SystemAssigned"},
        "properties": {
            "kubernetesVersion": version,
            "dnsPrefix": "mmrv",
            "agentPoolProfiles": [
                {
                    "name": "system",
                    "mode": "System",
                    "vmSize": "Standard_D2s_v5",
                    "count": 1,
                    "enableAutoScaling": True,
                    "minCount": 1,
                    "maxCount": 3,
                },
                {"name": "apps", "mode": "User", "vmSize": "Standard_D4s_v5", "count": 2},
            ],
            "oidcIssuerProfile": {"enabled": True},
            "securityProfile": {"workloadIdentity": {"enabled": True}},
            "aadProfile": {"managed": True, "enableAzureRBAC": True},
            "networkProfile": {"networkPlugin": "azure", "networkPolicy": "azure"},
            **properties,
        },
    }


# --- the front door ------------------------------------------------------------------------


def test_missing_api_version_is_refused(http: httpx.Client) -> None:
    response = http.get(f"/subscriptions/{SUB}/resourcegroups", headers=bearer())
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "MissingApiVersionParameter"


def test_requests_without_a_token_are_refused(http: httpx.Client) -> None:
    response = http.get(f"/subscriptions/{SUB}/resourcegroups?api-version=2025-04-01")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "AuthenticationFailed"
    assert "WWW-Authenticate" in response.headers


def test_a_token_for_another_service_or_tenant_is_refused(http: httpx.Client) -> None:
    path = f"/subscriptions/{SUB}/resourcegroups?api-version=2025-04-01"
    vault_token = http.get(path, headers=bearer(audience="https://vault.azure.net"))
    assert (vault_token.status_code, vault_token.json()["error"]["code"]) == (401, "InvalidAuthenticationToken")
    other_tenant = http.get(path, headers=bearer(tid="11111111-2222-4333-8444-555555555555"))
    assert other_tenant.json()["error"]["code"] == "InvalidAuthenticationTokenTenant"
    garbage = http.get(path, headers={"Authorization": "Bearer not-a-jwt"})
    assert garbage.status_code == 401


def test_only_the_operator_may_use_arm(http: httpx.Client) -> None:
    response = http.get(
        f"/subscriptions/{SUB}/resourcegroups?api-version=2025-04-01",
        headers=bearer(oid="3c0d2f1e-0000-4000-8000-00000000beef"),
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "AuthorizationFailed"


def test_unknown_subscription_is_not_found(emulator: RunningEmulator) -> None:
    client = emulator.arm_client(ResourceManagementClient, "00000000-0000-4000-8000-000000000000")
    with pytest.raises(ResourceNotFoundError) as info:
        client.resource_groups.get("rg-anything")
    assert error_code(info.value) == "SubscriptionNotFound"


# --- resource groups -------------------------------------------------------------------------


def test_resource_group_lifecycle(groups: ResourceManagementClient) -> None:
    created = groups.resource_groups.create_or_update("rg-life", {"location": "West Europe", "tags": TAGS})
    assert created.id == f"/subscriptions/{SUB}/resourceGroups/rg-life"
    assert (created.location, created.tags, created.properties.provisioning_state) == (LOCATION, TAGS, "Succeeded")
    assert groups.resource_groups.check_existence("rg-life") is True
    assert groups.resource_groups.check_existence("rg-never") is False
    assert "rg-life" in [g.name for g in groups.resource_groups.list()]
    updated = groups.resource_groups.update("rg-life", {"tags": {**TAGS, "env": "staging"}})
    assert updated.tags["env"] == "staging"
    with pytest.raises(HttpResponseError) as info:
        groups.resource_groups.create_or_update("rg-life", {"location": "northeurope"})
    assert (info.value.status_code, error_code(info.value)) == (409, "InvalidResourceGroupLocation")
    groups.resource_groups.begin_delete("rg-life").result()
    assert groups.resource_groups.check_existence("rg-life") is False
    with pytest.raises(ResourceNotFoundError) as missing:
        groups.resource_groups.get("rg-life")
    assert error_code(missing.value) == "ResourceGroupNotFound"


def test_deleting_a_group_deletes_what_is_in_it(
    groups: ResourceManagementClient, registries: ContainerRegistryManagementClient
) -> None:
    make_group(groups, "rg-cascade")
    registries.registries.begin_create(
        "rg-cascade", "mmrvcascadeacr", {"location": LOCATION, "sku": {"name": "Basic"}}
    ).result()
    groups.resource_groups.begin_delete("rg-cascade").result()
    assert registries.registries.check_name_availability({"name": "mmrvcascadeacr"}).name_available is True


def test_unknown_resource_group_is_not_found(registries: ContainerRegistryManagementClient) -> None:
    with pytest.raises(ResourceNotFoundError) as info:
        registries.registries.begin_create(
            "rg-missing", "mmrvmissingacr", {"location": LOCATION, "sku": {"name": "Basic"}}
        )
    assert error_code(info.value) == "ResourceGroupNotFound"


# --- long-running operations, as Azure runs them -------------------------------------------------


def test_put_is_long_running_through_azure_async_operation(
    groups: ResourceManagementClient, http: httpx.Client
) -> None:
    make_group(groups, "rg-lro")
    path = f"/subscriptions/{SUB}/resourceGroups/rg-lro/providers/Microsoft.ContainerRegistry/registries/mmrvlroacr"
    created = http.put(f"{path}?{ACR_API}", headers=bearer(), json={"location": LOCATION, "sku": {"name": "Standard"}})
    assert created.status_code == 201
    assert created.json()["properties"]["provisioningState"] == "Creating"
    status_url = created.headers["Azure-AsyncOperation"]
    assert http.get(status_url, headers=bearer()).json()["status"] == "InProgress"
    assert http.get(f"{path}?{ACR_API}", headers=bearer()).json()["properties"]["provisioningState"] == "Creating"
    assert http.get(status_url, headers=bearer()).json()["status"] == "Succeeded"
    assert http.get(f"{path}?{ACR_API}", headers=bearer()).json()["properties"]["provisioningState"] == "Succeeded"
    deleted = http.delete(f"{path}?{ACR_API}", headers=bearer())
    assert deleted.status_code == 202
    assert http.get(deleted.headers["Location"], headers=bearer()).status_code == 202
    assert http.get(deleted.headers["Location"], headers=bearer()).status_code == 204
    assert http.get(f"{path}?{ACR_API}", headers=bearer()).status_code == 404


def test_an_operation_nobody_polls_still_completes(
    groups: ResourceManagementClient, registries: ContainerRegistryManagementClient
) -> None:
    """A client that crashed after the PUT finds the resource finished, as in Azure."""
    make_group(groups, "rg-unpolled")
    poller = registries.registries.begin_create(
        "rg-unpolled", "mmrvunpolledacr", {"location": LOCATION, "sku": {"name": "Basic"}}, polling=False
    )
    assert poller.result().provisioning_state == "Creating"
    time.sleep(0.6)  # the fixture's LroSettings.seconds is 0.5
    assert registries.registries.get("rg-unpolled", "mmrvunpolledacr").provisioning_state == "Succeeded"


def test_injected_failures_fail_the_operation(
    emulator: RunningEmulator, groups: ResourceManagementClient, registries: ContainerRegistryManagementClient
) -> None:
    make_group(groups, "rg-faults")
    emulator.config.lro.fail_next["Microsoft.ContainerRegistry/registries"] = 1
    with pytest.raises(HttpResponseError):
        registries.registries.begin_create(
            "rg-faults", "mmrvfaultyacr", {"location": LOCATION, "sku": {"name": "Basic"}}
        ).result()
    assert registries.registries.get("rg-faults", "mmrvfaultyacr").provisioning_state == "Failed"
    again = registries.registries.begin_create(
        "rg-faults", "mmrvfaultyacr", {"location": LOCATION, "sku": {"name": "Basic"}}
    ).result()
    assert again.provisioning_state == "Succeeded"


# --- container registries ------------------------------------------------------------------------


def test_registry_lifecycle(groups: ResourceManagementClient, registries: ContainerRegistryManagementClient) -> None:
    make_group(groups, "rg-acr")
    wanted = Registry(location=LOCATION, sku=Sku(name="Premium"), tags=TAGS, admin_user_enabled=False)
    registry = registries.registries.begin_create("rg-acr", "mmrvAcr01", wanted).result()
    assert registry.id == (
        f"/subscriptions/{SUB}/resourceGroups/rg-acr/providers/Microsoft.ContainerRegistry/registries/mmrvAcr01"
    )
    assert (registry.type, registry.location, registry.tags) == (
        "Microsoft.ContainerRegistry/registries",
        LOCATION,
        TAGS,
    )
    assert registry.login_server == "mmrvacr01.azurecr.io"
    assert (registry.sku.name, registry.admin_user_enabled, registry.anonymous_pull_enabled) == (
        "Premium",
        False,
        False,
    )
    assert registry.provisioning_state == "Succeeded"
    assert registry.system_data.created_by == OPERATOR_OID
    assert [r.name for r in registries.registries.list_by_resource_group("rg-acr")] == ["mmrvAcr01"]
    assert "mmrvAcr01" in [r.name for r in registries.registries.list()]
    updated = registries.registries.begin_update("rg-acr", "mmrvAcr01", {"tags": {**TAGS, "x": "1"}}).result()
    assert updated.tags["x"] == "1"
    assert updated.login_server == registry.login_server
    status = registries.registries.check_name_availability(
        {"name": "mmrvacr01", "type": "Microsoft.ContainerRegistry/registries"}
    )
    assert (status.name_available, status.reason) == (False, "AlreadyExists")
    registries.registries.begin_delete("rg-acr", "mmrvAcr01").result()
    with pytest.raises(ResourceNotFoundError):
        registries.registries.get("rg-acr", "mmrvAcr01")


@pytest.mark.parametrize("name", ["acr", "has-hyphen", "x" * 51, "under_score"])
def test_registry_names_must_be_5_to_50_alphanumerics(
    groups: ResourceManagementClient, registries: ContainerRegistryManagementClient, name: str
) -> None:
    make_group(groups, "rg-acr-names")
    with pytest.raises(HttpResponseError) as info:
        registries.registries.begin_create("rg-acr-names", name, {"location": LOCATION, "sku": {"name": "Basic"}})
    assert info.value.status_code == 400
    assert registries.registries.check_name_availability({"name": name}).reason == "Invalid"


def test_a_registry_name_taken_elsewhere_is_already_in_use(
    emulator: RunningEmulator, groups: ResourceManagementClient, registries: ContainerRegistryManagementClient
) -> None:
    make_group(groups, "rg-acr-first")
    make_group(groups, "rg-acr-second")
    registries.registries.begin_create(
        "rg-acr-first", "mmrvtakenacr", {"location": LOCATION, "sku": {"name": "Basic"}}
    ).result()
    with pytest.raises(HttpResponseError) as info:
        registries.registries.begin_create(
            "rg-acr-second", "MmrvTakenAcr", {"location": LOCATION, "sku": {"name": "Basic"}}
        )
    assert (info.value.status_code, error_code(info.value)) == (409, "AlreadyInUse")
    assert "mmrvtakenacr.azurecr.io is already in use" in str(info.value)
    other = emulator.arm_client(ContainerRegistryManagementClient, OTHER_SUB)
    emulator.arm_client(ResourceManagementClient, OTHER_SUB).resource_groups.create_or_update(
        "rg-acr-other", {"location": LOCATION}
    )
    with pytest.raises(HttpResponseError) as across:
        other.registries.begin_create("rg-acr-other", "mmrvtakenacr", {"location": LOCATION, "sku": {"name": "Basic"}})
    assert error_code(across.value) == "AlreadyInUse"


# --- AKS ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(groups: ResourceManagementClient, clusters: ContainerServiceClient) -> Any:
    make_group(groups, "rg-aks")
    return clusters.managed_clusters.begin_create_or_update("rg-aks", "aks-mmrv", cluster_body()).result()


def test_cluster_comes_back_whole(
    cluster: Any, identities: ManagedServiceIdentityClient, groups: ResourceManagementClient
) -> None:
    assert (
        cluster.id
        == f"/subscriptions/{SUB}/resourceGroups/rg-aks/providers/Microsoft.ContainerService/managedClusters/aks-mmrv"
    )
    assert (cluster.provisioning_state, cluster.kubernetes_version, cluster.current_kubernetes_version) == (
        "Succeeded",
        "1.30",
        "1.30.14",
    )
    assert cluster.tags == TAGS
    issuer = cluster.oidc_issuer_profile.issuer_url
    assert issuer.startswith("https://127.0.0.1:") and issuer.endswith("/") and f"/oidc/{TENANT}/" in issuer
    assert cluster.security_profile.workload_identity.enabled is True
    assert (cluster.aad_profile.managed, cluster.aad_profile.enable_azure_rbac) == (True, True)
    assert cluster.network_profile.network_policy == "azure"
    assert cluster.identity.type == "SystemAssigned" and cluster.identity.principal_id
    assert cluster.identity.tenant_id == TENANT
    assert cluster.node_resource_group == f"MC_rg-aks_aks-mmrv_{LOCATION}"
    pools = {p.name: p for p in cluster.agent_pool_profiles}
    assert pools["system"].mode == "System" and pools["system"].enable_auto_scaling is True
    assert (pools["system"].min_count, pools["system"].max_count) == (1, 3)
    assert pools["apps"].current_orchestrator_version == "1.30.14"
    kubelet = cluster.identity_profile["kubeletidentity"]
    node_identity = identities.user_assigned_identities.get(cluster.node_resource_group, "aks-mmrv-agentpool")
    assert (kubelet.object_id, kubelet.client_id, kubelet.resource_id) == (
        node_identity.principal_id,
        node_identity.client_id,
        node_identity.id,
    )
    assert groups.resource_groups.get(cluster.node_resource_group).managed_by == cluster.id


def test_a_cluster_creation_is_long_running(groups: ResourceManagementClient, clusters: ContainerServiceClient) -> None:
    make_group(groups, "rg-aks-lro")
    poller = clusters.managed_clusters.begin_create_or_update("rg-aks-lro", "aks-lro", cluster_body())
    assert poller.result().provisioning_state == "Succeeded"
    again = clusters.managed_clusters.begin_create_or_update("rg-aks-lro", "aks-lro", cluster_body(), polling=False)
    assert again.result().provisioning_state == "Updating"
    with pytest.raises(HttpResponseError) as busy:
        clusters.managed_clusters.begin_create_or_update("rg-aks-lro", "aks-lro", cluster_body())
    assert (busy.value.status_code, error_code(busy.value)) == (409, "OperationNotAllowed")


def test_rereading_and_writing_back_a_cluster_keeps_its_identities(
    cluster: Any, clusters: ContainerServiceClient
) -> None:
    same = clusters.managed_clusters.begin_create_or_update("rg-aks", "aks-mmrv", cluster.as_dict()).result()
    assert same.identity.principal_id == cluster.identity.principal_id
    assert same.identity_profile["kubeletidentity"].object_id == cluster.identity_profile["kubeletidentity"].object_id
    assert same.oidc_issuer_profile.issuer_url == cluster.oidc_issuer_profile.issuer_url


@pytest.mark.parametrize("version", ["1.27", "1.30.99", "2.0.0"])
def test_unsupported_kubernetes_versions_are_refused(
    groups: ResourceManagementClient, clusters: ContainerServiceClient, version: str
) -> None:
    make_group(groups, "rg-aks-versions")
    with pytest.raises(HttpResponseError) as info:
        clusters.managed_clusters.begin_create_or_update("rg-aks-versions", "aks-old", cluster_body(version))
    assert (info.value.status_code, error_code(info.value)) == (400, "K8sVersionNotSupported")


def test_offered_versions_are_listed(clusters: ContainerServiceClient) -> None:
    listed = clusters.managed_clusters.list_kubernetes_versions(LOCATION)
    minors = {v.version: v for v in listed.values_property}
    assert set(minors) == {"1.29", "1.30", "1.31"}
    assert minors["1.30"].is_default is True
    assert set(minors["1.30"].patch_versions) == {"1.30.12", "1.30.14"}


def test_a_cluster_needs_a_system_pool(groups: ResourceManagementClient, clusters: ContainerServiceClient) -> None:
    make_group(groups, "rg-aks-pools")
    body = cluster_body()
    body["properties"]["agentPoolProfiles"] = [
        {"name": "apps", "mode": "User", "vmSize": "Standard_D4s_v5", "count": 1}
    ]
    with pytest.raises(HttpResponseError) as info:
        clusters.managed_clusters.begin_create_or_update("rg-aks-pools", "aks-nosystem", body)
    assert error_code(info.value) == "MustDefineAtLeastOneSystemPool"


def test_workload_identity_needs_the_oidc_issuer(
    groups: ResourceManagementClient, clusters: ContainerServiceClient
) -> None:
    make_group(groups, "rg-aks-wi")
    with pytest.raises(HttpResponseError) as info:
        clusters.managed_clusters.begin_create_or_update(
            "rg-aks-wi", "aks-wi", cluster_body(oidcIssuerProfile={"enabled": False})
        )
    assert info.value.status_code == 400


def test_agent_pools_are_a_sub_resource(cluster: Any, clusters: ContainerServiceClient) -> None:
    pools = {p.name: p for p in clusters.agent_pools.list("rg-aks", "aks-mmrv")}
    assert set(pools) == {"system", "apps"}
    assert pools["apps"].id == f"{cluster.id}/agentPools/apps"
    assert clusters.agent_pools.get("rg-aks", "aks-mmrv", "system").mode == "System"
    added = clusters.agent_pools.begin_create_or_update(
        "rg-aks", "aks-mmrv", "batch", {"properties": {"mode": "User", "vmSize": "Standard_D4s_v5", "count": 1}}
    ).result()
    assert added.provisioning_state == "Succeeded"
    names = [p.name for p in clusters.managed_clusters.get("rg-aks", "aks-mmrv").agent_pool_profiles]
    assert names == ["system", "apps", "batch"]
    clusters.agent_pools.begin_delete("rg-aks", "aks-mmrv", "batch").result()
    with pytest.raises(HttpResponseError) as info:
        clusters.agent_pools.begin_delete("rg-aks", "aks-mmrv", "system")
    assert info.value.status_code == 400


def test_kubeconfigs_point_at_the_sandbox_kubernetes(cluster: Any, clusters: ContainerServiceClient) -> None:
    user = clusters.managed_clusters.list_cluster_user_credentials("rg-aks", "aks-mmrv").kubeconfigs[0]
    assert user.name == "clusterUser"
    config = yaml.safe_load(bytes(user.value))
    assert config["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:6443/clusters/aks-mmrv"
    exec_args = config["users"][0]["user"]["exec"]["args"]
    assert "6dae42f8-4368-4678-94ff-3960e28e3630" in exec_args  # the AKS server application
    admin = clusters.managed_clusters.list_cluster_admin_credentials("rg-aks", "aks-mmrv").kubeconfigs[0]
    assert yaml.safe_load(bytes(admin.value))["users"][0]["user"]["token"]


def test_cluster_deletion_removes_the_node_resource_group(
    groups: ResourceManagementClient, clusters: ContainerServiceClient
) -> None:
    make_group(groups, "rg-aks-gone")
    made = clusters.managed_clusters.begin_create_or_update("rg-aks-gone", "aks-gone", cluster_body()).result()
    clusters.managed_clusters.begin_delete("rg-aks-gone", "aks-gone").result()
    assert groups.resource_groups.check_existence(made.node_resource_group) is False
    assert list(clusters.managed_clusters.list_by_resource_group("rg-aks-gone")) == []


# --- managed identities and federated credentials --------------------------------------------------


def test_identity_lifecycle(groups: ResourceManagementClient, identities: ManagedServiceIdentityClient) -> None:
    make_group(groups, "rg-ids")
    made = identities.user_assigned_identities.create_or_update(
        "rg-ids", "id-backend", {"location": LOCATION, "tags": TAGS}
    )
    assert made.type == "Microsoft.ManagedIdentity/userAssignedIdentities"
    assert made.principal_id and made.client_id and made.tenant_id == TENANT
    again = identities.user_assigned_identities.create_or_update(
        "rg-ids", "id-backend", {"location": LOCATION, "tags": {}}
    )
    assert (again.principal_id, again.client_id, again.tags) == (made.principal_id, made.client_id, {})
    assert [i.name for i in identities.user_assigned_identities.list_by_resource_group("rg-ids")] == ["id-backend"]
    identities.user_assigned_identities.delete("rg-ids", "id-backend")
    with pytest.raises(ResourceNotFoundError):
        identities.user_assigned_identities.get("rg-ids", "id-backend")


def test_federated_credentials_must_name_a_cluster_issuer(
    cluster: Any, identities: ManagedServiceIdentityClient
) -> None:
    identities.user_assigned_identities.create_or_update("rg-aks", "id-web", {"location": LOCATION})
    issuer = cluster.oidc_issuer_profile.issuer_url
    body = {
        "properties": {
            "issuer": issuer,
            "subject": "system:serviceaccount:mmrv:web",
            "audiences": ["api://AzureADTokenExchange"],
        }
    }
    made = identities.federated_identity_credentials.create_or_update("rg-aks", "id-web", "fic-web", body)
    assert (made.issuer, made.subject, made.audiences) == (
        issuer,
        "system:serviceaccount:mmrv:web",
        body["properties"]["audiences"],
    )
    assert [f.name for f in identities.federated_identity_credentials.list("rg-aks", "id-web")] == ["fic-web"]
    foreign = {"properties": {**body["properties"], "issuer": "https://oidc.example.com/somewhere/"}}
    with pytest.raises(HttpResponseError) as info:
        identities.federated_identity_credentials.create_or_update("rg-aks", "id-web", "fic-foreign", foreign)
    assert info.value.status_code == 400
    slashless = {"properties": {**body["properties"], "issuer": issuer.rstrip("/")}}
    with pytest.raises(HttpResponseError) as near:
        identities.federated_identity_credentials.create_or_update("rg-aks", "id-web", "fic-slash", slashless)
    assert "end with '/'" in str(near.value)


def test_oidc_discovery_is_served_at_the_issuer(cluster: Any, http: httpx.Client) -> None:
    issuer = cluster.oidc_issuer_profile.issuer_url
    document = http.get(f"{issuer}.well-known/openid-configuration").json()
    assert document["issuer"] == issuer


# --- state ------------------------------------------------------------------------------------------


def test_state_survives_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "azure.json"
    with serve_tls(make_config(state), tmp_path / "certs") as first:
        make_group(first.arm_client(ResourceManagementClient, SUB), "rg-restart")
        first.arm_client(ContainerRegistryManagementClient, SUB).registries.begin_create(
            "rg-restart", "mmrvrestartacr", {"location": LOCATION, "sku": {"name": "Basic"}, "tags": TAGS}
        ).result()
        made = (
            first.arm_client(ContainerServiceClient, SUB)
            .managed_clusters.begin_create_or_update("rg-restart", "aks-restart", cluster_body())
            .result()
        )
        port = first.port
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    assert json.loads(state.read_text())["format"] == 1
    with serve_tls(make_config(state), tmp_path / "certs", port=port) as second:
        registry = second.arm_client(ContainerRegistryManagementClient, SUB).registries.get(
            "rg-restart", "mmrvrestartacr"
        )
        assert (registry.tags, registry.provisioning_state) == (TAGS, "Succeeded")
        again = second.arm_client(ContainerServiceClient, SUB).managed_clusters.get("rg-restart", "aks-restart")
        assert again.oidc_issuer_profile.issuer_url == made.oidc_issuer_profile.issuer_url
        assert again.identity_profile["kubeletidentity"].object_id == made.identity_profile["kubeletidentity"].object_id


def test_kubeconfig_values_are_base64_on_the_wire(cluster: Any, http: httpx.Client) -> None:
    path = f"{cluster.id}/listClusterUserCredential?api-version=2026-08-01"
    value = http.post(path, headers=bearer()).json()["kubeconfigs"][0]["value"]
    assert yaml.safe_load(base64.b64decode(value))["kind"] == "Config"
