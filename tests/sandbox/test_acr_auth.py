"""The sandbox's ACRs as a client sees them, and the checks the emulators make of each other.

One sandbox (`sandbox.manager.up`, real servers behind the TLS proxy) for the module; ARM calls
go through the official SDKs, registry calls through the proxy as any registry client makes them.
"""

from __future__ import annotations

import base64
import dataclasses
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.core.exceptions import HttpResponseError
from azure.keyvault.secrets import SecretClient
from azure.mgmt.containerservice import ContainerServiceClient
from azure.mgmt.keyvault import KeyVaultManagementClient
from kubernetes import client, config

from sandbox.azure.tokens import OPERATOR_OID, SandboxCredential, mint_token
from sandbox.kube import build_kubeconfig
from sandbox.kube.secrets_store import KeyVaultSecretReader, SecretRequest
from tests.sandbox.acr_scene import (
    ACR_PULL,
    ACR_PUSH,
    NULL_USER,
    SECRETS_OFFICER,
    SECRETS_USER,
    SPEC,
    Scene,
    jwt_claims,
    push_image,
    running,
    wait_for,
)

pytestmark = pytest.mark.sandbox

STAGING = SPEC.environments[0]
REPOSITORY = "smoke/app"


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    with running(tmp_path_factory, "acr-auth") as started:
        yield started


@pytest.fixture(scope="module")
def staging(scene: Scene) -> Any:
    return scene.registries[STAGING.name]


@pytest.fixture(scope="module")
def pushed(scene: Scene, staging: Any) -> str:
    """An image the operator pushed into staging's ACR; its manifest digest."""
    token = scene.token_for(staging.login_server, OPERATOR_OID, f"repository:{REPOSITORY}:pull,push")
    return push_image(scene, staging.login_server, REPOSITORY, "v1", token, "operator")


def test_arm_reports_the_proxy_front_as_login_server(scene: Scene) -> None:
    fronts = dict(pair.split("=", 1) for pair in scene.values["MMRV_ACR_REGISTRIES"].split(","))
    assert set(fronts) == {env.azure.acr.name for env in SPEC.environments}
    for registry in scene.registries.values():
        assert registry.login_server == fronts[registry.name]
        assert (scene.state_dir / registry.name / "data").is_dir()
        with scene.http() as http:
            challenge = http.get(f"https://{registry.login_server}/v2/")
        assert challenge.status_code == 401
        assert challenge.headers["www-authenticate"] == (
            f'Bearer realm="https://{registry.login_server}/oauth2/token",service="{registry.login_server}"'
        )


def test_operator_pushes_and_pulls_with_an_exchanged_token(scene: Scene, staging: Any, pushed: str) -> None:
    refresh = scene.exchange(staging.login_server, scene.values["MMRV_AZURE_ACCESS_TOKEN"]).json()["refresh_token"]
    claims = jwt_claims(refresh)
    assert (claims["sub"], claims["aud"], claims["grant_type"]) == (OPERATOR_OID, staging.login_server, "refresh_token")
    # the Docker way: GET /oauth2/token with the null user and the refresh token as password
    basic = base64.b64encode(f"{NULL_USER}:{refresh}".encode()).decode()
    with scene.http() as http:
        answer = http.get(
            f"https://{staging.login_server}/oauth2/token",
            params={"service": staging.login_server, "scope": f"repository:{REPOSITORY}:pull"},
            headers={"Authorization": f"Basic {basic}"},
        )
    assert answer.status_code == 200 and answer.headers["cache-control"] == "no-store"
    token = answer.json()["access_token"]
    assert jwt_claims(token)["access"] == [{"type": "repository", "name": REPOSITORY, "actions": ["pull"]}]
    manifest = scene.manifest(staging.login_server, REPOSITORY, "v1", token)
    assert manifest.status_code == 200 and manifest.headers["docker-content-digest"] == pushed


def test_acr_pull_only_principal_can_pull_not_push(scene: Scene, staging: Any, pushed: str) -> None:
    principal, _ = scene.identity(STAGING, "id-acr-puller")
    scene.grant(STAGING, staging.id, principal, ACR_PULL, str(uuid.uuid4()))
    token = scene.token_for(staging.login_server, principal, f"repository:{REPOSITORY}:pull,push")
    assert jwt_claims(token)["access"] == [{"type": "repository", "name": REPOSITORY, "actions": ["pull"]}]
    assert scene.manifest(staging.login_server, REPOSITORY, pushed, token).status_code == 200
    with scene.http() as http:
        refused = http.post(
            f"https://{staging.login_server}/v2/{REPOSITORY}/blobs/uploads/",
            headers={"Authorization": f"Bearer {token}"},
        )
    assert refused.status_code == 401  # what Distribution (and ACR) answer a token lacking push
    assert 'error="insufficient_scope"' in refused.headers["www-authenticate"]
    assert refused.json()["errors"][0]["code"] == "UNAUTHORIZED"


