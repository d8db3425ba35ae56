"""The DNS cutover flow on the sandbox: real Route 53 data (moto), a real Azure-side app, real users.

Waits run at a time scale of 0.02 (a 100 s bake takes 2 s, a 60 s TTL 1.2 s), so every wait
happens in order and each test takes seconds. The traffic generator resolves the name from
Route 53 the whole time and must count zero failed requests while both sides are healthy.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from prefect.variables import Variable

from flows.cutover import cutover_flow
from migration.cutover import GateFailed, SavedRecords, plan_name, restore_changes, variable_name
from migration.spec import load_spec
from sandbox import process
from sandbox.state import read_state
from sandbox.traffic import config_for_sandbox, start
from tests.conftest import ROOT, SPEC_PATH, RunningSandbox

pytestmark = [pytest.mark.sandbox, pytest.mark.usefixtures("prefect_harness")]

# --- the scene --------------------------------------------------------------------------------

STAGING_API = "staging-api.mmrv.example.com"
STAGING_WEB = "staging.mmrv.example.com"
ZONE = "mmrv.example.com"


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_ENDPOINT_URL", "AWS_CA_BUNDLE", "MMRV_"))}
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def http(method: str, url: str, body: dict[str, Any] | None = None, timeout: float = 5.0) -> Any:
    data = json.dumps(body or {}).encode() if method == "POST" else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        text = response.read().decode()
    try:
        return json.loads(text)
    except ValueError:
        return text


class Server:
    """A `python -m sandbox.<module>` process of the test's own, stopped by pid at the end."""

    def __init__(self, module: str, args: list[str], port: int, logs: Path) -> None:
        self.url = f"http://127.0.0.1:{port}"
        argv = [sys.executable, "-m", module, *args]
        self.record = process.spawn(argv, log_path=logs / f"{module}-{port}.log", env=_child_env(), cwd=ROOT)
        self.log = logs / f"{module}-{port}.log"
        deadline = time.monotonic() + 20
        while True:
            try:
                http("GET", self.url + "/healthz", timeout=1)
                return
            except OSError:
                if not process.is_running(self.record) or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"{module} did not start: {process.tail(self.log, 20)}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        process.stop_all([self.record], timeout=5)


class Workload(Server):
    def __init__(self, logs: Path, side: str = "azure") -> None:
        (port,) = process.free_ports(1)
        super().__init__("sandbox.workload", ["--port", str(port), "--side", side], port, logs)

    def fail(self, status: int = 500) -> None:
        http("POST", self.url + "/__workload/fail", {"status": status})

    def heal(self) -> None:
        http("POST", self.url + "/__workload/heal")

    def state(self) -> dict[str, Any]:
        return dict(http("GET", self.url + "/__workload/state"))


class Traffic:
    """The users: `sandbox.traffic`, started the way the rehearsal starts it."""

    def __init__(self, box: RunningSandbox, azure: Workload, time_scale: float) -> None:
        config = config_for_sandbox(
            box.state_dir,
            load_spec(SPEC_PATH),
            "staging",
            "backend",
            azure_target="127.0.0.1",
            azure_url=azure.url,
            time_scale=time_scale,
            rate_per_second=40,
        )
        self.running = start(config, state_dir=box.state_dir, label="traffic-staging-backend")
        self.url = self.running.url

    def stop(self) -> None:
        self.running.stop()

    def stats(self) -> dict[str, Any]:
        return dict(http("GET", self.url + "/stats"))

    def reset(self) -> None:
        http("POST", self.url + "/reset")


