"""`mmrv-migrate inventory` as a person runs it: a subprocess with its own (ephemeral) Prefect server.

No `--sandbox` here (that needs the sandbox); the environment points boto3 at the session's
moto and Amplify servers instead. Timings are printed (pytest -s), not asserted.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from migration.inventory import Inventory
from tests.aws_estate import SeededEstate, find_sensitive, free_port
from tests.conftest import ROOT

CLI = str(Path(sys.executable).parent / "mmrv-migrate")


def cli_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_ENDPOINT_URL", "PREFECT_API_URL"))}
    env.update(
        COLUMNS="400",  # rich wraps at 80 columns when not on a terminal; keep each message on one line
        PREFECT_HOME=str(ROOT / ".prefect"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        MMRV_AWS_MAX_ATTEMPTS="2",
        MMRV_TASK_RETRIES="1",
        MMRV_RETRY_BASE_SECONDS="0.1",
    )
    env.update(overrides)
    return env


def mmrv(*args: str, env: dict[str, str], timeout: float = 240) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run([CLI, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    return done, time.monotonic() - started


def test_inventory_writes_json_and_exits_0(aws_estate: SeededEstate, tmp_path: Path) -> None:
    out = tmp_path / "inventory.json"
    done, seconds = mmrv("inventory", "--env", "staging", "--json", str(out), env=cli_env(**aws_estate.client_env()))
    print(f"inventory --env staging (ephemeral Prefect server included): {seconds:.1f} s")
    assert done.returncode == 0, done.stderr[-3000:]
    inv = Inventory.model_validate_json(out.read_text())
    assert [e.name for e in inv.environments] == ["staging"]
    assert inv.missing == []
    backend = inv.environment("staging").backend
    assert backend is not None and backend.task_definition is not None
    assert backend.task_definition.containers[0].image.tag == "1.4.0"
    assert "## Environment: staging" in done.stdout
    assert "- [staging]" not in done.stdout  # nothing missing
    assert "Nothing: everything the spec names was found." in done.stdout
    assert f"inventory written to {out}" in done.stdout
    for where, text in {"stdout": done.stdout, "stderr": done.stderr, "json": out.read_text()}.items():
        assert find_sensitive(text, aws_estate.sensitive_values) == [], where


def test_a_typo_in_the_spec_exits_2_naming_the_path(spec_path: Path, tmp_path: Path) -> None:
    bad = tmp_path / "typo.yaml"
    text = spec_path.read_text()
    bad.write_text(text.replace("secrets_prefix: mmrv/staging/", "secrets_prefx: mmrv/staging/", 1))
    done, seconds = mmrv("inventory", "--spec", str(bad), "--env", "staging", env=cli_env(), timeout=60)
    print(f"inventory with a bad spec: {seconds:.1f} s")
    assert done.returncode == 2, done.stderr
    problems = [line.strip() for line in done.stderr.splitlines() if line.strip().startswith("- ")]
    assert problems == [
        "- environments[0].aws.secrets_prefx: unknown key; allowed keys: backend, frontend, secrets_prefix"
    ]
    assert "1 problem" in done.stderr
    assert done.stdout == ""


def test_an_unreachable_endpoint_exits_1_naming_the_service(tmp_path: Path) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    env = cli_env(
        AWS_ENDPOINT_URL=nowhere,
        AWS_ENDPOINT_URL_AMPLIFY=nowhere,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="eu-west-1",
        MMRV_AWS_MAX_ATTEMPTS="1",
        MMRV_CONNECT_TIMEOUT="1",
        MMRV_TASK_RETRIES="0",
        MMRV_RETRY_BASE_SECONDS="0",
    )
    out = tmp_path / "never.json"
    done, seconds = mmrv("inventory", "--env", "staging", "--json", str(out), env=env)
    print(f"inventory against an unreachable endpoint: {seconds:.1f} s")
    assert done.returncode == 1, done.stderr[-3000:]
    failed = [line for line in done.stderr.splitlines() if line.startswith("failed:")]
    assert len(failed) == 1, done.stderr[-3000:]
    assert re.fullmatch(
        r"failed: (sts|ecs|ecr|amplify|secretsmanager|route53): cannot reach the endpoint: .*", failed[0]
    )
    assert nowhere in failed[0]
    assert not out.exists()


@pytest.mark.parametrize("env_name", ["qa"])
def test_an_unknown_environment_exits_2(env_name: str) -> None:
    done, _ = mmrv("inventory", "--env", env_name, env=cli_env(), timeout=60)
    assert done.returncode == 2
    assert "environment 'qa' is not in the spec; allowed: staging, production" in done.stderr
