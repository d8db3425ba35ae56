"""Shared test set-up: Prefect stays local and quiet; one Prefect harness per session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPEC_PATH = ROOT / "deployments" / "mmrv.yaml"

os.environ.setdefault("PREFECT_HOME", str(ROOT / ".prefect"))
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """A throwaway Prefect server + database for the whole session (about 9 s to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield


@pytest.fixture(scope="session")
def spec_path() -> Path:
    return SPEC_PATH


class RunningSandbox:
    """A sandbox started by `sandbox.manager.up` in a temporary state dir."""

    def __init__(self, state_dir: Path, values: dict[str, str]) -> None:
        self.state_dir = state_dir
        self.values = values

    def activate(self) -> dict[str, str | None]:
        """Point this process at the sandbox (as `--sandbox` does); returns what to restore."""
        previous = {k: os.environ.get(k) for k in self.values}
        os.environ.update(self.values)
        return previous

    @staticmethod
    def restore(previous: dict[str, str | None]) -> None:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    def stats(self) -> dict[str, object]:
        """The fault proxy's counters per route."""
        import json
        import ssl
        import urllib.request

        url = self.values["AWS_ENDPOINT_URL"] + "/__sandbox/stats"
        context = ssl.create_default_context(cafile=self.values["MMRV_CA_BUNDLE"])
        with urllib.request.urlopen(url, context=context, timeout=10) as response:
            return dict(json.loads(response.read())["routes"])


def start_sandbox(state_dir: Path, *, fault_rate: float = 0.0, seed: int = 0) -> RunningSandbox:
    from migration.spec import load_spec
    from sandbox.manager import up

    profile = up(state_dir, spec=load_spec(SPEC_PATH), fault_rate=fault_rate, seed=seed)
    return RunningSandbox(state_dir, dict(profile.values))


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    """The whole sandbox (moto, registries, Amplify, ARM, Kubernetes behind the TLS proxy), no faults."""
    from sandbox.manager import down

    state_dir = tmp_path_factory.mktemp("sandbox")
    running = start_sandbox(state_dir)
    try:
        yield running
    finally:
        down(state_dir)


@pytest.fixture(scope="session")
def faulty_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    """The same sandbox with 20 % of requests failing the ways real clouds fail."""
    from sandbox.manager import down

    state_dir = tmp_path_factory.mktemp("sandbox-faults")
    running = start_sandbox(state_dir, fault_rate=0.2)  # same seed: the same estate, only faults differ
    try:
        yield running
    finally:
        down(state_dir)


def forget_cutover_state() -> None:
    """Delete the cutovers' saved records (Prefect Variables): a fresh sandbox's Route 53 has never been cut over."""
    from prefect import get_client

    with get_client(sync_client=True) as client:
        for variable in client.read_variables():
            if variable.name.startswith("mmrv_cutover_"):
                client.delete_variable_by_name(variable.name)


@pytest.fixture(scope="module")
def own_sandbox(tmp_path_factory: pytest.TempPathFactory, prefect_harness: None) -> Iterator[RunningSandbox]:
    """A fresh sandbox for one module that migrates for real (ships, cuts over): the others never see its changes.

    Activated for the module; the cutovers' saved state is forgotten before and after.
    """
    from sandbox.manager import down

    state_dir = tmp_path_factory.mktemp("own-sandbox")
    running = start_sandbox(state_dir)
    previous = running.activate()
    try:
        forget_cutover_state()
        yield running
        forget_cutover_state()
    finally:
        RunningSandbox.restore(previous)
        down(state_dir)


def secret_values(client: object) -> list[str]:
    """Every Secrets Manager value behind `client` (boto3's secretsmanager), and each JSON member long enough
    to be telling: what a scan of logs, artifacts and results must never find."""
    import json

    values: list[str] = []
    for page in client.get_paginator("list_secrets").paginate():  # type: ignore[attr-defined]
        for secret in page["SecretList"]:
            text = client.get_secret_value(SecretId=secret["ARN"])["SecretString"]  # type: ignore[attr-defined]
            values.append(text)
            try:
                values += [str(v) for v in json.loads(text).values() if len(str(v)) >= 8]
            except (ValueError, AttributeError):
                pass
    assert len(values) >= 6, "the sandbox seeds secrets"
    return values


def fault_tolerant(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tool's default retry budget (other fixtures of the session shrink it for speed), quicker backoff."""
    monkeypatch.setenv("MMRV_AWS_MAX_ATTEMPTS", "5")
    monkeypatch.setenv("MMRV_TASK_RETRIES", "4")
    monkeypatch.setenv("MMRV_RETRY_BASE_SECONDS", "0.3")
