"""`mmrv-migrate`: the command line. The only place that turns errors into exit codes.

Exit codes: 0 success, 1 failure (a cloud said no or could not be reached), 2 bad input
or usage (nothing was contacted, nothing changed), 3 drift found (`drift`).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

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
        "Exit codes: 0 success, 1 failure, 2 bad input (nothing contacted, nothing changed), 3 drift found."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # docstring paragraphs wrap to the terminal, not at our line breaks
)
sandbox_app = typer.Typer(
    help="The local sandbox: real HTTP servers on 127.0.0.1 standing in for AWS and Azure.",
    no_args_is_help=True,
)
app.add_typer(sandbox_app, name="sandbox")
run_app = typer.Typer(
    help="Run one phase of the migration as a Prefect flow, in this process or on a worker (--via-deployment): "
    "it plans, then applies.",
    no_args_is_help=True,
)
app.add_typer(run_app, name="run")
images_app = typer.Typer(
    help="Container images: copy one image between registries (the `run images` phase copies MMRV's).",
    no_args_is_help=True,
)
app.add_typer(images_app, name="images")

SpecOption = Annotated[
    Path, typer.Option("--spec", help="The migration spec (YAML). Validated before anything is contacted.")
]
SandboxOption = Annotated[
    bool,
    typer.Option(
        "--sandbox", help="Use the local sandbox's endpoints (from .sandbox/profile.env) instead of the clouds."
    ),
]
TimeScaleOption = Annotated[
    float,
    typer.Option(
        "--time-scale",
        help="Multiply every wait (TTLs, bakes, rollout deadlines, approval timeout, polling): 1 in the cloud.",
    ),
]
EnvOption = Annotated[
    str,
    typer.Option("--env", help="Environment to work on: staging, production, or all (in migration order)."),
]
ViaDeploymentOption = Annotated[
    bool,
    typer.Option(
        "--via-deployment",
        help="Trigger the phase's Prefect deployment (see `mmrv-migrate deploy`) through the Prefect API and "
        "follow the run on a worker, instead of running the flow in this process.",
    ),
]


def show(report: str) -> None:
    """Print a rendered report as is: "[staging]" is text here, not a Rich style tag."""
    console.print(report, markup=False, highlight=False, soft_wrap=True)


def _prefect_defaults() -> None:
    """Prefect state lives in the project and never phones home (offline it logs errors)."""
    os.environ.setdefault("PREFECT_HOME", str(Path(".prefect").resolve()))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")


def _positive_time_scale(time_scale: float) -> None:
    """Checked before anything is contacted (the flows check it too, but only once Prefect is reached)."""
    if not time_scale > 0:
        raise InputError(f"--time-scale {time_scale} must be a positive number (1 in the cloud)")


def _one_environment(env: str, what: str) -> None:
    if env == "all":
        raise InputError(f"--env must name one environment {what}: staging or production")


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
    show(render_markdown(result))
    if json_out:
        json_out.write_text(result.model_dump_json(indent=2) + "\n", encoding="utf-8")
        console.print(f"inventory written to {json_out}", soft_wrap=True)
    if result.missing:
        raise MigrationError(f"{len(result.missing)} item(s) the spec names are missing on AWS (see above)")


PHASES = ("platform", "images", "ship")
STRATEGIES = ("import", "copy", "docker")


@app.command()
def plan(
    env: EnvOption = "staging",
    phase: Annotated[str, typer.Option("--phase", help=f"Which phase to plan: {', '.join(PHASES)}.")] = "platform",
    component: Annotated[str, typer.Option("--component", help="With --phase ship: which component.")] = "backend",
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
    if phase == "images":
        from flows.images import images_flow

        image_plans = [images_flow(spec_path=str(spec), env=e.name, dry_run=True).plan for e in parsed.select(env)]
        for image_plan in image_plans:
            show(image_plan.render_markdown())
        plans = [image_plan.plan for image_plan in image_plans]
    elif phase == "ship":
        from flows.ship import ship_flow
        from migration.ship import render_diff

        plans = []
        for e in parsed.select(env):
            shipped = ship_flow(spec_path=str(spec), env=e.name, component=component, dry_run=True)
            show(f"{shipped.plan.summary()}\n{render_diff(shipped.plan)}")
            if shipped.secrets is not None:
                show(shipped.secrets.render_markdown())
            plans.append(shipped.plan)
    else:
        from flows.platform import platform_flow

        plans = [platform_flow(spec_path=str(spec), env=e.name, dry_run=True).plan for e in parsed.select(env)]
        for p in plans:
            show(p.render_markdown(include_noop=True))
    if json_out:
        payload = {
            "plans": [p.to_json_dict() for p in plans],
            "actions": [a for p in plans for a in p.to_json_dict()["actions"]],
        }
        json_out.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        console.print(f"plan written to {json_out}")


DRIFT_EXIT = 3


@app.command()
def drift(
    env: EnvOption = "staging",
    spec: SpecOption = DEFAULT_SPEC_PATH,
    sandbox: SandboxOption = False,
    remediate: Annotated[
        bool,
        typer.Option(
            "--remediate",
            help="Put back what the tool owns (re-run the platform, images or ship phase; restore DNS as the cutover "
            "left it when that is safe), then check again.",
        ),
    ] = False,
    time_scale: TimeScaleOption = 1.0,
    json_out: Annotated[
        Path | None,
        typer.Option("--json", help='Write the reports: {"clean", "reports": [{"drift": [...], "errors": {...}}]}.'),
    ] = None,
) -> None:
    """Compare what the spec and the last successful run say should be with what is there.

    Azure resources (the platform plan must be empty), Kubernetes objects and IAM
    federation (the ship plan must be empty), images (every ECR image in scope is in ACR
    with the same digest), Key Vault secrets against Secrets Manager (by hash, never by
    value), and Route 53 against the cutover's saved state. Prints each drift with its
    remedy and publishes a table artifact `drift-<env>`. Exit 0 clean, 3 drift, 1 when an
    area could not be read (e.g. no cluster yet), 2 bad input.
    """
    parsed = _load(spec, env)
    _positive_time_scale(time_scale)
    if sandbox:
        activate_sandbox_profile()
    _prefect_defaults()
    from flows.drift import drift_flow
    from migration.drift import DriftCheckFailed, DriftFound, DriftReport

    reports: list[DriftReport] = []
    for e in parsed.select(env):
        try:
            reports.append(drift_flow(spec_path=str(spec), env=e.name, remediate=remediate, time_scale=time_scale))
        except (DriftFound, DriftCheckFailed) as exc:
            reports.append(exc.report)
    for report in reports:
        show(report.render_markdown())
    if json_out:
        payload = {"clean": all(r.is_clean for r in reports), "reports": [r.to_json_dict() for r in reports]}
        json_out.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        console.print(f"drift report written to {json_out}", soft_wrap=True, highlight=False)
    unread = [r for r in reports if r.errors]
    if unread:
        raise MigrationError("; ".join(r.summary() for r in unread))
    drifted = [r for r in reports if r.items]
    if drifted:
        err_console.print(Text.assemble(("drift: ", "yellow"), "; ".join(r.summary() for r in drifted)))
        raise typer.Exit(DRIFT_EXIT)
    console.print(Text("; ".join(r.summary() for r in reports), style="green"), soft_wrap=True)


@app.command()
def deploy(
    prefect_file: Annotated[
        Path | None,
        typer.Option("--prefect-file", help="The deployments to register (default: the project's prefect.yaml)."),
    ] = None,
    pool_type: Annotated[
        str, typer.Option("--pool-type", help="Type of the work pool(s) to create when missing.")
    ] = "process",
) -> None:
    """Register the Prefect deployments of prefect.yaml with the Prefect server, non-interactively.

    Creates the work pool prefect.yaml names (`mmrv-process`, a process pool) when it is
    missing, runs `prefect --no-prompt deploy --all` in the project directory, then lists
    each deployment with its work pool and schedules. Needs a Prefect server: PREFECT_API_URL
    (`prefect server start` runs one here). Runs need a worker: `prefect worker start --pool mmrv-process`.
    """
    _prefect_defaults()
    from migration.deployments import WORKER_HINT, deploy_project

    report = deploy_project(prefect_file=prefect_file, pool_type=pool_type, echo=err_console.print)
    lines = [f"{len(report.deployments)} deployment(s) registered with {report.api_url}:"]
    width = max(len(d.full_name) for d in report.deployments)
    for d in report.deployments:
        params = " ".join(f"{k}={v}" for k, v in d.parameters.items())
        schedules = f"  schedule: {'; '.join(d.schedules)}" if d.schedules else ""
        lines.append(f"  {d.full_name:<{width}}  pool {d.work_pool}  {params}{schedules}")
    if not any(p.status == "READY" for p in report.pools):
        lines.append(f"no worker is polling yet: {WORKER_HINT}")
    show("\n".join(lines))


def _run_via_deployment(flow: str, envs: list[str], spec: Path, sandbox: bool, **parameters: Any) -> None:
    """Run `flow`'s deployment for each environment in turn through the Prefect API; stop at the first failure.

    The spec path is passed only when it is not the default (the deployment's own
    deployments/mmrv.yaml, relative to the project directory the worker runs in); then
    absolute, so a worker on this machine finds it.
    """
    if sandbox:
        raise InputError(
            "--sandbox applies to runs in this process; a deployment's run uses its worker's environment "
            "(start the worker with the sandbox's: set -a; . .sandbox/profile.env; prefect worker start ...)"
        )
    _prefect_defaults()
    from migration.deployments import deployment_name, trigger_and_follow

    if spec != DEFAULT_SPEC_PATH:
        parameters["spec_path"] = str(spec.resolve())
    for env in envs:
        name = deployment_name(flow, env)
        result = trigger_and_follow(name, {"env": env, **parameters}, echo=err_console.print)
        for report in result.reports:
            show(report)
        if not result.ok:
            reason = f": {result.message}" if result.message else ""
            raise MigrationError(f"{name}: flow run {result.flow_run_id} ended {result.state_name}{reason}")
        console.print(Text(f"{name}: {result.state_name}", style="green"))


@run_app.command("platform")
def run_platform(
    env: EnvOption = "staging",
    spec: SpecOption = DEFAULT_SPEC_PATH,
    sandbox: SandboxOption = False,
    via_deployment: ViaDeploymentOption = False,
) -> None:
    """Create or update the Azure platform of an environment: resource group, ACR, AKS, identities, Key Vault, firewall.

    Plans first (published as a Prefect artifact), applies only what differs, in
    dependency order, then reads everything back: the plan must be empty afterwards.
    A rerun after a failure completes what is missing; a rerun after success changes nothing.
    Refuses to start (changing nothing) when a resource it would change is not its own.
    """
    parsed = _load(spec, env)
    if via_deployment:
        _run_via_deployment("platform", [e.name for e in parsed.select(env)], spec, sandbox)
        return
    if sandbox:
        activate_sandbox_profile()
    _prefect_defaults()
    from flows.platform import platform_flow

    for e in parsed.select(env):
        result = platform_flow(spec_path=str(spec), env=e.name)
        show(result.plan.render_markdown())
        console.print(Text(f"{e.name}: {len(result.applied)} change(s) applied and verified", style="green"))


@run_app.command("cutover")
def run_cutover(
    env: EnvOption = "staging",
    component: Annotated[
        str, typer.Option("--component", help="Whose public names move: backend or frontend.")
    ] = "backend",
    azure_target: Annotated[
        str | None,
        typer.Option(
            "--azure-target",
            help="The AKS load balancer's IP (for A records) or host name (for CNAMEs). Not with --rollback.",
        ),
    ] = None,
    azure_url: Annotated[
        str | None,
        typer.Option("--azure-url", help="Where the smoke checks reach Azure (default http://<azure-target>)."),
    ] = None,
    metrics_url: Annotated[
        str | None,
        typer.Option("--metrics-url", help="Prometheus-compatible API for the error-rate gate (overrides the spec)."),
    ] = None,
    rollback: Annotated[
        bool, typer.Option("--rollback", help="Put back the DNS records saved before the cutover, exactly.")
    ] = False,
    time_scale: TimeScaleOption = 1.0,
    spec: SpecOption = DEFAULT_SPEC_PATH,
    sandbox: SandboxOption = False,
    via_deployment: ViaDeploymentOption = False,
) -> None:
    """Move a component's public names from AWS to Azure with weighted Route 53 records, or roll back.

    For each name: save the record sets exactly (the rollback target), lower the TTL and
    wait out the old one, then shift the weights in the spec's steps (e.g. 10, 50, 100),
    holding each for the bake time while the gates run (the smoke checks against Azure,
    and the error rate when the spec names a metrics endpoint). A failed gate restores the
    saved records exactly and exits 1. At 100 % AWS stays at weight 0, warm for the
    rollback window; `--rollback` restores the saved records at any time.
    """
    _one_environment(env, "for a cutover")
    _positive_time_scale(time_scale)
    _load(spec, env)
    if via_deployment:
        _run_via_deployment(
            "cutover",
            [env],
            spec,
            sandbox,
            component=component,
            azure_target=azure_target,
            azure_url=azure_url,
            rollback=rollback,
            time_scale=time_scale,
            metrics_query_url=metrics_url,
        )
        return
    if sandbox:
        activate_sandbox_profile()
    _prefect_defaults()
    from flows.cutover import cutover_flow

    report = cutover_flow(
        spec_path=str(spec),
        env=env,
        component=component,
        azure_target=azure_target,
        azure_url=azure_url,
        rollback=rollback,
        time_scale=time_scale,
        metrics_query_url=metrics_url,
    )
    console.print(Text(f"{env} {component}: {report.outcome}", style="green"))


@run_app.command("ship")
def run_ship(
    env: EnvOption = "staging",
    component: Annotated[str, typer.Option("--component", help="What to ship: backend (the ECS service).")] = "backend",
    image_tag: Annotated[
        str | None,
        typer.Option("--image-tag", help="Ship this tag of the component's image instead of what ECS runs (in ACR)."),
    ] = None,
    time_scale: TimeScaleOption = 1.0,
    spec: SpecOption = DEFAULT_SPEC_PATH,
    sandbox: SandboxOption = False,
    via_deployment: ViaDeploymentOption = False,
) -> None:
    """Bring a component up on AKS as it runs on ECS, and prove it before any user traffic reaches it.

    Reads the ECS service and its task definition, pins its images in ACR by digest,
    creates the IAM role its service account assumes through the cluster's OIDC issuer
    (the task role's policies stay in AWS), copies its secrets from Secrets Manager to
    Key Vault (compared by hash, never shown), translates it to Kubernetes manifests,
    plans them against the cluster (`plan --phase ship` shows the same diff), applies
    them server-side, follows the rollout, then runs the spec's smoke checks against the
    external address for the bake period. A failed rollout or smoke check rolls the
    Deployment back to its previous revision and exits 1 with the pod events. A rerun
    changes nothing when nothing changed on AWS.
    """
    _one_environment(env, "to ship to")
    _positive_time_scale(time_scale)
    _load(spec, env)
    if via_deployment:
        _run_via_deployment(
            "ship", [env], spec, sandbox, component=component, image_tag=image_tag, time_scale=time_scale
        )
        return
    if sandbox:
        activate_sandbox_profile()
    _prefect_defaults()
    from flows.ship import ship_flow

    result = ship_flow(spec_path=str(spec), env=env, component=component, image_tag=image_tag, time_scale=time_scale)
    show(result.render_markdown())
    console.print(Text(f"{env} {component}: shipped, {len(result.applied)} object(s) applied", style="green"))


@run_app.command("images")
def run_images(
    env: EnvOption = "staging",
    strategy: Annotated[
        str | None,
        typer.Option(
            "--strategy",
            help="import (ACR pulls from ECR itself; falls back to copy per image), copy (registry to registry "
            "through this machine) or docker (through the Docker Engine at DOCKER_HOST). Default: the spec's.",
        ),
    ] = None,
    spec: SpecOption = DEFAULT_SPEC_PATH,
    sandbox: SandboxOption = False,
    json_out: Annotated[
        Path | None,
        typer.Option("--json", help='Write the ledger: {"images": [{"source", "target", "tags", "bytes_moved"}]}.'),
    ] = None,
    via_deployment: ViaDeploymentOption = False,
) -> None:
    """Carry the images MMRV runs (and may roll back to) from ECR to ACR, digests unchanged and verified.

    Selects every image the active and the last N task definition revisions run, plus the
    spec's tag filters; plans (present, missing, conflicting tags, bytes to move); transfers
    what is missing; checks every digest in ACR; prints the ledger. A tag that points to
    another image in ACR is reported, never overwritten. A rerun moves only what is missing.
    Exit 1 when an image failed, is blocked by a conflict, or is missing in ECR.
    """
    if strategy is not None and strategy not in STRATEGIES:
        raise InputError(f"--strategy {strategy!r} is not a strategy; allowed: {', '.join(STRATEGIES)}")
    parsed = _load(spec, env)
    if via_deployment:
        if json_out:
            raise InputError("--json needs the run in this process; a deployment run publishes its ledger as artifact")
        extra = {"strategy": strategy} if strategy else {}
        _run_via_deployment("images", [e.name for e in parsed.select(env)], spec, sandbox, **extra)
        return
    if sandbox:
        activate_sandbox_profile()
    _prefect_defaults()
    from flows.images import images_flow
    from migration.images import ImagesIncomplete, Ledger

    ledgers: list[Ledger] = []
    failure: ImagesIncomplete | None = None
    with _transfer_progress():
        for e in parsed.select(env):
            try:
                result = images_flow(spec_path=str(spec), env=e.name, strategy=strategy)
            except ImagesIncomplete as exc:
                ledgers.append(exc.ledger)
                failure = exc
                break
            if result.ledger is not None:
                ledgers.append(result.ledger)
    for ledger in ledgers:
        show(ledger.render_markdown())
    if json_out:
        _write_ledgers(json_out, ledgers)
        console.print(f"ledger written to {json_out}", soft_wrap=True, highlight=False)
    if failure is not None:
        raise failure


def _write_ledgers(path: Path, ledgers: list[Any]) -> None:
    if len(ledgers) == 1:
        payload: dict[str, Any] = ledgers[0].to_json_dict()
    else:
        parts = [ledger.to_json_dict() for ledger in ledgers]
        payload = {"images": [i for part in parts for i in part["images"]], "ledgers": parts}
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


@contextlib.contextmanager
def _transfer_progress() -> Iterator[None]:
    """A rich progress bar (bytes moved / to move) on stderr, fed by the transfer's in-process progress events."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    from migration.progress import subscribe

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console, transient=False) as bar:
        bars: dict[str, Any] = {}

        def update(what: str, done: int, total: int) -> None:
            if what not in bars:
                bars[what] = bar.add_task(what, total=max(total, 1))
            bar.update(bars[what], completed=max(0, done), total=max(total, done, 1))

        unsubscribe = subscribe(update)
        try:
            yield
        finally:
            unsubscribe()


