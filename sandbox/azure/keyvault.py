"""The Key Vault data plane (secrets), served by the same process under `/kv/{vault}/`.

Why the path and not the host names the vault: Azure gives each vault a host
(`<vault>.vault.azure.net`); loopback has one host, and nothing here resolves `*.localhost`. So
`vaultUri` is `{public}/kv/{vault}/` and the SDK, which appends `/secrets/...` to whatever vault
URL it is given, talks to the right vault. The SDK also *parses* the ids it receives and insists
they be `{scheme}://{host}/{collection}/{name}[/{version}]`, so the ids this emulator hands out
are `{public}/secrets/{name}/{version}` (no `/kv/{vault}` in them); `GET {public}/secrets/{name}/
{version}` resolves the vault from the version, which is unique. One consequence a caller can
see: `secret.properties.vault_url` is the emulator's base URL, not the vault URI.

Protocol, as Key Vault does it:
  - no bearer token -> 401 with `WWW-Authenticate: Bearer authorization="https://login.microsoftonline.com/
    {tenant}", resource="https://vault.azure.net"` (the SDK's challenge policy then gets a token);
  - token for another audience or tenant -> 401 (AKV10022 / AKV10032);
  - RBAC vaults: data actions need a role assignment at the vault (or secret) scope or above:
    read = Key Vault Secrets User, write = Secrets Officer / Administrator; else 403 Forbidden with
    innererror ForbiddenByRbac. Access-policy vaults check the policy's secret permissions.
  - soft delete is always on: delete -> deletedsecrets (recover or purge); the name stays taken
    (409 ObjectIsDeletedButRecoverable) until then; purge protection forbids purge.
Secret values are never logged.
"""

from __future__ import annotations

import copy
import logging
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sandbox.azure.auth import AUDIENCE, INVALID, MISSING, TENANT, AuthProblem, authenticate
from sandbox.azure.errors import ServiceError
from sandbox.azure.principals import resolve_principal
from sandbox.azure.providers.vaults import find_vault
from sandbox.azure.rbac import (
    DELETE_SECRET,
    GET_SECRET,
    PURGE_SECRET,
    READ_SECRET_METADATA,
    RECOVER_SECRET,
    SET_SECRET,
    UPDATE_SECRET,
    allows_data_action,
)
from sandbox.azure.store import Record, Store
from sandbox.azure.tokens import KEY_VAULT_AUDIENCE, TokenClaims

log = logging.getLogger("sandbox.azure.keyvault")

SECRET_NAME = re.compile(r"[0-9A-Za-z-]{1,127}")
MAX_VALUE_BYTES = 25 * 1024
PAGE_SIZE = 25
# which access-policy permission each data action needs on a non-RBAC vault
POLICY_PERMISSION = {
    GET_SECRET: "get",
    READ_SECRET_METADATA: "list",
    SET_SECRET: "set",
    UPDATE_SECRET: "set",
    DELETE_SECRET: "delete",
    RECOVER_SECRET: "recover",
    PURGE_SECRET: "purge",
}


def kv_error(status: int, code: str, message: str, inner: str | None = None, **headers: str) -> ServiceError:
    return ServiceError(status, code, message, inner_code=inner, headers=dict(headers))


@dataclass
class VaultCall:
    vault: Record
    principal: TokenClaims
    public_url: str
    api_version: str
    method: str
    segments: list[str]
    query: dict[str, str]
    body: Any
    store: Store

    @property
    def vault_name(self) -> str:
        return self.vault["body"]["name"]

    @property
    def vault_base(self) -> str:
        return f"{self.public_url}/kv/{self.vault_name}"

    @property
    def secrets(self) -> dict[str, Record]:
        data = self.store.vault_data.setdefault(self.vault_name.lower(), {"secrets": {}})
        return data["secrets"]


# --- entry points -------------------------------------------------------------------------


def challenge_header(tenant_id: str) -> str:
    return f'Bearer authorization="https://login.microsoftonline.com/{tenant_id}", resource="{KEY_VAULT_AUDIENCE}"'


def authenticate_vault(request: Request, vault: Record, store: Store) -> TokenClaims:
    tenant = vault["body"]["properties"]["tenantId"]
    challenge = {"WWW-Authenticate": challenge_header(tenant)}
    try:
        claims = authenticate(
            request.headers.get("authorization"),
            audiences=(KEY_VAULT_AUDIENCE, KEY_VAULT_AUDIENCE + "/"),
            tenant_id=tenant,
        )
        # a workload identity token may name only its client id: RBAC needs the principal
        resolved = resolve_principal(store, claims)
        if resolved is None:
            raise AuthProblem(INVALID, f"no principal in tenant {tenant} has the client id {claims.appid}", claims)
        return resolved
    except AuthProblem as problem:
        if problem.kind == MISSING:
            message = "AKV10000: Request is missing a Bearer or PoP token."
        elif problem.kind == AUDIENCE:
            message = f"AKV10022: Invalid audience. Expected {KEY_VAULT_AUDIENCE}, found: {problem.detail}."
        elif problem.kind == TENANT:
            message = (
                f"AKV10032: Invalid issuer. Expected one of https://sts.windows.net/{tenant}/, "
                f"found https://sts.windows.net/{problem.detail}/."
            )
        else:
            message = f"AKV10000: The token is invalid: {problem.detail}"
        raise kv_error(401, "Unauthorized", message, **challenge) from None


