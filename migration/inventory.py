"""The inventory of MMRV's AWS estate: typed data, what is missing, and the report.

Pure: no SDK, no Prefect, no network. `migration.clouds.aws` fills these models from the
AWS APIs, the inventory tasks wrap each read in a `Reading` (the value, or what is
missing and why), `assemble` turns the readings into an `Inventory` and cross-checks
them (an image tag a task definition runs that is not in its repository is missing
too), and `render_markdown` / `table_rows` show it to a person.

Secret *values* never enter these models: secrets are known by name and ARN, environment
variables of task definitions and Amplify apps by name only.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")


class Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --- what is missing ----------------------------------------------------------------------


class MissingItem(Model):
    """Something the spec names (or a task definition references) that AWS does not have."""

    environment: str
    kind: str  # ecs-service, task-definition, ecr-repository, ecr-image, amplify-app, ...
    what: str  # "ECS service mmrv-backend"
    where: str  # "cluster mmrv-staging"
    why: str  # "not found"

    def __str__(self) -> str:
        return f"{self.what} in {self.where}: {self.why}"


class Reading(Model, Generic[T]):
    """What one read task saw: the value, or nothing plus what is missing and why."""

    value: T | None = None
    missing: list[MissingItem] = Field(default_factory=list)


# --- ECS ----------------------------------------------------------------------------------

_REGISTRY_HOST = re.compile(r"[^/]*[.:][^/]*|localhost")


class ImageReference(Model):
    """A container image reference split into parts, e.g. `<acct>.dkr.ecr.<region>.amazonaws.com/mmrv-backend:1.4.0`."""

    raw: str
    registry: str | None = None
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def short(self) -> str:
        """`repository:tag` (or `repository@sha256:0123456789ab`) without the registry host."""
        if self.tag:
            return f"{self.repository}:{self.tag}"
        if self.digest:
            return f"{self.repository}@{short_digest(self.digest)}"
        return self.repository


def parse_image_reference(ref: str) -> ImageReference:
    """Split `[registry/]repository[:tag][@digest]` the way Docker does."""
    rest, _, digest = ref.partition("@")
    first, slash, remainder = rest.partition("/")
    registry: str | None = None
    if slash and _REGISTRY_HOST.fullmatch(first):
        registry, rest = first, remainder
    name, colon, tag = rest.rpartition(":")
    if not colon or "/" in tag:
        name, tag = rest, ""
    return ImageReference(raw=ref, registry=registry, repository=name, tag=tag or None, digest=digest or None)


class PortMapping(Model):
    container_port: int
    protocol: str = "tcp"


class SecretReference(Model):
    """A container's `secrets` entry: the env var it fills and where the value comes from (an ARN, never a value)."""

    name: str
    value_from: str
    source: Literal["secretsmanager", "ssm"]

    @property
    def secret_arn(self) -> str | None:
        """The secret's own ARN (without a `:json-key:version-stage:version-id` suffix)."""
        if self.source != "secretsmanager":
            return None
        parts = self.value_from.split(":")
        return ":".join(parts[:7]) if len(parts) >= 7 else self.value_from

    @property
    def secret_name(self) -> str:
        """The secret's name, without the 6-character suffix Secrets Manager adds to ARNs."""
        arn = self.secret_arn
        if arn is None:
            return self.value_from.rsplit("parameter", 1)[-1] if self.value_from.startswith("arn:") else self.value_from
        name = arn.split(":", 6)[-1] if arn.startswith("arn:") else arn
        return re.sub(r"-[A-Za-z0-9]{6}$", "", name)


class ContainerSummary(Model):
    name: str
    image: ImageReference
    cpu: int | None = None
    memory: int | None = None
    memory_reservation: int | None = None
    essential: bool = True
    ports: list[PortMapping] = Field(default_factory=list)
    environment_names: list[str] = Field(default_factory=list)  # names only, never values
    secrets: list[SecretReference] = Field(default_factory=list)


