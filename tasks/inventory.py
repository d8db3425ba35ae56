"""Read tasks of the inventory: one read of AWS each, idempotent, plain data in and out.

Every task builds its own gateway from `AwsSettings()` (never a live client as an input),
takes spec names (and the readings of the tasks it depends on), and returns a
`Reading`: the value it found, or what is missing and why. A missing thing is a finding,
not a failure; only CloudErrors fail a task, and only TransientErrors are retried.

Task runs are named after what they read and where, e.g. `ecs-service[staging]`.
"""

from __future__ import annotations

from migration.clouds.aws import AwsGateway
from migration.errors import CloudError, NotFoundError, PermanentError
from migration.inventory import (
    AmplifyApp,
    AmplifyBranch,
    AutoScaling,
    Dns,
    EcrRepository,
    EcsService,
    IamRole,
    MissingItem,
    Reading,
    SecretInfo,
    TargetGroup,
    TaskDefinitionHistory,
    TaskDefinitionRevision,
)
from migration.settings import AwsSettings
from tasks.defaults import read_task

MAX_REVISIONS = 5  # the active revision and the previous ones, for rollback and the tag history


def _gateway(region: str) -> AwsGateway:
    return AwsGateway(AwsSettings().model_copy(update={"region": region}))


def why(exc: CloudError) -> str:
    """The reason part of a CloudError's message (without the `service:` prefix and `(HTTP n)` suffix)."""
    text = str(exc).removeprefix(f"{exc.service}: ")
    return text.removesuffix(f" (HTTP {exc.status})") if exc.status is not None else text


def _missing(env: str, kind: str, what: str, where: str, exc: CloudError) -> MissingItem:
    return MissingItem(environment=env, kind=kind, what=what, where=where, why=why(exc))


@read_task(name="aws-account", task_run_name="aws-account[{account_id}]")
def check_aws_account(account_id: str, region: str) -> str:
    """The credentials must belong to the account the spec names: reading another one would find nothing."""
    actual = _gateway(region).get_caller_account()
    if actual != account_id:
        raise PermanentError(
            "sts",
            f"the AWS credentials belong to account {actual}, but the spec names account {account_id}",
        )
    return actual


@read_task(name="ecs-service", task_run_name="ecs-service[{env}]")
def read_ecs_service(env: str, region: str, cluster: str, service: str) -> Reading[EcsService]:
    try:
        return Reading(value=_gateway(region).get_ecs_service(cluster, service))
    except NotFoundError as exc:
        return Reading(missing=[_missing(env, "ecs-service", f"ECS service {service}", f"cluster {cluster}", exc)])


@read_task(name="task-definitions", task_run_name="task-definitions[{env}]")
def read_task_definitions(
    env: str, region: str, service: Reading[EcsService], max_revisions: int = MAX_REVISIONS
) -> Reading[TaskDefinitionHistory]:
    """The service's active task definition in full, and the newest revisions of its family."""
    if service.value is None:
        return Reading()
    gateway = _gateway(region)
    arn = service.value.task_definition_arn
    try:
        active = gateway.get_task_definition(arn)
    except NotFoundError as exc:
        where = f"ECS service {service.value.name} (cluster {service.value.cluster})"
        return Reading(missing=[_missing(env, "task-definition", f"task definition {arn}", where, exc)])
    revisions: list[TaskDefinitionRevision] = []
    arns = gateway.list_task_definition_revisions(active.family)[:max_revisions]
    if active.arn not in arns:
        arns = [active.arn, *arns][:max_revisions]
    for revision_arn in arns:
        try:
            td = active if revision_arn == active.arn else gateway.get_task_definition(revision_arn)
        except NotFoundError:
            continue  # deregistered between the list and the describe
        revisions.append(
            TaskDefinitionRevision(
                arn=td.arn,
                revision=td.revision,
                status=td.status,
                active=td.arn == active.arn,
                images=[c.image for c in td.containers],
                registered_at=td.registered_at,
            )
        )
    revisions.sort(key=lambda r: r.revision, reverse=True)
    return Reading(value=TaskDefinitionHistory(active=active, revisions=revisions))


@read_task(name="target-group", task_run_name="target-group[{env}]")
def read_target_groups(env: str, region: str, service: Reading[EcsService]) -> Reading[list[TargetGroup]]:
    """The ALB target groups of the service, with their health checks."""
    if service.value is None:
        return Reading()
    gateway = _gateway(region)
    found: list[TargetGroup] = []
    missing: list[MissingItem] = []
    for lb in service.value.load_balancers:
        if not lb.target_group_arn:
            continue
        try:
            found.append(gateway.get_target_group(lb.target_group_arn))
        except NotFoundError as exc:
            where = f"ECS service {service.value.name} (cluster {service.value.cluster})"
            missing.append(_missing(env, "target-group", f"target group {lb.target_group_arn}", where, exc))
    return Reading(value=found, missing=missing)


@read_task(name="autoscaling", task_run_name="autoscaling[{env}]")
def read_autoscaling(env: str, region: str, cluster: str, service: str) -> Reading[AutoScaling]:
    """Application Auto Scaling targets and policies of the ECS service (none is not an error)."""
    gateway = _gateway(region)
    resource_id = f"service/{cluster}/{service}"
    return Reading(
        value=AutoScaling(
            targets=gateway.list_scalable_targets(resource_id),
            policies=gateway.list_scaling_policies(resource_id),
        )
    )


