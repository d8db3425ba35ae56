"""The federation planner: names, the trust policy, the policies carried over, and every kind of action."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from migration.errors import InputError, PermanentError
from migration.federation import (
    AUDIENCE,
    ROLE_NAME_MAX,
    DesiredFederation,
    ObservedFederation,
    ObservedProvider,
    ObservedRole,
    desired_federation,
    normalise_policy,
    plan_federation,
    provider_arn,
    provider_url,
    role_name,
    same_policy,
)
from migration.inventory import IamPolicy, IamRole
from migration.spec import Spec, load_spec
from tests.conftest import SPEC_PATH

ISSUER = "https://westeurope.oic.prod-aks.azure.com/0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d/5d6e7f80-1a2b-4c3d-8e9f-a0b1c2d3e4f5/"
ISSUER_URL = ISSUER.removeprefix("https://")
ACCOUNT = "123456789012"
MANAGED = "arn:aws:iam::123456789012:policy/mmrv-backend-extra"
APP_POLICY: dict[str, Any] = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": ["sqs:SendMessage", "sqs:ReceiveMessage"], "Resource": "arn:aws:sqs:::q"},
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"},
    ],
}
TASK_ROLE = IamRole(
    purpose="task",
    name="mmrv-backend-staging-task",
    arn="arn:aws:iam::123456789012:role/mmrv-backend-staging-task",
    policies=[
        IamPolicy(name="app-data-access", kind="inline", document=APP_POLICY),
        IamPolicy(name="mmrv-backend-extra", kind="attached", arn=MANAGED, document={"Version": "2012-10-17"}),
    ],
)
OURS = {"managed-by": "mmrv-migrate", "mmrv-migrate/spec": "mmrv", "mmrv-migrate/environment": "staging"}


@pytest.fixture(scope="module")
def spec() -> Spec:
    return load_spec(SPEC_PATH)


@pytest.fixture()
def desired(spec: Spec) -> DesiredFederation:
    return desired_federation(spec, "staging", "backend", ISSUER, TASK_ROLE)


def as_iam_has(d: DesiredFederation) -> ObservedFederation:
    """What IAM reports after a successful apply."""
    return ObservedFederation(
        provider=ObservedProvider(arn=d.provider_arn, url=d.provider_url, client_ids=[AUDIENCE], tags=d.tags),
        role=ObservedRole(
            name=d.role_name,
            arn=d.role_arn,
            trust_policy=copy.deepcopy(d.trust_policy),
            tags=d.tags,
            attached=list(d.attached),
            inline=copy.deepcopy(d.inline),
        ),
    )


def kinds(plan: Any) -> dict[str, str]:
    return {a.resource_type + " " + a.resource.rsplit("/", 1)[-1]: a.kind for a in plan.actions}


# --- names ------------------------------------------------------------------------------------


def test_provider_url_and_arn_keep_the_issuer_as_aks_reports_it() -> None:
    assert provider_url(ISSUER) == ISSUER_URL  # scheme gone, trailing slash kept (it is in the tokens' iss)
    assert provider_arn(ACCOUNT, ISSUER) == f"arn:aws:iam::{ACCOUNT}:oidc-provider/{ISSUER_URL}"


@pytest.mark.parametrize("issuer", ["http://oidc.example/x/", "oidc.example/x", "https://oidc.example/x?y=1", ""])
def test_an_issuer_that_is_not_https_is_an_input_error(issuer: str) -> None:
    with pytest.raises(InputError, match="https URL"):
        provider_url(issuer)


def test_role_name_is_readable_when_it_fits() -> None:
    assert role_name("mmrv", "staging", "backend") == "mmrv-staging-backend-aks"


def test_long_role_names_are_cut_to_64_deterministically_and_stay_distinct() -> None:
    spec_name = "a-very-long-specification-name-for-the-mmrv-application"
    first = role_name(spec_name, "production-eu-west", "backend")
    assert len(first) <= ROLE_NAME_MAX
    assert first.endswith("-aks")
    assert first == role_name(spec_name, "production-eu-west", "backend")  # same inputs, same name
    other = role_name(spec_name, "production-eu-west", "frontend")
    assert other != first and len(other) <= ROLE_NAME_MAX
    exactly = role_name("s" * 30, "e" * 15, "c" * 15)  # 30+1+15+1+15 + 4 = 66: cut
    assert len(exactly) == ROLE_NAME_MAX


# --- desired ------------------------------------------------------------------------------------


def test_trust_policy_trusts_exactly_the_components_service_account(desired: DesiredFederation) -> None:
    assert desired.trust_policy == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": f"arn:aws:iam::{ACCOUNT}:oidc-provider/{ISSUER_URL}"},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {
                        f"{ISSUER_URL}:sub": "system:serviceaccount:mmrv:mmrv-backend",
                        f"{ISSUER_URL}:aud": "sts.amazonaws.com",
                    }
                },
            }
        ],
    }
    assert desired.role_arn == f"arn:aws:iam::{ACCOUNT}:role/mmrv-staging-backend-aks"
    assert desired.tags == OURS


def test_the_task_roles_policies_are_carried_over(desired: DesiredFederation) -> None:
    assert desired.attached == [MANAGED]
    assert desired.inline == {"app-data-access": APP_POLICY}


def test_the_partition_follows_the_task_role(spec: Spec) -> None:
    china = TASK_ROLE.model_copy(update={"arn": "arn:aws-cn:iam::123456789012:role/t", "policies": []})
    d = desired_federation(spec, "staging", "backend", ISSUER, china)
    assert d.provider_arn.startswith("arn:aws-cn:iam::") and d.role_arn.startswith("arn:aws-cn:iam::")
    assert d.trust_policy["Statement"][0]["Principal"]["Federated"] == d.provider_arn


def test_an_unreadable_inline_policy_is_refused_not_dropped(spec: Spec) -> None:
    broken = TASK_ROLE.model_copy(
        update={"policies": [IamPolicy(name="odd", kind="inline", document={"unparsed": "%7B"})]}
    )
    with pytest.raises(PermanentError, match="inline policy odd"):
        desired_federation(spec, "staging", "backend", ISSUER, broken)


def test_unknown_component_or_environment_is_an_input_error(spec: Spec) -> None:
    with pytest.raises(InputError, match="unknown component"):
        desired_federation(spec, "staging", "worker", ISSUER, TASK_ROLE)
    with pytest.raises(InputError):
        desired_federation(spec, "nowhere", "backend", ISSUER, TASK_ROLE)


# --- policy comparison -----------------------------------------------------------------------


def test_policies_compare_as_iam_does() -> None:
    reordered = {
        "Version": "2012-10-17",
        "Statement": [
            {"Resource": ["arn:aws:s3:::b/*"], "Action": ["s3:GetObject"], "Effect": "Allow"},
            {"Effect": "Allow", "Action": ["sqs:ReceiveMessage", "sqs:SendMessage"], "Resource": "arn:aws:sqs:::q"},
        ],
    }
    assert same_policy(APP_POLICY, reordered)
    assert same_policy(APP_POLICY, json.dumps(reordered))  # a JSON string parses the same
    single = {"Version": "2012-10-17", "Statement": APP_POLICY["Statement"][1]}  # a lone statement, not a list
    assert normalise_policy(single) == normalise_policy({"Version": "2012-10-17", "Statement": [single["Statement"]]})


def test_policies_that_differ_in_substance_do_not_compare_equal() -> None:
    wider = copy.deepcopy(APP_POLICY)
    wider["Statement"][1]["Action"] = "s3:*"
    assert not same_policy(APP_POLICY, wider)
    denied = copy.deepcopy(APP_POLICY)
    denied["Statement"][0]["Effect"] = "Deny"
    assert not same_policy(APP_POLICY, denied)


# --- the plan ------------------------------------------------------------------------------------


def test_nothing_there_creates_provider_role_and_policies_in_order(desired: DesiredFederation) -> None:
    plan = plan_federation(desired, ObservedFederation())
    assert [(a.kind, a.resource_type) for a in plan.actions] == [
        ("create", "AWS::IAM::OIDCProvider"),
        ("create", "AWS::IAM::Role"),
        ("create", "AWS::IAM::RolePolicyAttachment"),
        ("create", "AWS::IAM::RolePolicy"),
    ]
    provider, role, attach, inline = plan.actions
    assert provider.desired == {"Url": ISSUER, "ClientIDList": [AUDIENCE], "Tags": OURS}
    assert role.depends_on == (desired.provider_arn,)
    assert role.desired["AssumeRolePolicyDocument"] == desired.trust_policy
    assert role.desired["Tags"] == OURS
    assert attach.desired == {"RoleName": desired.role_name, "PolicyArn": MANAGED}
    assert inline.desired == {
        "RoleName": desired.role_name,
        "PolicyName": "app-data-access",
        "PolicyDocument": APP_POLICY,
    }
    assert attach.depends_on == inline.depends_on == (desired.role_arn,)
    assert plan.phase == "federation" and plan.environment == "staging"


def test_what_iam_has_after_apply_plans_nothing(desired: DesiredFederation) -> None:
    plan = plan_federation(desired, as_iam_has(desired))
    assert plan.is_empty, plan.render_markdown()
    assert {a.kind for a in plan.actions} == {"noop"}


def test_a_trust_policy_that_drifted_is_put_back(desired: DesiredFederation) -> None:
    observed = as_iam_has(desired)
    assert observed.role is not None
    widened = copy.deepcopy(desired.trust_policy)
    widened["Statement"][0]["Condition"]["StringLike"] = widened["Statement"][0]["Condition"].pop("StringEquals")
    widened["Statement"][0]["Condition"]["StringLike"][f"{ISSUER_URL}:sub"] = "system:serviceaccount:mmrv:*"
    drifted = observed.model_copy(update={"role": observed.role.model_copy(update={"trust_policy": widened})})
    plan = plan_federation(desired, drifted)
    (update,) = plan.changes
    assert update.kind == "update" and update.resource_type == "AWS::IAM::Role"
    assert update.desired == {"RoleName": desired.role_name, "AssumeRolePolicyDocument": desired.trust_policy}
    assert update.changes[0].field == "AssumeRolePolicyDocument"
    assert update.changes[0].observed == widened
    assert "drifted" in update.reason


def test_the_same_trust_written_differently_is_not_drift(desired: DesiredFederation) -> None:
    observed = as_iam_has(desired)
    assert observed.role is not None
    statement = copy.deepcopy(desired.trust_policy["Statement"][0])
    statement["Action"] = [statement["Action"]]
    statement["Condition"]["StringEquals"] = dict(reversed(list(statement["Condition"]["StringEquals"].items())))
    same = {"Statement": statement, "Version": "2012-10-17"}
    plan = plan_federation(
        desired, observed.model_copy(update={"role": observed.role.model_copy(update={"trust_policy": same})})
    )
    assert plan.is_empty


def test_a_role_with_the_name_that_is_not_ours_is_blocked(desired: DesiredFederation) -> None:
    observed = as_iam_has(desired)
    assert observed.role is not None
    foreign = observed.role.model_copy(update={"tags": {"team": "payments"}, "attached": [], "inline": {}})
    plan = plan_federation(desired, observed.model_copy(update={"role": foreign}))
    assert [a.kind for a in plan.actions] == ["noop", "blocked"]  # no policy actions on a role that is not ours
    (blocked,) = plan.blocked
    assert blocked.resource == desired.role_arn
    assert "mmrv-staging-backend-aks" in blocked.reason and "not managed by mmrv-migrate" in blocked.reason
    assert not plan.is_empty and not plan.changes


def test_a_role_of_another_spec_is_not_ours(desired: DesiredFederation) -> None:
    observed = as_iam_has(desired)
    assert observed.role is not None
    other = observed.role.model_copy(update={"tags": {**OURS, "mmrv-migrate/spec": "other"}})
    plan = plan_federation(desired, observed.model_copy(update={"role": other}))
    assert [a.kind for a in plan.blocked] == ["blocked"]


def test_policies_follow_the_task_role(desired: DesiredFederation) -> None:
    observed = as_iam_has(desired)
    assert observed.role is not None
    stale = copy.deepcopy(APP_POLICY)
    stale["Statement"].pop()
    role = observed.role.model_copy(
        update={
            "attached": ["arn:aws:iam::aws:policy/AdministratorAccess"],
            "inline": {"app-data-access": stale, "leftover": {"Version": "2012-10-17", "Statement": []}},
        }
    )
    plan = plan_federation(desired, observed.model_copy(update={"role": role}))
    by_resource = {a.resource.split("#", 1)[-1]: a for a in plan.changes}
    assert set(by_resource) == {
        f"attached/{MANAGED}",
        "attached/arn:aws:iam::aws:policy/AdministratorAccess",
        "inline/app-data-access",
        "inline/leftover",
    }
    assert by_resource[f"attached/{MANAGED}"].kind == "create"
    assert by_resource["attached/arn:aws:iam::aws:policy/AdministratorAccess"].kind == "delete"
    assert by_resource["inline/app-data-access"].kind == "update"
    assert by_resource["inline/app-data-access"].desired["PolicyDocument"] == APP_POLICY
    assert by_resource["inline/leftover"].kind == "delete"


def test_our_provider_without_the_audience_gets_it_added(desired: DesiredFederation) -> None:
    observed = as_iam_has(desired)
    assert observed.provider is not None
    provider = observed.provider.model_copy(update={"client_ids": ["api://AzureADTokenExchange"]})
    plan = plan_federation(desired, observed.model_copy(update={"provider": provider}))
    (update,) = plan.changes
    assert update.kind == "update" and update.resource_type == "AWS::IAM::OIDCProvider"
    assert update.desired == {"OpenIDConnectProviderArn": provider.arn, "ClientID": AUDIENCE}


def test_a_foreign_provider_is_used_when_it_accepts_the_audience(desired: DesiredFederation) -> None:
    observed = as_iam_has(desired)
    assert observed.provider is not None
    foreign = observed.provider.model_copy(update={"tags": {}, "client_ids": ["other", AUDIENCE]})
    plan = plan_federation(desired, observed.model_copy(update={"provider": foreign}))
    assert plan.is_empty
    assert "used as it is" in plan.actions[0].reason


def test_a_foreign_provider_without_the_audience_is_blocked(desired: DesiredFederation) -> None:
    observed = as_iam_has(desired)
    assert observed.provider is not None
    foreign = observed.provider.model_copy(update={"tags": {}, "client_ids": ["other"]})
    plan = plan_federation(desired, observed.model_copy(update={"provider": foreign}))
    (blocked,) = plan.blocked
    assert blocked.resource == foreign.arn and AUDIENCE in blocked.reason
    assert not plan.changes


def test_the_trust_names_the_provider_iam_has(desired: DesiredFederation) -> None:
    """IAM may spell the host of an existing provider differently: trust the ARN that exists."""
    upper = desired.provider_arn.replace("westeurope.oic", "WESTEUROPE.oic")
    plan = plan_federation(
        desired,
        ObservedFederation(provider=ObservedProvider(arn=upper, url="", client_ids=[AUDIENCE], tags=OURS)),
    )
    role = plan.actions[1]
    assert role.kind == "create"
    assert role.desired["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]["Federated"] == upper