class TaskDefinition(Model):
    arn: str
    family: str
    revision: int
    status: str
    cpu: str | None = None
    memory: str | None = None
    network_mode: str | None = None
    requires_compatibilities: list[str] = Field(default_factory=list)
    task_role_arn: str | None = None
    execution_role_arn: str | None = None
    containers: list[ContainerSummary] = Field(default_factory=list)
    registered_at: datetime | None = None

    @property
    def label(self) -> str:
        return f"{self.family}:{self.revision}"


class TaskDefinitionRevision(Model):
    """One revision of the service's family, and the images it runs (for rollback and the tag history)."""

    arn: str
    revision: int
    status: str
    active: bool = False  # the revision the service runs now
    images: list[ImageReference] = Field(default_factory=list)
    registered_at: datetime | None = None


class TaskDefinitionHistory(Model):
    active: TaskDefinition
    revisions: list[TaskDefinitionRevision] = Field(default_factory=list)  # newest first, includes the active one


class LoadBalancerRef(Model):
    target_group_arn: str | None = None
    container_name: str | None = None
    container_port: int | None = None


class EcsService(Model):
    cluster: str
    name: str
    arn: str
    status: str
    desired_count: int = 0
    running_count: int = 0
    pending_count: int = 0
    launch_type: str | None = None
    task_definition_arn: str
    load_balancers: list[LoadBalancerRef] = Field(default_factory=list)
    created_at: datetime | None = None


class HealthCheck(Model):
    protocol: str | None = None
    port: str | None = None
    path: str | None = None
    interval_seconds: int | None = None
    timeout_seconds: int | None = None
    healthy_threshold: int | None = None
    unhealthy_threshold: int | None = None
    matcher: str | None = None


class TargetGroup(Model):
    arn: str
    name: str
    protocol: str | None = None
    port: int | None = None
    target_type: str | None = None
    health_check: HealthCheck = Field(default_factory=HealthCheck)


class Backend(Model):
    service: EcsService
    task_definition: TaskDefinition | None = None
    revisions: list[TaskDefinitionRevision] = Field(default_factory=list)
    target_groups: list[TargetGroup] = Field(default_factory=list)


# --- ECR ----------------------------------------------------------------------------------


class EcrImage(Model):
    digest: str
    tags: list[str] = Field(default_factory=list)
    size_bytes: int | None = None
    pushed_at: datetime | None = None
    media_type: str | None = None
    used_by: list[str] = Field(default_factory=list)  # task definition revisions running it, e.g. "mmrv-backend:3"


class EcrRepository(Model):
    name: str
    arn: str
    uri: str
    component: str | None = None
    created_at: datetime | None = None
    images: list[EcrImage] = Field(default_factory=list)  # newest push first

    def find(self, image: ImageReference) -> EcrImage | None:
        for candidate in self.images:
            if (image.digest and candidate.digest == image.digest) or (image.tag and image.tag in candidate.tags):
                return candidate
        return None


# --- Amplify ------------------------------------------------------------------------------


class RewriteRule(Model):
    source: str
    target: str
    status: str | None = None
    condition: str | None = None


class AmplifySubdomain(Model):
    prefix: str
    branch: str
    verified: bool | None = None
    dns_record: str | None = None


class AmplifyDomain(Model):
    domain_name: str
    status: str | None = None
    subdomains: list[AmplifySubdomain] = Field(default_factory=list)


class AmplifyApp(Model):
    app_id: str
    name: str
    arn: str | None = None
    platform: str | None = None
    repository: str | None = None
    default_domain: str | None = None
    production_branch: str | None = None
    environment_variable_names: list[str] = Field(default_factory=list)  # names only, never values
    rewrites: list[RewriteRule] = Field(default_factory=list)
    domains: list[AmplifyDomain] = Field(default_factory=list)


