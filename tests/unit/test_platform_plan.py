"""The platform planner: create / noop / update / blocked, refs, and the quirks ARM has."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from migration.platform import (
    KNOWN_AFTER_APPLY,
    Ref,
    acr_id,
    aks_id,
    desired_platform,
    plan_platform,
    resolve,
    role_assignment_name,
)
from migration.spec import Spec, load_spec
from tests.conftest import SPEC_PATH

FAKE = {
    "properties.identityProfile.kubeletidentity.objectId": "11111111-1111-1111-1111-111111111111",
    "properties.oidcIssuerProfile.issuerURL": "https://oidc.example/issuer/",
    "properties.principalId": "22222222-2222-2222-2222-222222222222",
    "properties.ipConfigurations.0.properties.privateIPAddress": "10.40.0.4",
}


@pytest.fixture(scope="module")
def spec() -> Spec:
    return load_spec(SPEC_PATH)


def as_arm_reports(spec: Spec, env_name: str) -> dict[str, dict[str, Any] | None]:
    """What ARM would report after a successful apply: our bodies plus what ARM adds."""
    env = spec.environment(env_name)
    observed: dict[str, dict[str, Any] | None] = {}
    for resource in desired_platform(spec, env):
        body = resolve(copy.deepcopy(resource.body), lambda ref: FAKE[ref.path])
        body["id"] = resource.id
        props = body.setdefault("properties", {})
        props["provisioningState"] = "Succeeded"
        if resource.type.endswith("managedClusters"):
            props["kubernetesVersion"] = "1.30.7"  # ARM reports the patch it picked
            props["oidcIssuerProfile"]["issuerURL"] = FAKE["properties.oidcIssuerProfile.issuerURL"]
            props["identityProfile"] = {
                "kubeletidentity": {"objectId": FAKE["properties.identityProfile.kubeletidentity.objectId"]}
            }
            for pool in props["agentPoolProfiles"]:
                pool["count"] += 1  # the autoscaler moved it
                pool["provisioningState"] = "Succeeded"
        elif resource.type.endswith("userAssignedIdentities"):
            props["principalId"] = FAKE["properties.principalId"]
        elif resource.type.endswith("azureFirewalls"):
            props["ipConfigurations"][0]["properties"]["privateIPAddress"] = "10.40.0.4"
        observed[resource.id] = body
    return observed


@pytest.mark.parametrize("env_name", ["staging", "production"])
def test_nothing_there_means_everything_is_a_create_in_dependency_order(spec: Spec, env_name: str) -> None:
    plan = plan_platform(spec, spec.environment(env_name), {})
    assert plan.actions and all(a.kind == "create" for a in plan.actions)
    position = {a.resource: i for i, a in enumerate(plan.actions)}
    for action in plan.actions:
        for dep in action.depends_on:
            assert position[dep] < position[action.resource], (dep, action.resource)
    fic = next(a for a in plan.actions if "federatedIdentityCredentials" in a.resource)
    assert fic.desired["properties"]["issuer"] == KNOWN_AFTER_APPLY


def test_production_has_firewall_and_purge_protection_staging_not(spec: Spec) -> None:
    staging = plan_platform(spec, spec.environment("staging"), {})
    production = plan_platform(spec, spec.environment("production"), {})
    assert not any("azureFirewalls" in a.resource for a in staging.actions)
    assert any("azureFirewalls" in a.resource for a in production.actions)
    vault = next(a for a in production.actions if a.resource_type == "Microsoft.KeyVault/vaults")
    assert vault.desired["properties"]["enablePurgeProtection"] is True
    vault = next(a for a in staging.actions if a.resource_type == "Microsoft.KeyVault/vaults")
    assert "enablePurgeProtection" not in vault.desired["properties"]
    aks = next(a for a in production.actions if a.resource_type.endswith("managedClusters"))
    assert aks.desired["properties"]["networkProfile"]["outboundType"] == "userDefinedRouting"
    rules = next(a for a in production.actions if a.resource.endswith("ruleCollectionGroups/mmrv-egress"))
    fqdns = rules.desired["properties"]["ruleCollections"][0]["rules"][0]["targetFqdns"]
    assert "*.amazonaws.com" in fqdns and "mcr.microsoft.com" in fqdns


@pytest.mark.parametrize("env_name", ["staging", "production"])
def test_after_apply_the_plan_is_empty(spec: Spec, env_name: str) -> None:
    plan = plan_platform(spec, spec.environment(env_name), as_arm_reports(spec, env_name))
    assert plan.is_empty, plan.render_markdown()
    assert plan.counts()["noop"] == len(plan.actions)


def test_changed_sku_is_an_update_naming_the_field(spec: Spec) -> None:
    env = spec.environment("staging")
    observed = as_arm_reports(spec, "staging")
    observed[acr_id(env)]["sku"] = {"name": "Basic", "tier": "Basic"}  # type: ignore[index]
    plan = plan_platform(spec, env, observed)
    (change,) = plan.changes
    assert change.kind == "update" and change.resource == acr_id(env)
    assert [(c.field, c.observed, c.desired) for c in change.changes] == [("sku.name", "Basic", "Standard")]


def test_foreign_resource_that_differs_is_blocked_not_updated(spec: Spec) -> None:
    env = spec.environment("staging")
    observed = as_arm_reports(spec, "staging")
    registry = observed[acr_id(env)]
    assert registry is not None
    registry["tags"] = {"owner": "someone-else"}
    plan = plan_platform(spec, env, observed)
    (blocked,) = plan.blocked
    assert blocked.resource == acr_id(env) and "not managed by mmrv-migrate" in blocked.reason
    assert not plan.is_empty and plan.changes == []


def test_kubelet_identity_change_shows_on_the_role_assignment(spec: Spec) -> None:
    env = spec.environment("staging")
    observed = as_arm_reports(spec, "staging")
    cluster = observed[aks_id(env)]
    assert cluster is not None
    cluster["properties"]["identityProfile"]["kubeletidentity"]["objectId"] = "33333333-3333-3333-3333-333333333333"
    plan = plan_platform(spec, env, observed)
    (change,) = plan.changes
    assert change.resource_type == "Microsoft.Authorization/roleAssignments"
    assert change.changes[0].field == "properties.principalId"
    assert change.changes[0].desired == "33333333-3333-3333-3333-333333333333"


def test_role_assignment_names_are_deterministic_and_distinct() -> None:
    a = role_assignment_name("/subscriptions/s/rg/x", "role", "principal")
    assert a == role_assignment_name("/SUBSCRIPTIONS/s/rg/x", "role", "principal")
    assert a != role_assignment_name("/subscriptions/s/rg/x", "role", "other")


def test_ref_lookup_walks_dicts_and_lists() -> None:
    body = {"properties": {"ipConfigurations": [{"properties": {"privateIPAddress": "10.0.0.4"}}]}}
    assert (
        Ref(resource="x", path="properties.ipConfigurations.0.properties.privateIPAddress").lookup(body) == "10.0.0.4"
    )
    assert Ref(resource="x", path="properties.missing").lookup(body) is None
