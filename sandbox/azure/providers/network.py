"""Microsoft.Network: what an egress firewall for AKS needs, and the rules that bite.

virtualNetworks (+ subnets), publicIPAddresses, firewallPolicies (+ ruleCollectionGroups),
azureFirewalls, routeTables (+ routes). Network resources carry an etag and no systemData,
report "Updating" while an operation runs, and are long-running on PUT and DELETE.
Children given inline (a VNet's `subnets`, a route table's `routes`) and children PUT on their
own are the same records, so either view stays one truth; a VNet PUT whose `subnets` omits a
subnet removes it, unless something uses it (InUseSubnetCannotBeDeleted), as Azure does.
Back-references (a subnet's ipConfigurations, a route table's subnets, a public IP's
ipConfiguration) are computed when rendered.
"""

from __future__ import annotations

import copy
import hashlib
import ipaddress
import uuid
from typing import Any, ClassVar

from sandbox.azure.errors import bad_request
from sandbox.azure.providers.base import (
    ArmRequest,
    ResourceId,
    ResourceKind,
    etag_of,
    id_ref,
    register_kind,
    require_properties,
)
from sandbox.azure.store import Record, Store

NAMESPACE = "Microsoft.Network"
VNET_TYPE = f"{NAMESPACE}/virtualNetworks"
SUBNET_TYPE = f"{VNET_TYPE}/subnets"
PUBLIC_IP_TYPE = f"{NAMESPACE}/publicIPAddresses"
POLICY_TYPE = f"{NAMESPACE}/firewallPolicies"
RULE_GROUP_TYPE = f"{POLICY_TYPE}/ruleCollectionGroups"
FIREWALL_TYPE = f"{NAMESPACE}/azureFirewalls"
ROUTE_TABLE_TYPE = f"{NAMESPACE}/routeTables"
ROUTE_TYPE = f"{ROUTE_TABLE_TYPE}/routes"
FIREWALL_SUBNET = "AzureFirewallSubnet"
NEXT_HOP_TYPES = ("VirtualNetworkGateway", "VnetLocal", "Internet", "VirtualAppliance", "None")