def handle_vault_request(call: VaultCall) -> Response:
    if not call.api_version:
        raise kv_error(400, "BadParameter", "The 'api-version' query parameter is required.")
    segs = call.segments
    head = segs[0].lower() if segs else ""
    method = call.method
    if head == "secrets":
        if len(segs) == 1 and method == "GET":
            return _list_secrets(call)
        if len(segs) >= 2:
            name = segs[1]
            if len(segs) == 2:
                if method == "PUT":
                    return _set_secret(call, name)
                if method == "GET":
                    return _get_secret(call, name, None)
                if method == "DELETE":
                    return _delete_secret(call, name)
                if method == "PATCH":
                    return _update_secret(call, name, None)
            if len(segs) == 3 and segs[2].lower() == "versions" and method == "GET":
                return _list_versions(call, name)
            if len(segs) == 3 and method == "GET":
                return _get_secret(call, name, segs[2])
            if len(segs) == 3 and method == "PATCH":
                return _update_secret(call, name, segs[2])
    if head == "deletedsecrets":
        if len(segs) == 1 and method == "GET":
            return _list_deleted(call)
        if len(segs) == 2 and method == "GET":
            return _get_deleted(call, segs[1])
        if len(segs) == 2 and method == "DELETE":
            return _purge(call, segs[1])
        if len(segs) == 3 and segs[2].lower() == "recover" and method == "POST":
            return _recover(call, segs[1])
    raise kv_error(404, "NotFound", f"No operation {method} /{'/'.join(segs)} on a vault in this sandbox.")


def find_version_owner(store: Store, name: str, version: str) -> str | None:
    """The vault holding `name` at `version` (versions are unique across the sandbox)."""
    for vault_name, data in store.vault_data.items():
        secret = data["secrets"].get(name.lower())
        if secret and any(v["version"] == version.lower() for v in secret["versions"]):
            return vault_name
    return None


def require_vault(store: Store, name: str) -> Record:
    vault = find_vault(store, name)
    if vault is None:
        # Azure has no such host at all; a 404 is the nearest a shared host can say it
        raise kv_error(404, "VaultNotFound", f"The vault '{name}' does not exist (or is soft-deleted).")
    return vault


# --- authorization ------------------------------------------------------------------------


def _authorize(call: VaultCall, action: str, secret: str | None = None) -> None:
    props = call.vault["body"]["properties"]
    scope = call.vault["id"] + (f"/secrets/{secret}" if secret else "")
    oid = call.principal.oid
    if props.get("enableRbacAuthorization"):
        if allows_data_action(call.store, oid, scope, action):
            return
        raise kv_error(
            403,
            "Forbidden",
            "Caller is not authorized to perform action on resource.\r\nIf role assignments, deny assignments or role "
            "definitions were changed recently, please observe propagation time.\r\n"
            f"Caller: appid={call.principal.appid};oid={oid};iss=https://sts.windows.net/{call.principal.tid}/\r\n"
            f"Action: '{action}'\r\nResource: '{scope.lower()}'\r\nAssignment: (not found)\r\n"
            f"DenyAssignmentId: null\r\nDecisionReason: 'DeniedWithNoValidRBAC' \r\n"
            f"Vault: {call.vault_name};location={call.vault['body']['location']}\r\n",
            inner="ForbiddenByRbac",
        )
    needed = POLICY_PERMISSION[action]
    for policy in props.get("accessPolicies") or []:
        if str(policy.get("objectId", "")).lower() == oid.lower():
            granted = [p.lower() for p in (policy.get("permissions") or {}).get("secrets", [])]
            if needed in granted or "all" in granted:
                return
    raise kv_error(
        403,
        "Forbidden",
        f"The user, group or application 'appid={call.principal.appid};oid={oid}' does not have secrets {needed} "
        f"permission on key vault '{call.vault_name};location={call.vault['body']['location']}'.",
        inner="AccessDenied",
    )


# --- bundles ------------------------------------------------------------------------------


def _recovery_level(call: VaultCall) -> tuple[str, int]:
    props = call.vault["body"]["properties"]
    days = int(props.get("softDeleteRetentionInDays", 90))
    level = "Recoverable" if props.get("enablePurgeProtection") else "Recoverable+Purgeable"
    return ("CustomizedRecoverable" + level.removeprefix("Recoverable") if days < 90 else level), days


