"""ACR's token service: `/oauth2/exchange` and `/oauth2/token`, as documented in Azure/acr's AAD-OAuth.md.

    POST /oauth2/exchange   form grant_type=access_token, service=<loginServer>, tenant=<tid>,
                            access_token=<Entra token for ARM (or containerregistry.azure.net)>
                            -> 200 {"refresh_token": "<ACR refresh token>"}
    POST /oauth2/token      form grant_type=refresh_token, service, scope (repeatable / space-separated),
                            refresh_token  (or grant_type=access_token with an Entra token)
                            -> 200 {"access_token": "<JWT Distribution accepts>"}
    GET  /oauth2/token      ?service=&scope=, `Authorization: Basic` with user 00000000-0000-0000-0000-000000000000
                            and the refresh token as password (what `docker login` stores)
                            -> 200 {"access_token": ...}

The access token's `access` claim holds, per requested scope, only the actions the principal's
role assignments allow (access.py), possibly none: Distribution then answers 401
`insufficient_scope`, as ACR's registry does. What is refused here: anonymous requests
(anonymous pull is off), any other basic-auth user (the admin user is disabled, and the
sandbox has no ACR tokens or service principal secrets), a refresh token for another registry,
an Entra token of another tenant or audience. No token ever reaches a log line.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sandbox.azure.acr.access import allowed_actions, grant, parse_scopes, registry_by_login_server
from sandbox.azure.acr.signing import Signer, TokenInvalid
from sandbox.azure.auth import AuthProblem, authenticate
from sandbox.azure.config import EmulatorConfig
from sandbox.azure.principals import resolve_principal
from sandbox.azure.store import Store
from sandbox.azure.tokens import ARM_AUDIENCES

log = logging.getLogger("sandbox.azure.acr")

NULL_USER = "00000000-0000-0000-0000-000000000000"  # "the password is an ACR refresh token"
REFRESH_LIFETIME = 3 * 3600
ACCESS_LIFETIME = 75 * 60
ACR_AUDIENCES = frozenset(
    {*ARM_AUDIENCES, "https://containerregistry.azure.net", "https://containerregistry.azure.net/"}
)
AUTH_HELP = "visit https://aka.ms/acr/authorization for more information."


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


class Refused(Exception):
    """The request is answered with an error in the registry's shape: {"errors": [{code, message}]}."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.answer = Answer(status, {"errors": [{"code": code, "message": message}]})


def _unauthorized(message: str) -> Refused:
    return Refused(401, "UNAUTHORIZED", message)


def mint_refresh_token(
    signer: Signer, principal: str, tenant: str, service: str, lifetime: int = REFRESH_LIFETIME
) -> str:
    """An ACR refresh token for `principal` at registry `service` (its loginServer)."""
    claims = {
        "sub": principal,
        "aud": service,
        "version": "1.0",
        "grant_type": "refresh_token",
        "tenant": tenant,
        "permissions": {"actions": ["*"], "notActions": []},
        "roles": [],
    }
    return signer.sign(claims, lifetime)


def _registry(store: Store, service: str) -> dict[str, Any]:
    if not service:
        raise Refused(400, "INVALID_REQUEST", "The 'service' parameter is required (the registry's login server).")
    registry = registry_by_login_server(store, service)
    if registry is None:
        raise Refused(400, "INVALID_REQUEST", f"The service '{service}' is not a registry of this sandbox.")
    return registry


def _principal_of_entra_token(store: Store, config: EmulatorConfig, token: str, tenant: str | None) -> str:
    try:
        claims = authenticate(f"Bearer {token}", audiences=ACR_AUDIENCES, tenant_id=config.tenant_id)
    except AuthProblem as problem:
        reason = f"{problem.kind}: {problem.detail}"
        raise _unauthorized(f"The Entra access token was refused ({reason}). {AUTH_HELP}") from None
    if tenant and tenant.lower() != claims.tid.lower():
        raise _unauthorized(f"The tenant '{tenant}' does not match the access token's tenant. {AUTH_HELP}")
    resolved = resolve_principal(store, claims)
    if resolved is None:
        raise _unauthorized(f"No principal of the directory has the client id {claims.appid}. {AUTH_HELP}")
    return resolved.oid


