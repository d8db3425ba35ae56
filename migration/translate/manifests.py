"""The Kubernetes objects of a translated ECS service, built from what the translator decided.

`ManifestBuilder` is mixed into the translator (migration.translate.ecs): it reads the
containers, volumes, secrets and facts the translator gathered and writes the objects, in
apply order: Namespace, ServiceAccount (workload identity), SecretProviderClass, Deployment,
Service, Ingress, HorizontalPodAutoscaler, PodDisruptionBudget, NetworkPolicy. Every object
carries the ownership labels (`app.kubernetes.io/managed-by: mmrv-migrate`,
`mmrv-migrate/spec`). Choices that are not ECS fields, made for the translated app to behave
as it did on ECS:

* `enableServiceLinks: false` - ECS never injected `<SERVICE>_PORT=tcp://...` variables;
* topologySpreadConstraints across zones (best effort) - ECS spreads a service's tasks over AZs;
* the pod label `azure.workload.identity/use: "true"` - the webhook then gives the pods the
  identity of the ServiceAccount (`azure.workload.identity/client-id`);
* a PodDisruptionBudget letting node drains evict one pod at a time (or the service's
  minimumHealthyPercent when below 100): AKS upgrades must be able to drain nodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from migration.translate.containers import Container
from migration.translate.fields import Ledger, Node
from migration.translate.model import MANAGER, Severity, TranslateOptions
from migration.translate.names import unique
from migration.translate.secrets import (
    PLACEHOLDER_CLIENT,
    PLACEHOLDER_TENANT,
    PLACEHOLDER_VAULT,
    SecretRegistry,
    secret_provider_class,
)

WORKLOAD_IDENTITY_USE = "azure.workload.identity/use"
WORKLOAD_IDENTITY_CLIENT = "azure.workload.identity/client-id"
WORKLOAD_IDENTITY_TENANT = "azure.workload.identity/tenant-id"
SPEC_LABEL = "mmrv-migrate/spec"
ENV_LABEL = "mmrv-migrate/environment"
NETWORK_POLICY_RULES = (
    "ingress to the service's container ports from anywhere (the load balancer, other pods); egress to DNS, "
    "then everywhere (the app keeps calling AWS over the internet): delete the last egress rule to allow only "
    "what is listed"
)
CONTAINER_KEYS = (
    "name", "image", "command", "args", "workingDir", "ports", "envFrom", "env", "resources", "startupProbe",
    "livenessProbe", "readinessProbe", "volumeMounts", "securityContext", "stdin", "tty", "restartPolicy",
)  # fmt: skip


@dataclass
class TaskFacts:
    """What the task definition says that the manifests need."""

    arn: str | None
    family: str
    revision: int | None
    region: str | None
    cpu: int | None
    memory: int | None
    node_selector: dict[str, str]
    share_process_namespace: bool = False


@dataclass
class ServiceFacts:
    """What the ECS service says (defaults without one)."""

    name: str | None = None
    arn: str | None = None
    replicas: int = 1
    max_surge: str = "100%"
    max_unavailable: str = "0%"
    min_healthy: int = 100
    targets: list[tuple[Container, int]] = field(default_factory=list)  # (container, port) behind the LB
    target_path: str | None = None  # the field naming the load balancer


class ManifestBuilder:
    """Builds the objects; the translator provides the state below."""

    o: TranslateOptions
    ledger: Ledger
    svc: Node | None
    containers: list[Container]
    secrets: SecretRegistry
    volumes: list[dict[str, Any]]

    def report(self, path: str, severity: Severity, ecs: str, outcome: str) -> None:
        self.ledger.report(path, severity, ecs, outcome)

    @property
    def secret_name(self) -> str:
        return f"{self.o.name}-secrets"

    @property
    def provider_class_name(self) -> str:
        return f"{self.o.name}-keyvault"

    def _labels(self) -> dict[str, str]:
        labels = {
            "app.kubernetes.io/name": self.o.name,
            "app.kubernetes.io/component": self.o.component,
            "app.kubernetes.io/part-of": self.o.app,
            "app.kubernetes.io/managed-by": MANAGER,
            SPEC_LABEL: self.o.app,
        }
        if self.o.environment:
            labels[ENV_LABEL] = self.o.environment
        return {**self.o.labels, **labels}  # the ownership labels cannot be overridden

    def _meta(self, name: str, labels: dict[str, str], **extra: Any) -> dict[str, Any]:
        return {"name": name, "namespace": self.o.namespace, "labels": dict(labels), **extra}

    def _manifests(self, task: TaskFacts, service: ServiceFacts) -> list[dict[str, Any]]:
        labels = self._labels()
        selector = {"app.kubernetes.io/name": self.o.name}
        ns_labels = {"app.kubernetes.io/managed-by": MANAGER, SPEC_LABEL: self.o.app}
        if self.o.environment:
            ns_labels[ENV_LABEL] = self.o.environment
        out: list[dict[str, Any]] = [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.o.namespace, "labels": ns_labels}},
            self._service_account(labels),
        ]
        if self.secrets.uses:
            kv = self.o.key_vault
            out.append(
                secret_provider_class(
                    self.provider_class_name,
                    self.o.namespace,
                    labels,
                    self.secret_name,
                    sorted(self.secrets.uses),
                    kv.name if kv else PLACEHOLDER_VAULT,
                    kv.tenant_id if kv else PLACEHOLDER_TENANT,
                    self.o.workload_client_id or PLACEHOLDER_CLIENT,
                )
            )
        out.append(self._deployment(task, service, labels, selector))
        ports = self._service_ports(service)
        if ports:
            out.append(self._k8s_service(labels, selector, ports))
            if self.o.expose == "Ingress":
                out.append(self._ingress(labels, ports[0]))
        elif self.o.expose == "Ingress":
            self.ledger.problem("options.expose", "Ingress needs a TCP container port to route to; the task has none")
        if self.o.autoscaling:
            out.append(self._hpa(labels, service))
        out.append(self._pdb(labels, selector, service))
        if self.o.network_policy:
            out.append(self._network_policy(labels, selector, service))
        return out

    def _service_account(self, labels: dict[str, str]) -> dict[str, Any]:
        annotations = {WORKLOAD_IDENTITY_CLIENT: self.o.workload_client_id or PLACEHOLDER_CLIENT}
        if self.o.key_vault:
            annotations[WORKLOAD_IDENTITY_TENANT] = self.o.key_vault.tenant_id
        if not self.o.workload_client_id:
            self.report(
                "options.workload_client_id",
                "action",
                "no workload identity client id given",
                f"ServiceAccount {self.o.account}"
                + (" and the SecretProviderClass" if self.secrets.uses else "")
                + f" carry the placeholder {PLACEHOLDER_CLIENT}: pass --client-id (the user-assigned identity's)",
            )
        return {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": self._meta(self.o.account, labels, annotations=annotations),
        }

    def _deployment(
        self, task: TaskFacts, service: ServiceFacts, labels: dict[str, str], selector: dict[str, str]
    ) -> dict[str, Any]:
        pod_labels = {**labels, **selector, WORKLOAD_IDENTITY_USE: "true"}
        pod_annotations: dict[str, str] = {}
        pod: dict[str, Any] = {"serviceAccountName": self.o.account, "enableServiceLinks": False}
        share = task.share_process_namespace
        host_aliases: dict[str, list[str]] = {}
        nameservers: list[str] = []
        searches: list[str] = []
        sysctls: dict[str, str] = {}
        for c in self.containers:
            share = share or bool(c.pod.get("shareProcessNamespace"))
            pod_annotations.update(c.pod.get("annotations", {}))
            for ip, names in c.pod.get("hostAliases", {}).items():
                host_aliases.setdefault(ip, [])
                host_aliases[ip] += [n for n in names if n not in host_aliases[ip]]
            nameservers += [s for s in c.pod.get("nameservers", []) if s not in nameservers]
            searches += [s for s in c.pod.get("searches", []) if s not in searches]
            for key, value in c.pod.get("sysctls", {}).items():
                if key in sysctls and sysctls[key] != value:
                    self.report(
                        f"{c.path}.systemControls",
                        "warning",
                        f"{key} differs between containers",
                        f"one value per pod: {sysctls[key]} (the first container's)",
                    )
                    continue
                sysctls[key] = value
        mains = [c for c in self.containers if c.role == "main"]
        if len(self.containers) > 1 and mains:
            primary = service.targets[0][0] if service.targets else mains[0]
            pod_annotations["kubectl.kubernetes.io/default-container"] = primary.name
        if share:
            pod["shareProcessNamespace"] = True
        stops = [c.stop_timeout for c in self.containers if c.stop_timeout is not None]
        if stops:
            pod["terminationGracePeriodSeconds"] = max(stops)
            self.report(
                "taskDefinition.containerDefinitions[].stopTimeout",
                "info",
                f"SIGKILL {max(stops)} s after SIGTERM",
                f"terminationGracePeriodSeconds {max(stops)} (one value per pod: the longest)",
            )
        pod["nodeSelector"] = dict(task.node_selector)
        if sysctls:
            pod["securityContext"] = {"sysctls": [{"name": k, "value": v} for k, v in sysctls.items()]}
        if host_aliases:
            pod["hostAliases"] = [{"ip": ip, "hostnames": names} for ip, names in host_aliases.items()]
        if nameservers or searches:
            dns: dict[str, Any] = {}
            if nameservers:
                dns["nameservers"] = nameservers
            if searches:
                dns["searches"] = searches
            pod["dnsConfig"] = dns
        pod["topologySpreadConstraints"] = [
            {
                "maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": dict(selector)},
            }
        ]
        init = [_ordered(c.spec) for c in self.containers if c.role != "main"]
        if init:
            pod["initContainers"] = init
        pod["containers"] = [_ordered(c.spec) for c in mains]
        if self.volumes:
            pod["volumes"] = self.volumes
        annotations = {}
        if task.arn:
            annotations["mmrv-migrate/task-definition"] = task.arn
        if service.arn:
            annotations["mmrv-migrate/ecs-service"] = service.arn
        spec: dict[str, Any] = {}
        if self.o.autoscaling is None:
            spec["replicas"] = service.replicas
        spec.update(
            revisionHistoryLimit=10,
            progressDeadlineSeconds=self.o.rollout_deadline_seconds,
            selector={"matchLabels": dict(selector)},
            strategy={
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": service.max_surge, "maxUnavailable": service.max_unavailable},
            },
            template={
                "metadata": {"labels": pod_labels, **({"annotations": pod_annotations} if pod_annotations else {})},
                "spec": pod,
            },
        )
        metadata = self._meta(self.o.name, labels, **({"annotations": annotations} if annotations else {}))
        return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata, "spec": spec}

    def _service_ports(self, service: ServiceFacts) -> list[dict[str, Any]]:
        ports: list[dict[str, Any]] = []
        taken: set[str] = set()
        for container, number in service.targets:
            port = next(p for p in container.ports if p.container_port == number)
            name = unique(port.name or f"{port.protocol.lower()}-{number}", taken)
            entry: dict[str, Any] = {
                "name": name,
                "port": self.o.service_port if self.o.service_port and not ports else number,
                "targetPort": port.name or number,
                "protocol": port.protocol,
            }
            if port.app_protocol:
                entry["appProtocol"] = port.app_protocol
            ports.append(entry)
        exposed = {(c.ecs_name, n) for c, n in service.targets}
        for c in self.containers:
            for p in c.ports:
                if (c.ecs_name, p.container_port) not in exposed:
                    self.report(
                        f"{c.path}.portMappings",
                        "info",
                        f"port {p.container_port}/{p.protocol} of {c.ecs_name}",
                        "a containerPort only: not in the Service (not behind the ECS load balancer either), "
                        "and the NetworkPolicy does not admit it: add it there if other pods call it",
                    )
        return ports

    def _k8s_service(
        self, labels: dict[str, str], selector: dict[str, str], ports: list[dict[str, Any]]
    ) -> dict[str, Any]:
        kind = "LoadBalancer" if self.o.expose == "LoadBalancer" else "ClusterIP"
        annotations = {}
        check = self.o.health_check
        if kind == "LoadBalancer" and check and check.protocol != "TCP":
            annotations["service.beta.kubernetes.io/azure-load-balancer-health-probe-request-path"] = check.path
        metadata = self._meta(self.o.name, labels, **({"annotations": annotations} if annotations else {}))
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": metadata,
            "spec": {"type": kind, "selector": dict(selector), "ports": ports},
        }

    def _ingress(self, labels: dict[str, str], port: dict[str, Any]) -> dict[str, Any]:
        ingress = self.o.ingress
        assert ingress is not None
        backend = {"service": {"name": self.o.name, "port": {"number": port["port"]}}}
        spec: dict[str, Any] = {}
        if ingress.class_name:
            spec["ingressClassName"] = ingress.class_name
        if ingress.tls_secret:
            spec["tls"] = [{"hosts": list(ingress.hosts), "secretName": ingress.tls_secret}]
        spec["rules"] = [
            {"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]}}
            for host in ingress.hosts
        ]
        if not ingress.tls_secret:
            self.report(
                "options.ingress.tls_secret",
                "action",
                "the ALB's TLS certificate (ACM) is not exportable",
                "the Ingress serves plain HTTP: put the certificate into a kubernetes.io/tls Secret (or Key Vault "
                "with the app routing add-on) and pass tls_secret",
            )
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": self._meta(self.o.name, labels),
            "spec": spec,
        }

    def _hpa(self, labels: dict[str, str], service: ServiceFacts) -> dict[str, Any]:
        scaling = self.o.autoscaling
        assert scaling is not None
        metrics = []
        for resource, target in (("cpu", scaling.cpu_target_percent), ("memory", scaling.memory_target_percent)):
            if target is None:
                continue
            metrics.append(
                {
                    "type": "Resource",
                    "resource": {
                        "name": resource,
                        "target": {"type": "Utilization", "averageUtilization": max(1, round(target))},
                    },
                }
            )
            missing = [
                c.name for c in self.containers if resource not in c.spec.get("resources", {}).get("requests", {})
            ]
            if missing:
                self.report(
                    "autoscaling",
                    "warning",
                    f"target tracking on {resource}",
                    f"the HPA needs {resource} requests on every container; {', '.join(missing)} has none",
                )
        spec: dict[str, Any] = {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": self.o.name},
            "minReplicas": scaling.min_replicas,
            "maxReplicas": scaling.max_replicas,
        }
        if metrics:
            spec["metrics"] = metrics
        else:
            self.report(
                "autoscaling",
                "warning",
                "no CPU or memory target tracking policy",
                "an HPA without metrics scales on 80% average CPU (the Kubernetes default)",
            )
        scale_down: dict[str, Any] = {}
        if scaling.scale_in_cooldown_seconds is not None:
            scale_down["stabilizationWindowSeconds"] = scaling.scale_in_cooldown_seconds
        if scaling.disable_scale_in:
            scale_down["selectPolicy"] = "Disabled"
        if scale_down:
            spec["behavior"] = {"scaleDown": scale_down}
        targets = ", ".join(
            f"{name} {value:g}%"
            for name, value in (("CPU", scaling.cpu_target_percent), ("memory", scaling.memory_target_percent))
            if value is not None
        )
        self.report(
            "autoscaling",
            "info",
            f"Application Auto Scaling {scaling.min_replicas}-{scaling.max_replicas} tasks"
            + (f", target tracking {targets}" if targets else ""),
            "HorizontalPodAutoscaler (autoscaling/v2) on utilisation of the requests; the scale-in cooldown is the "
            "scale-down stabilization window"
            + (
                f"; the scale-out cooldown ({scaling.scale_out_cooldown_seconds} s) is not carried: an HPA scales up "
                "at once"
                if scaling.scale_out_cooldown_seconds
                else ""
            ),
        )
        if self.svc is not None and self.svc.has("desiredCount"):
            self.report(
                "service.desiredCount",
                "info",
                f"{service.replicas} tasks",
                f"replicas left to the HPA ({scaling.min_replicas}-{scaling.max_replicas}): "
                "applying the Deployment does not reset the scale",
            )
        for path, ecs, outcome in scaling.notes:
            self.report(path, "warning", ecs, outcome)
        return {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": self._meta(self.o.name, labels),
            "spec": spec,
        }

    def _pdb(self, labels: dict[str, str], selector: dict[str, str], service: ServiceFacts) -> dict[str, Any]:
        spec: dict[str, Any]
        if 0 < service.min_healthy < 100:
            spec = {"minAvailable": f"{service.min_healthy}%"}
            how = f"minAvailable {service.min_healthy}% (the service's minimumHealthyPercent)"
        else:
            spec = {"maxUnavailable": 1}
            how = "maxUnavailable 1: node drains (AKS upgrades) evict one pod at a time"
        replicas = self.o.autoscaling.min_replicas if self.o.autoscaling else service.replicas
        spec["selector"] = {"matchLabels": dict(selector)}
        spec["unhealthyPodEvictionPolicy"] = "AlwaysAllow"
        self.report(
            "service.deploymentConfiguration.minimumHealthyPercent" if self.svc else "service",
            "warning" if replicas < 2 else "info",
            "ECS keeps tasks healthy during its own deployments only",
            f"a PodDisruptionBudget, {how}"
            + ("; with a single replica a drain means downtime" if replicas < 2 else ""),
        )
        return {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": self._meta(self.o.name, labels),
            "spec": spec,
        }

    def _network_policy(
        self, labels: dict[str, str], selector: dict[str, str], service: ServiceFacts
    ) -> dict[str, Any]:
        ports = [
            {"port": number, "protocol": next(p.protocol for p in c.ports if p.container_port == number)}
            for c, number in service.targets
        ]
        ingress = [{"ports": ports}] if ports else []
        if self.svc is None or not self.svc.has("networkConfiguration"):
            self.report(
                "taskDefinition.networkMode",
                "info",
                "security groups (not in the task definition)",
                f"a NetworkPolicy: {NETWORK_POLICY_RULES}",
            )
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": self._meta(self.o.name, labels, annotations={"mmrv-migrate/rules": NETWORK_POLICY_RULES}),
            "spec": {
                "podSelector": {"matchLabels": dict(selector)},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": ingress,
                "egress": [
                    {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
                    {},
                ],
            },
        }


def _ordered(spec: dict[str, Any]) -> dict[str, Any]:
    """A container's keys in the order people read them."""
    return {k: spec[k] for k in CONTAINER_KEYS if k in spec and spec[k] not in (None, {}, [])} | {
        k: v for k, v in spec.items() if k not in CONTAINER_KEYS and v not in (None, {}, [])
    }
