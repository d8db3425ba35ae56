"""A whole sandbox (`sandbox.manager.up`) with its ACRs created in ARM, for the tests of the ACR side.

`start(state_dir)` brings the sandbox up in a temporary state dir and creates, as the operator
with the official SDKs, each environment's resource group and registry; `down` stops it. The
helpers speak ACR's protocols as a client does: `exchange` (Entra token -> refresh token),
`access_token` (-> JWT for a scope), and the registry API over the fault proxy.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote

import httpx
import pytest
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.containerregistry import ContainerRegistryManagementClient
from azure.mgmt.msi import ManagedServiceIdentityClient
from azure.mgmt.resource.resources import ResourceManagementClient

from migration.settings import read_profile
from migration.spec import Environment, load_spec
from sandbox import manager
from sandbox.azure.tokens import OPERATOR_OID, SandboxCredential, mint_token
from sandbox.services import ECR_REGISTRY_USER, ecr_registry_password

REPO = Path(__file__).resolve().parents[2]
SPEC = load_spec(REPO / "deployments" / "mmrv.yaml")
ARM_SCOPE = "https://management.azure.com/.default"
NULL_USER = "00000000-0000-0000-0000-000000000000"
ACR_PULL = "7f951dda-4ed3-4680-a7ca-43fe172d538d"
ACR_PUSH = "8311e382-0749-4cb8-b61a-304f252e45ec"
SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
SECRETS_OFFICER = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"
MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    )
)
Client = TypeVar("Client")


@dataclass(frozen=True)
class Registry:
    env: Environment
    name: str
    id: str
    login_server: str

    @property
    def resource_group(self) -> str:
        return self.env.azure.resource_group


@dataclass
class Scene:
    state_dir: Path
    values: dict[str, str]
    registries: dict[str, Registry] = field(default_factory=dict)  # by environment name

    @property
    def ca(self) -> str:
        return self.values["MMRV_CA_BUNDLE"]

    @property
    def tenant(self) -> str:
        return SPEC.environments[0].azure.tenant_id

    @property
    def ecr(self) -> str:
        return self.values["MMRV_ECR_REGISTRY"]

    @property
    def ecr_credentials(self) -> tuple[str, str]:
        return ECR_REGISTRY_USER, ecr_registry_password(SPEC)

    def arm(self, client_class: type[Client], subscription: str, oid: str = OPERATOR_OID) -> Client:
        return client_class(  # type: ignore[call-arg]
            SandboxCredential(oid, self.tenant),
            subscription,
            base_url=self.values["MMRV_ARM_URL"],
            credential_scopes=[ARM_SCOPE],
            connection_verify=self.ca,
        )

    def http(self) -> httpx.Client:
        return httpx.Client(verify=self.ca, trust_env=False, timeout=30)

    def entra_token(self, oid: str) -> str:
        return mint_token(oid, self.tenant, audience="https://management.azure.com")

    def direct_url(self, backend: str) -> str:
        """A backend's own plain-HTTP URL (emulator-to-emulator calls use these)."""
        return str(self._services()[backend]["direct_url"])

    def public_url(self, backend: str) -> str:
        return str(self._services()[backend]["public_url"])

    def _services(self) -> dict[str, Any]:
        return dict(json.loads((self.state_dir / "sandbox.json").read_text())["services"])

    def log(self, backend: str) -> str:
        return (self.state_dir / "logs" / f"{backend}.log").read_text(errors="replace")

    # --- ARM, as the operator -------------------------------------------------------------------

    def identity(self, env: Environment, name: str) -> tuple[str, str]:
        """A user-assigned identity: (principalId, clientId)."""
        msi = self.arm(ManagedServiceIdentityClient, env.azure.subscription_id)
        made = msi.user_assigned_identities.create_or_update(env.azure.resource_group, name, {"location": "westeurope"})
        return str(made.principal_id), str(made.client_id)

    def grant(self, env: Environment, scope: str, principal: str, role: str, name: str) -> None:
        rbac = self.arm(AuthorizationManagementClient, env.azure.subscription_id)
        role_id = f"/subscriptions/{env.azure.subscription_id}/providers/Microsoft.Authorization/roleDefinitions/{role}"
        body = {
            "properties": {"roleDefinitionId": role_id, "principalId": principal, "principalType": "ServicePrincipal"}
        }
        rbac.role_assignments.create(scope, name, body)

    def revoke(self, env: Environment, scope: str, name: str) -> None:
        self.arm(AuthorizationManagementClient, env.azure.subscription_id).role_assignments.delete(scope, name)

    # --- ACR's token service and registry API ---------------------------------------------------

    def exchange(self, login_server: str, entra_token: str) -> httpx.Response:
        form = {
            "grant_type": "access_token",
            "service": login_server,
            "tenant": self.tenant,
            "access_token": entra_token,
        }
        with self.http() as http:
            return http.post(f"https://{login_server}/oauth2/exchange", data=form)

    def access_token(self, login_server: str, refresh_token: str, scope: str) -> str:
        form = {"grant_type": "refresh_token", "service": login_server, "scope": scope, "refresh_token": refresh_token}
        with self.http() as http:
            answer = http.post(f"https://{login_server}/oauth2/token", data=form)
        assert answer.status_code == 200, answer.text
        return str(answer.json()["access_token"])

    def token_for(self, login_server: str, oid: str, scope: str) -> str:
        """Entra token of `oid` -> ACR refresh token -> access token for `scope`."""
        refresh = self.exchange(login_server, self.entra_token(oid))
        assert refresh.status_code == 200, refresh.text
        return self.access_token(login_server, refresh.json()["refresh_token"], scope)

    def manifest(self, host: str, repository: str, reference: str, token: str | None = None) -> httpx.Response:
        """GET a manifest over the proxy: with a bearer token (ACR), else ECR's basic credentials."""
        headers = {"Accept": MANIFEST_TYPES}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        auth = None if token else httpx.BasicAuth(*self.ecr_credentials)
        with self.http() as http:
            return http.get(f"https://{host}/v2/{repository}/manifests/{reference}", headers=headers, auth=auth)


