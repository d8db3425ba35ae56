"""Bad input on the command line: exit 2, a message naming what is wrong, nothing contacted."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "MMRV_SANDBOX_DIR": str(ROOT / ".no-sandbox-here")}
    return subprocess.run(
        [sys.executable, "-m", "migration.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("plan", "--phase", "bogus"), "--phase 'bogus' is not a phase; allowed: platform"),
        (("run", "cutover", "--env", "all"), "--env must name one environment for a cutover"),
        (("run", "platform", "--env", "qa"), "environment 'qa' is not in the spec; allowed: staging, production"),
        (("run", "images", "--strategy", "ftp"), "--strategy 'ftp' is not a strategy"),
        (("inventory", "--sandbox"), "run `mmrv-migrate sandbox up` first"),
        (("run", "platform", "--spec", "/nonexistent.yaml"), "file not found: /nonexistent.yaml"),
        (("bogus-command",), "No such command"),
    ],
)
def test_bad_input_exits_2_naming_the_problem(args: tuple[str, ...], message: str) -> None:
    result = cli(*args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr.replace("\n", " ") or message in result.stdout, result.stderr


def test_help_teaches_the_commands() -> None:
    result = cli("--help")
    assert result.returncode == 0
    for command in ("validate", "inventory", "plan", "run", "sandbox", "rehearse", "translate", "images"):
        assert command in result.stdout
