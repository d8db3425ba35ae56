"""TranslateOptions from the spec and the platform (the ship phase), or from command-line flags.

`options_for` builds them the way the ship phase needs them: namespace and service account
from the spec's naming (`namespace_of`, `service_account_of`), Key Vault and tenant from the
environment, the workload identity's client id and the ACR login server from the platform's
outputs, the health check path from the component (unless the target group's own check is
known), the Key Vault secret names and JSON-key mode from the component's `secrets`.
`options_from_flags` builds them from `translate ecs` flags and names the flag in every
problem.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import ValidationError

from migration.platform import PlatformOutputs, namespace_of, service_account_of
from migration.spec import Spec
from migration.translate.model import (
    Autoscaling,
    IngressOptions,
    KeyVault,
    TargetGroupHealthCheck,
    TranslateOptions,
    TranslationError,
)


def options_for(
    spec: Spec,
    environment: str,
    component: str,
    *,
    outputs: PlatformOutputs | None = None,
    images: Mapping[str, str] | None = None,
    secret_names: Mapping[str, str] | None = None,
    health_check: TargetGroupHealthCheck | None = None,
    autoscaling: Autoscaling | None = None,
    aws_role_arn: str | None = None,
    expose: Literal["LoadBalancer", "Ingress", "ClusterIP"] = "LoadBalancer",
    rollout_deadline_seconds: int = 600,
) -> TranslateOptions:
    """The options for one component of one environment of the spec (raises SpecError for an unknown one)."""
    env = spec.environment(environment)
    part = spec.components[component]  # type: ignore[index]
    hosts = [r.name for r in env.dns.records if r.component == component]
    client_id = (outputs.workload_client_ids.get(component) if outputs else None) or None
    return TranslateOptions(
        namespace=namespace_of(spec),
        app=spec.name,
        component=component,
        environment=env.name,
        service_account=service_account_of(spec, component),
        images=dict(images or {}),
        acr_login_server=outputs.acr_login_server if outputs else None,
        key_vault=KeyVault(name=env.azure.key_vault.name, tenant_id=env.azure.tenant_id),
        workload_client_id=client_id,
        # the spec's names, then the caller's (which win)
        secret_names={**part.secrets.names, **(secret_names or {})},
        json_key_secrets=part.secrets.json_keys,
        expose=expose,
        ingress=IngressOptions(hosts=hosts) if expose == "Ingress" and hosts else None,
        health_check=health_check or TargetGroupHealthCheck(path=part.health_check_path),
        autoscaling=autoscaling,
        aws_role_arn=aws_role_arn,
        aws_region=spec.aws.region,
        rollout_deadline_seconds=rollout_deadline_seconds,
    )


# flag of each option, for messages
FLAGS = {
    "namespace": "--namespace",
    "app": "--app",
    "component": "--component",
    "images": "--image-map",
    "acr_login_server": "--acr",
    "key_vault": "--key-vault/--tenant-id",
    "workload_client_id": "--client-id",
    "secret_names": "--secret-map",
    "json_key_secrets": "--json-keys",
    "ingress": "--ingress-host",
    "aws_role_arn": "--aws-role-arn",
    "aws_region": "--aws-region",
    "rollout_deadline_seconds": "--rollout-deadline",
    "environment_files": "--env-files",
}


def _pairs(values: list[str], flag: str, problems: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values:
        key, sep, target = value.partition("=")
        if not sep or not key or not target:
            problems.append(f"{flag} {value!r}: write FROM=TO")
            continue
        out[key] = target
    return out


def options_from_flags(
    *,
    namespace: str | None,
    app: str,
    component: str,
    image_map: list[str],
    keep_tags: bool,
    acr: str | None,
    key_vault: str | None,
    tenant_id: str | None,
    client_id: str | None,
    secret_map: list[str],
    json_keys: str,
    env_files: str,
    ingress_hosts: list[str],
    ingress_class: str | None,
    tls_secret: str | None,
    health_check: TargetGroupHealthCheck | None,
    autoscaling: Autoscaling | None,
    aws_role_arn: str | None,
    aws_region: str | None,
    rollout_deadline: int,
) -> TranslateOptions:
    """TranslateOptions from `translate ecs` flags; TranslationError naming the flag otherwise."""
    problems: list[str] = []
    images = _pairs(image_map, "--image-map", problems)
    secrets = _pairs(secret_map, "--secret-map", problems)
    if bool(key_vault) != bool(tenant_id):
        problems.append("--key-vault and --tenant-id go together: give both or neither")
    values: dict[str, Any] = {
        "namespace": namespace or app,
        "app": app,
        "component": component,
        "images": images,
        "keep_tags": keep_tags,
        "acr_login_server": acr,
        "workload_client_id": client_id,
        "secret_names": secrets,
        "json_key_secrets": json_keys,
        "environment_files": env_files,
        "health_check": health_check,
        "autoscaling": autoscaling,
        "aws_role_arn": aws_role_arn,
        "aws_region": aws_region,
        "rollout_deadline_seconds": rollout_deadline,
    }
    if key_vault and tenant_id:
        values["key_vault"] = {"name": key_vault, "tenant_id": tenant_id}
    if ingress_hosts:
        values["expose"] = "Ingress"
        values["ingress"] = {"hosts": ingress_hosts, "class_name": ingress_class, "tls_secret": tls_secret}
    if problems:
        raise TranslationError(problems, source="options")
    try:
        return TranslateOptions.model_validate(values)
    except ValidationError as exc:
        lines = []
        for err in exc.errors(include_url=False):
            loc = [str(p) for p in err["loc"]]
            flag = FLAGS.get(loc[0], f"--{loc[0].replace('_', '-')}") if loc else "options"
            where = f" ({'.'.join(loc[1:])})" if len(loc) > 1 else ""
            lines.append(f"{flag}{where}: {err['msg'].removeprefix('Value error, ')}")
        raise TranslationError(lines, source="options") from None
