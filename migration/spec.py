"""The migration spec: everything the migration needs, loaded from YAML and validated.

Strict on purpose: unknown keys are errors, names follow the Azure and Kubernetes naming
rules, and staging comes before production. Every problem is reported at once, one line
each, naming the field path, the bad value and what is allowed, before anything touches
a cloud. Pure: no SDK, no Prefect, no network.
"""

from __future__ import annotations

import ipaddress
import itertools
import re
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from migration.errors import SpecError
from migration.semver import SemverError, parse_range

DEFAULT_SPEC_PATH = Path("deployments/mmrv.yaml")
ENVIRONMENT_ORDER = ("staging", "production")


# --- naming rules -----------------------------------------------------------------------
# Each rule is (regex, what is allowed), so the error says what to write instead.


def _rule(pattern: str, allowed: str) -> Callable[[str], str]:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(f"{value!r} is not allowed: {allowed}")
        return value

    return check


def _key_vault_name(value: str) -> str:
    _rule(
        r"[A-Za-z][A-Za-z0-9-]{1,22}[A-Za-z0-9]",
        "Key Vault names are 3-24 letters, digits and hyphens, start with a letter, end with a letter or digit",
    )(value)
    if "--" in value:
        raise ValueError(f"{value!r} is not allowed: Key Vault names have no consecutive hyphens")
    return value


def _resource_group_name(value: str) -> str:
    _rule(
        r"[\w\-.()]{1,90}",
        "resource group names are 1-90 letters, digits, '_', '-', '.', '(' or ')'",
    )(value)
    if value.endswith("."):
        raise ValueError(f"{value!r} is not allowed: a resource group name cannot end with '.'")
    return value


def _cidr(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=True)
    except ValueError:
        raise ValueError(f"{value!r} is not allowed: an IPv4 network in CIDR form, e.g. 10.40.0.0/16") from None
    return value


def _fqdn(value: str) -> str:
    labels = value.rstrip(".").split(".")
    label = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
    if len(labels) < 2 or len(value) > 253 or not all(label.fullmatch(x) for x in labels):
        raise ValueError(
            f"{value!r} is not allowed: a lower-case DNS name like api.example.com "
            "(labels of 1-63 letters, digits or hyphens)"
        )
    return value.rstrip(".")


DNS1123Label = Annotated[
    str,
    AfterValidator(
        _rule(
            r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?",
            "a DNS-1123 label: 1-63 lower-case letters, digits or '-', starting and ending with a letter or digit",
        )
    ),
]
AcrName = Annotated[str, AfterValidator(_rule(r"[A-Za-z0-9]{5,50}", "ACR names are 5-50 letters and digits only"))]
AksName = Annotated[
    str,
    AfterValidator(
        _rule(
            r"[A-Za-z0-9]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?",
            "AKS names are 1-63 letters, digits, '_' or '-', starting and ending with a letter or digit",
        )
    ),
]
NodePoolName = Annotated[
    str,
    AfterValidator(
        _rule(r"[a-z][a-z0-9]{0,11}", "node pool names are 1-12 lower-case letters and digits, starting with a letter")
    ),
]
IdentityName = Annotated[
    str,
    AfterValidator(
        _rule(
            r"[A-Za-z0-9][A-Za-z0-9_-]{2,127}",
            "managed identity names are 3-128 letters, digits, '-' or '_', starting with a letter or digit",
        )
    ),
]
KeyVaultName = Annotated[str, AfterValidator(_key_vault_name)]
ResourceGroupName = Annotated[str, AfterValidator(_resource_group_name)]
Uuid = Annotated[
    str,
    AfterValidator(
        _rule(
            r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
            "a GUID like 00000000-0000-0000-0000-000000000000",
        )
    ),
]
AzureLocation = Annotated[
    str, AfterValidator(_rule(r"[a-z][a-z0-9]{2,39}", "an Azure region name like westeurope (lower case, no spaces)"))
]
AwsRegion = Annotated[str, AfterValidator(_rule(r"[a-z]{2}(-[a-z]+)+-\d", "an AWS region like eu-west-1"))]
AwsAccountId = Annotated[str, AfterValidator(_rule(r"\d{12}", "a 12-digit AWS account id (quote it in YAML)"))]
KubernetesVersion = Annotated[
    str,
    AfterValidator(_rule(r"\d+\.\d+(\.\d+)?", 'a Kubernetes version like "1.30" or "1.30.4" (quote it in YAML)')),
]
HttpPath = Annotated[str, AfterValidator(_rule(r"/[^\s]*", "an HTTP path starting with '/'"))]
EcrRepositoryName = Annotated[
    str,
    AfterValidator(
        _rule(
            r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*",
            "a repository name: lower-case letters, digits, '.', '_', '-' and '/' separators",
        )
    ),
]
Fqdn = Annotated[str, AfterValidator(_fqdn)]
HttpUrl = Annotated[
    str, AfterValidator(_rule(r"https?://[^\s/?#]+[^\s]*", "an http(s) URL like https://host:port/path"))
]
Cidr = Annotated[str, AfterValidator(_cidr)]
Port = Annotated[int, Field(ge=1, le=65535)]

