"""ECS task definition (+ service, target group health check, autoscaling) -> Kubernetes manifests.

`translate_ecs(task_definition, service, options)` takes the JSON `aws ecs
describe-task-definition` / `describe-services` print (with or without the `taskDefinition`
/ `services` wrapper) and answers a `Translation`: the manifests in apply order (Namespace,
ServiceAccount, SecretProviderClass, Deployment, Service, Ingress, HorizontalPodAutoscaler,
PodDisruptionBudget, NetworkPolicy), the report of every ECS field without a direct
equivalent and what was done about it, the Key Vault secrets to copy and the images run.
Every field is read, reported or deliberately ignored (read-only status); any other
non-empty field still lands in the report as "not recognised". Bad input raises
TranslationError with one line per problem, naming the field path. Pure: no I/O.

What becomes what (the rest is in the report):

  containers                    main containers; dependsOn COMPLETE/SUCCESS -> init containers,
                                START/HEALTHY -> sidecars (init containers, restartPolicy Always;
                                HEALTHY waits for the sidecar's startupProbe)
  image                         the ACR reference pinned by digest (options.images)
  entryPoint / command          command / args
  environment / secrets         env value / env valueFrom.secretKeyRef (Secret synced from Key Vault)
  environmentFiles (S3)         envFrom configMapRef (a ConfigMap the user creates) or an error
  portMappings                  containerPorts + Service ports (the load balancer's container port)
  healthCheck                   exec liveness probe (+ readiness without an ALB check, startupProbe
                                for startPeriod)
  ALB health check              HTTP/TCP readiness probe of the container behind the load balancer
  cpu / memory / reservation    requests / limits (see migration.translate.resources)
  readonlyRootFilesystem,       securityContext
  privileged, user, capabilities
  sharedMemorySize / tmpfs      emptyDir medium Memory
  initProcessEnabled / pidMode  shareProcessNamespace
  stopTimeout                   terminationGracePeriodSeconds
  taskRoleArn                   AWS_ROLE_ARN + projected token (audience sts.amazonaws.com), when a
                                federated role is given
  desiredCount                  replicas (left to the HPA when autoscaling is known)
  min healthy / max percent     RollingUpdate maxUnavailable / maxSurge; circuit breaker ->
                                progressDeadlineSeconds (the ship phase rolls back)
  target tracking (CPU/memory)  HorizontalPodAutoscaler autoscaling/v2
  security groups               NetworkPolicy: ingress on the service ports, egress DNS + all
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from migration.translate.containers import CONDITIONS, Container, read_container
from migration.translate.fields import Ledger, Node
from migration.translate.manifests import NETWORK_POLICY_RULES, ManifestBuilder, ServiceFacts, TaskFacts
from migration.translate.model import (
    ImageRewrite,
    ReportItem,
    TranslateOptions,
    Translation,
    TranslationError,
)
from migration.translate.names import dns_label, unique
from migration.translate.probes import matcher_codes, readiness_from_target_group
from migration.translate.resources import (
    container_resources,
    fargate_problem,
    parse_task_cpu,
    parse_task_memory,
)
from migration.translate.secrets import (
    CSI_DRIVER,
    MOUNT_PATH,
    PLACEHOLDER_TENANT,
    PLACEHOLDER_VAULT,
    VOLUME_NAME,
    SecretRegistry,
    parse_value_from,
)

AWS_TOKEN_VOLUME = "aws-token"
AWS_TOKEN_DIR = "/var/run/secrets/sts.amazonaws.com/serviceaccount"
AWS_TOKEN_FILE = f"{AWS_TOKEN_DIR}/token"
AWS_AUDIENCE = "sts.amazonaws.com"

READ_ONLY_TASK = (
    "taskDefinitionArn",
    "revision",
    "status",
    "requiresAttributes",
    "compatibilities",
    "registeredAt",
    "registeredBy",
    "deregisteredAt",
)
READ_ONLY_SERVICE = (
    "serviceArn",
    "clusterArn",
    "status",
    "runningCount",
    "pendingCount",
    "taskSets",
    "deployments",
    "events",
    "createdAt",
    "createdBy",
    "roleArn",
)
ARCH = {"X86_64": "amd64", "ARM64": "arm64"}


# --- unwrapping what the AWS CLI prints ---------------------------------------------------------


def unwrap_task_definition(doc: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the task definition, the wrapper's other keys such as `tags`) from describe-task-definition output."""
    if not isinstance(doc, Mapping):
        raise TranslationError([f"(top level): expected a JSON object, got {type(doc).__name__}"], "task definition")
    if "taskDefinition" in doc:
        inner = doc["taskDefinition"]
        if not isinstance(inner, Mapping):
            raise TranslationError(["taskDefinition: must be an object"], "task definition")
        return dict(inner), {k: v for k, v in doc.items() if k != "taskDefinition"}
    if "containerDefinitions" in doc:
        return dict(doc), {}
    raise TranslationError(
        [
            "(top level): not an ECS task definition: expected `aws ecs describe-task-definition` output "
            "(a `taskDefinition` object) or a task definition with `containerDefinitions`"
        ],
        "task definition",
    )


