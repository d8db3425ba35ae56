"""The Azure platform of one environment, as desired state, and its plan against what ARM has.

Desired resources are ARM REST bodies (the JSON the REST API and `Model.serialize()`
speak), in dependency order. Values that only exist once another resource exists (the
cluster's OIDC issuer, the kubelet identity, a principal id, the firewall's private IP)
are `Ref`s: resolved against the observed state when it is there, shown as "known after
apply" when not, and resolved again at apply time.

Ownership: the tool only changes what carries `managed-by: mmrv-migrate` and this spec's
name. Child resources without tags (subnets, routes, federated credentials, rule
collection groups) belong to their parent; role assignments are ours when their name is
the deterministic GUID we derive. Anything else that would need a change is `blocked`.
Pure: no SDK, no Prefect, no network.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from migration.plan import Action, FieldChange, Plan
from migration.spec import Environment, Spec

MANAGED_BY = "managed-by"
MANAGER = "mmrv-migrate"
SPEC_TAG = "mmrv-migrate/spec"
ENV_TAG = "mmrv-migrate/environment"

# Built-in role definitions (the same GUID in every Azure cloud).
ROLE_ACR_PULL = "7f951dda-4ed3-4680-a7ca-43fe172d538d"
ROLE_KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
ROLE_KEY_VAULT_SECRETS_OFFICER = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"

# Stable namespace for role assignment names: the same scope, role and principal always
# give the same GUID, so a rerun finds the assignment instead of creating a twin (409).
ROLE_ASSIGNMENT_NAMESPACE = uuid.UUID("5b0b6a1e-7c55-4a5e-9a0e-6d6d2f0e4c11")

WORKLOAD_AUDIENCE = "api://AzureADTokenExchange"
KNOWN_AFTER_APPLY = "(known after apply)"

# What AKS needs to reach through a firewall (AKS "outbound network and FQDN rules"),
# before the spec's own allow-list (the AWS endpoints MMRV keeps using).
AKS_REQUIRED_FQDNS = (
    "*.hcp.{location}.azmk8s.io",
    "mcr.microsoft.com",
    "*.data.mcr.microsoft.com",
    "mcr-0001.mcr-msedge.net",
    "management.azure.com",
    "login.microsoftonline.com",
    "packages.microsoft.com",
    "acs-mirror.azureedge.net",
    "packages.aks.azure.com",
)


class Ref(BaseModel):
    """A value read from another resource: `resource`'s body at dotted `path` (ints index lists)."""

    model_config = ConfigDict(frozen=True)

    resource: str
    path: str

    def lookup(self, body: Mapping[str, Any]) -> Any:
        node: Any = body
        for part in self.path.split("."):
            if isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            elif isinstance(node, Mapping) and part in node:
                node = node[part]
            else:
                return None
        return node


