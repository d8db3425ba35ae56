"""The rehearsal: the whole back-end migration played against the local sandbox, then checked.

sandbox up -> the inventory (nothing the spec names may be missing) -> the users (one
traffic generator per environment, resolving the public names from Route 53 like a
resolver, serving the error-rate gate's metrics) -> the migration flow (phases 1 and 2,
gates approved by the rehearsal or by a person in the Prefect UI) -> a drift check per
environment that must be clean -> the report (printed, and kept in .sandbox/report.md)
-> sandbox down, whatever happened.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from migration.errors import MigrationError
from migration.settings import activate_sandbox_profile

COMPONENT = "backend"


class RehearsalFailed(MigrationError):
    """The rehearsal ran but something it checks did not hold (exit 1); the report says what."""


@contextmanager
def prefect_server(state_dir: Path, progress: Callable[[str], None]) -> Iterator[str]:
    """A Prefect server with its UI on a free port (for approvals in the UI); its URL. Stopped after."""
    from sandbox.process import free_ports

    port = free_ports(1)[0]
    url = f"http://127.0.0.1:{port}"
    home = state_dir / "prefect-server"
    home.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_API_URL": f"{url}/api",
        "DO_NOT_TRACK": "1",
    }
    env.pop("PREFECT_API_URL", None)
    log = (state_dir / "logs").joinpath("prefect-server.log")
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/health", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise MigrationError(f"the Prefect server did not start; see {log}") from None
                time.sleep(0.5)
        progress(f"Prefect UI: {url}  (approve the paused run there, or: mmrv-migrate approve RUN_ID --approver NAME)")
        previous = {k: os.environ.get(k) for k in ("PREFECT_API_URL",)}
        os.environ["PREFECT_API_URL"] = f"{url}/api"
        from prefect.settings import PREFECT_API_URL, temporary_settings

        try:
            with temporary_settings(updates={PREFECT_API_URL: f"{url}/api"}):  # also when Prefect read its settings
                yield url
        finally:
            for key, value in previous.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=5)


def rehearse(
    spec_path: Path,
    state_dir: Path,
    *,
    fault_rate: float = 0.0,
    seed: int = 0,
    time_scale: float = 0.01,
    approve_in_ui: bool = False,
    progress: Callable[[str], None] = print,
) -> str:
    """Play the migration on a fresh sandbox and check it; returns the report (raises when a check failed)."""
    from migration.spec import load_spec
    from sandbox.manager import down, up
    from sandbox.traffic import config_for_sandbox, start

    spec = load_spec(spec_path)
    began = time.monotonic()
    # a `kill` (SIGTERM) unwinds like Ctrl-C, so the sandbox and the users are stopped below
    previous_handler = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    up(state_dir, spec=spec, fault_rate=fault_rate, seed=seed, progress=progress)
    running: list[Any] = []
    server = prefect_server(state_dir, progress) if approve_in_ui else _nothing()
    try:
        server.__enter__()  # before any flow runs: the runs must report to the server people look at
        activate_sandbox_profile(state_dir)
        from flows.drift import drift_flow
        from flows.inventory import inventory_flow
        from migration.drift import DriftFound
        from migration.inventory import render_markdown

        inventory = inventory_flow(spec_path=str(spec_path), env="all")
        if inventory.missing:
            raise RehearsalFailed(
                f"rehearsal: {len(inventory.missing)} item(s) missing on the sandbox's AWS side\n"
                + render_markdown(inventory)
            )
        urls: dict[str, str] = {}
        for environment in spec.environments:
            if not any(r.component == COMPONENT for r in environment.dns.records):
                continue
            config = config_for_sandbox(
                state_dir,
                spec,
                environment.name,
                COMPONENT,
                azure_target="127.0.0.1",
                azure_url=None,
                time_scale=time_scale,
                rate_per_second=20,
            )
            users = start(config, state_dir=state_dir, label=f"traffic-{environment.name}-{COMPONENT}")
            running.append(users)
            urls[environment.name] = users.url
        migrated = _migrate(spec_path, urls, time_scale, auto_approve=not approve_in_ui)
        traffic = {env: _stats(url) for env, url in urls.items()}
        checks: list[str] = []
        drifted: list[str] = []
        for environment in spec.environments:
            try:
                report = drift_flow(spec_path=str(spec_path), env=environment.name)
                checks.append(f"- {report.summary()}")
            except DriftFound as exc:
                checks.append(f"- {exc.report.summary()}")
                drifted.append(exc.report.render_markdown())
        minutes = (time.monotonic() - began) / 60
        lines = [render_markdown(inventory), migrated.render_markdown(), "## The users during the cutovers", ""]
        for env, stats in traffic.items():
            sides = {
                side: sum(
                    c.get("success", 0) + c.get("failure", 0)
                    for n, c_side in stats.get("names", {}).items()
                    for s, c in c_side.items()
                    if s == side
                )
                for side in ("aws", "azure")
            }
            lines.append(
                f"- {env}: {stats.get('requests', 0)} request(s), {stats.get('failures', 0)} failed "
                f"(answered by AWS {sides['aws']}, by Azure {sides['azure']})"
            )
            lines += [f"  - {f.get('reason')}" for f in (stats.get("recent_failures") or [])[:5]]
        lines += ["", "## Drift check after the migration", "", *checks, "", *drifted]
        lines += [f"Rehearsal took {minutes:.1f} min (time scale {time_scale}, fault rate {fault_rate})."]
        report_text = "\n".join(lines) + "\n"
        (state_dir / "report.md").write_text(report_text, encoding="utf-8")
        failed = sum(int(s.get("failures", 0)) for s in traffic.values())
        if drifted:
            raise RehearsalFailed(f"rehearsal: drift after the migration (report in {state_dir / 'report.md'})")
        if failed:
            raise RehearsalFailed(
                f"rehearsal: {failed} user request(s) failed during the cutovers (report in {state_dir / 'report.md'})"
            )
        return report_text
    finally:
        try:
            for users in running:
                users.stop()
            server.__exit__(None, None, None)
            down(state_dir)
        finally:
            signal.signal(signal.SIGTERM, previous_handler)


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


@contextmanager
def _nothing() -> Iterator[None]:
    yield None


def _migrate(spec_path: Path, urls: dict[str, str], time_scale: float, *, auto_approve: bool) -> Any:
    from flows.migration import migration_flow

    return migration_flow(
        spec_path=str(spec_path),
        env="all",
        auto_approve=auto_approve,
        time_scale=time_scale,
        metrics_query_urls=urls,
    )


def _stats(url: str) -> dict[str, Any]:
    import json

    try:
        with urllib.request.urlopen(url + "/stats", timeout=5) as response:
            data: dict[str, Any] = json.loads(response.read())
    except (OSError, ValueError) as exc:
        return {"error": str(exc)}
    return data
