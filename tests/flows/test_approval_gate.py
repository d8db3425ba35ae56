"""The approval gate against a real Prefect API (the session's test harness).

A small flow pauses at the gate in a background thread; the test answers it the way a person
does, through `mmrv-migrate approve/reject/pending` (run in this process, so they reach the
harness's server), and checks what followed: the production step ran only after an approval
from an allowed approver; a rejection, a timeout or someone not on the allow-list stopped the
run Cancelled with the reason, recorded in the `approval-production` artifact.
"""

from __future__ import annotations

import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import pytest
from prefect import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey
from prefect.client.schemas.objects import FlowRun
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.approval import GRACE_SECONDS, scaled_waits
from migration.approval import ApprovalRefused, Decision
from migration.cli import main
from tests.approval_flows import PRODUCTION_CHANGES, RUN_IDS, gated_flow
from tests.aws_estate import free_port

pytestmark = pytest.mark.usefixtures("prefect_harness")

WAIT = 60.0  # generous bound for a state change; the tests take seconds


class GatedRun:
    """`gated_flow` running in a background thread, as a worker would run the migration."""

    def __init__(self, **params: Any) -> None:
        self.marker = uuid.uuid4().hex[:12]
        self.outcome: Any = None
        self.started = time.monotonic()
        self._thread = threading.Thread(target=self._run, kwargs=params, daemon=True)
        self._thread.start()

    def _run(self, **params: Any) -> None:
        try:
            self.outcome = gated_flow(marker=self.marker, **params)
        except BaseException as exc:
            self.outcome = exc

    @property
    def run_id(self) -> str:
        deadline = time.monotonic() + WAIT
        while self.marker not in RUN_IDS:
            assert time.monotonic() < deadline, "the flow run did not start"
            time.sleep(0.05)
        return RUN_IDS[self.marker]

    def read(self) -> FlowRun:
        with get_client(sync_client=True) as client:
            return client.read_flow_run(UUID(self.run_id))

    def wait_paused(self) -> str:
        deadline = time.monotonic() + WAIT
        while not ((state := self.read().state) and state.is_paused()):
            assert self._thread.is_alive(), f"the flow ended without pausing: {self.outcome!r}"
            assert time.monotonic() < deadline, "the flow run did not pause"
            time.sleep(0.1)
        return self.run_id

    def finish(self) -> Any:
        self._thread.join(WAIT)
        assert not self._thread.is_alive(), "the flow run did not finish"
        print(f"gate run {self.marker}: {time.monotonic() - self.started:.1f} s")
        return self.outcome

    @property
    def production_changed(self) -> bool:
        return self.marker in PRODUCTION_CHANGES

    def artifact(self) -> str:
        with get_client(sync_client=True) as client:
            found = client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    key=ArtifactFilterKey(any_=["approval-production"]),
                    flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(self.run_id)]),
                )
            )
        assert len(found) == 1, found
        return str(found[0].data)