def test_acr_push_role_pushes(scene: Scene, staging: Any) -> None:
    principal, _ = scene.identity(STAGING, "id-acr-pusher")
    scene.grant(STAGING, staging.id, principal, ACR_PUSH, str(uuid.uuid4()))
    token = scene.token_for(staging.login_server, principal, "repository:pusher/app:pull,push")
    assert jwt_claims(token)["access"][0]["actions"] == ["pull", "push"]
    digest = push_image(scene, staging.login_server, "pusher/app", "v1", token, "pusher")
    assert scene.manifest(staging.login_server, "pusher/app", "v1", token).headers["docker-content-digest"] == digest


def test_a_principal_without_a_role_gets_401(scene: Scene, staging: Any, pushed: str) -> None:
    principal, _ = scene.identity(STAGING, "id-no-role")
    token = scene.token_for(staging.login_server, principal, f"repository:{REPOSITORY}:pull")
    assert jwt_claims(token)["access"] == [{"type": "repository", "name": REPOSITORY, "actions": []}]
    assert scene.manifest(staging.login_server, REPOSITORY, pushed, token).status_code == 401


def test_the_token_service_refuses_what_acr_refuses(scene: Scene) -> None:
    staging = scene.registries[STAGING.name]
    production = scene.registries[SPEC.environments[1].name]
    url = f"https://{staging.login_server}/oauth2/token"
    params = {"service": staging.login_server, "scope": f"repository:{REPOSITORY}:pull"}
    admin = base64.b64encode(b"mmrvstagingacr:guessed-password").decode()
    other = scene.exchange(production.login_server, scene.entra_token(OPERATOR_OID)).json()["refresh_token"]
    with scene.http() as http:
        assert http.get(url, params=params).status_code == 401  # anonymous pull is disabled
        assert http.get(url, params=params, headers={"Authorization": f"Basic {admin}"}).status_code == 401
        form = {**params, "grant_type": "refresh_token", "refresh_token": other}
        assert http.post(url, data=form).status_code == 401  # a refresh token of another registry
    wrong_tenant = mint_token(OPERATOR_OID, "11111111-2222-4333-8444-555555555555")
    assert scene.exchange(staging.login_server, wrong_tenant).status_code == 401
    vault_only = mint_token(OPERATOR_OID, scene.tenant, audience="https://vault.azure.net")
    assert scene.exchange(staging.login_server, vault_only).status_code == 401


def test_kube_authorizer_answers_from_role_assignments(scene: Scene, staging: Any) -> None:
    cluster = _cluster(scene, "aks-acr-authz")
    kubelet = cluster.identity_profile["kubeletidentity"].object_id
    url = scene.direct_url("azure") + "/_sandbox/authorize-pull"
    ask = {
        "cluster": cluster.name,
        "image": f"{staging.login_server}/{REPOSITORY}:v1",
        "registry": staging.login_server,
        "repository": REPOSITORY,
        "reference": "v1",
        "action": "pull",
        "kubeletIdentity": None,
    }
    with httpx.Client(trust_env=False) as http:
        assert http.post(url, json=ask).json()["allowed"] is False
        name = str(uuid.uuid4())
        scene.grant(STAGING, staging.id, kubelet, ACR_PULL, name)
        allowed = http.post(url, json=ask).json()
        assert allowed["allowed"] is True and "AcrPull" in allowed["reason"]
        scene.revoke(STAGING, staging.id, name)
        assert http.post(url, json=ask).json()["allowed"] is False
        foreign = {**ask, "registry": "mcr.microsoft.com"}
        assert http.post(url, json=foreign).json()["allowed"] is True  # not a registry the sandbox manages


