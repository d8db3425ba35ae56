"""The migration flow on the sandbox: phase 1 end to end and idempotent; the production gate refusing.

Phase 1 (staging) runs platform, images, ship and the DNS cutover; a rerun changes nothing.
At the production gate a rejection or a timeout ends the run Cancelled, saying why, and
production is exactly as it was before (ARM, the cluster, Route 53).
"""

from __future__ import annotations

import threading
import time
from typing import Any
from uuid import UUID

import boto3
import pytest
from prefect import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

from migration.approval import ApprovalRefused
from tests.conftest import SPEC_PATH, RunningSandbox

pytestmark = [pytest.mark.sandbox, pytest.mark.usefixtures("prefect_harness")]

SCALE = 0.01


@pytest.fixture(scope="module")
def on(own_sandbox: RunningSandbox) -> RunningSandbox:
    return own_sandbox


def test_phase_one_ships_and_cuts_over_staging_and_a_rerun_changes_nothing(on: RunningSandbox) -> None:
    from flows.migration import migration_flow

    first = migration_flow(spec_path=str(SPEC_PATH), env="staging", time_scale=SCALE)
    (staging,) = first.environments
    assert staging.platform.outputs is not None and staging.images.ledger is not None
    assert all(e.verified for e in staging.images.ledger.images)
    assert staging.ship is not None and staging.ship.evidence is not None
    assert staging.ship.evidence.failure is None and staging.ship.evidence.smoke_checks > 0
    assert staging.cutover is not None and staging.cutover.outcome == "complete"
    report = first.render_markdown()
    assert "## staging" in report and "cutover of staging-api.mmrv.example.com: complete" in report
    assert first.approvals == []  # phase 1 alone passes no gate

    again = migration_flow(spec_path=str(SPEC_PATH), env="staging", time_scale=SCALE).environments[0]
    assert again.platform.applied == [] and again.platform.plan.is_empty
    assert {e.status for e in again.images.ledger.images} == {"present"}  # type: ignore[union-attr]
    assert again.ship is not None and again.ship.plan.is_empty and again.ship.applied == []
    assert again.cutover is not None and again.cutover.outcome == "already-complete"


def _production_snapshot() -> dict[str, Any]:
    """What phase 2 would change: the production resource group, its cluster's objects, its public name."""
    from migration.clouds.azure import ArmGateway
    from migration.platform import aks_id
    from migration.settings import AzureSettings
    from migration.spec import load_spec

    environment = load_spec(SPEC_PATH).environment("production")
    arm = ArmGateway(AzureSettings(), environment.azure.subscription_id)
    group_id = f"/subscriptions/{environment.azure.subscription_id}/resourceGroups/{environment.azure.resource_group}"
    cluster = arm.get("Microsoft.ContainerService/managedClusters", aks_id(environment))
    objects: Any = None
    if cluster is not None:
        from tasks.ship import kube_for

        with kube_for(str(SPEC_PATH), "production") as kube:
            objects = sorted(
                (d["metadata"]["name"], d["metadata"]["resourceVersion"])
                for d in kube.list("apps/v1", "Deployment", "mmrv")
            )
    r53 = boto3.client("route53")
    zone = r53.list_hosted_zones_by_name(DNSName="mmrv.example.com.")["HostedZones"][0]["Id"]
    records = r53.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
    return {
        "group": arm.get("Microsoft.Resources/resourceGroups", group_id),
        "cluster": cluster,
        "deployments": objects,
        "dns": [r for r in records if r["Name"].startswith("api.")],
    }


class MigrationRun:
    """migration_flow(env=production) in a background thread, as a worker runs it."""

    def __init__(self, time_scale: float) -> None:
        self.outcome: Any = None
        self.began = time.time()
        self.thread = threading.Thread(target=self._run, args=(time_scale,), daemon=True)
        self.thread.start()

    def _run(self, time_scale: float) -> None:
        from flows.migration import migration_flow

        try:
            self.outcome = migration_flow(spec_path=str(SPEC_PATH), env="production", time_scale=time_scale)
        except BaseException as exc:
            self.outcome = exc

    def paused_run_id(self, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.thread.is_alive(), f"the migration ended without pausing: {self.outcome!r}"
            with get_client(sync_client=True) as client:
                runs = client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=["migration-production"]))
                )
            for run in runs:
                if (
                    run.state
                    and run.state.is_paused()
                    and run.start_time
                    and run.start_time.timestamp() >= self.began - 5
                ):
                    return str(run.id)
            time.sleep(0.2)
        raise AssertionError("the migration did not pause at the production gate")

    def finish(self, timeout: float = 120) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the migration did not finish"
        return self.outcome


def test_a_rejection_at_the_production_gate_leaves_production_untouched(on: RunningSandbox) -> None:
    from flows.approval import answer_gate

    before = _production_snapshot()
    run = MigrationRun(time_scale=1.0)
    run_id = run.paused_run_id()
    answer_gate(run_id, approved=False, approver="bob", reason="the staging smoke tests need a second look")
    outcome = run.finish()
    assert isinstance(outcome, ApprovalRefused), outcome
    assert "rejected by bob" in str(outcome) and "Nothing in production changed" in str(outcome)
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(UUID(run_id)).state
    assert state is not None and state.is_cancelled() and "rejected by bob" in (state.message or "")
    assert _production_snapshot() == before


def test_a_gate_nobody_answers_times_out_and_production_stays_as_it_was(on: RunningSandbox) -> None:
    before = _production_snapshot()
    run = MigrationRun(time_scale=20 / 86_400)  # the spec's one-day timeout becomes 20 s
    run.paused_run_id()
    outcome = run.finish()
    assert isinstance(outcome, ApprovalRefused), outcome
    assert "timed_out" in str(outcome) or "no decision" in str(outcome)
    assert _production_snapshot() == before