@images_app.command("copy")
def images_copy(
    source: Annotated[str, typer.Argument(help="host/repo:tag or host/repo@sha256:... to copy from")],
    target: Annotated[str, typer.Argument(help="host/repo[:tag] to copy to (the source's tag when none)")],
    parallel: Annotated[int, typer.Option("--parallel", min=1, max=64, help="Blob transfers at once.")] = 4,
    sandbox: SandboxOption = False,
    json_out: Annotated[
        Path | None, typer.Option("--json", help='Write {"images": [{"source", "target", "tags", "bytes_moved"}]}.')
    ] = None,
) -> None:
    """Copy one image (an index with all its platforms) between registries, digest unchanged and verified.

    Streams each blob once (GET -> PUT, hashed on the way), mounts blobs the target has in
    another repository, skips those it has. Credentials: ECR from the AWS credentials, ACR
    from the Azure ones (token exchange), others from REGISTRY_AUTH_FILE. Exit 2 for a
    malformed reference or an unknown tag or repository; exit 1 when a registry cannot be
    reached or refuses the credentials (the message names it).
    """
    from migration.images import parse_ref

    src, dst = parse_ref(source), parse_ref(target)
    if sandbox:
        activate_sandbox_profile()
    from migration.clouds.copier import CopyJob, ImageCopier, verify_image
    from migration.clouds.logins import client_for
    from migration.errors import NotFoundError
    from migration.progress import Meter

    pool = 2 * parallel + 2
    with (
        client_for(src.registry, pool_size=pool) as src_client,
        client_for(dst.registry, pool_size=pool) as dst_client,
    ):
        try:
            digest = src.digest or src_client.manifest_digest(src.repository, src.reference)
        except NotFoundError:
            digest = None
        if digest is None:
            raise InputError(f"{source}: no such tag or repository in {src.registry}")
        if dst.digest and dst.digest != digest:
            raise InputError(f"{target}: its digest is not the source's ({digest}); leave the digest out")
        tag = dst.tag or src.tag
        tags = (tag,) if tag else ()
        manifest = src_client.get_manifest(src.repository, digest)
        meter = Meter(f"{src.repository}@{digest[:19]}", sum(b.size for b in manifest.blobs()))
        with _transfer_progress():
            copier = ImageCopier(src_client, dst_client, parallelism=parallel, progress=meter.add)
            outcome = copier.copy_one(CopyJob(src.repository, digest, tags, target_repository=dst.repository))
            meter.finish()
        check = verify_image(dst_client, dst.repository, digest, list(tags))
    if not check.ok:
        raise MigrationError(f"registry {dst.registry}: after the copy it does not serve {digest} for {target}")
    entry = {
        "source": f"{src.registry}/{src.repository}@{digest}",
        "target": f"{dst.registry}/{dst.repository}@{digest}",
        "tags": list(tags),
        "bytes_moved": outcome.bytes_moved,
        "blobs": {
            "uploaded": outcome.blobs_uploaded,
            "mounted": outcome.blobs_mounted,
            "present": outcome.blobs_present,
        },
    }
    console.print(
        f"copied {entry['source']} -> {entry['target']}{' as ' + tag if tag else ''}: "
        f"{outcome.bytes_moved} bytes moved ({outcome.blobs_uploaded} blob(s) uploaded, "
        f"{outcome.blobs_mounted} mounted, {outcome.blobs_present} present); digest verified",
        soft_wrap=True,
        highlight=False,
        markup=False,
    )
    if json_out:
        json_out.write_text(json.dumps({"images": [entry]}, indent=2) + "\n", encoding="utf-8")


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