ComponentName = Literal["backend", "frontend"]
EnvironmentName = Literal["staging", "production"]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# --- components -------------------------------------------------------------------------


class SmokeCheck(StrictModel):
    name: DNS1123Label
    path: HttpPath
    expect_status: Annotated[int, Field(ge=100, le=599)] = 200
    expect_body_contains: str | None = None
    max_latency_ms: Annotated[int, Field(gt=0, le=60_000)] = 1000
    # The body must name the image digest just shipped (e.g. a /version endpoint). Checked
    # after `run ship`, where the digest is known; the cutover's gates skip it.
    expect_digest: bool = False


KeyVaultSecretName = Annotated[
    str,
    AfterValidator(_rule(r"[0-9A-Za-z-]{1,127}", "Key Vault secret names are 1-127 letters, digits and '-'")),
]
SecretSourceName = Annotated[
    str,
    AfterValidator(
        _rule(
            r"[\w/+=.@:-]{1,2048}",
            "a Secrets Manager secret name (with or without its 6-character suffix) or ARN, "
            "or an SSM parameter name or ARN",
        )
    ),
]


class ComponentSecrets(StrictModel):
    """Which Key Vault secret each AWS secret the component reads becomes (issue 5).

    `names` maps a Secrets Manager name, name with its suffix, or ARN (an exact ECS
    `valueFrom`, a JSON key included, names its own secret) to a Key Vault secret name;
    unmapped ones are named after the AWS name (`mmrv/staging/db` -> `mmrv-staging-db`).
    `json_keys: split` makes each JSON-key reference its own Key Vault secret
    `<name>-<key>`; `whole` copies the JSON document once and the variable holds JSON.
    """

    names: dict[SecretSourceName, KeyVaultSecretName] = Field(default_factory=dict)
    json_keys: Literal["split", "whole"] = "split"


class Component(StrictModel):
    source: Literal["ecs", "amplify"]
    image_repository: EcrRepositoryName
    port: Port
    health_check_path: HttpPath
    smoke_checks: list[SmokeCheck] = Field(default_factory=list)
    secrets: ComponentSecrets = Field(default_factory=ComponentSecrets)

    @model_validator(mode="after")
    def _unique_smoke_names(self) -> Component:
        _require_unique([c.name for c in self.smoke_checks], "smoke check name")
        return self


# --- environments -----------------------------------------------------------------------


class EcsSource(StrictModel):
    ecs_cluster: Annotated[str, AfterValidator(_rule(r"[A-Za-z0-9_-]{1,255}", "1-255 letters, digits, '-' or '_'"))]
    ecs_service: Annotated[str, AfterValidator(_rule(r"[A-Za-z0-9_-]{1,255}", "1-255 letters, digits, '-' or '_'"))]


class AmplifySource(StrictModel):
    amplify_app: Annotated[str, AfterValidator(_rule(r"[\w.-]{1,255}", "an Amplify app name"))]
    amplify_branch: Annotated[str, AfterValidator(_rule(r"[\w./-]{1,255}", "an Amplify branch name"))]


class AwsSources(StrictModel):
    backend: EcsSource | None = None
    frontend: AmplifySource | None = None
    secrets_prefix: Annotated[
        str, AfterValidator(_rule(r"[\w/+=.@-]*", "a Secrets Manager name prefix like mmrv/staging/"))
    ] = ""


class AcrTarget(StrictModel):
    name: AcrName
    sku: Literal["Basic", "Standard", "Premium"] = "Standard"


