"""prefect.yaml deployed to a real Prefect server, and runs triggered through it on a real worker.

One `prefect server start` per module (SQLite in a temporary PREFECT_HOME, about 10 s to
start; its scheduler service off, so no drift run is scheduled while a worker is polling).
`mmrv-migrate deploy` registers the real prefect.yaml: it fails, naming the flow file, while
a deployment's entrypoint does not exist (never a skip). A `prefect worker start` subprocess
runs the platform deployment against an ARM emulator of its own (real HTTPS, nothing shared
with the session's sandbox).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from migration.deployments import (
    WORKER_HINT,
    NoWorker,
    deployment_name,
    missing_entrypoints,
    read_prefect_file,
    trigger_and_follow,
)
from migration.spec import load_spec
from sandbox.azure.testing import serve_for_tests
from tests.conftest import ROOT, SPEC_PATH
from tests.flows.test_platform_flow import _azure_env

pytestmark = pytest.mark.sandbox

PREFECT_FILE = ROOT / "prefect.yaml"
CLI = str(Path(sys.executable).with_name("mmrv-migrate"))  # this venv's
PREFECT = str(Path(sys.executable).with_name("prefect"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _clean_env(**updates: str) -> dict[str, str]:
    """This process's environment without any Prefect setting (the session harness may have set some)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1", **updates)
    return env


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a process this module started, with its children (its own process group)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


