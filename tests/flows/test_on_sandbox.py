"""Flows against the whole sandbox, with and without injected faults.

The inventory and the platform must come out the same whether 0 % or 20 % of requests
fail (429, 503, resets, responses lost after the server acted): retries absorb the
faults. No Secrets Manager value may surface in logs, artifacts or the JSON output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from migration.inventory import Inventory
from tests.conftest import ROOT, SPEC_PATH, RunningSandbox, fault_tolerant, secret_values
from tests.flows.test_inventory_flow import artifacts_of, logs_of

pytestmark = [pytest.mark.sandbox, pytest.mark.usefixtures("prefect_harness")]

VOLATILE = ("_at", "generated", "zone_id", "hosted_zone")


def stable(value: Any) -> Any:
    """The inventory without what differs between two sandboxes: timestamps and generated ids."""
    if isinstance(value, dict):
        return {k: stable(v) for k, v in value.items() if not any(k.endswith(s) or s in k for s in VOLATILE)}
    if isinstance(value, list):
        items = [stable(v) for v in value]
        # images are listed newest first: pushes within the same second tie differently per sandbox
        if items and all(isinstance(i, dict) and "digest" in i for i in items):
            items.sort(key=lambda i: str(i["digest"]))
        return items
    return value


@pytest.fixture()
def on(request: pytest.FixtureRequest) -> Iterator[RunningSandbox]:
    sandbox: RunningSandbox = request.getfixturevalue(request.param)
    previous = sandbox.activate()
    try:
        yield sandbox
    finally:
        RunningSandbox.restore(previous)


def _inventory(sandbox: RunningSandbox) -> tuple[Inventory, Any]:
    from flows.inventory import inventory_flow

    state = inventory_flow(spec_path=str(SPEC_PATH), env="all", return_state=True)
    return state.result(), state.state_details.flow_run_id


def _secret_values(sandbox: RunningSandbox) -> list[str]:
    client = boto3.client(
        "secretsmanager",
        endpoint_url=sandbox.values["AWS_ENDPOINT_URL"],
        region_name=sandbox.values["AWS_DEFAULT_REGION"],
        verify=sandbox.values["MMRV_CA_BUNDLE"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    return secret_values(client)


def test_inventory_is_identical_with_20_percent_faults(
    sandbox: RunningSandbox, faulty_sandbox: RunningSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    fault_tolerant(monkeypatch)
    results = []
    for box in (sandbox, faulty_sandbox):
        previous = box.activate()
        try:
            inventory, _ = _inventory(box)
        finally:
            RunningSandbox.restore(previous)
        assert inventory.missing == []
        results.append(stable(inventory.model_dump(mode="json")))
    assert results[0] == results[1]
    faults = sum(int(route["faults_total"]) for route in faulty_sandbox.stats().values())  # type: ignore[index]
    assert faults > 0, "the faulty sandbox injected no fault: the comparison proved nothing"


@pytest.mark.parametrize("on", ["sandbox"], indirect=True)
def test_no_secret_value_in_logs_artifacts_or_json(on: RunningSandbox, tmp_path: Path) -> None:
    inventory, run_id = _inventory(on)
    secrets = _secret_values(on)
    haystacks = {
        "logs": logs_of(run_id),
        "artifacts": json.dumps([a.model_dump(mode="json") for a in artifacts_of(run_id).values()]),
        "result": inventory.model_dump_json(),
    }
    out = tmp_path / "inventory.json"
    cli = subprocess.run(
        [sys.executable, "-m", "migration.cli", "inventory", "--sandbox", "--env", "all", "--json", str(out)],
        cwd=ROOT,
        env={**os.environ, "MMRV_SANDBOX_DIR": str(on.state_dir), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cli.returncode == 0, cli.stderr
    haystacks |= {"json": out.read_text(), "cli output": cli.stdout + cli.stderr}
    assert "mmrv/staging/db" in haystacks["json"]  # the secret is known by name ...
    for where, text in haystacks.items():
        leaked = [s[:4] + "..." for s in secrets if s in text]
        assert not leaked, f"secret values found in {where}: {leaked}"  # ... never by value


def test_platform_completes_identically_under_faults(
    sandbox: RunningSandbox, faulty_sandbox: RunningSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.platform import platform_flow

    fault_tolerant(monkeypatch)

    outcomes = []
    for box in (sandbox, faulty_sandbox):
        previous = box.activate()
        try:
            first = platform_flow(spec_path=str(SPEC_PATH), env="production")
            again = platform_flow(spec_path=str(SPEC_PATH), env="production", dry_run=True)
        finally:
            RunningSandbox.restore(previous)
        assert again.plan.is_empty, again.plan.render_markdown()
        outcomes.append(([(a.kind, a.resource) for a in first.plan.actions], sorted(first.applied)))
    assert outcomes[0] == outcomes[1]
    assert faulty_sandbox.stats()["azure"]["faults_total"] > 0  # type: ignore[index]
