"""Federation tasks: AKS workloads reach AWS through an IAM OIDC provider and a role, no keys.

`ensure_federation` is the one entry a flow calls per component: read IAM (a task) -> plan
(pure, `migration.federation`) -> publish the plan -> apply each change (one task per IAM
write, in plan order: provider, role, policies) -> read again: the plan must now be empty.
It returns the role ARN the translation needs (`aws_role_arn`).

A task definition without a task role gets no federation at all: `role_arn` is None, IAM is
not touched, and the translation (given no `aws_role_arn`) sets no AWS variables. On ECS
such a task had no AWS credentials; creating an empty role would give the pod an identity
it never had and leave an IAM role nothing uses.

Every task builds its gateway from `AwsSettings()` inside the task, retries only
TransientError, and caches nothing (IAM must be read as it is now). Writes are safe to
repeat: a create whose response was lost finds the resource on the retry and accepts it
when it carries our tags.
"""

from __future__ import annotations

import re

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from pydantic import BaseModel, Field

from migration.clouds.iam import IamGateway
from migration.errors import NotFoundError, PermanentError, TransientError
from migration.federation import (
    ATTACHED_TYPE,
    AUDIENCE,
    INLINE_TYPE,
    PROVIDER_TYPE,
    ROLE_TYPE,
    DesiredFederation,
    ObservedFederation,
    ObservedProvider,
    ObservedRole,
    desired_federation,
    empty_plan,
    plan_federation,
)
from migration.plan import Action, Plan
from migration.platform import MANAGED_BY, SPEC_TAG
from migration.settings import AwsSettings, RetrySettings
from migration.spec import load_spec
from tasks.defaults import read_task, retry_options, with_retries


class FederationReading(BaseModel):
    desired: DesiredFederation
    observed: ObservedFederation


class FederationResult(BaseModel):
    """What the ship flow needs: the role the Deployment assumes (None: no AWS access), and the plan."""

    environment: str
    component: str
    role_arn: str | None = None
    provider_arn: str | None = None
    plan: Plan
    applied: list[Action] = Field(default_factory=list)


def _gateway(region: str) -> IamGateway:
    return IamGateway(AwsSettings().model_copy(update={"region": region}))


@read_task(name="read-federation", task_run_name="read-federation[{env}/{component}]")
def read_federation(spec_path: str, env: str, component: str, issuer: str, task_role_arn: str) -> FederationReading:
    """The task role's policies, the provider for `issuer` and the federated role, as IAM has them now."""
    spec = load_spec(spec_path)
    iam = _gateway(spec.aws.region)
    account = iam.get_caller_account()
    if account != spec.aws.account_id:
        raise PermanentError(
            "sts", f"the AWS credentials belong to account {account}, but the spec names account {spec.aws.account_id}"
        )
    try:
        task_role = iam.get_role(task_role_arn, "task")
    except NotFoundError as exc:
        raise NotFoundError("iam", f"the task role {task_role_arn} does not exist", exc.status) from exc
    desired = desired_federation(spec, env, component, issuer, task_role, account)
    provider: ObservedProvider | None
    role: ObservedRole | None
    try:
        provider = iam.get_oidc_provider(issuer)
    except NotFoundError:
        provider = None
    try:
        role = iam.get_federated_role(desired.role_name)
    except NotFoundError:
        role = None
    return FederationReading(desired=desired, observed=ObservedFederation(provider=provider, role=role))


def _already_exists(exc: PermanentError) -> bool:
    return exc.status == 409 or "EntityAlreadyExists" in str(exc)


def _ours(tags: dict[str, str], wanted: dict[str, str]) -> bool:
    return all(tags.get(k) == wanted.get(k) for k in (MANAGED_BY, SPEC_TAG))


@task(name="apply-federation", cache_policy=NO_CACHE, persist_result=False, **retry_options())
def apply_federation_action(action: Action, region: str) -> str:
    """Make one IAM change of the plan: `action.desired` holds what to send."""
    iam = _gateway(region)
    body = action.desired
    try:
        if action.resource_type == PROVIDER_TYPE:
            _apply_provider(iam, action)
        elif action.resource_type == ROLE_TYPE:
            _apply_role(iam, action)
        elif action.resource_type == ATTACHED_TYPE:
            if action.kind == "delete":
                iam.detach_policy(body["RoleName"], body["PolicyArn"])
            else:
                iam.attach_policy(body["RoleName"], body["PolicyArn"])
        elif action.resource_type == INLINE_TYPE:
            if action.kind == "delete":
                iam.delete_inline_policy(body["RoleName"], body["PolicyName"])
            else:
                iam.put_inline_policy(body["RoleName"], body["PolicyName"], body["PolicyDocument"])
        else:
            raise PermanentError("iam", f"{action.resource}: no way to apply a {action.resource_type!r}")
    except NotFoundError as exc:
        role = body.get("RoleName")
        if action.resource_type in (ATTACHED_TYPE, INLINE_TYPE) and role and not iam.role_exists(role):
            # IAM is eventually consistent: a role created a moment ago may not be visible yet
            raise TransientError("iam", f"{action.resource}: role {role} is not visible yet", exc.status) from exc
        raise
    return f"{action.kind} {action.resource}"