def _attributes(call: VaultCall, version: Record) -> dict[str, Any]:
    level, days = _recovery_level(call)
    attributes = {**version["attributes"], "recoveryLevel": level, "recoverableDays": days}
    return {k: v for k, v in attributes.items() if v is not None}


def _secret_id(call: VaultCall, secret: Record, version: Record | None) -> str:
    base = f"{call.public_url}/secrets/{secret['name']}"
    return f"{base}/{version['version']}" if version else base


def _bundle(call: VaultCall, secret: Record, version: Record, *, with_value: bool) -> dict[str, Any]:
    bundle: dict[str, Any] = {"id": _secret_id(call, secret, version), "attributes": _attributes(call, version)}
    if with_value:
        bundle["value"] = version["value"]
    if version.get("contentType") is not None:
        bundle["contentType"] = version["contentType"]
    if version.get("tags"):
        bundle["tags"] = copy.deepcopy(version["tags"])
    return bundle


def _item(call: VaultCall, secret: Record, version: Record, *, versioned: bool) -> dict[str, Any]:
    item = _bundle(call, secret, version, with_value=False)
    item["id"] = _secret_id(call, secret, version if versioned else None)
    return item


def _deleted_bundle(call: VaultCall, secret: Record, *, item: bool) -> dict[str, Any]:
    latest = secret["versions"][-1]
    body = _item(call, secret, latest, versioned=False) if item else _bundle(call, secret, latest, with_value=False)
    body.update(
        {
            "recoveryId": f"{call.vault_base}/deletedsecrets/{secret['name']}",
            "deletedDate": secret["deleted"]["deletedDate"],
            "scheduledPurgeDate": secret["deleted"]["scheduledPurgeDate"],
        }
    )
    return body


def _json(body: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status)


def _not_found(name: str, version: str | None = None) -> ServiceError:
    what = f"{name}/{version}" if version else name
    return kv_error(
        404,
        "SecretNotFound",
        f"A secret with (name/id) {what} was not found in this key vault. If you recently deleted this secret you "
        "may be able to recover it using the correct recovery command. For help resolving this issue, please see "
        "https://go.microsoft.com/fwlink/?linkid=2125182",
    )


def _live(call: VaultCall, name: str) -> Record:
    secret = call.secrets.get(name.lower())
    if secret is None or secret["deleted"] is not None:
        raise _not_found(name)
    return secret


def _page(call: VaultCall, items: list[dict[str, Any]], path: str) -> JSONResponse:
    size = min(int(call.query.get("maxresults") or PAGE_SIZE), PAGE_SIZE)
    start = int(call.query.get("$skiptoken") or 0)
    page = items[start : start + size]
    next_link = None
    if start + size < len(items):
        next_link = (
            f"{call.vault_base}/{path}?api-version={call.api_version}&maxresults={size}&$skiptoken={start + size}"
        )
    return _json({"value": page, "nextLink": next_link})


# --- operations ---------------------------------------------------------------------------


def _set_secret(call: VaultCall, name: str) -> Response:
    if not SECRET_NAME.fullmatch(name):
        raise kv_error(400, "BadParameter", f"The request URI contains an invalid name: {name}")
    _authorize(call, SET_SECRET, name)
    body = call.body if isinstance(call.body, dict) else {}
    value = body.get("value")
    if not isinstance(value, str):
        raise kv_error(400, "BadParameter", "Property 'value' is required and must be a string.")
    if len(value.encode()) > MAX_VALUE_BYTES:
        raise kv_error(400, "BadParameter", f"The secret value is larger than {MAX_VALUE_BYTES} bytes.")
    secret = call.secrets.get(name.lower())
    if secret is not None and secret["deleted"] is not None:
        raise kv_error(
            409,
            "Conflict",
            f"Secret {name} is currently in a deleted but recoverable state, and its name cannot be reused; in this "
            "state, the secret can only be recovered or purged.",
            inner="ObjectIsDeletedButRecoverable",
        )
    if secret is None:
        secret = {"name": name, "versions": [], "deleted": None}
        call.secrets[name.lower()] = secret
    now = int(time.time())
    given = body.get("attributes") or {}
    version = {
        "version": uuid.uuid4().hex,
        "value": value,
        "contentType": body.get("contentType"),
        "tags": dict(body.get("tags") or {}),
        "attributes": {
            "enabled": given.get("enabled", True),
            "nbf": given.get("nbf"),
            "exp": given.get("exp"),
            "created": now,
            "updated": now,
        },
    }
    secret["versions"].append(version)
    call.store.touch()
    log.info("vault %s: secret %s set (version %s)", call.vault_name, name, version["version"])
    return _json(_bundle(call, secret, version, with_value=True))


