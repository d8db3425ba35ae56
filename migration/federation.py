"""AWS access from AKS without long-lived keys: web identity federation, desired vs observed.

The ECS task role's permissions stay in AWS. The AKS cluster's OIDC issuer is registered as
an IAM OIDC provider, and an IAM role per component trusts exactly one Kubernetes service
account through it (`sts:AssumeRoleWithWebIdentity`, audience `sts.amazonaws.com`). The
role carries the task role's policies: the same managed policy ARNs attached, the same
inline documents under the same names. The Deployment then gets `AWS_ROLE_ARN`,
`AWS_WEB_IDENTITY_TOKEN_FILE` and a projected token (`migration.translate`, option
`aws_role_arn`).

    provider   arn:aws:iam::<account>:oidc-provider/<issuer without https://>
    role       <spec>-<env>-<component>-aks   trust: Federated = the provider,
               StringEquals <issuer>:sub = system:serviceaccount:<namespace>:<account>
                            <issuer>:aud = sts.amazonaws.com

The issuer is used exactly as the cluster reports it, trailing slash included (AKS
issuers end with one): STS matches a token's `iss` against the provider URL as IAM stored
it, and AKS puts the same string in `iss`. IAM stores the URL without its scheme, and the
trust policy's condition keys are that stored URL followed by `:sub` / `:aud`.

Ownership: the tool changes only what carries `managed-by: mmrv-migrate` and this spec's
name (`migration.platform.tags_for`). A role with the target name that is not ours is
`blocked`. A provider for the issuer that is not ours is used as it is when it already
accepts the audience, and `blocked` when it would need the audience added. The role is ours,
so it mirrors the task role: policies the task role no longer has are detached/deleted.

Policies are compared as parsed JSON, insensitive to what IAM ignores: the order of
statements, a single string vs a one-element list, the order of values in a list.
Pure: no SDK, no Prefect, no network.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from migration.errors import InputError, PermanentError
from migration.inventory import IamRole
from migration.plan import Action, FieldChange, Plan
from migration.platform import ENV_TAG, MANAGED_BY, MANAGER, SPEC_TAG, namespace_of, service_account_of
from migration.spec import Spec

PHASE = "federation"
AUDIENCE = "sts.amazonaws.com"  # the audience of the projected token (migration.translate uses the same)
WEB_IDENTITY_ACTION = "sts:AssumeRoleWithWebIdentity"
ROLE_NAME_MAX = 64  # IAM's limit on role names
ROLE_SUFFIX = "-aks"
POLICY_VERSION = "2012-10-17"

PROVIDER_TYPE = "AWS::IAM::OIDCProvider"
ROLE_TYPE = "AWS::IAM::Role"
ATTACHED_TYPE = "AWS::IAM::RolePolicyAttachment"
INLINE_TYPE = "AWS::IAM::RolePolicy"


# --- observed: what IAM has (read by migration.clouds.iam) ----------------------------------


class ObservedProvider(BaseModel):
    model_config = ConfigDict(frozen=True)

    arn: str
    url: str  # as IAM stores it: no scheme
    client_ids: list[str] = Field(default_factory=list)
    tags: dict[str, str] = Field(default_factory=dict)


class ObservedRole(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    arn: str
    trust_policy: dict[str, Any] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)
    attached: list[str] = Field(default_factory=list)  # managed policy ARNs
    inline: dict[str, dict[str, Any]] = Field(default_factory=dict)  # policy name -> document


class ObservedFederation(BaseModel):
    model_config = ConfigDict(frozen=True)

    provider: ObservedProvider | None = None
    role: ObservedRole | None = None


# --- desired -------------------------------------------------------------------------------


class DesiredFederation(BaseModel):
    """Everything the federation of one component needs, derived from the spec and the task role."""

    model_config = ConfigDict(frozen=True)

    spec_name: str
    environment: str
    component: str
    issuer: str
    provider_url: str
    provider_arn: str
    role_name: str
    role_arn: str
    subject: str
    trust_policy: dict[str, Any]
    tags: dict[str, str]
    source_role_arn: str  # the ECS task role whose policies are carried over
    attached: list[str] = Field(default_factory=list)
    inline: dict[str, dict[str, Any]] = Field(default_factory=dict)


def provider_url(issuer: str) -> str:
    """The issuer as IAM stores a provider URL: without `https://`, path (and trailing slash) kept."""
    parts = urlsplit(issuer.strip())
    if parts.scheme != "https" or not parts.netloc or parts.query or parts.fragment:
        raise InputError(f"the cluster's OIDC issuer must be an https URL without query or fragment, not {issuer!r}")
    return parts.netloc + parts.path


def partition_of(arn: str) -> str:
    """`aws`, `aws-cn`, `aws-us-gov` ... from any ARN (`aws` when it is not one)."""
    parts = arn.split(":")
    return parts[1] if len(parts) > 5 and parts[0] == "arn" and parts[1] else "aws"


def provider_arn(account_id: str, issuer: str, partition: str = "aws") -> str:
    return f"arn:{partition}:iam::{account_id}:oidc-provider/{provider_url(issuer)}"


def role_arn(account_id: str, name: str, partition: str = "aws") -> str:
    return f"arn:{partition}:iam::{account_id}:role/{name}"


def role_name(spec_name: str, env: str, component: str) -> str:
    """`<spec>-<env>-<component>-aks`; when longer than IAM's 64 characters, cut and made unique
    by a hash of the full name, so the same inputs always give the same name."""
    base = f"{spec_name}-{env}-{component}"
    if len(base) + len(ROLE_SUFFIX) <= ROLE_NAME_MAX:
        return base + ROLE_SUFFIX
    digest = hashlib.sha256(base.encode()).hexdigest()[:8]
    keep = ROLE_NAME_MAX - len(ROLE_SUFFIX) - len(digest) - 1
    return f"{base[:keep].rstrip('-')}-{digest}{ROLE_SUFFIX}"


def subject_of(namespace: str, service_account: str) -> str:
    return f"system:serviceaccount:{namespace}:{service_account}"


def trust_policy(provider: str, issuer: str, subject: str) -> dict[str, Any]:
    """Who may assume the role: tokens of exactly one service account, for STS, from this issuer."""
    url = provider_url(issuer)
    return {
        "Version": POLICY_VERSION,
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": provider},
                "Action": WEB_IDENTITY_ACTION,
                "Condition": {"StringEquals": {f"{url}:sub": subject, f"{url}:aud": AUDIENCE}},
            }
        ],
    }


def carried_policies(task_role: IamRole) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """The task role's policies as the federated role gets them: managed ARNs, inline name -> document."""
    attached = sorted({p.arn for p in task_role.policies if p.kind == "attached" and p.arn})
    inline: dict[str, dict[str, Any]] = {}
    for p in task_role.policies:
        if p.kind != "inline":
            continue
        if not p.document or "unparsed" in p.document:
            raise PermanentError("iam", f"inline policy {p.name} of {task_role.arn}: its document could not be read")
        inline[p.name] = p.document
    return attached, inline


