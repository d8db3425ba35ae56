"""AWS access from AKS without keys, against the sandbox's moto (a real IAM API server).

Each test uses its own copy of the spec under a fresh name and its own issuer URL (shaped
like the sandbox's AKS issuers), so the roles and providers it makes are its own even in
the shared session sandbox. The seeded ECS task role is read, never changed.

Not checked here: STS `assume_role_with_web_identity`. moto answers it for any role ARN,
existing or not, without reading the trust policy or the token, so it could not fail.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from prefect import flow

from migration.clouds.aws import AwsGateway
from migration.errors import PermanentError
from migration.federation import AUDIENCE
from migration.settings import AwsSettings
from migration.spec import load_spec
from sandbox.azure.oidc import issuer_url
from tasks.federation import FederationResult, apply_federation_action, ensure_federation
from tests.conftest import SPEC_PATH, RunningSandbox
from tests.flows.test_inventory_flow import artifacts_of

pytestmark = [pytest.mark.sandbox, pytest.mark.usefixtures("prefect_harness")]

ENV = "staging"
COMPONENT = "backend"
ACCOUNT = "123456789012"
OURS = {"managed-by": "mmrv-migrate", "mmrv-migrate/environment": ENV}


@pytest.fixture(scope="module")
def active(sandbox: RunningSandbox) -> Iterator[RunningSandbox]:
    previous = sandbox.activate()
    try:
        yield sandbox
    finally:
        RunningSandbox.restore(previous)


@pytest.fixture(scope="module")
def iam(active: RunningSandbox) -> Any:
    return boto3.client("iam", verify=active.values["MMRV_CA_BUNDLE"])


@pytest.fixture(scope="module")
def task_role_arn(active: RunningSandbox) -> str:
    """The seeded back end's task role, found as the ship flow finds it: service -> task definition."""
    spec = load_spec(SPEC_PATH)
    where = spec.environment(ENV).aws.backend
    assert where is not None
    aws = AwsGateway(AwsSettings())
    service = aws.get_ecs_service(where.ecs_cluster, where.ecs_service)
    arn = aws.get_task_definition(service.task_definition_arn).task_role_arn
    assert arn
    return arn


class Case:
    """One test's spec copy (fresh name) and issuer (fresh cluster id)."""

    def __init__(self, tmp_path: Path, sandbox: RunningSandbox) -> None:
        raw = yaml.safe_load(SPEC_PATH.read_text())
        self.name = f"fed{uuid.uuid4().hex[:8]}"
        raw["name"] = self.name
        self.spec_path = tmp_path / "spec.yaml"
        self.spec_path.write_text(yaml.safe_dump(raw, sort_keys=False))
        tenant = raw["environments"][0]["azure"]["tenant_id"]
        self.issuer = issuer_url(sandbox.values["MMRV_ARM_URL"], tenant, str(uuid.uuid4()))
        self.url = self.issuer.removeprefix("https://")
        self.role_name = f"{self.name}-{ENV}-{COMPONENT}-aks"
        self.provider_arn = f"arn:aws:iam::{ACCOUNT}:oidc-provider/{self.url}"

    def ensure(self, task_role_arn: str | None, dry_run: bool = False) -> FederationResult:
        return ensure_federation(str(self.spec_path), ENV, COMPONENT, self.issuer, task_role_arn, dry_run=dry_run)

    def trust(self) -> dict[str, Any]:
        return {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Federated": self.provider_arn},
                    "Action": "sts:AssumeRoleWithWebIdentity",
                    "Condition": {
                        "StringEquals": {
                            f"{self.url}:sub": f"system:serviceaccount:{self.name}:{self.name}-{COMPONENT}",
                            f"{self.url}:aud": "sts.amazonaws.com",
                        }
                    },
                }
            ],
        }


@pytest.fixture()
def case(tmp_path: Path, active: RunningSandbox) -> Case:
    return Case(tmp_path, active)


def tags(items: list[dict[str, str]]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in items}