@sandbox_app.command("kubeconfig")
def sandbox_kubeconfig(
    env: Annotated[str, typer.Option("--env", help="Whose cluster: staging or production.")] = "staging",
    out: Annotated[Path | None, typer.Option("--out", help="Write it here (mode 0600) instead of printing it.")] = None,
    spec: SpecOption = DEFAULT_SPEC_PATH,
) -> None:
    """Print a kubeconfig for the sandbox's AKS cluster of an environment, for `kubectl`.

    The cluster must exist (`run platform --env E --sandbox`). It carries the sandbox
    operator's token (the sandbox's own, worthless elsewhere) instead of AKS's kubelogin
    stanza. Use it as `mmrv-migrate sandbox kubeconfig --env staging --out kc.yaml` then
    `KUBECONFIG=kc.yaml kubectl get pods -n mmrv`.
    """
    parsed = _load(spec, env)
    activate_sandbox_profile()
    from migration.clouds.azure import ArmGateway
    from migration.clouds.kube import AKS_SERVER_SCOPE, write_kubeconfig
    from migration.platform import aks_id
    from migration.settings import AzureSettings

    environment = parsed.environment(env)
    arm = ArmGateway(AzureSettings(), environment.azure.subscription_id)
    text = arm.cluster_user_kubeconfig(aks_id(environment))
    token = arm.credential.get_token(AKS_SERVER_SCOPE).token
    if out is not None:
        write_kubeconfig(text, token, out)
        console.print(f"kubeconfig for {environment.azure.aks.name} written to {out}")
    else:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            path = write_kubeconfig(text, token, Path(tmp) / "kubeconfig")
            sys.stdout.write(path.read_text(encoding="utf-8"))


