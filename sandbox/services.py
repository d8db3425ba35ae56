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
    python: str = sys.executable  # the venv's interpreter: servers run with the tool's packages

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
)
