"""The ARM front door: authenticate, authorize, check api-version and subscription, then route.

ARM paths are case-insensitive and nest arbitrarily, so routing is done on path segments here
rather than with fixed routes:

    /subscriptions[/{s}]                                       list / get subscription
    /subscriptions/{s}/resourcegroups[/{rg}]                   resource groups
    /subscriptions/{s}/resourcegroups/{rg}/resources           generic list (also at subscription)
    /subscriptions/{s}/resourcegroups/{rg}/providers/{ns}/{type}/{name}[/{type}/{name}][/{action}]
    /subscriptions/{s}/providers/{ns}/{type}                   list by subscription
    /subscriptions/{s}/providers/{ns}/...                      provider routes (checkNameAvailability,
                                                               kubernetesVersions, deletedVaults, operations)
    {any scope}/providers/Microsoft.Authorization/roleAssignments|roleDefinitions[/{name}]
"""

from __future__ import annotations

from datetime import UTC, datetime

from sandbox.azure.auth import AUDIENCE, EXPIRED, INVALID, MISSING, TENANT, AuthProblem, authenticate
from sandbox.azure.config import EmulatorConfig
from sandbox.azure.errors import ServiceError, not_found
from sandbox.azure.lro import IN_PROGRESS, SUCCEEDED
from sandbox.azure.principals import resolve_principal
from sandbox.azure.providers import authorization, resources
from sandbox.azure.providers.base import (
    PROVIDER_ROUTES,
    ArmRequest,
    ArmResponse,
    ResourceId,
    find_kind,
    match_segments,
)
from sandbox.azure.providers.engine import (
    delete_resource,
    get_resource,
    list_resources,
    patch_resource,
    post_action,
    put_resource,
    require_resource_group,
)
from sandbox.azure.store import Store
from sandbox.azure.tokens import ARM_AUDIENCES, TokenClaims

ALLOWED_AUDIENCES_TEXT = ",".join(f"'{a}'" for a in sorted(ARM_AUDIENCES, reverse=True))


def authenticate_arm(authorization_header: str | None, config: EmulatorConfig, store: Store) -> TokenClaims:
    try:
        claims = authenticate(authorization_header, audiences=ARM_AUDIENCES, tenant_id=config.tenant_id)
    except AuthProblem as problem:
        raise _arm_auth_error(problem, config) from None
    resolved = resolve_principal(store, claims)
    if resolved is None:
        raise _arm_auth_error(AuthProblem(INVALID, f"no principal has the client id {claims.appid}"), config)
    return resolved


def _arm_auth_error(problem: AuthProblem, config: EmulatorConfig) -> ServiceError:
    if problem.kind == MISSING:
        header = (
            'Bearer authorization_uri="https://login.windows.net/", error="invalid_token", '
            "error_description=\"The authentication failed because of missing 'Authorization' header.\""
        )
        return ServiceError(
            401,
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing.",
            headers={"WWW-Authenticate": header},
        )
    if problem.kind == EXPIRED:
        now = datetime.now(UTC).strftime("%m/%d/%Y %H:%M:%S")
        return ServiceError(
            401,
            "ExpiredAuthenticationToken",
            f"The access token expiry UTC time is earlier than current UTC time '{now}'.",
        )
    if problem.kind == AUDIENCE:
        return ServiceError(
            401,
            "InvalidAuthenticationToken",
            f"The access token has been obtained for wrong audience or resource '{problem.detail}'. It should exactly "
            f"match with one of the allowed audiences {ALLOWED_AUDIENCES_TEXT}.",
        )
    if problem.kind == TENANT:
        tenant = config.tenant_id
        return ServiceError(
            401,
            "InvalidAuthenticationTokenTenant",
            f"The access token is from the wrong issuer 'https://sts.windows.net/{problem.detail}/'. It must match "
            f"the tenant 'https://sts.windows.net/{tenant}/' associated with this subscription. Please use the "
            f"authority (URL) 'https://login.windows.net/{tenant}' to get the token.",
        )
    return ServiceError(401, "InvalidAuthenticationToken", f"The access token is invalid: {problem.detail}")


def authorize_arm(req: ArmRequest, path: str) -> None:
    """The deploying principal may do anything; no other principal may use ARM here."""
    operators = {oid.lower() for oid in req.config.operator_oids}
    if req.principal.oid.lower() in operators:
        return
    verb = {"GET": "read", "HEAD": "read", "DELETE": "delete", "POST": "action"}.get(req.method, "write")
    raise ServiceError(
        403,
        "AuthorizationFailed",
        f"The client '{req.principal.oid}' with object id '{req.principal.oid}' does not have authorization to "
        f"perform action '{verb}' over scope '{path}' or the scope is invalid. If access was recently granted, "
        "please refresh your credentials.",
    )


def require_api_version(api_version: str | None) -> str:
    if not api_version:
        raise ServiceError(
            400,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        )
    return api_version


# --- routing ----------------------------------------------------------------------------


def dispatch(req: ArmRequest) -> ArmResponse:
    segs = req.segments
    for index in range(len(segs) - 2):
        provider = f"{segs[index]}/{segs[index + 1]}".lower() == "providers/microsoft.authorization"
        if provider and segs[index + 2].lower() in (authorization.ASSIGNMENTS, authorization.DEFINITIONS):
            scope_segments = segs[:index]
            if len(scope_segments) >= 2:
                _require_subscription(req, scope_segments[1])
            return authorization.handle(req, "/".join(scope_segments), segs[index + 2 :])
    if not segs or segs[0].lower() != "subscriptions":
        raise not_found("NotFound", f"No ARM route for '/{'/'.join(segs)}' in this sandbox.")
    if len(segs) == 1:
        return resources.list_subscriptions(req)
    subscription = segs[1]
    _require_subscription(req, subscription)
    rest = segs[2:]
    if not rest:
        return resources.get_subscription(req, subscription)
    head = rest[0].lower()
    if head == "resourcegroups":
        return _resource_groups(req, subscription, rest[1:])
    if head == "resources" and len(rest) == 1:
        return resources.list_generic_resources(req, f"/subscriptions/{subscription}")
    if head == "providers" and len(rest) >= 3:
        return _subscription_provider(req, subscription, rest[1], rest[2:])
    raise not_found("NotFound", f"No ARM route for '/{'/'.join(segs)}' in this sandbox.")