class AmplifyBranch(Model):
    name: str
    stage: str | None = None
    framework: str | None = None
    display_name: str | None = None
    environment_variable_names: list[str] = Field(default_factory=list)  # names only, never values
    enable_auto_build: bool | None = None
    custom_domains: list[str] = Field(default_factory=list)
    active_job_id: str | None = None


class Frontend(Model):
    app: AmplifyApp
    branch: AmplifyBranch | None = None


# --- Secrets Manager ----------------------------------------------------------------------


class SecretInfo(Model):
    """A secret's metadata. There is deliberately no field for its value."""

    name: str
    arn: str
    created_at: datetime | None = None
    last_changed_at: datetime | None = None
    rotation_enabled: bool = False
    kms_key_id: str | None = None
    under_prefix: bool = False  # listed under the environment's secrets_prefix
    referenced_by: list[str] = Field(default_factory=list)  # "backend/DB_PASSWORD" (container/env var)


# --- Route 53 -----------------------------------------------------------------------------


class HostedZone(Model):
    id: str
    name: str
    private: bool = False
    record_count: int | None = None


class AliasTarget(Model):
    dns_name: str
    hosted_zone_id: str
    evaluate_target_health: bool = False


class DnsRecordSet(Model):
    name: str
    type: str
    ttl: int | None = None
    values: list[str] = Field(default_factory=list)
    alias_target: AliasTarget | None = None
    set_identifier: str | None = None
    weight: int | None = None
    component: str | None = None


class Dns(Model):
    zone: HostedZone | None = None
    records: list[DnsRecordSet] = Field(default_factory=list)


# --- Application Auto Scaling -------------------------------------------------------------


class ScalableTarget(Model):
    resource_id: str
    dimension: str
    min_capacity: int
    max_capacity: int
    suspended: bool = False


class ScalingPolicy(Model):
    name: str
    type: str
    dimension: str | None = None
    target_value: float | None = None
    metric: str | None = None
    scale_in_cooldown: int | None = None
    scale_out_cooldown: int | None = None


class AutoScaling(Model):
    targets: list[ScalableTarget] = Field(default_factory=list)
    policies: list[ScalingPolicy] = Field(default_factory=list)


# --- IAM ----------------------------------------------------------------------------------


class IamPolicy(Model):
    name: str
    kind: Literal["attached", "inline"]
    arn: str | None = None
    document: dict[str, Any] = Field(default_factory=dict)


class IamRole(Model):
    purpose: Literal["task", "execution"]
    name: str
    arn: str
    policies: list[IamPolicy] = Field(default_factory=list)


# --- the inventory ------------------------------------------------------------------------


class EnvironmentInventory(Model):
    name: str
    backend: Backend | None = None
    frontend: Frontend | None = None
    images: list[EcrRepository] = Field(default_factory=list)
    secrets: list[SecretInfo] = Field(default_factory=list)
    dns: Dns = Field(default_factory=Dns)
    autoscaling: AutoScaling = Field(default_factory=AutoScaling)
    iam: list[IamRole] = Field(default_factory=list)


class Inventory(Model):
    spec_name: str
    account_id: str
    region: str
    generated_at: datetime
    environments: list[EnvironmentInventory] = Field(default_factory=list)
    missing: list[MissingItem] = Field(default_factory=list)

    def environment(self, name: str) -> EnvironmentInventory:
        for env in self.environments:
            if env.name == name:
                return env
        raise KeyError(name)


