"""The Starlette application: one process answering ARM, Key Vault, OIDC discovery and its own knobs.

/subscriptions/..., {scope}/providers/Microsoft.Authorization/...   ARM (arm_routes.py)
/kv/{vault}/...                                                      Key Vault data plane
/secrets/{name}/{version}                                            a secret id, dereferenced
/oidc/{tenant}/{id}/.well-known/openid-configuration                 a cluster's OIDC discovery
/_sandbox/health                                                     liveness, no auth
/_sandbox/lro                                                        GET/PUT the LRO pacing and faults
/oauth2/exchange, /oauth2/token, /_sandbox/authorize-pull            the ACR token service (acr/)
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.azure import arm_routes, keyvault
from sandbox.azure.acr import endpoints as acr_endpoints
from sandbox.azure.acr.runtime import AcrRuntime
from sandbox.azure.config import EmulatorConfig
from sandbox.azure.errors import ServiceError
from sandbox.azure.http_log import logged
from sandbox.azure.lro import Lro
from sandbox.azure.oidc import discovery_document, issuer_url, known_issuers
from sandbox.azure.providers.base import ArmRequest, ArmResponse
from sandbox.azure.store import Store

log = logging.getLogger("sandbox.azure")

ALL_METHODS = ["GET", "HEAD", "PUT", "PATCH", "POST", "DELETE"]


@dataclass
class EmulatorState:
    config: EmulatorConfig
    store: Store
    lro: Lro
    acr: AcrRuntime


def _state(request: Request) -> EmulatorState:
    return request.app.state.emulator  # type: ignore[no-any-return]


def public_url(request: Request, config: EmulatorConfig) -> str:
    """The base URL clients reach us by: configured, else what the request (via the proxy) says."""
    if config.public_url:
        return config.public_url.rstrip("/")
    proto = request.headers.get("x-forwarded-proto") or request.url.scheme
    host = request.headers.get("host") or f"{request.url.hostname}:{request.url.port}"
    return f"{proto}://{host}"


async def _json_body(request: Request, invalid: ServiceError) -> Any:
    raw = await request.body()
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise invalid from None


def _segments(request: Request) -> list[str]:
    return [s for s in request.scope["path"].split("/") if s]


def _query(request: Request) -> dict[str, str]:
    # ARM treats query parameter names case-insensitively (api-version, $filter, $top)
    return {k.lower(): v for k, v in request.query_params.items()}


def _render(response: ArmResponse) -> Response:
    if response.body is None:
        return Response(status_code=response.status, headers=response.headers)
    return JSONResponse(response.body, status_code=response.status, headers=response.headers)


Work = Callable[[Request, EmulatorState, Any], Response]
INVALID_ARM_BODY = ServiceError(
    400, "InvalidRequestContent", "The request content was invalid and could not be deserialized."
)
INVALID_VAULT_BODY = keyvault.kv_error(400, "BadParameter", "The request body is not valid JSON.")


async def _serve(request: Request, work: Work, invalid_body: ServiceError) -> Response:
    """Run one request: parse the body, hold the store for the duration, answer errors, log."""
    started = time.perf_counter()
    state = _state(request)
    try:
        body = await _json_body(request, invalid_body)
        with state.store.transaction():
            state.lro.advance()
            response = work(request, state, body)
    except ServiceError as exc:
        response = exc.response()
    return logged(request, started, response)


def _arm(request: Request, state: EmulatorState, body: Any) -> Response:
    principal = arm_routes.authenticate_arm(request.headers.get("authorization"), state.config, state.store)
    query = _query(request)
    req = ArmRequest(
        method=request.method,
        segments=_segments(request),
        query=query,
        body=body,
        principal=principal,
        api_version=arm_routes.require_api_version(query.get("api-version")),
        public_url=public_url(request, state.config),
        config=state.config,
        store=state.store,
        lro=state.lro,
        acr=state.acr,
    )
    arm_routes.authorize_arm(req, request.scope["path"])
    return _render(arm_routes.dispatch(req))


def _vault(request: Request, state: EmulatorState, body: Any) -> Response:
    vault = keyvault.require_vault(state.store, request.path_params["vault"])
    segments = [s for s in request.path_params.get("rest", "").split("/") if s]
    return _vault_call(request, state, vault, segments, body)


def _secret_by_id(request: Request, state: EmulatorState, body: Any) -> Response:
    """GET {public}/secrets/{name}/{version}: the id the SDK was handed, resolved to its vault."""
    name, version = request.path_params["name"], request.path_params["version"]
    owner = keyvault.find_version_owner(state.store, name, version)
    if owner is None:
        raise keyvault.kv_error(404, "SecretNotFound", f"A secret with (name/id) {name}/{version} was not found.")
    vault = keyvault.require_vault(state.store, owner)
    return _vault_call(request, state, vault, ["secrets", name, version], None)


async def arm_endpoint(request: Request) -> Response:
    return await _serve(request, _arm, INVALID_ARM_BODY)


async def vault_endpoint(request: Request) -> Response:
    return await _serve(request, _vault, INVALID_VAULT_BODY)


async def secret_by_id(request: Request) -> Response:
    return await _serve(request, _secret_by_id, INVALID_VAULT_BODY)


def _vault_call(request: Request, state: EmulatorState, vault: Any, segments: list[str], body: Any) -> Response:
    principal = keyvault.authenticate_vault(request, vault, state.store)
    call = keyvault.VaultCall(
        vault=vault,
        principal=principal,
        public_url=public_url(request, state.config),
        api_version=request.query_params.get("api-version", ""),
        method=request.method,
        segments=segments,
        query=dict(request.query_params),
        body=body,
        store=state.store,
    )
    return keyvault.handle_vault_request(call)


async def oidc_discovery(request: Request) -> Response:
    state = _state(request)
    base = public_url(request, state.config)
    issuer = issuer_url(base, request.path_params["tenant"], request.path_params["oidc_id"])
    with state.store.transaction():
        if issuer not in known_issuers(state.store, base):
            return JSONResponse({"error": "issuer not found"}, status_code=404)
    return JSONResponse(discovery_document(issuer))


async def oidc_jwks(request: Request) -> Response:
    # the Kubernetes emulator signs service account tokens itself; no keys are published here
    return JSONResponse({"keys": []})


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def lro_settings(request: Request) -> Response:
    """GET or PUT {"polls", "seconds", "retry_after", "fail_next": {"<resource type>": n}}."""
    settings = _state(request).lro.settings
    if request.method == "PUT":
        changes = await request.json()
        if "polls" in changes:
            settings.polls = int(changes["polls"])
        if "seconds" in changes:
            settings.seconds = float(changes["seconds"])
        if "retry_after" in changes:
            settings.retry_after = float(changes["retry_after"])
        if "fail_next" in changes:
            settings.fail_next = {str(k): int(v) for k, v in dict(changes["fail_next"]).items()}
        log.info("LRO settings now %s", settings.to_json())
    return JSONResponse(settings.to_json())


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.scope["path"])
    return JSONResponse(
        {"error": {"code": "InternalServerError", "message": "The sandbox emulator failed; see its log."}},
        status_code=500,
    )


def build_app(config: EmulatorConfig) -> Starlette:
    store = Store(config.state_file)
    routes = [
        Route("/_sandbox/health", health, methods=["GET"]),
        Route("/_sandbox/lro", lro_settings, methods=["GET", "PUT"]),
        Route("/oidc/{tenant}/{oidc_id}/.well-known/openid-configuration", oidc_discovery, methods=["GET"]),
        Route("/oidc/{tenant}/{oidc_id}/openid/v1/jwks", oidc_jwks, methods=["GET"]),
        Route("/kv/{vault}", vault_endpoint, methods=ALL_METHODS),
        Route("/kv/{vault}/{rest:path}", vault_endpoint, methods=ALL_METHODS),
        Route("/secrets/{name}/{version}", secret_by_id, methods=["GET"]),
        *acr_endpoints.routes(),
        Route("/{path:path}", arm_endpoint, methods=ALL_METHODS),
    ]
    app = Starlette(routes=routes, exception_handlers={Exception: _unexpected})
    lro = Lro(store, config.lro)
    app.state.emulator = EmulatorState(config=config, store=store, lro=lro, acr=AcrRuntime(config, store, lro))
    if not config.subscriptions:
        log.warning("no --subscription given: every subscription id is accepted")
    return app