def artifacts_of(flow_run_id: Any) -> dict[str, Any]:
    """The latest version of each artifact key of a run (a report is published again after every step)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    latest: dict[str, Any] = {}
    for artifact in sorted(found, key=lambda a: a.created):
        latest[str(artifact.key)] = artifact
    return latest


def route53(box: RunningSandbox) -> Any:
    """A client straight to moto (no proxy): what the test compares with, byte for byte."""
    state = read_state(box.state_dir)
    assert state is not None
    return boto3.client(
        "route53",
        endpoint_url=state.services["moto"].direct_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def zone_id(client: Any) -> str:
    zones = client.list_hosted_zones_by_name(DNSName=ZONE + ".")["HostedZones"]
    return str(next(z["Id"] for z in zones if z["Name"] == ZONE + "."))


def listing(client: Any) -> list[dict[str, Any]]:
    """The whole zone as `list_resource_record_sets` answers it."""
    pages = client.get_paginator("list_resource_record_sets").paginate(HostedZoneId=zone_id(client))
    return [rs for page in pages for rs in page["ResourceRecordSets"]]


def records_of(client: Any, name: str) -> list[dict[str, Any]]:
    return [rs for rs in listing(client) if rs["Name"].rstrip(".") == name]


def weights(client: Any, name: str) -> dict[str, int]:
    return {rs["SetIdentifier"]: rs["Weight"] for rs in records_of(client, name) if "SetIdentifier" in rs}


def write_spec(path: Path, **cutover: Any) -> Path:
    data = yaml.safe_load(SPEC_PATH.read_text())
    data["cutover"] = {**data["cutover"], **cutover}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# --- the tests --------------------------------------------------------------------------------

TIME_SCALE = 0.02
POLICY = {
    "ttl_seconds": 60,
    "weight_steps": [10, 50, 100],
    "bake_seconds": 100,  # 2 s at the time scale
    "smoke_interval_seconds": 10,  # 0.2 s
    "error_budget": 0.01,
}


@pytest.fixture(scope="module")
def box(sandbox: RunningSandbox) -> Iterator[RunningSandbox]:
    previous = sandbox.activate()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MMRV_RETRY_BASE_SECONDS", "0.1")
        mp.setenv("MMRV_TASK_RETRIES", "2")
        try:
            yield sandbox
        finally:
            RunningSandbox.restore(previous)


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cutover-logs")


@pytest.fixture(scope="module")
def azure(logs: Path) -> Iterator[Workload]:
    server = Workload(logs, side="azure")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def traffic(box: RunningSandbox, azure: Workload) -> Iterator[Traffic]:
    server = Traffic(box, azure, TIME_SCALE)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def r53(box: RunningSandbox) -> Any:
    return route53(box)


@pytest.fixture(scope="module")
def original(r53: Any) -> Iterator[list[dict[str, Any]]]:
    """The zone as seeded, before any cutover; put back at the end whatever a failed test left behind."""
    seeded = listing(r53)
    yield seeded
    for name in (STAGING_API, STAGING_WEB):
        saved = [rs for rs in seeded if rs["Name"] == name + "."]
        changes = restore_changes(saved, records_of(r53, name))
        if changes:
            batch = [c.to_api() for c in changes]
            r53.change_resource_record_sets(HostedZoneId=zone_id(r53), ChangeBatch={"Changes": batch})


@pytest.fixture()
def spec_file(tmp_path: Path, traffic: Traffic) -> Path:
    return write_spec(tmp_path / "mmrv.yaml", **POLICY, metrics_query_url=traffic.url)


def run(spec_file: Path, azure: Workload, **kwargs: Any) -> Any:
    params: dict[str, Any] = {
        "spec_path": str(spec_file),
        "env": "staging",
        "component": "backend",
        "azure_target": "127.0.0.1",
        "azure_url": azure.url,
        "time_scale": TIME_SCALE,
    }
    return cutover_flow(**{**params, **kwargs}, return_state=True)


def settle() -> None:
    """Let every user's cached answer expire, so the counts include the final state."""
    time.sleep(60 * TIME_SCALE * 2)


@pytest.fixture(scope="module")
def completed(
    box: RunningSandbox, r53: Any, original: list[dict[str, Any]], azure: Workload, traffic: Traffic, tmp_path_factory
) -> dict[str, Any]:
    """One healthy cutover to 100 %, with the users counted throughout."""
    spec = write_spec(tmp_path_factory.mktemp("spec") / "mmrv.yaml", **POLICY, metrics_query_url=traffic.url)
    azure.heal()
    traffic.reset()
    began = time.monotonic()
    state = run(spec, azure)
    took = time.monotonic() - began
    settle()
    return {
        "spec": spec,
        "state": state,
        "took": took,
        "stats": traffic.stats(),
        "after": listing(r53),
        "azure_served": azure.state()["requests"],
    }


