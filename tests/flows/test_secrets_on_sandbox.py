"""The secrets phase against the whole sandbox: Secrets Manager (moto) -> Key Vault (the ARM emulator's).

The seeded staging back end's task definition reads five secrets, three of them JSON keys of
`mmrv/staging/db`. Proves: every one is copied (JSON keys split by default) and verified; a
rerun changes nothing and writes no new version; a changed Secrets Manager value is an
update; without Key Vault Secrets Officer the run fails naming the role and nothing is
half-written; no value appears in logs (debug included), the report or the artifacts.

Each run names its Key Vault secrets with a fresh prefix (the spec's `secrets.names`), so the
session's other users of the sandbox never see them and they never see theirs.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
import yaml
from azure.keyvault.secrets import SecretClient
from prefect import flow

from migration.clouds.azure import ArmGateway, StaticTokenCredential
from migration.errors import PermanentError
from migration.plan import Plan
from migration.platform import ROLE_KEY_VAULT_SECRETS_OFFICER as OFFICER
from migration.platform import ROLE_KEY_VAULT_SECRETS_USER, key_vault_id, role_assignment_id, role_definition_id
from migration.secrets import SecretsReport
from migration.settings import AzureSettings
from migration.spec import Spec, load_spec
from migration.translate import SecretCopy, options_for, translate_ecs
from sandbox.azure.tokens import OPERATOR_OID
from tasks.secrets import plan_secrets_task, sync_secrets
from tests.conftest import SPEC_PATH, RunningSandbox, secret_values
from tests.flows.test_inventory_flow import artifacts_of, logs_of

pytestmark = [pytest.mark.sandbox, pytest.mark.usefixtures("prefect_harness")]

ENV = "staging"
ROLE_ASSIGNMENTS = "Microsoft.Authorization/roleAssignments"


@flow(name="secrets-under-test", flow_run_name="secrets-{env}")
def secrets_flow(
    spec_path: str, env: str, copies: list[SecretCopy], vault_uri: str, dry_run: bool = False
) -> SecretsReport:
    return sync_secrets(spec_path, env, copies, vault_uri, dry_run)


@flow(name="secrets-drift-under-test")
def drift_flow(spec_path: str, env: str, copies: list[SecretCopy], vault_uri: str) -> Plan:
    return plan_secrets_task(spec_path, env, copies, vault_uri)


@dataclass
class Scene:
    sandbox: RunningSandbox
    spec_path: str
    spec: Spec
    vault_uri: str
    copies: list[SecretCopy]
    prefix: str

    @property
    def officer_assignment(self) -> str:
        vault = key_vault_id(self.spec.environment(ENV))
        return role_assignment_id(vault, OFFICER, f"deployer-{OPERATOR_OID}")

    def secrets_manager(self) -> Any:
        values = self.sandbox.values
        return boto3.client(
            "secretsmanager",
            endpoint_url=values["AWS_ENDPOINT_URL"],
            region_name=values["AWS_DEFAULT_REGION"],
            verify=values["MMRV_CA_BUNDLE"],
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def vault(self) -> SecretClient:
        values = self.sandbox.values
        return SecretClient(
            self.vault_uri,
            StaticTokenCredential(values["MMRV_AZURE_ACCESS_TOKEN"]),
            verify_challenge_resource=False,
            connection_verify=values["MMRV_CA_BUNDLE"],
        )

    def arm(self) -> ArmGateway:
        return ArmGateway(AzureSettings(), self.spec.environment(ENV).azure.subscription_id)

    def expected_values(self) -> dict[str, str]:
        """What each Key Vault secret must hold: the Secrets Manager value, or its JSON key."""
        sm = self.secrets_manager()
        out = {}
        for c in self.copies:
            text = sm.get_secret_value(SecretId=c.source)["SecretString"]
            out[c.key_vault_secret] = str(json.loads(text)[c.json_key]) if c.json_key else text
        return out

    def versions(self) -> dict[str, int]:
        client = self.vault()
        return {c.key_vault_secret: sum(1 for _ in client.list_properties_of_secret_versions(c.key_vault_secret))
                for c in self.copies}  # fmt: skip

    def run(self, dry_run: bool = False) -> tuple[SecretsReport, uuid.UUID]:
        state = secrets_flow(self.spec_path, ENV, self.copies, self.vault_uri, dry_run, return_state=True)
        return state.result(), state.state_details.flow_run_id


@pytest.fixture(scope="module")
def scene(sandbox: RunningSandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    from flows.platform import platform_flow

    previous = sandbox.activate()
    try:
        prefix = "t" + uuid.uuid4().hex[:6]
        data = yaml.safe_load(SPEC_PATH.read_text())
        data["components"]["backend"]["secrets"] = {
            "names": {
                "mmrv/staging/db": f"{prefix}-db",
                "mmrv/staging/jwt-signing-key": f"{prefix}-jwt",
                "mmrv/staging/third-party-api-key": f"{prefix}-api-key",
            }
        }
        spec_file = tmp_path_factory.mktemp("secrets-spec") / "mmrv.yaml"
        spec_file.write_text(yaml.safe_dump(data))
        spec = load_spec(spec_file)

        platform = platform_flow(spec_path=str(spec_file), env=ENV)  # the vault, and Secrets Officer for us
        assert platform.outputs is not None and platform.outputs.key_vault_uri
        copies = _backend_copies(sandbox, spec)
        yield Scene(sandbox, str(spec_file), spec, platform.outputs.key_vault_uri, copies, prefix)
    finally:
        RunningSandbox.restore(previous)


def _backend_copies(sandbox: RunningSandbox, spec: Spec) -> list[SecretCopy]:
    """The seeded back end's running task definition, translated with the spec's options: its secrets."""
    values = sandbox.values
    ecs = boto3.client(
        "ecs",
        endpoint_url=values["AWS_ENDPOINT_URL"],
        region_name=values["AWS_DEFAULT_REGION"],
        verify=values["MMRV_CA_BUNDLE"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    source = spec.environment(ENV).aws.backend
    assert source is not None
    service = ecs.describe_services(cluster=source.ecs_cluster, services=[source.ecs_service])["services"][0]
    task_definition = ecs.describe_task_definition(taskDefinition=service["taskDefinition"])
    options = options_for(spec, ENV, "backend").model_copy(update={"keep_tags": True})
    return list(translate_ecs(task_definition, None, options).secrets)


def _every_value(scene: Scene) -> list[str]:
    """Every seeded Secrets Manager value of the sandbox, and each JSON member long enough to be telling."""
    return secret_values(scene.secrets_manager())


def _assert_no_value(scene: Scene, extra: list[str], **haystacks: str) -> None:
    secrets = _every_value(scene) + extra
    for where, text in haystacks.items():
        leaked = [s[:4] + "..." for s in secrets if s in text]
        assert not leaked, f"secret values found in {where}: {leaked}"


# --- the tests (in order: each leaves the vault as the next expects) ----------------------------


def test_every_secret_is_copied_split_and_verified_then_a_rerun_writes_nothing(
    scene: Scene, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # botocore logs response bodies at debug: the gateway must drop those
    p = scene.prefix
    assert sorted(c.key_vault_secret for c in scene.copies) == [
        f"{p}-api-key",
        f"{p}-db-host",
        f"{p}-db-password",
        f"{p}-db-username",
        f"{p}-jwt",
    ]
    assert {c.json_key for c in scene.copies} == {None, "host", "password", "username"}

    dry, dry_run_id = scene.run(dry_run=True)
    assert {r.status for r in dry.secrets} == {"would-create"}
    assert not any(True for _ in scene.vault().list_properties_of_secrets() if _.name.startswith(p))

    first, first_id = scene.run()
    assert sorted((r.name, r.status, r.verified) for r in first.secrets) == [
        (c, "created", True) for c in sorted(c.key_vault_secret for c in scene.copies)
    ]
    db = next(r for r in first.secrets if r.name == f"{p}-db-password")
    assert (db.source, db.json_key) == ("mmrv/staging/db", "password")

    client = scene.vault()
    expected = scene.expected_values()
    for name, value in expected.items():
        secret = client.get_secret(name)
        assert secret.value == value, name
        assert secret.properties.tags is not None
        assert secret.properties.tags["managed-by"] == "mmrv-migrate"
        assert secret.properties.tags["source"].startswith("secretsmanager:mmrv/staging/")
    assert client.get_secret(f"{p}-db-password").properties.tags["source"] == (  # type: ignore[index]
        "secretsmanager:mmrv/staging/db:password"
    )
    assert scene.versions() == dict.fromkeys(expected, 1)

    again, again_id = scene.run()
    assert {(r.status, r.verified) for r in again.secrets} == {("unchanged", True)}
    assert scene.versions() == dict.fromkeys(expected, 1)  # no new version for an unchanged value
    drift = drift_flow(scene.spec_path, ENV, scene.copies, scene.vault_uri)  # the drift check: an empty plan
    assert drift.is_empty, drift.render_markdown()

    haystacks = {"caplog": caplog.text}
    for label, run_id in (("dry run", dry_run_id), ("first run", first_id), ("rerun", again_id)):
        haystacks[f"{label} logs"] = logs_of(run_id)
        haystacks[f"{label} artifacts"] = json.dumps([a.model_dump(mode="json") for a in artifacts_of(run_id).values()])
    haystacks |= {"reports": first.model_dump_json() + again.model_dump_json() + dry.model_dump_json()}
    haystacks |= {"markdown": first.render_markdown() + drift.model_dump_json()}
    assert "secrets-report-staging" in haystacks["first run artifacts"]
    assert f"{p}-db-password" in haystacks["first run artifacts"]  # known by name ...
    _assert_no_value(scene, list(expected.values()), **haystacks)  # ... never by value
    hashes = [h for h in (_sha(v) for v in expected.values()) if any(h in t for t in haystacks.values())]
    assert not hashes, "a value's hash surfaced"


def _sha(value: str) -> str:
    import hashlib

    return hashlib.sha256(value.encode()).hexdigest()


def test_a_changed_secrets_manager_value_is_an_update(scene: Scene, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    sm = scene.secrets_manager()
    jwt = next(c for c in scene.copies if c.key_vault_secret.endswith("-jwt"))
    original = sm.get_secret_value(SecretId=jwt.source)["SecretString"]
    rotated = "rotated-" + uuid.uuid4().hex
    before = scene.versions()
    sm.put_secret_value(SecretId=jwt.source, SecretString=rotated)
    caplog.clear()  # the test's own boto3 call logged the new value; the tool's run must not
    try:
        report, _ = scene.run()
        statuses = {r.name: (r.status, r.verified) for r in report.secrets}
        assert statuses.pop(jwt.key_vault_secret) == ("updated", True)
        assert set(statuses.values()) == {("unchanged", True)}
        assert scene.vault().get_secret(jwt.key_vault_secret).value == rotated
        assert scene.versions() == {**before, jwt.key_vault_secret: before[jwt.key_vault_secret] + 1}
        assert rotated not in caplog.text and rotated not in report.model_dump_json()
    finally:
        sm.put_secret_value(SecretId=jwt.source, SecretString=original)
        scene.run()  # the vault follows back


def test_without_secrets_officer_the_run_fails_naming_the_role_and_writes_nothing(scene: Scene) -> None:
    from flows.platform import platform_flow

    arm = scene.arm()
    env = scene.spec.environment(ENV)
    vault = key_vault_id(env)
    api_key = next(c for c in scene.copies if c.key_vault_secret.endswith("-api-key"))
    sm = scene.secrets_manager()
    original = sm.get_secret_value(SecretId=api_key.source)["SecretString"]
    # something to write: a new value for one secret
    sm.put_secret_value(SecretId=api_key.source, SecretString="sk_live_" + uuid.uuid4().hex)
    before = scene.versions()
    reader = role_assignment_id(vault, ROLE_KEY_VAULT_SECRETS_USER, "test-operator-reader")
    try:
        arm.delete(ROLE_ASSIGNMENTS, scene.officer_assignment)

        # no role at all: the plan's first read is refused, before anything is written
        with pytest.raises(PermanentError) as info:
            scene.run()
        message = str(info.value)
        assert "Key Vault Secrets Officer" in message and env.azure.key_vault.name in message
        assert scene.prefix in message and "403" in message

        # read but not write (Secrets User only): the plan reads, the first write is refused
        arm.put(
            ROLE_ASSIGNMENTS,
            reader,
            {
                "properties": {
                    "roleDefinitionId": role_definition_id(env, ROLE_KEY_VAULT_SECRETS_USER),
                    "principalId": OPERATOR_OID,
                }
            },
        )
        with pytest.raises(PermanentError) as info:
            scene.run()
        message = str(info.value)
        assert "Key Vault Secrets Officer" in message and api_key.key_vault_secret in message
        assert "write" in message
        assert scene.versions() == before  # nothing half-written
    finally:
        arm.delete(ROLE_ASSIGNMENTS, reader)
        sm.put_secret_value(SecretId=api_key.source, SecretString=original)
        platform = platform_flow(spec_path=scene.spec_path, env=ENV)  # the assignment comes back
        assert scene.officer_assignment in platform.applied
    report, _ = scene.run()
    assert {(r.status, r.verified) for r in report.secrets} == {("unchanged", True)}
    assert scene.versions() == before