@sandbox_app.command("down")
def sandbox_down() -> None:
    """Stop exactly the processes the sandbox started; keep its data and logs for inspection."""
    from sandbox.manager import down

    stopped = down(sandbox_dir())
    console.print(f"sandbox down ({len(stopped)} process(es) stopped)")


@app.command()
def rehearse(
    spec: SpecOption = DEFAULT_SPEC_PATH,
    fault_rate: Annotated[
        float, typer.Option("--fault-rate", min=0.0, max=0.9, help="Share of sandbox requests that fail (429, 503...).")
    ] = 0.0,
    seed: Annotated[int, typer.Option("--seed", help="Seed for the generated estate and the faults.")] = 0,
    time_scale: TimeScaleOption = 0.01,
    approve_in_ui: Annotated[
        bool,
        typer.Option(
            "--approve-in-ui",
            help="Start a Prefect server with its UI and wait for a person to approve each gate there "
            "(default: --auto-approve, recorded as such).",
        ),
    ] = False,
    auto_approve: Annotated[
        bool, typer.Option("--auto-approve", help="The rehearsal approves the gates itself (the default).")
    ] = True,
) -> None:
    """Rehearse the whole back-end migration on the local sandbox, then check it; leaves nothing running.

    Sandbox up -> inventory of the AWS estate -> the users (a traffic generator per
    environment, resolving the public names through Route 53) -> the migration flow:
    staging (platform, images, ship, DNS cutover), the production gate, production
    (platform, images, ship), the cutover gate, the production cutover -> a drift check
    per environment that must be clean -> the report, printed and kept in
    .sandbox/report.md -> sandbox down. Exit 0 only when the migration and the drift check
    succeeded and no user request failed during the cutovers.
    """
    _positive_time_scale(time_scale)
    load_spec(spec)
    _prefect_defaults()
    from migration.rehearsal import rehearse as play

    state = sandbox_dir()
    report = play(
        spec,
        state,
        fault_rate=fault_rate,
        seed=seed,
        time_scale=time_scale,
        approve_in_ui=approve_in_ui or not auto_approve,
        progress=err_console.print,
    )
    show(report)
    console.print(Text(f"rehearsal complete; report in {state / 'report.md'}", style="green"))


