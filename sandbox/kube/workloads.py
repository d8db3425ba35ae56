"""The apps: one small HTTP server per pod template revision that has running pods.

It stands in for MMRV's containers: it answers the pod's probe paths (and `/`, `/healthz`)
with 200 `ok`, reports the image it runs on `/version` as JSON, and answers 500 on all of
them when its image is marked broken (label `mmrv.sandbox/broken: "true"` in the image
config), so readiness fails, the rollout stalls and the tool rolls back. Pods of one
ReplicaSet share one server (same image, same behaviour); the kubelet's probes and the
load balancers reach it on a real port.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from sandbox.kube.httpserver import HttpRequest, HttpResponse, HttpServer
from sandbox.kube.images import BROKEN_LABEL, ImageInfo

log = logging.getLogger(__name__)

DEFAULT_HEALTH_PATHS = frozenset({"/", "/healthz", "/livez", "/readyz", "/health"})


def probe_paths(pod_spec: dict[str, Any]) -> set[str]:
    paths = set()
    for container in pod_spec.get("containers") or []:
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            http_get = (container.get(probe) or {}).get("httpGet")
            if isinstance(http_get, dict):
                paths.add(http_get.get("path") or "/")
    return paths


@dataclass
class AppIdentity:
    namespace: str
    owner: str  # ReplicaSet (or bare pod) name
    revision: str
    containers: list[tuple[str, ImageInfo]]  # (container name, image) in spec order
    health_paths: set[str] = field(default_factory=set)

    @property
    def broken(self) -> bool:
        return any(info.broken for _, info in self.containers)

    def version_document(self) -> dict[str, Any]:
        name, main = self.containers[0]
        return {
            "image": main.image,
            "digest": main.digest,
            "imageID": main.image_id,
            "container": name,
            "namespace": self.namespace,
            "replicaSet": self.owner,
            "revision": self.revision,
            "healthy": not self.broken,
            "containers": [
                {"name": n, "image": i.image, "digest": i.digest, "imageID": i.image_id} for n, i in self.containers
            ],
        }


class App:
    def __init__(self, identity: AppIdentity) -> None:
        self.identity = identity
        self.server = HttpServer(self.handle, name=f"app {identity.namespace}/{identity.owner}")
        self.pods: set[str] = set()

    @property
    def port(self) -> int:
        return self.server.port

    async def handle(self, request: HttpRequest) -> HttpResponse:
        path = request.path
        if path == "/version":
            return HttpResponse.json(200, json.dumps(self.identity.version_document()).encode())
        if path in self.identity.health_paths or path in DEFAULT_HEALTH_PATHS:
            if self.identity.broken:
                return HttpResponse.text(500, f"unhealthy: image marked broken ({BROKEN_LABEL})")
            return HttpResponse.text(200, "ok")
        return HttpResponse.json(404, b'{"error":"not found"}')


class Workloads:
    """The running apps of one cluster, keyed by owner (ReplicaSet uid, or pod uid for bare pods)."""

    def __init__(self) -> None:
        self.apps: dict[str, App] = {}

    async def attach(self, key: str, pod_uid: str, identity: AppIdentity) -> App:
        app = self.apps.get(key)
        if app is None:
            app = App(identity)
            await app.server.start()
            self.apps[key] = app
            log.info("app %s/%s (%s) listening on 127.0.0.1:%s", identity.namespace, identity.owner,
                     identity.containers[0][1].image, app.port)  # fmt: skip
        app.pods.add(pod_uid)
        return app

    def port_of(self, key: str) -> int | None:
        app = self.apps.get(key)
        return app.port if app else None

    async def detach(self, key: str, pod_uid: str) -> None:
        app = self.apps.get(key)
        if app is None:
            return
        app.pods.discard(pod_uid)
        if not app.pods:
            del self.apps[key]
            await app.server.stop()

    async def stop(self) -> None:
        for app in list(self.apps.values()):
            await app.server.stop()
        self.apps.clear()
