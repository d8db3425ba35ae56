"""Drift checks on the whole sandbox: clean after the rehearsal, then drift in each of the five areas.

The module migrates staging once (platform, images, the back end shipped to AKS, the DNS
cutover to the ship's external address), then each test changes one thing behind the tool's
back with the SDKs directly (ARM, the Kubernetes API, the ECR registry and moto's ECR, Secrets
Manager, Route 53), expects drift in that area and only there, each with a remedy, and
lets `remediate=True` put it back: the next test starts clean. The teardown rolls the DNS
cutover back and undoes what the tests pushed, so the session's other modules find the
estate as seeded.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from uuid import UUID

import boto3
import pytest
from azure.mgmt.containerregistry import ContainerRegistryManagementClient
from azure.mgmt.containerregistry.models import RegistryUpdateParameters, Sku
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName, FlowRunFilterParentFlowRunId
from typer.testing import CliRunner

from flows.drift import drift_flow
from migration.clouds.azure import ArmGateway
from migration.clouds.kube import AKS_SERVER_SCOPE, write_kubeconfig
from migration.drift import DriftCheckFailed, DriftFound, DriftReport
from migration.platform import ENV_TAG, aks_id
from migration.settings import AzureSettings
from migration.spec import Spec, load_spec
from sandbox.oci import ImageBuilder, ImageSpec, LayerSpec, RegistryPusher
from sandbox.services import ECR_REGISTRY_USER, ecr_registry_password
from sandbox.state import read_state
from tests.conftest import SPEC_PATH, RunningSandbox, fault_tolerant
from tests.flows.test_cutover_flow import artifacts_of, records_of, route53, zone_id

pytestmark = [pytest.mark.sandbox, pytest.mark.usefixtures("prefect_harness")]

ENV = "staging"
SHIP_TIME_SCALE = 0.05
CUTOVER_TIME_SCALE = 0.002
STAGING_API = "staging-api.mmrv.example.com"
JWT_SOURCE = "mmrv/staging/jwt-signing-key"


@dataclass
class Estate:
    sandbox: RunningSandbox
    spec: Spec
    spec_path: str
    url: str  # the ship's external address (the cutover's Azure side)
    deployment: tuple[str, str]  # (namespace, name)
    tmp: Path

    @property
    def values(self) -> dict[str, str]:
        return self.sandbox.values

    def aws(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.values["AWS_ENDPOINT_URL"],
            region_name=self.values["AWS_DEFAULT_REGION"],
            verify=self.values["MMRV_CA_BUNDLE"],
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def arm(self) -> ContainerRegistryManagementClient:
        settings = AzureSettings()
        gateway = ArmGateway(settings, self.spec.environment(ENV).azure.subscription_id)
        return ContainerRegistryManagementClient(
            gateway.credential,
            gateway.subscription_id,
            base_url=settings.arm_url,
            credential_scopes=[settings.arm_scope],
            connection_verify=self.values["MMRV_CA_BUNDLE"],
        )

    def kube(self) -> Any:
        """The official Kubernetes client, from the cluster's kubeconfig as ARM hands it out (as kubectl would)."""
        from kubernetes import client, config

        environment = self.spec.environment(ENV)
        arm = ArmGateway(AzureSettings(), environment.azure.subscription_id)
        path = write_kubeconfig(
            arm.cluster_user_kubeconfig(aks_id(environment)),
            arm.credential.get_token(AKS_SERVER_SCOPE).token,
            self.tmp / "kubeconfig",
        )
        return client.AppsV1Api(config.new_client_from_config(config_file=str(path)))


@pytest.fixture(scope="module")
def estate(own_sandbox: RunningSandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Estate]:
    """Staging migrated as the rehearsal does it, then cut over to the back end at 100 % (its own sandbox)."""
    sandbox = own_sandbox
    from flows.cutover import cutover_flow
    from flows.images import images_flow
    from flows.platform import platform_flow
    from flows.ship import ship_flow

    previous = sandbox.activate()
    spec_path = str(SPEC_PATH)
    with pytest.MonkeyPatch.context() as mp:
        fault_tolerant(mp)
        try:
            platform_flow(spec_path=spec_path, env=ENV)
            images_flow(spec_path=spec_path, env=ENV)
            shipped = ship_flow(spec_path=spec_path, env=ENV, component="backend", time_scale=SHIP_TIME_SCALE)
            assert shipped.evidence is not None and shipped.evidence.url, shipped.render_markdown()
            url = shipped.evidence.url
            host = urlparse(url).hostname
            assert host
            report = cutover_flow(
                spec_path=spec_path,
                env=ENV,
                component="backend",
                azure_target=host,
                azure_url=url,
                time_scale=CUTOVER_TIME_SCALE,
            )
            assert report.outcome in ("complete", "already-complete"), report.message
            deployment = next(a.resource for a in shipped.plan.actions if a.resource_type == "Deployment")
            namespace, name = deployment.split(" ", 1)[1].split("/")
            yield Estate(
                sandbox, load_spec(SPEC_PATH), spec_path, url, (namespace, name), tmp_path_factory.mktemp("drift")
            )
        finally:
            try:
                cutover_flow(
                    spec_path=spec_path, env=ENV, component="backend", rollback=True, time_scale=CUTOVER_TIME_SCALE
                )
            finally:
                RunningSandbox.restore(previous)


