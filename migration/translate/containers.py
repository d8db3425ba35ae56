"""One ECS container definition -> one Kubernetes container (plus what the pod needs from it).

`read_container` reads every field of a container definition: what has a Kubernetes field
goes into `Container.spec`; what belongs to the pod (volumes, sysctls, host aliases, DNS,
shared process namespace ...) into `Container.pod`; what has no equivalent into the report.
Cross-container concerns (dependsOn, volumesFrom, resources, secrets) are finished by
`migration.translate.ecs` once every container has been read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from migration.inventory import parse_image_reference
from migration.translate.fields import Node
from migration.translate.model import ImageRewrite, TranslateOptions
from migration.translate.names import ENV_VAR_NAME, QUALIFIED_NAME, dns_label, port_name, unique
from migration.translate.probes import INTERVAL, RETRIES, START_PERIOD, TIMEOUT, HealthCheck, exec_command
from migration.translate.resources import MIN_CONTAINER_MEMORY, ContainerSize

Role = Literal["main", "init", "sidecar"]
CONDITIONS = ("START", "COMPLETE", "SUCCESS", "HEALTHY")
ECR_HOST = re.compile(r"\d{12}\.dkr\.ecr(-fips)?\.[a-z0-9-]+\.amazonaws\.com(\.cn)?")
SHM_VOLUME = "dshm"
APP_PROTOCOLS = {"http": "http", "http2": "kubernetes.io/h2c", "grpc": "grpc"}


@dataclass(frozen=True)
class Port:
    container_port: int
    protocol: str  # TCP / UDP
    name: str | None
    app_protocol: str | None


@dataclass(frozen=True)
class Dependency:
    target: str  # ECS container name
    condition: str
    path: str


@dataclass(frozen=True)
class Mount:
    volume: str  # ECS volume name
    path: str
    read_only: bool
    where: str  # field path


@dataclass
class Container:
    index: int
    ecs_name: str
    name: str
    path: str
    essential: bool
    spec: dict[str, Any]
    size: ContainerSize
    ports: list[Port] = field(default_factory=list)
    health: HealthCheck | None = None
    depends: list[Dependency] = field(default_factory=list)
    mounts: list[Mount] = field(default_factory=list)
    volumes_from: list[tuple[str, bool, str]] = field(default_factory=list)  # (ECS container, read only, path)
    memory_volumes: list[tuple[str, str, str]] = field(default_factory=list)  # (volume, mount path, size limit)
    secrets: list[tuple[str, str, str]] = field(default_factory=list)  # (env name, valueFrom, path)
    env_files: list[tuple[str, str]] = field(default_factory=list)  # (S3 ARN, path)
    stop_timeout: int | None = None
    role: Role = "main"
    pod: dict[str, Any] = field(default_factory=dict)  # pod-level fields this container asks for
    image: ImageRewrite | None = None

    @property
    def security(self) -> dict[str, Any]:
        return self.spec.setdefault("securityContext", {})


def read_container(
    node: Node, index: int, taken: set[str], port_names: set[str], options: TranslateOptions
) -> Container:
    ecs_name = node.text("name", required=True) or f"container-{index}"
    name = unique(dns_label(ecs_name), taken)
    if name != ecs_name:
        node.ledger.report(
            node.path_of("name"),
            "info",
            f"container name {ecs_name!r}",
            f"named {name!r}: Kubernetes container names are DNS-1123 labels",
        )
    essential = node.flag("essential")
    container = Container(
        index=index,
        ecs_name=ecs_name,
        name=name,
        path=node.path,
        essential=True if essential is None else essential,
        spec={"name": name},
        size=ContainerSize(
            cpu=node.whole("cpu", minimum=0) or None,
            memory=node.whole("memory", minimum=MIN_CONTAINER_MEMORY),
            reservation=node.whole("memoryReservation", minimum=MIN_CONTAINER_MEMORY),
        ),
    )
    if container.size.memory and container.size.reservation and container.size.reservation > container.size.memory:
        node.problem(
            "memoryReservation",
            f"{container.size.reservation} MiB is above the container's memory limit {container.size.memory} MiB",
        )
    _image(node, container, options)
    _process(node, container)
    _environment(node, container, options)
    _ports(node, container, port_names)
    _health(node, container)
    _dependencies(node, container)
    _security(node, container)
    _linux(node, container)
    _mounts(node, container)
    _pod_level(node, container)
    _not_translated(node, container, options)
    return container


def _image(node: Node, container: Container, options: TranslateOptions) -> None:
    image = node.text("image", required=True)
    if not image:
        return
    ref = parse_image_reference(image)
    candidates = [image]
    if ref.tag:
        candidates.append(f"{ref.repository}:{ref.tag}")
    if ref.digest:
        candidates.append(f"{ref.repository}@{ref.digest}")
    mapped = next((options.images[c] for c in candidates if c in options.images), None)
    path = node.path_of("image")
    if mapped:
        container.spec["image"] = mapped
        container.image = ImageRewrite(container=container.name, source=image, target=mapped, pinned=True)
        return
    is_ecr = bool(ref.registry and ECR_HOST.fullmatch(ref.registry))
    if is_ecr and not options.keep_tags:
        node.ledger.problem(
            path,
            f"ECR image {image!r} of container {container.ecs_name!r} has no ACR reference: map it "
            f"(--image-map {image}=<registry>.azurecr.io/{ref.repository}@sha256:...) or allow --keep-tags",
        )
        return
    target = image
    if is_ecr and options.acr_login_server:
        target = f"{options.acr_login_server}/{ref.repository}"
        target += f":{ref.tag}" if ref.tag else ""
        target += f"@{ref.digest}" if ref.digest else ""
    container.spec["image"] = target
    pinned = bool(ref.digest)
    container.image = ImageRewrite(container=container.name, source=image, target=target, pinned=pinned)
    if is_ecr and target == image:
        node.ledger.report(
            path, "action", f"ECR image {image}", "kept as is (--keep-tags without an ACR): AKS cannot pull from ECR; "
            "copy the image to ACR and map it",
        )  # fmt: skip
    elif is_ecr:
        node.ledger.report(
            path, "warning", f"ECR image {image}", f"{target}: same tag in ACR, not pinned by digest (--keep-tags)"
        )
    elif not pinned:
        node.ledger.report(
            path,
            "warning",
            f"image {image} (not in ECR)",
            "pulled from its own registry as before, by tag (not pinned by digest)",
        )
    else:
        node.ledger.report(path, "info", f"image {image} (not in ECR)", "pulled from its own registry as before")


def _process(node: Node, container: Container) -> None:
    entry_point = node.texts("entryPoint")
    command = node.texts("command")
    if entry_point:
        container.spec["command"] = entry_point
    if command:
        container.spec["args"] = command
    working_dir = node.text("workingDirectory")
    if working_dir:
        container.spec["workingDir"] = working_dir
    user = node.text("user")
    if user:
        uid, _, gid = user.partition(":")
        if uid.isdigit():
            container.security["runAsUser"] = int(uid)
        if gid.isdigit():
            container.security["runAsGroup"] = int(gid)
        if not uid.isdigit() or (gid and not gid.isdigit()):
            node.ledger.report(
                node.path_of("user"),
                "warning",
                f"user {user!r}",
                "Kubernetes takes numeric ids only: "
                + (
                    f"runAsUser {uid}, the group name is not carried"
                    if uid.isdigit()
                    else "not set, the container runs as the image's USER; set runAsUser to the numeric uid"
                ),
            )
    if node.flag("interactive"):
        container.spec["stdin"] = True
    if node.flag("pseudoTerminal"):
        container.spec["tty"] = True


def _environment(node: Node, container: Container, options: TranslateOptions) -> None:
    env: list[dict[str, Any]] = []
    seen: dict[str, str] = {}  # variable -> where it was set

    def variable(entry: Node) -> str | None:
        name = entry.text("name", required=True)
        if name is not None and not ENV_VAR_NAME.fullmatch(name):
            entry.problem("name", f"{name!r} is not a valid environment variable name in Kubernetes")
        elif name is not None and name in seen:
            entry.problem("name", f"{name!r} is set twice (also at {seen[name]})")
        elif name is not None:
            seen[name] = entry.path
            return name
        return None

    for entry in node.objs("environment"):
        value = entry.text("value")
        name = variable(entry)
        if name is not None:
            env.append({"name": name, "value": value or ""})
    for entry in node.objs("secrets"):
        value_from = entry.text("valueFrom", required=True)
        name = variable(entry)
        if name is not None and value_from is not None:
            container.secrets.append((name, value_from, entry.path))
    if env:
        container.spec["env"] = env
    for entry in node.objs("environmentFiles"):
        value = entry.text("value", required=True)
        entry.text("type", allowed=("s3",))
        if value:
            container.env_files.append((value, entry.path))
    static_keys = sorted(k for k in seen if k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"))
    if static_keys:
        node.ledger.report(
            f"{node.path}.environment/secrets",
            "action",
            f"{', '.join(static_keys)}: long-lived AWS keys",
            "carried as they are; the AWS SDKs prefer them over the web identity token"
            + (" (AWS_ROLE_ARN)" if options.aws_role_arn else "")
            + ": remove them once the role federation works",
        )


def _ports(node: Node, container: Container, taken_ports: set[str]) -> None:
    ports: list[dict[str, Any]] = []
    for entry in node.objs("portMappings"):
        if entry.has("containerPortRange"):
            entry.report(
                "containerPortRange",
                "action",
                f"port range {entry.data.get('containerPortRange')}",
                "not translated: Kubernetes declares single ports; list the ports the app really uses",
            )
        port = entry.whole("containerPort", minimum=1, maximum=65535)
        host_port = entry.whole("hostPort", minimum=0, maximum=65535)
        protocol = (entry.text("protocol", allowed=("tcp", "udp")) or "tcp").upper()
        raw_name = entry.text("name")
        app_protocol = entry.text("appProtocol", allowed=tuple(APP_PROTOCOLS))
        if port is None:
            if entry.data.get("containerPort") is None and not entry.has("containerPortRange"):
                entry.problem("containerPort", "required, but missing")
            continue
        if host_port and host_port != port:
            entry.report(
                "hostPort",
                "warning",
                f"host port {host_port} for container port {port} (bridge networking)",
                "not used: pods have their own IP; the Service maps its port to the container port",
            )
        name = port_name(raw_name) if raw_name else None
        if name:
            name = unique(name, taken_ports, max_length=15)
        if raw_name and name != raw_name:
            entry.ledger.report(
                entry.path_of("name"),
                "info",
                f"port name {raw_name!r}",
                f"named {name!r}" if name else "dropped: no valid IANA service name is left of it",
            )
        spec_port: dict[str, Any] = {"containerPort": port, "protocol": protocol}
        if name:
            spec_port["name"] = name
        ports.append(spec_port)
        container.ports.append(Port(port, protocol, name, APP_PROTOCOLS.get(app_protocol or "")))
    if ports:
        container.spec["ports"] = ports


def _health(node: Node, container: Container) -> None:
    check = node.obj("healthCheck")
    if check is None:
        return
    command = check.texts("command")
    if command is None:
        if not check.has("command"):
            check.problem("command", "required, but missing")
        return
    if command == ["NONE"]:
        check.ignore("interval", "timeout", "retries", "startPeriod")
        check.ledger.report(check.path_of("command"), "info", "health check NONE", "no probe (disabled, as on ECS)")
        return
    interval = check.whole("interval", minimum=INTERVAL[0], maximum=INTERVAL[1])
    timeout = check.whole("timeout", minimum=TIMEOUT[0], maximum=TIMEOUT[1])
    retries = check.whole("retries", minimum=RETRIES[0], maximum=RETRIES[1])
    start_period = check.whole("startPeriod", minimum=START_PERIOD[0], maximum=START_PERIOD[1])
    exec_ = exec_command(command)
    if isinstance(exec_, str):
        check.problem("command", exec_)
        return
    container.health = HealthCheck(
        kind=command[0],
        command=exec_,
        interval=INTERVAL[2] if interval is None else interval,
        timeout=TIMEOUT[2] if timeout is None else timeout,
        retries=RETRIES[2] if retries is None else retries,
        start_period=START_PERIOD[2] if start_period is None else start_period,
    )


def _dependencies(node: Node, container: Container) -> None:
    for entry in node.objs("dependsOn"):
        target = entry.text("containerName", required=True)
        condition = entry.text("condition", required=True, allowed=CONDITIONS)
        if target and condition:
            container.depends.append(Dependency(target, condition, entry.path))
    start_timeout = node.whole("startTimeout", minimum=0)
    if start_timeout:
        node.ledger.report(
            node.path_of("startTimeout"),
            "info",
            f"wait up to {start_timeout} s for dependencies",
            "no per-container timeout: the Deployment's progressDeadlineSeconds bounds a start that never completes",
        )
    stop_timeout = node.whole("stopTimeout", minimum=0, maximum=120)
    container.stop_timeout = stop_timeout


def _security(node: Node, container: Container) -> None:
    if node.flag("readonlyRootFilesystem"):
        container.security["readOnlyRootFilesystem"] = True
    privileged = node.flag("privileged")
    if privileged:
        container.security["privileged"] = True
        node.ledger.report(
            node.path_of("privileged"),
            "warning",
            "privileged container",
            "securityContext.privileged: true; AKS clusters enforcing Pod Security 'baseline' refuse it",
        )
    for option in node.texts("dockerSecurityOptions") or []:
        if option == "no-new-privileges":
            container.security["allowPrivilegeEscalation"] = False
        elif option.startswith("apparmor:"):
            container.security["appArmorProfile"] = {"type": "Localhost", "localhostProfile": option.split(":", 1)[1]}
            node.ledger.report(
                node.path_of("dockerSecurityOptions"),
                "action",
                f"AppArmor profile {option.split(':', 1)[1]!r}",
                "securityContext.appArmorProfile (Localhost): load the profile on the AKS nodes",
            )
        else:
            node.ledger.report(
                node.path_of("dockerSecurityOptions"),
                "warning",
                f"Docker security option {option!r}",
                "not translated (SELinux labels and credential specs have no AKS Linux equivalent)",
            )
    ulimits = []
    for entry in node.objs("ulimits"):
        name = entry.text("name", required=True)
        soft = entry.whole("softLimit", required=True)
        hard = entry.whole("hardLimit", required=True)
        if name:
            ulimits.append(f"{name} {soft}/{hard}")
    if ulimits:
        node.ledger.report(
            node.path_of("ulimits"),
            "warning",
            f"ulimits {', '.join(ulimits)} (soft/hard)",
            "no Kubernetes field: the AKS node's container runtime defaults apply; "
            "raise or lower them in the image's entrypoint (`ulimit`) if the app depends on them",
        )


def _linux(node: Node, container: Container) -> None:
    linux = node.obj("linuxParameters")
    if linux is None:
        return
    caps = linux.obj("capabilities")
    if caps:
        add, drop = caps.texts("add"), caps.texts("drop")
        capabilities: dict[str, list[str]] = {}
        if add:
            capabilities["add"] = add
        if drop:
            capabilities["drop"] = drop
        if capabilities:
            container.security["capabilities"] = capabilities
    if linux.flag("initProcessEnabled"):
        container.pod["shareProcessNamespace"] = True
        linux.ledger.report(
            linux.path_of("initProcessEnabled"),
            "info",
            "an init process (tini) reaps zombies",
            "shareProcessNamespace: true - the pod's pause process is PID 1 and reaps them; "
            "the pod's containers see each other's processes",
        )
    shm = linux.whole("sharedMemorySize", minimum=1)
    if shm:
        container.memory_volumes.append((SHM_VOLUME, "/dev/shm", f"{shm}Mi"))
        linux.ledger.report(
            linux.path_of("sharedMemorySize"),
            "info",
            f"/dev/shm of {shm} MiB",
            f"an emptyDir (medium: Memory, sizeLimit {shm}Mi) at /dev/shm; it counts against the memory limit",
        )
    tmpfs = linux.objs("tmpfs")
    for number, entry in enumerate(tmpfs):
        path = entry.text("containerPath", required=True)
        size = entry.whole("size", required=True, minimum=1)
        if path and size:
            volume = f"tmpfs-{dns_label(path, max_length=40, fallback=str(number))}"
            container.memory_volumes.append((volume, path, f"{size}Mi"))
        entry.report(
            "mountOptions",
            "info",
            f"tmpfs mount options {entry.data.get('mountOptions')}",
            "not carried: an emptyDir in memory has no mount options",
        )
    if tmpfs:
        linux.ledger.report(
            linux.path_of("tmpfs"),
            "info",
            "tmpfs mounts",
            "emptyDir volumes with medium: Memory and the same size limit",
        )
    linux.report(
        "devices",
        "action",
        "host devices mapped into the container",
        "not translated: Kubernetes exposes devices through device plugins on dedicated node pools",
    )
    for key in ("maxSwap", "swappiness"):
        linux.report(key, "info", f"{key} {linux.data.get(key)}", "not translated: AKS nodes run without swap")


def _mounts(node: Node, container: Container) -> None:
    for entry in node.objs("mountPoints"):
        volume = entry.text("sourceVolume", required=True)
        path = entry.text("containerPath", required=True)
        read_only = bool(entry.flag("readOnly"))
        if volume and path:
            container.mounts.append(Mount(volume, path, read_only, entry.path))
    for entry in node.objs("volumesFrom"):
        source = entry.text("sourceContainer", required=True)
        if source:
            container.volumes_from.append((source, bool(entry.flag("readOnly")), entry.path))


def _pod_level(node: Node, container: Container) -> None:
    """Fields ECS sets per container that Kubernetes sets per pod."""
    labels = node.raw("dockerLabels")
    if isinstance(labels, dict) and labels:
        annotations = {}
        for key, value in labels.items():
            if QUALIFIED_NAME.fullmatch(str(key)) and len(str(key).rsplit("/", 1)[-1]) <= 63:
                annotations[str(key)] = str(value)
            else:
                node.ledger.report(
                    node.path_of("dockerLabels"),
                    "warning",
                    f"Docker label {key!r}",
                    "dropped: not a valid Kubernetes annotation key",
                )
        if annotations:
            container.pod.setdefault("annotations", {}).update(annotations)
            node.ledger.report(
                node.path_of("dockerLabels"),
                "info",
                f"Docker labels {', '.join(sorted(annotations))}",
                "pod template annotations (Kubernetes has no per-container labels)",
            )
    elif labels is not None and not isinstance(labels, dict):
        node.problem("dockerLabels", "must be an object of strings")
    servers = node.texts("dnsServers")
    searches = node.texts("dnsSearchDomains")
    if servers:
        container.pod.setdefault("nameservers", []).extend(servers)
    if searches:
        container.pod.setdefault("searches", []).extend(searches)
    if servers or searches:
        node.ledger.report(
            node.path_of("dnsServers" if servers else "dnsSearchDomains"),
            "warning",
            "container DNS servers / search domains",
            "pod dnsConfig (added to the cluster DNS, for every container of the pod); "
            "AWS-internal DNS servers are unreachable from AKS",
        )
    for entry in node.objs("extraHosts"):
        hostname = entry.text("hostname", required=True)
        ip = entry.text("ipAddress", required=True)
        if hostname and ip:
            container.pod.setdefault("hostAliases", {}).setdefault(ip, []).append(hostname)
    if node.has("extraHosts"):
        node.ledger.report(
            node.path_of("extraHosts"), "info", "/etc/hosts entries", "pod hostAliases (for every container of the pod)"
        )
    for entry in node.objs("systemControls"):
        name = entry.text("namespace", required=True)
        value = entry.text("value", required=True)
        if name and value is not None:
            container.pod.setdefault("sysctls", {})[name] = value
    if node.has("systemControls"):
        node.ledger.report(
            node.path_of("systemControls"),
            "warning",
            "kernel parameters (sysctls)",
            "pod securityContext.sysctls; sysctls outside Kubernetes' safe set need the kubelet's "
            "allowed-unsafe-sysctls",
        )
    gpus = 0
    for entry in node.objs("resourceRequirements"):
        kind = entry.text("type", required=True, allowed=("GPU", "InferenceAccelerator"))
        value = entry.text("value", required=True)
        if kind == "GPU" and value and value.isdigit():
            gpus += int(value)
        elif kind == "InferenceAccelerator":
            entry.report(
                "type", "action", f"Elastic Inference accelerator {value}", "not translated: no Azure equivalent"
            )
    if gpus:
        container.spec.setdefault("resources", {}).setdefault("limits", {})["nvidia.com/gpu"] = str(gpus)
        node.ledger.report(
            node.path_of("resourceRequirements"),
            "action",
            f"{gpus} GPU(s)",
            "limits nvidia.com/gpu: needs a GPU node pool with the NVIDIA device plugin",
        )


def _not_translated(node: Node, container: Container, options: TranslateOptions) -> None:
    """Container fields with no Kubernetes equivalent: each reported with what happens instead."""
    log = node.raw("logConfiguration")
    if isinstance(log, dict) and log:
        options_ = log.get("options") or {}
        where = options_.get("awslogs-group") if isinstance(options_, dict) else None
        driver = log.get("logDriver", "?")
        secret_options = " and secretOptions" if log.get("secretOptions") else ""
        node.ledger.report(
            node.path_of("logConfiguration"),
            "info",
            f"log driver {driver}" + (f" to {where}" if where else "") + secret_options,
            "not translated: AKS collects container stdout/stderr with Container Insights (Azure Monitor) when "
            "monitoring is enabled on the cluster; query the logs in Log Analytics instead of CloudWatch",
        )
    node.report(
        "firelensConfiguration",
        "warning",
        "FireLens log router",
        "not translated: Container Insights collects stdout/stderr; run Fluent Bit as a DaemonSet if routing is needed",
    )
    node.report(
        "repositoryCredentials",
        "info",
        "private registry credentials",
        "not carried: the image comes from ACR, pulled by the cluster's kubelet identity (AcrPull)"
        if container.image and container.image.target != container.image.source
        else "not carried: create an imagePullSecret for the registry",
    )
    node.report("links", "info", "Docker links", "not needed: containers of a pod reach each other on localhost")
    node.report(
        "hostname",
        "info",
        f"hostname {node.data.get('hostname')!r}",
        "not set: each pod's hostname is its own name",
    )
    if node.flag("disableNetworking"):
        node.ledger.report(
            node.path_of("disableNetworking"),
            "warning",
            "networking disabled",
            "not translated: a pod's containers share its network; the NetworkPolicy limits traffic",
        )
    node.report(
        "restartPolicy",
        "info",
        "container restart policy",
        "Kubernetes restarts every container of a Deployment's pods when it exits (restartPolicy: Always)",
    )
    node.report("credentialSpecs", "warning", "Active Directory credential specs (gMSA)", "not translated")
    node.report(
        "versionConsistency",
        "info",
        f"versionConsistency {node.data.get('versionConsistency')}",
        "the image is pinned by digest in the Deployment" if options.images else "kept as the image reference says",
    )
    node.ignore("essential")  # decided with dependsOn, see ecs.py