class EnvironmentReadings(Model):
    """Everything the read tasks of one environment returned, before assembly."""

    name: str
    ecs_service: Reading[EcsService] = Field(default_factory=Reading)
    task_definitions: Reading[TaskDefinitionHistory] = Field(default_factory=Reading)
    target_groups: Reading[list[TargetGroup]] = Field(default_factory=Reading)
    autoscaling: Reading[AutoScaling] = Field(default_factory=Reading)
    iam: Reading[list[IamRole]] = Field(default_factory=Reading)
    amplify_app: Reading[AmplifyApp] = Field(default_factory=Reading)
    amplify_branch: Reading[AmplifyBranch] = Field(default_factory=Reading)
    images: list[Reading[EcrRepository]] = Field(default_factory=list)
    secrets: Reading[list[SecretInfo]] = Field(default_factory=Reading)
    referenced_secrets: Reading[list[SecretInfo]] = Field(default_factory=Reading)
    dns: Reading[Dns] = Field(default_factory=Reading)


# --- assembly: readings -> inventory, and what is missing ---------------------------------


def assemble(
    *, spec_name: str, account_id: str, region: str, generated_at: datetime, readings: list[EnvironmentReadings]
) -> Inventory:
    environments: list[EnvironmentInventory] = []
    missing: list[MissingItem] = []
    for r in readings:
        env, env_missing = assemble_environment(r)
        environments.append(env)
        missing.extend(env_missing)
    return Inventory(
        spec_name=spec_name,
        account_id=account_id,
        region=region,
        generated_at=generated_at,
        environments=environments,
        missing=missing,
    )


def assemble_environment(r: EnvironmentReadings) -> tuple[EnvironmentInventory, list[MissingItem]]:
    """One environment's inventory, and everything missing: what the reads reported plus the cross-checks."""
    missing: list[MissingItem] = []
    readings: list[Reading[Any]] = [
        r.ecs_service,
        r.task_definitions,
        r.target_groups,
        r.autoscaling,
        r.iam,
        r.amplify_app,
        r.amplify_branch,
        *r.images,
        r.secrets,
        r.referenced_secrets,
        r.dns,
    ]
    for reading in readings:
        missing.extend(reading.missing)

    history = r.task_definitions.value
    backend = None
    if r.ecs_service.value is not None:
        backend = Backend(
            service=r.ecs_service.value,
            task_definition=history.active if history else None,
            revisions=history.revisions if history else [],
            target_groups=r.target_groups.value or [],
        )
    frontend = None
    if r.amplify_app.value is not None:
        frontend = Frontend(app=r.amplify_app.value, branch=r.amplify_branch.value)

    repositories = [_mark_usage(repo, history) for repo in (x.value for x in r.images) if repo is not None]
    missing.extend(_images_not_in_repositories(r.name, history, repositories))

    env = EnvironmentInventory(
        name=r.name,
        backend=backend,
        frontend=frontend,
        images=repositories,
        secrets=merge_secrets(r.secrets.value or [], r.referenced_secrets.value or []),
        dns=r.dns.value or Dns(),
        autoscaling=r.autoscaling.value or AutoScaling(),
        iam=r.iam.value or [],
    )
    return env, missing


def _mark_usage(repo: EcrRepository, history: TaskDefinitionHistory | None) -> EcrRepository:
    if history is None:
        return repo
    family = history.active.family
    images = []
    for image in repo.images:
        used_by = [
            f"{family}:{rev.revision}" + (" (active)" if rev.active else "")
            for rev in history.revisions
            if any(ref.repository == repo.name and repo.find(ref) == image for ref in rev.images)
        ]
        images.append(image.model_copy(update={"used_by": used_by}) if used_by else image)
    return repo.model_copy(update={"images": images})


def _images_not_in_repositories(
    env: str, history: TaskDefinitionHistory | None, repositories: list[EcrRepository]
) -> list[MissingItem]:
    """The active task definition runs an image whose tag (or digest) is not in the ECR repository we read."""
    if history is None:
        return []
    by_name = {repo.name: repo for repo in repositories}
    missing = []
    for container in history.active.containers:
        repo = by_name.get(container.image.repository)
        if repo is not None and repo.find(container.image) is None:
            missing.append(
                MissingItem(
                    environment=env,
                    kind="ecr-image",
                    what=f"image {container.image.short}",
                    where=f"ECR repository {repo.name}",
                    why=f"task definition {history.active.label} (container {container.name}) runs it, "
                    "but the repository has no such tag or digest",
                )
            )
    return missing