def test_healthy_cutover_ends_at_azure_100_with_zero_failed_requests(completed: dict[str, Any], r53: Any) -> None:
    state = completed["state"]
    assert state.is_completed(), state.message
    report = state.result()
    assert report.outcome == "complete"
    assert [(s.phase, s.status, s.changed) for s in report.steps] == [
        ("weight-10", "done", [STAGING_API]),
        ("weight-50", "done", [STAGING_API]),
        ("weight-100", "done", [STAGING_API]),
    ]
    assert all(s.checks >= 3 and not s.failures for s in report.steps)  # gates ran through every bake
    assert weights(r53, STAGING_API) == {"aws": 0, "azure": 100}  # AWS kept warm at 0
    pair = {rs["SetIdentifier"]: rs for rs in records_of(r53, STAGING_API)}
    assert "AliasTarget" in pair["aws"] and "TTL" not in pair["aws"]
    assert pair["azure"]["TTL"] == 60 and pair["azure"]["ResourceRecords"] == [{"Value": "127.0.0.1"}]
    assert report.rollback_until is not None

    stats = completed["stats"]
    assert stats["failures"] == 0, stats["recent_failures"][:5]
    sides = stats["names"][STAGING_API]
    assert sides["aws"]["success"] > 20 and sides["azure"]["success"] > 20, sides  # both sides served users
    assert completed["took"] < 60


def test_the_report_and_the_saved_original_are_published(completed: dict[str, Any], original: list[Any]) -> None:
    state = completed["state"]
    artifacts = artifacts_of(state.state_details.flow_run_id)
    report = artifacts["cutover-staging-backend"].data
    assert "| weight-50 | 50 / 50 |" in report and "complete" in report
    saved = artifacts["cutover-saved-staging-staging-api-mmrv-example-com"].data
    seeded = [rs for rs in original if rs["Name"] == STAGING_API + "."]
    assert json.dumps(seeded, indent=2) in saved  # the audit copy is the exact JSON Route 53 returned
    value = Variable.get(variable_name("mmrv", "staging", STAGING_API))
    kept = SavedRecords.model_validate(value)
    assert kept.record_sets == seeded and kept.status == "complete" and kept.azure_weight == 100


def test_a_rerun_of_a_completed_cutover_changes_nothing(
    completed: dict[str, Any], r53: Any, azure: Workload, traffic: Traffic
) -> None:
    state = run(completed["spec"], azure)
    assert state.is_completed(), state.message
    report = state.result()
    assert report.outcome == "already-complete" and report.steps == []
    assert listing(r53) == completed["after"]


def test_rollback_after_a_completed_cutover_restores_the_originals(
    completed: dict[str, Any], r53: Any, original: list[dict[str, Any]], azure: Workload, traffic: Traffic
) -> None:
    state = run(completed["spec"], azure, rollback=True, azure_target=None, azure_url=None)
    assert state.is_completed(), state.message
    report = state.result()
    assert report.outcome == "rolled-back" and report.steps[0].changed == [STAGING_API]
    after = listing(r53)
    assert after == original and json.dumps(after) == json.dumps(original)  # byte for byte
    settle()
    assert traffic.stats()["failures"] == 0
    again = run(completed["spec"], azure, rollback=True).result()
    assert again.outcome == "nothing-to-roll-back" and listing(r53) == original


def _fail_from_weight(r53: Any, azure: Workload, weight: int, stop: threading.Event) -> None:
    while not stop.is_set():
        if weights(r53, STAGING_API).get("azure", 0) >= weight:
            azure.fail(500)
            return
        time.sleep(0.02)


def test_a_target_failing_from_the_50_step_on_restores_the_records_exactly(
    r53: Any, original: list[dict[str, Any]], azure: Workload, traffic: Traffic, spec_file: Path
) -> None:
    assert listing(r53) == original
    azure.heal()
    stop = threading.Event()
    watcher = threading.Thread(target=_fail_from_weight, args=(r53, azure, 50, stop), daemon=True)
    watcher.start()
    try:
        state = run(spec_file, azure)
    finally:
        stop.set()
        watcher.join(5)
        azure.heal()
    assert state.is_failed()
    with pytest.raises(GateFailed, match=r"gate (smoke:health|smoke:version|error-rate) failed at azure weight 50"):
        state.result()
    after = listing(r53)
    assert after == original and json.dumps(after) == json.dumps(original)  # byte for byte, the whole zone
    report = artifacts_of(state.state_details.flow_run_id)["cutover-staging-backend"].data
    assert "restored" in report and "| weight-50 | 50 / 50 |" in report and "failed" in report
    kept = SavedRecords.model_validate(Variable.get(variable_name("mmrv", "staging", STAGING_API)))
    assert kept.status == "restored"