def role_state(iam: Any, name: str) -> dict[str, Any]:
    """Everything about a role the tool could change."""
    role = iam.get_role(RoleName=name)["Role"]
    return {
        "trust": role["AssumeRolePolicyDocument"],
        "tags": tags(role.get("Tags", [])),
        "attached": [p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]],
        "inline": {
            n: iam.get_role_policy(RoleName=name, PolicyName=n)["PolicyDocument"]
            for n in iam.list_role_policies(RoleName=name)["PolicyNames"]
        },
    }


def provider_arns(iam: Any) -> list[str]:
    return [p["Arn"] for p in iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]]


def policies_of(iam: Any, role_arn: str) -> tuple[list[str], dict[str, Any]]:
    name = role_arn.rsplit("/", 1)[-1]
    state = role_state(iam, name)
    return sorted(state["attached"]), state["inline"]


# --- the first run, the rerun -----------------------------------------------------------------


def test_first_run_creates_provider_and_role_with_the_task_roles_policies_and_a_rerun_changes_nothing(
    case: Case, iam: Any, task_role_arn: str
) -> None:
    result = case.ensure(task_role_arn)

    assert result.role_arn == f"arn:aws:iam::{ACCOUNT}:role/{case.role_name}"
    assert result.provider_arn == case.provider_arn
    assert [(a.kind, a.resource_type) for a in result.applied][:2] == [
        ("create", "AWS::IAM::OIDCProvider"),
        ("create", "AWS::IAM::Role"),
    ]
    provider = iam.get_open_id_connect_provider(OpenIDConnectProviderArn=case.provider_arn)
    assert provider["Url"] == case.url
    assert provider["ClientIDList"] == [AUDIENCE]
    assert tags(provider["Tags"]) == {**OURS, "mmrv-migrate/spec": case.name}

    state = role_state(iam, case.role_name)
    assert state["trust"] == case.trust()
    assert state["tags"] == {**OURS, "mmrv-migrate/spec": case.name}
    task_attached, task_inline = policies_of(iam, task_role_arn)
    assert task_inline, "the seeded task role has its app policy inline"
    assert sorted(state["attached"]) == task_attached
    assert state["inline"] == task_inline

    again = case.ensure(task_role_arn)
    assert again.plan.is_empty, again.plan.render_markdown()
    assert again.applied == []
    assert again.role_arn == result.role_arn
    assert role_state(iam, case.role_name) == state
    assert provider_arns(iam).count(case.provider_arn) == 1


def test_managed_policies_are_attached_by_arn_once(case: Case, iam: Any) -> None:
    """A task role with both kinds (the seeded one has inline policies only)."""
    document = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sqs:*", "Resource": "*"}]}
    managed = iam.create_policy(PolicyName=f"{case.name}-queue", PolicyDocument=json.dumps(document))["Policy"]["Arn"]
    source = iam.create_role(
        RoleName=f"{case.name}-task",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}
                ],
            }
        ),
    )["Role"]["Arn"]
    iam.attach_role_policy(RoleName=f"{case.name}-task", PolicyArn=managed)
    iam.put_role_policy(RoleName=f"{case.name}-task", PolicyName="extra", PolicyDocument=json.dumps(document))

    case.ensure(source)
    case.ensure(source)
    state = role_state(iam, case.role_name)
    assert state["attached"] == [managed]
    assert state["inline"] == {"extra": document}


# --- drift --------------------------------------------------------------------------------------


