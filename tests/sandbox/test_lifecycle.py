"""`sandbox up / status / down` with real servers, in a temporary state dir (never the repo's .sandbox/).

One module-scoped sandbox carries the tests, in file order: it is checked, then killed -9
(stale state: `up` proceeds), then stopped with `down`.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import ssl
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import httpx
import pytest

from migration.settings import PROFILE_FILE, read_profile
from migration.spec import load_spec
from sandbox import manager, process, state
from sandbox.services import BACKENDS, Backend

pytestmark = pytest.mark.sandbox

REPO = Path(__file__).resolve().parents[2]
SPEC = load_spec(REPO / "deployments" / "mmrv.yaml")
PROFILE_KEYS = {
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_AMPLIFY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_CA_BUNDLE",
    "MMRV_CA_BUNDLE",
    "MMRV_ECR_REGISTRY",
    "MMRV_SANDBOX_DIR",
}


@dataclass
class Sandbox:
    state_dir: Path
    profile: manager.SandboxProfile
    messages: list[str] = field(default_factory=list)

    def recorded(self) -> dict[str, state.ServiceRecord]:
        current = state.read_state(self.state_dir)
        assert current is not None
        return current.services

    def client_ssl(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.profile.values["MMRV_CA_BUNDLE"])


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    state_dir = tmp_path_factory.mktemp("sandbox")
    messages: list[str] = []
    profile = manager.up(state_dir, spec=SPEC, progress=messages.append)
    yield Sandbox(state_dir, profile, messages)
    manager.down(state_dir)


@pytest.fixture()
def profile_env(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """This test process as after `set -a; . profile.env` (which overrides the machine's AWS_CA_BUNDLE)."""
    values = read_profile(sandbox.profile.profile_path)
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


def test_up_records_every_process_and_reports_progress(sandbox: Sandbox) -> None:
    services = sandbox.recorded()
    assert {"moto", "ecr-registry", "amplify", manager.PROXY} <= set(services)
    for svc in services.values():
        assert process.is_running(svc.process), svc.name
        assert Path(svc.log).is_file() and Path(svc.log).parent == sandbox.state_dir / "logs"
        assert svc.ports and svc.process.argv
    moto = services["moto"]
    assert moto.public_url == f"https://127.0.0.1:{moto.public_port}"
    assert set(services[manager.PROXY].ports) == {s.public_port for s in services.values() if s.public_port}
    assert any(re.fullmatch(r"moto healthy in \d+\.\d s", m) for m in sandbox.messages), sandbox.messages
    assert (sandbox.state_dir / "ca.pem").is_file()
    raw = json.loads((sandbox.state_dir / state.STATE_FILE).read_text())
    assert raw["phase"] == "ready"
    assert {"pid", "argv", "backend_port", "public_port", "log", "ports"} <= set(raw["services"]["moto"])


def test_status_is_healthy(sandbox: Sandbox) -> None:
    statuses = manager.status(sandbox.state_dir)
    assert {s.name for s in statuses} == set(sandbox.recorded())
    assert all(s.healthy for s in statuses), statuses
    assert all(s.url.startswith("https://127.0.0.1:") for s in statuses)


def test_profile_has_the_stable_keys(sandbox: Sandbox) -> None:
    values = sandbox.profile.values
    assert set(values) >= PROFILE_KEYS
    assert read_profile(sandbox.profile.profile_path) == values
    assert values["AWS_CA_BUNDLE"] == values["MMRV_CA_BUNDLE"] == str(sandbox.state_dir / "ca.pem")
    assert values["AWS_REGION"] == values["AWS_DEFAULT_REGION"] == SPEC.aws.region
    assert values["MMRV_SANDBOX_DIR"] == str(sandbox.state_dir)
    assert re.fullmatch(r"https://127\.0\.0\.1:\d+", values["AWS_ENDPOINT_URL"])
    assert re.fullmatch(r"https://127\.0\.0\.1:\d+", values["AWS_ENDPOINT_URL_AMPLIFY"])
    assert re.fullmatch(r"127\.0\.0\.1:\d+", values["MMRV_ECR_REGISTRY"])


def test_boto3_with_the_profile_reaches_moto_over_https(profile_env: dict[str, str]) -> None:
    session = boto3.Session()
    assert session.client("sts").get_caller_identity()["Account"] == SPEC.aws.account_id
    assert isinstance(session.client("ecr").describe_repositories()["repositories"], list)
    assert isinstance(session.client("amplify").list_apps()["apps"], list)


def test_registry_demands_auth_and_accepts_the_ecr_token(sandbox: Sandbox, profile_env: dict[str, str]) -> None:
    token = boto3.Session().client("ecr").get_authorization_token()["authorizationData"][0]["authorizationToken"]
    user, password = base64.b64decode(token).decode().split(":", 1)
    url = f"https://{profile_env['MMRV_ECR_REGISTRY']}/v2/"
    with httpx.Client(verify=sandbox.client_ssl()) as client:
        anonymous = client.get(url)
        assert anonymous.status_code == 401
        assert anonymous.headers["www-authenticate"].startswith("Basic ")
        assert client.get(url, auth=(user, "wrong")).status_code == 401
        assert client.get(url, auth=(user, password)).status_code == 200


def test_second_up_says_how_to_stop_the_running_one(sandbox: Sandbox) -> None:
    with pytest.raises(manager.SandboxAlreadyRunning, match="mmrv-migrate sandbox down"):
        manager.up(sandbox.state_dir, spec=SPEC)


def test_up_waits_for_the_lock_then_gives_up(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state, "LOCK_TIMEOUT", 0.3)
    with state.locked(sandbox.state_dir), pytest.raises(state.SandboxBusy):
        manager.up(sandbox.state_dir, spec=SPEC)


def test_failed_start_stops_everything_it_started(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = Backend("broken", lambda ctx: [sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"])
    monkeypatch.setattr(manager, "BACKENDS", (BACKENDS[0], broken))
    messages: list[str] = []
    with pytest.raises(manager.SandboxError) as raised:
        manager.up(tmp_path, spec=SPEC, progress=messages.append)
    message = str(raised.value)
    assert "broken exited with code 3" in message
    assert str(tmp_path / "logs" / "broken.log") in message and "boom" in message
    assert not (tmp_path / state.STATE_FILE).exists() and not (tmp_path / PROFILE_FILE).exists()
    started_ports = [int(p) for m in messages for p in re.findall(r"127\.0\.0\.1:(\d+)", m)]
    assert started_ports and not process.listening_ports(started_ports)
    assert not _processes_mentioning(tmp_path)


def test_stale_state_is_cleaned_and_up_proceeds(sandbox: Sandbox) -> None:
    killed = sandbox.recorded()
    for svc in killed.values():
        os.kill(svc.process.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any(process.is_running(s.process) for s in killed.values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(s.healthy for s in manager.status(sandbox.state_dir))

    messages: list[str] = []
    sandbox.profile = manager.up(sandbox.state_dir, spec=SPEC, progress=messages.append)
    assert any("stale" in m for m in messages), messages
    fresh = sandbox.recorded()
    assert {s.process.pid for s in fresh.values()}.isdisjoint(s.process.pid for s in killed.values())
    assert all(s.healthy for s in manager.status(sandbox.state_dir))


def test_down_stops_exactly_the_recorded_processes(sandbox: Sandbox) -> None:
    recorded = sandbox.recorded()
    stopped = manager.down(sandbox.state_dir)
    assert sorted(stopped) == sorted(recorded)
    for svc in recorded.values():
        assert not process.is_running(svc.process)
        assert not Path(f"/proc/{svc.process.pid}").exists()  # gone, not even a zombie of ours
    assert not process.listening_ports(p for s in recorded.values() for p in s.ports)
    assert not (sandbox.state_dir / PROFILE_FILE).exists()
    assert not (sandbox.state_dir / state.STATE_FILE).exists()
    # data and logs stay for inspection
    assert (sandbox.state_dir / "ca.pem").is_file()
    assert (sandbox.state_dir / "ecr-registry" / "data").is_dir()
    assert all(Path(s.log).is_file() for s in recorded.values())
    assert manager.down(sandbox.state_dir) == []
    assert manager.status(sandbox.state_dir) == []


def _processes_mentioning(text: Path) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if str(text).encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found