@read_task(name="iam-roles", task_run_name="iam-roles[{env}]")
def read_iam_roles(env: str, region: str, task_definitions: Reading[TaskDefinitionHistory]) -> Reading[list[IamRole]]:
    """The task role and the execution role of the active task definition, with their policies."""
    if task_definitions.value is None:
        return Reading()
    active = task_definitions.value.active
    gateway = _gateway(region)
    roles: list[IamRole] = []
    missing: list[MissingItem] = []
    for purpose, arn in (("task", active.task_role_arn), ("execution", active.execution_role_arn)):
        if not arn:
            continue
        try:
            roles.append(gateway.get_role(arn, purpose))
        except NotFoundError as exc:
            where = f"task definition {active.label} ({purpose} role)"
            missing.append(_missing(env, "iam-role", f"IAM role {arn.rsplit('/', 1)[-1]}", where, exc))
    return Reading(value=roles, missing=missing)


@read_task(name="secrets-referenced", task_run_name="secrets-referenced[{env}]")
def read_referenced_secrets(
    env: str, region: str, task_definitions: Reading[TaskDefinitionHistory]
) -> Reading[list[SecretInfo]]:
    """Metadata of the Secrets Manager secrets the active task definition references (never their values)."""
    if task_definitions.value is None:
        return Reading()
    active = task_definitions.value.active
    users: dict[str, list[str]] = {}
    for container in active.containers:
        for ref in container.secrets:
            if ref.secret_arn:
                users.setdefault(ref.secret_arn, []).append(f"{container.name}/{ref.name}")
    gateway = _gateway(region)
    found: list[SecretInfo] = []
    missing: list[MissingItem] = []
    for arn, referenced_by in users.items():
        try:
            secret = gateway.get_secret_metadata(arn)
        except NotFoundError as exc:
            name = arn.split(":", 6)[-1]
            where = f"Secrets Manager (task definition {active.label}: {', '.join(referenced_by)})"
            missing.append(_missing(env, "secret", f"secret {name}", where, exc))
            continue
        found.append(secret.model_copy(update={"referenced_by": sorted(referenced_by)}))
    return Reading(value=found, missing=missing)


@read_task(name="secrets", task_run_name="secrets[{env}]")
def read_secrets(env: str, region: str, prefix: str) -> Reading[list[SecretInfo]]:
    """Names and ARNs of the secrets under the environment's prefix (none listed when the prefix is empty)."""
    if not prefix:
        return Reading(value=[])
    return Reading(value=_gateway(region).list_secrets(prefix))


@read_task(name="ecr-images", task_run_name="ecr-images[{env}:{repository}]")
def read_ecr_repository(
    env: str, region: str, component: str, repository: str, required: bool = True
) -> Reading[EcrRepository]:
    """The repository and its images (tags, digests, sizes, push times).

    `required` is false for a component whose images are not on ECR today (Amplify builds
    the front end): then an absent repository is not reported as missing.
    """
    gateway = _gateway(region)
    try:
        repo = gateway.get_repository(repository)
    except NotFoundError as exc:
        if not required:
            return Reading()
        where = f"ECR (account registry, {region})"
        return Reading(missing=[_missing(env, "ecr-repository", f"ECR repository {repository}", where, exc)])
    images = gateway.list_images(repository)
    return Reading(value=repo.model_copy(update={"component": component, "images": images}))


@read_task(name="amplify-app", task_run_name="amplify-app[{env}]")
def read_amplify_app(env: str, region: str, app: str) -> Reading[AmplifyApp]:
    """The Amplify app named in the spec: platform, env var names, rewrites, domain associations."""
    try:
        return Reading(value=_gateway(region).get_amplify_app(app))
    except NotFoundError as exc:
        return Reading(missing=[_missing(env, "amplify-app", f"Amplify app {app}", f"Amplify ({region})", exc)])


@read_task(name="amplify-branch", task_run_name="amplify-branch[{env}]")
def read_amplify_branch(env: str, region: str, app: Reading[AmplifyApp], branch: str) -> Reading[AmplifyBranch]:
    """The environment's branch of the app: stage, framework, env var names."""
    if app.value is None:
        return Reading()
    try:
        return Reading(value=_gateway(region).get_amplify_branch(app.value.app_id, branch))
    except NotFoundError as exc:
        where = f"Amplify app {app.value.name} ({app.value.app_id})"
        return Reading(missing=[_missing(env, "amplify-branch", f"Amplify branch {branch}", where, exc)])


@read_task(name="dns-records", task_run_name="dns-records[{env}]")
def read_dns(env: str, region: str, zone: str, records: dict[str, str]) -> Reading[Dns]:
    """The hosted zone and the record sets of the spec's names (`records`: name -> component)."""
    gateway = _gateway(region)
    try:
        hosted = gateway.get_hosted_zone(zone)
    except NotFoundError as exc:
        return Reading(missing=[_missing(env, "dns-zone", f"hosted zone {zone}", "Route 53", exc)])
    found = []
    missing = []
    for name, component in records.items():
        sets = gateway.list_record_sets(hosted.id, name)
        if not sets:
            missing.append(
                MissingItem(
                    environment=env,
                    kind="dns-record",
                    what=f"DNS record {name} ({component})",
                    where=f"hosted zone {hosted.name} ({hosted.id})",
                    why="not found",
                )
            )
        found += [s.model_copy(update={"component": component}) for s in sets]
    return Reading(value=Dns(zone=hosted, records=found), missing=missing)
