"""Shipping the back end to the sandbox's AKS: up with its secrets and AWS role, proven, idempotent, rolled back.

Against the whole sandbox (moto, ECR/ACR registries, ARM + Key Vault, the Kubernetes
emulator with its kubelet, CSI and workloads). The module prepares staging and production
(platform, images incl. the seeded broken tag), then ships and breaks things on purpose.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
import yaml

from migration.errors import PermanentError
from migration.platform import (
    ROLE_ACR_PULL,
    ROLE_KEY_VAULT_SECRETS_USER,
    desired_platform,
)
from migration.spec import load_spec
from tests.conftest import SPEC_PATH, RunningSandbox, secret_values
from tests.flows.test_inventory_flow import artifacts_of, logs_of

pytestmark = [pytest.mark.sandbox, pytest.mark.usefixtures("prefect_harness")]

SCALE = 0.05
BROKEN_TAG = "1.4.1-broken"
PREVIOUS_TAG = "1.3.0"  # referenced by an older task definition revision: in ACR after `run images`


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's spec, plus the broken tag in the images selection (so it is in ACR to be shipped)."""
    raw = yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))
    raw.setdefault("images", {}).setdefault("tags", {})["regex"] = [r".*-broken"]
    path = tmp_path_factory.mktemp("ship-spec") / "mmrv.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def prepared(own_sandbox: RunningSandbox, spec_file: Path) -> RunningSandbox:
    """A sandbox of this module's own with both platforms and their images (incl. the broken tag)."""
    from flows.images import images_flow
    from flows.platform import platform_flow

    for env in ("staging", "production"):
        platform_flow(spec_path=str(spec_file), env=env)
        images_flow(spec_path=str(spec_file), env=env)
    return own_sandbox


def _ship(spec_file: Path, env: str = "staging", **kwargs: Any) -> Any:
    from flows.ship import ship_flow

    return ship_flow(spec_path=str(spec_file), env=env, time_scale=SCALE, **kwargs)


def _kube(spec_file: Path, env: str = "staging") -> Any:
    from tasks.ship import kube_for

    return kube_for(str(spec_file), env)


def _version(url: str) -> dict[str, Any]:
    return dict(httpx.get(url + "/version", timeout=10).json())


@pytest.fixture(scope="module")
def shipped(prepared: RunningSandbox, spec_file: Path) -> Any:
    return _ship(spec_file, return_state=True)


def test_ship_brings_the_backend_up_with_its_secrets_and_aws_role(shipped: Any, spec_file: Path) -> None:
    result = shipped.result()
    assert result.plan.counts()["create"] == len(result.plan.actions) >= 6
    evidence = result.evidence
    assert evidence.failure is None and evidence.url and evidence.smoke_checks >= 2 and not evidence.smoke_failures
    version = _version(evidence.url)
    assert version["digest"] == evidence.digest and version["healthy"] is True
    # the secrets are in Key Vault (names only in the report), and the pods mounted them
    assert result.secrets is not None and result.secrets.all_verified
    assert {s.status for s in result.secrets.secrets} == {"created"}
    # the AWS role exists, trusted for the service account through the cluster's issuer
    assert result.aws_role_arn
    iam = boto3.client("iam")
    role = iam.get_role(RoleName=result.aws_role_arn.rsplit("/", 1)[1])["Role"]
    statement = role["AssumeRolePolicyDocument"]["Statement"][0]
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert "system:serviceaccount:mmrv:mmrv-backend" in json.dumps(statement["Condition"])
    with _kube(spec_file) as kube:
        deployment = kube.get("apps/v1", "Deployment", "mmrv", "mmrv-backend")
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["AWS_ROLE_ARN"] == result.aws_role_arn and env["AWS_WEB_IDENTITY_TOKEN_FILE"]
    artifacts = artifacts_of(shipped.state_details.flow_run_id)
    assert "ship-plan-staging-backend" in artifacts and "ship-report-staging-backend" in artifacts


def test_a_rerun_changes_nothing(shipped: Any, spec_file: Path) -> None:
    before = shipped.result()
    with _kube(spec_file) as kube:
        replica_sets = {rs["metadata"]["name"] for rs in kube.list("apps/v1", "ReplicaSet", "mmrv")}
    again = _ship(spec_file)
    assert again.plan.is_empty and again.applied == []
    assert {s.status for s in again.secrets.secrets} == {"unchanged"}
    assert again.evidence.revision == before.evidence.revision
    with _kube(spec_file) as kube:
        assert {rs["metadata"]["name"] for rs in kube.list("apps/v1", "ReplicaSet", "mmrv")} == replica_sets