class DesiredResource(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    id: str
    type: str  # e.g. Microsoft.ContainerRegistry/registries
    body: dict[str, Any]
    depends_on: tuple[str, ...] = ()
    owner: str | None = None  # the parent whose tags decide ownership (child resources)
    taggable: bool = True
    # fields whose observed value may legitimately differ (e.g. node count under autoscaling)
    ignore: tuple[str, ...] = ()
    # a resource the tool must not PUT again wholesale: merge observed child lists (VNet subnets)
    keep_observed: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.id.rsplit("/", 1)[-1]


Observed = Mapping[str, dict[str, Any] | None]


# --- names and ids -----------------------------------------------------------------------


def rg_id(env: Environment) -> str:
    return f"/subscriptions/{env.azure.subscription_id}/resourceGroups/{env.azure.resource_group}"


def provider_id(env: Environment, kind: str, name: str) -> str:
    return f"{rg_id(env)}/providers/{kind}/{name}"


def acr_id(env: Environment) -> str:
    return provider_id(env, "Microsoft.ContainerRegistry/registries", env.azure.acr.name)


def aks_id(env: Environment) -> str:
    return provider_id(env, "Microsoft.ContainerService/managedClusters", env.azure.aks.name)


def key_vault_id(env: Environment) -> str:
    return provider_id(env, "Microsoft.KeyVault/vaults", env.azure.key_vault.name)


def identity_id(env: Environment, name: str) -> str:
    return provider_id(env, "Microsoft.ManagedIdentity/userAssignedIdentities", name)


def role_definition_id(env: Environment, role: str) -> str:
    return f"/subscriptions/{env.azure.subscription_id}/providers/Microsoft.Authorization/roleDefinitions/{role}"


def role_assignment_name(scope: str, role: str, principal_key: str) -> str:
    """Deterministic GUID from what the assignment means, not from when it was made."""
    return str(uuid.uuid5(ROLE_ASSIGNMENT_NAMESPACE, f"{scope.lower()}|{role}|{principal_key.lower()}"))


def role_assignment_id(scope: str, role: str, principal_key: str) -> str:
    return (
        f"{scope}/providers/Microsoft.Authorization/roleAssignments/{role_assignment_name(scope, role, principal_key)}"
    )


def namespace_of(spec: Spec) -> str:
    return spec.name


def service_account_of(spec: Spec, component: str) -> str:
    return f"{spec.name}-{component}"


def tags_for(spec: Spec, env: Environment) -> dict[str, str]:
    return {MANAGED_BY: MANAGER, SPEC_TAG: spec.name, ENV_TAG: env.name}


# --- desired state ----------------------------------------------------------------------


def desired_platform(spec: Spec, env: Environment, deployer_object_id: str | None = None) -> list[DesiredResource]:
    """Everything the platform phase creates for one environment, in dependency order.

    `deployer_object_id`: the Entra object id of the principal running the tool (the `oid`
    of its token); it gets Key Vault Secrets Officer on the vault so the secrets phase can
    write. None: no such assignment (someone grants it by hand).
    """
    az = env.azure
    tags = tags_for(spec, env)
    location = az.location
    group = rg_id(env)
    out: list[DesiredResource] = [
        DesiredResource(id=group, type="Microsoft.Resources/resourceGroups", body={"location": location, "tags": tags}),
        DesiredResource(
            id=acr_id(env),
            type="Microsoft.ContainerRegistry/registries",
            depends_on=(group,),
            body={
                "location": location,
                "tags": tags,
                "sku": {"name": az.acr.sku},
                "properties": {"adminUserEnabled": False, "anonymousPullEnabled": False},
            },
        ),
        DesiredResource(
            id=key_vault_id(env),
            type="Microsoft.KeyVault/vaults",
            depends_on=(group,),
            body={
                "location": location,
                "tags": tags,
                "properties": {
                    "tenantId": az.tenant_id,
                    "sku": {"family": "A", "name": "standard"},
                    "enableRbacAuthorization": True,
                    "enableSoftDelete": True,
                    "softDeleteRetentionInDays": 90,
                    # purge protection cannot be turned off once on: production only
                    **({"enablePurgeProtection": True} if env.name == "production" else {}),
                },
            },
        ),
    ]
    for component in spec.components:
        name = az.identities.workloads.get(component)  # type: ignore[call-overload]
        if name:
            out.append(
                DesiredResource(
                    id=identity_id(env, name),
                    type="Microsoft.ManagedIdentity/userAssignedIdentities",
                    depends_on=(group,),
                    body={"location": location, "tags": tags},
                )
            )
    aks_subnet: str | None = None
    if az.firewall.enabled:
        firewall_resources, aks_subnet = _firewall(spec, env, tags)
        out += firewall_resources
    out.append(_aks(spec, env, tags, aks_subnet))
    out += _federation_and_roles(spec, env)
    if deployer_object_id:
        out.append(_deployer_secrets_officer(env, deployer_object_id))
    return out


def _aks(spec: Spec, env: Environment, tags: dict[str, str], subnet: str | None) -> DesiredResource:
    az = env.azure
    pools = []
    ignore = []
    for pool in az.aks.node_pools:
        autoscale = pool.min_count is not None
        profile: dict[str, Any] = {
            "name": pool.name,
            "mode": pool.mode,
            "vmSize": pool.vm_size,
            "count": pool.count,
            "osType": "Linux",
            "type": "VirtualMachineScaleSets",
            "enableAutoScaling": autoscale,
        }
        if autoscale:
            profile |= {"minCount": pool.min_count, "maxCount": pool.max_count}
            ignore.append(f"properties.agentPoolProfiles.{pool.name}.count")  # the autoscaler owns it
        if subnet:
            profile["vnetSubnetID"] = subnet
        pools.append(profile)
    network: dict[str, Any] = {"networkPlugin": "azure", "networkPolicy": "azure"}
    if subnet:
        network["outboundType"] = "userDefinedRouting"
    depends = [rg_id(env)] + ([subnet] if subnet else [])
    return DesiredResource(
        id=aks_id(env),
        type="Microsoft.ContainerService/managedClusters",
        depends_on=tuple(depends),
        ignore=tuple(ignore),
        body={
            "location": az.location,
            "tags": tags,
            "identity": {"type": "SystemAssigned"},
            "properties": {
                "kubernetesVersion": az.aks.kubernetes_version,
                "dnsPrefix": az.aks.name,
                "agentPoolProfiles": pools,
                "oidcIssuerProfile": {"enabled": True},
                "securityProfile": {"workloadIdentity": {"enabled": True}},
                # the Secrets Store CSI driver with the Azure provider: what serves the ship's
                # SecretProviderClass (Key Vault secrets mounted through the workload identity)
                "addonProfiles": {
                    "azureKeyvaultSecretsProvider": {"enabled": True, "config": {"enableSecretRotation": "true"}}
                },
                "aadProfile": {"managed": True, "enableAzureRBAC": True, "tenantID": az.tenant_id},
                "disableLocalAccounts": True,
                "networkProfile": network,
            },
        },
    )


def _federation_and_roles(spec: Spec, env: Environment) -> list[DesiredResource]:
    az = env.azure
    cluster = aks_id(env)
    out: list[DesiredResource] = []
    # the kubelet identity pulls images: AcrPull on the registry
    registry = acr_id(env)
    kubelet = Ref(resource=cluster, path="properties.identityProfile.kubeletidentity.objectId")
    out.append(_role_assignment(env, registry, ROLE_ACR_PULL, f"{cluster}#kubelet", kubelet, (registry, cluster)))
    vault = key_vault_id(env)
    for component in spec.components:
        name = az.identities.workloads.get(component)  # type: ignore[call-overload]
        if not name:
            continue
        identity = identity_id(env, name)
        account = service_account_of(spec, component)
        out.append(
            DesiredResource(
                id=f"{identity}/federatedIdentityCredentials/{account}",
                type="Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials",
                depends_on=(identity, cluster),
                owner=identity,
                taggable=False,
                body={
                    "properties": {
                        "issuer": Ref(resource=cluster, path="properties.oidcIssuerProfile.issuerURL"),
                        "subject": f"system:serviceaccount:{namespace_of(spec)}:{account}",
                        "audiences": [WORKLOAD_AUDIENCE],
                    }
                },
            )
        )
        principal = Ref(resource=identity, path="properties.principalId")
        out.append(_role_assignment(env, vault, ROLE_KEY_VAULT_SECRETS_USER, identity, principal, (vault, identity)))
    return out


def _deployer_secrets_officer(env: Environment, object_id: str) -> DesiredResource:
    """Key Vault Secrets Officer on the vault for whoever runs the tool: the secrets phase writes there.

    No principalType: the deployer may be a user or a service principal, and ARM looks an
    existing principal up itself (the type only helps with a principal created seconds ago).
    """
    vault = key_vault_id(env)
    return _role_assignment(
        env, vault, ROLE_KEY_VAULT_SECRETS_OFFICER, f"deployer-{object_id}", object_id, (vault,), principal_type=None
    )


def _role_assignment(
    env: Environment,
    scope: str,
    role: str,
    principal_key: str,
    principal: Ref | str,
    depends: tuple[str, ...],
    *,
    principal_type: str | None = "ServicePrincipal",
) -> DesiredResource:
    properties: dict[str, Any] = {
        "roleDefinitionId": role_definition_id(env, role),
        "principalId": principal,
        "principalType": principal_type,
        "description": f"{MANAGER}: {principal_key.rsplit('/', 1)[-1]}",
    }
    return DesiredResource(
        id=role_assignment_id(scope, role, principal_key),
        type="Microsoft.Authorization/roleAssignments",
        depends_on=depends,
        taggable=False,
        body={"properties": {k: v for k, v in properties.items() if v is not None}},
    )


def _firewall(spec: Spec, env: Environment, tags: dict[str, str]) -> tuple[list[DesiredResource], str]:
    """Hub-less egress lock-down: one VNet, the firewall in AzureFirewallSubnet, AKS nodes routed through it.

    The cycle VNet -> firewall -> route -> subnet is broken by managing subnets and the
    default route as child resources, created after what they point at.
    """
    az = env.azure
    fw = az.firewall
    assert fw.name is not None  # the spec requires it when enabled
    location = az.location
    group = rg_id(env)
    network = ipaddress.ip_network(fw.vnet_address_space)
    firewall_prefix, nodes_prefix = _carve(network)
    vnet = provider_id(env, "Microsoft.Network/virtualNetworks", f"vnet-{spec.name}-{env.name}")
    firewall_subnet = f"{vnet}/subnets/AzureFirewallSubnet"
    nodes_subnet = f"{vnet}/subnets/aks-nodes"
    public_ip = provider_id(env, "Microsoft.Network/publicIPAddresses", f"pip-{fw.name}")
    policy = provider_id(env, "Microsoft.Network/firewallPolicies", f"afwp-{spec.name}-{env.name}")
    rule_group = f"{policy}/ruleCollectionGroups/mmrv-egress"
    firewall = provider_id(env, "Microsoft.Network/azureFirewalls", fw.name)
    route_table = provider_id(env, "Microsoft.Network/routeTables", f"rt-{spec.name}-{env.name}-egress")
    route = f"{route_table}/routes/default-via-firewall"
    fqdns = [f.format(location=location) for f in AKS_REQUIRED_FQDNS]
    fqdns += [f"{az.acr.name.lower()}.azurecr.io", f"{az.key_vault.name}.vault.azure.net", *fw.allowed_fqdns]
    resources = [
        DesiredResource(
            id=public_ip,
            type="Microsoft.Network/publicIPAddresses",
            depends_on=(group,),
            body={
                "location": location,
                "tags": tags,
                "sku": {"name": "Standard"},
                "properties": {"publicIPAllocationMethod": "Static"},
            },
        ),
        DesiredResource(
            id=policy,
            type="Microsoft.Network/firewallPolicies",
            depends_on=(group,),
            body={"location": location, "tags": tags, "properties": {"sku": {"tier": "Standard"}}},
        ),
        DesiredResource(
            id=rule_group,
            type="Microsoft.Network/firewallPolicies/ruleCollectionGroups",
            depends_on=(policy,),
            owner=policy,
            taggable=False,
            body={"properties": {"priority": 200, "ruleCollections": _egress_rules(fqdns, str(network))}},
        ),
        DesiredResource(
            id=vnet,
            type="Microsoft.Network/virtualNetworks",
            depends_on=(group,),
            keep_observed=("properties.subnets",),
            body={
                "location": location,
                "tags": tags,
                "properties": {"addressSpace": {"addressPrefixes": [str(network)]}},
            },
        ),
        DesiredResource(
            id=firewall_subnet,
            type="Microsoft.Network/virtualNetworks/subnets",
            depends_on=(vnet,),
            owner=vnet,
            taggable=False,
            body={"properties": {"addressPrefix": firewall_prefix}},
        ),
        DesiredResource(
            id=firewall,
            type="Microsoft.Network/azureFirewalls",
            depends_on=(firewall_subnet, public_ip, rule_group),
            body={
                "location": location,
                "tags": tags,
                "properties": {
                    "sku": {"name": "AZFW_VNet", "tier": "Standard"},
                    "firewallPolicy": {"id": policy},
                    "ipConfigurations": [
                        {
                            "name": "ipconfig",
                            "properties": {"subnet": {"id": firewall_subnet}, "publicIPAddress": {"id": public_ip}},
                        }
                    ],
                },
            },
        ),
        DesiredResource(
            id=route_table,
            type="Microsoft.Network/routeTables",
            depends_on=(group,),
            keep_observed=("properties.routes",),
            body={"location": location, "tags": tags, "properties": {"disableBgpRoutePropagation": True}},
        ),
        DesiredResource(
            id=route,
            type="Microsoft.Network/routeTables/routes",
            depends_on=(route_table, firewall),
            owner=route_table,
            taggable=False,
            body={
                "properties": {
                    "addressPrefix": "0.0.0.0/0",
                    "nextHopType": "VirtualAppliance",
                    "nextHopIpAddress": Ref(
                        resource=firewall, path="properties.ipConfigurations.0.properties.privateIPAddress"
                    ),
                }
            },
        ),
        DesiredResource(
            id=nodes_subnet,
            type="Microsoft.Network/virtualNetworks/subnets",
            depends_on=(vnet, route),
            owner=vnet,
            taggable=False,
            body={"properties": {"addressPrefix": nodes_prefix, "routeTable": {"id": route_table}}},
        ),
    ]
    return resources, nodes_subnet


def _carve(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> tuple[str, str]:
    """AzureFirewallSubnet needs a /26; the nodes get the next block up to a /20."""
    if network.prefixlen > 24:
        raise ValueError(f"vnet_address_space {network} is too small: at least a /24 is needed")
    blocks: list[Any] = list(network.subnets(new_prefix=26))
    nodes_prefix = min(20, max(network.prefixlen + 1, 24))
    nodes = next(n for n in network.subnets(new_prefix=nodes_prefix) if not n.overlaps(blocks[0]))
    return str(blocks[0]), str(nodes)


def _egress_rules(fqdns: list[str], source: str) -> list[dict[str, Any]]:
    return [
        {
            "ruleCollectionType": "FirewallPolicyFilterRuleCollection",
            "name": "aks-and-aws-egress",
            "priority": 100,
            "action": {"type": "Allow"},
            "rules": [
                {
                    "ruleType": "ApplicationRule",
                    "name": "allow-fqdns",
                    "sourceAddresses": [source],
                    "protocols": [{"protocolType": "Https", "port": 443}],
                    "targetFqdns": fqdns,
                }
            ],
        },
        {
            "ruleCollectionType": "FirewallPolicyFilterRuleCollection",
            "name": "aks-network",
            "priority": 110,
            "action": {"type": "Allow"},
            "rules": [
                {
                    "ruleType": "NetworkRule",
                    "name": "ntp",
                    "ipProtocols": ["UDP"],
                    "sourceAddresses": [source],
                    "destinationAddresses": ["*"],
                    "destinationPorts": ["123"],
                },
                {
                    "ruleType": "NetworkRule",
                    "name": "azure-cloud",
                    "ipProtocols": ["TCP", "UDP"],
                    "sourceAddresses": [source],
                    "destinationAddresses": ["AzureCloud"],
                    "destinationPorts": ["443", "1194", "9000"],
                },
            ],
        },
    ]


# --- resolution and planning ------------------------------------------------------------


def resolve(value: Any, lookup: Callable[[Ref], Any]) -> Any:
    """Replace every Ref inside `value` by `lookup(ref)` (which may return None when unknown)."""
    if isinstance(value, Ref):
        return lookup(value)
    if isinstance(value, dict):
        return {k: resolve(v, lookup) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, lookup) for v in value]
    return value


def has_refs(value: Any) -> bool:
    if isinstance(value, Ref):
        return True
    if isinstance(value, dict):
        return any(has_refs(v) for v in value.values())
    if isinstance(value, list):
        return any(has_refs(v) for v in value)
    return False


def observed_lookup(observed: Observed) -> Callable[[Ref], Any]:
    def lookup(ref: Ref) -> Any:
        body = observed.get(ref.resource)
        return ref.lookup(body) if body else None

    return lookup


def is_owned(resource: DesiredResource, observed: Observed, spec_name: str) -> bool:
    if resource.type == "Microsoft.Authorization/roleAssignments":
        return True  # the name is our deterministic GUID: nobody else would pick it
    holder_id = resource.owner if not resource.taggable and resource.owner else resource.id
    holder = observed.get(holder_id) or {}
    tags = holder.get("tags") or {}
    return tags.get(MANAGED_BY) == MANAGER and tags.get(SPEC_TAG) == spec_name


def compare(desired: Any, observed: Any, path: str, ignore: tuple[str, ...]) -> list[FieldChange]:
    """Differences that matter: only fields the spec sets; lists of named items matched by name.

    A Kubernetes version "1.30" matches whatever 1.30.x ARM reports; a Ref not yet known
    matches anything (it is resolved at apply).
    """
    if path in ignore:
        return []
    if isinstance(desired, Ref):
        return []
    if isinstance(desired, dict):
        have = observed if isinstance(observed, dict) else {}
        changes: list[FieldChange] = []
        for key, want in desired.items():
            changes += compare(want, _get_ci(have, key), f"{path}.{key}" if path else key, ignore)
        return changes
    if isinstance(desired, list) and desired and all(isinstance(d, dict) and "name" in d for d in desired):
        have_items: dict[str, Any] = {str(i.get("name")): i for i in observed or [] if isinstance(i, dict)}
        changes = []
        for item in desired:
            changes += compare(item, have_items.get(item["name"], {}), f"{path}.{item['name']}", ignore)
        extra = sorted(set(have_items) - {d["name"] for d in desired})
        if extra:
            changes.append(
                FieldChange(field=f"{path}[names]", observed=sorted(have_items), desired=[d["name"] for d in desired])
            )
        return changes
    if _equivalent(path, desired, observed):
        return []
    return [FieldChange(field=path, observed=observed, desired=desired)]


def _equivalent(path: str, desired: Any, observed: Any) -> bool:
    if desired == observed:
        return True
    if not (isinstance(desired, str) and isinstance(observed, str)):
        return False
    if path.endswith("kubernetesVersion"):
        return observed.startswith(desired + ".")  # "1.30" is whatever 1.30.x ARM picked
    return _looks_like_id(desired) and desired.lower() == observed.lower()  # ARM ids ignore case


def _get_ci(mapping: Mapping[str, Any], key: str) -> Any:
    if key in mapping:
        return mapping[key]
    lowered = key.lower()
    return next((v for k, v in mapping.items() if k.lower() == lowered), None)


def _looks_like_id(value: str) -> bool:
    return bool(re.match(r"^/subscriptions/", value, re.IGNORECASE))


def plan_platform(spec: Spec, env: Environment, observed: Observed, deployer_object_id: str | None = None) -> Plan:
    """Desired (from the spec) vs observed (from ARM) -> ordered actions with reasons."""
    desired = desired_platform(spec, env, deployer_object_id)
    lookup = observed_lookup(observed)
    actions: list[Action] = []
    for resource in desired:
        have = observed.get(resource.id)
        shown_body = resolve(resource.body, lambda ref: lookup(ref) or KNOWN_AFTER_APPLY)
        if have is None:
            parent_missing = [d for d in resource.depends_on if observed.get(d) is None]
            reason = "does not exist"
            if parent_missing:
                reason += " (after " + ", ".join(_short(d) for d in parent_missing) + ")"
            actions.append(_action("create", resource, reason, (), shown_body))
            continue
        changes = compare(resource.body, have, "", resource.ignore)
        # A Ref that resolves now must also match what is there.
        changes += _ref_mismatches(resource.body, have, lookup)
        if not changes:
            actions.append(_action("noop", resource, "matches the spec", (), shown_body))
        elif not is_owned(resource, observed, spec.name):
            actions.append(
                _action(
                    "blocked",
                    resource,
                    f"exists but is not managed by {MANAGER} for spec {spec.name!r} (no ownership tags): "
                    "the tool will not change it; fix it by hand or tag it",
                    tuple(changes),
                    shown_body,
                )
            )
        else:
            actions.append(_action("update", resource, "differs from the spec", tuple(changes), shown_body))
    return Plan(phase="platform", environment=env.name, actions=tuple(actions))


def _ref_mismatches(body: Any, have: Any, lookup: Callable[[Ref], Any], path: str = "") -> list[FieldChange]:
    out: list[FieldChange] = []
    if isinstance(body, Ref):
        want = lookup(body)
        if want is not None and want != have:
            out.append(FieldChange(field=path, observed=have, desired=want))
    elif isinstance(body, dict):
        for key, value in body.items():
            sub = _get_ci(have, key) if isinstance(have, dict) else None
            out += _ref_mismatches(value, sub, lookup, f"{path}.{key}" if path else key)
    return out


def _action(kind: str, resource: DesiredResource, reason: str, changes: tuple[FieldChange, ...], body: Any) -> Action:
    return Action(
        kind=kind,  # type: ignore[arg-type]
        resource=resource.id,
        resource_type=resource.type,
        reason=reason,
        changes=changes,
        depends_on=resource.depends_on,
        desired=body,
    )


def _short(resource_id: str) -> str:
    parts = resource_id.split("/")
    return "/".join(parts[-2:]) if len(parts) > 2 else resource_id


def desired_by_id(spec: Spec, env: Environment, deployer_object_id: str | None = None) -> dict[str, DesiredResource]:
    return {r.id: r for r in desired_platform(spec, env, deployer_object_id)}


class PlatformOutputs(BaseModel):
    """What later phases need from the platform, read back after apply."""

    environment: str
    acr_login_server: str | None = None
    aks_oidc_issuer: str | None = None
    kubelet_object_id: str | None = None
    key_vault_uri: str | None = None
    workload_client_ids: dict[str, str] = Field(default_factory=dict)
