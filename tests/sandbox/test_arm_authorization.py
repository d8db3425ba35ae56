"""Role assignments and role definitions through azure-mgmt-authorization against the emulator.

The platform phase names role assignments with deterministic GUIDs so a rerun finds them;
these tests pin the answers that design depends on: the same assignment re-PUT under its own
name is a no-op, the same principal+role+scope under another name is 409 RoleAssignmentExists.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.containerregistry import ContainerRegistryManagementClient
from azure.mgmt.msi import ManagedServiceIdentityClient
from azure.mgmt.resource.resources import ResourceManagementClient

from sandbox.azure.rbac import BUILT_IN_ROLES
from sandbox.azure.testing import TEST_SUBSCRIPTION, RunningEmulator, serve_for_tests
from sandbox.azure.tokens import OPERATOR_OID

pytestmark = pytest.mark.sandbox

SUB = TEST_SUBSCRIPTION
LOCATION = "westeurope"
ACR_PULL = "7f951dda-4ed3-4680-a7ca-43fe172d538d"
SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"


def role_id(guid: str) -> str:
    return f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{guid}"


def error_code(exc: HttpResponseError) -> str:
    return str(exc.error.code)  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    with serve_for_tests(tmp_path_factory.mktemp("azure-rbac")) as running:
        yield running


@pytest.fixture(scope="module")
def rbac(emulator: RunningEmulator) -> AuthorizationManagementClient:
    return emulator.arm_client(AuthorizationManagementClient, SUB)


@pytest.fixture(scope="module")
def scene(emulator: RunningEmulator) -> dict[str, Any]:
    """A registry and a workload identity to grant things on."""
    emulator.arm_client(ResourceManagementClient, SUB).resource_groups.create_or_update(
        "rg-rbac", {"location": LOCATION}
    )
    registry = (
        emulator.arm_client(ContainerRegistryManagementClient, SUB)
        .registries.begin_create("rg-rbac", "mmrvrbacacr", {"location": LOCATION, "sku": {"name": "Standard"}})
        .result()
    )
    identity = emulator.arm_client(ManagedServiceIdentityClient, SUB).user_assigned_identities.create_or_update(
        "rg-rbac", "id-kubelet", {"location": LOCATION}
    )
    return {
        "scope": registry.id,
        "principal": identity.principal_id,
        "group": f"/subscriptions/{SUB}/resourceGroups/rg-rbac",
    }


def assignment(role: str, principal: str) -> dict[str, Any]:
    return {
        "properties": {"roleDefinitionId": role_id(role), "principalId": principal, "principalType": "ServicePrincipal"}
    }


def test_assignment_lifecycle(rbac: AuthorizationManagementClient, scene: dict[str, Any]) -> None:
    name = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{scene['scope']}|acrpull"))
    made = rbac.role_assignments.create(scene["scope"], name, assignment(ACR_PULL, scene["principal"]))
    assert made.id == f"{scene['scope']}/providers/Microsoft.Authorization/roleAssignments/{name}"
    assert (made.name, made.type) == (name, "Microsoft.Authorization/roleAssignments")
    assert (made.role_definition_id, made.principal_id, made.scope) == (
        role_id(ACR_PULL),
        scene["principal"],
        scene["scope"],
    )
    assert made.principal_type == "ServicePrincipal" and made.created_by == OPERATOR_OID
    assert rbac.role_assignments.get(scene["scope"], name).id == made.id
    again = rbac.role_assignments.create(scene["scope"], name, assignment(ACR_PULL, scene["principal"]))
    assert again.id == made.id  # a rerun with the deterministic name changes nothing
    rbac.role_assignments.delete(scene["scope"], name)
    with pytest.raises(ResourceNotFoundError) as info:
        rbac.role_assignments.get(scene["scope"], name)
    assert error_code(info.value) == "RoleAssignmentNotFound"
    assert rbac.role_assignments.delete(scene["scope"], name) is None  # already gone: fine


def test_the_same_grant_under_another_name_is_refused(
    rbac: AuthorizationManagementClient, scene: dict[str, Any]
) -> None:
    rbac.role_assignments.create(scene["scope"], str(uuid.uuid4()), assignment(SECRETS_USER, scene["principal"]))
    with pytest.raises(HttpResponseError) as info:
        rbac.role_assignments.create(scene["scope"], str(uuid.uuid4()), assignment(SECRETS_USER, scene["principal"]))
    assert (info.value.status_code, error_code(info.value)) == (409, "RoleAssignmentExists")


def test_an_assignment_cannot_change_its_principal(rbac: AuthorizationManagementClient, scene: dict[str, Any]) -> None:
    name = str(uuid.uuid4())
    rbac.role_assignments.create(scene["group"], name, assignment(ACR_PULL, scene["principal"]))
    with pytest.raises(HttpResponseError) as info:
        rbac.role_assignments.create(scene["group"], name, assignment(ACR_PULL, OPERATOR_OID))
    assert (info.value.status_code, error_code(info.value)) == (400, "RoleAssignmentUpdateNotPermitted")


@pytest.mark.parametrize(
    ("name", "role", "principal", "code"),
    [
        ("not-a-guid", ACR_PULL, None, "InvalidRoleAssignmentId"),
        (None, "00000000-0000-4000-8000-000000000000", None, "RoleDefinitionDoesNotExist"),
        (None, ACR_PULL, "ffffffff-0000-4000-8000-000000000000", "PrincipalNotFound"),
    ],
)
def test_invalid_assignments_are_refused(
    rbac: AuthorizationManagementClient,
    scene: dict[str, Any],
    name: str | None,
    role: str,
    principal: str | None,
    code: str,
) -> None:
    with pytest.raises(HttpResponseError) as info:
        rbac.role_assignments.create(
            scene["scope"], name or str(uuid.uuid4()), assignment(role, principal or scene["principal"])
        )
    assert (info.value.status_code, error_code(info.value)) == (400, code)


def test_assignments_on_missing_scopes_are_refused(rbac: AuthorizationManagementClient, scene: dict[str, Any]) -> None:
    missing = f"/subscriptions/{SUB}/resourceGroups/rg-rbac/providers/Microsoft.ContainerRegistry/registries/nothere"
    with pytest.raises(ResourceNotFoundError):
        rbac.role_assignments.create(missing, str(uuid.uuid4()), assignment(ACR_PULL, scene["principal"]))


def test_listing_filters_by_principal_and_scope(rbac: AuthorizationManagementClient, scene: dict[str, Any]) -> None:
    at_group = rbac.role_assignments.create(scene["group"], str(uuid.uuid4()), assignment(SECRETS_USER, OPERATOR_OID))
    principal_filter = f"principalId eq '{scene['principal']}'"
    mine = list(rbac.role_assignments.list_for_scope(scene["scope"], filter=principal_filter))
    assert mine and all(a.principal_id == scene["principal"] for a in mine)
    at_or_above = [a.id for a in rbac.role_assignments.list_for_scope(scene["scope"], filter="atScope()")]
    assert at_group.id in at_or_above  # the group's assignment applies to the registry below it
    at_group_scope = [a.id for a in rbac.role_assignments.list_for_scope(scene["group"], filter="atScope()")]
    assert not any(a.startswith(scene["scope"]) for a in at_group_scope)  # not the ones below
    everything = [a.id for a in rbac.role_assignments.list_for_scope(scene["group"])]
    assert any(a.startswith(scene["scope"]) for a in everything)


def test_built_in_role_definitions(rbac: AuthorizationManagementClient) -> None:
    scope = f"/subscriptions/{SUB}"
    acr_pull = rbac.role_definitions.get(scope, ACR_PULL)
    assert (acr_pull.role_name, acr_pull.role_type, acr_pull.id) == ("AcrPull", "BuiltInRole", role_id(ACR_PULL))
    by_name = list(rbac.role_definitions.list(scope, filter="roleName eq 'Key Vault Secrets User'"))
    assert [d.name for d in by_name] == [SECRETS_USER]
    assert {d.name for d in rbac.role_definitions.list(scope)} == set(BUILT_IN_ROLES)
    with pytest.raises(ResourceNotFoundError):
        rbac.role_definitions.get(scope, "00000000-0000-4000-8000-000000000000")