@contextlib.contextmanager
def running(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[Scene]:
    """A module's sandbox: started in a fresh temporary state dir, stopped however the module ends."""
    state_dir = tmp_path_factory.mktemp(name)
    try:
        yield start(state_dir)
    finally:
        manager.down(state_dir)


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def start(state_dir: Path) -> Scene:
    profile = manager.up(state_dir, spec=SPEC)
    scene = Scene(state_dir, read_profile(profile.profile_path))
    for env in SPEC.environments:
        sub, group = env.azure.subscription_id, env.azure.resource_group
        scene.arm(ResourceManagementClient, sub).resource_groups.create_or_update(group, {"location": "westeurope"})
        acr = scene.arm(ContainerRegistryManagementClient, sub)
        body = {"location": "westeurope", "sku": {"name": "Standard"}}
        made = acr.registries.begin_create(group, env.azure.acr.name, body).result()
        scene.registries[env.name] = Registry(env, str(made.name), str(made.id), str(made.login_server))
    return scene


def jwt_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def digest_of(content: bytes) -> str:
    return "sha256:" + hashlib.sha256(content).hexdigest()


def push_image(scene: Scene, login_server: str, repository: str, tag: str, token: str, label: str) -> str:
    """A tiny OCI image (config blob only) pushed over the proxy; returns its manifest digest."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Labels": {"test": label}},
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()  # fmt: skip
    headers = {"Authorization": f"Bearer {token}"}
    with scene.http() as http:
        started = http.post(f"https://{login_server}/v2/{repository}/blobs/uploads/", headers=headers)
        assert started.status_code == 202, started.text
        location = started.headers["location"]
        put = http.put(f"https://{login_server}{location}&digest={digest_of(config)}", content=config, headers=headers)
        assert put.status_code == 201, put.text
        manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                               "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                          "size": len(config), "digest": digest_of(config)},
                               "layers": []}).encode()  # fmt: skip
        content_type = {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}
        answer = http.put(
            f"https://{login_server}/v2/{repository}/manifests/{tag}", content=manifest, headers=headers | content_type
        )
        assert answer.status_code == 201, answer.text
    return digest_of(manifest)


ACCESS_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<uri>\S+) HTTP/[\d.]+" (?P<status>\d{3})')


def access_lines(log: str) -> list[tuple[str, str, int]]:
    """(method, uri, status) of each access-log line of a Distribution registry."""
    return [(m["method"], unquote(m["uri"]), int(m["status"])) for m in ACCESS_LINE.finditer(log)]