def test_kubelet_pulls_from_acr_only_with_acr_pull(scene: Scene, staging: Any, pushed: str) -> None:
    cluster = _cluster(scene, "aks-acr-pull")
    kubelet = cluster.identity_profile["kubeletidentity"].object_id
    image = f"{staging.login_server}/{REPOSITORY}@{pushed}"
    with _kube(scene, cluster.name) as api:
        client.CoreV1Api(api).create_namespace({"metadata": {"name": "pull"}})
        pod = {"metadata": {"name": "app"}, "spec": {"containers": [{"name": "app", "image": image}]}}
        client.CoreV1Api(api).create_namespaced_pod("pull", pod)

        def failed_pull() -> list[str]:
            events = client.CoreV1Api(api).list_namespaced_event("pull").items
            return [e.message for e in events if e.reason == "Failed" and "401 Unauthorized" in e.message]

        assert wait_for(failed_pull, what="a refused pull")
        scene.grant(STAGING, staging.id, kubelet, ACR_PULL, str(uuid.uuid4()))

        def ready() -> Any:
            status = client.CoreV1Api(api).read_namespaced_pod("app", "pull").status
            statuses = status.container_statuses or []
            return statuses and statuses[0].ready and statuses[0].image_id.endswith(pushed)

        assert wait_for(ready, timeout=30, what="the pod to pull and run")


def test_keyvault_reads_by_workload_identity_need_secrets_user(scene: Scene) -> None:
    sub, group = STAGING.azure.subscription_id, STAGING.azure.resource_group
    vaults = scene.arm(KeyVaultManagementClient, sub)
    sku = {"family": "A", "name": "standard"}
    body = {
        "location": "westeurope",
        "properties": {"tenantId": scene.tenant, "sku": sku, "enableRbacAuthorization": True},
    }
    vault = vaults.vaults.begin_create_or_update(group, "kv-acr-wi", body).result()
    scene.grant(STAGING, vault.id, OPERATOR_OID, SECRETS_OFFICER, str(uuid.uuid4()))
    writer = SecretClient(vault.properties.vault_uri, SandboxCredential(OPERATOR_OID, scene.tenant),
                          verify_challenge_resource=False, connection_verify=scene.ca)  # fmt: skip
    writer.set_secret("db-password", "not-a-real-password")
    principal, client_id = scene.identity(STAGING, "id-backend-wi")
    # the token the Kubernetes emulator's CSI driver presents: appid/azp = the client id, no oid
    reader = KeyVaultSecretReader(scene.direct_url("azure") + "/kv/{vault}")
    request = SecretRequest("c", "ns", "pod", "sa", "kv-acr-wi", "db-password", "secret", "", client_id, scene.tenant)
    token = reader.token(request)
    assert "oid" not in jwt_claims(token)
    url = scene.direct_url("azure") + "/kv/kv-acr-wi/secrets/db-password?api-version=7.4"
    with httpx.Client(trust_env=False) as http:
        denied = http.get(url, headers={"Authorization": f"Bearer {token}"})
        assert denied.status_code == 403 and denied.json()["error"]["innererror"]["code"] == "ForbiddenByRbac"
        scene.grant(STAGING, vault.id, principal, SECRETS_USER, str(uuid.uuid4()))
        allowed = http.get(url, headers={"Authorization": f"Bearer {token}"})
        assert allowed.status_code == 200 and allowed.json()["value"] == "not-a-real-password"
        stranger = reader.token(dataclasses.replace(request, client_id=str(uuid.uuid4())))
        assert http.get(url, headers={"Authorization": f"Bearer {stranger}"}).status_code == 401
    assert "not-a-real-password" not in scene.log("azure")


# --- helpers ----------------------------------------------------------------------------------------


def _cluster(scene: Scene, name: str) -> Any:
    aks = scene.arm(ContainerServiceClient, STAGING.azure.subscription_id)
    pool = {"name": "system", "mode": "System", "vmSize": "Standard_D2s_v5", "count": 1}
    properties = {"dnsPrefix": name, "agentPoolProfiles": [pool]}
    body = {"location": "westeurope", "identity": {"type": "SystemAssigned"}, "properties": properties}
    try:
        return aks.managed_clusters.begin_create_or_update(STAGING.azure.resource_group, name, body).result()
    except HttpResponseError as exc:  # pragma: no cover - a clearer failure than the SDK's
        raise AssertionError(f"creating {name}: {exc.message}") from exc


def _kube(scene: Scene, cluster: str) -> client.ApiClient:
    """A client of the sandbox's Kubernetes emulator for `cluster`, through the proxy."""
    kubeconfig = build_kubeconfig(
        cluster,
        f"{scene.public_url('kubernetes')}/clusters/{cluster}",
        ca_pem=Path(scene.ca).read_bytes(),
        token=mint_token(OPERATOR_OID, scene.tenant),
    )
    configuration = client.Configuration()
    config.load_kube_config_from_dict(kubeconfig, client_configuration=configuration)
    return client.ApiClient(configuration)