class NodePool(StrictModel):
    name: NodePoolName
    mode: Literal["System", "User"] = "User"
    vm_size: Annotated[str, AfterValidator(_rule(r"Standard_[A-Za-z0-9_]+", "an Azure VM size like Standard_D4s_v5"))]
    count: Annotated[int, Field(ge=1, le=1000)]
    min_count: Annotated[int, Field(ge=1, le=1000)] | None = None
    max_count: Annotated[int, Field(ge=1, le=1000)] | None = None

    @model_validator(mode="after")
    def _autoscale_bounds(self) -> NodePool:
        if (self.min_count is None) != (self.max_count is None):
            raise ValueError("min_count and max_count go together: give both or neither")
        bounded = self.min_count is not None and self.max_count is not None
        if bounded and not self.min_count <= self.count <= self.max_count:  # type: ignore[operator]
            raise ValueError(
                f"count {self.count} must lie within min_count {self.min_count} and max_count {self.max_count}"
            )
        return self


class AksTarget(StrictModel):
    name: AksName
    kubernetes_version: KubernetesVersion
    node_pools: Annotated[list[NodePool], Field(min_length=1)]

    @model_validator(mode="after")
    def _pools(self) -> AksTarget:
        _require_unique([p.name for p in self.node_pools], "node pool name")
        if not any(p.mode == "System" for p in self.node_pools):
            raise ValueError("node_pools needs at least one pool with mode: System (AKS requires it)")
        return self


class Identities(StrictModel):
    workloads: dict[ComponentName, IdentityName] = Field(default_factory=dict)


class KeyVaultTarget(StrictModel):
    name: KeyVaultName


class Firewall(StrictModel):
    enabled: bool = False
    name: AksName | None = None
    vnet_address_space: Cidr = "10.40.0.0/16"
    allowed_fqdns: list[
        Annotated[str, AfterValidator(_rule(r"(\*\.)?[a-z0-9.-]+", "an FQDN, optionally starting with '*.'"))]
    ] = Field(default_factory=list)

    @model_validator(mode="after")
    def _name_when_enabled(self) -> Firewall:
        if self.enabled and not self.name:
            raise ValueError("firewall.name is required when firewall.enabled is true")
        return self


class AzureTarget(StrictModel):
    subscription_id: Uuid
    tenant_id: Uuid
    location: AzureLocation
    resource_group: ResourceGroupName
    acr: AcrTarget
    aks: AksTarget
    identities: Identities = Field(default_factory=Identities)
    key_vault: KeyVaultTarget
    firewall: Firewall = Field(default_factory=Firewall)


class DnsRecord(StrictModel):
    name: Fqdn
    component: ComponentName


class DnsTarget(StrictModel):
    zone: Fqdn
    records: list[DnsRecord] = Field(default_factory=list)

    @model_validator(mode="after")
    def _records_in_zone(self) -> DnsTarget:
        for record in self.records:
            if record.name != self.zone and not record.name.endswith("." + self.zone):
                raise ValueError(f"record {record.name!r} is not inside zone {self.zone!r}")
        _require_unique([r.name for r in self.records], "record name")
        return self


class Environment(StrictModel):
    name: EnvironmentName
    aws: AwsSources
    azure: AzureTarget
    dns: DnsTarget


# --- policies ---------------------------------------------------------------------------


# The error rate of the Azure side of a name (failed / all requests over $window), in the
# metric the sandbox's traffic generator serves; in the cloud, write the query for your
# ingress's metrics (e.g. nginx_ingress_controller_requests{host="$name",status=~"5.."}).
DEFAULT_ERROR_RATE_QUERY = (
    'sum(rate(mmrv_requests_total{name="$name",side="azure",outcome="failure"}[$window]))'
    ' / sum(rate(mmrv_requests_total{name="$name",side="azure"}[$window]))'
)


