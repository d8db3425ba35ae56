"""Azure Resource Manager through the official SDKs, one small verb set for every resource type.

Bodies in and out are ARM REST JSON (what the REST API and `Model.serialize()` speak), so
the planner compares like with like. Verbs follow the SDK conventions: `get` returns
None when the resource is missing (the planner's "observed" needs no exception), `put`
waits for the long-running operation, `delete` succeeds when already gone.
Errors become TransientError (429, 5xx, connection problems, LRO still running) or
PermanentError (validation, authorization, quota) naming the resource and Azure's code.
"""

from __future__ import annotations

import base64
import binascii
import importlib
import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from azure.core.credentials import AccessToken, TokenCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from migration.errors import PermanentError, TransientError
from migration.settings import AzureSettings

TRANSIENT_CODES = {
    "TooManyRequests",
    "Throttled",
    "OperationNotAllowed",
    "AnotherOperationInProgress",
    "RetryableError",
}


class StaticTokenCredential:
    """A bearer token handed to us (`MMRV_AZURE_ACCESS_TOKEN`): the sandbox, or a CI that mints its own."""

    def __init__(self, token: str, expires_on: int = 2**31 - 1) -> None:
        self._token = AccessToken(token, expires_on)

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return self._token

    def close(self) -> None:
        pass


def make_credential(settings: AzureSettings) -> TokenCredential:
    if settings.access_token:
        return StaticTokenCredential(settings.access_token)
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


def transport_kwargs(settings: AzureSettings) -> dict[str, Any]:
    """What every Azure SDK client of the tool gets, ARM and data planes alike: retries and the CA to trust."""
    kwargs: dict[str, Any] = {"retry_total": settings.retry_total}
    if settings.ca_bundle:
        kwargs["connection_verify"] = settings.ca_bundle
    return kwargs


def object_id_of_token(token: str) -> str | None:
    """The `oid` claim of an Entra access token (a JWT): the object id of the principal it stands for.

    Reads the payload only, without verifying the signature: the token is our own, from our
    own credential, and the id only names whom to grant a role. None when the token is not a
    JWT or names no object id.
    """
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None
    oid = payload.get("oid") if isinstance(payload, dict) else None
    return str(oid) if isinstance(oid, str) and oid else None


@dataclass(frozen=True)
class ArmId:
    """A parsed ARM id: /subscriptions/S/resourceGroups/G/providers/NS/TYPE/NAME[/CHILD/NAME]."""

    subscription: str
    resource_group: str | None
    names: tuple[str, ...]  # resource name, then child names
    scope: str  # for role assignments: everything before /providers/Microsoft.Authorization

    @classmethod
    def parse(cls, resource_id: str) -> ArmId:
        m = re.match(r"^/subscriptions/([^/]+)(?:/resourceGroups/([^/]+))?(.*)$", resource_id, re.IGNORECASE)
        if not m:
            raise PermanentError("azure", f"not an ARM resource id: {resource_id!r}")
        subscription, group, rest = m.group(1), m.group(2), m.group(3)
        if "/providers/Microsoft.Authorization/" in resource_id:
            scope, _, tail = resource_id.partition("/providers/Microsoft.Authorization/")
            return cls(subscription, group, (tail.rsplit("/", 1)[-1],), scope)
        parts = [p for p in rest.split("/") if p]
        # providers/NS/TYPE/NAME/CHILD/NAME...: names sit at odd offsets after the namespace
        names = tuple(parts[3::2]) if parts[:1] == ["providers"] else ()
        return cls(subscription, group, names, resource_id)


def to_rest(model: Any) -> dict[str, Any]:
    """REST JSON of an SDK model: msrest models `serialize`, the newer ones already are mappings."""
    if model is None:
        return {}
    if hasattr(model, "serialize"):
        return dict(model.serialize(keep_readonly=True))
    if hasattr(model, "as_dict"):
        return dict(model.as_dict())
    return dict(model)


@dataclass(frozen=True)
class Handler:
    get: Callable[[Any, ArmId], Any]
    put: Callable[[Any, ArmId, dict[str, Any]], Any]
    delete: Callable[[Any, ArmId], Any]
    client: str


def _wait(result: Any, timeout: float) -> Any:
    """Wait for an LRO poller; plain results pass through."""
    if hasattr(result, "result") and hasattr(result, "done"):
        value = result.result(timeout=timeout)
        if not result.done():
            raise TransientError("azure", "long-running operation is still running; retry to keep waiting")
        return value
    return result


def _msrest(module: str, name: str) -> Callable[[dict[str, Any]], Any]:
    """Old-style SDKs (msi, authorization) take models, not dicts: deserialize the REST body."""

    def build(body: dict[str, Any]) -> Any:
        cls = getattr(importlib.import_module(module), name)
        return cls.deserialize(body)

    return build


_identity = _msrest("azure.mgmt.msi.models", "Identity")
_fic = _msrest("azure.mgmt.msi.models", "FederatedIdentityCredential")
_role = _msrest("azure.mgmt.authorization.models", "RoleAssignmentCreateParameters")