@app.command()
def migrate(
    env: EnvOption = "all",
    auto_approve: Annotated[
        bool, typer.Option("--auto-approve", help="Approve the gates without asking (rehearsals only).")
    ] = False,
    time_scale: TimeScaleOption = 1.0,
    spec: SpecOption = DEFAULT_SPEC_PATH,
    sandbox: SandboxOption = False,
) -> None:
    """Run the migration flow in this process: staging, the approval gate, production, the cutover gate.

    Phase 1 (staging): platform, images, ship the back end, DNS cutover of the staging
    names. Then the flow pauses for approval (the Prefect UI form, or `mmrv-migrate approve
    RUN_ID --approver NAME`): it needs a Prefect server (`PREFECT_API_URL`) that the UI and
    the approve command reach. Phase 2 (production): platform, images, ship; a second gate;
    the production cutover. A refused or timed-out gate stops before production changes
    (exit 1). The report is published as the artifact `migration-report` and printed.
    """
    if env not in ("all", "staging", "production"):
        raise InputError(f"--env {env!r}: allowed: staging, production, all")
    _load(spec, env)
    _positive_time_scale(time_scale)
    if sandbox:
        activate_sandbox_profile()
    _prefect_defaults()
    if not auto_approve and env != "staging" and not os.environ.get("PREFECT_API_URL"):
        raise InputError(
            "the approval gates need a Prefect server that people reach: set PREFECT_API_URL "
            "(e.g. `prefect server start`), or --auto-approve for a rehearsal"
        )
    from flows.migration import migration_flow

    result = migration_flow(spec_path=str(spec), env=env, auto_approve=auto_approve, time_scale=time_scale)
    show(result.render_markdown())