def _network(value: Any, what: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(str(value), strict=True)
    except ValueError:
        raise bad_request("InvalidAddressPrefixFormat", f"{what} '{value}' is not a valid CIDR prefix.") from None


def _children(store: Store, parent_id: str, child_type: str) -> list[Record]:
    found = [r for r in store.under(parent_id) if r["type"].lower() == child_type.lower()]
    return sorted(found, key=lambda r: r["meta"].get("order", 0))


def _require_ref(store: Store, ref: Any, what: str, expected_type: str) -> Record:
    resource_id = (ref or {}).get("id") if isinstance(ref, dict) else None
    record = store.get(resource_id or "")
    if record is None or record["type"].lower() != expected_type.lower():
        raise bad_request(
            "InvalidResourceReference",
            f"Resource {resource_id} referenced by {what} was not found. Please make sure that the referenced "
            "resource exists, and that both resources are in the same region.",
        )
    return record


def _writable(given: dict[str, Any], *computed: str) -> dict[str, Any]:
    """The properties a PUT may set: what the service computes (or back-references) is dropped."""
    return {k: copy.deepcopy(v) for k, v in given.items() if k not in ("provisioningState", *computed)}


def _firewall_ip_configurations(store: Store) -> list[tuple[str, dict[str, Any]]]:
    """(ipConfiguration id, its properties) of every firewall."""
    found = []
    for firewall in store.of_type(FIREWALL_TYPE):
        for config in firewall["body"]["properties"].get("ipConfigurations", []):
            found.append((config["id"], config["properties"]))
    return found


class NetworkKind(ResourceKind):
    namespace = NAMESPACE
    has_system_data = False
    creating_state = "Updating"
    updating_state = "Updating"
    # inline children written by after_put: (body key, child kind)
    inline: ClassVar[tuple[str, str] | None] = None

    def render(self, req: ArmRequest, record: Record) -> dict[str, Any]:
        body = copy.deepcopy(record["body"])
        body["etag"] = etag_of(record)
        if self.inline is not None:
            key, child_type = self.inline
            child_kind = _KINDS_BY_TYPE[child_type.lower()]
            body["properties"][key] = [
                child_kind.render(req, child) for child in _children(req.store, record["id"], child_type)
            ]
        return body

    def on_provisioned(self, store: Store, record: Record, succeeded: bool) -> None:
        if self.inline is not None:
            for child in _children(store, record["id"], self.inline[1]):
                child["body"]["properties"]["provisioningState"] = "Succeeded" if succeeded else "Failed"

    def after_put(self, req: ArmRequest, record: Record, created: bool) -> None:
        if self.inline is None:
            if created and not self.tracked:
                # a child PUT on its own joins its siblings at the end, as Azure lists them
                parent_id = record["id"].rsplit("/", 2)[0]
                record["meta"]["order"] = len(_children(req.store, parent_id, self.type_name))
            return
        _, child_type = self.inline
        items = record["body"]["properties"].pop("_inline", None)
        if items is None:
            return
        wanted = {str(item["name"]).lower() for item in items}
        for child in _children(req.store, record["id"], child_type):
            if child["body"]["name"].lower() not in wanted:
                req.store.remove(child["id"])
        for order, item in enumerate(items):
            child_id = f"{record['id']}/{child_type.rsplit('/', 1)[1]}/{item['name']}"
            properties = {**item["properties"], "provisioningState": record["body"]["properties"]["provisioningState"]}
            body = {"id": child_id, "name": item["name"], "type": child_type, "properties": properties}
            meta = {"etag": str(uuid.uuid4()), "order": order}
            req.store.put({"id": child_id, "type": child_type, "body": body, "meta": meta})


# --- virtual networks and subnets ---------------------------------------------------------


def _check_subnet_prefix(vnet_prefixes: list[str], name: str, prefix: str, siblings: dict[str, str], vnet: str) -> None:
    network = _network(prefix, f"Address prefix of subnet {name}")
    if not any(_contains(_network(p, "Address space"), network) for p in vnet_prefixes):
        raise bad_request(
            "NetcfgSubnetRangeOutsideVnet",
            f"Subnet '{name}' is not valid because its IP address range is outside the IP address range of virtual "
            f"network '{vnet}'.",
        )
    for other_name, other_prefix in siblings.items():
        if other_name.lower() != name.lower() and network.overlaps(_network(other_prefix, "Address prefix")):
            raise bad_request(
                "NetcfgSubnetRangesOverlap",
                f"Subnet '{name}' is not valid because its IP address range overlaps with that of an existing subnet "
                f"'{other_name}' in virtual network '{vnet}'.",
            )


def _contains(
    outer: ipaddress.IPv4Network | ipaddress.IPv6Network, inner: ipaddress.IPv4Network | ipaddress.IPv6Network
) -> bool:
    return (
        outer.version == inner.version
        and int(outer.network_address) <= int(inner.network_address)
        and int(inner.broadcast_address) <= int(outer.broadcast_address)
    )


def _subnet_properties(req: ArmRequest, given: dict[str, Any]) -> dict[str, Any]:
    props = {k: copy.deepcopy(v) for k, v in given.items() if k not in ("provisioningState", "ipConfigurations")}
    if not props.get("addressPrefix"):
        raise bad_request("InvalidRequestFormat", "A subnet needs properties.addressPrefix.")
    if props.get("routeTable"):
        _require_ref(req.store, props["routeTable"], "subnet.routeTable", ROUTE_TABLE_TYPE)
        props["routeTable"] = id_ref(props["routeTable"]["id"])
    props.setdefault("privateEndpointNetworkPolicies", "Disabled")
    props.setdefault("privateLinkServiceNetworkPolicies", "Enabled")
    return props


def _subnet_users(store: Store, subnet_id: str) -> list[str]:
    return [
        cid for cid, props in _firewall_ip_configurations(store) if props["subnet"]["id"].lower() == subnet_id.lower()
    ]


def _in_use(name: str, users: list[str]) -> Exception:
    return bad_request(
        "InUseSubnetCannotBeDeleted",
        f"Subnet {name} is in use by {users[0]} and cannot be deleted. In order to delete the subnet, delete all the "
        "resources within the subnet.",
    )


class VirtualNetworks(NetworkKind):
    types = ("virtualNetworks",)
    inline = ("subnets", SUBNET_TYPE)

    def build(self, req: ArmRequest, rid: ResourceId, existing: Record | None, body: dict[str, Any]) -> dict[str, Any]:
        given = require_properties(body)
        prefixes = (given.get("addressSpace") or {}).get("addressPrefixes") or []
        if not prefixes:
            raise bad_request(
                "InvalidRequestFormat", "A virtual network needs properties.addressSpace.addressPrefixes."
            )
        for prefix in prefixes:
            _network(prefix, "Address space")
        subnets = given.get("subnets") or []
        items: list[dict[str, Any]] = []
        seen: dict[str, str] = {}
        for subnet in subnets:
            name = str(subnet.get("name", ""))
            props = _subnet_properties(req, subnet.get("properties") or {})
            _check_subnet_prefix(prefixes, name, props["addressPrefix"], seen, rid.name)
            seen[name] = props["addressPrefix"]
            items.append({"name": name, "properties": props})
        if existing is not None:
            kept = {name.lower() for name in seen}
            for child in _children(req.store, existing["id"], SUBNET_TYPE):
                users = _subnet_users(req.store, child["id"])
                if child["body"]["name"].lower() not in kept and users:
                    raise _in_use(child["body"]["name"], users)
        previous = (existing or {}).get("body", {}).get("properties", {})
        return {
            "properties": {
                "addressSpace": {"addressPrefixes": list(prefixes)},
                "resourceGuid": previous.get("resourceGuid") or str(uuid.uuid4()),
                "enableDdosProtection": bool(given.get("enableDdosProtection", False)),
                "virtualNetworkPeerings": [],
                "_inline": items,
            }
        }


class Subnets(NetworkKind):
    types = ("virtualNetworks", "subnets")
    tracked = False

    def build(self, req: ArmRequest, rid: ResourceId, existing: Record | None, body: dict[str, Any]) -> dict[str, Any]:
        vnet = req.store.get(str(rid.parent()))
        assert vnet is not None  # the engine checked the parent exists
        props = _subnet_properties(req, require_properties(body))
        siblings = {
            c["body"]["name"]: c["body"]["properties"]["addressPrefix"]
            for c in _children(req.store, vnet["id"], SUBNET_TYPE)
        }
        prefixes = vnet["body"]["properties"]["addressSpace"]["addressPrefixes"]
        _check_subnet_prefix(prefixes, rid.name, props["addressPrefix"], siblings, vnet["body"]["name"])
        return {"properties": props}

    def before_delete(self, req: ArmRequest, record: Record) -> None:
        users = _subnet_users(req.store, record["id"])
        if users:
            raise _in_use(record["body"]["name"], users)

    def render(self, req: ArmRequest, record: Record) -> dict[str, Any]:
        body = super().render(req, record)
        users = _subnet_users(req.store, record["id"])
        if users:
            body["properties"]["ipConfigurations"] = [id_ref(u) for u in users]
        return body


# --- public IPs ---------------------------------------------------------------------------


class PublicIPAddresses(NetworkKind):
    types = ("publicIPAddresses",)

    def build(self, req: ArmRequest, rid: ResourceId, existing: Record | None, body: dict[str, Any]) -> dict[str, Any]:
        given = require_properties(body)
        sku = body.get("sku") or {"name": "Standard", "tier": "Regional"}
        method = given.get("publicIPAllocationMethod") or ("Static" if sku.get("name") == "Standard" else "Dynamic")
        if sku.get("name") == "Standard" and method != "Static":
            raise bad_request(
                "StandardSkuPublicIPAddressesMustBeStatic",
                f"Standard sku publicIp {rid} must have AllocationMethod set to Static.",
            )
        digest = hashlib.sha256(str(rid).lower().encode()).digest()
        previous = (existing or {}).get("body", {}).get("properties", {})
        return {
            "sku": {"name": sku.get("name", "Standard"), "tier": sku.get("tier", "Regional")},
            "properties": {
                "publicIPAllocationMethod": method,
                "publicIPAddressVersion": given.get("publicIPAddressVersion") or "IPv4",
                "idleTimeoutInMinutes": given.get("idleTimeoutInMinutes") or 4,
                "ipAddress": previous.get("ipAddress") or f"20.{digest[0]}.{digest[1]}.{max(digest[2], 1)}",
                "ipTags": [],
                "resourceGuid": previous.get("resourceGuid") or str(uuid.uuid4()),
            },
        }

    def _users(self, store: Store, record: Record) -> list[str]:
        return [
            cid
            for cid, props in _firewall_ip_configurations(store)
            if (props.get("publicIPAddress") or {}).get("id", "").lower() == record["id"].lower()
        ]

    def before_delete(self, req: ArmRequest, record: Record) -> None:
        users = self._users(req.store, record)
        if users:
            raise bad_request(
                "PublicIPAddressInUse",
                f"Public IP address {record['id']} can not be deleted since it is still allocated to resource "
                f"{users[0]}.",
            )

    def render(self, req: ArmRequest, record: Record) -> dict[str, Any]:
        body = super().render(req, record)
        users = self._users(req.store, record)
        if users:
            body["properties"]["ipConfiguration"] = id_ref(users[0])
        return body


# --- firewall policies, rule collection groups, firewalls -----------------------------------


class FirewallPolicies(NetworkKind):
    types = ("firewallPolicies",)

    def build(self, req: ArmRequest, rid: ResourceId, existing: Record | None, body: dict[str, Any]) -> dict[str, Any]:
        given = require_properties(body)
        props = _writable(given, "ruleCollectionGroups", "firewalls", "childPolicies")
        props.setdefault("threatIntelMode", "Alert")
        props["sku"] = given.get("sku") or {"tier": "Standard"}
        return {"properties": props}

    def render(self, req: ArmRequest, record: Record) -> dict[str, Any]:
        body = super().render(req, record)
        props = body["properties"]
        props["ruleCollectionGroups"] = [id_ref(c["id"]) for c in _children(req.store, record["id"], RULE_GROUP_TYPE)]
        props["firewalls"] = [
            id_ref(fw["id"])
            for fw in req.store.of_type(FIREWALL_TYPE)
            if (fw["body"]["properties"].get("firewallPolicy") or {}).get("id", "").lower() == record["id"].lower()
        ]
        props["childPolicies"] = []
        return body


class RuleCollectionGroups(NetworkKind):
    types = ("firewallPolicies", "ruleCollectionGroups")
    tracked = False

    def build(self, req: ArmRequest, rid: ResourceId, existing: Record | None, body: dict[str, Any]) -> dict[str, Any]:
        given = require_properties(body)
        priority = given.get("priority")
        if not isinstance(priority, int) or not 100 <= priority <= 65000:
            raise bad_request(
                "FirewallPolicyRuleCollectionGroupInvalidPriorityValue",
                f"Rule collection group '{rid.name}' needs a priority between 100 and 65000 (got {priority!r}).",
            )
        for collection in given.get("ruleCollections") or []:
            if not collection.get("ruleCollectionType") or not collection.get("name"):
                raise bad_request(
                    "InvalidRequestFormat", "Every rule collection needs a name and a ruleCollectionType."
                )
        return {
            "properties": {"priority": priority, "ruleCollections": copy.deepcopy(given.get("ruleCollections") or [])}
        }


class AzureFirewalls(NetworkKind):
    types = ("azureFirewalls",)

    def build(self, req: ArmRequest, rid: ResourceId, existing: Record | None, body: dict[str, Any]) -> dict[str, Any]:
        given = require_properties(body)
        props = _writable(given, "ipConfigurations", "hubIPAddresses")
        props["sku"] = given.get("sku") or {"name": "AZFW_VNet", "tier": "Standard"}
        props.setdefault("threatIntelMode", "Alert")
        if given.get("firewallPolicy"):
            _require_ref(req.store, given["firewallPolicy"], "azureFirewall.firewallPolicy", POLICY_TYPE)
            props["firewallPolicy"] = id_ref(given["firewallPolicy"]["id"])
        configs = given.get("ipConfigurations") or []
        if not configs:
            raise bad_request("AzureFirewallMissingIpConfiguration", "An Azure Firewall needs an ipConfiguration.")
        props["ipConfigurations"] = [self._ip_configuration(req, rid, config) for config in configs]
        return {"properties": props}

    @staticmethod
    def _ip_configuration(req: ArmRequest, rid: ResourceId, config: dict[str, Any]) -> dict[str, Any]:
        name = str(config.get("name") or "ipconfig")
        given = config.get("properties") or {}
        subnet = _require_ref(req.store, given.get("subnet"), f"azureFirewall {rid.name}", SUBNET_TYPE)
        if subnet["body"]["name"] != FIREWALL_SUBNET:
            raise bad_request(
                "AzureFirewallSubnetNameInvalid",
                f"Subnet '{subnet['body']['name']}' cannot host Azure Firewall {rid.name}: the subnet must be named "
                f"'{FIREWALL_SUBNET}'.",
            )
        network = _network(subnet["body"]["properties"]["addressPrefix"], "Address prefix")
        if network.prefixlen > 26:
            raise bad_request(
                "AzureFirewallSubnetPrefixTooSmall",
                f"The {FIREWALL_SUBNET} of Azure Firewall {rid.name} must be /26 or larger (is /{network.prefixlen}).",
            )
        props: dict[str, Any] = {
            "subnet": id_ref(subnet["id"]),
            # Azure keeps the first four addresses of a subnet; the firewall takes the next one
            "privateIPAddress": str(network.network_address + 4),
            "privateIPAllocationMethod": "Dynamic",
            "provisioningState": "Succeeded",
        }
        if given.get("publicIPAddress"):
            public = _require_ref(req.store, given["publicIPAddress"], f"azureFirewall {rid.name}", PUBLIC_IP_TYPE)
            props["publicIPAddress"] = id_ref(public["id"])
        return {
            "id": f"{rid}/azureFirewallIpConfigurations/{name}",
            "name": name,
            "type": f"{FIREWALL_TYPE}/azureFirewallIpConfigurations",
            "etag": f'W/"{uuid.uuid4()}"',
            "properties": props,
        }


# --- route tables and routes ----------------------------------------------------------------


def _route_properties(name: str, given: dict[str, Any]) -> dict[str, Any]:
    if not given.get("addressPrefix"):
        raise bad_request("InvalidRequestFormat", f"Route '{name}' needs properties.addressPrefix.")
    hop = given.get("nextHopType")
    if hop not in NEXT_HOP_TYPES:
        raise bad_request(
            "InvalidRequestFormat", f"Route '{name}' has nextHopType {hop!r}; allowed: {', '.join(NEXT_HOP_TYPES)}."
        )
    props: dict[str, Any] = {"addressPrefix": given["addressPrefix"], "nextHopType": hop, "hasBgpOverride": False}
    if hop == "VirtualAppliance":
        address = given.get("nextHopIpAddress")
        try:
            ipaddress.ip_address(str(address))
        except ValueError:
            raise bad_request(
                "InvalidNextHopIpAddress",
                f"Route '{name}' of type VirtualAppliance needs a valid nextHopIpAddress (got {address!r}).",
            ) from None
        props["nextHopIpAddress"] = address
    elif given.get("nextHopIpAddress"):
        raise bad_request(
            "NextHopIpAddressNotAllowed", f"Route '{name}': nextHopIpAddress is only allowed with VirtualAppliance."
        )
    return props


class RouteTables(NetworkKind):
    types = ("routeTables",)
    inline = ("routes", ROUTE_TYPE)

    def build(self, req: ArmRequest, rid: ResourceId, existing: Record | None, body: dict[str, Any]) -> dict[str, Any]:
        given = require_properties(body)
        items = [
            {
                "name": str(r.get("name", "")),
                "properties": _route_properties(str(r.get("name", "")), r.get("properties") or {}),
            }
            for r in given.get("routes") or []
        ]
        previous = (existing or {}).get("body", {}).get("properties", {})
        return {
            "properties": {
                "disableBgpRoutePropagation": bool(given.get("disableBgpRoutePropagation", False)),
                "resourceGuid": previous.get("resourceGuid") or str(uuid.uuid4()),
                "_inline": items,
            }
        }

    def render(self, req: ArmRequest, record: Record) -> dict[str, Any]:
        body = super().render(req, record)
        body["properties"]["subnets"] = [
            id_ref(s["id"])
            for s in req.store.of_type(SUBNET_TYPE)
            if (s["body"]["properties"].get("routeTable") or {}).get("id", "").lower() == record["id"].lower()
        ]
        return body


class Routes(NetworkKind):
    types = ("routeTables", "routes")
    tracked = False

    def build(self, req: ArmRequest, rid: ResourceId, existing: Record | None, body: dict[str, Any]) -> dict[str, Any]:
        return {"properties": _route_properties(rid.name, require_properties(body))}


_KINDS_BY_TYPE: dict[str, NetworkKind] = {}
for _kind in (
    VirtualNetworks(),
    Subnets(),
    PublicIPAddresses(),
    FirewallPolicies(),
    RuleCollectionGroups(),
    AzureFirewalls(),
    RouteTables(),
    Routes(),
):
    register_kind(_kind)
    _KINDS_BY_TYPE[_kind.type_name.lower()] = _kind
