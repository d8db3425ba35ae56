"""Cloud load balancers and the ingress controller: real ports on 127.0.0.1 in front of the apps.

* A Service of type LoadBalancer gets one listener per service port. Its status reads
  `loadBalancer.ingress: [{ip: 127.0.0.1, ipMode: VIP, ports: [{port: <real port>}]}]`
  and the annotation `sandbox.mmrv/url: http://127.0.0.1:<port of the first service port>`.
  On AKS `ports` is empty and clients use `spec.ports[].port`; here the real port differs,
  so a client that prefers `ingress[].ports[i].port` when present works on both.
* Ingresses share one listener per cluster (the ingress controller), routing by Host
  header and path (Exact, Prefix, ImplementationSpecific as prefix) to a Service's pods.

Each request goes to one of the ready pods the Service selects, chosen per request, so a
rollout or rollback switches traffic only as new pods become ready and clients never hit
a pod that is gone. No ready pod: 503, as an empty backend pool answers.
"""

from __future__ import annotations

import copy
import itertools
import logging
from typing import TYPE_CHECKING, Any

import httpx

from sandbox.kube.httpserver import HttpRequest, HttpResponse, HttpServer
from sandbox.kube.selectors import map_selector_matches

if TYPE_CHECKING:
    from sandbox.kube.runtime import ClusterRuntime

log = logging.getLogger(__name__)

URL_ANNOTATION = "sandbox.mmrv/url"
LOOPBACK = "127.0.0.1"
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer",
               "content-length", "host"}  # fmt: skip