def _principal_of_refresh_token(signer: Signer, token: str, service: str) -> str:
    try:
        claims = signer.verify(token)
    except TokenInvalid as exc:
        raise _unauthorized(f"The refresh token is invalid ({exc}). {AUTH_HELP}") from None
    if claims.get("grant_type") != "refresh_token" or str(claims.get("aud", "")).lower() != service.lower():
        raise _unauthorized(f"The refresh token was not issued for {service}. {AUTH_HELP}")
    return str(claims["sub"])


def _basic(authorization: str | None) -> tuple[str, str] | None:
    scheme, _, encoded = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


@dataclass(frozen=True)
class TokenService:
    """The token endpoints over one emulator's state; each call runs inside the store's transaction."""

    store: Store
    config: EmulatorConfig
    signer: Signer

    def exchange(self, form: Mapping[str, str]) -> Answer:
        """POST /oauth2/exchange: an Entra access token for an ACR refresh token."""
        try:
            grant_type = form.get("grant_type", "")
            if grant_type != "access_token":
                raise Refused(400, "UNSUPPORTED", f"grant_type '{grant_type}' is not supported; use 'access_token'.")
            service = form.get("service", "")
            _registry(self.store, service)
            token = form.get("access_token", "")
            if not token:
                raise Refused(400, "INVALID_REQUEST", "The 'access_token' parameter is required.")
            principal = _principal_of_entra_token(self.store, self.config, token, form.get("tenant"))
            refresh = mint_refresh_token(self.signer, principal, self.config.tenant_id, service)
            log.info("refresh token issued for %s at %s", principal, service)
            return Answer(200, {"refresh_token": refresh})
        except Refused as refused:
            return refused.answer

    def token(self, params: Mapping[str, str], scopes: Sequence[str], authorization: str | None) -> Answer:
        """GET or POST /oauth2/token: an access token for the scopes the caller may have."""
        try:
            service = params.get("service", "")
            registry = _registry(self.store, service)
            principal = self._caller(params, authorization, service)
            allowed = allowed_actions(self.store, self.config, principal, registry["id"])
            access = grant(parse_scopes(scopes), allowed)
            claims = {
                "sub": principal,
                "aud": service,
                "version": "1.0",
                "access": access,
                "roles": [],
                "grant_type": "access_token",
            }
            granted = "; ".join(f"{a['name']}:{a['actions']}" for a in access)
            log.info("access token for %s at %s: %s", principal, service, granted)
            return Answer(200, {"access_token": self.signer.sign(claims, ACCESS_LIFETIME)})
        except Refused as refused:
            return refused.answer

    def _caller(self, params: Mapping[str, str], authorization: str | None, service: str) -> str:
        grant_type = params.get("grant_type")
        if grant_type == "refresh_token":
            return _principal_of_refresh_token(self.signer, params.get("refresh_token", ""), service)
        if grant_type == "access_token":
            token = params.get("access_token", "")
            return _principal_of_entra_token(self.store, self.config, token, params.get("tenant"))
        if grant_type == "password":
            raise _unauthorized(f"The admin user is disabled on this registry. {AUTH_HELP}")
        if grant_type:
            raise Refused(400, "UNSUPPORTED", f"grant_type '{grant_type}' is not supported.")
        basic = _basic(authorization)
        if basic is None:
            raise _unauthorized(f"authentication required (anonymous pull is disabled), {AUTH_HELP}")
        user, password = basic
        if user != NULL_USER:
            raise _unauthorized(f"The admin user is disabled and '{user}' is no ACR token. {AUTH_HELP}")
        return _principal_of_refresh_token(self.signer, password, service)
