"""Phase 1/2, step 3: ship a component to AKS as it runs on ECS, and prove it before users reach it.

read the ECS service -> pin its images in ACR by digest -> the AWS role its service account
assumes (IAM OIDC federation) -> translate to Kubernetes manifests -> copy its secrets from
Secrets Manager to Key Vault -> plan the manifests against the cluster (artifact) -> apply
(server-side, in dependency order) -> follow the rollout -> smoke checks through the bake
period against the external address. A failed rollout or smoke check rolls the Deployment
back to its previous revision and fails the run, with the pod events that say why.
A rerun with nothing changed on AWS changes nothing (the plan is empty; no new Key Vault
version, no new ReplicaSet). Waits are multiplied by `time_scale` (1 in the cloud).
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel, Field

from migration.cutover import BakeResult, scaled
from migration.errors import InputError, PermanentError
from migration.plan import Plan
from migration.platform import PlatformOutputs
from migration.settings import RetrySettings
from migration.ship import ShipEvidence, render_diff
from migration.spec import DEFAULT_SPEC_PATH, load_spec
from migration.translate import (
    Translation,
    autoscaling_from_aws,
    health_check_from_aws,
    options_for,
    translate_ecs,
)
from tasks.cutover import bake
from tasks.defaults import with_retries
from tasks.federation import ensure_federation
from tasks.platform import read_outputs
from tasks.secrets import SecretsReport, sync_secrets
from tasks.ship import (
    EcsSource,
    PinnedImage,
    apply_manifest,
    events_of,
    pin_images,
    plan_cluster,
    read_ecs_source,
    roll_back,
    wait_address,
    wait_rollout,
)

POLL_SECONDS = 2.0  # rollout and address polling, times the time scale


class ShipFailed(PermanentError):
    """The new revision did not prove itself; the Deployment was rolled back (when it had a previous one)."""

    def __init__(self, message: str) -> None:
        super().__init__("ship", message)


class ShipResult(BaseModel):
    environment: str
    component: str
    source: str = ""
    plan: Plan
    applied: list[str] = Field(default_factory=list)
    images: list[PinnedImage] = Field(default_factory=list)
    secrets: SecretsReport | None = None
    aws_role_arn: str | None = None
    federation: Plan | None = None  # the IAM side (OIDC provider, role): empty when nothing to change
    evidence: ShipEvidence | None = None
    warnings: list[str] = Field(default_factory=list)

    def render_markdown(self) -> str:
        lines = [f"# Ship {self.component} [{self.environment}]", "", f"From ECS `{self.source}`.", ""]
        lines += ["## Manifests", "", f"{self.plan.summary()}", "", "```", render_diff(self.plan), "```", ""]
        if self.images:
            lines += (
                ["## Images", ""] + [f"- `{i.container}`: `{i.source}` -> `{i.target}`" for i in self.images] + [""]
            )
        if self.secrets is not None:
            lines += ["## Secrets (names only)", "", self.secrets.render_markdown(), ""]
        if self.aws_role_arn:
            lines += ["## AWS access", "", f"Service account assumes `{self.aws_role_arn}` (OIDC federation).", ""]
        if self.evidence is not None:
            e = self.evidence
            lines += ["## Evidence", ""]
            lines += [f"- revision {e.revision}, digest `{e.digest}`"]
            if e.rollout_seconds is not None:
                lines += [f"- rollout took {e.rollout_seconds:.1f} s"]
            if e.url:
                lines += [
                    f"- external address {e.url}: {e.smoke_checks} smoke check(s), {len(e.smoke_failures)} failed"
                ]
            lines += [f"  - {f}" for f in e.smoke_failures]
            if e.failure:
                lines += [f"- **failed**: {e.failure}"]
            if e.rolled_back_to is not None:
                lines += [f"- rolled back to revision {e.rolled_back_to}"]
            lines += [""]
        if self.warnings:
            lines += ["## Translation notes to review", ""] + [f"- {w}" for w in self.warnings] + [""]
        return "\n".join(lines)


def _translate(
    spec_path: str,
    env: str,
    component: str,
    source: EcsSource,
    images: list[PinnedImage],
    outputs: PlatformOutputs,
    role: str | None,
) -> Translation:
    spec = load_spec(spec_path)
    health = None
    if source.target_group:
        health = health_check_from_aws(source.target_group)
    autoscaling = None
    if source.scalable_targets:
        autoscaling = autoscaling_from_aws(source.scalable_targets, source.scaling_policies)
    options = options_for(
        spec,
        env,
        component,
        outputs=outputs,
        images={i.source: i.target for i in images},
        health_check=health,
        autoscaling=autoscaling,
        aws_role_arn=role,
        expose=spec.ship.expose,
        rollout_deadline_seconds=spec.ship.rollout_deadline_seconds,
    )
    return translate_ecs(source.task_definition, source.service, options)


@flow(name="ship", flow_run_name="ship-{env}-{component}", validate_parameters=True)
def ship_flow(
    spec_path: str = str(DEFAULT_SPEC_PATH),
    env: str = "staging",
    component: str = "backend",
    image_tag: str | None = None,
    time_scale: float = 1.0,
    dry_run: bool = False,
) -> ShipResult:
    """Ship `component` to the environment's AKS cluster (see the module doc).

    `image_tag`: ship this tag of the component's image instead of the one the ECS task
    definition runs (it must be in ACR); `dry_run`: plan and publish, change nothing.
    """
    logger = get_run_logger()
    spec = load_spec(spec_path)
    spec.environment(env)  # a SpecError naming the allowed environments
    if component not in spec.components:
        raise InputError(f"component {component!r} is not in the spec; allowed: {', '.join(spec.components)}")
    if spec.components[component].source != "ecs":  # type: ignore[index]
        raise InputError(
            f"component {component!r} comes from Amplify: shipping it is phase 3/4 (not built yet); "
            "allowed now: the ECS back end"
        )
    if not time_scale > 0:
        raise InputError(f"--time-scale {time_scale} must be a positive number (1 in the cloud)")
    retry = RetrySettings()
    outputs = with_retries(read_outputs, retry)(spec_path, env)
    missing = [
        n
        for n, v in (
            ("ACR", outputs.acr_login_server),
            ("AKS OIDC issuer", outputs.aks_oidc_issuer),
            ("Key Vault", outputs.key_vault_uri),
        )
        if not v
    ]
    if missing:
        raise PermanentError(
            "azure",
            f"the platform of {env!r} is not there ({', '.join(missing)}): run `mmrv-migrate run platform` first",
        )
    assert outputs.acr_login_server and outputs.aks_oidc_issuer and outputs.key_vault_uri

    source = with_retries(read_ecs_source, retry)(spec_path, env, component)
    images = with_retries(pin_images, retry)(
        spec_path, env, source.task_definition, outputs.acr_login_server, image_tag
    )
    federation = ensure_federation(spec_path, env, component, outputs.aks_oidc_issuer, source.task_role_arn, dry_run)
    role_arn = federation.role_arn
    translation = _translate(spec_path, env, component, source, images, outputs, role_arn)
    actions = translation.unresolved_actions(spec.ship.acknowledged)
    if actions:
        raise PermanentError(
            "translate",
            "the translation needs a person before it can run on AKS (nothing changed in the cluster):\n"
            + "\n".join(f"  - {i}" for i in actions),
        )
    secrets = sync_secrets(spec_path, env, list(translation.secrets), outputs.key_vault_uri, dry_run)

    plan = with_retries(plan_cluster, retry)(spec_path, env, translation.manifests)
    result = ShipResult(
        environment=env,
        component=component,
        source=translation.source,
        plan=plan,
        images=images,
        secrets=secrets,
        aws_role_arn=role_arn,
        federation=federation.plan,
        warnings=[
            str(i) + (" (acknowledged in the spec: ship.acknowledged)" if i.field in spec.ship.acknowledged else "")
            for i in translation.report
            if i.severity != "info"
        ],
    )
    create_markdown_artifact(
        key=f"ship-plan-{env}-{component}",
        markdown=f"# Ship plan: {component} [{env}]\n\n{plan.summary()}\n\n```\n{render_diff(plan)}\n```\n",
        description=plan.summary(),
    )
    logger.info("%s", plan.summary())
    if dry_run:
        return result
    if plan.blocked:
        raise PermanentError(
            "kubernetes",
            "nothing changed: object(s) exist that the tool does not own: "
            + ", ".join(a.resource for a in plan.blocked),
        )

    apply = with_retries(apply_manifest, retry)
    for action in plan.changes:
        manifest = action.desired
        apply(spec_path, env, manifest["kind"], manifest["metadata"]["name"], manifest)
        result.applied.append(action.resource)

    deployment = translation.manifest("Deployment")
    namespace, name = deployment["metadata"]["namespace"], deployment["metadata"]["name"]
    poll = max(0.2, scaled(POLL_SECONDS, time_scale))
    digest = next(
        (i.digest for i in images if i.container == _main_container(deployment)), images[0].digest if images else ""
    )
    evidence = ShipEvidence(
        environment=env,
        component=component,
        digest=digest,
        image=next((i.target for i in images if i.digest == digest), ""),
    )
    result.evidence = evidence
    try:
        _prove(spec_path, env, component, namespace, name, translation, evidence, time_scale, poll)
    except _Unproven as unproven:
        try:
            _fail(spec_path, env, namespace, name, evidence, unproven, poll, time_scale)  # rolls back, raises
        finally:
            _publish(result)
    after = with_retries(plan_cluster, retry)(spec_path, env, translation.manifests)
    if not after.is_empty:
        raise PermanentError(
            "kubernetes", f"read-back after apply still differs: {after.summary()}\n{render_diff(after)}"
        )
    _publish(result)
    return result


def _main_container(deployment: dict) -> str:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    return str(containers[0]["name"]) if containers else ""


def _publish(result: ShipResult) -> None:
    e = result.evidence
    outcome = "failed" if e and e.failure else "shipped"
    create_markdown_artifact(
        key=f"ship-report-{result.environment}-{result.component}",
        markdown=result.render_markdown(),
        description=f"{result.component} [{result.environment}]: {outcome}",
    )


class _Unproven(Exception):
    """The new revision failed a check: why, and the pod events that show it."""

    def __init__(self, reason: str, events: tuple[str, ...] = ()) -> None:
        super().__init__(reason)
        self.reason = reason
        self.events = events


def _prove(
    spec_path: str,
    env: str,
    component: str,
    namespace: str,
    name: str,
    translation: Translation,
    evidence: ShipEvidence,
    time_scale: float,
    poll: float,
) -> None:
    """Rollout, then smoke checks through the bake period; _Unproven saying why when the new revision fails."""
    logger = get_run_logger()
    spec = load_spec(spec_path)
    deadline = spec.ship.rollout_deadline_seconds * time_scale + 30 * poll
    rollout = wait_rollout(spec_path, env, namespace, name, deadline, poll)
    evidence.revision = rollout.status.revision
    evidence.rollout_seconds = rollout.seconds
    if rollout.status.state != "complete":
        raise _Unproven(f"rollout failed: {rollout.status.reason}", rollout.status.events)
    if evidence.digest and rollout.digests and evidence.digest not in rollout.digests:
        raise _Unproven(f"the pods run {', '.join(rollout.digests)}, not the digest just shipped {evidence.digest}")

    exposed = _exposure(translation)
    if exposed is None:
        logger.info("no external address (ClusterIP): smoke checks skipped")
        return
    kind, object_name = exposed
    evidence.url = wait_address(
        spec_path, env, kind, namespace, object_name, spec.ship.address_timeout_seconds * max(time_scale, 0.05), poll
    )
    checks = list(spec.components[component].smoke_checks)  # type: ignore[index]
    if not checks:
        return
    baked: BakeResult = bake.with_options(task_run_name=f"smoke[{env}] {component}")(
        env,
        component,
        [],
        100,
        evidence.url,
        checks,
        spec.ship.bake_seconds * time_scale,
        max(0.05, spec.ship.smoke_interval_seconds * time_scale),
        expected_digest=evidence.digest or None,
    )
    evidence.smoke_checks = baked.checks
    evidence.smoke_failures = [f.detail for f in baked.failures]
    if not baked.ok:
        raise _Unproven(f"smoke check failed: {baked.failures[0].detail}")


def _exposure(translation: Translation) -> tuple[str, str] | None:
    for manifest in translation.manifests:
        if manifest["kind"] == "Ingress":
            return "Ingress", manifest["metadata"]["name"]
    for manifest in translation.manifests:
        if manifest["kind"] == "Service" and (manifest.get("spec") or {}).get("type") == "LoadBalancer":
            return "Service", manifest["metadata"]["name"]
    return None


def _fail(
    spec_path: str,
    env: str,
    namespace: str,
    name: str,
    evidence: ShipEvidence,
    unproven: _Unproven,
    poll: float,
    time_scale: float,
) -> None:
    reason = unproven.reason
    logger = get_run_logger()
    evidence.failure = reason
    shown = list(unproven.events) or events_of(spec_path, env, namespace)
    revision = with_retries(roll_back, RetrySettings())(spec_path, env, namespace, name)
    if revision is None:
        message = f"{reason}; no previous revision to roll back to: the Deployment is left for diagnosis"
    else:
        evidence.rolled_back_to = revision
        spec = load_spec(spec_path)
        back = wait_rollout.with_options(task_run_name=f"rollback[{env}] {name}")(
            spec_path, env, namespace, name, spec.ship.rollout_deadline_seconds * time_scale + 30 * poll, poll
        )
        state = "complete" if back.status.state == "complete" else f"NOT complete: {back.status.reason}"
        message = f"{reason}; rolled back to revision {revision} (rollback {state})"
    logger.error("%s", message)
    if shown:
        message += "\npod events:\n" + "\n".join(f"  {line}" for line in shown)
    raise ShipFailed(message)
