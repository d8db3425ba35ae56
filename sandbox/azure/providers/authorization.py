"""Microsoft.Authorization: role assignments at any scope, built-in role definitions.

Role assignments are extension resources, `{scope}/providers/Microsoft.Authorization/
roleAssignments/{guid}`, so they are routed here from any depth of the ARM tree. The rules the
tool can trip over, with ARM's codes:

    name not a GUID                                  400 InvalidRoleAssignmentId
    role definition unknown                          400 RoleDefinitionDoesNotExist
    principal not in the directory                   400 PrincipalNotFound
    same name, other principal/role/scope            400 RoleAssignmentUpdateNotPermitted
    same principal+role+scope under another name     409 RoleAssignmentExists
"""

from __future__ import annotations

import copy
import re
from typing import Any

from sandbox.azure.errors import ServiceError, bad_request, conflict, not_found, resource_group_not_found
from sandbox.azure.lro import iso_now
from sandbox.azure.providers.base import GUID, ArmRequest, ArmResponse
from sandbox.azure.providers.engine import get_resource_group
from sandbox.azure.providers.identities import principal_exists
from sandbox.azure.rbac import BUILT_IN_ROLES, ROLE_ASSIGNMENT_TYPE, role_guid, scope_covers

ASSIGNMENTS = "roleassignments"
DEFINITIONS = "roledefinitions"


def normalize_scope(scope: str) -> str:
    return "/" + scope.strip("/") if scope.strip("/") else "/"


def _subscription_prefix(scope: str) -> str:
    parts = scope.strip("/").split("/")
    return f"/subscriptions/{parts[1]}" if len(parts) >= 2 and parts[0].lower() == "subscriptions" else ""


def _assignment_id(scope: str, name: str) -> str:
    base = "" if scope == "/" else scope
    return f"{base}/providers/Microsoft.Authorization/roleAssignments/{name}"


def handle(req: ArmRequest, scope: str, rest: list[str]) -> ArmResponse:
    """Dispatch `{scope}/providers/Microsoft.Authorization/{rest}`."""
    scope = normalize_scope(scope)
    collection = rest[0].lower()
    name = rest[1] if len(rest) > 1 else None
    if len(rest) > 2:
        raise not_found("NotFound", f"No route for '{'/'.join(rest)}'.")
    if collection == DEFINITIONS:
        return _definitions(req, scope, name)
    method = req.method
    if name is None:
        if method != "GET":
            raise ServiceError(405, "MethodNotAllowed", f"{method} is not supported on the collection.")
        return _list_assignments(req, scope)
    if method == "PUT":
        return _put_assignment(req, scope, name)
    if method == "GET":
        return ArmResponse(200, copy.deepcopy(_require_assignment(req, scope, name)["body"]))
    if method == "DELETE":
        record = req.store.get(_assignment_id(scope, name))
        if record is None:
            return ArmResponse(204)
        req.store.remove(record["id"])
        return ArmResponse(200, copy.deepcopy(record["body"]))
    raise ServiceError(405, "MethodNotAllowed", f"{method} is not supported on role assignments.")


def _require_assignment(req: ArmRequest, scope: str, name: str) -> dict[str, Any]:
    record = req.store.get(_assignment_id(scope, name))
    if record is None:
        raise not_found("RoleAssignmentNotFound", f"The role assignment '{name}' is not found.")
    return record


def _check_scope_exists(req: ArmRequest, scope: str) -> None:
    parts = scope.strip("/").split("/")
    if scope == "/" or len(parts) < 2:
        return
    subscription = parts[1]
    if not req.config.subscription_known(subscription):
        raise not_found("SubscriptionNotFound", f"The subscription '{subscription}' could not be found.")
    if len(parts) >= 4 and get_resource_group(req.store, subscription, parts[3]) is None:
        raise resource_group_not_found(parts[3])
    if len(parts) > 4 and req.store.get(scope) is None:
        raise not_found(
            "ResourceNotFound", f"The Resource '{'/'.join(parts[5:])}' under resource group '{parts[3]}' was not found."
        )


