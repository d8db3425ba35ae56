"""The images flow on the whole sandbox (`sandbox.manager.up`): ECR -> the sandbox's ACR, every strategy
that needs no daemon, with and without 20 % injected faults.

Each sandbox here is the test module's own (its own state dir), so creating the staging ACR
does not disturb the session sandboxes other flow tests compare. The ACR is created the way
the platform phase creates it (its desired ARM bodies, through the tool's ARM gateway); its
loginServer (`127.0.0.1:PORT`, behind the fault proxy, token auth by the ARM emulator) is
what the flow reads from ARM. Checked at both ends: the manifests byte for byte.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from migration.clouds.azure import ArmGateway
from migration.clouds.logins import client_for
from migration.platform import acr_id, desired_platform, rg_id
from migration.settings import AzureSettings
from migration.spec import load_spec
from tests.conftest import SPEC_PATH, RunningSandbox, fault_tolerant, start_sandbox

pytestmark = [pytest.mark.sandbox, pytest.mark.usefixtures("prefect_harness")]

ENV = "staging"
SPEC = load_spec(SPEC_PATH)


def _with_acr(state_dir: Path, fault_rate: float) -> Iterator[RunningSandbox]:
    from sandbox.manager import down

    running = start_sandbox(state_dir, fault_rate=fault_rate)
    previous = running.activate()
    try:
        os.environ.update({"MMRV_RETRY_BASE_SECONDS": "0.2", "MMRV_REGISTRY_BACKOFF_SECONDS": "0.05"})
        environment = SPEC.environment(ENV)
        arm = ArmGateway(AzureSettings(), environment.azure.subscription_id)
        wanted = {r.id: r for r in desired_platform(SPEC, environment)}
        for resource_id in (rg_id(environment), acr_id(environment)):
            resource = wanted[resource_id]
            arm.put(resource.type, resource.id, resource.body)
        yield running
    finally:
        RunningSandbox.restore(previous)
        for key in ("MMRV_RETRY_BASE_SECONDS", "MMRV_REGISTRY_BACKOFF_SECONDS"):
            os.environ.pop(key, None)
        down(state_dir)


@pytest.fixture(scope="module")
def on_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    yield from _with_acr(tmp_path_factory.mktemp("images-sandbox"), 0.0)


def login_server() -> str:
    environment = SPEC.environment(ENV)
    registry = ArmGateway(AzureSettings(), environment.azure.subscription_id).get(
        "Microsoft.ContainerRegistry/registries", acr_id(environment)
    )
    assert registry is not None
    return str(registry["properties"]["loginServer"])


def assert_same_manifests(ledger_images: list[object]) -> None:
    """Every ledger entry: the target serves the source's manifest bytes, by digest and by every tag."""
    tenant = SPEC.environment(ENV).azure.tenant_id
    for entry in ledger_images:
        source_ref, target_ref = entry.source, entry.target  # type: ignore[attr-defined]
        source_host, _, rest = source_ref.partition("/")
        target_host, _, target_rest = target_ref.partition("/")
        repo, _, digest = rest.partition("@")
        with (
            client_for(source_host, region=SPEC.aws.region) as source,
            client_for(target_host, tenant=tenant) as target,
        ):
            assert target.get_manifest(repo, digest).data == source.get_manifest(repo, digest).data
            assert target_rest == rest
            for tag in entry.tags:  # type: ignore[attr-defined]
                assert target.manifest_digest(repo, tag) == digest


def test_import_on_the_sandbox_acr_then_copy_finds_nothing_to_do(on_sandbox: RunningSandbox) -> None:
    from flows.images import images_flow

    result = images_flow(spec_path=str(SPEC_PATH), env=ENV, strategy="import")
    ledger = result.ledger
    assert ledger is not None and ledger.complete, ledger and ledger.render_markdown()
    assert ledger.target_registry == login_server()
    assert len(ledger.images) == 6 and {e.strategy for e in ledger.images} == {"import"}
    assert all(e.verified for e in ledger.images)
    assert_same_manifests(ledger.images)

    again = images_flow(spec_path=str(SPEC_PATH), env=ENV, strategy="copy")
    assert again.plan.plan.is_empty and again.ledger is not None and again.ledger.bytes_moved == 0


def test_copy_and_import_complete_and_verify_under_twenty_percent_faults(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.images import images_flow

    fault_tolerant(monkeypatch)  # the session's other fixtures may have shrunk the retry budget

    state_dir = tmp_path_factory.mktemp("images-faulty")
    for running in _with_acr(state_dir, 0.2):
        result = images_flow(spec_path=str(SPEC_PATH), env=ENV, strategy="copy")
        assert result.ledger is not None and result.ledger.complete
        assert result.ledger.bytes_moved == result.plan.unique_bytes
        assert_same_manifests(result.ledger.images)

        # the same through ACR's import, into an emptied ACR (its registry keeps no cache)
        shutil.rmtree(state_dir / SPEC.environment(ENV).azure.acr.name.lower() / "data" / "docker")
        imported = images_flow(spec_path=str(SPEC_PATH), env=ENV, strategy="import")
        assert imported.ledger is not None and imported.ledger.complete
        assert {e.strategy for e in imported.ledger.images} <= {"import", "copy"}
        assert_same_manifests(imported.ledger.images)

        routes = running.stats()
        faults = sum(int(r["faults_total"]) for name, r in routes.items() if "acr" in name or "ecr" in name)  # type: ignore[call-overload,index]
        print(f"faults injected on the registries: {faults}")
        assert faults > 0