def merge_secrets(listed: list[SecretInfo], referenced: list[SecretInfo]) -> list[SecretInfo]:
    """Secrets under the prefix and secrets task definitions reference, one entry per ARN, sorted by name."""
    merged: dict[str, SecretInfo] = {}
    for secret in listed:
        merged[secret.arn] = secret.model_copy(update={"under_prefix": True})
    for secret in referenced:
        known = merged.get(secret.arn)
        if known is None:
            merged[secret.arn] = secret
        else:
            refs = sorted({*known.referenced_by, *secret.referenced_by})
            merged[secret.arn] = known.model_copy(update={"referenced_by": refs})
    return sorted(merged.values(), key=lambda s: s.name)


# --- rendering ----------------------------------------------------------------------------


def short_digest(digest: str) -> str:
    algorithm, _, value = digest.partition(":")
    return f"{algorithm}:{value[:12]}" if value else digest[:19]


def human_size(size: int | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover - the loop always returns


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "-"


def _cell(value: Any) -> str:
    text = "-" if value is None or value == "" else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return [*lines, ""]


def _role_name(arn: str | None) -> str | None:
    return arn.rsplit("/", 1)[-1] if arn else None


def render_markdown(inv: Inventory) -> str:
    """The report `mmrv-migrate inventory` prints and the Prefect UI shows."""
    envs = ", ".join(e.name for e in inv.environments) or "none"
    out = [
        f"# Inventory of {inv.spec_name} on AWS (account {inv.account_id}, {inv.region})",
        "",
        f"Read {_when(inv.generated_at)}. Environments: {envs}. "
        f"Missing: {len(inv.missing) if inv.missing else 'nothing'}.",
        "",
    ]
    for env in inv.environments:
        out += _render_environment(env)
    out += ["## Missing", ""]
    if inv.missing:
        out += [f"- [{m.environment}] {m}" for m in inv.missing]
    else:
        out += ["Nothing: everything the spec names was found."]
    return "\n".join(out).rstrip() + "\n"


def _render_environment(env: EnvironmentInventory) -> list[str]:
    out = [f"## Environment: {env.name}", ""]
    out += _render_backend(env.backend)
    out += _render_images(env.images)
    out += _render_frontend(env.frontend)
    out += _render_secrets(env.secrets)
    out += _render_dns(env.dns)
    out += _render_autoscaling(env.autoscaling)
    out += _render_iam(env.iam)
    return out


def _render_backend(backend: Backend | None) -> list[str]:
    if backend is None:
        return ["### Back end (ECS)", "", "Not found (see Missing).", ""]
    svc = backend.service
    out = [
        f"### Back end: ECS service {svc.name} (cluster {svc.cluster})",
        "",
        f"Status {svc.status}, desired {svc.desired_count}, running {svc.running_count}, "
        f"launch type {svc.launch_type or '-'}.",
        "",
    ]
    td = backend.task_definition
    if td is not None:
        out += [
            f"Task definition {td.label}: cpu {td.cpu or '-'}, memory {td.memory or '-'}, "
            f"network {td.network_mode or '-'}, task role {_role_name(td.task_role_arn) or '-'}, "
            f"execution role {_role_name(td.execution_role_arn) or '-'}.",
            "",
        ]
        out += _table(
            ["container", "image", "cpu", "memory", "ports", "env vars", "secrets (env var <- secret)"],
            [
                [
                    c.name,
                    c.image.short,
                    c.cpu,
                    c.memory or c.memory_reservation,
                    ", ".join(f"{p.container_port}/{p.protocol}" for p in c.ports),
                    len(c.environment_names),
                    ", ".join(f"{s.name} <- {s.secret_name}" for s in c.secrets),
                ]
                for c in td.containers
            ],
        )
    if backend.revisions:
        out += ["Revisions of the family (newest first):", ""]
        out += _table(
            ["revision", "status", "images", "registered"],
            [
                [
                    f"{r.revision} (active)" if r.active else r.revision,
                    r.status,
                    ", ".join(i.short for i in r.images),
                    _when(r.registered_at),
                ]
                for r in backend.revisions
            ],
        )
    for tg in backend.target_groups:
        hc = tg.health_check
        out += [
            f"Target group {tg.name}: health check {hc.protocol or '-'} port {hc.port or '-'} path {hc.path or '-'}, "
            f"every {hc.interval_seconds or '-'} s, timeout {hc.timeout_seconds or '-'} s, "
            f"healthy {hc.healthy_threshold or '-'} / unhealthy {hc.unhealthy_threshold or '-'}, "
            f"expects {hc.matcher or '-'}.",
            "",
        ]
    return out


def _render_images(repositories: list[EcrRepository]) -> list[str]:
    out = ["### Images (ECR)", ""]
    if not repositories:
        return [*out, "No repositories.", ""]
    rows = []
    for repo in repositories:
        if not repo.images:
            rows.append([f"{repo.name} (empty)", "-", "-", "-", "-"])
        for image in repo.images:
            tags = ", ".join(f"{repo.name}:{t}" for t in image.tags) or f"{repo.name} (untagged)"
            size = human_size(image.size_bytes)
            rows.append([tags, short_digest(image.digest), size, _when(image.pushed_at), ", ".join(image.used_by)])
    return out + _table(["image", "digest", "size", "pushed", "used by"], rows)


def _render_frontend(frontend: Frontend | None) -> list[str]:
    if frontend is None:
        return ["### Front end (Amplify)", "", "Not found (see Missing).", ""]
    app = frontend.app
    out = [
        f"### Front end: Amplify app {app.name} ({app.app_id})",
        "",
        f"Platform {app.platform or '-'}, default domain {app.default_domain or '-'}, "
        f"{len(app.environment_variable_names)} app env var(s): {', '.join(app.environment_variable_names) or '-'}.",
        "",
    ]
    branch = frontend.branch
    if branch is not None:
        out += _table(
            ["branch", "stage", "framework", "env var names", "auto build"],
            [
                [
                    branch.name,
                    branch.stage,
                    branch.framework,
                    ", ".join(branch.environment_variable_names),
                    "yes" if branch.enable_auto_build else "no",
                ]
            ],
        )
    if app.domains:
        out += _table(
            ["domain", "status", "subdomains (prefix -> branch)"],
            [
                [
                    d.domain_name,
                    d.status,
                    ", ".join(f"{s.prefix or '(apex)'} -> {s.branch}" for s in d.subdomains),
                ]
                for d in app.domains
            ],
        )
    if app.rewrites:
        out += ["Rewrites and redirects:", ""]
        out += _table(["source", "target", "status"], [[r.source, r.target, r.status] for r in app.rewrites])
    return out


def _render_secrets(secrets: list[SecretInfo]) -> list[str]:
    out = ["### Secrets (names only)", ""]
    if not secrets:
        return [*out, "None.", ""]
    return out + _table(
        ["name", "under prefix", "referenced by", "last changed"],
        [
            [s.name, "yes" if s.under_prefix else "no", ", ".join(s.referenced_by), _when(s.last_changed_at)]
            for s in secrets
        ],
    )


def _render_dns(dns: Dns) -> list[str]:
    if dns.zone is None:
        return ["### DNS (Route 53)", "", "Hosted zone not found (see Missing).", ""]
    out = [f"### DNS: zone {dns.zone.name} ({dns.zone.id}{', private' if dns.zone.private else ''})", ""]
    if not dns.records:
        return [*out, "No records for the spec's names.", ""]
    return out + _table(
        ["name", "type", "TTL", "set id", "weight", "values / alias"],
        [
            [
                r.name,
                r.type,
                r.ttl,
                r.set_identifier,
                r.weight,
                f"alias {r.alias_target.dns_name}" if r.alias_target else ", ".join(r.values),
            ]
            for r in dns.records
        ],
    )


def _render_autoscaling(scaling: AutoScaling) -> list[str]:
    out = ["### Autoscaling", ""]
    if not scaling.targets and not scaling.policies:
        return [*out, "No scalable target.", ""]
    out += _table(
        ["target", "dimension", "min", "max"],
        [[t.resource_id, t.dimension, t.min_capacity, t.max_capacity] for t in scaling.targets],
    )
    if scaling.policies:
        out += _table(
            ["policy", "type", "metric", "target value"],
            [[p.name, p.type, p.metric, p.target_value] for p in scaling.policies],
        )
    return out


def _render_iam(roles: list[IamRole]) -> list[str]:
    out = ["### IAM", ""]
    if not roles:
        return [*out, "No roles.", ""]
    return out + _table(
        ["role", "purpose", "attached policies", "inline policies"],
        [
            [
                r.name,
                r.purpose,
                ", ".join(p.name for p in r.policies if p.kind == "attached"),
                ", ".join(p.name for p in r.policies if p.kind == "inline"),
            ]
            for r in roles
        ],
    )


def table_rows(inv: Inventory, environment: str) -> list[dict[str, str]]:
    """One row per discovered (or missing) resource of one environment, for the Prefect table artifact."""
    env = inv.environment(environment)
    rows: list[dict[str, str]] = []

    def add(kind: str, name: str, detail: str, status: str = "found") -> None:
        rows.append({"environment": env.name, "kind": kind, "name": name, "detail": detail, "status": status})

    if env.backend:
        svc = env.backend.service
        add("ecs-service", f"{svc.cluster}/{svc.name}", f"{svc.status}, desired {svc.desired_count}")
        td = env.backend.task_definition
        for rev in env.backend.revisions:
            add(
                "task-definition",
                f"{td.family if td else ''}:{rev.revision}",
                ("active; " if rev.active else "") + ", ".join(i.short for i in rev.images),
            )
        for tg in env.backend.target_groups:
            add("target-group", tg.name, f"health check {tg.health_check.path or '-'}")
    for repo in env.images:
        for image in repo.images:
            add(
                "ecr-image",
                f"{repo.name}:{','.join(image.tags) or '(untagged)'}",
                f"{short_digest(image.digest)}, {human_size(image.size_bytes)}",
            )
    if env.frontend:
        app = env.frontend.app
        add("amplify-app", app.name, f"{app.app_id}, {app.platform or '-'}")
        if env.frontend.branch:
            branch = env.frontend.branch
            add("amplify-branch", branch.name, f"{branch.stage or '-'}, {branch.framework or '-'}")
        for domain in app.domains:
            add("amplify-domain", domain.domain_name, domain.status or "-")
    for secret in env.secrets:
        add("secret", secret.name, ", ".join(secret.referenced_by) or "under prefix")
    if env.dns.zone:
        add("dns-zone", env.dns.zone.name, env.dns.zone.id)
    for record in env.dns.records:
        set_id = f" [{record.set_identifier} w={record.weight}]" if record.set_identifier else ""
        add("dns-record", f"{record.name} {record.type}{set_id}", ", ".join(record.values) or "alias")
    for target in env.autoscaling.targets:
        add("scalable-target", target.resource_id, f"{target.min_capacity}-{target.max_capacity}")
    for policy in env.autoscaling.policies:
        add("scaling-policy", policy.name, policy.type)
    for role in env.iam:
        add("iam-role", role.name, f"{role.purpose}, {len(role.policies)} policies")
    for item in inv.missing:
        if item.environment == env.name:
            add(item.kind, item.what, f"{item.where}: {item.why}", status="missing")
    return rows