@dataclass
class Server:
    api_url: str
    home: Path

    def env(self, **updates: str) -> dict[str, str]:
        return _clean_env(PREFECT_HOME=str(self.home), PREFECT_API_URL=self.api_url, **updates)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("prefect-home")
    port = _free_port()
    env = _clean_env(
        PREFECT_HOME=str(home),
        PREFECT_UI_ENABLED="false",
        PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED="false",
    )
    log = (home / "server.log").open("wb")
    process = subprocess.Popen(
        [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/api"
    began = time.monotonic()
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() - began > 90:
                pytest.fail(f"prefect server did not start: {(home / 'server.log').read_text()[-2000:]}")
            time.sleep(0.3)
        print(f"prefect server ready in {time.monotonic() - began:.1f} s")
        yield Server(api_url=url, home=home)
    finally:
        _stop(process)
        log.close()


def _cli(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def deployed(server: Server) -> subprocess.CompletedProcess[str]:
    """`mmrv-migrate deploy` of the real prefect.yaml: creates the pool, deploys everything."""
    began = time.monotonic()
    done = _cli("deploy", env=server.env())
    print(f"mmrv-migrate deploy took {time.monotonic() - began:.1f} s")
    assert done.returncode == 0, f"mmrv-migrate deploy failed:\n{done.stdout}\n{done.stderr}"
    return done


def _client(server: Server):  # type: ignore[no-untyped-def]
    from prefect.client.orchestration import SyncPrefectClient

    return SyncPrefectClient(api=server.api_url)


# --- prefect.yaml itself (no server) --------------------------------------------------------------


def test_every_entrypoint_of_prefect_yaml_exists() -> None:
    """Fails (never skips) while a flow prefect.yaml names has not landed."""
    assert missing_entrypoints(ROOT, read_prefect_file(PREFECT_FILE)) == []


def test_prefect_yaml_names_a_drift_deployment_per_environment_all_on_the_process_pool() -> None:
    entries = read_prefect_file(PREFECT_FILE)
    names = {e.name for e in entries}
    spec = load_spec(SPEC_PATH)
    for env in spec.environments:
        for flow in ("platform", "images", "ship", "cutover", "drift"):
            assert f"{flow}-{env.name}" in names
    assert {"migration", "inventory"} <= names
    assert {e.work_pool for e in entries} == {"mmrv-process"}
    assert all(e.parameters.get("spec_path") == "deployments/mmrv.yaml" for e in entries)
    assert all(":" in e.entrypoint and ".py:" not in e.entrypoint for e in entries), "module entrypoints only"


# --- against the server -----------------------------------------------------------------------------


def test_deploy_registers_every_deployment_on_the_process_pool(
    server: Server, deployed: subprocess.CompletedProcess[str]
) -> None:
    entries = read_prefect_file(PREFECT_FILE)
    with _client(server) as client:
        pool = client.read_work_pool("mmrv-process")
        assert pool.type == "process"
        deployments = {d.name: d for d in client.read_deployments()}
    for entry in entries:
        d = deployments[entry.name]
        assert d.work_pool_name == "mmrv-process"
        assert d.entrypoint == entry.entrypoint
        assert d.parameters["spec_path"] == "deployments/mmrv.yaml"
        # the flow run's working directory is the project, so the entrypoint and the spec resolve
        assert d.pull_steps == [{"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}]
        assert f"/{entry.name}" in deployed.stdout
    assert "cron 0 * * * * (UTC)" in deployed.stdout


def _drift_schedules(server: Server) -> dict[str, list[tuple[str, str | None, bool]]]:
    spec = load_spec(SPEC_PATH)
    out = {}
    with _client(server) as client:
        for env in spec.environments:
            d = client.read_deployment_by_name(deployment_name("drift", env.name))
            out[env.name] = [(s.schedule.cron, s.schedule.timezone, bool(s.active)) for s in d.schedules]  # type: ignore[union-attr]
    return out


def test_each_drift_deployment_carries_its_cron_schedule_and_a_redeploy_keeps_one(
    server: Server, deployed: subprocess.CompletedProcess[str]
) -> None:
    expected = {
        e["parameters"]["env"]: [(s["cron"], s["timezone"], s["active"]) for s in e["schedules"]]
        for e in yaml.safe_load(PREFECT_FILE.read_text())["deployments"]
        if e["entrypoint"].startswith("flows.drift:")
    }
    assert expected == {"staging": [("0 * * * *", "UTC", True)], "production": [("30 * * * *", "UTC", True)]}
    assert _drift_schedules(server) == expected

    # plain `prefect deploy --all` from the project, as the README says, over the existing ones
    again = subprocess.run(
        [PREFECT, "--no-prompt", "deploy", "--all"],
        cwd=ROOT,
        env=server.env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert _drift_schedules(server) == expected  # updated in place (schedule slugs), not duplicated


def test_a_run_nobody_picks_up_is_cancelled_with_the_worker_hint(
    server: Server, deployed: subprocess.CompletedProcess[str]
) -> None:
    """Runs before any worker polls the pool (the worker test below starts its own)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    said: list[str] = []
    with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
        with pytest.raises(NoWorker) as caught:
            trigger_and_follow(deployment_name("platform", "staging"), {}, echo=said.append, start_timeout=3)
        with _client(server) as client:
            run = client.read_flow_run(caught.value.flow_run_id)
    assert WORKER_HINT in str(caught.value)
    assert "start a worker: prefect worker start --pool mmrv-process" in str(caught.value)
    assert any("no worker is polling work pool mmrv-process" in line for line in said)
    assert run.state is not None and run.state.type.value == "CANCELLED"  # cannot start by surprise later


@pytest.fixture()
def worker_with_arm(server: Server, deployed: subprocess.CompletedProcess[str], tmp_path: Path) -> Iterator[None]:
    """A process worker on mmrv-process whose runs reach an ARM emulator of their own."""
    with serve_for_tests(tmp_path) as emulator:
        env = server.env(
            PREFECT_WORKER_QUERY_SECONDS="1",
            MMRV_TASK_RETRIES="1",
            **_azure_env(emulator),
        )
        log = (tmp_path / "worker.log").open("wb")
        process = subprocess.Popen(
            [PREFECT, "worker", "start", "--pool", "mmrv-process", "--type", "process"],
            cwd=tmp_path,  # not the project: the deployment's pull step must find it
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield
        finally:
            _stop(process)
            log.close()


def test_run_platform_via_deployment_follows_the_worker_run_to_completed(server: Server, worker_with_arm: None) -> None:
    began = time.monotonic()
    done = _cli("run", "platform", "--env", "staging", "--via-deployment", env=server.env())
    print(f"run platform --via-deployment took {time.monotonic() - began:.1f} s")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    # followed: the states as they changed, the flow's own log lines, then its reports
    assert "platform/platform-staging: Running" in done.stderr
    assert "platform/platform-staging: Completed" in done.stderr
    assert "Running 1 deployment pull step(s)" in done.stderr
    assert "# Azure platform plan: staging" in done.stdout
    assert "# Azure platform: staging" in done.stdout  # the report after apply and read-back


def test_without_a_reachable_api_deploy_and_via_deployment_exit_1_saying_what_to_start(tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{_free_port()}/api"
    env = _clean_env(PREFECT_HOME=str(tmp_path), PREFECT_API_URL=closed)
    for args in (["deploy"], ["run", "platform", "--env", "staging", "--via-deployment"]):
        done = _cli(*args, env=env, timeout=120)
        assert done.returncode == 1, done.stderr
        assert "PREFECT_API_URL" in done.stderr and "prefect server start" in done.stderr
    unset = _cli("deploy", env=_clean_env(PREFECT_HOME=str(tmp_path)), timeout=120)
    assert unset.returncode == 1
    assert "no Prefect API is configured" in unset.stderr


def test_via_deployment_refuses_sandbox_and_json_before_contacting_anything(tmp_path: Path) -> None:
    env = _clean_env(PREFECT_HOME=str(tmp_path))
    done = _cli("run", "platform", "--via-deployment", "--sandbox", env=env, timeout=120)
    assert done.returncode == 2
    assert "worker's environment" in done.stderr
    done = _cli("run", "images", "--via-deployment", "--json", str(tmp_path / "l.json"), env=env, timeout=120)
    assert done.returncode == 2
    assert "--json" in done.stderr