def expect_drift(estate: Estate, area: str) -> DriftReport:
    """A drift check that ends Failed with DriftFound naming drift in `area` only, each with a remedy."""
    state = drift_flow(spec_path=estate.spec_path, env=ENV, return_state=True)
    assert state.is_failed(), state
    found = state.result(raise_on_failure=False)
    assert isinstance(found, DriftFound), found
    assert found.exit_code == 3
    report = found.report
    assert report.errors == {}, report.errors
    assert report.drifted_areas() == [area], report.render_markdown()
    assert all(d.remedy and d.differs for d in report.items)
    return report


def remediate(estate: Estate, area: str) -> DriftReport:
    """`remediate=True` puts the area back and the check ends clean."""
    report = drift_flow(spec_path=estate.spec_path, env=ENV, remediate=True, time_scale=SHIP_TIME_SCALE)
    assert report.is_clean, report.render_markdown()
    assert report.remediated and all(r.ok for r in report.remediated), report.remediated
    assert {r.area for r in report.remediated} == {area}, report.remediated
    return report


def latest_run(name: str) -> Any:
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name])))
    return max(runs, key=lambda r: r.created)


def subflow_names(run_id: UUID) -> set[str]:
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run_id]))
        )
    return {r.name for r in runs}


# --- clean -------------------------------------------------------------------------------------


