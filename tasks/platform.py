"""Platform tasks: read what ARM has, apply one resource, read the outputs later phases need.

Each task builds its gateway from settings (never receives a live client), takes names and
ids, and returns plain JSON data. Re-applying a resource that is already as desired is a
harmless PUT of the same body; the flow only applies what the plan says changes.
"""

from __future__ import annotations

import copy
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from migration.clouds.azure import ArmGateway
from migration.errors import PermanentError
from migration.platform import (
    DesiredResource,
    PlatformOutputs,
    Ref,
    acr_id,
    aks_id,
    desired_by_id,
    desired_platform,
    identity_id,
    key_vault_id,
    resolve,
)
from migration.settings import AzureSettings
from migration.spec import load_spec
from tasks.defaults import retry_options


def _gateway(subscription_id: str) -> ArmGateway:
    return ArmGateway(AzureSettings(), subscription_id)


@task(name="read-deployer", cache_policy=NO_CACHE, **retry_options())
def read_deployer(spec_path: str, env: str) -> str | None:
    """The object id of the principal running the tool (its token's `oid`): it gets Key Vault Secrets Officer.

    None (with a warning) when the token does not say: the secrets phase then needs the role
    granted by hand.
    """
    spec = load_spec(spec_path)
    environment = spec.environment(env)
    object_id = _gateway(environment.azure.subscription_id).signed_in_object_id()
    if object_id is None:
        get_run_logger().warning(
            "the Azure access token names no object id (oid): no Key Vault Secrets Officer assignment is planned "
            "for the principal running the tool; grant it on %s by hand before the secrets phase",
            environment.azure.key_vault.name,
        )
    return object_id


@task(name="read-azure", cache_policy=NO_CACHE, **retry_options())
def read_observed(spec_path: str, env: str, deployer_object_id: str | None = None) -> dict[str, dict[str, Any] | None]:
    """GET every resource the spec wants; None for what does not exist (yet)."""
    spec = load_spec(spec_path)
    environment = spec.environment(env)
    arm = _gateway(environment.azure.subscription_id)
    return {r.id: arm.get(r.type, r.id) for r in desired_platform(spec, environment, deployer_object_id)}


@task(name="apply-azure", cache_policy=NO_CACHE, **retry_options())
def apply_resource(spec_path: str, env: str, resource_id: str, deployer_object_id: str | None = None) -> dict[str, Any]:
    """PUT one resource as the spec wants it, with its references resolved from ARM now."""
    spec = load_spec(spec_path)
    environment = spec.environment(env)
    desired = desired_by_id(spec, environment, deployer_object_id)
    resource = desired[resource_id]
    arm = _gateway(environment.azure.subscription_id)
    body = _resolved_body(arm, resource, desired)
    try:
        return arm.put(resource.type, resource.id, body)
    except PermanentError as exc:
        # The same principal/role/scope under another name: the access is there, which is
        # what we wanted; a rerun after a lost response must not fail on it either.
        if resource.type == "Microsoft.Authorization/roleAssignments" and "RoleAssignmentExists" in str(exc):
            return {"id": resource.id, "note": "an equivalent role assignment already exists"}
        raise


def _resolved_body(arm: ArmGateway, resource: DesiredResource, desired: dict[str, DesiredResource]) -> dict[str, Any]:
    cache: dict[str, dict[str, Any] | None] = {}

    def lookup(ref: Ref) -> Any:
        if ref.resource not in cache:
            cache[ref.resource] = arm.get(desired[ref.resource].type, ref.resource)
        value = ref.lookup(cache[ref.resource] or {})
        if value is None:
            raise PermanentError(
                "azure", f"{resource.id}: needs {ref.path} of {ref.resource}, which ARM does not report (yet)"
            )
        return value

    body = resolve(copy.deepcopy(resource.body), lookup)
    if resource.keep_observed:
        # PUT replaces child lists (a VNet PUT without its subnets deletes them): carry them over
        current = arm.get(resource.type, resource.id) or {}
        for path in resource.keep_observed:
            _carry(body, current, path.split("."))
    return body


def _carry(body: dict[str, Any], current: dict[str, Any], path: list[str]) -> None:
    source: Any = current
    for part in path:
        source = source.get(part) if isinstance(source, dict) else None
    if source is None:
        return
    target = body
    for part in path[:-1]:
        target = target.setdefault(part, {})
    target[path[-1]] = source


@task(name="platform-outputs", cache_policy=NO_CACHE, **retry_options())
def read_outputs(spec_path: str, env: str) -> PlatformOutputs:
    """What later phases need: registry login server, OIDC issuer, kubelet identity, vault URI."""
    spec = load_spec(spec_path)
    environment = spec.environment(env)
    arm = _gateway(environment.azure.subscription_id)
    registry = arm.get("Microsoft.ContainerRegistry/registries", acr_id(environment)) or {}
    cluster = arm.get("Microsoft.ContainerService/managedClusters", aks_id(environment)) or {}
    vault = arm.get("Microsoft.KeyVault/vaults", key_vault_id(environment)) or {}
    clients = {}
    for component, name in environment.azure.identities.workloads.items():
        identity = arm.get("Microsoft.ManagedIdentity/userAssignedIdentities", identity_id(environment, name)) or {}
        client_id = (identity.get("properties") or {}).get("clientId")
        if client_id:
            clients[component] = client_id
    props = cluster.get("properties") or {}
    return PlatformOutputs(
        environment=env,
        acr_login_server=(registry.get("properties") or {}).get("loginServer"),
        aks_oidc_issuer=(props.get("oidcIssuerProfile") or {}).get("issuerURL"),
        kubelet_object_id=((props.get("identityProfile") or {}).get("kubeletidentity") or {}).get("objectId"),
        key_vault_uri=(vault.get("properties") or {}).get("vaultUri"),
        workload_client_ids=clients,
    )