class Cutover(StrictModel):
    ttl_seconds: Annotated[int, Field(ge=1, le=86_400)] = 60
    weight_steps: Annotated[list[Annotated[int, Field(ge=1, le=100)]], Field(min_length=1)] = Field(
        default_factory=lambda: [10, 50, 100]
    )
    bake_seconds: Annotated[int, Field(ge=0, le=86_400)] = 600
    error_budget: Annotated[float, Field(ge=0.0, le=1.0)] = 0.01
    rollback_window_hours: Annotated[int, Field(ge=0, le=24 * 90)] = 72
    # The gates of every bake: the smoke checks run every `smoke_interval_seconds`; when
    # `metrics_query_url` names a Prometheus-compatible HTTP API (Azure Monitor managed
    # Prometheus in the cloud, the traffic generator in the sandbox), `error_rate_query` is
    # evaluated there as often ($name, $env, $component and $window, the time since the step
    # began, are filled in) and must stay within `error_budget`.
    metrics_query_url: HttpUrl | None = None
    error_rate_query: Annotated[str, Field(min_length=1, max_length=4000)] = DEFAULT_ERROR_RATE_QUERY
    smoke_interval_seconds: Annotated[int, Field(ge=1, le=3600)] = 30

    @model_validator(mode="after")
    def _steps(self) -> Cutover:
        steps = self.weight_steps
        if any(b <= a for a, b in itertools.pairwise(steps)) or steps[-1] != 100:
            raise ValueError(f"weight_steps {steps} must increase strictly and end at 100")
        return self


class Approvals(StrictModel):
    approvers: Annotated[list[Annotated[str, Field(min_length=1, max_length=128)]], Field(min_length=1)]
    timeout_seconds: Annotated[int, Field(ge=1, le=30 * 86_400)] = 86_400


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"{value!r} is not a regular expression: {exc}") from None
    return value


def _semver_range(value: str) -> str:
    try:
        parse_range(value)
    except SemverError as exc:
        raise ValueError(str(exc)) from None
    return value


class TagFilters(StrictModel):
    """Tags to carry besides those the task definitions reference: a tag matching any filter is selected."""

    regex: list[Annotated[str, AfterValidator(_regex)]] = Field(default_factory=list)  # full match, e.g. '1\\.4\\..*'
    semver: Annotated[str, AfterValidator(_semver_range)] | None = None  # e.g. '>=1.3.0 <2.0.0', '^1.4'


class Images(StrictModel):
    """Which images go from ECR to ACR, and how (issue 4).

    `select: referenced` takes every image the active and the last `revisions` task
    definition revisions run, plus tags matching `tags`; a component no task definition
    runs (the Amplify front end) gets its newest `revisions + 1` images instead. `all`
    takes every image of the components' repositories.
    """

    strategy: Literal["import", "copy", "docker"] = "import"
    fallback_to_copy: bool = True  # an import ACR cannot do (source unreachable, ...) is copied instead
    select: Literal["referenced", "all"] = "referenced"
    revisions: Annotated[int, Field(ge=0, le=100)] = 2
    tags: TagFilters = Field(default_factory=TagFilters)
    allow_digest_change: bool = False  # the docker strategy may re-compress layers (a new digest)
    parallelism: Annotated[int, Field(ge=1, le=64)] = 4


class Ship(StrictModel):
    """How a component is brought up on AKS and proven before traffic reaches it (issue 5).

    The rollout must finish within `rollout_deadline_seconds` (the Deployment's
    progressDeadlineSeconds); then the smoke checks run every `smoke_interval_seconds` for
    `bake_seconds` against the Service's external address. A failure rolls back.
    """

    expose: Literal["LoadBalancer", "Ingress"] = "LoadBalancer"
    rollout_deadline_seconds: Annotated[int, Field(ge=30, le=7200)] = 600
    bake_seconds: Annotated[int, Field(ge=0, le=86_400)] = 120
    smoke_interval_seconds: Annotated[int, Field(ge=1, le=3600)] = 10
    address_timeout_seconds: Annotated[int, Field(ge=10, le=3600)] = 600  # until the load balancer has an address
    # Translation report items of severity `action` (by field path, e.g.
    # `service.loadBalancers[0].targetGroupArn`) a person has dealt with: they no longer stop the ship.
    acknowledged: list[Annotated[str, Field(min_length=1, max_length=300)]] = Field(default_factory=list)


class AwsAccount(StrictModel):
    account_id: AwsAccountId
    region: AwsRegion