class Network:
    def __init__(self, runtime: ClusterRuntime) -> None:
        self.runtime = runtime
        self.cluster = runtime.cluster
        self.balancers: dict[tuple[str, str], list[HttpServer]] = {}  # (namespace, service) -> per-port listeners
        self.ingress: HttpServer | None = None
        self._turn = itertools.count()
        self._client = httpx.AsyncClient(timeout=30.0)

    # --- endpoints ---------------------------------------------------------------------------------

    def endpoints(self, namespace: str, service_name: str) -> list[int]:
        """App ports of the ready pods a Service selects (one entry per pod: weights follow pod counts)."""
        service = self.cluster.store.get("", "services", namespace, service_name)
        if service is None:
            return []
        selector = (service.get("spec") or {}).get("selector")
        ports = []
        for pod in self.cluster.store.list("", "pods", namespace):
            if not map_selector_matches(selector, pod["metadata"].get("labels")):
                continue
            uid = pod["metadata"]["uid"]
            port = self.runtime.kubelet.app_port(uid)
            if port and self.runtime.kubelet.ready_since(uid) is not None:
                ports.append(port)
        return ports

    async def forward(self, namespace: str, service_name: str, request: HttpRequest) -> HttpResponse:
        ports = self.endpoints(namespace, service_name)
        if not ports:
            return HttpResponse.text(503, f"no healthy upstream: service {namespace}/{service_name} has no ready pods")
        port = ports[next(self._turn) % len(ports)]
        headers = [(k, v) for k, v in request.headers if k not in _HOP_BY_HOP]
        try:
            upstream = await self._client.request(
                request.method, f"http://{LOOPBACK}:{port}{request.target}", headers=headers, content=request.body
            )
        except httpx.HTTPError as exc:
            return HttpResponse.text(502, f"upstream connect error: {exc}")
        out_headers = [(k, v) for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP]
        return HttpResponse(upstream.status_code, upstream.content, out_headers)

    # --- LoadBalancer services ------------------------------------------------------------------------

    async def sync(self) -> None:
        wanted: set[tuple[str, str]] = set()
        for service in self.cluster.store.list("", "services"):
            if (service.get("spec") or {}).get("type") != "LoadBalancer":
                continue
            key = (service["metadata"]["namespace"], service["metadata"]["name"])
            wanted.add(key)
            await self._ensure_balancer(key, service)
        for key in [k for k in self.balancers if k not in wanted]:
            for server in self.balancers.pop(key):
                await server.stop()
        await self._sync_ingress()

    async def _ensure_balancer(self, key: tuple[str, str], service: dict[str, Any]) -> None:
        namespace, name = key
        ports = (service.get("spec") or {}).get("ports") or []
        servers = self.balancers.get(key, [])
        if len(servers) != len(ports):
            for server in servers:
                await server.stop()
            remembered = [p.get("port", 0) for p in self._status_ports(service)]
            servers = []
            for i, _ in enumerate(ports):

                async def handler(request: HttpRequest, ns: str = namespace, svc: str = name) -> HttpResponse:
                    return await self.forward(ns, svc, request)

                server = HttpServer(handler, port=remembered[i] if i < len(remembered) else 0,
                                    name=f"lb {namespace}/{name}")  # fmt: skip
                await server.start()
                servers.append(server)
            self.balancers[key] = servers
            log.info("LoadBalancer %s/%s on %s", namespace, name, ", ".join(str(s.port) for s in servers))
        self._publish(service, "services", [s.port for s in servers])

    @staticmethod
    def _status_ports(obj: dict[str, Any]) -> list[dict[str, Any]]:
        ingress = ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or [{}]
        return list(ingress[0].get("ports") or [])

    def _publish(self, obj: dict[str, Any], plural: str, ports: list[int]) -> None:
        """Write the address into status (and the URL annotation) when it changed."""
        group = "networking.k8s.io" if plural == "ingresses" else ""
        rt = self.cluster.type_of(group, plural)
        entry: dict[str, Any] = {"ip": LOOPBACK, "ports": [{"port": p, "protocol": "TCP"} for p in ports]}
        if plural == "services":
            entry["ipMode"] = "VIP"
        status = copy.deepcopy(obj.get("status") or {})
        status["loadBalancer"] = {"ingress": [entry]}
        if status != obj.get("status"):
            self.cluster.update_status(rt, obj, status, manager="cloud-controller-manager")
        current = self.cluster.get(rt, obj["metadata"]["namespace"], obj["metadata"]["name"])
        url = f"http://{LOOPBACK}:{ports[0]}" if ports else ""
        if current is not None and (current["metadata"].get("annotations") or {}).get(URL_ANNOTATION) != url:
            updated = copy.deepcopy(current)
            updated["metadata"].setdefault("annotations", {})[URL_ANNOTATION] = url
            self.cluster.update(rt, current, updated, manager="cloud-controller-manager")

    # --- ingress controller ---------------------------------------------------------------------------

    async def _sync_ingress(self) -> None:
        ingresses = self.cluster.store.list("networking.k8s.io", "ingresses")
        if not ingresses and self.ingress is None:
            return
        if self.ingress is None:
            remembered = int(self.cluster.store.config.get("ingressPort") or 0)
            self.ingress = HttpServer(self._route_ingress, port=remembered, name=f"ingress {self.cluster.name}")
            await self.ingress.start()
            self.cluster.store.config["ingressPort"] = self.ingress.port
            log.info("ingress controller of %s on %s", self.cluster.name, self.ingress.port)
        for ingress in ingresses:
            self._publish(ingress, "ingresses", [self.ingress.port])

    def _backend_for(self, host: str, path: str) -> tuple[str, str] | None:
        best: tuple[int, str, str] | None = None
        for ingress in self.cluster.store.list("networking.k8s.io", "ingresses"):
            spec = ingress.get("spec") or {}
            namespace = ingress["metadata"]["namespace"]
            for rule in spec.get("rules") or []:
                if rule.get("host") and rule["host"] != host:
                    continue
                for candidate in ((rule.get("http") or {}).get("paths")) or []:
                    prefix = candidate.get("path") or "/"
                    exact = candidate.get("pathType") == "Exact"
                    if exact and path != prefix:
                        continue
                    if not exact and not (path == prefix or path.startswith(prefix.rstrip("/") + "/") or prefix == "/"):
                        continue
                    service = ((candidate.get("backend") or {}).get("service") or {}).get("name")
                    score = len(prefix) + (1000 if rule.get("host") else 0) + (1 if exact else 0)
                    if service and (best is None or score > best[0]):
                        best = (score, namespace, service)
            default = ((spec.get("defaultBackend") or {}).get("service") or {}).get("name")
            if default and best is None:
                best = (-1, namespace, default)
        return (best[1], best[2]) if best else None

    async def _route_ingress(self, request: HttpRequest) -> HttpResponse:
        host = (request.header("host") or "").split(":", 1)[0]
        backend = self._backend_for(host, request.path)
        if backend is None:
            return HttpResponse.text(404, "default backend - 404")
        return await self.forward(backend[0], backend[1], request)

    def describe(self) -> dict[str, Any]:
        return {
            "loadBalancers": {
                f"{ns}/{name}": [f"http://{LOOPBACK}:{s.port}" for s in servers]
                for (ns, name), servers in self.balancers.items()
            },
            "ingress": f"http://{LOOPBACK}:{self.ingress.port}" if self.ingress else None,
        }

    async def stop(self) -> None:
        for servers in self.balancers.values():
            for server in servers:
                await server.stop()
        self.balancers.clear()
        if self.ingress is not None:
            await self.ingress.stop()
            self.ingress = None
        await self._client.aclose()
