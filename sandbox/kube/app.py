"""The HTTP front: routing of Kubernetes API paths to clusters and verbs, auth, JSON in and out.

URL scheme: `<public url>/clusters/<cluster>/<kubernetes path>`, e.g.
`/clusters/staging/apis/apps/v1/namespaces/mmrv/deployments/backend`; the default cluster
(the only one, or `--default-cluster`) is also served at the root. Unauthenticated:
`/healthz`, `/livez`, `/readyz` and the sandbox's own `/_sandbox/...` endpoints.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from sandbox.kube import discovery, errors
from sandbox.kube.api import Params, parse_body, truthy
from sandbox.kube.auth import authenticate
from sandbox.kube.emulator import Emulator
from sandbox.kube.errors import ApiError
from sandbox.kube.runtime import ClusterRuntime

log = logging.getLogger(__name__)

_HEALTH = ("/healthz", "/livez", "/readyz")


class _Json(JSONResponse):
    def render(self, content: Any) -> bytes:
        return json.dumps(content, separators=(",", ":"), ensure_ascii=False).encode()


def _status_response(error: ApiError) -> Response:
    return _Json(error.status(), status_code=error.code, headers=error.headers)


def create_app(emulator: Emulator) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await emulator.start()
        try:
            yield
        finally:
            await emulator.stop()

    async def handle(request: Request) -> Response:
        path = request.url.path
        if path in _HEALTH:
            return PlainTextResponse("ok")
        parts = [p for p in path.split("/") if p]
        if parts[:1] == ["_sandbox"]:
            return await _sandbox_endpoint(emulator, request, parts[1:])
        try:
            if parts[:1] == ["clusters"] and len(parts) >= 2:
                runtime = emulator.cluster(parts[1])
                parts = parts[2:]
            else:
                runtime = emulator.default_cluster()
            if runtime is None:
                raise errors.path_not_found()
            if authenticate(request.headers.get("authorization"), emulator.config.token_audience) is None:
                raise errors.unauthorized()
            return await _route(emulator, runtime, request, parts)
        except ApiError as error:
            if error.code >= 500:
                log.warning("%s %s -> %s", request.method, path, error.message)
            return _status_response(error)
        except Exception:
            log.exception("%s %s failed", request.method, path)
            return _status_response(
                ApiError(500, "InternalError", "an error on the server has prevented the request from succeeding")
            )

    routes = [Route("/{path:path}", handle, methods=["GET", "POST", "PUT", "PATCH", "DELETE"])]
    return Starlette(routes=routes, lifespan=lifespan)


async def _route(emulator: Emulator, runtime: ClusterRuntime, request: Request, parts: list[str]) -> Response:
    registry = runtime.cluster.registry
    method = request.method
    if method == "GET":
        if parts == ["version"]:
            return _Json(discovery.version())
        if parts == ["api"]:
            return _Json(discovery.core_versions(emulator.server_address(request)))
        if parts == ["api", "v1"]:
            return _Json(discovery.resource_list(registry, "", "v1"))
        if parts == ["apis"]:
            return _Json(discovery.group_list(registry))
        if len(parts) == 2 and parts[0] == "apis":
            found = discovery.group(registry, parts[1])
            if found is None:
                raise errors.path_not_found()
            return _Json(found)
        if len(parts) == 3 and parts[0] == "apis":
            listing = discovery.resource_list(registry, parts[1], parts[2])
            if listing is None:
                raise errors.path_not_found()
            return _Json(listing)
    if parts[:2] == ["api", "v1"] and len(parts) > 2:
        group, version, rest = "", "v1", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) > 3:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        raise errors.path_not_found()
    return await _resource(emulator, runtime, request, group, version, rest)


async def _resource(
    emulator: Emulator, runtime: ClusterRuntime, request: Request, group: str, version: str, rest: list[str]
) -> Response:
    namespace: str | None = None
    if rest[0] == "namespaces" and len(rest) >= 3 and not (len(rest) == 3 and rest[2] in ("status", "finalize")):
        namespace, rest = rest[1], rest[2:]
    if len(rest) > 3:
        raise errors.path_not_found()
    plural, name = rest[0], (rest[1] if len(rest) > 1 else None)
    subresource = rest[2] if len(rest) > 2 else None
    rt = runtime.cluster.registry.lookup(group, version, plural)
    if rt is None or (namespace is not None and not rt.namespaced):
        raise errors.path_not_found()
    if rt.namespaced and namespace is None and (name is not None or request.method == "POST"):
        raise errors.path_not_found()
    if subresource is not None and subresource not in rt.subresources:
        raise errors.path_not_found()
    ns = namespace or ""
    params = Params(dict(request.query_params))
    api = runtime.api
    user_agent = request.headers.get("user-agent", "")
    method = request.method
    if method == "GET":
        if name is None:
            if truthy(params.get("watch")):
                stream = await api.watch(rt, namespace, params)
                return StreamingResponse(stream, media_type="application/json")
            return _Json(api.list(rt, namespace, params))
        return _Json(api.get(rt, ns, name, subresource))
    raw = await request.body()
    content_type = request.headers.get("content-type", "application/json")
    if method == "POST" and name is None:
        result, code = api.create(rt, ns, parse_body(raw, content_type), params, user_agent), 201
    elif method == "PUT" and name is not None:
        result, code = api.replace(rt, ns, name, parse_body(raw, content_type), params, user_agent, subresource), 200
    elif method == "PATCH" and name is not None:
        result, code = api.patch(rt, ns, name, raw, content_type, params, user_agent, subresource), 200
    elif method == "DELETE" and name is not None and subresource is None:
        code, result = api.delete(rt, ns, name, parse_body(raw, content_type), params)
    elif method == "DELETE" and name is None:
        result, code = api.delete_collection(rt, namespace, params), 200
    else:
        raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
    if not params.dry_run:
        emulator.save()
    return _Json(result, status_code=code)


async def _sandbox_endpoint(emulator: Emulator, request: Request, parts: list[str]) -> Response:
    """The sandbox's own control surface: health, clusters and their app endpoints."""
    if parts in (["health"], []):
        return PlainTextResponse("ok")
    if parts == ["clusters"] and request.method == "GET":
        return _Json({"clusters": [r.describe() for r in emulator.runtimes()]})
    if len(parts) == 2 and parts[0] == "clusters":
        name = parts[1]
        if request.method == "PUT":
            body = parse_body(await request.body()) or {}
            runtime = await emulator.ensure_cluster(name, body if isinstance(body, dict) else {})
            emulator.save()
            return _Json(runtime.describe())
        if request.method == "DELETE":
            removed = await emulator.drop_cluster(name)
            emulator.save()
            return _Json({"deleted": removed})
        found = emulator.cluster(name)
        if found is None:
            return _status_response(errors.path_not_found())
        return _Json(found.describe())
    return _status_response(errors.path_not_found())
