"""The platform flow against the ARM emulator over TLS, through the official SDKs.

Covers: everything a create on an empty subscription; rerun changes nothing; drift made
behind the tool's back shows as an update and is repaired; a resource the tool does not
own blocks the run before anything changes; a real process kill part-way, then a rerun
that completes with no duplicates.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.containerregistry import ContainerRegistryManagementClient
from azure.mgmt.resource.resources import ResourceManagementClient

from migration.errors import PermanentError
from migration.platform import acr_id, desired_platform, rg_id
from migration.spec import Spec, load_spec
from sandbox.azure.config import LroSettings
from sandbox.azure.testing import RunningEmulator, serve_for_tests
from sandbox.azure.tokens import ALL_SANDBOX_AUDIENCES, mint_token
from tests.conftest import ROOT, SPEC_PATH

pytestmark = pytest.mark.sandbox


@pytest.fixture(scope="module")
def spec() -> Spec:
    return load_spec(SPEC_PATH)


def _azure_env(emulator: RunningEmulator) -> dict[str, str]:
    token = mint_token(
        emulator.config.operator_oids[0],
        emulator.config.tenant_id,
        audience=ALL_SANDBOX_AUDIENCES,
        lifetime_seconds=6 * 3600,
    )
    return {
        "MMRV_ARM_URL": emulator.url,
        "MMRV_CA_BUNDLE": str(emulator.ca_path),
        "MMRV_AZURE_ACCESS_TOKEN": token,
        "MMRV_ARM_POLL_SECONDS": "0.05",
        "MMRV_RETRY_BASE_SECONDS": "0.2",
    }


@pytest.fixture()
def emulator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningEmulator]:
    with serve_for_tests(tmp_path) as running:
        for key, value in _azure_env(running).items():
            monkeypatch.setenv(key, value)
        yield running


def _count_role_assignments(emulator: RunningEmulator, spec: Spec, env: str) -> int:
    environment = spec.environment(env)
    client = emulator.arm_client(AuthorizationManagementClient, environment.azure.subscription_id)
    return sum(1 for _ in client.role_assignments.list_for_scope(rg_id(environment)))


def test_staging_creates_everything_then_a_rerun_changes_nothing(
    prefect_harness: None, emulator: RunningEmulator, spec: Spec
) -> None:
    from flows.platform import platform_flow

    first = platform_flow(spec_path=str(SPEC_PATH), env="staging")
    # the operator running the tool is the deployer: Key Vault Secrets Officer on the vault
    wanted = desired_platform(spec, spec.environment("staging"), emulator.config.operator_oids[0])
    assert first.plan.counts()["create"] == len(wanted)
    assert sorted(first.applied) == sorted(r.id for r in wanted)
    assert first.outputs is not None
    assert first.outputs.acr_login_server == "mmrvstagingacr.azurecr.io"
    assert first.outputs.aks_oidc_issuer and first.outputs.aks_oidc_issuer.startswith(emulator.url)
    assert set(first.outputs.workload_client_ids) == {"backend", "frontend"}

    second = platform_flow(spec_path=str(SPEC_PATH), env="staging")
    assert second.plan.is_empty and second.applied == []
    # AcrPull + 2 x Key Vault Secrets User + Key Vault Secrets Officer for the deployer
    assert _count_role_assignments(emulator, spec, "staging") == 4


def test_drift_behind_the_tools_back_is_planned_as_an_update_and_repaired(
    prefect_harness: None, emulator: RunningEmulator, spec: Spec
) -> None:
    from flows.platform import platform_flow

    platform_flow(spec_path=str(SPEC_PATH), env="staging")
    env = spec.environment("staging")
    acr = emulator.arm_client(ContainerRegistryManagementClient, env.azure.subscription_id)
    acr.registries.begin_update(
        env.azure.resource_group, env.azure.acr.name, {"properties": {"adminUserEnabled": True}}
    ).result()

    dry = platform_flow(spec_path=str(SPEC_PATH), env="staging", dry_run=True)
    (change,) = dry.plan.changes
    assert change.kind == "update" and change.resource == acr_id(env)
    assert [(c.field, c.observed, c.desired) for c in change.changes] == [("properties.adminUserEnabled", True, False)]
    fixed = platform_flow(spec_path=str(SPEC_PATH), env="staging")
    assert fixed.applied == [acr_id(env)]
    assert acr.registries.get(env.azure.resource_group, env.azure.acr.name).admin_user_enabled is False


def test_a_resource_it_does_not_own_blocks_the_run_and_nothing_changes(
    prefect_harness: None, emulator: RunningEmulator, spec: Spec
) -> None:
    from flows.platform import platform_flow

    env = spec.environment("staging")
    groups = emulator.arm_client(ResourceManagementClient, env.azure.subscription_id)
    groups.resource_groups.create_or_update(env.azure.resource_group, {"location": "westeurope", "tags": {"team": "x"}})

    with pytest.raises(PermanentError, match="not owned"):
        platform_flow(spec_path=str(SPEC_PATH), env="staging")
    assert groups.resource_groups.get(env.azure.resource_group).tags == {"team": "x"}
    assert list(groups.resources.list_by_resource_group(env.azure.resource_group)) == []


def test_killed_part_way_then_rerun_completes_without_duplicates(
    prefect_harness: None, tmp_path: Path, spec: Spec
) -> None:
    """A real SIGKILL of the CLI process mid-apply; the rerun finishes what is missing."""
    from flows.platform import platform_flow

    env = spec.environment("production")
    slow = LroSettings(polls=3, seconds=1.0, retry_after=0.3)
    with serve_for_tests(tmp_path, lro=slow) as emulator:
        child_env = {**os.environ, **_azure_env(emulator), "COLUMNS": "200"}
        child_env.pop("PREFECT_API_URL", None)  # the child runs its own ephemeral Prefect
        proc = subprocess.Popen(
            [sys.executable, "-m", "migration.cli", "run", "platform", "--env", "production"],
            cwd=ROOT,
            env=child_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        groups = emulator.arm_client(ResourceManagementClient, env.azure.subscription_id)
        deadline = time.monotonic() + 120
        created: list[Any] = []
        while time.monotonic() < deadline and proc.poll() is None:
            if groups.resource_groups.check_existence(env.azure.resource_group):
                created = list(groups.resources.list_by_resource_group(env.azure.resource_group))
                if len(created) >= 3:
                    break
            time.sleep(0.2)
        assert proc.poll() is None, "the run finished before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        assert 3 <= len(created) < len(desired_platform(spec, env))

        for key, value in _azure_env(emulator).items():
            os.environ[key] = value
        try:
            rerun = platform_flow(spec_path=str(SPEC_PATH), env="production")
            assert rerun.plan.counts()["noop"] >= 3  # what the killed run finished is not redone
            again = platform_flow(spec_path=str(SPEC_PATH), env="production", dry_run=True)
            assert again.plan.is_empty
            names = [r.name for r in groups.resources.list_by_resource_group(env.azure.resource_group)]
            assert len(names) == len(set(names))
            assert _count_role_assignments(emulator, spec, "production") == 4
        finally:
            for key in _azure_env(emulator):
                os.environ.pop(key, None)


def test_plan_json_has_the_stable_shape(tmp_path: Path, emulator: RunningEmulator) -> None:
    out = tmp_path / "plan.json"
    result = subprocess.run(
        [sys.executable, "-m", "migration.cli", "plan", "--env", "staging", "--json", str(out)],
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(out.read_text())
    kinds = {a["kind"] for a in data["actions"]}
    assert kinds == {"create"}
    assert all(set(a) >= {"kind", "resource", "reason"} for a in data["actions"])


def test_a_permanent_error_fails_at_once_naming_the_resource_and_azures_code(
    prefect_harness: None, emulator: RunningEmulator, tmp_path: Path
) -> None:
    import yaml

    from flows.platform import platform_flow

    data = yaml.safe_load(SPEC_PATH.read_text())
    data["environments"][0]["azure"]["aks"]["kubernetes_version"] = "1.21"  # not offered any more
    bad = tmp_path / "spec.yaml"
    bad.write_text(yaml.safe_dump(data))

    state = platform_flow(spec_path=str(bad), env="staging", return_state=True)
    assert state.is_failed()
    with pytest.raises(PermanentError) as info:
        state.result()
    message = str(info.value)
    assert "managedClusters/aks-mmrv-staging" in message and "K8sVersionNotSupported" in message

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
        )
    aks = [r for r in runs if "managedClusters/aks-mmrv-staging" in r.name]
    assert len(aks) == 1 and aks[0].run_count == 1, "a permanent error must not be retried"
