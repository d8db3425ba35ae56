"""Bad input to `run ship`, `plan`, `migrate`, `rehearse`: exit 2, a message naming the flag and what is allowed.

And nothing contacted: the CLI runs in this process (`migration.cli.main`, as the
`mmrv-migrate` script does) with every way out shut: sockets, name lookups, subprocesses,
and the modules that would run a flow, follow a deployment or start the sandbox. A command
that reached any of them before judging its input fails the test.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from migration import cli
from tests.conftest import ROOT

# Modules a command imports only once it has decided to act: a flow run, a deployment run, the sandbox.
ACTING_MODULES = (
    "flows.ship",
    "flows.cutover",
    "flows.migration",
    "flows.platform",
    "flows.images",
    "migration.rehearsal",
    "migration.deployments",
    "sandbox.manager",
)


class Contacted(AssertionError):
    pass


class _Tripwire(ModuleType):
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # the import system's own questions (`__path__`...)
            raise AttributeError(name)
        raise Contacted(f"{self.__name__}.{name} was used before the input was judged")


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[list[str]]:
    """Everything the CLI could contact, shut; yields what it tried."""
    attempts: list[str] = []

    def refuse(what: str) -> Any:
        def blocked(*args: Any, **kwargs: Any) -> Any:
            attempts.append(f"{what} {args[1:] if what.startswith('socket.') else args}")
            raise Contacted(f"{what} called: the command contacted something")

        return blocked

    monkeypatch.setattr(socket.socket, "connect", refuse("socket.connect"))
    monkeypatch.setattr(socket.socket, "connect_ex", refuse("socket.connect_ex"))
    monkeypatch.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
    monkeypatch.setattr(subprocess, "Popen", refuse("subprocess.Popen"))
    for name in ACTING_MODULES:
        monkeypatch.setitem(sys.modules, name, _Tripwire(name))
    # main() sets Prefect's defaults in os.environ: keep them from outliving the test
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    monkeypatch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    monkeypatch.setenv("DO_NOT_TRACK", "1")
    monkeypatch.setenv("MMRV_SANDBOX_DIR", str(ROOT / ".no-sandbox-here"))
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.chdir(ROOT)  # the default spec, deployments/mmrv.yaml, is relative
    yield attempts


def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["mmrv-migrate", *args])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    out, err = capsys.readouterr()
    code = exited.value.code
    return (code if isinstance(code, int) else 1), " ".join((err + out).split())


CASES: list[tuple[tuple[str, ...], str]] = [
    (
        ("run", "ship", "--env", "all"),
        "error: --env must name one environment to ship to: staging or production",
    ),
    (
        ("run", "ship", "--time-scale", "0"),
        "error: --time-scale 0.0 must be a positive number (1 in the cloud)",
    ),
    (
        ("run", "ship", "--env", "production", "--time-scale", "-0.5"),
        "error: --time-scale -0.5 must be a positive number",
    ),
    (
        ("run", "ship", "--time-scale", "0", "--via-deployment"),  # before any deployment is triggered
        "error: --time-scale 0.0 must be a positive number",
    ),
    (
        ("run", "ship", "--time-scale", "nan"),
        "error: --time-scale nan must be a positive number",
    ),
    (
        ("run", "ship", "--env", "qa"),
        "environment 'qa' is not in the spec; allowed: staging, production",
    ),
    (
        ("run", "cutover", "--env", "staging", "--time-scale", "0"),
        "error: --time-scale 0.0 must be a positive number",
    ),
    (
        ("plan", "--phase", "nope"),
        "error: --phase 'nope' is not a phase; allowed: platform, images, ship",
    ),
    (
        ("migrate", "--env", "nope"),
        "error: --env 'nope': allowed: staging, production, all",
    ),
    (
        ("migrate", "--auto-approve", "--time-scale", "0"),
        "error: --time-scale 0.0 must be a positive number",
    ),
    (
        ("rehearse", "--time-scale", "0"),
        "error: --time-scale 0.0 must be a positive number",
    ),
    (
        ("rehearse", "--fault-rate", "2"),
        "Invalid value for '--fault-rate':",  # then click's words for the range, which end in 0.9
    ),
]


@pytest.mark.parametrize(("args", "message"), CASES, ids=[" ".join(args) for args, _ in CASES])
def test_bad_input_exits_2_naming_the_flag_and_contacting_nothing(
    offline: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: tuple[str, ...],
    message: str,
) -> None:
    code, output = run_cli(monkeypatch, capsys, *args)
    assert offline == []
    assert "Contacted" not in output
    assert code == 2, output
    assert message in output, output
    if "--fault-rate" in args:
        assert "0.9" in output.split("--fault-rate", 2)[-1]


def test_migrate_needs_a_prefect_server_for_its_gates(
    offline: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    for args in (("migrate",), ("migrate", "--env", "production")):
        code, output = run_cli(monkeypatch, capsys, *args)
        assert (code, offline) == (2, []), output
        assert "error: the approval gates need a Prefect server that people reach: set PREFECT_API_URL" in output
        assert "or --auto-approve for a rehearsal" in output


def test_the_tripwires_catch_a_command_that_acts(
    offline: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Good input gets past the checks and reaches the flow: the fixture must notice (else the tests prove nothing)."""
    with pytest.raises(Contacted, match=r"flows\.ship\.ship_flow "):
        run_cli(monkeypatch, capsys, "run", "ship", "--env", "staging", "--time-scale", "0.01")
    with pytest.raises(Contacted, match="contacted something"):
        socket.create_connection(("127.0.0.1", 9))
    with pytest.raises(Contacted, match="contacted something"):
        subprocess.run(["true"], check=False)
    assert len(offline) == 2
