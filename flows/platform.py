"""Phase 1/2, step 1: the Azure platform of one environment (ACR, AKS, identities, Key Vault, firewall).

read what ARM has -> plan -> publish the plan -> apply the changes in dependency order
(independent resources in parallel) -> read back: the plan must now be empty.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.futures import PrefectFuture, wait
from pydantic import BaseModel, Field

from migration.errors import PermanentError
from migration.plan import Plan
from migration.platform import PlatformOutputs, plan_platform
from migration.settings import RetrySettings
from migration.spec import DEFAULT_SPEC_PATH, load_spec
from tasks.defaults import with_retries
from tasks.platform import apply_resource, read_deployer, read_observed, read_outputs


class PlatformResult(BaseModel):
    plan: Plan
    applied: list[str] = Field(default_factory=list)
    outputs: PlatformOutputs | None = None


def _label(resource_id: str) -> str:
    parts = resource_id.split("/")
    return f"{parts[-2]}/{parts[-1]}" if len(parts) > 2 else resource_id


@flow(name="platform", flow_run_name="platform-{env}", validate_parameters=True)
def platform_flow(
    spec_path: str = str(DEFAULT_SPEC_PATH), env: str = "staging", dry_run: bool = False
) -> PlatformResult:
    logger = get_run_logger()
    retry = RetrySettings()
    read, apply, outputs_of = (with_retries(t, retry) for t in (read_observed, apply_resource, read_outputs))
    spec = load_spec(spec_path)
    environment = spec.environment(env)
    # whoever runs the tool gets Key Vault Secrets Officer on the vault (the secrets phase writes there)
    deployer = with_retries(read_deployer, retry)(spec_path, env)

    plan = plan_platform(spec, environment, read(spec_path, env, deployer), deployer)
    create_markdown_artifact(
        key=f"platform-plan-{env}",
        markdown=f"# Azure platform plan: {env}\n\n{plan.render_markdown()}",
        description=plan.summary(),
    )
    logger.info("%s", plan.summary())
    if dry_run:
        return PlatformResult(plan=plan)
    if plan.blocked:
        names = ", ".join(_label(a.resource) for a in plan.blocked)
        raise PermanentError(
            "azure",
            f"nothing changed: {len(plan.blocked)} resource(s) need a change the tool will not make "
            f"(not owned): {names}",
        )

    futures: dict[str, PrefectFuture] = {}
    for action in plan.changes:
        upstream = [futures[d] for d in action.depends_on if d in futures]
        futures[action.resource] = apply.with_options(
            task_run_name=f"{action.kind}[{env}] {_label(action.resource)}"
        ).submit(spec_path, env, action.resource, deployer, wait_for=upstream)
    wait(list(futures.values()))
    for future in futures.values():
        future.result()  # raises the first failure with its message

    after = plan_platform(spec, environment, read(spec_path, env, deployer), deployer)
    if not after.is_empty:
        raise PermanentError(
            "azure", f"read-back after apply still differs: {after.summary()}\n{after.render_markdown()}"
        )
    outputs = outputs_of(spec_path, env)
    applied = list(futures)
    create_markdown_artifact(
        key=f"platform-report-{env}",
        markdown=_report(env, plan, applied, outputs),
        description=f"platform {env}: {len(applied)} change(s) applied, verified",
    )
    return PlatformResult(plan=plan, applied=applied, outputs=outputs)


def _report(env: str, plan: Plan, applied: list[str], outputs: PlatformOutputs) -> str:
    lines = [f"# Azure platform: {env}", "", plan.summary(), "", "## Applied", ""]
    lines += [f"- `{r}`" for r in applied] or ["- nothing: everything already matched the spec"]
    lines += [
        "",
        "## Outputs",
        "",
        f"- ACR login server: `{outputs.acr_login_server}`",
        f"- AKS OIDC issuer: `{outputs.aks_oidc_issuer}`",
        f"- kubelet identity (object id): `{outputs.kubelet_object_id}`",
        f"- Key Vault: `{outputs.key_vault_uri}`",
    ]
    lines += [f"- workload identity `{c}`: client id `{cid}`" for c, cid in outputs.workload_client_ids.items()]
    return "\n".join(lines) + "\n"