# --- approvals: answer the gates of paused migration runs ------------------------------------

RunIdArgument = Annotated[str, typer.Argument(help="The paused flow run's id (see `mmrv-migrate pending`).")]
ApproverOption = Annotated[
    str, typer.Option("--approver", help="Who decides: the run accepts only the spec's approvals.approvers.")
]
ReasonOption = Annotated[str, typer.Option("--reason", help="Why: kept in the decision record (an artifact).")]


def _answer(run_id: str, approved: bool, approver: str, reason: str) -> None:
    _prefect_defaults()
    from flows.approval import answer_gate

    gate = answer_gate(run_id, approved=approved, approver=approver, reason=reason)
    verb = "approved" if approved else "rejected"
    console.print(
        f"{verb} gate {gate.gate} of {gate.flow_name}/{gate.run_name} ({gate.run_id}); the run judges the answer "
        f"at its next check and records the decision as the artifact approval-{gate.gate}",
        soft_wrap=True,
        markup=False,
    )


@app.command()
def approve(
    run_id: RunIdArgument,
    approver: ApproverOption,
    reason: ReasonOption = "",
) -> None:
    """Approve a migration run paused at an approval gate, as the Prefect UI form does.

    Needs `PREFECT_API_URL`: the Prefect server the run reports to. The run checks the
    approver against the spec's allow-list; someone not on it stops the run like a rejection.
    Exit 2 for an unknown run or one that is not paused at a gate, 1 when the server cannot
    be reached.
    """
    _answer(run_id, True, approver, reason)


