"""The principal running the tool gets Key Vault Secrets Officer on each vault; its id comes from the token."""

from __future__ import annotations

import base64
import json

import pytest

from migration.clouds.azure import object_id_of_token
from migration.platform import (
    ROLE_KEY_VAULT_SECRETS_OFFICER,
    desired_platform,
    key_vault_id,
    plan_platform,
    role_assignment_id,
)
from migration.spec import Spec, load_spec
from sandbox.azure.tokens import ALL_SANDBOX_AUDIENCES, OPERATOR_OID, mint_token
from tests.conftest import SPEC_PATH
from tests.unit.test_platform_plan import as_arm_reports

DEPLOYER = "3f2e1d0c-9b8a-4766-8544-332211009988"


@pytest.fixture(scope="module")
def spec() -> Spec:
    return load_spec(SPEC_PATH)


@pytest.mark.parametrize("env_name", ["staging", "production"])
def test_the_deployer_gets_secrets_officer_on_the_vault(spec: Spec, env_name: str) -> None:
    env = spec.environment(env_name)
    without = desired_platform(spec, env)
    with_deployer = desired_platform(spec, env, DEPLOYER)
    assert len(with_deployer) == len(without) + 1
    (extra,) = [r for r in with_deployer if r.id not in {w.id for w in without}]
    vault = key_vault_id(env)
    assert extra.id == role_assignment_id(vault, ROLE_KEY_VAULT_SECRETS_OFFICER, f"deployer-{DEPLOYER}")
    assert extra.id.startswith(vault + "/providers/Microsoft.Authorization/roleAssignments/")
    assert extra.depends_on == (vault,)
    props = extra.body["properties"]
    assert props["principalId"] == DEPLOYER
    assert props["roleDefinitionId"].endswith("/roleDefinitions/b86a8fe4-44ce-4948-aee5-eccb2c155cd7")
    assert "principalType" not in props  # a user or a service principal: ARM looks it up
    # deterministic: the same deployer, the same name; another deployer, another assignment
    assert extra.id == desired_platform(spec, env, DEPLOYER)[-1].id
    assert desired_platform(spec, env, OPERATOR_OID)[-1].id != extra.id


def test_plan_with_the_deployer_creates_the_assignment_then_is_empty(spec: Spec) -> None:
    env = spec.environment("staging")
    observed = as_arm_reports(spec, "staging")  # everything but the deployer's assignment
    plan = plan_platform(spec, env, observed, DEPLOYER)
    (change,) = plan.changes
    assert change.kind == "create" and change.resource_type == "Microsoft.Authorization/roleAssignments"
    assert change.desired["properties"]["principalId"] == DEPLOYER
    observed[change.resource] = {"id": change.resource, "properties": {**change.desired["properties"], "x": 1}}
    assert plan_platform(spec, env, observed, DEPLOYER).is_empty


def _jwt(payload: dict[str, object]) -> str:
    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(payload)}.c2lnbmF0dXJl"


def test_the_object_id_comes_from_the_tokens_oid_claim() -> None:
    sandbox_token = mint_token(OPERATOR_OID, "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d", audience=ALL_SANDBOX_AUDIENCES)
    assert object_id_of_token(sandbox_token) == OPERATOR_OID
    # an Entra token's shape (v1, user or app): payload with oid, padding stripped
    assert object_id_of_token(_jwt({"aud": "https://management.azure.com", "oid": DEPLOYER, "idtyp": "app"})) == (
        DEPLOYER
    )
    assert object_id_of_token(_jwt({"aud": "x", "oid": DEPLOYER + "a"})) == DEPLOYER + "a"  # any length pads


@pytest.mark.parametrize("token", ["opaque-token", "a.b", "a.!!!.c", _jwt({"sub": "x"}), "e30.W10.c"])
def test_a_token_that_does_not_say_gives_none(token: str) -> None:
    assert object_id_of_token(token) is None
