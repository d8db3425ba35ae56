"""The sandbox's backends, declared: what to start, how to tell it is up, what it adds to the profile.

Adding a backend is one more `Backend(...)` (sandbox/backend.py) in `BACKENDS`; the manager
gives it a loopback port, a TLS front on the fault proxy, a log file, a health wait, a place in
the state file and its profile keys, with no new control flow. The ACR registries are a family
(one per ACR of the spec) and the wiring between the emulators lives in sandbox/wiring.py.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from migration.spec import Spec
from sandbox.backend import Backend, Context
from sandbox.registry import prepare_registry
from sandbox.wiring import acr_backends, azure_acr_args, kube_wiring_args

__all__ = ["BACKENDS", "ECR_REGISTRY_USER", "Backend", "Context", "ecr_registry_password"]

ECR_REGISTRY_USER = "AWS"


def ecr_registry_password(spec: Spec) -> str:
    """What moto's `ecr.get_authorization_token` decodes to (`AWS:<account>-auth-token`)."""
    return f"{spec.aws.account_id}-auth-token"


def _moto(ctx: Context) -> list[str]:
    # moto.server with Route 53 change batches applied all or nothing, as Route 53 does (sandbox/moto_server.py)
    return [ctx.python, "-m", "sandbox.moto_server", "-H", "127.0.0.1", "-p", str(ctx.port)]


def _moto_env(ctx: Context) -> Mapping[str, str]:
    # moto's default account is 123456789012; make STS, ARNs and the ECR token match the spec
    return {"MOTO_ACCOUNT_ID": ctx.spec.aws.account_id}


def registry_backend(name: str, *, user: str, password: Callable[[Spec], str], profile: Mapping[str, str]) -> Backend:
    """A Distribution registry with htpasswd auth (the ECR registry; the ACRs use token auth: wiring.py)."""

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
    return argv + azure_acr_args(ctx)


def _operator_token(ctx: Context) -> Mapping[str, str]:
    """The deploying principal's bearer token (ARM, Key Vault and AKS audiences); a sandbox value, not a secret."""
    from sandbox.azure.tokens import ALL_SANDBOX_AUDIENCES, OPERATOR_OID, mint_token

    tenant = ctx.spec.environments[0].azure.tenant_id
    token = mint_token(OPERATOR_OID, tenant, audience=ALL_SANDBOX_AUDIENCES, lifetime_seconds=30 * 86_400)
    return {"MMRV_AZURE_ACCESS_TOKEN": token}


def _kubernetes(ctx: Context) -> list[str]:
    """One emulator for every AKS cluster ARM creates (`--any-cluster`), waits compressed (0.1 by default),
    pulls checked against the ACR registries and AcrPull, CSI secrets read from the vaults."""
    (ctx.home / "state.json").unlink(missing_ok=True)  # fresh per `up`, like ARM
    return [
        *(ctx.python, "-m", "sandbox.kube", "--host", "127.0.0.1", "--port", str(ctx.port)),
        *("--state", str(ctx.home / "state.json"), "--public-url", ctx.public_url, "--any-cluster"),
        *kube_wiring_args(ctx),
    ]


def _aws_workload(ctx: Context) -> list[str]:
    paths = sorted({c.health_check_path for c in ctx.spec.components.values()})
    return [
        *(ctx.python, "-m", "sandbox.workload", "--host", "127.0.0.1", "--port", str(ctx.port), "--side", "aws"),
        *(arg for path in paths for arg in ("--path", path)),
    ]


BACKENDS: tuple[Backend, ...] = (
    Backend("moto", _moto, health_path="/", env=_moto_env, profile={"AWS_ENDPOINT_URL": "{url}"}),
    registry_backend(
        "ecr-registry",
        user=ECR_REGISTRY_USER,
        password=ecr_registry_password,
        profile={"MMRV_ECR_REGISTRY": "{host}"},
    ),
    # one Distribution registry per ACR of the spec, token auth by the ARM emulator (sandbox/wiring.py)
    Backend("acr-registries", lambda ctx: [], instances=acr_backends),
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
        # Key Vault answers on this host, not on <vault>.vault.azure.net: the SDK must not insist
        profile={"MMRV_ARM_URL": "{url}", "MMRV_KEYVAULT_VERIFY_CHALLENGE_RESOURCE": "false"},
        profile_values=_operator_token,
    ),
    Backend("kubernetes", _kubernetes, health_path="/healthz", requires_module="sandbox.kube"),
    # the apps on AWS: the ECS services behind the ALBs (and Amplify's hosting), for the cutover's traffic
    Backend("aws-workload", _aws_workload, health_path="/healthz", requires_module="sandbox.workload"),
)