def unwrap_service(doc: Any, task_definition_arn: str | None = None) -> dict[str, Any]:
    """The one service of describe-services output (the one running `task_definition_arn` if several)."""
    if not isinstance(doc, Mapping):
        raise TranslationError([f"(top level): expected a JSON object, got {type(doc).__name__}"], "service")
    if "services" in doc:
        services = doc["services"]
        if not isinstance(services, list) or not all(isinstance(s, Mapping) for s in services):
            raise TranslationError(["services: must be a list of objects"], "service")
        if not services:
            failures = doc.get("failures") or []
            why = "; ".join(f"{f.get('arn')}: {f.get('reason')}" for f in failures if isinstance(f, Mapping))
            raise TranslationError([f"services: empty{' (' + why + ')' if why else ''}"], "service")
        if len(services) > 1:
            matching = [s for s in services if task_definition_arn and s.get("taskDefinition") == task_definition_arn]
            if len(matching) != 1:
                names = ", ".join(str(s.get("serviceName")) for s in services)
                raise TranslationError(
                    [f"services: {len(services)} services ({names}); give the output of one service"], "service"
                )
            return dict(matching[0])
        return dict(services[0])
    if "service" in doc and isinstance(doc["service"], Mapping):
        return dict(doc["service"])  # create-service / update-service output
    if "serviceName" in doc or "desiredCount" in doc:
        return dict(doc)
    raise TranslationError(
        [
            "(top level): not an ECS service: expected `aws ecs describe-services` output (a `services` list) "
            "or a service with `serviceName`"
        ],
        "service",
    )


def translate_ecs(
    task_definition: Mapping[str, Any], service: Mapping[str, Any] | None, options: TranslateOptions
) -> Translation:
    """Translate one ECS service's task definition into Kubernetes manifests (see the module doc)."""
    raw_task, extras = unwrap_task_definition(task_definition)
    raw_service = unwrap_service(service, raw_task.get("taskDefinitionArn")) if service is not None else None
    return _Translator(raw_task, extras, raw_service, options).run()


# --- the translation ----------------------------------------------------------------------------


