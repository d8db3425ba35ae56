"""What a translation takes (`TranslateOptions`) and gives (`Translation`), and how it fails.

Pure data: pydantic models, frozen, no I/O. Prefect can hash and persist every one of
them (a `Translation` holds manifests as plain dicts, secret *names* and never a value).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from migration.errors import ProblemsError
from migration.spec import DNS1123Label, Fqdn, HttpPath, KeyVaultName, Port, Uuid
from migration.translate.names import LABEL_VALUE, QUALIFIED_NAME

MANAGER = "mmrv-migrate"

Severity = Literal["info", "warning", "action"]
SEVERITY_ORDER: tuple[Severity, ...] = ("action", "warning", "info")

_DIGEST_REF = re.compile(r"[^\s@]+@sha256:[0-9a-f]{64}")
_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}")
_AWS_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d")


class TranslationError(ProblemsError):
    """The ECS input (or the options) cannot be translated: one line per problem, each naming the field path."""

    verb = "cannot translate"

    def __init__(self, problems: list[str], source: str = "ECS input") -> None:
        super().__init__(problems, source)


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _label_value(value: str) -> str:
    if not LABEL_VALUE.fullmatch(value):
        raise ValueError(f"{value!r} is not a label value (up to 63 letters, digits, '-', '_', '.')")
    return value


def _matching(pattern: re.Pattern[str], what: str) -> AfterValidator:
    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise ValueError(f"{value!r} is not {what}")
        return value

    return AfterValidator(check)


DigestRef = Annotated[str, _matching(_DIGEST_REF, "pinned by digest: write registry/repository@sha256:<64 hex digits>")]
RoleArn = Annotated[str, _matching(_ROLE_ARN, "an IAM role ARN like arn:aws:iam::123456789012:role/name")]
AwsRegionName = Annotated[str, _matching(_AWS_REGION, "an AWS region like eu-west-1")]


# --- options ---------------------------------------------------------------------------------


class KeyVault(Frozen):
    """Where the secrets live on Azure; the workload identity reads them (Key Vault Secrets User)."""

    name: KeyVaultName
    tenant_id: Uuid


class IngressOptions(Frozen):
    hosts: Annotated[list[Fqdn], Field(min_length=1)]
    class_name: str | None = "webapprouting.kubernetes.azure.com"  # AKS application routing add-on
    tls_secret: DNS1123Label | None = None  # a kubernetes.io/tls Secret holding the hosts' certificate


class TargetGroupHealthCheck(Frozen):
    """The ALB target group's health check (`aws elbv2 describe-target-groups`): the readiness probe."""

    protocol: Literal["HTTP", "HTTPS", "TCP"] = "HTTP"
    path: HttpPath = "/"
    port: Port | None = None  # None: the traffic port (the container port behind the load balancer)
    interval_seconds: Annotated[int, Field(ge=5, le=300)] = 30
    timeout_seconds: Annotated[int, Field(ge=2, le=120)] = 5
    healthy_threshold: Annotated[int, Field(ge=1, le=10)] = 5
    unhealthy_threshold: Annotated[int, Field(ge=1, le=10)] = 2
    matcher: str = "200"  # HttpCode: "200", "200,204", "200-299"
    target_group: str | None = None  # ARN or name, for the report