def _require_subscription(req: ArmRequest, subscription: str) -> None:
    if not req.config.subscription_known(subscription):
        raise not_found("SubscriptionNotFound", f"The subscription '{subscription}' could not be found.")


def _resource_groups(req: ArmRequest, subscription: str, rest: list[str]) -> ArmResponse:
    method = req.method
    if not rest:
        return resources.list_groups(req, subscription)
    group = rest[0]
    if len(rest) == 1:
        handlers = {
            "PUT": resources.put_group,
            "GET": resources.get_group,
            "HEAD": resources.head_group,
            "PATCH": resources.patch_group,
            "DELETE": resources.delete_group,
        }
        if method not in handlers:
            raise ServiceError(405, "MethodNotAllowed", f"{method} is not supported on resource groups.")
        return handlers[method](req, subscription, group)
    if rest[1].lower() == "resources" and len(rest) == 2:
        stored = require_resource_group(req, subscription, group)
        return resources.list_generic_resources(req, stored["id"])
    if rest[1].lower() == "providers" and len(rest) >= 4:
        return _resource(req, subscription, group, rest[2], rest[3:])
    raise not_found("NotFound", f"No ARM route for resource group path '{'/'.join(rest)}'.")


def _unknown_type(req: ArmRequest, namespace: str, type_path: str) -> ServiceError:
    return ServiceError(
        404,
        "InvalidResourceType",
        f"The resource type '{type_path}' could not be found in the namespace '{namespace}' for api version "
        f"'{req.api_version}'.",
    )


def _resource(req: ArmRequest, subscription: str, group: str, namespace: str, tail: list[str]) -> ArmResponse:
    types, names = tuple(tail[0::2]), tuple(tail[1::2])
    method = req.method
    if len(tail) % 2 == 0:
        kind = find_kind(namespace, types)
        if kind is None:
            raise _unknown_type(req, namespace, "/".join(types))
        rid = ResourceId(subscription, group, kind.namespace, kind.types, names)
        if method == "PUT":
            return put_resource(req, kind, rid)
        if method == "GET":
            return get_resource(req, kind, rid)
        if method == "HEAD":
            require_resource_group(req, subscription, group)
            return ArmResponse(204 if req.store.get(str(rid)) else 404)
        if method == "PATCH":
            return patch_resource(req, kind, rid)
        if method == "DELETE":
            return delete_resource(req, kind, rid)
        raise ServiceError(405, "MethodNotAllowed", f"{method} is not supported on '{kind.type_name}'.")
    if method == "POST":
        kind = find_kind(namespace, types[:-1])
        if kind is None:
            raise _unknown_type(req, namespace, "/".join(types))
        rid = ResourceId(subscription, group, kind.namespace, kind.types, names)
        return post_action(req, kind, rid, types[-1])
    kind = find_kind(namespace, types)
    if kind is None or method != "GET":
        raise _unknown_type(req, namespace, "/".join(types))
    stored = require_resource_group(req, subscription, group)
    if len(types) == 1:
        prefix = f"{stored['id']}/providers/{kind.namespace}/{kind.types[0]}/"
    else:
        parent = ResourceId(subscription, group, kind.namespace, kind.types[:-1], names)
        if req.store.get(str(parent)) is None:
            raise ServiceError(404, "ParentResourceNotFound", f"Parent resource '{'/'.join(names)}' not found.")
        prefix = f"{parent}/{kind.types[-1]}/"
    return list_resources(req, kind, prefix)


def _subscription_provider(req: ArmRequest, subscription: str, namespace: str, tail: list[str]) -> ArmResponse:
    lowered = [t.lower() for t in tail]
    if len(tail) == 4 and lowered[0] == "locations" and lowered[2] in ("operations", "operationresults"):
        return _operation(req, tail[3], location_style=lowered[2] == "operationresults")
    for route in PROVIDER_ROUTES.get(namespace.lower(), []):
        captures = match_segments(route.pattern, tail)
        if captures is not None and route.method == req.method:
            return route.handler(req, subscription, captures)
    if len(tail) == 1 and req.method == "GET":
        kind = find_kind(namespace, (tail[0],))
        if kind is not None:
            return list_resources(req, kind, f"/subscriptions/{subscription}/")
    raise _unknown_type(req, namespace, "/".join(tail))


def _operation(req: ArmRequest, op_id: str, *, location_style: bool) -> ArmResponse:
    op = req.lro.get(op_id)
    if op is None:
        raise not_found("OperationNotFound", f"The operation '{op_id}' was not found.")
    req.lro.poll(op)
    retry = req.lro.settings.retry_headers() if op["status"] == IN_PROGRESS else {}
    if not location_style:
        return ArmResponse(200, req.lro.status_body(op), retry)
    if op["status"] == IN_PROGRESS:
        headers = req.lro.location_headers(op, req.public_url, req.api_version)
        return ArmResponse(202, None, headers)
    if op["status"] == SUCCEEDED:
        result = op["payload"].get("result")
        return ArmResponse(200, result) if result is not None else ArmResponse(204)
    return ArmResponse(400, {"error": op.get("error")})