class Spec(StrictModel):
    name: DNS1123Label
    aws: AwsAccount
    components: dict[ComponentName, Component]
    environments: Annotated[list[Environment], Field(min_length=1)]
    cutover: Cutover = Field(default_factory=Cutover)
    approvals: Approvals
    images: Images = Field(default_factory=Images)
    ship: Ship = Field(default_factory=Ship)

    @model_validator(mode="after")
    def _environments(self) -> Spec:
        names = [e.name for e in self.environments]
        _require_unique(list(names), "environment name")
        missing = [n for n in ENVIRONMENT_ORDER if n not in names]
        if missing:
            raise ValueError(
                f"environments must include {' and '.join(ENVIRONMENT_ORDER)}; missing: {', '.join(missing)}"
            )
        if names.index("staging") > names.index("production"):
            raise ValueError("environments: staging must come before production (the migration order)")
        for env in self.environments:
            for wanted in self.components:
                if getattr(env.aws, wanted) is None:
                    raise ValueError(f"environment {env.name!r} has no aws.{wanted} source for component {wanted!r}")
            for record in env.dns.records:
                if record.component not in self.components:
                    raise ValueError(
                        f"environment {env.name!r}: record {record.name!r} names component {record.component!r}, "
                        f"which is not in components ({', '.join(self.components)})"
                    )
        for name, component in self.components.items():
            expected = "ecs" if name == "backend" else "amplify"
            if component.source != expected:
                raise ValueError(f"components.{name}.source is {component.source!r}; {name} comes from {expected!r}")
        return self

    def environment(self, name: str) -> Environment:
        for env in self.environments:
            if env.name == name:
                return env
        allowed = ", ".join(e.name for e in self.environments)
        raise SpecError([f"environment {name!r} is not in the spec; allowed: {allowed}"])

    def select(self, env: str) -> list[Environment]:
        """`all` means every environment in migration order."""
        return list(self.environments) if env == "all" else [self.environment(env)]


def _require_unique(values: list[str], what: str) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"duplicate {what} {value!r}")
        seen.add(value)


# --- loading and error rendering --------------------------------------------------------


def load_spec(path: str | Path = DEFAULT_SPEC_PATH) -> Spec:
    """Read and validate a spec file. Raises SpecError (and only SpecError) on bad input."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError([f"file not found: {path}"], source=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError([f"cannot read {path}: {exc}"], source=str(path)) from None
    return parse_spec(text, source=str(path))


def parse_spec(text: str, source: str = "spec") -> Spec:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError([f"{where}not valid YAML: {problem}"], source=source) from None
    return validate_spec(data, source=source)


def validate_spec(data: Any, source: str = "spec") -> Spec:
    if not isinstance(data, dict):
        raise SpecError([f"the spec must be a mapping of keys, got {type(data).__name__}"], source=source)
    try:
        return Spec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(describe_errors(exc, Spec), source=source) from None
    except (TypeError, ValueError, RecursionError) as exc:  # pragma: no cover - defensive
        raise SpecError([f"cannot validate: {exc}"], source=source) from None


def describe_errors(exc: ValidationError, model: type[BaseModel]) -> list[str]:
    lines = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        path = _render_path(loc) or "(top level)"
        kind = err["type"]
        if kind == "extra_forbidden":
            allowed = _allowed_keys(model, loc[:-1])
            hint = f"; allowed keys: {', '.join(allowed)}" if allowed else ""
            lines.append(f"{path}: unknown key{hint}")
        elif kind == "missing":
            lines.append(f"{path}: required, but missing")
        else:
            message = err["msg"].removeprefix("Value error, ")
            if kind.startswith("literal_error") or kind in {
                "string_type",
                "int_type",
                "bool_type",
                "float_type",
                "list_type",
                "dict_type",
                "model_type",
            }:
                message = f"{message} (got {_short(err.get('input'))})"
            lines.append(f"{path}: {message}")
    return lines


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _render_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).startswith("function-after") or str(part) in {"str", "int", "[key]"}:
            continue
        elif _PLAIN_KEY.fullmatch(str(part)):
            out += f".{part}" if out else str(part)
        else:  # a key a person typed oddly (spaces, newlines): show it quoted, on one line
            out += f"[{part!r}]"
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Walk the models along `loc` and list the keys the innermost one accepts."""
    current: Any = model
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel) and isinstance(part, str):
            field = current.model_fields.get(part)
            if field is None:
                return []
            current = field.annotation
        elif typing.get_origin(current) is list and isinstance(part, int):
            current = typing.get_args(current)[0]
        elif typing.get_origin(current) is dict:
            current = typing.get_args(current)[1]
        else:
            return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _unwrap(annotation: Any) -> Any:
    """Strip Optional[...] and Annotated[...] down to the model or container inside."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            annotation = args[0] if len(args) == 1 else annotation
            if len(args) != 1:
                return annotation
        else:
            return annotation
