"""The Secrets Store CSI driver with the Azure Key Vault provider, as far as a pod's start needs it.

A pod whose volume is `csi: {driver: secrets-store.csi.k8s.io, volumeAttributes:
{secretProviderClass: X}}` mounts only when the SecretProviderClass X exists in its
namespace and every object in `parameters.objects` can be read from the vault
`parameters.keyvaultName` as the workload identity (`parameters.clientID`, else the pod's
ServiceAccount annotation `azure.workload.identity/client-id`). Then the SPC's
`secretObjects` are synced into Kubernetes Secrets.

Reading is a pluggable `SecretReader(SecretRequest) -> str` (raises `SecretReadError`).
The default speaks Key Vault's data-plane API: `GET <vault url>/secrets/<name>[/<version>]
?api-version=7.4` with `Authorization: Bearer <unsigned JWT>` whose `appid`/`azp` is the
identity's client id (and `oid` its principal id when the cluster's settings know it), the
vault URL being `keyvault_url_template` with `{vault}` replaced. With no template every
read succeeds with a placeholder value.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import yaml

from sandbox.kube.auth import unsigned_jwt
from sandbox.kube.config import EmulatorConfig

log = logging.getLogger(__name__)

CSI_DRIVER = "secrets-store.csi.k8s.io"
WORKLOAD_CLIENT_ID = "azure.workload.identity/client-id"
WORKLOAD_TENANT_ID = "azure.workload.identity/tenant-id"
KEYVAULT_API_VERSION = "7.4"
_COLLECTIONS = {"secret": "secrets", "key": "keys", "cert": "certificates"}


@dataclass(frozen=True)
class SecretRequest:
    cluster: str
    namespace: str
    pod: str
    service_account: str
    vault: str
    object_name: str
    object_type: str  # secret, key or cert
    object_version: str
    client_id: str
    tenant_id: str
    principal_id: str | None = None


class SecretReadError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class SecretReader(Protocol):
    async def __call__(self, request: SecretRequest) -> str: ...


@dataclass(frozen=True)
class KeyVaultObject:
    name: str
    type: str
    version: str
    alias: str

    @property
    def file_name(self) -> str:
        return self.alias or self.name


def parse_objects(parameters: dict[str, Any]) -> list[KeyVaultObject]:
    """`parameters.objects`: a YAML string `array: [<YAML string per object>]`, as the provider reads it."""
    raw = parameters.get("objects") or ""
    try:
        outer = yaml.safe_load(raw) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"failed to unmarshal objects: {exc}") from exc
    objects = []
    for entry in (outer.get("array") if isinstance(outer, dict) else None) or []:
        item = yaml.safe_load(entry) if isinstance(entry, str) else entry
        if not isinstance(item, dict) or not item.get("objectName"):
            raise ValueError(f"failed to unmarshal object: {entry!r}")
        objects.append(
            KeyVaultObject(
                name=str(item["objectName"]),
                type=str(item.get("objectType") or "secret"),
                version=str(item.get("objectVersion") or ""),
                alias=str(item.get("objectAlias") or ""),
            )
        )
    return objects


def csi_volumes(pod_spec: dict[str, Any]) -> list[tuple[str, str]]:
    """(volume name, SecretProviderClass name) of the pod's Secrets Store CSI volumes."""
    found = []
    for volume in pod_spec.get("volumes") or []:
        csi = volume.get("csi") or {}
        if csi.get("driver") == CSI_DRIVER:
            found.append((volume.get("name", ""), (csi.get("volumeAttributes") or {}).get("secretProviderClass", "")))
    return found


class PlaceholderReader:
    """No Key Vault configured: every object reads as a placeholder (mounts always succeed)."""

    async def __call__(self, request: SecretRequest) -> str:
        return f"sandbox-placeholder-{request.object_name}"


class KeyVaultSecretReader:
    def __init__(self, url_template: str, *, verify: str | bool = True) -> None:
        self.url_template = url_template
        self._client = httpx.AsyncClient(timeout=10.0, verify=verify)

    async def aclose(self) -> None:
        await self._client.aclose()

    def token(self, request: SecretRequest) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "aud": "https://vault.azure.net",
            "iss": f"https://sts.windows.net/{request.tenant_id}/",
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "tid": request.tenant_id,
            "appid": request.client_id,
            "azp": request.client_id,
            "idtyp": "app",
        }
        if request.principal_id:
            claims["oid"] = claims["sub"] = request.principal_id
        return unsigned_jwt(claims)

    async def __call__(self, request: SecretRequest) -> str:
        base = self.url_template.replace("{vault}", request.vault).rstrip("/")
        collection = _COLLECTIONS.get(request.object_type, "secrets")
        url = f"{base}/{collection}/{request.object_name}"
        if request.object_version:
            url += f"/{request.object_version}"
        headers = {"Authorization": f"Bearer {self.token(request)}"}
        try:
            response = await self._client.get(url, params={"api-version": KEYVAULT_API_VERSION}, headers=headers)
        except httpx.HTTPError as exc:
            raise SecretReadError(0, "ConnectionError", f"dial {base}: {exc}") from exc
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code != 200:
            error = (body.get("error") if isinstance(body, dict) else None) or {}
            code = str(error.get("code") or response.reason_phrase or response.status_code)
            raise SecretReadError(response.status_code, code, str(error.get("message") or response.text[:200]))
        if collection == "secrets":
            return str(body.get("value", ""))
        return str(body.get("key") or body.get("cer") or "")


def default_secret_reader(config: EmulatorConfig) -> SecretReader:
    if not config.keyvault_url_template:
        return PlaceholderReader()
    return KeyVaultSecretReader(config.keyvault_url_template, verify=config.ca_bundle or True)
