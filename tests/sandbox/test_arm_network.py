"""The egress firewall's network resources (azure-mgmt-network) against the emulator, end to end."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.containerservice import ContainerServiceClient
from azure.mgmt.network import NetworkManagementClient
from azure.mgmt.resource.resources import ResourceManagementClient

from sandbox.azure.testing import TEST_SUBSCRIPTION, RunningEmulator, serve_for_tests

pytestmark = pytest.mark.sandbox

SUB = TEST_SUBSCRIPTION
RG = "rg-net"
LOCATION = "westeurope"
TAGS = {"managed-by": "mmrv-migrate"}


def error_code(exc: HttpResponseError) -> str:
    return str(exc.error.code)  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    with serve_for_tests(tmp_path_factory.mktemp("azure-network")) as running:
        running.arm_client(ResourceManagementClient, SUB).resource_groups.create_or_update(RG, {"location": LOCATION})
        yield running


@pytest.fixture(scope="module")
def network(emulator: RunningEmulator) -> NetworkManagementClient:
    return emulator.arm_client(NetworkManagementClient, SUB)


@pytest.fixture(scope="module")
def firewall(network: NetworkManagementClient) -> dict[str, Any]:
    """VNet with AzureFirewallSubnet, public IP, policy with an allow-list, firewall: what the phase builds."""
    vnet = network.virtual_networks.begin_create_or_update(
        RG,
        "vnet-mmrv",
        {
            "location": LOCATION,
            "tags": TAGS,
            "properties": {
                "addressSpace": {"addressPrefixes": ["10.40.0.0/16"]},
                "subnets": [
                    {"name": "AzureFirewallSubnet", "properties": {"addressPrefix": "10.40.0.0/26"}},
                    {"name": "aks-nodes", "properties": {"addressPrefix": "10.40.8.0/21"}},
                ],
            },
        },
    ).result()
    public_ip = network.public_ip_addresses.begin_create_or_update(
        RG,
        "pip-afw",
        {"location": LOCATION, "sku": {"name": "Standard"}, "properties": {"publicIPAllocationMethod": "Static"}},
    ).result()
    policy = network.firewall_policies.begin_create_or_update(
        RG, "afwp-mmrv", {"location": LOCATION, "tags": TAGS}
    ).result()
    group = network.firewall_policy_rule_collection_groups.begin_create_or_update(
        RG,
        "afwp-mmrv",
        "egress",
        {
            "properties": {
                "priority": 200,
                "ruleCollections": [
                    {
                        "ruleCollectionType": "FirewallPolicyFilterRuleCollection",
                        "name": "allow-aws",
                        "priority": 100,
                        "action": {"type": "Allow"},
                        "rules": [
                            {
                                "ruleType": "ApplicationRule",
                                "name": "aws",
                                "sourceAddresses": ["10.40.8.0/21"],
                                "protocols": [{"protocolType": "Https", "port": 443}],
                                "targetFqdns": ["*.amazonaws.com"],
                            }
                        ],
                    }
                ],
            }
        },
    ).result()
    subnet_id = f"{vnet.id}/subnets/AzureFirewallSubnet"
    made = network.azure_firewalls.begin_create_or_update(
        RG,
        "afw-mmrv",
        {
            "location": LOCATION,
            "tags": TAGS,
            "properties": {
                "sku": {"name": "AZFW_VNet", "tier": "Standard"},
                "firewallPolicy": {"id": policy.id},
                "ipConfigurations": [
                    {
                        "name": "ipconfig",
                        "properties": {"subnet": {"id": subnet_id}, "publicIPAddress": {"id": public_ip.id}},
                    }
                ],
            },
        },
    ).result()
    return {"vnet": vnet, "public_ip": public_ip, "policy": policy, "group": group, "firewall": made}


def test_the_firewall_stack_comes_back_whole(network: NetworkManagementClient, firewall: dict[str, Any]) -> None:
    vnet, fw = firewall["vnet"], firewall["firewall"]
    assert vnet.id == f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network/virtualNetworks/vnet-mmrv"
    assert vnet.etag.startswith('W/"') and vnet.provisioning_state == "Succeeded"
    assert [s.name for s in vnet.subnets] == ["AzureFirewallSubnet", "aks-nodes"]
    assert firewall["public_ip"].ip_address and firewall["public_ip"].sku.name == "Standard"
    rules = firewall["group"].rule_collections[0].rules
    assert rules[0].target_fqdns == ["*.amazonaws.com"]
    ip_config = fw.ip_configurations[0]
    assert ip_config.private_ip_address == "10.40.0.4"
    assert ip_config.subnet.id.endswith("/subnets/AzureFirewallSubnet")
    assert fw.firewall_policy.id == firewall["policy"].id
    policy = network.firewall_policies.get(RG, "afwp-mmrv")
    assert [g.id for g in policy.rule_collection_groups] == [firewall["group"].id]
    assert [f.id for f in policy.firewalls] == [fw.id]
    subnet = network.subnets.get(RG, "vnet-mmrv", "AzureFirewallSubnet")
    assert [c.id for c in subnet.ip_configurations] == [ip_config.id]


def test_cluster_egress_routes_through_the_firewall(
    emulator: RunningEmulator, network: NetworkManagementClient, firewall: dict[str, Any]
) -> None:
    clusters = emulator.arm_client(ContainerServiceClient, SUB)
    nodes = f"{firewall['vnet'].id}/subnets/aks-nodes"
    body = {
        "location": LOCATION,
        "identity": {"type": "SystemAssigned"},
        "properties": {
            "kubernetesVersion": "1.30",
            "agentPoolProfiles": [
                {"name": "system", "mode": "System", "vmSize": "Standard_D2s_v5", "count": 1, "vnetSubnetID": nodes}
            ],
            "networkProfile": {"networkPlugin": "azure", "outboundType": "userDefinedRouting"},
        },
    }
    with pytest.raises(HttpResponseError) as info:
        clusters.managed_clusters.begin_create_or_update(RG, "aks-egress", body)
    assert error_code(info.value) == "ExistingRouteTableNotAssociatedWithSubnet"
    hop = firewall["firewall"].ip_configurations[0].private_ip_address
    table = network.route_tables.begin_create_or_update(
        RG,
        "rt-aks",
        {
            "location": LOCATION,
            "properties": {
                "routes": [
                    {
                        "name": "default-via-firewall",
                        "properties": {
                            "addressPrefix": "0.0.0.0/0",
                            "nextHopType": "VirtualAppliance",
                            "nextHopIpAddress": hop,
                        },
                    }
                ]
            },
        },
    ).result()
    assert table.routes[0].next_hop_ip_address == hop
    network.subnets.begin_create_or_update(
        RG, "vnet-mmrv", "aks-nodes", {"properties": {"addressPrefix": "10.40.8.0/21", "routeTable": {"id": table.id}}}
    ).result()
    assert [s.id for s in network.route_tables.get(RG, "rt-aks").subnets] == [nodes]
    made = clusters.managed_clusters.begin_create_or_update(RG, "aks-egress", body).result()
    assert made.network_profile.outbound_type == "userDefinedRouting"
    extra = network.routes.begin_create_or_update(
        RG, "rt-aks", "aws", {"properties": {"addressPrefix": "10.50.0.0/16", "nextHopType": "VnetLocal"}}
    ).result()
    assert extra.provisioning_state == "Succeeded"
    assert [r.name for r in network.routes.list(RG, "rt-aks")] == ["default-via-firewall", "aws"]


def test_resources_in_use_cannot_be_deleted(network: NetworkManagementClient, firewall: dict[str, Any]) -> None:
    with pytest.raises(HttpResponseError) as ip_in_use:
        network.public_ip_addresses.begin_delete(RG, "pip-afw")
    assert error_code(ip_in_use.value) == "PublicIPAddressInUse"
    with pytest.raises(HttpResponseError) as subnet_in_use:
        network.subnets.begin_delete(RG, "vnet-mmrv", "AzureFirewallSubnet")
    assert error_code(subnet_in_use.value) == "InUseSubnetCannotBeDeleted"


def test_subnets_must_fit_the_vnet(network: NetworkManagementClient, firewall: dict[str, Any]) -> None:
    with pytest.raises(HttpResponseError) as outside:
        network.subnets.begin_create_or_update(
            RG, "vnet-mmrv", "stray", {"properties": {"addressPrefix": "10.99.0.0/24"}}
        )
    assert error_code(outside.value) == "NetcfgSubnetRangeOutsideVnet"
    with pytest.raises(HttpResponseError) as overlap:
        network.subnets.begin_create_or_update(
            RG, "vnet-mmrv", "overlap", {"properties": {"addressPrefix": "10.40.0.0/27"}}
        )
    assert error_code(overlap.value) == "NetcfgSubnetRangesOverlap"


def test_a_firewall_needs_the_firewall_subnet(network: NetworkManagementClient, firewall: dict[str, Any]) -> None:
    wrong = f"{firewall['vnet'].id}/subnets/aks-nodes"
    with pytest.raises(HttpResponseError) as info:
        network.azure_firewalls.begin_create_or_update(
            RG,
            "afw-wrong",
            {
                "location": LOCATION,
                "properties": {"ipConfigurations": [{"name": "c", "properties": {"subnet": {"id": wrong}}}]},
            },
        )
    assert info.value.status_code == 400


def test_network_resources_delete_long_running(network: NetworkManagementClient) -> None:
    network.route_tables.begin_create_or_update(RG, "rt-temp", {"location": LOCATION}).result()
    network.route_tables.begin_delete(RG, "rt-temp").result()
    assert "rt-temp" not in [t.name for t in network.route_tables.list(RG)]