def test_changes_behind_the_tools_back_are_put_back(case: Case, iam: Any, task_role_arn: str) -> None:
    case.ensure(task_role_arn)
    widened = case.trust()
    condition = widened["Statement"][0]["Condition"]
    condition["StringLike"] = {f"{case.url}:sub": f"system:serviceaccount:{case.name}:*"}
    del condition["StringEquals"][f"{case.url}:sub"]
    iam.update_assume_role_policy(RoleName=case.role_name, PolicyDocument=json.dumps(widened))
    iam.put_role_policy(
        RoleName=case.role_name,
        PolicyName="added-by-hand",
        PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        ),
    )
    iam.remove_client_id_from_open_id_connect_provider(OpenIDConnectProviderArn=case.provider_arn, ClientID=AUDIENCE)

    planned = case.ensure(task_role_arn, dry_run=True).plan
    assert {(a.kind, a.resource_type) for a in planned.changes} == {
        ("update", "AWS::IAM::OIDCProvider"),
        ("update", "AWS::IAM::Role"),
        ("delete", "AWS::IAM::RolePolicy"),
    }
    assert role_state(iam, case.role_name)["trust"] == widened  # a dry run changes nothing

    result = case.ensure(task_role_arn)
    assert len(result.applied) == 3
    state = role_state(iam, case.role_name)
    assert state["trust"] == case.trust()
    assert "added-by-hand" not in state["inline"]
    assert iam.get_open_id_connect_provider(OpenIDConnectProviderArn=case.provider_arn)["ClientIDList"] == [AUDIENCE]
    assert case.ensure(task_role_arn).plan.is_empty


# --- ownership ----------------------------------------------------------------------------------


def test_a_role_with_the_name_that_is_not_ours_blocks_and_is_left_untouched(
    case: Case, iam: Any, task_role_arn: str
) -> None:
    foreign_trust = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}],
    }
    iam.create_role(
        RoleName=case.role_name,
        AssumeRolePolicyDocument=json.dumps(foreign_trust),
        Tags=[{"Key": "team", "Value": "x"}],
    )
    before = role_state(iam, case.role_name)

    with pytest.raises(PermanentError) as raised:
        case.ensure(task_role_arn)
    message = str(raised.value)
    assert case.role_name in message and "not managed by mmrv-migrate" in message and "nothing changed" in message
    assert role_state(iam, case.role_name) == before
    assert case.provider_arn not in provider_arns(iam)  # the run refused before its first change

    planned = case.ensure(task_role_arn, dry_run=True).plan
    assert [a.kind for a in planned.blocked] == ["blocked"]


# --- other paths ----------------------------------------------------------------------------------


def test_a_dry_run_plans_and_changes_nothing(case: Case, iam: Any, task_role_arn: str) -> None:
    result = case.ensure(task_role_arn, dry_run=True)
    assert result.applied == []
    assert result.plan.counts()["create"] >= 3
    assert result.role_arn == f"arn:aws:iam::{ACCOUNT}:role/{case.role_name}"
    assert case.provider_arn not in provider_arns(iam)
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.get_role(RoleName=case.role_name)


def test_no_task_role_means_no_federation(case: Case, iam: Any) -> None:
    result = case.ensure(None)
    assert result.role_arn is None and result.provider_arn is None
    assert result.plan.is_empty and result.applied == []
    assert case.provider_arn not in provider_arns(iam)


def test_creates_are_safe_to_repeat_after_a_lost_response(case: Case, iam: Any, task_role_arn: str) -> None:
    """A retry of a create whose response was lost finds the resource and accepts it as ours."""
    plan = case.ensure(task_role_arn, dry_run=True).plan
    region = load_spec(case.spec_path).aws.region
    for action in plan.changes:
        apply_federation_action(action, region)
        apply_federation_action(action, region)  # the retry
    assert provider_arns(iam).count(case.provider_arn) == 1
    assert role_state(iam, case.role_name)["trust"] == case.trust()
    assert case.ensure(task_role_arn).plan.is_empty


def test_inside_a_flow_the_plan_is_published(case: Case, task_role_arn: str) -> None:
    @flow(name="federation-probe")
    def probe() -> FederationResult:
        return case.ensure(task_role_arn)

    state = probe(return_state=True)
    result = state.result()
    assert result.role_arn and result.applied
    published = artifacts_of(state.state_details.flow_run_id)
    assert f"federation-plan-{ENV}-{COMPONENT}" in published