def _find_version(secret: Record, version: str | None) -> Record | None:
    if not version:
        return secret["versions"][-1]
    return next((v for v in secret["versions"] if v["version"] == version.lower()), None)


def _version_of(call: VaultCall, action: str, name: str, version: str | None) -> tuple[Record, Record]:
    """Authorize `action` on a live secret; return it and the version asked for (latest if none)."""
    _authorize(call, action, name)
    secret = _live(call, name)
    found = _find_version(secret, version)
    if found is None:
        raise _not_found(name, version)
    return secret, found


def _get_secret(call: VaultCall, name: str, version: str | None) -> Response:
    secret, found = _version_of(call, GET_SECRET, name, version)
    if not found["attributes"].get("enabled", True):
        raise kv_error(403, "Forbidden", "Operation get is not allowed on a disabled secret.", inner="SecretDisabled")
    return _json(_bundle(call, secret, found, with_value=True))


def _update_secret(call: VaultCall, name: str, version: str | None) -> Response:
    secret, found = _version_of(call, UPDATE_SECRET, name, version)
    body = call.body if isinstance(call.body, dict) else {}
    if "contentType" in body:
        found["contentType"] = body["contentType"]
    if "tags" in body:
        found["tags"] = dict(body["tags"] or {})
    for key in ("enabled", "nbf", "exp"):
        if key in (body.get("attributes") or {}):
            found["attributes"][key] = body["attributes"][key]
    found["attributes"]["updated"] = int(time.time())
    call.store.touch()
    return _json(_bundle(call, secret, found, with_value=False))


def _secrets(call: VaultCall, *, deleted: bool) -> list[Record]:
    """The vault's secrets, live or soft-deleted, in name order (as Key Vault lists them)."""
    chosen = [s for s in call.secrets.values() if (s["deleted"] is not None) == deleted]
    return sorted(chosen, key=lambda s: s["name"].lower())


def _list_secrets(call: VaultCall) -> Response:
    _authorize(call, READ_SECRET_METADATA)
    items = [_item(call, s, s["versions"][-1], versioned=False) for s in _secrets(call, deleted=False)]
    return _page(call, items, "secrets")


def _list_versions(call: VaultCall, name: str) -> Response:
    _authorize(call, READ_SECRET_METADATA, name)
    secret = _live(call, name)
    items = [_item(call, secret, v, versioned=True) for v in secret["versions"]]
    return _page(call, items, f"secrets/{secret['name']}/versions")


def _delete_secret(call: VaultCall, name: str) -> Response:
    _authorize(call, DELETE_SECRET, name)
    secret = _live(call, name)
    now = int(time.time())
    days = int(call.vault["body"]["properties"].get("softDeleteRetentionInDays", 90))
    secret["deleted"] = {"deletedDate": now, "scheduledPurgeDate": now + days * 86400}
    call.store.touch()
    log.info("vault %s: secret %s deleted (recoverable)", call.vault_name, name)
    return _json(_deleted_bundle(call, secret, item=False))


def _deleted(call: VaultCall, name: str) -> Record:
    secret = call.secrets.get(name.lower())
    if secret is None or secret["deleted"] is None:
        raise kv_error(404, "SecretNotFound", f"Deleted Secret not found: {name}")
    return secret


def _list_deleted(call: VaultCall) -> Response:
    _authorize(call, READ_SECRET_METADATA)
    items = [_deleted_bundle(call, s, item=True) for s in _secrets(call, deleted=True)]
    return _page(call, items, "deletedsecrets")


def _get_deleted(call: VaultCall, name: str) -> Response:
    _authorize(call, READ_SECRET_METADATA, name)
    return _json(_deleted_bundle(call, _deleted(call, name), item=False))


def _recover(call: VaultCall, name: str) -> Response:
    _authorize(call, RECOVER_SECRET, name)
    secret = _deleted(call, name)
    secret["deleted"] = None
    call.store.touch()
    log.info("vault %s: secret %s recovered", call.vault_name, name)
    return _json(_bundle(call, secret, secret["versions"][-1], with_value=False))


def _purge(call: VaultCall, name: str) -> Response:
    _authorize(call, PURGE_SECRET, name)
    secret = _deleted(call, name)
    if call.vault["body"]["properties"].get("enablePurgeProtection"):
        raise kv_error(
            403,
            "Forbidden",
            f'Operation "purge" is not allowed because purge protection is enabled for this vault. Key Vault service '
            f"will automatically purge it after the retention period has passed. Secret: {secret['name']}",
            inner="PurgeProtectionEnabled",
        )
    del call.secrets[name.lower()]
    call.store.touch()
    log.info("vault %s: secret %s purged", call.vault_name, name)
    return Response(status_code=204)
