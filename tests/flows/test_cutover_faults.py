"""The cutover and its rollback under 20 % injected faults: same outcome, records restored exactly.

Route 53 requests go through the sandbox's fault proxy (429, 503, resets, and responses lost
after moto applied the batch). A lost answer to a change batch must not apply it twice nor
fail the run: the retry finds the batch applied (Route 53 refuses the repeated DELETE, the
task reads the records and sees its result).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import RunningSandbox, fault_tolerant
from tests.flows.test_cutover_flow import POLICY, STAGING_API, Workload, listing, route53, run, weights, write_spec

pytestmark = [pytest.mark.sandbox, pytest.mark.usefixtures("prefect_harness")]


def test_a_cutover_and_its_rollback_complete_under_20_percent_faults(
    faulty_sandbox: RunningSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    previous = faulty_sandbox.activate()
    fault_tolerant(monkeypatch)  # the session's other fixtures may have shrunk the retry budget
    azure = Workload(tmp_path)
    try:
        r53 = route53(faulty_sandbox)
        original = listing(r53)
        faults_before = int(faulty_sandbox.stats()["moto"]["faults_total"])  # type: ignore[index]
        spec = write_spec(tmp_path / "mmrv.yaml", **POLICY)
        report = run(spec, azure).result()
        assert report.outcome == "complete"
        assert weights(r53, STAGING_API) == {"aws": 0, "azure": 100}
        assert run(spec, azure, rollback=True).result().outcome == "rolled-back"
        assert json.dumps(listing(r53)) == json.dumps(original)
        faults = int(faulty_sandbox.stats()["moto"]["faults_total"]) - faults_before  # type: ignore[index]
        assert faults > 0, "no fault was injected: the test proved nothing"
    finally:
        azure.stop()
        RunningSandbox.restore(previous)
