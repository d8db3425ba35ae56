"""Ship tasks: read what runs on ECS, pin its images in ACR, plan and apply the manifests, follow the rollout.

Each task builds its gateways from settings (never receives a live client) and returns
plain data. Applies are server-side applies of whole manifests: repeating one after a
lost response or a retry is harmless.
"""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID

from prefect import get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from migration.clouds.aws import AwsGateway
from migration.clouds.azure import ArmGateway
from migration.clouds.kube import AKS_SERVER_SCOPE, KubeGateway, ServerSettings
from migration.clouds.logins import client_for
from migration.errors import CloudError, PermanentError, TransientError
from migration.images import ImageRef, ecr_registry_host, parse_ref
from migration.plan import Plan
from migration.platform import aks_id
from migration.settings import AwsSettings, AzureSettings
from migration.ship import (
    RolloutStatus,
    current_replica_set,
    describe_event,
    key_of,
    plan_manifests,
    rollback_template,
    rollout_status,
    running_digests,
    service_url,
)
from migration.spec import load_spec
from tasks.defaults import retry_options

POLL_ERRORS_TOLERATED = 20  # transient failures in a row while following a rollout before giving up


def kube_for(spec_path: str, env: str) -> KubeGateway:
    """The environment's AKS API, with a token from the tool's own Azure credential (as kubelogin gets one)."""
    environment = load_spec(spec_path).environment(env)
    arm = ArmGateway(AzureSettings(), environment.azure.subscription_id)
    kubeconfig = arm.cluster_user_kubeconfig(aks_id(environment))
    try:
        token = arm.credential.get_token(AKS_SERVER_SCOPE).token
    except Exception as exc:  # azure-identity raises several kinds; all mean no token
        raise PermanentError("azure", f"cannot get a token for the AKS API server: {exc}") from None
    return KubeGateway(ServerSettings.from_kubeconfig(kubeconfig), token)


# --- what runs on ECS -------------------------------------------------------------------------


class EcsSource(BaseModel):
    """The AWS documents the translation reads, as `aws ... describe-*` prints them (no secret values)."""

    task_definition: dict[str, Any]
    service: dict[str, Any]
    target_group: dict[str, Any] | None = None
    scalable_targets: dict[str, Any] | None = None
    scaling_policies: dict[str, Any] | None = None

    @property
    def task_role_arn(self) -> str | None:
        return (self.task_definition.get("taskDefinition") or {}).get("taskRoleArn")

    @property
    def revision(self) -> str:
        td = self.task_definition.get("taskDefinition") or {}
        return f"{td.get('family')}:{td.get('revision')}"


@task(name="read-ecs", task_run_name="read-ecs[{env}] {component}", cache_policy=NO_CACHE, **retry_options())
def read_ecs_source(spec_path: str, env: str, component: str) -> EcsSource:
    spec = load_spec(spec_path)
    source = spec.environment(env).aws.backend if component == "backend" else None
    if source is None:
        raise PermanentError("ecs", f"environment {env!r} names no ECS service for {component!r} (aws.{component})")
    aws = AwsGateway(AwsSettings())
    services = aws.describe("ecs", "describe_services", cluster=source.ecs_cluster, services=[source.ecs_service])
    found = [s for s in services.get("services") or [] if s.get("status") == "ACTIVE"]
    if not found:
        raise PermanentError("ecs", f"service {source.ecs_cluster}/{source.ecs_service} is not ACTIVE or not found")
    service = found[0]
    task_definition = aws.describe(
        "ecs", "describe_task_definition", taskDefinition=service["taskDefinition"], include=["TAGS"]
    )
    out = EcsSource(task_definition=task_definition, service={"services": [service]})
    target_groups = [lb["targetGroupArn"] for lb in service.get("loadBalancers") or [] if lb.get("targetGroupArn")]
    if target_groups:
        out.target_group = aws.describe("elbv2", "describe_target_groups", TargetGroupArns=target_groups[:1])
    resource_id = f"service/{source.ecs_cluster}/{source.ecs_service}"
    targets = aws.describe(
        "application-autoscaling", "describe_scalable_targets", ServiceNamespace="ecs", ResourceIds=[resource_id]
    )
    if targets.get("ScalableTargets"):
        out.scalable_targets = targets
        out.scaling_policies = aws.describe(
            "application-autoscaling", "describe_scaling_policies", ServiceNamespace="ecs", ResourceId=resource_id
        )
    return out


# --- images -----------------------------------------------------------------------------------


class PinnedImage(BaseModel):
    source: str  # as the task definition writes it (or with the tag asked for)
    target: str  # <acr>/<repository>@sha256:...
    digest: str
    container: str