class Autoscaling(Frozen):
    """Application Auto Scaling of the ECS service: the scalable target and its target tracking policy."""

    min_replicas: Annotated[int, Field(ge=1)]
    max_replicas: Annotated[int, Field(ge=1)]
    cpu_target_percent: Annotated[float, Field(gt=0, le=100)] | None = None
    memory_target_percent: Annotated[float, Field(gt=0, le=100)] | None = None
    scale_in_cooldown_seconds: Annotated[int, Field(ge=0, le=3600)] | None = None
    scale_out_cooldown_seconds: Annotated[int, Field(ge=0, le=3600)] | None = None
    disable_scale_in: bool = False
    # what the AWS configuration had that an HPA cannot say (step scaling, ALB request count ...):
    # (field path, what it was, what was done); each becomes a report item
    notes: tuple[tuple[str, str, str], ...] = ()

    @model_validator(mode="after")
    def _bounds(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas {self.min_replicas} is above max_replicas {self.max_replicas}")
        return self


class TranslateOptions(Frozen):
    """Everything the translation needs besides the ECS input. Names follow the spec:
    namespace = spec name, workload and service account `<app>-<component>`."""

    namespace: DNS1123Label
    app: DNS1123Label = "mmrv"  # the spec's name: label `mmrv-migrate/spec`
    component: DNS1123Label = "backend"
    environment: str | None = None  # label `mmrv-migrate/environment` when given
    service_account: DNS1123Label | None = None  # default `<app>-<component>`

    # images: the ECR reference as the task definition writes it -> the ACR reference pinned by digest
    images: dict[str, DigestRef] = Field(default_factory=dict)
    keep_tags: bool = False  # an unmapped ECR image keeps its tag (on acr_login_server when given)
    acr_login_server: str | None = None

    # secrets: Secrets Manager ARN or name (or SSM parameter) -> Key Vault secret name
    key_vault: KeyVault | None = None
    workload_client_id: Uuid | None = None  # the user-assigned identity's client id (PlatformOutputs)
    secret_names: dict[str, str] = Field(default_factory=dict)
    json_key_secrets: Literal["split", "whole"] = "split"  # split: `<name>-<json key>` secrets
    environment_files: Literal["configmap", "error"] = "configmap"

    # how the service is reached
    expose: Literal["LoadBalancer", "Ingress", "ClusterIP"] = "LoadBalancer"
    ingress: IngressOptions | None = None
    service_port: Port | None = None  # default: the container port
    health_check: TargetGroupHealthCheck | None = None
    autoscaling: Autoscaling | None = None

    # AWS access by federation (the task role's replacement)
    aws_role_arn: RoleArn | None = None
    aws_region: AwsRegionName | None = None  # default: the task definition ARN's region

    rollout_deadline_seconds: Annotated[int, Field(ge=30, le=7200)] = 600
    replicas_without_service: Annotated[int, Field(ge=1, le=1000)] = 1
    network_policy: bool = True
    labels: dict[str, str] = Field(default_factory=dict)  # extra labels on every object

    @model_validator(mode="after")
    def _consistent(self) -> TranslateOptions:
        if len(self.name) > 63:
            raise ValueError(f"the workload name {self.name!r} (app-component) is longer than 63 characters")
        if self.expose == "Ingress" and self.ingress is None:
            raise ValueError("expose: Ingress needs ingress.hosts (the host names the Ingress answers for)")
        return self

    @field_validator("labels")
    @classmethod
    def _labels(cls, labels: dict[str, str]) -> dict[str, str]:
        for key, value in labels.items():
            if not QUALIFIED_NAME.fullmatch(key) or len(key.rsplit("/", 1)[-1]) > 63:
                raise ValueError(f"{key!r} is not a label key (an optional DNS prefix/, then up to 63 characters)")
            _label_value(value)
        return labels

    @field_validator("environment")
    @classmethod
    def _environment_label(cls, value: str | None) -> str | None:
        return None if value is None else _label_value(value)

    @field_validator("secret_names")
    @classmethod
    def _key_vault_names(cls, names: dict[str, str]) -> dict[str, str]:
        for key, value in names.items():
            if not re.fullmatch(r"[0-9A-Za-z-]{1,127}", value):
                raise ValueError(f"{key}={value!r}: not a Key Vault secret name (1-127 letters, digits, '-')")
        return names

    @property
    def name(self) -> str:
        """The workload's name: Deployment, Service, HPA, PDB ... (`<app>-<component>`)."""
        return f"{self.app}-{self.component}"

    @property
    def account(self) -> str:
        return self.service_account or self.name


# --- results ---------------------------------------------------------------------------------


class ReportItem(Frozen):
    """One ECS field without a direct Kubernetes equivalent, and what the translation did about it.

    severity: `info` handled differently, nothing to do; `warning` behaviour differs, review it;
    `action` a person must do something before the workload works as it did on ECS.
    """

    field: str  # taskDefinition.containerDefinitions[0].logConfiguration
    severity: Severity
    ecs: str  # what it is on ECS (never a secret or environment value)
    outcome: str  # what the translation did

    def __str__(self) -> str:
        return f"[{self.severity}] {self.field}: {self.ecs} -> {self.outcome}"


class SecretCopy(Frozen):
    """A Key Vault secret the workload reads, and where its value comes from on AWS (names only)."""

    key_vault_secret: str
    source_service: Literal["secretsmanager", "ssm"]
    source: str  # the secret's ARN (without JSON key / version) or the parameter name
    json_key: str | None = None  # copy only this key of the JSON secret
    version_stage: str | None = None
    version_id: str | None = None
    env: list[str] = Field(default_factory=list)  # "<container>/<ENV_NAME>" that read it


class ImageRewrite(Frozen):
    container: str  # the Kubernetes container name
    source: str  # as the task definition says
    target: str  # what the Deployment runs
    pinned: bool  # target is pinned by digest


class Translation(Frozen):
    """The Kubernetes objects in apply order, what they came from, and what had no equivalent."""

    source: str  # family:revision (+ service)
    namespace: str
    name: str
    manifests: list[dict[str, Any]]
    report: list[ReportItem]
    secrets: list[SecretCopy] = Field(default_factory=list)
    images: list[ImageRewrite] = Field(default_factory=list)

    @property
    def warnings(self) -> list[str]:
        """The report items someone has to look at (warnings and actions), one line each."""
        return [str(i) for i in self.report if i.severity != "info"]

    def counts(self) -> dict[str, int]:
        return {s: sum(1 for i in self.report if i.severity == s) for s in SEVERITY_ORDER}

    def unresolved_actions(self, acknowledged: list[str] | tuple[str, ...] = ()) -> list[ReportItem]:
        """The items a person must deal with before the workload can run on AKS, less those acknowledged
        (by field path, the spec's `ship.acknowledged`): a ship refuses to start while any is left."""
        return [i for i in self.report if i.severity == "action" and i.field not in acknowledged]

    def manifest(self, kind: str, name: str | None = None) -> dict[str, Any]:
        """The one manifest of `kind` (and `name`); KeyError when there is none."""
        for m in self.manifests:
            if m["kind"] == kind and (name is None or m["metadata"]["name"] == name):
                return m
        raise KeyError(f"no {kind}{' ' + name if name else ''} in the translation")

    def kinds(self) -> list[str]:
        return [m["kind"] for m in self.manifests]