def _put_assignment(req: ArmRequest, scope: str, name: str) -> ArmResponse:
    if not GUID.fullmatch(name):
        raise bad_request(
            "InvalidRoleAssignmentId",
            f"The role assignment ID '{name}' is not valid. The role assignment ID must be a GUID.",
        )
    _check_scope_exists(req, scope)
    props = req.json_body().get("properties") or {}
    role_id, principal = str(props.get("roleDefinitionId") or ""), str(props.get("principalId") or "")
    if not role_id or not principal:
        raise bad_request(
            "InvalidRequestContent", "properties.roleDefinitionId and properties.principalId are required."
        )
    guid = role_guid(role_id)
    if guid is None:
        shown = role_id.rsplit("/", 1)[-1]
        raise bad_request(
            "RoleDefinitionDoesNotExist", f"The specified role definition with ID '{shown}' does not exist."
        )
    if not principal_exists(req, principal):
        raise bad_request(
            "PrincipalNotFound",
            f"Principal {principal.replace('-', '')} does not exist in the directory {req.config.tenant_id}. Check "
            "that you have the correct principal ID. If you are creating this principal and then immediately "
            "assigning a role, this error might be related to a replication delay. In this case, set the role "
            "assignment principalType property to a value, such as ServicePrincipal, User, or Group. See "
            "https://aka.ms/docs-principaltype",
        )
    normalized_role = f"{_subscription_prefix(scope)}/providers/Microsoft.Authorization/roleDefinitions/{guid}"
    existing = req.store.get(_assignment_id(scope, name))
    if existing is not None:
        was = existing["body"]["properties"]
        if was["principalId"].lower() != principal.lower() or role_guid(was["roleDefinitionId"]) != guid:
            raise bad_request(
                "RoleAssignmentUpdateNotPermitted",
                "Tenant ID, application ID, principal ID, and scope are not allowed to be updated.",
            )
        return ArmResponse(201, copy.deepcopy(existing["body"]))
    for other in req.store.of_type(ROLE_ASSIGNMENT_TYPE):
        o = other["body"]["properties"]
        if (
            o["principalId"].lower() == principal.lower()
            and role_guid(o["roleDefinitionId"]) == guid
            and normalize_scope(o["scope"]).lower() == scope.lower()
        ):
            raise conflict("RoleAssignmentExists", "The role assignment already exists.")
    now = iso_now()
    body = {
        "id": _assignment_id(scope, name),
        "name": name,
        "type": ROLE_ASSIGNMENT_TYPE,
        "properties": {
            "roleDefinitionId": normalized_role,
            "principalId": principal,
            "principalType": props.get("principalType") or "ServicePrincipal",
            "scope": scope,
            "condition": props.get("condition"),
            "conditionVersion": props.get("conditionVersion"),
            "description": props.get("description"),
            "createdOn": now,
            "updatedOn": now,
            "createdBy": req.principal.oid,
            "updatedBy": req.principal.oid,
            "delegatedManagedIdentityResourceId": None,
        },
    }
    req.store.put({"id": body["id"], "type": ROLE_ASSIGNMENT_TYPE, "body": body, "meta": {}})
    return ArmResponse(201, copy.deepcopy(body))


def _list_assignments(req: ArmRequest, scope: str) -> ArmResponse:
    expression = req.query.get("$filter", "")
    at_scope_only = "atscope()" in expression.lower()
    match = re.search(r"(?:principalId\s+eq\s+|assignedTo\()'([^']+)'", expression, flags=re.IGNORECASE)
    principal = match.group(1).lower() if match else None
    values = []
    for record in req.store.of_type(ROLE_ASSIGNMENT_TYPE):
        props = record["body"]["properties"]
        above = scope_covers(props["scope"], scope)
        below = scope_covers(scope, props["scope"])
        if not (above or (below and not at_scope_only)):
            continue
        if principal and props["principalId"].lower() != principal:
            continue
        values.append(copy.deepcopy(record["body"]))
    return ArmResponse(200, {"value": sorted(values, key=lambda v: v["id"].lower())})


def _definitions(req: ArmRequest, scope: str, guid: str | None) -> ArmResponse:
    if req.method != "GET":
        raise ServiceError(405, "MethodNotAllowed", "The sandbox offers the built-in role definitions only.")
    prefix = _subscription_prefix(scope)
    if guid is not None:
        role = BUILT_IN_ROLES.get(guid.lower())
        if role is None:
            raise not_found(
                "RoleDefinitionDoesNotExist", f"The specified role definition with ID '{guid}' does not exist."
            )
        return ArmResponse(200, role.body(prefix))
    expression = req.query.get("$filter", "")
    match = re.search(r"roleName\s+eq\s+'([^']+)'", expression, flags=re.IGNORECASE)
    roles = list(BUILT_IN_ROLES.values())
    if match:
        roles = [r for r in roles if r.name.lower() == match.group(1).lower()]
    return ArmResponse(200, {"value": [r.body(prefix) for r in roles]})