class _Translator(ManifestBuilder):
    def __init__(
        self,
        raw_task: dict[str, Any],
        extras: dict[str, Any],
        raw_service: dict[str, Any] | None,
        options: TranslateOptions,
    ) -> None:
        self.o = options
        self.ledger = Ledger()
        self.td = self.ledger.node(raw_task, "taskDefinition")
        self.extras = self.ledger.node(extras, "")
        self.svc = self.ledger.node(raw_service, "service") if raw_service is not None else None
        self.secrets = SecretRegistry(dict(options.secret_names), options.json_key_secrets)
        self.containers: list[Container] = []
        self.by_name: dict[str, Container] = {}
        self.volumes: list[dict[str, Any]] = []
        self.volume_names = {VOLUME_NAME, AWS_TOKEN_VOLUME}

    # the order matters: later steps read what earlier ones decided
    def run(self) -> Translation:
        task = self._task()
        self._containers()
        self._resources(task)
        self._roles()
        service = self._service(task)
        self._probes(service)
        self._secrets()
        self._environment_files()
        self._volumes()
        self._aws(task)
        manifests = self._manifests(task, service)
        for path, _value in self.ledger.leftovers():
            self.ledger.report(
                path, "warning", "a field this translator does not know", "not translated: check whether it matters"
            )
        if self.ledger.problems:
            raise TranslationError(self.ledger.problems, source=f"ECS task definition {task.family or '?'}")
        source = f"{task.family}:{task.revision}" if task.revision is not None else task.family
        return Translation(
            source=source + (f" (service {service.name})" if service.name else ""),
            namespace=self.o.namespace,
            name=self.o.name,
            manifests=manifests,
            report=sorted(self.ledger.items, key=_report_order),
            secrets=self.secrets.copies(),
            images=[c.image for c in self.containers if isinstance(c.image, ImageRewrite)],
        )

    # --- the task definition -------------------------------------------------------------------

    def _task(self) -> TaskFacts:
        td = self.td
        arn = td.text("taskDefinitionArn")
        family = td.text("family", required=True) or "?"
        revision = td.whole("revision")
        td.report_together(
            READ_ONLY_TASK,
            "info",
            "read-only fields of the ECS API",
            "nothing to translate; the ARN is kept as the Deployment's mmrv-migrate/task-definition annotation",
        )
        if td.data.get("status") == "INACTIVE":
            self.report(
                "taskDefinition.status", "warning", "INACTIVE revision", "translated anyway: it is deregistered"
            )
        region = self.o.aws_region or (arn.split(":")[3] if arn and arn.count(":") >= 5 else None)
        requires = td.texts("requiresCompatibilities") or []
        launch = self.svc.data.get("launchType") if self.svc else None
        providers = (self.svc.data.get("capacityProviderStrategy") or []) if self.svc else []
        fargate = (
            "FARGATE" in requires
            or launch == "FARGATE"
            or any(str(p.get("capacityProvider", "")).startswith("FARGATE") for p in providers if isinstance(p, dict))
        )
        if requires:
            self.report(
                "taskDefinition.requiresCompatibilities",
                "info",
                f"launch type {', '.join(requires)}",
                "pods on the AKS cluster's user node pool",
            )
        cpu = self._task_size(td, "cpu", parse_task_cpu, 'CPU units ("512") or vCPU ("0.5 vCPU")')
        memory = self._task_size(td, "memory", parse_task_memory, 'MiB ("1024") or GB ("1 GB")')
        if fargate:
            for key, value in (("cpu", cpu), ("memory", memory)):
                if value is None and not td.has(key):
                    td.problem(key, "required for a Fargate task definition, but missing")
            if cpu is not None and memory is not None:
                bad = fargate_problem(cpu, memory)
                if bad:
                    td.problem(*bad)
        if cpu or memory:
            shown = " / ".join(
                x for x in (f"{cpu / 1024:g} vCPU" if cpu else "", f"{memory} MiB" if memory else "") if x
            )
            self.report(
                "taskDefinition.{cpu,memory}",
                "info",
                f"task size {shown}" + (" (Fargate)" if fargate else ""),
                "spread over the containers' requests/limits: Kubernetes 1.30 has no pod-level resources",
            )
        mode = td.text("networkMode")
        if mode and mode != "awsvpc":
            self.report(
                "taskDefinition.networkMode",
                "warning",
                f"network mode {mode}",
                "pod networking: every pod has its own IP, like awsvpc; ports are not published on the node",
            )
        selector = {"kubernetes.io/os": "linux"}
        platform = td.obj("runtimePlatform")
        if platform:
            arch = platform.text("cpuArchitecture", allowed=tuple(ARCH))
            family_os = platform.text("operatingSystemFamily")
            if arch:
                selector["kubernetes.io/arch"] = ARCH[arch]
            if family_os and family_os != "LINUX":
                selector["kubernetes.io/os"] = "windows"
                self.report(
                    "taskDefinition.runtimePlatform.operatingSystemFamily",
                    "action",
                    f"{family_os} containers",
                    "nodeSelector kubernetes.io/os: windows: the cluster needs a Windows node pool",
                )
        task = TaskFacts(arn, family, revision, region, cpu, memory, selector)
        pid_mode = td.text("pidMode", allowed=("task", "host"))
        if pid_mode == "task":
            task.share_process_namespace = True
            self.report("taskDefinition.pidMode", "info", "one PID namespace per task", "shareProcessNamespace: true")
        elif pid_mode == "host":
            self.report(
                "taskDefinition.pidMode", "warning", "the host's PID namespace", "not translated (hostPID is refused)"
            )
        ipc_mode = td.text("ipcMode", allowed=("task", "host", "none"))
        if ipc_mode:
            self.report(
                "taskDefinition.ipcMode",
                "info" if ipc_mode != "host" else "warning",
                f"IPC mode {ipc_mode}",
                "the containers of a pod share one IPC namespace"
                + ("; the host's is not used" if ipc_mode == "host" else ""),
            )
        td.report(
            "placementConstraints",
            "info",
            "placement constraints",
            "not translated: use nodeSelector or affinity for node pools",
        )
        td.report("proxyConfiguration", "warning", "App Mesh proxy", "not translated: no service mesh is installed")
        td.report(
            "inferenceAccelerators", "action", "Elastic Inference accelerators", "not translated: no Azure equivalent"
        )
        storage = td.obj("ephemeralStorage")
        if storage:
            size = storage.whole("sizeInGiB", minimum=20, maximum=200)
            self.report(
                "taskDefinition.ephemeralStorage",
                "info",
                f"{size} GiB of task storage",
                "the pod's writable layers and emptyDirs use the AKS node's disk; no ephemeral-storage limit is set",
            )
        td.report("enableFaultInjection", "info", "ECS fault injection", "not translated")
        td.report("tags", "info", "AWS tags", "not carried: Kubernetes labels mark ownership (managed-by mmrv-migrate)")
        self.extras.report(
            "tags", "info", "AWS tags", "not carried: Kubernetes labels mark ownership (managed-by mmrv-migrate)"
        )
        td.ignore("containerDefinitions", "volumes", "taskRoleArn", "executionRoleArn")
        return task

    def _task_size(self, td: Node, key: str, parse: Any, allowed: str) -> int | None:
        raw = td.raw(key)
        if raw is None:
            return None
        value = parse(raw)
        if value is None or value <= 0:
            td.problem(key, f"{raw!r} is not {allowed}")
            return None
        return int(value)

    # --- containers ----------------------------------------------------------------------------

    def _containers(self) -> None:
        nodes = self.td.objs("containerDefinitions", required=True)
        if self.td.data.get("containerDefinitions") == []:
            self.td.problem("containerDefinitions", "needs at least one container")
        names: set[str] = set()
        ports: set[str] = set()
        for index, node in enumerate(nodes):
            container = read_container(node, index, names, ports, self.o)
            if container.ecs_name in self.by_name:
                node.problem("name", f"{container.ecs_name!r} is used by another container too")
                continue
            self.containers.append(container)
            self.by_name[container.ecs_name] = container

    def _resources(self, task: TaskFacts) -> None:
        sizes = [c.size for c in self.containers]
        if task.cpu:
            total = sum(s.cpu or 0 for s in sizes)
            if total > task.cpu:
                parts = " + ".join(f"[{c.index}].cpu {c.size.cpu}" for c in self.containers if c.size.cpu)
                self.ledger.problem(
                    "taskDefinition.containerDefinitions",
                    f"the containers' cpu ({parts} = {total}) is more than the task's cpu {task.cpu}",
                )
        if task.memory:
            too_big = [c for c in self.containers if c.size.memory and c.size.memory > task.memory]
            for c in too_big:
                self.ledger.problem(
                    f"{c.path}.memory", f"{c.size.memory} MiB is more than the task's memory {task.memory} MiB"
                )
            reserved = sum(s.reservation or s.memory or 0 for s in sizes)
            if reserved > task.memory and not too_big:
                self.ledger.problem(
                    "taskDefinition.containerDefinitions",
                    f"the containers reserve {reserved} MiB (memoryReservation, else memory), "
                    f"more than the task's memory {task.memory} MiB",
                )
        for container, resources in zip(
            self.containers, container_resources(sizes, task.cpu, task.memory), strict=True
        ):
            existing = container.spec.get("resources", {})
            for kind, values in resources.items():
                existing.setdefault(kind, {}).update(values)
            if existing:
                container.spec["resources"] = existing
        if self.containers and not any(c.spec.get("resources") for c in self.containers):
            self.report(
                "taskDefinition.{cpu,memory}",
                "warning",
                "no CPU or memory anywhere",
                "no requests or limits: the pods are BestEffort, first to be evicted; an HPA on CPU cannot work",
            )
        many = len(self.containers) > 1
        for c in self.containers:
            if c.size.cpu and not task.cpu:
                self.report(
                    f"{c.path}.cpu",
                    "info",
                    f"{c.size.cpu} CPU units (a relative weight without a task size)",
                    "requests.cpu of the same share; no CPU limit",
                )
            if many and c.size.reservation and not c.size.memory:
                self.report(
                    f"{c.path}.memoryReservation",
                    "info",
                    f"soft limit {c.size.reservation} MiB",
                    "requests.memory; the limit is the task memory (what ECS let it use)",
                )

    def _roles(self) -> None:
        """dependsOn -> which containers run first: init containers (COMPLETE/SUCCESS) and sidecars (START/HEALTHY)."""
        awaited_exit: dict[str, list[tuple[Container, str]]] = {}
        awaited_run: dict[str, list[tuple[Container, str]]] = {}
        for c in self.containers:
            for dep in c.depends:
                target = self.by_name.get(dep.target)
                if target is None:
                    self.ledger.problem(f"{dep.path}.containerName", f"no container named {dep.target!r} in the task")
                    continue
                if target is c:
                    self.ledger.problem(f"{dep.path}.containerName", "a container cannot depend on itself")
                    continue
                if dep.condition in ("COMPLETE", "SUCCESS"):
                    if target.essential:
                        self.ledger.problem(
                            f"{dep.path}.condition",
                            f"{dep.condition} waits for {dep.target!r} to exit, but it is essential (ECS refuses "
                            "this too): mark it essential: false",
                        )
                        continue
                    awaited_exit.setdefault(dep.target, []).append((c, dep.condition))
                else:
                    if dep.condition == "HEALTHY" and target.health is None:
                        self.ledger.problem(
                            f"{dep.path}.condition", f"HEALTHY needs a healthCheck on container {dep.target!r}"
                        )
                        continue
                    awaited_run.setdefault(dep.target, []).append((c, dep.condition))
        for name in sorted(set(awaited_exit) & set(awaited_run)):
            self.ledger.problem(
                f"{self.by_name[name].path}.name",
                f"{name!r} is awaited both to exit (COMPLETE/SUCCESS) and to run (START/HEALTHY): "
                "it cannot be both an init container and a sidecar",
            )
        for c in self.containers:
            if c.ecs_name in awaited_exit:
                c.role = "init"
            elif c.ecs_name in awaited_run:
                c.role = "sidecar"
        if self.containers and all(c.role != "main" for c in self.containers):
            self.ledger.problem(
                "taskDefinition.containerDefinitions",
                "every container is awaited by another (a dependsOn cycle): none is left to run as the pod's container",
            )
        self._order()
        for name, waiting in awaited_exit.items():
            init = self.by_name[name]
            for c, condition in waiting:
                self.report(
                    f"{c.path}.dependsOn",
                    "warning" if condition == "COMPLETE" else "info",
                    f"{c.ecs_name} waits for {name} to {'exit' if condition == 'COMPLETE' else 'exit 0'} ({condition})",
                    f"{init.name} is an init container: it runs to completion before the containers after it; "
                    + (
                        "Kubernetes needs exit code 0 (COMPLETE accepted any), or it retries the init container"
                        if condition == "COMPLETE"
                        else "a non-zero exit is retried, the pod does not start without it"
                    ),
                )
            if init.health:
                self.report(
                    f"{init.path}.healthCheck",
                    "warning",
                    "health check of a container that runs to completion",
                    "dropped: init containers that run to completion have no probes",
                )
        for name, waiting in awaited_run.items():
            sidecar = self.by_name[name]
            for c, condition in waiting:
                self.report(
                    f"{c.path}.dependsOn",
                    "info",
                    f"{c.ecs_name} waits for {name} to "
                    f"{'start' if condition == 'START' else 'be healthy'} ({condition})",
                    f"{sidecar.name} is a sidecar (an init container with restartPolicy: Always) started before the "
                    "containers after it"
                    + (
                        "; they wait until its startupProbe (its health check) passes" if condition == "HEALTHY" else ""
                    ),
                )
            if not sidecar.essential:
                self.report(
                    f"{sidecar.path}.essential",
                    "warning",
                    "non-essential container awaited with START/HEALTHY",
                    "a sidecar: Kubernetes restarts it whenever it exits",
                )
        for c in self.containers:
            if c.role == "main" and not c.essential:
                self.report(
                    f"{c.path}.essential",
                    "warning",
                    "non-essential container (ECS let it stop)",
                    "a regular container: Kubernetes restarts it whenever it exits; make it an init container "
                    "(dependsOn SUCCESS) if it runs once",
                )
        if len(self.containers) > 1:
            self.report(
                "taskDefinition.containerDefinitions[].essential",
                "info",
                "ECS stops the whole task when an essential container exits",
                "Kubernetes restarts the container that exited; its liveness probe catches one that hangs",
            )
        for c in self.containers:
            if c.role == "sidecar":
                c.spec["restartPolicy"] = "Always"

    def _order(self) -> None:
        """Init containers and sidecars in dependency order (what they wait for first), then the main ones."""
        ordered: list[Container] = []
        state: dict[str, str] = {}

        def visit(c: Container) -> None:
            if state.get(c.ecs_name) == "done":
                return
            if state.get(c.ecs_name) == "visiting":
                self.ledger.problem(f"{c.path}.dependsOn", f"dependsOn forms a cycle through {c.ecs_name!r}")
                return
            state[c.ecs_name] = "visiting"
            for dep in c.depends:
                target = self.by_name.get(dep.target)
                if target is not None and target is not c and dep.condition in CONDITIONS:
                    visit(target)
            state[c.ecs_name] = "done"
            ordered.append(c)

        for c in self.containers:
            visit(c)
        self.containers = [c for c in ordered if c.role != "main"] + [c for c in self.containers if c.role == "main"]

    # --- the service ---------------------------------------------------------------------------

    def _service(self, task: TaskFacts) -> ServiceFacts:
        result = ServiceFacts(replicas=self.o.replicas_without_service)
        svc = self.svc
        if svc is None:
            self.report(
                "service",
                "info",
                "no ECS service given",
                f"replicas {result.replicas}, the ECS default rollout (100% healthy, 200% max); "
                "the Service exposes the first essential container's ports",
            )
            self._default_targets(result)
            return result
        result.name = svc.text("serviceName")
        result.arn = svc.text("serviceArn")
        svc.report_together(READ_ONLY_SERVICE, "info", "read-only fields of the ECS API", "nothing to translate")
        running = svc.text("taskDefinition")
        if running and task.arn and running != task.arn:
            self.report(
                "service.taskDefinition",
                "warning",
                f"the service runs {running.rsplit('/', 1)[-1]}",
                f"translated {task.arn.rsplit('/', 1)[-1]}, the task definition given",
            )
        desired = svc.whole("desiredCount", minimum=0)
        if desired is not None:
            result.replicas = desired
            if desired == 0:
                self.report("service.desiredCount", "warning", "0 tasks", "replicas: 0 - nothing will run")
        self._deployment_configuration(svc, result)
        self._load_balancers(svc, result)
        capacity = ("launchType", "capacityProviderStrategy", "platformVersion", "platformFamily")
        svc.report_together(
            capacity,
            "info",
            ", ".join(f"{k} {_short(svc.data[k])}" for k in capacity if svc.has(k)),
            "pods on the AKS cluster's node pools",
        )
        svc.report(
            "serviceRegistries",
            "info",
            "Cloud Map service discovery",
            f"Kubernetes DNS instead: {self.o.name}.{self.o.namespace}.svc.cluster.local",
        )
        svc.report(
            "networkConfiguration",
            "info",
            "subnets, security groups, public IP",
            "pods get IPs from the AKS network; "
            + (
                f"a NetworkPolicy stands in for the security groups: {NETWORK_POLICY_RULES}"
                if self.o.network_policy
                else "no NetworkPolicy (network_policy: false): all traffic is allowed"
            ),
        )
        grace = svc.whole("healthCheckGracePeriodSeconds", minimum=0)
        if grace:
            self.report(
                "service.healthCheckGracePeriodSeconds",
                "info",
                f"ignore load balancer health checks for {grace} s after start",
                "not needed: a failing readiness probe never restarts a pod; the startupProbe covers slow starts",
            )
        svc.report("placementConstraints", "info", "placement constraints", "not translated: use nodeSelector/affinity")
        strategies = svc.objs("placementStrategy")
        if strategies:
            kinds = [f"{s.text('type')}:{s.text('field')}" for s in strategies]
            self.report(
                "service.placementStrategy",
                "info",
                f"placement strategy {', '.join(kinds)}",
                "topologySpreadConstraints across zones (topology.kubernetes.io/zone), best effort",
            )
        scheduling = svc.text("schedulingStrategy", allowed=("REPLICA", "DAEMON"))
        if scheduling == "DAEMON":
            self.report(
                "service.schedulingStrategy",
                "warning",
                "one task per container instance (DAEMON)",
                "translated as a Deployment; a DaemonSet would run one pod per node",
            )
        controller = svc.obj("deploymentController")
        kind = controller.text("type") if controller else None
        if kind and kind != "ECS":
            self.report(
                "service.deploymentController",
                "warning",
                f"deployments by {kind}",
                "a Kubernetes rolling update; blue/green is the ship phase's job",
            )
        if svc.flag("enableExecuteCommand"):
            self.report("service.enableExecuteCommand", "info", "ECS Exec", "kubectl exec (Kubernetes RBAC decides)")
        svc.report_together(
            ("tags", "propagateTags", "enableECSManagedTags"),
            "info",
            "AWS tags and their propagation to tasks",
            "not carried: Kubernetes labels mark ownership (app.kubernetes.io/managed-by: mmrv-migrate)",
        )
        svc.report(
            "serviceConnectConfiguration",
            "warning",
            "ECS Service Connect",
            "not translated: Kubernetes Services and DNS name the endpoints",
        )
        svc.report(
            "volumeConfigurations", "action", "EBS volumes configured at deployment", "not translated: add a PVC"
        )
        svc.report("vpcLatticeConfigurations", "warning", "VPC Lattice", "not translated")
        svc.report(
            "availabilityZoneRebalancing",
            "info",
            "AZ rebalancing",
            "topologySpreadConstraints across zones (best effort)",
        )
        return result

    def _deployment_configuration(self, svc: Node, result: ServiceFacts) -> None:
        config = svc.obj("deploymentConfiguration")
        maximum, minimum = 200, 100
        if config:
            maximum = config.whole("maximumPercent", minimum=100) or 200
            got = config.whole("minimumHealthyPercent", minimum=0, maximum=100)
            minimum = 100 if got is None else got
            breaker = config.obj("deploymentCircuitBreaker")
            enabled = breaker.flag("enable") if breaker else None
            rollback = breaker.flag("rollback") if breaker else None
            if enabled:
                self.report(
                    "service.deploymentConfiguration.deploymentCircuitBreaker",
                    "info",
                    "circuit breaker" + (" with rollback" if rollback else ""),
                    f"progressDeadlineSeconds {self.o.rollout_deadline_seconds}: a rollout without progress is "
                    "marked failed"
                    + (
                        "; the ship phase rolls back to the previous revision (Kubernetes does not)" if rollback else ""
                    ),
                )
            alarms = config.obj("alarms")
            if alarms and alarms.flag("enable"):
                names = alarms.texts("alarmNames") or []
                alarms.ignore("rollback")
                self.report(
                    "service.deploymentConfiguration.alarms",
                    "warning",
                    f"CloudWatch alarms {', '.join(names)} stop a deployment",
                    "not translated: the ship phase's smoke tests judge the rollout",
                )
            elif alarms:
                alarms.ignore("alarmNames", "rollback", "enable")
        surge, unavailable = maximum - 100, 100 - minimum
        if surge <= 0 and unavailable <= 0:
            self.ledger.problem(
                "service.deploymentConfiguration",
                f"maximumPercent {maximum} with minimumHealthyPercent {minimum} leaves no room to replace a task",
            )
        result.max_surge, result.max_unavailable, result.min_healthy = f"{surge}%", f"{unavailable}%", minimum
        if config:
            self.report(
                "service.deploymentConfiguration",
                "info",
                f"minimumHealthyPercent {minimum}, maximumPercent {maximum}",
                f"RollingUpdate maxUnavailable {unavailable}%, maxSurge {surge}%",
            )

    def _load_balancers(self, svc: Node, result: ServiceFacts) -> None:
        for lb in svc.objs("loadBalancers"):
            name = lb.text("containerName")
            port = lb.whole("containerPort", minimum=1, maximum=65535)
            group = lb.text("targetGroupArn")
            classic = lb.text("loadBalancerName")
            if name is None or port is None:
                lb.problem("containerName" if name is None else "containerPort", "required, but missing")
                continue
            container = self.by_name.get(name)
            if container is None:
                lb.problem("containerName", f"no container named {name!r} in the task definition")
                continue
            if port not in [p.container_port for p in container.ports]:
                lb.problem("containerPort", f"container {name!r} has no portMapping for port {port}")
                continue
            if (container, port) not in result.targets:
                result.targets.append((container, port))
            result.target_path = result.target_path or lb.path
            check = self.o.health_check
            balancer = _target_group_name(group) if group else classic or "?"
            self.report(
                lb.path_of("targetGroupArn" if group else "loadBalancerName"),
                "info" if check else "warning",
                f"load balancer {balancer} -> {name}:{port}",
                f"a {self.o.expose} Service"
                + (" behind an Ingress" if self.o.expose == "Ingress" else "")
                + (
                    f"; its health check {check.path if check.protocol != 'TCP' else 'TCP'} is the readiness probe"
                    if check
                    else "; its health check is unknown (pass the target group): no HTTP readiness probe"
                ),
            )
            if self.o.expose == "LoadBalancer":
                self.report(
                    lb.path_of("targetGroupArn" if group else "loadBalancerName"),
                    "action" if group else "info",
                    "ALB listeners, TLS certificates, rules",
                    "not in the ECS service: the LoadBalancer Service answers plain TCP on its port; "
                    "terminate TLS with an Ingress (expose: Ingress) or in the app",
                )
        if not result.targets:
            self._default_targets(result)

    def _default_targets(self, result: ServiceFacts) -> None:
        mains = [c for c in self.containers if c.role == "main"]
        with_ports = [c for c in mains if c.essential and c.ports] or [c for c in mains if c.ports]
        if with_ports:
            primary = with_ports[0]
            result.targets = [(primary, p.container_port) for p in primary.ports if p.protocol == "TCP"]

    # --- probes --------------------------------------------------------------------------------

    def _probes(self, service: ServiceFacts) -> None:
        primary = service.targets[0][0] if service.targets else None
        awaited_healthy = {dep.target for c in self.containers for dep in c.depends if dep.condition == "HEALTHY"}
        for c in self.containers:
            if c.role == "init":
                continue
            health = c.health
            # readiness: the load balancer's check for the container behind it; the container's own check
            # for the other essential ones (a non-essential container's health never mattered on ECS)
            by_target_group = c is primary and self.o.health_check is not None and bool(service.targets)
            ready_by_health = health is not None and not by_target_group and (c.essential or c is primary)
            if health:
                c.spec["livenessProbe"] = health.exec_probe()
                startup = health.startup_probe()
                if startup is None and c.ecs_name in awaited_healthy:
                    startup = health.exec_probe()
                if startup:
                    c.spec["startupProbe"] = startup
                self.report(
                    f"{c.path}.healthCheck",
                    "info",
                    f"{health.kind} health check every {health.interval} s, {health.retries} retries"
                    + (f", start period {health.start_period} s" if health.start_period else ""),
                    "exec livenessProbe (periodSeconds, timeoutSeconds, failureThreshold)"
                    + (" and readinessProbe" if ready_by_health else "")
                    + ("; startupProbe for the start period" if "startupProbe" in c.spec else "")
                    + ("; not a readiness probe: it is not essential" if not (c.essential or by_target_group) else ""),
                )
            if by_target_group and self.o.health_check:
                check = self.o.health_check
                c.spec["readinessProbe"] = readiness_from_target_group(check, service.targets[0][1])
                codes = matcher_codes(check.matcher)
                if codes is None or codes[0] < 200 or codes[1] > 399:
                    self.report(
                        f"{service.target_path or 'options.health_check'}.matcher",
                        "warning",
                        f"the target group accepts HTTP {check.matcher}",
                        "Kubernetes HTTP probes pass on 200-399 only",
                    )
            elif health and ready_by_health:
                c.spec["readinessProbe"] = health.exec_probe()
        if primary is not None and primary.health is None and not self.o.health_check:
            self.report(
                f"{primary.path}.healthCheck",
                "warning",
                "no container health check and no load balancer health check known",
                "no probes: Kubernetes sends traffic as soon as the container started",
            )

    # --- secrets and environment files ---------------------------------------------------------

    def _secrets(self) -> None:
        for c in self.containers:
            if not c.secrets:
                continue
            names: list[str] = []
            for env_name, value_from, path in c.secrets:
                ref = parse_value_from(value_from)
                if isinstance(ref, str):
                    self.ledger.problem(f"{path}.valueFrom", ref)
                    continue
                kv, conflict = self.secrets.add(ref, f"{c.name}/{env_name}")
                if conflict:
                    self.ledger.problem(f"{path}.valueFrom", conflict)
                    continue
                names.append(kv)
                c.spec.setdefault("env", []).append(
                    {"name": env_name, "valueFrom": {"secretKeyRef": {"name": self.secret_name, "key": kv}}}
                )
                if ref.json_key and self.o.json_key_secrets == "whole":
                    self.report(
                        f"{path}.valueFrom",
                        "warning",
                        f"{env_name}: the JSON key {ref.json_key!r} of {ref.name}",
                        f"the whole JSON document (Key Vault secret {kv}): the app must read the key itself, "
                        "or use json_key_secrets: split",
                    )
                if ref.version_stage or ref.version_id:
                    self.report(
                        f"{path}.valueFrom",
                        "info",
                        f"{env_name}: version {ref.version_stage or ref.version_id} of {ref.name}",
                        f"that version is copied into Key Vault secret {kv}; the pod reads its current version",
                    )
                if ref.service == "ssm":
                    self.report(
                        f"{path}.valueFrom",
                        "warning",
                        f"{env_name}: SSM parameter {ref.name}",
                        f"Key Vault secret {kv}: the secret copy must read it from SSM Parameter Store",
                    )
            if names:
                c.spec.setdefault("volumeMounts", []).append(
                    {"name": VOLUME_NAME, "mountPath": MOUNT_PATH, "readOnly": True}
                )
                self.report(
                    f"{c.path}.secrets",
                    "info",
                    f"{len(c.secrets)} secret(s) read by ECS at task start",
                    f"env valueFrom.secretKeyRef of Secret {self.secret_name}, synced from Key Vault "
                    f"({', '.join(dict.fromkeys(names))}) by SecretProviderClass {self.provider_class_name}",
                )
        if self.secrets.uses:
            self.volumes.append(
                {
                    "name": VOLUME_NAME,
                    "csi": {
                        "driver": CSI_DRIVER,
                        "readOnly": True,
                        "volumeAttributes": {"secretProviderClass": self.provider_class_name},
                    },
                }
            )
            if self.o.key_vault is None:
                self.report(
                    "options.key_vault",
                    "action",
                    "secrets without a Key Vault given",
                    f"SecretProviderClass {self.provider_class_name} has placeholders {PLACEHOLDER_VAULT} and "
                    f"{PLACEHOLDER_TENANT}: pass --key-vault and --tenant-id",
                )
            derived = [u.key_vault_secret for u in self.secrets.uses.values() if u.derived]
            if derived:
                self.report(
                    "options.secret_names",
                    "info",
                    f"{len(derived)} secret(s) without a Key Vault name given",
                    f"named after the AWS name: {', '.join(sorted(derived))}",
                )

    def _environment_files(self) -> None:
        taken: set[str] = set()
        for c in self.containers:
            for arn, path in c.env_files:
                base = arn.rsplit("/", 1)[-1].rsplit(":", 1)[-1]
                if self.o.environment_files == "error":
                    self.ledger.problem(
                        f"{path}.value",
                        f"S3 environment file {arn}: its variables cannot be read here; create a ConfigMap from it "
                        "(environment_files: configmap)",
                    )
                    continue
                name = unique(dns_label(f"{self.o.name}-env-{base.removesuffix('.env')}", 63), taken)
                c.spec.setdefault("envFrom", []).append({"configMapRef": {"name": name}})
                self.report(
                    f"{path}.value",
                    "action",
                    f"environment file {arn}",
                    f"envFrom ConfigMap {name}, which you create: download the file, then "
                    f"`kubectl create configmap {name} -n {self.o.namespace} --from-env-file=<file>` "
                    "(the pod does not start without it; `environment` still wins over the file, as on ECS)",
                )

    # --- volumes -------------------------------------------------------------------------------

    def _volumes(self) -> None:
        ecs_volumes: dict[str, str] = {}
        for node in self.td.objs("volumes"):
            name = node.text("name", required=True)
            if not name:
                continue
            k8s = unique(dns_label(name), self.volume_names)
            ecs_volumes[name] = k8s
            volume: dict[str, Any] = {"name": k8s, "emptyDir": {}}
            efs = node.obj("efsVolumeConfiguration")
            docker = node.obj("dockerVolumeConfiguration")
            host = node.obj("host")
            claim = f"{self.o.name}-{k8s}"[:63].rstrip("-")
            if efs is not None:
                fs = efs.text("fileSystemId")
                efs.ignore("rootDirectory", "transitEncryption", "transitEncryptionPort", "authorizationConfig")
                volume = {"name": k8s, "persistentVolumeClaim": {"claimName": claim}}
                self.report(
                    f"{node.path}.efsVolumeConfiguration",
                    "action",
                    f"EFS file system {fs}"
                    + (f" ({efs.data.get('rootDirectory')})" if efs.has("rootDirectory") else ""),
                    f"PersistentVolumeClaim {claim}, which you create (Azure Files, ReadWriteMany) "
                    "and fill with the data",
                )
            elif node.has("fsxWindowsFileServerVolumeConfiguration"):
                node.report(
                    "fsxWindowsFileServerVolumeConfiguration",
                    "action",
                    "FSx for Windows File Server",
                    f"PersistentVolumeClaim {claim}, which you create (Azure Files SMB)",
                )
                volume = {"name": k8s, "persistentVolumeClaim": {"claimName": claim}}
            elif node.flag("configuredAtLaunch"):
                volume = {"name": k8s, "persistentVolumeClaim": {"claimName": claim}}
                self.report(
                    f"{node.path}.configuredAtLaunch",
                    "action",
                    "a volume configured when the service deploys (EBS)",
                    f"PersistentVolumeClaim {claim}, which you create (Azure Disk)",
                )
            elif docker is not None:
                scope = docker.text("scope", allowed=("task", "shared")) or "task"
                driver = docker.text("driver") or "local"
                docker.ignore("autoprovision", "driverOpts", "labels")
                self.report(
                    f"{node.path}.dockerVolumeConfiguration",
                    "info" if scope == "task" and driver == "local" else "warning",
                    f"Docker volume ({scope}, driver {driver})",
                    "an emptyDir: it lives as long as the pod"
                    + ("; data is not shared between pods" if scope == "shared" else ""),
                )
            elif host is not None and host.has("sourcePath"):
                self.report(
                    f"{node.path}.host.sourcePath",
                    "warning",
                    f"host path {host.text('sourcePath')}",
                    "an emptyDir: the node's files are not mounted",
                )
            else:
                if host is not None:
                    host.ignore("sourcePath")
                self.report(
                    f"{node.path}",
                    "info",
                    f"task volume {name}",
                    f"an emptyDir {k8s} shared by the containers that mount it",
                )
            self.volumes.append(volume)
        mounts: dict[str, list[dict[str, Any]]] = {}
        for c in self.containers:
            own: list[dict[str, Any]] = []
            for mount in c.mounts:
                if mount.volume not in ecs_volumes:
                    self.ledger.problem(f"{mount.where}.sourceVolume", f"no task volume named {mount.volume!r}")
                    continue
                entry: dict[str, Any] = {"name": ecs_volumes[mount.volume], "mountPath": mount.path}
                if mount.read_only:
                    entry["readOnly"] = True
                own.append(entry)
            mounts[c.ecs_name] = own
        for c in self.containers:
            for source, read_only, path in c.volumes_from:
                if source not in mounts:
                    self.ledger.problem(f"{path}.sourceContainer", f"no container named {source!r} in the task")
                    continue
                for entry in mounts[source]:
                    copied = {**entry, **({"readOnly": True} if read_only else {})}
                    mounts[c.ecs_name].append(copied)
                self.report(
                    path,
                    "info",
                    f"volumes of {source}",
                    "the same task volumes mounted at the same paths (image-declared VOLUMEs are not shared)",
                )
        memory_volumes: dict[tuple[str, str], str] = {}
        for c in self.containers:
            for base, path, size in c.memory_volumes:
                key = (base, size)
                if key not in memory_volumes:
                    memory_volumes[key] = unique(base, self.volume_names)
                    self.volumes.append(
                        {"name": memory_volumes[key], "emptyDir": {"medium": "Memory", "sizeLimit": size}}
                    )
                mounts[c.ecs_name].append({"name": memory_volumes[key], "mountPath": path})
        for c in self.containers:
            if mounts.get(c.ecs_name):
                c.spec.setdefault("volumeMounts", []).extend(mounts[c.ecs_name])

    # --- AWS access ----------------------------------------------------------------------------

    def _aws(self, task: TaskFacts) -> None:
        role = self.td.text("taskRoleArn")
        execution = self.td.text("executionRoleArn")
        account = f"system:serviceaccount:{self.o.namespace}:{self.o.account}"
        if execution:
            self.report(
                "taskDefinition.executionRoleArn",
                "info",
                "ECS agent's role: pulls images, reads secrets, writes logs",
                "the kubelet identity pulls from ACR (AcrPull); the workload identity reads Key Vault",
            )
        if self.o.aws_role_arn:
            region = task.region
            env = {"AWS_ROLE_ARN": self.o.aws_role_arn, "AWS_WEB_IDENTITY_TOKEN_FILE": AWS_TOKEN_FILE}
            if region:
                env["AWS_REGION"] = region
            for c in self.containers:
                existing = {e["name"]: e for e in c.spec.get("env", [])}
                for key, value in env.items():
                    if key in existing:
                        if existing[key].get("value") != value and key != "AWS_REGION":
                            self.report(
                                f"{c.path}.environment",
                                "warning",
                                f"{key} set by the task definition",
                                "kept; the federated role is not used by this container",
                            )
                        continue
                    c.spec.setdefault("env", []).append({"name": key, "value": value})
                c.spec.setdefault("volumeMounts", []).append(
                    {"name": AWS_TOKEN_VOLUME, "mountPath": AWS_TOKEN_DIR, "readOnly": True}
                )
            self.volumes.append(
                {
                    "name": AWS_TOKEN_VOLUME,
                    "projected": {
                        "sources": [
                            {
                                "serviceAccountToken": {
                                    "audience": AWS_AUDIENCE,
                                    "expirationSeconds": 86400,
                                    "path": "token",
                                }
                            }
                        ]
                    },
                }
            )
            self.report(
                "taskDefinition.taskRoleArn" if role else "options.aws_role_arn",
                "info",
                f"task role {role.rsplit('/', 1)[-1]}" if role else "AWS access",
                f"web identity federation: {self.o.aws_role_arn} trusted for {account} (audience {AWS_AUDIENCE}); "
                f"AWS_ROLE_ARN, AWS_WEB_IDENTITY_TOKEN_FILE={AWS_TOKEN_FILE}"
                + (f", AWS_REGION={region}" if region else "")
                + ", a projected service account token",
            )
            if not region:
                self.report(
                    "options.aws_region",
                    "warning",
                    "no AWS region known",
                    "AWS_REGION not set: pass --aws-region (the task definition ARN has none)",
                )
        elif role:
            self.report(
                "taskDefinition.taskRoleArn",
                "action",
                f"task role {role}",
                f"no AWS access yet: create an IAM role trusted for {account} through the AKS OIDC issuer "
                f"(audience {AWS_AUDIENCE}) with the task role's policies, and pass it as aws_role_arn",
            )


def _target_group_name(arn: str) -> str:
    """`arn:...:targetgroup/<name>/<id>` -> name (the ARN itself when it is not one)."""
    parts = arn.rsplit("/", 2)
    return parts[-2] if len(parts) == 3 else arn


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _report_order(item: ReportItem) -> int:
    """Actions first, then warnings, then notes; in the order the translation met them within each."""
    return {"action": 0, "warning": 1, "info": 2}[item.severity]