@app.command()
def reject(
    run_id: RunIdArgument,
    approver: ApproverOption,
    reason: ReasonOption = "",
) -> None:
    """Reject a migration run paused at an approval gate: it ends Cancelled before production changes.

    Needs `PREFECT_API_URL`: the Prefect server the run reports to. Exit 2 for an unknown
    run or one that is not paused at a gate, 1 when the server cannot be reached.
    """
    _answer(run_id, False, approver, reason)


@app.command()
def pending() -> None:
    """List the flow runs paused at a gate: id, flow and run, gate, since when, until when, the request.

    Needs `PREFECT_API_URL`: the Prefect server the runs report to (exit 1 when it cannot
    be reached). Answer with `mmrv-migrate approve|reject RUN_ID --approver NAME`.
    """
    _prefect_defaults()
    from flows.approval import list_pending, render_pending

    show(render_pending(list_pending()))


# --- translate: offline, on the files the AWS CLI writes ---------------------------------------

translate_app = typer.Typer(
    help="Translate what runs on AWS into Kubernetes manifests, offline: reads JSON files, contacts nothing.",
    no_args_is_help=True,
)
app.add_typer(translate_app, name="translate")
_AZURE, _AWS, _SHAPE = "Azure", "AWS inputs", "Kubernetes shape"


