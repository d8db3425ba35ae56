"""The sandbox's backends, declared: what to start, how to tell it is up, what it adds to the profile.

Adding a backend (ARM + Key Vault emulator, the ACR registry, a Kubernetes API emulator) is
one more `Backend(...)` in `BACKENDS`; the manager gives it a loopback port, a TLS front on
the fault proxy, a log file, a health wait, a place in the state file and its profile keys,
with no new control flow.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from migration.spec import Spec
from sandbox.registry import prepare_registry

ECR_REGISTRY_USER = "AWS"


def ecr_registry_password(spec: Spec) -> str:
    """What moto's `ecr.get_authorization_token` decodes to (`AWS:<account>-auth-token`)."""
    return f"{spec.aws.account_id}-auth-token"


@dataclass(frozen=True)
class Context:
    """What a backend needs to know to start."""

    name: str
    state_dir: Path
    spec: Spec
    port: int  # the backend's own plain-HTTP port on 127.0.0.1
    public_port: int = 0  # its TLS front on the fault proxy
    # every backend's public URL (https://127.0.0.1:PORT) and direct URL, by name: backends
    # that point at each other (ARM hands out kubeconfigs for the Kubernetes emulator) know
    # where the others will be before any of them starts
    public_urls: Mapping[str, str] = field(default_factory=dict)
    direct_urls: Mapping[str, str] = field(default_factory=dict)
    ca_bundle: Path | None = None
    python: str = sys.executable  # the venv's interpreter: servers run with the tool's packages

    @property
    def public_url(self) -> str:
        return f"https://127.0.0.1:{self.public_port}"

    @property
    def home(self) -> Path:
        """A directory of the backend's own under the state dir (config, data)."""
        path = self.state_dir / self.name
        path.mkdir(parents=True, exist_ok=True)
        return path


@dataclass(frozen=True)
class Backend:
    name: str
    # writes whatever config the backend needs and returns its command line
    command: Callable[[Context], list[str]]
    # GET this on the backend's own port; any HTTP response means it is up
    health_path: str = "/"
    env: Callable[[Context], Mapping[str, str]] = lambda ctx: {}
    # profile.env entries; "{url}" is the public https://127.0.0.1:PORT, "{host}" its host:port
    profile: Mapping[str, str] = field(default_factory=dict)
    # an optional backend written elsewhere: skipped with a warning while this module is missing
    requires_module: str | None = None
    # faults this route may inject (None: all kinds)
    fault_kinds: tuple[str, ...] | None = None
    # profile.env entries computed from the context (e.g. a minted sandbox token)
    profile_values: Callable[[Context], Mapping[str, str]] = lambda ctx: {}


def _moto(ctx: Context) -> list[str]:
    return [ctx.python, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(ctx.port)]


def _moto_env(ctx: Context) -> Mapping[str, str]:
    # moto's default account is 123456789012; make STS, ARNs and the ECR token match the spec
    return {"MOTO_ACCOUNT_ID": ctx.spec.aws.account_id}


def registry_backend(name: str, *, user: str, password: Callable[[Spec], str], profile: Mapping[str, str]) -> Backend:
    """A Distribution registry with htpasswd auth (the ECR registry now, the ACR one later)."""

    def command(ctx: Context) -> list[str]:
        return prepare_registry(ctx.home, name=ctx.name, port=ctx.port, user=user, password=password(ctx.spec))

    return Backend(name, command, health_path="/v2/", profile=profile)


def _amplify(ctx: Context) -> list[str]:
    return [
        *(ctx.python, "-m", "sandbox.amplify", "--host", "127.0.0.1", "--port", str(ctx.port)),
        *("--state", str(ctx.state_dir / "amplify.json")),
        *("--account-id", ctx.spec.aws.account_id, "--region", ctx.spec.aws.region),
    ]


def _azure(ctx: Context) -> list[str]:
    """ARM + Key Vault: the spec's subscriptions and tenant exist; kubeconfigs point at the Kubernetes emulator."""
    # a fresh ARM per `up`: its ids and URLs embed this sandbox's ports (moto starts empty too)
    (ctx.home / "state.json").unlink(missing_ok=True)
    subscriptions = sorted({e.azure.subscription_id for e in ctx.spec.environments})
    tenants = {e.azure.tenant_id for e in ctx.spec.environments}
    argv = [
        *(ctx.python, "-m", "sandbox.azure", "--host", "127.0.0.1", "--port", str(ctx.port)),
        *("--state", str(ctx.home / "state.json"), "--public-url", ctx.public_url),
        *(arg for sub in subscriptions for arg in ("--subscription", sub)),
        *("--tenant-id", sorted(tenants)[0]),
        *("--lro-polls", "2", "--lro-seconds", "1", "--lro-retry-after", "0.2"),
    ]
    if "kubernetes" in ctx.public_urls:
        argv += ["--kubernetes-url", ctx.public_urls["kubernetes"] + "/clusters/{cluster}"]
        if ctx.ca_bundle:
            argv += ["--kubernetes-ca", str(ctx.ca_bundle)]
    return argv


def _operator_token(ctx: Context) -> Mapping[str, str]:
    """The deploying principal's bearer token (ARM, Key Vault and AKS audiences); a sandbox value, not a secret."""
    from sandbox.azure.tokens import ALL_SANDBOX_AUDIENCES, OPERATOR_OID, mint_token

    tenant = ctx.spec.environments[0].azure.tenant_id
    token = mint_token(OPERATOR_OID, tenant, audience=ALL_SANDBOX_AUDIENCES, lifetime_seconds=30 * 86_400)
    return {"MMRV_AZURE_ACCESS_TOKEN": token}


def _kubernetes(ctx: Context) -> list[str]:
    """One emulator for every AKS cluster ARM creates (`--any-cluster`), waits compressed tenfold."""
    (ctx.home / "state.json").unlink(missing_ok=True)  # fresh per `up`, like ARM
    return [
        *(ctx.python, "-m", "sandbox.kube", "--host", "127.0.0.1", "--port", str(ctx.port)),
        *("--state", str(ctx.home / "state.json"), "--public-url", ctx.public_url),
        *("--any-cluster", "--time-scale", "0.1"),
    ]


BACKENDS: tuple[Backend, ...] = (
    Backend("moto", _moto, health_path="/", env=_moto_env, profile={"AWS_ENDPOINT_URL": "{url}"}),
    registry_backend(
        "ecr-registry",
        user=ECR_REGISTRY_USER,
        password=ecr_registry_password,
        profile={"MMRV_ECR_REGISTRY": "{host}"},
    ),
    Backend(
        "amplify",
        _amplify,
        health_path="/_sandbox/health",
        requires_module="sandbox.amplify",
        profile={"AWS_ENDPOINT_URL_AMPLIFY": "{url}"},
    ),
    Backend(
        "azure",
        _azure,
        health_path="/_sandbox/health",
        requires_module="sandbox.azure",
        profile={"MMRV_ARM_URL": "{url}"},
        profile_values=_operator_token,
    ),
    Backend("kubernetes", _kubernetes, health_path="/healthz", requires_module="sandbox.kube"),
)
