"""HTTP routes of the ACR side: the token service under every ACR front, and the Kubernetes pull check.

    POST /oauth2/exchange            (oauth.exchange)
    GET|POST /oauth2/token           (oauth.token)
    POST /_sandbox/authorize-pull    (access.pull_decision; the Kubernetes emulator's authorizer contract)

The proxy forwards `/oauth2/` of each ACR front (`127.0.0.1:PORT`, the registry's loginServer)
here. Like the rest of the emulator, one request at a time holds the store; only method, path
and status are logged (form bodies and Authorization headers carry tokens).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.azure.acr import oauth
from sandbox.azure.acr.access import pull_decision
from sandbox.azure.acr.runtime import AcrRuntime
from sandbox.azure.errors import ServiceError
from sandbox.azure.http_log import logged

log = logging.getLogger("sandbox.azure.acr")


def _state(request: Request) -> Any:
    return request.app.state.emulator


def _answer(answer: oauth.Answer) -> Response:
    # tokens are credentials: never cached by anything in between
    headers = {"Cache-Control": "no-store", **answer.headers}
    return JSONResponse(answer.body, status_code=answer.status, headers=headers)


async def _params(request: Request) -> dict[str, list[str]]:
    """Query and (url-encoded) form parameters together, every value kept (`scope` repeats)."""
    params = parse_qs(request.url.query, keep_blank_values=True)
    if request.method == "POST":
        for key, values in parse_qs((await request.body()).decode("utf-8", "replace"), keep_blank_values=True).items():
            params.setdefault(key, []).extend(values)
    return params


def _runtime(request: Request) -> AcrRuntime:
    runtime: AcrRuntime = _state(request).acr
    return runtime


def _signer_missing(request: Request) -> Response | None:
    try:
        _runtime(request).signer()
    except ServiceError as exc:
        return exc.response()
    return None


Call = Callable[[oauth.TokenService, dict[str, list[str]]], oauth.Answer]


async def _token_service(request: Request, call: Call) -> Response:
    started = time.perf_counter()
    if (missing := _signer_missing(request)) is not None:
        return logged(request, started, missing)
    params = await _params(request)
    state = _state(request)
    with state.store.transaction():
        answer = call(oauth.TokenService(state.store, state.config, _runtime(request).signer()), params)
    return logged(request, started, _answer(answer))


def _first(params: dict[str, list[str]]) -> dict[str, str]:
    return {key: values[0] for key, values in params.items()}


async def exchange(request: Request) -> Response:
    return await _token_service(request, lambda service, params: service.exchange(_first(params)))


async def token(request: Request) -> Response:
    authorization = request.headers.get("authorization")
    return await _token_service(
        request, lambda service, params: service.token(_first(params), params.get("scope", []), authorization)
    )


async def authorize_pull(request: Request) -> Response:
    started = time.perf_counter()
    try:
        body = json.loads(await request.body())
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return logged(request, started, JSONResponse({"error": "a JSON object is expected"}, status_code=400))
    state = _state(request)
    with state.store.transaction():
        decision = pull_decision(state.store, state.config, body)
    image, cluster = body.get("image"), body.get("cluster")
    log.info("pull of %s by cluster %s: %s (%s)", image, cluster, decision.allowed, decision.reason)
    return logged(request, started, JSONResponse(decision.to_json()))


def routes() -> list[Route]:
    return [
        Route("/oauth2/exchange", exchange, methods=["POST"]),
        Route("/oauth2/token", token, methods=["GET", "POST"]),
        Route("/_sandbox/authorize-pull", authorize_pull, methods=["POST"]),
    ]