@translate_app.command("ecs")
def translate_ecs_command(
    task_definition: Annotated[
        Path, typer.Argument(help="`aws ecs describe-task-definition` output (JSON), with or without its wrapper.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Directory for NN-kind-name.yaml, report.md, report.json.")],
    service: Annotated[
        Path | None, typer.Option("--service", help="`aws ecs describe-services` output for the service.")
    ] = None,
    app_name: Annotated[str, typer.Option("--app", help="The spec's name (labels, names).")] = "mmrv",
    namespace: Annotated[str | None, typer.Option("--namespace", help="Default: the --app name.")] = None,
    component: Annotated[str, typer.Option("--component", help="Workload name: <app>-<component>.")] = "backend",
    image_map: Annotated[
        list[str], typer.Option("--image-map", help="ECR_IMAGE=ACR_IMAGE@sha256:... (repeat per image).")
    ] = [],  # noqa: B006
    keep_tags: Annotated[
        bool, typer.Option("--keep-tags", help="An unmapped ECR image keeps its tag (on --acr if given).")
    ] = False,
    acr: Annotated[str | None, typer.Option("--acr", help="ACR login server, for --keep-tags.")] = None,
    key_vault: Annotated[str | None, typer.Option("--key-vault", rich_help_panel=_AZURE)] = None,
    tenant_id: Annotated[str | None, typer.Option("--tenant-id", rich_help_panel=_AZURE)] = None,
    client_id: Annotated[
        str | None, typer.Option("--client-id", help="Workload identity client id.", rich_help_panel=_AZURE)
    ] = None,
    secret_map: Annotated[
        list[str],
        typer.Option("--secret-map", help="SECRET_ARN_OR_NAME=KEY_VAULT_SECRET (repeat).", rich_help_panel=_AZURE),
    ] = [],  # noqa: B006
    json_keys: Annotated[
        str,
        typer.Option("--json-keys", help="split: one Key Vault secret per JSON key; whole.", rich_help_panel=_AZURE),
    ] = "split",
    target_group: Annotated[
        Path | None,
        typer.Option("--target-group", help="`aws elbv2 describe-target-groups` output.", rich_help_panel=_AWS),
    ] = None,
    autoscaling: Annotated[
        list[Path],
        typer.Option(
            "--autoscaling",
            help="`aws application-autoscaling describe-scalable-targets` output, and optionally "
            "`describe-scaling-policies` output (give the option twice, any order).",
            rich_help_panel=_AWS,
        ),
    ] = [],  # noqa: B006
    aws_role_arn: Annotated[
        str | None, typer.Option("--aws-role-arn", help="IAM role federated for the pods.", rich_help_panel=_AWS)
    ] = None,
    aws_region: Annotated[str | None, typer.Option("--aws-region", rich_help_panel=_AWS)] = None,
    ingress_host: Annotated[
        list[str],
        typer.Option(
            "--ingress-host", help="Expose through an Ingress for this host (repeat).", rich_help_panel=_SHAPE
        ),
    ] = [],  # noqa: B006
    ingress_class: Annotated[str | None, typer.Option("--ingress-class", rich_help_panel=_SHAPE)] = (
        "webapprouting.kubernetes.azure.com"
    ),
    tls_secret: Annotated[str | None, typer.Option("--tls-secret", rich_help_panel=_SHAPE)] = None,
    env_files: Annotated[
        str, typer.Option("--env-files", help="configmap (reference one) or error.", rich_help_panel=_SHAPE)
    ] = "configmap",
    rollout_deadline: Annotated[
        int, typer.Option("--rollout-deadline", help="progressDeadlineSeconds.", rich_help_panel=_SHAPE)
    ] = 600,
) -> None:
    """Translate an ECS task definition (+ service) into Kubernetes manifests and a report, offline.

    Writes one YAML file per object, numbered in apply order, and report.md / report.json
    listing every ECS field with no direct Kubernetes equivalent and what was done about it.
    Exit 2, naming the field path, on input it cannot translate.
    """
    from migration import translate as tr

    task = tr.load_json(task_definition, "task definition")
    running = tr.unwrap_task_definition(task)[0].get("taskDefinitionArn")
    ecs_service = tr.unwrap_service(tr.load_json(service, "service"), running) if service else None
    balancers = (ecs_service or {}).get("loadBalancers") or [{}]
    group = balancers[0].get("targetGroupArn") if isinstance(balancers[0], dict) else None
    health = tr.health_check_from_aws(tr.load_json(target_group, "target group"), group) if target_group else None
    scaling = None
    if autoscaling:
        scaling = tr.autoscaling_from_documents([tr.load_json(p, "autoscaling") for p in autoscaling])
    options = tr.options_from_flags(
        namespace=namespace, app=app_name, component=component, image_map=image_map, keep_tags=keep_tags, acr=acr,
        key_vault=key_vault, tenant_id=tenant_id, client_id=client_id, secret_map=secret_map, json_keys=json_keys,
        env_files=env_files, ingress_hosts=ingress_host, ingress_class=ingress_class, tls_secret=tls_secret,
        health_check=health, autoscaling=scaling, aws_role_arn=aws_role_arn, aws_region=aws_region,
        rollout_deadline=rollout_deadline,
    )  # fmt: skip
    result = tr.translate_ecs(task, ecs_service, options)
    written = tr.write_translation(result, out)
    console.print(f"translated {result.source} -> {out}/", soft_wrap=True, highlight=False, markup=False)
    for path in written:
        console.print(f"  {path.name}", highlight=False, markup=False)
    console.print(tr.summary_line(result), highlight=False, markup=False)
    for item in result.report:
        if item.severity != "info":
            console.print(f"  {item}", soft_wrap=True, highlight=False, markup=False)


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
        err_console.print(Text.assemble(("error: ", "red"), str(exc)), highlight=False)
        sys.exit(2)
    except MigrationError as exc:
        err_console.print(Text.assemble(("failed: ", "red"), str(exc)), highlight=False)
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
