"""A person approves a paused migration through the real Prefect UI, in headless Chromium.

`prefect server start` (API and UI) runs as a subprocess on a free port with its own
PREFECT_HOME; the gated flow of tests/approval_flows.py runs in another subprocess and pauses
at the `production` gate; Playwright drives Debian's `chromium` (never a downloaded browser)
to the flow run's page, opens the Resume form, switches *approved* on, fills approver and
reason and submits. The flow must then complete, its production step must run, and the
`approval-production` artifact must name the approver. On failure a screenshot is kept in
the test's tmp directory (its path is in the failure message).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.aws_estate import free_port
from tests.conftest import ROOT

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
if CHROMIUM is None:
    pytest.skip(
        "Debian's chromium is not installed (apt-get install chromium; `make deps` does it as root)",
        allow_module_level=True,
    )

from playwright.sync_api import Page, sync_playwright  # noqa: E402  (after the skip: only with a browser)

STARTUP_SECONDS = 90.0
WAIT_SECONDS = 60.0


def _prefect_env(home: Path, api_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_API_URL=api_url,
        PREFECT_SERVER_UI_API_URL=api_url,  # what the UI's JavaScript calls (default: port 4200)
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD="1",
    )
    return env


class PrefectServer:
    def __init__(self, home: Path) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.api = f"{self.url}/api"
        self.env = _prefect_env(home, self.api)
        self.log = home / "server.log"
        prefect = str(Path(sys.executable).parent / "prefect")
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopped as a whole, by id
            )
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            assert self.process.poll() is None, f"prefect server exited: {self.log.read_text()[-3000:]}"
            try:
                if httpx.get(f"{self.api}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"prefect server did not answer: {self.log.read_text()[-3000:]}"
            time.sleep(0.5)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        response = httpx.post(f"{self.api}{path}", json=body, timeout=10)
        response.raise_for_status()
        return response.json()


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    started = time.monotonic()
    server = PrefectServer(tmp_path_factory.mktemp("prefect-home"))
    print(f"prefect server start (API + UI): {time.monotonic() - started:.1f} s")
    try:
        yield server
    finally:
        server.stop()


def _paused_run(server: PrefectServer, run_name: str, flow: subprocess.Popen[str]) -> str:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        assert flow.poll() is None, f"the flow ended without pausing: {flow.communicate()[0][-3000:]}"
        runs = server.post("/flow_runs/filter", {"flow_runs": {"name": {"any_": [run_name]}}})
        if runs and runs[0]["state"]["type"] == "PAUSED":
            return str(runs[0]["id"])
        time.sleep(0.2)
    raise AssertionError(f"{run_name} did not pause")


def _approve_in_the_ui(page: Page, run_url: str, approver: str, reason: str) -> None:
    page.goto(run_url)
    page.get_by_role("button", name="Resume").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Approval needed: production").wait_for()  # the request above the form
    assert "rg-mmrv-prod" in dialog.inner_text()

    def field(label: str) -> Any:
        return dialog.locator(".schema-form-property").filter(has=page.get_by_text(label, exact=True))

    field("Approved (Optional)").get_by_role("switch").click()
    field("Approver").locator("textarea").fill(approver)
    field("Reason (Optional)").locator("textarea").fill(reason)
    dialog.get_by_role("button", name="Submit").click()
    dialog.wait_for(state="hidden")


def test_approve_a_paused_run_from_the_prefect_ui(prefect_server: PrefectServer, tmp_path: Path) -> None:
    marker = uuid.uuid4().hex[:12]
    # a 10-minute gate polling every 0.2 s: the flow goes on right after the form is submitted
    flow = subprocess.Popen(
        [sys.executable, "-m", "tests.approval_flows", marker, "60000", "0.01"],
        cwd=ROOT,
        env=prefect_server.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    screenshot = tmp_path / "approval-ui-failure.png"
    try:
        run_id = _paused_run(prefect_server, f"gate-{marker}", flow)
        run_url = f"{prefect_server.url}/runs/flow-run/{run_id}"
        started = time.monotonic()
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(WAIT_SECONDS * 1000)
            try:
                _approve_in_the_ui(page, run_url, "alice", "staging green, from the UI")
                output, _ = flow.communicate(timeout=WAIT_SECONDS)
                page.reload()
                page.get_by_text("Completed").first.wait_for()  # the run's state badge
            except Exception as exc:
                page.screenshot(path=str(screenshot), full_page=True)
                raise AssertionError(f"the UI approval failed ({exc}); screenshot: {screenshot}") from exc
            finally:
                browser.close()
        print(f"approve through the UI (browser included): {time.monotonic() - started:.1f} s")
    finally:
        if flow.poll() is None:
            flow.kill()
            flow.wait(10)

    assert flow.returncode == 0, output[-3000:]
    assert output.strip().splitlines()[-1] == "outcome approved alice production-changed:yes", output[-3000:]
    run = httpx.get(f"{prefect_server.api}/flow_runs/{run_id}", timeout=10).json()
    assert run["state"]["type"] == "COMPLETED"
    artifacts = prefect_server.post(
        "/artifacts/filter",
        {"artifacts": {"key": {"any_": ["approval-production"]}, "flow_run_id": {"any_": [run_id]}}},
    )
    assert len(artifacts) == 1
    record = artifacts[0]["data"]
    assert "| decided by | alice |" in record and "| why | staging green, from the UI |" in record