def test_a_rerun_after_a_crash_continues_from_what_route53_shows(
    r53: Any, original: list[dict[str, Any]], azure: Workload, traffic: Traffic, tmp_path: Path
) -> None:
    spec_file = write_spec(tmp_path / "mmrv.yaml", **POLICY)  # the metrics URL comes as a parameter this time
    # a run that died during the 50 % bake: Route 53 shows weight 50, the original is saved
    seeded = records_of(r53, STAGING_API)
    plan = plan_name(STAGING_API, seeded, "127.0.0.1", load_spec(spec_file).cutover)
    saved = SavedRecords(
        spec="mmrv",
        environment="staging",
        component="backend",
        name=STAGING_API,
        zone_id=zone_id(r53),
        record_sets=seeded,
        saved_at="2024-01-01T00:00:00+00:00",
        status="in-progress",
        azure_weight=50,
    )
    Variable.set(variable_name("mmrv", "staging", STAGING_API), saved.model_dump(mode="json"), overwrite=True)
    for step in plan.steps[:2]:
        r53.change_resource_record_sets(HostedZoneId=zone_id(r53), ChangeBatch={"Changes": step.api_changes()})
    azure.heal()
    traffic.reset()

    report = run(spec_file, azure, metrics_query_url=traffic.url).result()
    assert [(s.phase, s.status, s.changed, s.already) for s in report.steps] == [
        ("weight-10", "skipped", [], [STAGING_API]),
        ("weight-50", "done", [], [STAGING_API]),  # baked again: its bake may not have finished
        ("weight-100", "done", [STAGING_API], []),
    ]
    assert weights(r53, STAGING_API) == {"aws": 0, "azure": 100}
    assert report.steps[-1].max_error_rate == 0.0  # the error-rate gate read the users' counts
    assert run(spec_file, azure, rollback=True).result().outcome == "rolled-back"
    assert listing(r53) == original
    settle()
    assert traffic.stats()["failures"] == 0


def test_a_cname_lowers_its_ttl_first_and_is_restored_exactly(
    r53: Any, original: list[dict[str, Any]], azure: Workload, tmp_path: Path
) -> None:
    spec_file = write_spec(tmp_path / "mmrv.yaml", **POLICY)  # no metrics endpoint: the smoke checks gate alone
    target = "mmrv-web-staging.westeurope.cloudapp.azure.com"
    began = time.monotonic()
    scale = 0.01
    report = run(spec_file, azure, component="frontend", azure_target=target, time_scale=scale).result()
    took = time.monotonic() - began
    assert report.outcome == "complete"
    assert [s.phase for s in report.steps] == ["lower-ttl", "weight-10", "weight-50", "weight-100"]
    assert report.steps[0].waited_seconds == pytest.approx(300 * scale)  # the old TTL, scaled
    pair = {rs["SetIdentifier"]: rs for rs in records_of(r53, STAGING_WEB)}
    assert {k: (v["Type"], v["TTL"], v["Weight"]) for k, v in pair.items()} == {
        "aws": ("CNAME", 60, 0),
        "azure": ("CNAME", 60, 100),
    }
    assert pair["azure"]["ResourceRecords"] == [{"Value": target}]
    assert took > 300 * scale + 3 * 100 * scale  # every wait happened, in order
    assert run(spec_file, azure, component="frontend", rollback=True).result().outcome == "rolled-back"
    assert json.dumps(listing(r53)) == json.dumps(original)


def test_a_target_that_cannot_be_paired_is_refused_before_anything_changes(
    r53: Any, original: list[dict[str, Any]], azure: Workload, spec_file: Path
) -> None:
    state = run(spec_file, azure, component="frontend", azure_target="20.31.5.7")
    assert state.is_failed()
    with pytest.raises(Exception, match=r"staging\.mmrv\.example\.com CNAME .*cannot be paired"):
        state.result()
    assert listing(r53) == original