def federation_tags(spec: Spec, env: str) -> dict[str, str]:
    return {MANAGED_BY: MANAGER, SPEC_TAG: spec.name, ENV_TAG: env}


def desired_federation(
    spec: Spec, env: str, component: str, issuer: str, task_role: IamRole, account_id: str | None = None
) -> DesiredFederation:
    """What IAM should hold for `component` of `env` to reach AWS as `task_role` does on ECS."""
    spec.environment(env)  # an unknown environment is an input error, said by the spec
    if component not in spec.components:
        raise InputError(f"unknown component {component!r}: the spec has {', '.join(sorted(spec.components))}")
    account = account_id or spec.aws.account_id
    partition = partition_of(task_role.arn)
    provider = provider_arn(account, issuer, partition)
    name = role_name(spec.name, env, component)
    subject = subject_of(namespace_of(spec), service_account_of(spec, component))
    attached, inline = carried_policies(task_role)
    return DesiredFederation(
        spec_name=spec.name,
        environment=env,
        component=component,
        issuer=issuer,
        provider_url=provider_url(issuer),
        provider_arn=provider,
        role_name=name,
        role_arn=role_arn(account, name, partition),
        subject=subject,
        trust_policy=trust_policy(provider, issuer, subject),
        tags=federation_tags(spec, env),
        source_role_arn=task_role.arn,
        attached=attached,
        inline=inline,
    )


