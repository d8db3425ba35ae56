"""`mmrv-migrate`: the command line. The only place that turns errors into exit codes.

Exit codes: 0 success, 1 failure (a cloud said no or could not be reached), 2 bad input
or usage (nothing was contacted, nothing changed).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from migration.errors import InputError, MigrationError
from migration.settings import activate_sandbox_profile, sandbox_dir
from migration.spec import DEFAULT_SPEC_PATH, Spec, load_spec

console = Console()
err_console = Console(stderr=True, soft_wrap=True)

app = typer.Typer(
    name="mmrv-migrate",
    help=(
        "Migrate MMRV from AWS (ECR, ECS, Amplify, Secrets Manager, Route 53) to Azure "
        "(ACR, AKS, Key Vault), phase by phase, as Prefect flows.\n\n"
        "Every command reads the migration spec (default deployments/mmrv.yaml). Add "
        "--sandbox to talk to the local sandbox started by `mmrv-migrate sandbox up` "
        "instead of the real clouds.\n\n"
        "Exit codes: 0 success, 1 failure, 2 bad input (nothing contacted, nothing changed)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
sandbox_app = typer.Typer(
    help="The local sandbox: real HTTP servers on 127.0.0.1 standing in for AWS (and later Azure).",
    no_args_is_help=True,
)
app.add_typer(sandbox_app, name="sandbox")
run_app = typer.Typer(
    help="Run one phase of the migration as a Prefect flow in this process: it plans, then applies.",
    no_args_is_help=True,
)
app.add_typer(run_app, name="run")

SpecOption = Annotated[
    Path, typer.Option("--spec", help="The migration spec (YAML). Validated before anything is contacted.")
]
SandboxOption = Annotated[
    bool,
    typer.Option(
        "--sandbox", help="Use the local sandbox's endpoints (from .sandbox/profile.env) instead of the clouds."
    ),
]
EnvOption = Annotated[
    str,
    typer.Option("--env", help="Environment to work on: staging, production, or all (in migration order)."),
]


def _prefect_defaults() -> None:
    """Prefect state lives in the project and never phones home (offline it logs errors)."""
    os.environ.setdefault("PREFECT_HOME", str(Path(".prefect").resolve()))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")


def _load(spec_path: Path, env: str) -> Spec:
    spec = load_spec(spec_path)
    if env != "all":
        spec.environment(env)  # raises a SpecError naming the allowed values
    return spec


@app.command()
def validate(spec: SpecOption = DEFAULT_SPEC_PATH) -> None:
    """Check the migration spec and print a one-line summary (contacts nothing)."""
    parsed = load_spec(spec)
    envs = ", ".join(e.name for e in parsed.environments)
    comps = ", ".join(parsed.components)
    console.print(f"[green]ok[/green] {spec}: {parsed.name}, components {comps}, environments {envs}")


@app.command()
def inventory(
    spec: SpecOption = DEFAULT_SPEC_PATH,
    env: EnvOption = "all",
    sandbox: SandboxOption = False,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the inventory as JSON to this file.")
    ] = None,
) -> None:
    """Discover what MMRV runs on AWS today: ECS, ECR, Amplify, secrets (names only), DNS.

    Runs the `inventory` Prefect flow in this process, publishes a table and a summary
    in the Prefect UI, prints the report, and fails (exit 1) when something the spec
    names is missing on AWS.
    """
    _load(spec, env)
    if sandbox:
        activate_sandbox_profile()
    _prefect_defaults()
    from flows.inventory import inventory_flow
    from migration.inventory import render_markdown

    result = inventory_flow(spec_path=str(spec), env=env)
    console.print(render_markdown(result), markup=False, highlight=False, soft_wrap=True)
    if json_out:
        json_out.write_text(result.model_dump_json(indent=2) + "\n", encoding="utf-8")
        console.print(f"inventory written to {json_out}", soft_wrap=True)
    if result.missing:
        raise MigrationError(f"{len(result.missing)} item(s) the spec names are missing on AWS (see above)")


PHASES = ("platform",)


@app.command()
def plan(
    env: EnvOption = "staging",
    phase: Annotated[str, typer.Option("--phase", help=f"Which phase to plan: {', '.join(PHASES)}.")] = "platform",
    spec: SpecOption = DEFAULT_SPEC_PATH,
    sandbox: SandboxOption = False,
    json_out: Annotated[
        Path | None,
        typer.Option("--json", help='Write the plan as JSON: {"actions": [{"kind", "resource", "reason"}]}.'),
    ] = None,
) -> None:
    """Show what a phase would change, and why, without changing anything in any cloud.

    Reads what is there, compares it with the spec and prints one line per resource:
    + create, ~ update (with the fields), = unchanged, ! blocked (exists but is not owned
    by mmrv-migrate, so the tool will not touch it). Exit 0 whatever the plan says.
    """
    if phase not in PHASES:
        raise InputError(f"--phase {phase!r} is not a phase; allowed: {', '.join(PHASES)}")
    parsed = _load(spec, env)
    if sandbox:
        activate_sandbox_profile()
    _prefect_defaults()
    from flows.platform import platform_flow

    plans = [platform_flow(spec_path=str(spec), env=e.name, dry_run=True).plan for e in parsed.select(env)]
    for p in plans:
        console.print(p.render_markdown(include_noop=True))
    if json_out:
        payload = {
            "plans": [p.to_json_dict() for p in plans],
            "actions": [a for p in plans for a in p.to_json_dict()["actions"]],
        }
        json_out.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        console.print(f"plan written to {json_out}")


@run_app.command("platform")
def run_platform(
    env: EnvOption = "staging",
    spec: SpecOption = DEFAULT_SPEC_PATH,
    sandbox: SandboxOption = False,
) -> None:
    """Create or update the Azure platform of an environment: resource group, ACR, AKS, identities, Key Vault, firewall.

    Plans first (published as a Prefect artifact), applies only what differs, in
    dependency order, then reads everything back: the plan must be empty afterwards.
    A rerun after a failure completes what is missing; a rerun after success changes nothing.
    Refuses to start (changing nothing) when a resource it would change is not its own.
    """
    parsed = _load(spec, env)
    if sandbox:
        activate_sandbox_profile()
    _prefect_defaults()
    from flows.platform import platform_flow

    for e in parsed.select(env):
        result = platform_flow(spec_path=str(spec), env=e.name)
        console.print(result.plan.render_markdown())
        console.print(f"[green]{e.name}: {len(result.applied)} change(s) applied and verified[/green]")


@sandbox_app.command("up")
def sandbox_up(
    fault_rate: Annotated[
        float,
        typer.Option(
            "--fault-rate",
            min=0.0,
            max=0.9,
            help="Share of requests that fail like a real cloud does (429, 503, reset, lost response).",
        ),
    ] = 0.0,
    seed: Annotated[int, typer.Option("--seed", help="Seed for the generated estate and the faults.")] = 0,
    spec: SpecOption = DEFAULT_SPEC_PATH,
) -> None:
    """Start the sandbox servers, wait until healthy, seed MMRV's AWS estate, write .sandbox/profile.env."""
    from sandbox.manager import up

    parsed = load_spec(spec)
    profile = up(sandbox_dir(), spec=parsed, fault_rate=fault_rate, seed=seed, progress=err_console.print)
    console.print(f"sandbox up: {profile.profile_path}")
    console.print("use it with --sandbox, or `set -a; . .sandbox/profile.env` for boto3 and the aws CLI")


