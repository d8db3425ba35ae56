"""The defaults the API server fills in, so stored objects look like a real cluster's.

Defaulting runs on every write, after merging and before validation, and is idempotent.
It matters beyond looks: a rerun of the tool compares its desired manifests with what the
cluster holds, and server-side apply must not fight over defaulted fields.
"""

from __future__ import annotations

import base64
import ipaddress
import random
from typing import Any

_PROBES = ("livenessProbe", "readinessProbe", "startupProbe")


def _probe(probe: dict[str, Any]) -> None:
    probe.setdefault("timeoutSeconds", 1)
    probe.setdefault("periodSeconds", 10)
    probe.setdefault("successThreshold", 1)
    probe.setdefault("failureThreshold", 3)
    if isinstance(probe.get("httpGet"), dict):
        probe["httpGet"].setdefault("path", "/")
        probe["httpGet"].setdefault("scheme", "HTTP")


def _pull_policy(image: str) -> str:
    last = image.rsplit("/", 1)[-1]
    if "@" in last:
        return "IfNotPresent"
    tag = last.split(":", 1)[1] if ":" in last else "latest"
    return "Always" if tag == "latest" else "IfNotPresent"


def _container(container: dict[str, Any]) -> None:
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    container.setdefault("resources", {})
    if isinstance(container.get("image"), str):
        container.setdefault("imagePullPolicy", _pull_policy(container["image"]))
    for port in container.get("ports") or []:
        port.setdefault("protocol", "TCP")
    for name in _PROBES:
        if isinstance(container.get(name), dict):
            _probe(container[name])
    for env in container.get("env") or []:
        field_ref = (env.get("valueFrom") or {}).get("fieldRef")
        if isinstance(field_ref, dict):
            field_ref.setdefault("apiVersion", "v1")


def pod_spec(spec: dict[str, Any]) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    if spec.get("serviceAccountName") or spec.get("serviceAccount"):
        spec.setdefault("serviceAccountName", spec.get("serviceAccount"))
        spec.setdefault("serviceAccount", spec["serviceAccountName"])
    for kind in ("initContainers", "containers"):
        for container in spec.get(kind) or []:
            if isinstance(container, dict):
                _container(container)
    for volume in spec.get("volumes") or []:
        for source in ("secret", "configMap"):
            if isinstance(volume.get(source), dict):
                volume[source].setdefault("defaultMode", 420)
        if isinstance(volume.get("projected"), dict):
            volume["projected"].setdefault("defaultMode", 420)


def _template(spec: dict[str, Any]) -> None:
    template = spec.get("template")
    if isinstance(template, dict):
        template.setdefault("metadata", {})
        if isinstance(template.get("spec"), dict):
            pod_spec(template["spec"])


def deployment(obj: dict[str, Any]) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    strategy = spec.setdefault("strategy", {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = strategy.setdefault("rollingUpdate", {})
        rolling.setdefault("maxSurge", "25%")
        rolling.setdefault("maxUnavailable", "25%")
    _template(spec)


def replica_set(obj: dict[str, Any]) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    _template(spec)


def _cluster_ip(obj: dict[str, Any]) -> str:
    # a stable fake address from the service's identity, inside AKS's default 10.0.0.0/16
    seed = random.Random(f"{obj['metadata'].get('namespace')}/{obj['metadata']['name']}")
    return str(ipaddress.IPv4Address("10.0.0.0") + seed.randrange(10, 65000))


def service(obj: dict[str, Any], old: dict[str, Any] | None = None) -> None:
    spec = obj.setdefault("spec", {})
    old_spec = (old or {}).get("spec") or {}
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    if spec["type"] != "ExternalName":
        spec.setdefault("clusterIP", old_spec.get("clusterIP") or _cluster_ip(obj))
        spec.setdefault("clusterIPs", [spec["clusterIP"]])
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("internalTrafficPolicy", "Cluster")
    old_node_ports = {p.get("port"): p.get("nodePort") for p in old_spec.get("ports") or []}
    for port in spec.get("ports") or []:
        port.setdefault("protocol", "TCP")
        port.setdefault("targetPort", port.get("port"))
        if spec["type"] in ("NodePort", "LoadBalancer"):
            port.setdefault("nodePort", old_node_ports.get(port.get("port")) or random.randrange(30000, 32768))
    if spec["type"] == "LoadBalancer":
        spec.setdefault("externalTrafficPolicy", "Cluster")
        spec.setdefault("allocateLoadBalancerNodePorts", True)
    obj.setdefault("status", {}).setdefault("loadBalancer", {})


def ingress(obj: dict[str, Any]) -> None:
    obj.setdefault("status", {}).setdefault("loadBalancer", {})


def secret(obj: dict[str, Any]) -> None:
    obj.setdefault("type", "Opaque")
    string_data = obj.pop("stringData", None)
    if isinstance(string_data, dict):
        data = obj.setdefault("data", {})
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()


def namespace(obj: dict[str, Any]) -> None:
    obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
    obj.setdefault("status", {}).setdefault("phase", "Active")
    obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"]["name"]


def network_policy(obj: dict[str, Any]) -> None:
    spec = obj.setdefault("spec", {})
    if "policyTypes" not in spec:
        spec["policyTypes"] = ["Ingress", "Egress"] if spec.get("egress") else ["Ingress"]


def pod(obj: dict[str, Any]) -> None:
    pod_spec(obj.setdefault("spec", {}))
    obj["spec"].setdefault("serviceAccountName", "default")
    obj["spec"].setdefault("serviceAccount", obj["spec"]["serviceAccountName"])
    obj["spec"].setdefault("enableServiceLinks", True)
    obj["spec"].setdefault("priority", 0)


def apply_defaults(kind: str, obj: dict[str, Any], old: dict[str, Any] | None = None) -> None:
    if kind == "Deployment":
        deployment(obj)
    elif kind == "ReplicaSet":
        replica_set(obj)
    elif kind == "Service":
        service(obj, old)
    elif kind == "Secret":
        secret(obj)
    elif kind == "Namespace":
        namespace(obj)
    elif kind == "Ingress":
        ingress(obj)
    elif kind == "NetworkPolicy":
        network_policy(obj)
    elif kind == "Pod":
        pod(obj)