# --- comparing policies ---------------------------------------------------------------------


def normalise_policy(document: Any) -> Any:
    """A policy document in a form where what IAM treats as equal compares equal.

    Statement order does not matter, nor the order of values in a list, nor whether a single
    value is written as a string or a one-element list. Keys and values are compared as is.
    """
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except ValueError:
            return document
    if not isinstance(document, dict):
        return document
    out: dict[str, Any] = {}
    for key, value in document.items():
        if key == "Statement":
            statements = value if isinstance(value, list) else [value]
            normalised = [_normalise(s) for s in statements]
            out[key] = sorted(normalised, key=lambda s: json.dumps(s, sort_keys=True))
        else:
            out[key] = _normalise(value)
    return out


def _normalise(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        if all(isinstance(v, str | int | float | bool) for v in value):
            return sorted({json.dumps(v) for v in value})
        items = [_normalise(v) for v in value]
        return sorted(items, key=lambda i: json.dumps(i, sort_keys=True))
    if isinstance(value, str | int | float | bool):
        return [json.dumps(value)]  # "x" and ["x"] are the same to IAM
    return value


def same_policy(a: Any, b: Any) -> bool:
    return bool(normalise_policy(a) == normalise_policy(b))


# --- the plan -------------------------------------------------------------------------------


def _owned(tags: dict[str, str], spec_name: str) -> bool:
    return tags.get(MANAGED_BY) == MANAGER and tags.get(SPEC_TAG) == spec_name


def _ownership_hint(spec_name: str) -> str:
    return f"tag it {MANAGED_BY}={MANAGER} and {SPEC_TAG}={spec_name} for the tool to manage it"


def empty_plan(env: str) -> Plan:
    return Plan(phase=PHASE, environment=env)


def plan_federation(desired: DesiredFederation, observed: ObservedFederation) -> Plan:
    """Desired vs what IAM has -> provider, role, then policy actions, each with its reason."""
    actions = [_provider_action(desired, observed.provider)]
    role_action = _role_action(desired, observed.role, observed.provider)
    actions.append(role_action)
    if role_action.kind != "blocked":
        actions += _policy_actions(desired, observed.role if role_action.kind != "create" else None)
    return Plan(phase=PHASE, environment=desired.environment, actions=tuple(actions))


def _provider_action(desired: DesiredFederation, have: ObservedProvider | None) -> Action:
    common: dict[str, Any] = {"resource_type": PROVIDER_TYPE}
    if have is None:
        return Action(
            kind="create",
            resource=desired.provider_arn,
            reason=f"register the AKS OIDC issuer {desired.issuer} with IAM (audience {AUDIENCE})",
            desired={"Url": desired.issuer, "ClientIDList": [AUDIENCE], "Tags": desired.tags},
            **common,
        )
    owned = _owned(have.tags, desired.spec_name)
    if AUDIENCE in have.client_ids:
        reason = "exists, accepts the audience" + ("" if owned else f"; not managed by {MANAGER}: used as it is")
        return Action(kind="noop", resource=have.arn, reason=reason, **common)
    change = FieldChange(field="ClientIDList", observed=have.client_ids, desired=[*have.client_ids, AUDIENCE])
    if not owned:
        return Action(
            kind="blocked",
            resource=have.arn,
            reason=(
                f"exists without the audience {AUDIENCE} and is not managed by {MANAGER}: add the client id "
                f"{AUDIENCE} to it, or {_ownership_hint(desired.spec_name)}"
            ),
            changes=(change,),
            **common,
        )
    return Action(
        kind="update",
        resource=have.arn,
        reason=f"add the audience {AUDIENCE}",
        changes=(change,),
        desired={"OpenIDConnectProviderArn": have.arn, "ClientID": AUDIENCE},
        **common,
    )


def _role_action(desired: DesiredFederation, have: ObservedRole | None, provider: ObservedProvider | None) -> Action:
    common: dict[str, Any] = {"resource_type": ROLE_TYPE, "depends_on": (desired.provider_arn,)}
    # the trust names the provider by ARN: an existing provider's own ARN (IAM may spell the host differently)
    trust = desired.trust_policy
    if provider is not None and provider.arn != desired.provider_arn:
        trust = trust_policy(provider.arn, desired.issuer, desired.subject)
    if have is None:
        return Action(
            kind="create",
            resource=desired.role_arn,
            reason=f"role for {desired.subject}, with the policies of {desired.source_role_arn}",
            desired={
                "RoleName": desired.role_name,
                "AssumeRolePolicyDocument": trust,
                "Tags": desired.tags,
                "Description": (
                    f"{MANAGER}: AWS access of {desired.spec_name}/{desired.environment}/{desired.component} on AKS, "
                    f"as {desired.source_role_arn.rsplit('/', 1)[-1]} on ECS"
                )[:1000],
            },
            **common,
        )
    if not _owned(have.tags, desired.spec_name):
        return Action(
            kind="blocked",
            resource=have.arn,
            reason=(
                f"a role named {have.name} exists and is not managed by {MANAGER}: nothing was changed; "
                f"rename or remove it, or {_ownership_hint(desired.spec_name)}"
            ),
            **common,
        )
    if same_policy(trust, have.trust_policy):
        return Action(kind="noop", resource=have.arn, reason="exists, trust policy as desired", **common)
    return Action(
        kind="update",
        resource=have.arn,
        reason="trust policy drifted: put it back",
        changes=(FieldChange(field="AssumeRolePolicyDocument", observed=have.trust_policy, desired=trust),),
        desired={"RoleName": have.name, "AssumeRolePolicyDocument": trust},
        **common,
    )


def _policy_actions(desired: DesiredFederation, have: ObservedRole | None) -> list[Action]:
    arn = have.arn if have else desired.role_arn
    name = have.name if have else desired.role_name
    depends = (arn,)
    attached = set(have.attached) if have else set()
    inline = have.inline if have else {}
    actions: list[Action] = []
    for policy in desired.attached:
        resource = f"{arn}#attached/{policy}"
        if policy in attached:
            actions.append(Action(kind="noop", resource=resource, resource_type=ATTACHED_TYPE, reason="attached"))
        else:
            actions.append(
                Action(
                    kind="create",
                    resource=resource,
                    resource_type=ATTACHED_TYPE,
                    reason=f"attach {policy}, as on {desired.source_role_arn.rsplit('/', 1)[-1]}",
                    depends_on=depends,
                    desired={"RoleName": name, "PolicyArn": policy},
                )
            )
    for policy in sorted(attached - set(desired.attached)):
        actions.append(
            Action(
                kind="delete",
                resource=f"{arn}#attached/{policy}",
                resource_type=ATTACHED_TYPE,
                reason="the task role does not have it: detach",
                depends_on=depends,
                desired={"RoleName": name, "PolicyArn": policy},
            )
        )
    for policy_name, document in sorted(desired.inline.items()):
        resource = f"{arn}#inline/{policy_name}"
        body = {"RoleName": name, "PolicyName": policy_name, "PolicyDocument": document}
        if policy_name not in inline:
            actions.append(
                Action(
                    kind="create",
                    resource=resource,
                    resource_type=INLINE_TYPE,
                    reason=f"inline policy of {desired.source_role_arn.rsplit('/', 1)[-1]}",
                    depends_on=depends,
                    desired=body,
                )
            )
        elif same_policy(document, inline[policy_name]):
            actions.append(Action(kind="noop", resource=resource, resource_type=INLINE_TYPE, reason="as desired"))
        else:
            actions.append(
                Action(
                    kind="update",
                    resource=resource,
                    resource_type=INLINE_TYPE,
                    reason="document differs from the task role's",
                    changes=(FieldChange(field="PolicyDocument", observed=inline[policy_name], desired=document),),
                    depends_on=depends,
                    desired=body,
                )
            )
    for policy_name in sorted(set(inline) - set(desired.inline)):
        actions.append(
            Action(
                kind="delete",
                resource=f"{arn}#inline/{policy_name}",
                resource_type=INLINE_TYPE,
                reason="the task role does not have it: delete",
                depends_on=depends,
                desired={"RoleName": name, "PolicyName": policy_name},
            )
        )
    return actions