@pytest.fixture
def mmrv(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Iterator[Any]:
    """`mmrv-migrate ARGS...` in this process: (exit code, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["mmrv-migrate", *args])
        capsys.readouterr()
        with pytest.raises(SystemExit) as exited:
            main()
        out = capsys.readouterr()
        return int(exited.value.code or 0), out.out, out.err

    yield run


# a one-minute gate: answered in about a second (the run polls every 0.2 s at this scale)
MINUTE = {"timeout_seconds": 86_400, "time_scale": 60 / 86_400}


def test_approval_from_the_cli_lets_the_flow_continue(mmrv: Any) -> None:
    run = GatedRun(**MINUTE)
    run_id = run.wait_paused()

    code, out, err = mmrv("pending")
    assert code == 0, err
    assert run_id in out and f"approval-gate-test/gate-{run.marker}" in out and "gate production" in out
    assert "waits for an approval (approved, approver, reason)" in out
    assert "| ## Approval needed: production" in out  # the request's first lines

    code, out, err = mmrv("approve", run_id, "--approver", "alice", "--reason", "staging green")
    assert code == 0, err
    assert "approved gate production" in out and "approval-production" in out

    decision = run.finish()
    assert isinstance(decision, Decision), decision
    assert (decision.outcome, decision.approver, decision.reason) == ("approved", "alice", "staging green")
    assert run.production_changed
    assert run.read().state.is_completed()  # type: ignore[union-attr]
    record = run.artifact()
    assert "| outcome | approved |" in record and "| decided by | alice |" in record
    assert "| why | staging green |" in record and "create `rg-mmrv-prod`" in record


def test_rejection_stops_before_production_saying_why(mmrv: Any) -> None:
    run = GatedRun(**MINUTE)
    run_id = run.wait_paused()
    code, _, err = mmrv("reject", run_id, "--approver", "bob", "--reason", "wait for Monday")
    assert code == 0, err

    refused = run.finish()
    assert isinstance(refused, ApprovalRefused), refused
    assert refused.decision.outcome == "rejected"
    assert not run.production_changed
    state = run.read().state
    assert state is not None and state.is_cancelled()
    assert state.message == "approval gate production: rejected by bob: wait for Monday. Nothing in production changed."
    record = run.artifact()
    assert "| outcome | rejected |" in record and "| decided by | bob |" in record
    assert "| production | unchanged: the migration stops here |" in record


def test_an_approver_not_on_the_allow_list_cannot_approve(mmrv: Any) -> None:
    run = GatedRun(**MINUTE)
    code, _, err = mmrv("approve", run.wait_paused(), "--approver", "mallory")
    assert code == 0, err  # the CLI delivers the answer; the gate judges it

    refused = run.finish()
    assert isinstance(refused, ApprovalRefused) and refused.decision.outcome == "not_allowed"
    assert not run.production_changed
    state = run.read().state
    assert state is not None and state.is_cancelled()
    assert "'mallory' is not an approver; allowed: alice, bob" in (state.message or "")
    assert "| decided by | mallory (not an approver) |" in run.artifact()


def test_no_decision_in_time_stops_and_a_late_answer_is_refused(mmrv: Any) -> None:
    timeout, _ = scaled_waits(100, 0.01)
    assert timeout == 1
    run = GatedRun(timeout_seconds=100, time_scale=0.01)
    run_id = run.wait_paused()
    refused = run.finish()
    seconds = time.monotonic() - run.started
    assert isinstance(refused, ApprovalRefused) and refused.decision.outcome == "timed_out"
    assert seconds < timeout + GRACE_SECONDS, "the gate keeps its own deadline, ahead of Prefect's"
    assert not run.production_changed
    state = run.read().state
    assert state is not None and state.is_cancelled()  # not Prefect's "paused and never resumed" failure
    assert state.message == (
        "approval gate production: timed_out: no decision within 1 s. Nothing in production changed."
    )
    assert "| outcome | timed_out |" in run.artifact()

    code, _, err = mmrv("approve", run_id, "--approver", "alice")
    assert code == 2
    assert f"flow run {run_id}" in err and "is not paused (it is Cancelled)" in err


def test_auto_approve_does_not_pause_and_is_recorded_as_such() -> None:
    run = GatedRun(auto_approve=True, **MINUTE)
    decision = run.finish()
    assert isinstance(decision, Decision) and decision.go and decision.auto and decision.approver is None
    assert run.production_changed
    record = run.artifact()
    assert "automatic (`--auto-approve`, a rehearsal)" in record and "auto-approved by the rehearsal" in record


def test_cli_errors_unknown_run_not_paused_server_down(mmrv: Any) -> None:
    code, _, err = mmrv("approve", str(uuid.uuid4()), "--approver", "alice")
    assert code == 2 and "no flow run" in err

    code, _, err = mmrv("reject", "not-a-run-id", "--approver", "alice")
    assert code == 2 and "is not a flow run id" in err

    done = GatedRun(auto_approve=True, **MINUTE)
    done.finish()
    code, _, err = mmrv("approve", done.run_id, "--approver", "alice")
    assert code == 2 and "is not paused (it is Completed)" in err

    with temporary_settings({PREFECT_API_URL: f"http://127.0.0.1:{free_port()}/api"}):
        code, _, err = mmrv("pending")
        assert code == 1 and "cannot reach" in err
        code, _, err = mmrv("approve", str(uuid.uuid4()), "--approver", "alice")
        assert code == 1 and "cannot reach" in err