HANDLERS: dict[str, Handler] = {
    "Microsoft.Resources/resourceGroups": Handler(
        get=lambda c, i: c.resource_groups.get(i.resource_group),
        put=lambda c, i, b: c.resource_groups.create_or_update(i.resource_group, b),
        delete=lambda c, i: c.resource_groups.begin_delete(i.resource_group),
        client="resource",
    ),
    "Microsoft.ContainerRegistry/registries": Handler(
        get=lambda c, i: c.registries.get(i.resource_group, i.names[0]),
        put=lambda c, i, b: c.registries.begin_create(i.resource_group, i.names[0], b),
        delete=lambda c, i: c.registries.begin_delete(i.resource_group, i.names[0]),
        client="acr",
    ),
    "Microsoft.ContainerService/managedClusters": Handler(
        get=lambda c, i: c.managed_clusters.get(i.resource_group, i.names[0]),
        put=lambda c, i, b: c.managed_clusters.begin_create_or_update(i.resource_group, i.names[0], b),
        delete=lambda c, i: c.managed_clusters.begin_delete(i.resource_group, i.names[0]),
        client="aks",
    ),
    "Microsoft.ManagedIdentity/userAssignedIdentities": Handler(
        get=lambda c, i: c.user_assigned_identities.get(i.resource_group, i.names[0]),
        put=lambda c, i, b: c.user_assigned_identities.create_or_update(i.resource_group, i.names[0], _identity(b)),
        delete=lambda c, i: c.user_assigned_identities.delete(i.resource_group, i.names[0]),
        client="msi",
    ),
    "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials": Handler(
        get=lambda c, i: c.federated_identity_credentials.get(i.resource_group, *i.names),
        put=lambda c, i, b: c.federated_identity_credentials.create_or_update(i.resource_group, *i.names, _fic(b)),
        delete=lambda c, i: c.federated_identity_credentials.delete(i.resource_group, *i.names),
        client="msi",
    ),
    "Microsoft.Authorization/roleAssignments": Handler(
        get=lambda c, i: c.role_assignments.get(i.scope, i.names[0]),
        put=lambda c, i, b: c.role_assignments.create(i.scope, i.names[0], _role(b)),
        delete=lambda c, i: c.role_assignments.delete(i.scope, i.names[0]),
        client="authorization",
    ),
    "Microsoft.KeyVault/vaults": Handler(
        get=lambda c, i: c.vaults.get(i.resource_group, i.names[0]),
        put=lambda c, i, b: c.vaults.begin_create_or_update(i.resource_group, i.names[0], b),
        delete=lambda c, i: c.vaults.delete(i.resource_group, i.names[0]),
        client="keyvault",
    ),
}


def _network(group: str) -> Handler:
    def ops(c: Any) -> Any:
        return getattr(c, group)

    return Handler(
        get=lambda c, i: ops(c).get(i.resource_group, *i.names),
        put=lambda c, i, b: ops(c).begin_create_or_update(i.resource_group, *i.names, b),
        delete=lambda c, i: ops(c).begin_delete(i.resource_group, *i.names),
        client="network",
    )


HANDLERS |= {
    "Microsoft.Network/virtualNetworks": _network("virtual_networks"),
    "Microsoft.Network/virtualNetworks/subnets": _network("subnets"),
    "Microsoft.Network/publicIPAddresses": _network("public_ip_addresses"),
    "Microsoft.Network/firewallPolicies": _network("firewall_policies"),
    "Microsoft.Network/firewallPolicies/ruleCollectionGroups": _network("firewall_policy_rule_collection_groups"),
    "Microsoft.Network/azureFirewalls": _network("azure_firewalls"),
    "Microsoft.Network/routeTables": _network("route_tables"),
    "Microsoft.Network/routeTables/routes": _network("routes"),
}


# Handler.client -> the official SDK's management client
CLIENTS: dict[str, tuple[str, str]] = {
    "resource": ("azure.mgmt.resource.resources", "ResourceManagementClient"),
    "acr": ("azure.mgmt.containerregistry", "ContainerRegistryManagementClient"),
    "aks": ("azure.mgmt.containerservice", "ContainerServiceClient"),
    "msi": ("azure.mgmt.msi", "ManagedServiceIdentityClient"),
    "authorization": ("azure.mgmt.authorization", "AuthorizationManagementClient"),
    "keyvault": ("azure.mgmt.keyvault", "KeyVaultManagementClient"),
    "network": ("azure.mgmt.network", "NetworkManagementClient"),
}


