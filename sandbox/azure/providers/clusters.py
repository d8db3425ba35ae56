"""Microsoft.ContainerService/managedClusters (AKS) and their agentPools.

What AKS does on create and the emulator does too: resolve "1.30" to the newest offered patch
(refusing versions it does not offer with K8sVersionNotSupported), create the node resource
group `MC_<rg>_<name>_<location>` with the kubelet identity `<name>-agentpool` in it, give the
control plane a system-assigned identity, publish an OIDC issuer URL when asked, and hand out
kubeconfigs through listClusterUserCredential / listClusterAdminCredential. Node pools are
stored as child resources (…/agentPools/<pool>) and rendered into `agentPoolProfiles`, so both
views stay one truth. Shapes follow ManagedClustersGet.json (2025-10-01).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import re
import secrets
import uuid
from typing import Any

import yaml

from sandbox.azure.config import DEFAULT_KUBERNETES_MINOR
from sandbox.azure.errors import ServiceError, bad_request
from sandbox.azure.lro import IN_PROGRESS
from sandbox.azure.oidc import CLUSTER_TYPE, issuer_url
from sandbox.azure.providers.base import (
    ArmRequest,
    ArmResponse,
    ResourceId,
    ResourceKind,
    provider_route,
    register_kind,
    require_properties,
)
from sandbox.azure.providers.engine import cascade_delete, get_resource_group
from sandbox.azure.providers.identities import create_identity_internally, require_identity
from sandbox.azure.providers.resources import create_group_internally
from sandbox.azure.store import Record, Store
from sandbox.azure.tokens import AKS_SERVER_APP_ID

NAMESPACE = "Microsoft.ContainerService"
AGENT_POOL_TYPE = f"{CLUSTER_TYPE}/agentPools"
CLUSTER_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?")
POOL_NAME = re.compile(r"[a-z][a-z0-9]{0,11}")
NETWORK_POLICIES = ("none", "calico", "azure", "cilium")
NODE_IMAGE = "AKSUbuntu-2204gen2containerd-202405.03.0"
# the public client kubelogin uses for device-code login (what `az aks get-credentials` writes)
AZURE_CLI_CLIENT_ID = "80faf920-1908-4b52-b5ef-a8e7bedfc67a"
POOL_READ_ONLY = ("name", "provisioningState", "currentOrchestratorVersion", "powerState", "nodeImageVersion", "eTag")


# --- versions ---------------------------------------------------------------------------


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def resolve_version(requested: str, offered: tuple[str, ...]) -> str | None:
    """ "1.30.12" if offered; "1.30" -> the newest offered 1.30 patch; else None."""
    if requested in offered:
        return requested
    if re.fullmatch(r"\d+\.\d+", requested):
        patches = [v for v in offered if v.startswith(requested + ".")]
        return max(patches, key=_version_key) if patches else None
    return None


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


@provider_route(NAMESPACE, "GET", "locations/{location}/kubernetesVersions")
def kubernetes_versions(req: ArmRequest, subscription: str, captures: dict[str, str]) -> ArmResponse:
    offered = req.config.kubernetes_versions
    by_minor: dict[str, list[str]] = {}
    for version in sorted(offered, key=_version_key):
        by_minor.setdefault(_minor(version), []).append(version)
    values = []
    for minor, patches in by_minor.items():
        values.append(
            {
                "version": minor,
                "isDefault": minor == DEFAULT_KUBERNETES_MINOR or None,
                "capabilities": {"supportPlan": ["KubernetesOfficial"]},
                "patchVersions": {
                    p: {"upgrades": [u for u in offered if _version_key(u) > _version_key(p)]} for p in patches
                },
            }
        )
    return ArmResponse(200, {"values": values})


# --- node pools -------------------------------------------------------------------------


def _invalid(message: str, target: str | None = None) -> ServiceError:
    return bad_request("InvalidParameter", message, target=target)


def build_pool(req: ArmRequest, given: dict[str, Any], cluster_version: str, cluster_patch: str) -> dict[str, Any]:
    """Validate one pool profile and fill in what AKS reports. `given` carries its `name`."""
    name = str(given.get("name", ""))
    if not POOL_NAME.fullmatch(name):
        raise _invalid(
            f"Agent pool name '{name}' is invalid: 1-12 lower-case letters and digits, starting with a letter.",
            target="agentPoolProfile.name",
        )
    if not given.get("vmSize"):
        raise _invalid(f"Agent pool '{name}' needs a vmSize.", target="agentPoolProfile.vmSize")
    mode = given.get("mode") or "User"
    if mode not in ("System", "User"):
        raise _invalid(f"Agent pool '{name}' has mode '{mode}'; allowed: System, User.")
    count = int(given.get("count", 1))
    autoscale = bool(given.get("enableAutoScaling"))
    min_count, max_count = given.get("minCount"), given.get("maxCount")
    if autoscale:
        if min_count is None or max_count is None:
            raise _invalid(f"Agent pool '{name}': enableAutoScaling needs minCount and maxCount.")
        if not int(min_count) <= count <= int(max_count):
            raise _invalid(
                f"Agent pool '{name}': count {count} is not within minCount {min_count} and maxCount {max_count}."
            )
    elif min_count is not None or max_count is not None:
        raise _invalid(f"Agent pool '{name}': minCount and maxCount are only allowed with enableAutoScaling.")
    if mode == "System" and count < 1:
        raise _invalid(f"System agent pool '{name}' needs at least one node.")
    requested = str(given.get("orchestratorVersion") or cluster_version)
    patch = resolve_version(requested, req.config.kubernetes_versions)
    if patch is None or _version_key(patch) > _version_key(cluster_patch):
        raise bad_request(
            "AgentPoolK8sVersionNotSupported",
            f"Version {requested} is not supported in this region. Please use [az aks get-versions] command to get "
            "the supported version list in this region. For more information, please check "
            "https://aka.ms/supported-version-list",
        )
    subnet_id = given.get("vnetSubnetID")
    if subnet_id and req.store.get(subnet_id) is None:
        raise _invalid(f"Agent pool '{name}': subnet '{subnet_id}' was not found.", target="vnetSubnetID")
    profile = {k: copy.deepcopy(v) for k, v in given.items() if k not in POOL_READ_ONLY}
    profile.update(
        {
            "name": name,
            "count": count,
            "mode": mode,
            "type": given.get("type") or "VirtualMachineScaleSets",
            "osType": given.get("osType") or "Linux",
            "osSKU": given.get("osSKU") or "Ubuntu",
            "osDiskSizeGB": given.get("osDiskSizeGB") or 128,
            "osDiskType": given.get("osDiskType") or "Managed",
            "kubeletDiskType": "OS",
            "maxPods": given.get("maxPods") or 250,
            "enableAutoScaling": autoscale,
            "orchestratorVersion": requested,
            "currentOrchestratorVersion": patch,
            "nodeImageVersion": NODE_IMAGE,
            "enableNodePublicIP": bool(given.get("enableNodePublicIP", False)),
            "enableFIPS": bool(given.get("enableFIPS", False)),
            "upgradeSettings": given.get("upgradeSettings") or {"maxSurge": "10%"},
            "powerState": {"code": "Running"},
            "eTag": uuid.uuid4().hex[:8],
        }
    )
    if autoscale:
        assert min_count is not None and max_count is not None  # checked above
        profile["minCount"], profile["maxCount"] = int(min_count), int(max_count)
    return profile


def _pool_records(store: Store, cluster_id: str) -> list[Record]:
    pools = [r for r in store.under(cluster_id) if r["type"].lower() == AGENT_POOL_TYPE.lower()]
    return sorted(pools, key=lambda r: r["meta"].get("order", 0))


def _write_pool(store: Store, cluster_id: str, profile: dict[str, Any], state: str) -> None:
    pool_id = f"{cluster_id}/agentPools/{profile['name']}"
    existing = store.get(pool_id)
    properties = {k: v for k, v in profile.items() if k != "name"}
    properties["provisioningState"] = state
    body = {"id": pool_id, "name": profile["name"], "type": AGENT_POOL_TYPE, "properties": properties}
    order = existing["meta"]["order"] if existing else len(_pool_records(store, cluster_id))
    store.put({"id": pool_id, "type": AGENT_POOL_TYPE, "body": body, "meta": {"order": order}})


# --- clusters ---------------------------------------------------------------------------


class ManagedClusters(ResourceKind):
    namespace = NAMESPACE
    types = ("managedClusters",)
    patchable = True
    long_running_patch = True

    def validate_name(self, name: str) -> None:
        if not CLUSTER_NAME.fullmatch(name):
            raise bad_request(
                "InvalidResourceName",
                f"Resource name '{name}' is invalid. AKS names are 1-63 letters, digits, '_' or '-', starting and "
                "ending with a letter or digit.",
            )

    def check_update(self, req: ArmRequest, record: Record) -> None:
        op = req.lro.get(record["meta"].get("op", ""))
        if op is not None and op["status"] == IN_PROGRESS:
            state = record["body"]["properties"].get("provisioningState", "Updating")
            verb = {"Creating": "create", "Deleting": "delete"}.get(state, "update")
            raise ServiceError(
                409,
                "OperationNotAllowed",
                f"Operation is not allowed because there's an in progress {verb} managed cluster operation on the "
                f"managed cluster '{record['body']['name']}' started at {op['start_time']}. Please wait for the "
                "operation to complete and then try again.",
            )

    def build(self, req: ArmRequest, rid: ResourceId, existing: Record | None, body: dict[str, Any]) -> dict[str, Any]:
        given = require_properties(body)
        previous = (existing or {}).get("body", {}).get("properties", {})
        location = str(body.get("location") or (existing or {}).get("body", {}).get("location", "")).lower()
        requested = str(given.get("kubernetesVersion") or previous.get("kubernetesVersion") or DEFAULT_KUBERNETES_MINOR)
        patch = resolve_version(requested, req.config.kubernetes_versions)
        if patch is None:
            raise bad_request(
                "K8sVersionNotSupported",
                f"Managed cluster {rid.name} is on version {requested}, which is not supported in this region. Please "
                "use [az aks get-versions] command to get the supported version list in this region. For more "
                "information, please check https://aka.ms/supported-version-list",
            )
        current = previous.get("currentKubernetesVersion")
        if current and _version_key(patch) < _version_key(current):
            raise bad_request(
                "NotAllowedK8sVersionDowngrading",
                f"Downgrading kubernetes version {current} to {patch} is not allowed.",
            )
        pools = self._pools(req, given, rid, existing, requested, patch)
        props: dict[str, Any] = {
            "kubernetesVersion": requested,
            "currentKubernetesVersion": patch,
            "dnsPrefix": given.get("dnsPrefix") or previous.get("dnsPrefix") or _dns_prefix(rid),
            "enableRBAC": given.get("enableRBAC", True),
            "supportPlan": given.get("supportPlan") or "KubernetesOfficial",
            "maxAgentPools": 100,
            "powerState": {"code": "Running"},
            "disableLocalAccounts": bool(given.get("disableLocalAccounts", False)),
            "resourceUID": previous.get("resourceUID") or uuid.uuid4().hex[:24],
            "nodeResourceGroup": self._node_resource_group(given, previous, rid, location),
            "networkProfile": self._network_profile(req, given, pools),
            "oidcIssuerProfile": self._oidc(given, previous),
            "securityProfile": copy.deepcopy(given.get("securityProfile") or {}),
            "autoUpgradeProfile": given.get("autoUpgradeProfile")
            or {"upgradeChannel": "none", "nodeOSUpgradeChannel": "NodeImage"},
        }
        props["fqdn"] = previous.get("fqdn") or _fqdn(props["dnsPrefix"], rid, location)
        props["azurePortalFQDN"] = props["fqdn"].replace(".hcp.", ".portal.hcp.", 1)
        workload = props["securityProfile"].get("workloadIdentity") or {}
        if workload.get("enabled") and not props["oidcIssuerProfile"]["enabled"]:
            raise _invalid(
                "Enabling workload identity requires enabling OIDC issuer (oidcIssuerProfile.enabled: true).",
                target="securityProfile.workloadIdentity",
            )
        aad = given.get("aadProfile")
        if aad:
            props["aadProfile"] = {
                "managed": bool(aad.get("managed", True)),
                "enableAzureRBAC": bool(aad.get("enableAzureRBAC", False)),
                "tenantID": aad.get("tenantID") or req.config.tenant_id,
                "adminGroupObjectIDs": aad.get("adminGroupObjectIDs"),
            }
        if props["disableLocalAccounts"] and not (aad and aad.get("managed", True)):
            raise bad_request("BadRequest", "Local accounts can only be disabled on clusters with managed Entra ID.")
        for passthrough in ("addonProfiles", "apiServerAccessProfile", "linuxProfile", "autoScalerProfile"):
            if given.get(passthrough) is not None:
                props[passthrough] = copy.deepcopy(given[passthrough])
        identity = self._identity(req, body, existing)
        props["identityProfile"] = self._kubelet(req, given, previous, identity)
        stored: dict[str, Any] = {
            "properties": props,
            "identity": identity,
            "sku": body.get("sku") or {"name": "Base", "tier": "Free"},
            # pools are child records; kept here only until after_put writes them
            "_pools": pools,
        }
        return stored

    def _pools(
        self,
        req: ArmRequest,
        given: dict[str, Any],
        rid: ResourceId,
        existing: Record | None,
        requested: str,
        patch: str,
    ) -> list[dict[str, Any]]:
        profiles = given.get("agentPoolProfiles")
        if existing is None and not profiles:
            raise _invalid("agentPoolProfiles is required: a cluster needs at least one node pool.")
        if not profiles:
            return []
        names = [str(p.get("name", "")) for p in profiles]
        if len(set(names)) != len(names):
            raise _invalid(f"Agent pool names must be unique, got {names}.")
        pools = [build_pool(req, p, requested, patch) for p in profiles]
        others = [
            r["body"]["properties"].get("mode")
            for r in (_pool_records(req.store, str(rid)) if existing else [])
            if r["body"]["name"] not in names
        ]
        if "System" not in [p["mode"] for p in pools] + others:
            raise bad_request("MustDefineAtLeastOneSystemPool", "Must define at least one system pool.")
        return pools

    @staticmethod
    def _node_resource_group(given: dict[str, Any], previous: dict[str, Any], rid: ResourceId, location: str) -> str:
        wanted = given.get("nodeResourceGroup")
        current = previous.get("nodeResourceGroup")
        if current and wanted and wanted != current:
            raise bad_request("PropertyChangeNotAllowed", "Changing property 'nodeResourceGroup' is not allowed.")
        return current or wanted or f"MC_{rid.resource_group}_{rid.name}_{location}"[:80]

    @staticmethod
    def _oidc(given: dict[str, Any], previous: dict[str, Any]) -> dict[str, Any]:
        was = bool(previous.get("oidcIssuerProfile", {}).get("enabled"))
        wanted = given.get("oidcIssuerProfile")
        enabled = bool(wanted.get("enabled")) if isinstance(wanted, dict) else was
        if was and not enabled:
            raise bad_request("BadRequest", "The OIDC issuer cannot be disabled once it has been enabled.")
        return {"enabled": enabled}

    @staticmethod
    def _network_profile(req: ArmRequest, given: dict[str, Any], pools: list[dict[str, Any]]) -> dict[str, Any]:
        net = copy.deepcopy(given.get("networkProfile") or {})
        plugin = net.get("networkPlugin") or "azure"
        policy = net.get("networkPolicy")
        if policy is not None and policy not in NETWORK_POLICIES:
            raise _invalid(f"networkPolicy '{policy}' is not supported; allowed: {', '.join(NETWORK_POLICIES)}.")
        if policy == "azure" and plugin != "azure":
            raise _invalid("networkPolicy 'azure' requires networkPlugin 'azure'.")
        outbound = net.get("outboundType") or "loadBalancer"
        if outbound == "userDefinedRouting":
            for pool in pools:
                subnet = req.store.get(pool.get("vnetSubnetID") or "")
                if subnet is None or not subnet["body"]["properties"].get("routeTable"):
                    raise bad_request(
                        "ExistingRouteTableNotAssociatedWithSubnet",
                        f"An existing route table has not been associated with subnet "
                        f"'{pool.get('vnetSubnetID')}' of agent pool '{pool['name']}'. Please update the route table "
                        "association.",
                    )
        net.update(
            {
                "networkPlugin": plugin,
                "podCidr": net.get("podCidr") or "10.244.0.0/16",
                "serviceCidr": net.get("serviceCidr") or "10.0.0.0/16",
                "dnsServiceIP": net.get("dnsServiceIP") or "10.0.0.10",
                "outboundType": outbound,
                "loadBalancerSku": net.get("loadBalancerSku") or "standard",
                "ipFamilies": net.get("ipFamilies") or ["IPv4"],
            }
        )
        net["podCidrs"] = [net["podCidr"]]
        net["serviceCidrs"] = [net["serviceCidr"]]
        return net

    @staticmethod
    def _identity(req: ArmRequest, body: dict[str, Any], existing: Record | None) -> dict[str, Any]:
        wanted = body.get("identity") or (existing or {}).get("body", {}).get("identity")
        if not wanted or wanted.get("type") not in ("SystemAssigned", "UserAssigned"):
            raise _invalid(
                "The cluster needs a managed identity: identity.type SystemAssigned or UserAssigned.",
                target="identity",
            )
        previous = (existing or {}).get("body", {}).get("identity") or {}
        if wanted["type"] == "SystemAssigned":
            same = previous.get("type") == "SystemAssigned"
            return {
                "type": "SystemAssigned",
                "principalId": previous["principalId"] if same else str(uuid.uuid4()),
                "tenantId": req.config.tenant_id,
            }
        assigned = wanted.get("userAssignedIdentities") or {}
        if len(assigned) != 1:
            raise _invalid("identity.userAssignedIdentities must name exactly one identity.", target="identity")
        resolved = {}
        for resource_id in assigned:
            props = require_identity(req, resource_id)["body"]["properties"]
            resolved[resource_id] = {"principalId": props["principalId"], "clientId": props["clientId"]}
        return {"type": "UserAssigned", "userAssignedIdentities": resolved}

    @staticmethod
    def _kubelet(
        req: ArmRequest, given: dict[str, Any], previous: dict[str, Any], identity: dict[str, Any]
    ) -> dict[str, Any]:
        wanted = (given.get("identityProfile") or {}).get("kubeletidentity")
        current = (previous.get("identityProfile") or {}).get("kubeletidentity") or {}
        if wanted and str(wanted.get("resourceId", "")).lower() == str(current.get("resourceId", "")).lower():
            # a GET body sent back as a PUT (the usual read-modify-write) keeps the identity it has
            return copy.deepcopy(previous["identityProfile"])
        if wanted and wanted.get("resourceId"):
            if identity["type"] != "UserAssigned":
                raise _invalid(
                    "A custom kubelet identity requires a user-assigned control plane identity.",
                    target="identityProfile.kubeletidentity",
                )
            props = require_identity(req, wanted["resourceId"])["body"]["properties"]
            return {
                "kubeletidentity": {
                    "resourceId": wanted["resourceId"],
                    "clientId": props["clientId"],
                    "objectId": props["principalId"],
                }
            }
        # filled by after_put once the node resource group (where AKS puts it) exists
        return copy.deepcopy(previous.get("identityProfile") or {})

    def after_put(self, req: ArmRequest, record: Record, created: bool) -> None:
        body = record["body"]
        props = body["properties"]
        subscription = record["id"].split("/")[2]
        if created:
            record["meta"]["oidc_id"] = str(uuid.uuid4())
            record["meta"]["tenant_id"] = req.config.tenant_id
            record["meta"]["user_token"] = secrets.token_hex(32)
            record["meta"]["admin_token"] = secrets.token_hex(32)
        node_group = props["nodeResourceGroup"]
        if get_resource_group(req.store, subscription, node_group) is None:
            create_group_internally(
                req.store,
                subscription,
                node_group,
                body["location"],
                managedBy=record["id"],
                tags={"aks-managed-cluster-name": body["name"], "aks-managed-cluster-rg": record["id"].split("/")[4]},
            )
        if "kubeletidentity" not in props["identityProfile"]:
            kubelet = create_identity_internally(
                req.store,
                subscription=subscription,
                resource_group=node_group,
                name=f"{body['name']}-agentpool",
                location=body["location"],
                tenant_id=req.config.tenant_id,
            )
            kprops = kubelet["body"]["properties"]
            props["identityProfile"]["kubeletidentity"] = {
                "resourceId": kubelet["id"],
                "clientId": kprops["clientId"],
                "objectId": kprops["principalId"],
            }
        for pool in body.pop("_pools", []):
            _write_pool(req.store, record["id"], pool, props["provisioningState"])
        req.store.touch()

    def on_provisioned(self, store: Store, record: Record, succeeded: bool) -> None:
        for pool in _pool_records(store, record["id"]):
            pool["body"]["properties"]["provisioningState"] = "Succeeded" if succeeded else "Failed"

    def render(self, req: ArmRequest, record: Record) -> dict[str, Any]:
        body = copy.deepcopy(record["body"])
        props = body["properties"]
        props["agentPoolProfiles"] = [
            {"name": p["body"]["name"], **copy.deepcopy(p["body"]["properties"])}
            for p in _pool_records(req.store, record["id"])
        ]
        if props["oidcIssuerProfile"]["enabled"]:
            props["oidcIssuerProfile"]["issuerURL"] = issuer_url(
                req.public_url, record["meta"]["tenant_id"], record["meta"]["oidc_id"]
            )
        return body

    def on_deleted(self, store: Store, record: Record) -> None:
        subscription = record["id"].split("/")[2]
        node_group = get_resource_group(store, subscription, record["body"]["properties"]["nodeResourceGroup"])
        if node_group is not None and node_group["body"].get("managedBy", "").lower() == record["id"].lower():
            cascade_delete(store, node_group)

    def action(self, req: ArmRequest, record: Record, name: str) -> ArmResponse:
        lowered = name.lower()
        if lowered in ("listclusterusercredential", "listclustermonitoringusercredential"):
            return ArmResponse(200, {"kubeconfigs": [_credential(req, record, admin=False)]})
        if lowered == "listclusteradmincredential":
            if record["body"]["properties"]["disableLocalAccounts"]:
                raise bad_request(
                    "BadRequest",
                    "Getting static credential is not allowed because this cluster is set to disable local accounts.",
                )
            return ArmResponse(200, {"kubeconfigs": [_credential(req, record, admin=True)]})
        return super().action(req, record, name)


class AgentPools(ResourceKind):
    namespace = NAMESPACE
    types = ("managedClusters", "agentPools")
    tracked = False
    has_system_data = False

    def validate_name(self, name: str) -> None:
        if not POOL_NAME.fullmatch(name):
            raise _invalid(f"Agent pool name '{name}' is invalid: 1-12 lower-case letters and digits.")

    def build(self, req: ArmRequest, rid: ResourceId, existing: Record | None, body: dict[str, Any]) -> dict[str, Any]:
        cluster = req.store.get(str(rid.parent()))
        assert cluster is not None  # the engine checked the parent exists
        cprops = cluster["body"]["properties"]
        given = {**require_properties(body), "name": rid.name}
        pool = build_pool(req, given, cprops["kubernetesVersion"], cprops["currentKubernetesVersion"])
        if existing is not None and pool["mode"] != "System" and existing["body"]["properties"]["mode"] == "System":
            self._keep_a_system_pool(req, cluster, rid.name)
        return {"properties": {k: v for k, v in pool.items() if k != "name"}}

    def after_put(self, req: ArmRequest, record: Record, created: bool) -> None:
        if created:
            cluster_id = record["id"].rsplit("/", 2)[0]
            record["meta"]["order"] = len(_pool_records(req.store, cluster_id))

    def before_delete(self, req: ArmRequest, record: Record) -> None:
        if record["body"]["properties"].get("mode") == "System":
            cluster = req.store.get(record["id"].rsplit("/", 2)[0])
            assert cluster is not None
            self._keep_a_system_pool(req, cluster, record["body"]["name"])

    @staticmethod
    def _keep_a_system_pool(req: ArmRequest, cluster: Record, leaving: str) -> None:
        others = [p for p in _pool_records(req.store, cluster["id"]) if p["body"]["name"] != leaving]
        if not any(p["body"]["properties"].get("mode") == "System" for p in others):
            raise bad_request("OperationNotAllowed", "The last system agent pool of a cluster cannot be removed.")


register_kind(ManagedClusters())
register_kind(AgentPools())


# --- kubeconfigs ------------------------------------------------------------------------


def _dns_prefix(rid: ResourceId) -> str:
    raw = f"{rid.name[:10]}-{rid.resource_group[:16]}-{rid.subscription[:6]}"
    return re.sub(r"[^A-Za-z0-9-]", "", raw).strip("-")


def _fqdn(dns_prefix: str, rid: ResourceId, location: str) -> str:
    digest = hashlib.sha256(str(rid).lower().encode()).hexdigest()[:8]
    return f"{dns_prefix.lower()}-{digest}.hcp.{location}.azmk8s.io"


def _server_url(req: ArmRequest, record: Record) -> str:
    template = req.config.kubernetes_url
    if not template:
        return f"https://{record['body']['properties']['fqdn']}:443"
    parts = record["id"].split("/")
    return (
        template.replace("{cluster}", record["body"]["name"])
        .replace("{resource_group}", parts[4])
        .replace("{subscription}", parts[2])
    )


def _credential(req: ArmRequest, record: Record, *, admin: bool) -> dict[str, str]:
    body = record["body"]
    props = body["properties"]
    group = record["id"].split("/")[4]
    cluster_name = body["name"]
    user_name = f"{'clusterAdmin' if admin else 'clusterUser'}_{group}_{cluster_name}"
    cluster: dict[str, Any] = {"server": _server_url(req, record)}
    if req.config.kubernetes_ca_file is not None:
        pem = req.config.kubernetes_ca_file.read_bytes()
        cluster["certificate-authority-data"] = base64.b64encode(pem).decode("ascii")
    aad = props.get("aadProfile") or {}
    if admin or not aad.get("managed"):
        # local accounts: a static token (real AKS hands out a client certificate for the admin)
        user: dict[str, Any] = {"token": record["meta"]["admin_token" if admin else "user_token"]}
    else:
        # what `az aks get-credentials` writes for an Entra ID cluster; the tool does not run
        # kubelogin but asks azure-identity for a token of the AKS server application instead
        user = {
            "exec": {
                "apiVersion": "client.authentication.k8s.io/v1beta1",
                "command": "kubelogin",
                "args": [
                    "get-token",
                    "--environment",
                    "AzurePublicCloud",
                    "--server-id",
                    AKS_SERVER_APP_ID,
                    "--client-id",
                    AZURE_CLI_CLIENT_ID,
                    "--tenant-id",
                    aad.get("tenantID") or req.config.tenant_id,
                    "--login",
                    "devicecode",
                ],
                "env": None,
                "interactiveMode": "IfAvailable",
                "provideClusterInfo": False,
            }
        }
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster_name, "cluster": cluster}],
        "contexts": [{"name": cluster_name, "context": {"cluster": cluster_name, "user": user_name}}],
        "current-context": cluster_name,
        "preferences": {},
        "users": [{"name": user_name, "user": user}],
    }
    value = base64.b64encode(yaml.safe_dump(kubeconfig, sort_keys=False).encode()).decode("ascii")
    return {"name": "clusterAdmin" if admin else "clusterUser", "value": value}