def _is_ecr(ref: ImageRef, ecr_hosts: set[str]) -> bool:
    return ref.registry in ecr_hosts or ".dkr.ecr." in ref.registry


@task(name="pin-images", task_run_name="pin-images[{env}]", cache_policy=NO_CACHE, **retry_options())
def pin_images(
    spec_path: str, env: str, task_definition: dict[str, Any], acr_login_server: str, image_tag: str | None = None
) -> list[PinnedImage]:
    """Each ECR image of the task definition as an ACR reference pinned by digest, verified present in ACR.

    `image_tag` replaces the tag of the component's own image (the spec's image_repository),
    e.g. to ship a release the task definition does not run yet.
    """
    spec = load_spec(spec_path)
    environment = spec.environment(env)
    repositories = {c.image_repository for c in spec.components.values()}
    ecr_override = AwsSettings().ecr_registry
    ecr_host = ecr_registry_host(spec.aws.account_id, spec.aws.region, ecr_override)
    canonical = ecr_registry_host(spec.aws.account_id, spec.aws.region)
    td = task_definition.get("taskDefinition", task_definition)
    source = client_for(ecr_host, region=spec.aws.region)
    target = client_for(acr_login_server, tenant=environment.azure.tenant_id)
    pinned: list[PinnedImage] = []
    try:
        for container in td.get("containerDefinitions") or []:
            written = container.get("image") or ""
            ref = parse_ref(written)
            if not _is_ecr(ref, {ecr_host, canonical}):
                continue  # a public image stays where it is (the translation reports it)
            lookup = ref
            if image_tag and ref.repository in repositories:
                lookup = ImageRef(registry=ref.registry, repository=ref.repository, tag=image_tag)
            digest = lookup.digest or source.manifest_digest(lookup.repository, lookup.reference)
            if not digest:
                raise PermanentError("ecr", f"{lookup}: no such image in ECR (container {container.get('name')!r})")
            if not target.manifest_digest(lookup.repository, digest):
                raise PermanentError(
                    "acr",
                    f"{acr_login_server}/{lookup.repository}@{digest} ({lookup.repository}:{lookup.tag or digest}) "
                    f"is not in ACR: run `mmrv-migrate run images --env {env}` first (add the tag to the "
                    "spec's images.tags when the task definitions do not reference it)",
                )
            pinned.append(
                PinnedImage(
                    source=written,
                    target=f"{acr_login_server}/{lookup.repository}@{digest}",
                    digest=digest,
                    container=str(container.get("name")),
                )
            )
    finally:
        source.close()
        target.close()
    return pinned


# --- the cluster --------------------------------------------------------------------------------


@task(name="plan-manifests", task_run_name="plan-manifests[{env}]", cache_policy=NO_CACHE, **retry_options())
def plan_cluster(spec_path: str, env: str, manifests: list[dict[str, Any]]) -> Plan:
    """Desired manifests vs the cluster: each is read, and dry-run applied when it exists and is ours."""
    observed: dict[str, dict[str, Any] | None] = {}
    dry_run: dict[str, dict[str, Any]] = {}
    namespaces = {m["metadata"].get("namespace") for m in manifests} - {None}
    with kube_for(spec_path, env) as kube:
        missing_namespaces = {ns for ns in namespaces if kube.get("v1", "Namespace", None, ns) is None}
        for manifest in manifests:
            meta = manifest["metadata"]
            key = key_of(manifest)
            if meta.get("namespace") in missing_namespaces:
                observed[key] = None  # a dry run in a namespace that does not exist yet fails: nothing is there
                continue
            current = kube.get(manifest["apiVersion"], manifest["kind"], meta.get("namespace"), meta["name"])
            observed[key] = current
            if current is not None:
                dry_run[key] = kube.apply(manifest, dry_run=True)
    return plan_manifests(env, manifests, observed, dry_run)


@task(
    name="apply-manifest",
    task_run_name="apply[{env}] {kind} {name}",
    cache_policy=NO_CACHE,
    persist_result=False,
    **retry_options(),
)
def apply_manifest(spec_path: str, env: str, kind: str, name: str, manifest: dict[str, Any]) -> int:
    """Server-side apply of one object; returns its generation afterwards."""
    with kube_for(spec_path, env) as kube:
        out = kube.apply(manifest)
    return int((out.get("metadata") or {}).get("generation") or 0)


def _observe_rollout(
    kube: KubeGateway, namespace: str, name: str
) -> tuple[RolloutStatus, dict[str, Any], list[dict[str, Any]]]:
    deployment = kube.get("apps/v1", "Deployment", namespace, name)
    if deployment is None:
        raise PermanentError("kubernetes", f"Deployment {namespace}/{name} is gone")
    replica_sets = kube.list("apps/v1", "ReplicaSet", namespace)
    pods = kube.list("v1", "Pod", namespace)
    events = kube.list("v1", "Event", namespace)
    return rollout_status(deployment, replica_sets, pods, events), deployment, pods