class ArmGateway:
    """ARM for one subscription. Build it inside a task from `AzureSettings()`."""

    def __init__(self, settings: AzureSettings, subscription_id: str) -> None:
        self.settings = settings
        self.subscription_id = subscription_id
        self.credential = make_credential(settings)
        self._clients: dict[str, Any] = {}

    def _client_kwargs(self) -> dict[str, Any]:
        return {
            "base_url": self.settings.arm_url,
            "credential_scopes": [self.settings.arm_scope],
            "polling_interval": self.settings.poll_interval,
            **transport_kwargs(self.settings),
        }

    def client(self, kind: str) -> Any:
        if kind not in self._clients:
            self._clients[kind] = self._build(kind)
        return self._clients[kind]

    def _build(self, kind: str) -> Any:
        module, name = CLIENTS[kind]  # imported on first use: each SDK is large to import
        client_class = getattr(importlib.import_module(module), name)
        return client_class(self.credential, self.subscription_id, **self._client_kwargs())

    def _handler(self, resource_type: str) -> Handler:
        try:
            return HANDLERS[resource_type]
        except KeyError:
            raise PermanentError("azure", f"resource type {resource_type} is not supported by the tool") from None

    def get(self, resource_type: str, resource_id: str) -> dict[str, Any] | None:
        handler = self._handler(resource_type)
        with azure_errors(resource_id):
            try:
                return to_rest(handler.get(self.client(handler.client), ArmId.parse(resource_id)))
            except ResourceNotFoundError:
                return None
            except HttpResponseError as exc:
                if exc.status_code == 404:
                    return None
                raise

    def put(self, resource_type: str, resource_id: str, body: dict[str, Any]) -> dict[str, Any]:
        handler = self._handler(resource_type)
        with azure_errors(resource_id):
            result = handler.put(self.client(handler.client), ArmId.parse(resource_id), body)
            return to_rest(_wait(result, self.settings.lro_timeout))

    def delete(self, resource_type: str, resource_id: str) -> None:
        handler = self._handler(resource_type)
        with azure_errors(resource_id):
            try:
                _wait(handler.delete(self.client(handler.client), ArmId.parse(resource_id)), self.settings.lro_timeout)
            except ResourceNotFoundError:
                return

    def import_image(self, registry_id: str, body: dict[str, Any]) -> None:
        """ACR's server-side import (`registries.begin_import_image`), waited for.

        `body` is the REST `ImportImageParameters`: source (registryUri or resourceId,
        sourceImage, credentials), targetTags, untaggedTargetRepositories, mode. It carries
        the source registry's password: errors name the registry and image, never the body.
        """
        ids = ArmId.parse(registry_id)
        image = str((body.get("source") or {}).get("sourceImage", ""))
        with azure_errors(f"{ids.names[0]}: import of {image}"):
            poller = self.client("acr").registries.begin_import_image(ids.resource_group, ids.names[0], body)
            _wait(poller, self.settings.lro_timeout)

    def access_token(self) -> str:
        """An Entra access token for ARM's audience: what ACR's /oauth2/exchange takes (as `az acr login`)."""
        try:
            return self.credential.get_token(self.settings.arm_scope).token
        except ClientAuthenticationError as exc:
            raise PermanentError("azure", f"cannot get an Entra token: {_message(exc)}") from None

    def signed_in_object_id(self) -> str | None:
        """The object id of the principal the tool runs as (its ARM token's `oid`); None when the token hides it."""
        return object_id_of_token(self.access_token())

    def cluster_user_kubeconfig(self, cluster_id: str) -> str:
        """The AKS kubeconfig from `listClusterUserCredential` (in the cloud and the sandbox alike)."""
        ids = ArmId.parse(cluster_id)
        with azure_errors(cluster_id):
            result = self.client("aks").managed_clusters.list_cluster_user_credentials(ids.resource_group, ids.names[0])
            kubeconfigs = to_rest(result).get("kubeconfigs") or []
            if not kubeconfigs:
                raise PermanentError("azure", f"{cluster_id}: listClusterUserCredential returned no kubeconfig")
            value = kubeconfigs[0]["value"]
            return (base64.b64decode(value) if isinstance(value, str) else bytes(value)).decode("utf-8")


@contextmanager
def azure_errors(resource: str) -> Iterator[None]:
    """Translate SDK errors into the tool's two kinds, naming the resource and keeping Azure's code."""
    try:
        yield
    except (TransientError, PermanentError):
        raise
    except ClientAuthenticationError as exc:
        raise PermanentError("azure", f"{resource}: authentication failed: {_message(exc)}", exc.status_code) from None
    except HttpResponseError as exc:
        status = exc.status_code
        code = getattr(getattr(exc, "error", None), "code", None) or ""
        text = f"{resource}: {code + ': ' if code else ''}{_message(exc)}"
        if status in (408, 429) or (status is not None and status >= 500) or code in TRANSIENT_CODES:
            raise TransientError("azure", text, status) from None
        raise PermanentError("azure", text, status) from None
    except (ServiceRequestError, ServiceResponseError) as exc:
        raise TransientError("azure", f"{resource}: connection problem: {exc}") from None


def _message(exc: Exception) -> str:
    error = getattr(exc, "error", None)
    message = getattr(error, "message", None) or getattr(exc, "message", None) or str(exc)
    return str(message).splitlines()[0][:300]