def test_clean_after_the_rehearsal_exit_0_with_a_table_of_every_area(estate: Estate, tmp_path: Path) -> None:
    from migration.cli import app

    out = tmp_path / "drift.json"
    result = CliRunner().invoke(app, ["drift", "--env", ENV, "--spec", estate.spec_path, "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "drift [staging]: clean" in result.output
    payload = json.loads(out.read_text())
    assert payload["clean"] is True
    (report,) = payload["reports"]
    assert report["drift"] == [] and report["errors"] == {}
    assert report["checked"]["azure"] >= 10 and report["checked"]["images"] >= 6
    assert report["checked"]["kubernetes"] >= 3 and report["checked"]["secrets"] == 5 and report["checked"]["dns"] == 2
    assert f"dns: {STAGING_API} (backend): cutover complete (aws 0 / azure 100)" in report["notes"]

    run = latest_run("drift-staging")
    assert run.state is not None and run.state.is_completed()
    assert {
        "drift[staging] azure",
        "drift[staging] images",
        "drift[staging] kubernetes+secrets backend",
        "drift[staging] dns",
    } <= subflow_names(run.id)
    table = artifacts_of(run.id)["drift-staging"]
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    assert [(r["area"], r["status"]) for r in rows] == [
        ("azure", "clean"),
        ("images", "clean"),
        ("kubernetes", "clean"),
        ("secrets", "clean"),
        ("dns", "clean"),
    ]


def test_an_environment_that_cannot_be_read_is_an_error_not_drift(estate: Estate) -> None:
    """Production is not migrated in this module: no cluster to read, which is exit 1, not 3."""
    state = drift_flow(spec_path=estate.spec_path, env="production", return_state=True)
    assert state.is_failed()
    failed = state.result(raise_on_failure=False)
    assert isinstance(failed, DriftCheckFailed) and failed.exit_code == 1, failed
    assert {"kubernetes", "secrets"} <= set(failed.report.errors)
    assert "kubernetes" not in failed.report.drifted_areas()
    # the ship's dry run says what is missing (the platform, or the images when another module built the platform)
    assert re.search(r"run `mmrv-migrate run (platform|images)[^`]*` first", failed.report.errors["kubernetes"])


# --- one area at a time: changed behind the tool's back, found, put back ---------------------------


def test_azure_a_sku_and_a_tag_changed_through_arm(estate: Estate) -> None:
    environment = estate.spec.environment(ENV)
    acr = estate.arm()
    registry = acr.registries.get(environment.azure.resource_group, environment.azure.acr.name)
    assert registry.sku.name == "Standard"
    tags = {**(registry.tags or {}), ENV_TAG: "edited-by-hand"}
    acr.registries.begin_update(
        environment.azure.resource_group,
        environment.azure.acr.name,
        RegistryUpdateParameters(sku=Sku(name="Premium"), tags=tags),
    ).result()

    report = expect_drift(estate, "azure")
    (item,) = report.items
    assert item.resource.endswith(f"/registries/{environment.azure.acr.name}") and item.owned
    assert "sku.name: Premium → Standard" in item.differs
    assert f"tags.{ENV_TAG}: edited-by-hand → staging" in item.differs
    assert item.remedy == "mmrv-migrate run platform --env staging"

    remediate(estate, "azure")
    registry = acr.registries.get(environment.azure.resource_group, environment.azure.acr.name)
    assert registry.sku.name == "Standard" and (registry.tags or {})[ENV_TAG] == ENV


def test_kubernetes_a_label_patched_through_the_api(estate: Estate) -> None:
    namespace, name = estate.deployment
    apps = estate.kube()
    label = "app.kubernetes.io/part-of"
    before = apps.read_namespaced_deployment(name, namespace).metadata.labels[label]
    apps.patch_namespaced_deployment(name, namespace, {"metadata": {"labels": {label: "someone-else"}}})

    report = expect_drift(estate, "kubernetes")
    (item,) = report.items
    assert item.resource == f"Deployment {namespace}/{name}" and item.owned
    assert f"metadata.labels.{label}: someone-else → {before}" in item.differs
    assert item.remedy == "mmrv-migrate run ship --env staging --component backend"

    remediate(estate, "kubernetes")
    assert apps.read_namespaced_deployment(name, namespace).metadata.labels[label] == before


def test_images_a_new_tag_pushed_to_ecr_during_the_coexistence(estate: Estate) -> None:
    """The front end carries its newest images: one pushed on AWS now must follow to ACR."""
    repository = estate.spec.components["frontend"].image_repository  # type: ignore[index]
    tag = f"2.0.{uuid.uuid4().int % 10_000}-drift"
    built = ImageBuilder(7, estate.tmp / "image").build(
        ImageSpec(
            layers=(LayerSpec(name=f"drift-{tag}", size=4096, path="app/drift.bin", created_by="COPY drift.bin"),),
            labels={"org.opencontainers.image.version": tag},
        )
    )
    state = read_state(estate.sandbox.state_dir)
    assert state is not None
    registry_url = state.services["ecr-registry"].direct_url
    assert registry_url
    with RegistryPusher(registry_url, ECR_REGISTRY_USER, ecr_registry_password(estate.spec)) as pusher:
        pusher.push(repository, built, [tag])
    ecr = estate.aws("ecr")
    ecr.put_image(
        repositoryName=repository,
        imageManifest=built.manifest.decode(),
        imageManifestMediaType=built.media_type,
        imageTag=tag,
        imageDigest=built.digest,
    )
    try:
        report = expect_drift(estate, "images")
        (item,) = report.items
        assert item.resource.endswith(f"/{repository}@{built.digest}") and item.owned
        assert "missing in ACR" in item.differs and tag in item.differs
        assert item.remedy == "mmrv-migrate run images --env staging"

        remediate(estate, "images")
    finally:
        ecr.batch_delete_image(repositoryName=repository, imageIds=[{"imageDigest": built.digest}])


def test_secrets_a_secrets_manager_value_changed(estate: Estate) -> None:
    sm = estate.aws("secretsmanager")
    original = sm.get_secret_value(SecretId=JWT_SOURCE)["SecretString"]
    rotated = "rotated-" + uuid.uuid4().hex
    sm.put_secret_value(SecretId=JWT_SOURCE, SecretString=rotated)
    try:
        report = expect_drift(estate, "secrets")
        (item,) = report.items
        assert JWT_SOURCE in item.differs and "compared by hash" in item.differs and item.owned
        assert item.resource.startswith(estate.spec.environment(ENV).azure.key_vault.name + "/secrets/")
        assert item.remedy == "mmrv-migrate run ship --env staging --component backend"
        text = report.model_dump_json() + report.render_markdown()
        assert rotated not in text and original not in text  # names, never values

        remediate(estate, "secrets")
    finally:
        sm.put_secret_value(SecretId=JWT_SOURCE, SecretString=original)
    remediate(estate, "secrets")  # Key Vault follows the original back: the estate as seeded


def test_dns_a_route53_weight_changed_by_hand(estate: Estate, tmp_path: Path) -> None:
    from migration.cli import app

    r53 = route53(estate.sandbox)
    weighted = [rs for rs in records_of(r53, STAGING_API) if rs.get("SetIdentifier")]
    assert {rs["SetIdentifier"]: rs["Weight"] for rs in weighted} == {"aws": 0, "azure": 100}
    by_hand = [{**rs, "Weight": 10 if rs["SetIdentifier"] == "aws" else 90} for rs in weighted]
    r53.change_resource_record_sets(
        HostedZoneId=zone_id(r53),
        ChangeBatch={"Changes": [{"Action": "UPSERT", "ResourceRecordSet": rs} for rs in by_hand]},
    )

    report = expect_drift(estate, "dns")
    (item,) = report.items
    assert item.resource == STAGING_API and item.owned
    assert "A set aws: weight 10 (the cutover left 0); A set azure: weight 90 (the cutover left 100)" in item.differs
    assert "--remediate" in item.remedy and "--rollback" in item.remedy

    out = tmp_path / "drift.json"
    cli = CliRunner().invoke(app, ["drift", "--env", ENV, "--spec", estate.spec_path, "--json", str(out)])
    assert cli.exit_code == 3, cli.output
    payload = json.loads(out.read_text())
    assert payload["clean"] is False
    assert [d["area"] for d in payload["reports"][0]["drift"]] == ["dns"]
    assert STAGING_API in cli.output

    remediate(estate, "dns")
    assert {rs["SetIdentifier"]: rs["Weight"] for rs in records_of(r53, STAGING_API) if rs.get("SetIdentifier")} == {
        "aws": 0,
        "azure": 100,
    }
