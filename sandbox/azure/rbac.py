"""Built-in role definitions and the one question RBAC answers: may this principal do that here?

The GUIDs are Azure's own built-in role ids (identical in every tenant), so role assignments
the tool writes against the sandbox are the ones it writes against Azure. Permissions are the
subset of the real definitions the emulators check; an assignment applies at its scope and
every scope below it (`/subscriptions/s` covers `/subscriptions/s/resourceGroups/rg/...`).
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from sandbox.azure.store import Store

ROLE_ASSIGNMENT_TYPE = "Microsoft.Authorization/roleAssignments"
ROLE_DEFINITION_TYPE = "Microsoft.Authorization/roleDefinitions"
ROLE_DEFINITION_SEGMENT = "/providers/microsoft.authorization/roledefinitions/"
BUILT_IN_CREATED_ON = "2015-02-02T21:55:09.8806423Z"


@dataclass(frozen=True)
class RoleDefinition:
    guid: str
    name: str
    description: str
    actions: tuple[str, ...] = ()
    not_actions: tuple[str, ...] = ()
    data_actions: tuple[str, ...] = ()

    def allows_data_action(self, action: str) -> bool:
        return any(fnmatchcase(action.lower(), pattern.lower()) for pattern in self.data_actions)

    def allows_action(self, action: str) -> bool:
        """A control-plane action: matched by `actions` and not excluded by `notActions`."""
        lowered = action.lower()
        granted = any(fnmatchcase(lowered, pattern.lower()) for pattern in self.actions)
        return granted and not any(fnmatchcase(lowered, pattern.lower()) for pattern in self.not_actions)

    def body(self, scope_prefix: str) -> dict[str, Any]:
        return {
            "id": f"{scope_prefix}/providers/Microsoft.Authorization/roleDefinitions/{self.guid}",
            "name": self.guid,
            "type": ROLE_DEFINITION_TYPE,
            "properties": {
                "roleName": self.name,
                "type": "BuiltInRole",
                "description": self.description,
                "assignableScopes": ["/"],
                "permissions": [
                    {
                        "actions": list(self.actions),
                        "notActions": list(self.not_actions),
                        "dataActions": list(self.data_actions),
                        "notDataActions": [],
                    }
                ],
                "createdOn": BUILT_IN_CREATED_ON,
                "updatedOn": BUILT_IN_CREATED_ON,
                "createdBy": None,
                "updatedBy": None,
            },
        }


SECRETS = "Microsoft.KeyVault/vaults/secrets"
GET_SECRET = f"{SECRETS}/getSecret/action"
READ_SECRET_METADATA = f"{SECRETS}/readMetadata/action"
SET_SECRET = f"{SECRETS}/setSecret/action"
UPDATE_SECRET = f"{SECRETS}/update/action"
DELETE_SECRET = f"{SECRETS}/delete"
RECOVER_SECRET = f"{SECRETS}/recover/action"
PURGE_SECRET = f"{SECRETS}/purge/action"

BUILT_IN_ROLES: dict[str, RoleDefinition] = {
    role.guid: role
    for role in (
        RoleDefinition(
            "8e3af657-a8ff-443c-a75c-2fe8c4bcb635", "Owner", "Grants full access to manage all resources.", ("*",)
        ),
        RoleDefinition(
            "b24988ac-6180-42a0-ab88-20f7382dd24c",
            "Contributor",
            "Grants full access to manage all resources, but does not allow you to assign roles.",
            ("*",),
            ("Microsoft.Authorization/*/Delete", "Microsoft.Authorization/*/Write"),
        ),
        RoleDefinition("acdd72a7-3385-48ef-bd42-f606fba81ae7", "Reader", "View all resources.", ("*/read",)),
        RoleDefinition(
            "7f951dda-4ed3-4680-a7ca-43fe172d538d",
            "AcrPull",
            "acr pull",
            ("Microsoft.ContainerRegistry/registries/pull/read",),
        ),
        RoleDefinition(
            "8311e382-0749-4cb8-b61a-304f252e45ec",
            "AcrPush",
            "acr push",
            ("Microsoft.ContainerRegistry/registries/pull/read", "Microsoft.ContainerRegistry/registries/push/write"),
        ),
        RoleDefinition(
            "c2f4ef07-c644-48eb-af81-4b1b4947fb11",
            "AcrDelete",
            "acr delete",
            ("Microsoft.ContainerRegistry/registries/artifacts/delete",),
        ),
        RoleDefinition(
            "4633458b-17de-408a-b874-0445c86b69e6",
            "Key Vault Secrets User",
            "Read secret contents. Only works for key vaults that use the 'Azure role-based access control' "
            "permission model.",
            data_actions=(GET_SECRET, READ_SECRET_METADATA),
        ),
        RoleDefinition(
            "b86a8fe4-44ce-4948-aee5-eccb2c155cd7",
            "Key Vault Secrets Officer",
            "Perform any action on the secrets of a key vault, except manage permissions.",
            ("Microsoft.KeyVault/vaults/*/read",),
            data_actions=(f"{SECRETS}/*",),
        ),
        RoleDefinition(
            "00482a5a-887f-4fb3-b363-3b7fe8e74483",
            "Key Vault Administrator",
            "Perform all data plane operations on a key vault and all objects in it.",
            ("Microsoft.KeyVault/vaults/*/read",),
            data_actions=("Microsoft.KeyVault/vaults/*",),
        ),
        RoleDefinition(
            "4abbcc35-e782-43d8-92c5-2d3f1bd2253f",
            "Azure Kubernetes Service Cluster User Role",
            "List cluster user credential action.",
            (
                "Microsoft.ContainerService/managedClusters/listClusterUserCredential/action",
                "Microsoft.ContainerService/managedClusters/read",
            ),
        ),
        RoleDefinition(
            "7f6c6a51-bcf8-42ba-9220-52d62157d7db",
            "Azure Kubernetes Service RBAC Reader",
            "Allows read-only access to see most objects in a namespace.",
            data_actions=("Microsoft.ContainerService/managedClusters/*/read",),
        ),
        RoleDefinition(
            "a7ffa36f-339b-4b5c-8bdf-e2c188b2c0eb",
            "Azure Kubernetes Service RBAC Writer",
            "Allows read/write access to most objects in a namespace.",
            data_actions=("Microsoft.ContainerService/managedClusters/*/read", "Microsoft.ContainerService/*/write"),
        ),
        RoleDefinition(
            "3498e952-d568-435e-9b2c-8d77e338d7f7",
            "Azure Kubernetes Service RBAC Admin",
            "Lets you manage all resources under cluster/namespace, except update or delete resource quotas "
            "and namespaces.",
            data_actions=("Microsoft.ContainerService/managedClusters/*",),
        ),
        RoleDefinition(
            "b1ff04bb-8a4e-4dc4-8eb5-8693973ce19b",
            "Azure Kubernetes Service RBAC Cluster Admin",
            "Lets you manage all resources in the cluster.",
            ("Microsoft.ContainerService/managedClusters/listClusterUserCredential/action",),
            data_actions=("Microsoft.ContainerService/managedClusters/*",),
        ),
    )
}


def role_guid(role_definition_id: str) -> str | None:
    """The built-in role GUID a roleDefinitionId names (at any scope), or None."""
    lowered = role_definition_id.lower()
    index = lowered.rfind(ROLE_DEFINITION_SEGMENT)
    guid = lowered[index + len(ROLE_DEFINITION_SEGMENT) :] if index >= 0 else lowered
    return guid if guid in BUILT_IN_ROLES else None


def scope_covers(assignment_scope: str, target_scope: str) -> bool:
    """Does an assignment at `assignment_scope` apply at `target_scope`?"""
    outer = assignment_scope.rstrip("/").lower()
    inner = target_scope.rstrip("/").lower()
    return outer == "" or inner == outer or inner.startswith(outer + "/")


def assignments_of(store: Store, principal_id: str) -> list[dict[str, Any]]:
    wanted = principal_id.lower()
    return [
        r["body"]
        for r in store.of_type(ROLE_ASSIGNMENT_TYPE)
        if r["body"]["properties"]["principalId"].lower() == wanted
    ]


def roles_allowing_action(store: Store, principal_id: str, scope: str, action: str) -> list[str]:
    """Names of the principal's roles at `scope` or above that grant the control-plane `action`."""
    names = []
    for assignment in assignments_of(store, principal_id):
        props = assignment["properties"]
        guid = role_guid(props["roleDefinitionId"])
        if guid and scope_covers(props["scope"], scope) and BUILT_IN_ROLES[guid].allows_action(action):
            names.append(BUILT_IN_ROLES[guid].name)
    return names


def allows_data_action(store: Store, principal_id: str, scope: str, action: str) -> bool:
    """True when some role assignment of the principal at `scope` or above grants `action`."""
    for assignment in assignments_of(store, principal_id):
        props = assignment["properties"]
        if not scope_covers(props["scope"], scope):
            continue
        guid = role_guid(props["roleDefinitionId"])
        if guid and BUILT_IN_ROLES[guid].allows_data_action(action):
            return True
    return False
