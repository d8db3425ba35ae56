"""ACR's token service in the ARM emulator, served in-process over TLS: which roles grant which actions.

No registry runs here: the tokens are read back (their `access` claim) instead of used. The
emulator runs with `operators_own_subscriptions=False`, so even the operator needs a role, which
pins the role table of access.py; the sandbox default (operator = subscription Owner) is covered
by test_acr_auth.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.containerregistry import ContainerRegistryManagementClient
from azure.mgmt.msi import ManagedServiceIdentityClient
from azure.mgmt.resource.resources import ResourceManagementClient

from sandbox.azure.acr.access import Scope, grant, parse_scopes
from sandbox.azure.acr.signing import ensure_signing_files
from sandbox.azure.testing import TEST_SUBSCRIPTION, RunningEmulator, serve_for_tests
from sandbox.azure.tokens import OPERATOR_OID, decode_token, mint_token
from tests.sandbox.acr_scene import ACR_PULL, ACR_PUSH, jwt_claims

pytestmark = pytest.mark.sandbox

SUB = TEST_SUBSCRIPTION
GROUP = "rg-acr-tokens"
LOGIN_SERVER = "127.0.0.1:1"  # a front nobody serves: only the token service is under test
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
CONTRIBUTOR = "b24988ac-6180-42a0-ab88-20f7382dd24c"
SCOPE = "repository:mmrv-backend:pull,push,delete"


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    home = tmp_path_factory.mktemp("acr-tokens")
    files = ensure_signing_files(home)
    with serve_for_tests(
        home,
        registry_hosts={"mmrvunitacr": LOGIN_SERVER},
        acr_signing_key=files.key,
        acr_signing_cert=files.cert,
        operators_own_subscriptions=False,
    ) as running:
        yield running


@pytest.fixture(scope="module")
def registry(emulator: RunningEmulator) -> str:
    emulator.arm_client(ResourceManagementClient, SUB).resource_groups.create_or_update(
        GROUP, {"location": "westeurope"}
    )
    acr = emulator.arm_client(ContainerRegistryManagementClient, SUB)
    made = acr.registries.begin_create(GROUP, "mmrvunitacr", {"location": "westeurope", "sku": {"name": "Basic"}})
    result = made.result()
    assert result.login_server == LOGIN_SERVER
    return str(result.id)


def granted(emulator: RunningEmulator, oid: str, scope: str = SCOPE, **extra: str) -> list[dict[str, Any]]:
    aad = mint_token(oid, emulator.config.tenant_id)
    with httpx.Client(verify=str(emulator.ca_path), trust_env=False) as http:
        form = {"grant_type": "access_token", "service": LOGIN_SERVER, "access_token": aad}
        refresh = http.post(f"{emulator.url}/oauth2/exchange", data=form)
        assert refresh.status_code == 200, refresh.text
        form = {"grant_type": "refresh_token", "service": LOGIN_SERVER, "scope": scope, **extra}
        form["refresh_token"] = refresh.json()["refresh_token"]
        answer = http.post(f"{emulator.url}/oauth2/token", data=form)
    assert answer.status_code == 200, answer.text
    return list(jwt_claims(answer.json()["access_token"])["access"])


def assign(emulator: RunningEmulator, scope: str, principal: str, role: str) -> str:
    name = str(uuid.uuid4())
    role_id = f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{role}"
    body = {"properties": {"roleDefinitionId": role_id, "principalId": principal, "principalType": "ServicePrincipal"}}
    emulator.arm_client(AuthorizationManagementClient, SUB).role_assignments.create(scope, name, body)
    return name


def new_principal(emulator: RunningEmulator, name: str) -> str:
    msi = emulator.arm_client(ManagedServiceIdentityClient, SUB)
    return str(msi.user_assigned_identities.create_or_update(GROUP, name, {"location": "westeurope"}).principal_id)


@pytest.mark.parametrize(
    ("role", "where", "actions"),
    [
        (None, None, []),
        (ACR_PULL, "registry", ["pull"]),
        (ACR_PUSH, "registry", ["pull", "push"]),
        (READER, "group", ["pull"]),  # Reader's */read includes registries/pull/read, as in Azure
        (CONTRIBUTOR, "subscription", ["delete", "pull", "push"]),
    ],
)
def test_roles_grant_their_actions(
    emulator: RunningEmulator, registry: str, role: str | None, where: str | None, actions: list[str]
) -> None:
    principal = new_principal(emulator, f"id-{role or 'none'}"[:40])
    scopes = {
        "registry": registry,
        "group": f"/subscriptions/{SUB}/resourceGroups/{GROUP}",
        "subscription": f"/subscriptions/{SUB}",
    }
    if role and where:
        assign(emulator, scopes[where], principal, role)
    assert granted(emulator, principal) == [{"type": "repository", "name": "mmrv-backend", "actions": actions}]


def test_the_operator_needs_a_role_when_not_treated_as_owner(emulator: RunningEmulator, registry: str) -> None:
    assert granted(emulator, OPERATOR_OID)[0]["actions"] == []
    assign(emulator, f"/subscriptions/{SUB}", OPERATOR_OID, ACR_PUSH)
    assert granted(emulator, OPERATOR_OID)[0]["actions"] == ["pull", "push"]


def test_several_scopes_and_the_catalog(emulator: RunningEmulator, registry: str) -> None:
    principal = new_principal(emulator, "id-catalog")
    assign(emulator, registry, principal, ACR_PULL)
    access = granted(emulator, principal, "repository:a:pull registry:catalog:*")
    assert access == [
        {"type": "repository", "name": "a", "actions": ["pull"]},
        {"type": "registry", "name": "catalog", "actions": ["*"]},
    ]


def test_scope_parsing_and_narrowing() -> None:
    scopes = parse_scopes(["repository:team/app:pull,push repository:x:*", "registry:catalog:*", "garbage"])
    assert [str(s) for s in scopes] == ["repository:team/app:pull,push", "repository:x:*", "registry:catalog:*"]
    assert Scope.parse("repository:host:5000/app:pull") == Scope("repository", "host:5000/app", ("pull",))
    assert grant(scopes, frozenset({"pull"})) == [
        {"type": "repository", "name": "team/app", "actions": ["pull"]},
        {"type": "repository", "name": "x", "actions": ["pull"]},
        {"type": "registry", "name": "catalog", "actions": ["*"]},
    ]


def test_a_token_naming_only_a_client_decodes_without_oid() -> None:
    token = mint_token("", "t", appid="client-1", signed=False)
    claims = decode_token(token)
    assert (claims.oid, claims.appid) == ("", "client-1")