def _apply_provider(iam: IamGateway, action: Action) -> None:
    body = action.desired
    if action.kind == "update":
        iam.add_oidc_client_id(body["OpenIDConnectProviderArn"], body["ClientID"])
        return
    try:
        iam.create_oidc_provider(body["Url"], body["ClientIDList"], body["Tags"])
    except PermanentError as exc:
        if not _already_exists(exc):
            raise
        # the response to an earlier attempt was lost, or someone registered it meanwhile
        found = iam.get_oidc_provider(body["Url"])
        if not (_ours(found.tags, body["Tags"]) or AUDIENCE in found.client_ids):
            raise PermanentError(
                "iam", f"{found.arn}: registered meanwhile by someone else, without the audience {AUDIENCE}"
            ) from exc


def _apply_role(iam: IamGateway, action: Action) -> None:
    body = action.desired
    name, trust = body["RoleName"], body["AssumeRolePolicyDocument"]
    try:
        if action.kind == "update":
            iam.update_trust_policy(name, trust)
            return
        try:
            iam.create_role(name, trust, body["Tags"], body.get("Description", ""))
        except PermanentError as exc:
            if not _already_exists(exc):
                raise
            found = iam.get_federated_role(name)
            if not _ours(found.tags, body["Tags"]):
                raise PermanentError(
                    "iam", f"role {name} was created meanwhile by someone else: nothing changed on it"
                ) from exc
            iam.update_trust_policy(name, trust)  # ours from a lost response: make sure the trust is ours too
    except PermanentError as exc:
        if "Invalid principal" in str(exc):
            # IAM is eventually consistent: a provider registered a moment ago may not be a valid principal yet
            raise TransientError("iam", f"{action.resource}: the OIDC provider is not usable yet ({exc})") from exc
        raise


def _label(action: Action) -> str:
    return action.resource.split(":", 5)[-1]


def _publish(plan: Plan, env: str, component: str, title: str) -> None:
    """A markdown artifact of the plan, when running inside a flow (the UI shows it on the run)."""
    if FlowRunContext.get() is None:
        return
    key = re.sub(r"[^a-z0-9-]+", "-", f"federation-{title}-{env}-{component}".lower())
    create_markdown_artifact(
        key=key,
        markdown=f"# AWS federation {title}: {env}/{component}\n\n{plan.render_markdown(include_noop=True)}",
        description=plan.summary(),
    )


def ensure_federation(
    spec_path: str,
    env: str,
    component: str,
    issuer: str,
    task_role_arn: str | None,
    dry_run: bool = False,
) -> FederationResult:
    """The OIDC provider for `issuer` and the role `component`'s service account assumes, as the plan says.

    Blocked (a role with the name that is not ours, a foreign provider lacking the audience):
    PermanentError naming it, nothing changed. After apply IAM is read again and the plan
    must be empty. `dry_run`: the plan only.
    """
    if not task_role_arn:
        return FederationResult(environment=env, component=component, plan=empty_plan(env))
    retry = RetrySettings()
    read, apply = with_retries(read_federation, retry), with_retries(apply_federation_action, retry)
    region = load_spec(spec_path).aws.region

    reading = read(spec_path, env, component, issuer, task_role_arn)
    plan = plan_federation(reading.desired, reading.observed)
    _publish(plan, env, component, "plan")
    result = FederationResult(
        environment=env,
        component=component,
        role_arn=reading.observed.role.arn if reading.observed.role else reading.desired.role_arn,
        provider_arn=reading.observed.provider.arn if reading.observed.provider else reading.desired.provider_arn,
        plan=plan,
    )
    if dry_run:
        return result
    if plan.blocked:
        what = "; ".join(f"{a.resource}: {a.reason}" for a in plan.blocked)
        raise PermanentError("iam", f"nothing changed: the federation of {component} [{env}] is blocked: {what}")

    applied: list[Action] = []
    for action in plan.changes:
        apply.with_options(task_run_name=f"{action.kind}[{env}] {_label(action)}")(action, region)
        applied.append(action)

    after_reading = read(spec_path, env, component, issuer, task_role_arn)
    after = plan_federation(after_reading.desired, after_reading.observed)
    if not after.is_empty:
        raise PermanentError(
            "iam", f"read-back after apply still differs: {after.summary()}\n{after.render_markdown()}"
        )
    return result.model_copy(update={"applied": applied})