class RolloutOutcome(BaseModel):
    status: RolloutStatus
    seconds: float
    digests: list[str] = []


@task(name="rollout", task_run_name="rollout[{env}] {name}", cache_policy=NO_CACHE, persist_result=False)
def wait_rollout(
    spec_path: str, env: str, namespace: str, name: str, deadline_seconds: float, poll_seconds: float
) -> RolloutOutcome:
    """Follow the Deployment until it is complete or failed (or our own deadline passes), streaming progress."""
    logger = get_run_logger()
    began = time.monotonic()
    artifact: UUID | None = None
    errors = 0
    last_line = ""
    with kube_for(spec_path, env) as kube:
        while True:
            try:
                status, deployment, pods = _observe_rollout(kube, namespace, name)
                errors = 0
            except TransientError:
                errors += 1
                if errors > POLL_ERRORS_TOLERATED:
                    raise
                time.sleep(poll_seconds)
                continue
            elapsed = time.monotonic() - began
            if status.line() != last_line:
                logger.info("%s/%s %s", namespace, name, status.line())
                last_line = status.line()
            share = 100.0 * min(status.updated, status.available) / max(1, status.desired)
            description = f"rollout of {namespace}/{name} [{env}]: {status.line()}"
            if artifact is None:
                artifact = create_progress_artifact(progress=share, description=description)
            else:
                update_progress_artifact(artifact, share, description=description)
            if status.state == "complete":
                rs = current_replica_set(deployment, kube.list("apps/v1", "ReplicaSet", namespace))
                template_hash = ((rs or {}).get("metadata") or {}).get("labels", {}).get("pod-template-hash")
                digests = sorted(running_digests(pods, template_hash))
                return RolloutOutcome(status=status, seconds=round(elapsed, 2), digests=digests)
            if status.state == "failed":
                return RolloutOutcome(status=status, seconds=round(elapsed, 2))
            if elapsed > deadline_seconds:
                failed = status.model_copy(
                    update={
                        "state": "failed",
                        "reason": f"not complete after {deadline_seconds:.0f} s ({status.reason})",
                    }
                )
                return RolloutOutcome(status=failed, seconds=round(elapsed, 2))
            time.sleep(poll_seconds)


@task(name="roll-back", task_run_name="roll-back[{env}] {name}", cache_policy=NO_CACHE, **retry_options())
def roll_back(spec_path: str, env: str, namespace: str, name: str) -> int | None:
    """Put the previous revision's pod template back (as `kubectl rollout undo`); None when there is none."""
    with kube_for(spec_path, env) as kube:
        deployment = kube.get("apps/v1", "Deployment", namespace, name)
        if deployment is None:
            return None
        previous = rollback_template(deployment, kube.list("apps/v1", "ReplicaSet", namespace))
        if previous is None:
            return None
        revision, template = previous
        kube.json_patch(
            "apps/v1", "Deployment", namespace, name, [{"op": "replace", "path": "/spec/template", "value": template}]
        )
        return revision


@task(name="external-address", task_run_name="external-address[{env}] {name}", cache_policy=NO_CACHE)
def wait_address(
    spec_path: str, env: str, kind: str, namespace: str, name: str, timeout_seconds: float, poll_seconds: float
) -> str:
    """The Service's (or Ingress's) external URL once the load balancer has an address."""
    began = time.monotonic()
    api_version = "v1" if kind == "Service" else "networking.k8s.io/v1"
    problem = "no address yet"
    with kube_for(spec_path, env) as kube:
        while time.monotonic() - began < timeout_seconds:
            try:
                obj = kube.get(api_version, kind, namespace, name)
            except TransientError as exc:
                problem = str(exc)
                obj = None
            if obj is not None:
                url = service_url(obj) if kind == "Service" else service_url({"status": obj.get("status") or {}})
                if url:
                    return url
            time.sleep(poll_seconds)
    raise PermanentError(
        "kubernetes", f"{kind} {namespace}/{name} has no external address after {timeout_seconds:.0f} s ({problem})"
    )


def events_of(spec_path: str, env: str, namespace: str) -> list[str]:
    """The namespace's warning events, for a failure report (best effort: a read failure says so)."""
    try:
        with kube_for(spec_path, env) as kube:
            events = kube.list("v1", "Event", namespace)
    except CloudError as exc:
        return [f"(events could not be read: {exc})"]
    return [describe_event(e) for e in events if e.get("type") == "Warning"][-12:]