def test_the_ship_plan_shows_the_manifest_diff_without_changing_anything(shipped: Any, spec_file: Path) -> None:
    with _kube(spec_file) as kube:
        kube.json_patch(
            "apps/v1",
            "Deployment",
            "mmrv",
            "mmrv-backend",
            [{"op": "replace", "path": "/spec/progressDeadlineSeconds", "value": 7}],
        )
    try:
        planned = _ship(spec_file, dry_run=True)
        updates = [a for a in planned.plan.actions if a.kind == "update"]
        assert [a.resource for a in updates] == ["Deployment mmrv/mmrv-backend"]
        assert any(c.field == "spec.progressDeadlineSeconds" and c.observed == 7 for c in updates[0].changes)
        with _kube(spec_file) as kube:
            assert kube.get("apps/v1", "Deployment", "mmrv", "mmrv-backend")["spec"]["progressDeadlineSeconds"] == 7
    finally:
        _ship(spec_file)  # puts it back (the read-back plan must be empty)


def test_the_broken_tag_rolls_back_and_the_previous_version_keeps_answering(shipped: Any, spec_file: Path) -> None:
    good = shipped.result().evidence
    with pytest.raises(PermanentError) as failure:
        _ship(spec_file, image_tag=BROKEN_TAG)
    message = str(failure.value)
    assert "rolled back to revision" in message and "rollback complete" in message
    assert "crash" in message.lower() or "smoke" in message.lower()
    assert _version(good.url)["digest"] == good.digest
    _ship(spec_file)  # back to the task definition's image: a rerun completes


def _role_assignment(spec_file: Path, env: str, role: str, scope_hint: str) -> str:
    """The id of the platform's `role` assignment on a `scope_hint` resource for the cluster or the backend."""
    spec = load_spec(spec_file)
    environment = spec.environment(env)
    for resource in desired_platform(spec, environment):
        role_id = str((resource.body.get("properties") or {}).get("roleDefinitionId", ""))
        principal = " ".join(resource.depends_on)
        mine = "managedClusters" in principal or environment.azure.identities.workloads["backend"] in principal
        if resource.type.endswith("roleAssignments") and role_id.endswith(role) and scope_hint in resource.id and mine:
            return resource.id
    raise AssertionError(f"no {role} assignment on {scope_hint}")


def _delete_arm(spec_file: Path, env: str, resource_id: str) -> None:
    from migration.clouds.azure import ArmGateway
    from migration.settings import AzureSettings

    environment = load_spec(spec_file).environment(env)
    ArmGateway(AzureSettings(), environment.azure.subscription_id).delete(
        "Microsoft.Authorization/roleAssignments", resource_id
    )


@pytest.mark.parametrize(
    ("role", "scope_hint", "cause"),
    [
        (ROLE_ACR_PULL, "Microsoft.ContainerRegistry", "pulled"),
        (ROLE_KEY_VAULT_SECRETS_USER, "Microsoft.KeyVault", "mounted"),
    ],
    ids=["acr-pull", "key-vault-secrets-user"],
)
def test_a_missing_role_is_a_clear_failure_naming_the_cause(
    shipped: Any, spec_file: Path, role: str, scope_hint: str, cause: str
) -> None:
    from flows.platform import platform_flow

    good = shipped.result().evidence
    assignment = _role_assignment(spec_file, "staging", role, scope_hint)
    _delete_arm(spec_file, "staging", assignment)
    try:
        with pytest.raises(PermanentError) as failure:
            _ship(spec_file, image_tag=PREVIOUS_TAG)  # new pods must pull the image and mount the secrets
        message = str(failure.value)
        assert f"cannot be {cause}" in message, message
        assert "rolled back to revision" in message
        assert _version(good.url)["digest"] == good.digest
    finally:
        platform_flow(spec_path=str(spec_file), env="staging")  # the assignment back
    _ship(spec_file)


def test_production_ships_too(prepared: RunningSandbox, spec_file: Path) -> None:
    result = _ship(spec_file, env="production")
    assert result.evidence.failure is None and not result.evidence.smoke_failures
    assert _version(result.evidence.url)["digest"] == result.evidence.digest
    assert result.secrets.all_verified and result.aws_role_arn and result.aws_role_arn.endswith("-aks")


def test_no_secret_value_in_logs_artifacts_or_results(shipped: Any, prepared: RunningSandbox) -> None:
    values = secret_values(boto3.client("secretsmanager"))
    run_id = shipped.state_details.flow_run_id
    texts = [logs_of(run_id), shipped.result().model_dump_json()]
    texts += [str(a.data) + str(a.description) for a in artifacts_of(run_id).values()]
    for text in texts:
        for value in values:
            assert value not in text


def test_the_sandbox_kubeconfig_works_with_the_official_client(prepared: RunningSandbox, tmp_path: Path) -> None:
    from kubernetes import client, config
    from typer.testing import CliRunner

    from migration.cli import app

    out = tmp_path / "kubeconfig"
    result = CliRunner().invoke(app, ["sandbox", "kubeconfig", "--env", "staging", "--out", str(out)])
    assert result.exit_code == 0, result.output
    api = config.new_client_from_config(config_file=str(out))
    names = [n.metadata.name for n in client.CoreV1Api(api).list_namespace().items]
    assert "kube-system" in names