@sandbox_app.command("status")
def sandbox_status() -> None:
    """Show the sandbox's services, their endpoints and whether they answer."""
    from sandbox.manager import status

    services = status(sandbox_dir())
    if not services:
        console.print("no sandbox is running")
        raise typer.Exit(code=3)
    for svc in services:
        mark = "[green]healthy[/green]" if svc.healthy else "[red]down[/red]"
        console.print(f"{svc.name:<16} pid {svc.pid:<8} {svc.url:<40} {mark}")
    if not all(s.healthy for s in services):
        raise typer.Exit(code=1)


@sandbox_app.command("down")
def sandbox_down() -> None:
    """Stop exactly the processes the sandbox started; keep its data and logs for inspection."""
    from sandbox.manager import down

    stopped = down(sandbox_dir())
    console.print(f"sandbox down ({len(stopped)} process(es) stopped)")


@app.command()
def rehearse(
    spec: SpecOption = DEFAULT_SPEC_PATH,
    fault_rate: Annotated[float, typer.Option("--fault-rate", min=0.0, max=0.9)] = 0.0,
    seed: Annotated[int, typer.Option("--seed")] = 0,
) -> None:
    """Rehearse the migration on the sandbox: up, run, report, down.

    Today the rehearsal covers what has landed: the inventory of MMRV's AWS estate.
    """
    from sandbox.manager import down, up

    parsed = load_spec(spec)
    state = sandbox_dir()
    up(state, spec=parsed, fault_rate=fault_rate, seed=seed, progress=err_console.print)
    try:
        activate_sandbox_profile(state)
        _prefect_defaults()
        from flows.inventory import inventory_flow
        from migration.inventory import render_markdown

        result = inventory_flow(spec_path=str(spec), env="all")
        report = render_markdown(result)
        console.print(report, markup=False, highlight=False, soft_wrap=True)
        (state / "report.md").write_text(report, encoding="utf-8")
        if result.missing:
            raise MigrationError(f"rehearsal: {len(result.missing)} item(s) missing on the sandbox's AWS side")
    finally:
        down(state)


def main() -> None:
    try:
        code = app(standalone_mode=False)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(1)
    except typer.TyperException as exc:  # usage errors: bad option, unknown command
        exc.show()  # type: ignore[attr-defined]
        sys.exit(2)
    except InputError as exc:
        err_console.print(f"[red]error:[/red] {exc}", highlight=False)
        sys.exit(2)
    except MigrationError as exc:
        err_console.print(f"[red]failed:[/red] {exc}", highlight=False)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
