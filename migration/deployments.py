"""The Prefect deployments of prefect.yaml: register them, and trigger and follow their runs.

`deploy_project` makes sure the work pools prefect.yaml names exist (a `process` pool by
default), then runs `prefect --no-prompt deploy --all` in the project directory (the stable,
documented interface; its Python internals are private) and reads back what the API now holds.

`trigger_and_follow` starts a deployment's run through the Prefect API (`run_deployment`
with `timeout=0`) and follows it until a final state: its state changes, the log lines of
the run and its subflow runs (task runs: warnings and errors only), then its markdown
reports. A run nobody picks up (no worker polling the pool) is cancelled after
`start_timeout` seconds, so it cannot start by surprise later, with a message saying how
to start a worker.

Only the CLI calls this module; it reports through the `echo` callback and raises
MigrationError (exit 1) for everything a person must act on.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from uuid import UUID

import yaml

from migration.errors import InputError, MigrationError

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun

PREFECT_FILE = "prefect.yaml"
POOL_NAME = "mmrv-process"
WORKER_HINT = f"start a worker: prefect worker start --pool {POOL_NAME}"
SERVER_HINT = (
    "set PREFECT_API_URL to a running Prefect server's API (e.g. http://127.0.0.1:4200/api), "
    "or start one here: prefect server start"
)
START_TIMEOUT_SECONDS = 60.0
DEPLOY_TIMEOUT_SECONDS = 600.0

Echo = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


class PrefectUnavailable(MigrationError):
    """No Prefect API to talk to (exit 1): deployments need a server that workers reach too."""


class NoWorker(MigrationError):
    """The run stayed scheduled: nothing polls its work pool. The run was cancelled."""

    def __init__(self, message: str, flow_run_id: UUID) -> None:
        super().__init__(message)
        self.flow_run_id = flow_run_id


# --- the project and its prefect.yaml ----------------------------------------------------------


def project_dir() -> Path:
    """The directory holding prefect.yaml: where this package was installed from, else here."""
    source = Path(__file__).resolve().parents[1]
    return source if (source / PREFECT_FILE).is_file() else Path.cwd().resolve()


@dataclass(frozen=True)
class DeploymentEntry:
    """One `deployments:` item of prefect.yaml, as far as this module needs it."""

    name: str
    entrypoint: str
    work_pool: str | None
    parameters: dict[str, Any] = field(default_factory=dict)


def read_prefect_file(path: Path) -> list[DeploymentEntry]:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such file (the Prefect deployments of the project)") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML: {exc}") from None
    items = document.get("deployments") if isinstance(document, dict) else None
    if not isinstance(items, list) or not items:
        raise InputError(f"{path}: no `deployments:` list")
    entries = []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not item.get("name") or not item.get("entrypoint"):
            raise InputError(f"{path}: deployments[{index}] needs a name and an entrypoint")
        pool = item.get("work_pool") or {}
        entries.append(
            DeploymentEntry(
                name=str(item["name"]),
                entrypoint=str(item["entrypoint"]),
                work_pool=pool.get("name") if isinstance(pool, dict) else None,
                parameters=dict(item.get("parameters") or {}),
            )
        )
    return entries


def entrypoint_file(entrypoint: str) -> str:
    """The source file of an entrypoint, relative to the project: `flows.platform:f` -> flows/platform.py.

    prefect.yaml uses module entrypoints on purpose: a worker loads a `path.py:f` entrypoint
    as a script with its directory first on sys.path, where flows/migration.py would shadow
    the `migration` package.
    """
    target = entrypoint.rpartition(":")[0]
    return target if target.endswith(".py") else target.replace(".", "/") + ".py"


def missing_entrypoints(root: Path, entries: list[DeploymentEntry]) -> list[str]:
    """Entrypoints whose source file is not in the project, one line each."""
    missing = []
    for entry in entries:
        source = entrypoint_file(entry.entrypoint)
        if not (root / source).is_file():
            missing.append(f"{entry.name}: {entry.entrypoint} ({source} does not exist)")
    return missing


def deployment_name(flow: str, env: str | None = None) -> str:
    """`flow/deployment` as prefect.yaml names them: `platform/platform-staging`, `migration/migration`."""
    return f"{flow}/{flow}-{env}" if env else f"{flow}/{flow}"


# --- the Prefect API ----------------------------------------------------------------------------


def api_url() -> str:
    """The API every command here talks to; never an ephemeral server that no worker could reach."""
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    if not url:
        raise PrefectUnavailable(f"no Prefect API is configured: {SERVER_HINT}")
    return str(url)


def check_api() -> str:
    """The API URL, once the server answers its health check."""
    from prefect.client.orchestration import get_client

    url = api_url()
    with get_client(sync_client=True) as client:
        problem = client.api_healthcheck()
    if problem is not None:
        raise PrefectUnavailable(f"the Prefect API at {url} does not answer ({type(problem).__name__}): {SERVER_HINT}")
    return url


def _ui_run_url(flow_run_id: UUID) -> str | None:
    from prefect.settings import get_current_settings

    ui = get_current_settings().ui_url
    return f"{ui}/runs/flow-run/{flow_run_id}" if ui else None


@dataclass(frozen=True)
class PoolStatus:
    name: str
    type: str
    created: bool
    status: str  # READY (a worker polls it), NOT_READY, PAUSED


def ensure_work_pool(name: str = POOL_NAME, pool_type: str = "process") -> PoolStatus:
    """Create the work pool with the type's default job template when it does not exist yet."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound
    from prefect.utilities.asyncutils import run_coro_as_sync
    from prefect.workers.utilities import get_default_base_job_template_for_infrastructure_type

    with get_client(sync_client=True) as client:
        try:
            pool = client.read_work_pool(name)
            created = False
        except ObjectNotFound:
            template = run_coro_as_sync(get_default_base_job_template_for_infrastructure_type(pool_type))
            if template is None:
                raise InputError(
                    f"work pool type {pool_type!r} is unknown here (install its Prefect integration, "
                    f"e.g. prefect-kubernetes)"
                ) from None
            pool = client.create_work_pool(WorkPoolCreate(name=name, type=pool_type, base_job_template=template))
            created = True
    status = pool.status.value if pool.status is not None else "NOT_READY"
    return PoolStatus(name=pool.name, type=pool.type, created=created, status=status)


@dataclass(frozen=True)
class DeployedDeployment:
    """A deployment as the API reports it after `prefect deploy`."""

    full_name: str  # flow/deployment
    work_pool: str | None
    parameters: dict[str, Any]
    schedules: list[str]  # e.g. "cron 0 * * * * (UTC)", "inactive cron ..."
    entrypoint: str | None


def _describe_schedule(schedule: Any, active: bool) -> str:
    if getattr(schedule, "cron", None):
        text = f"cron {schedule.cron} ({schedule.timezone or 'UTC'})"
    elif getattr(schedule, "interval", None):
        text = f"every {schedule.interval}"
    elif getattr(schedule, "rrule", None):
        text = f"rrule {schedule.rrule}"
    else:
        text = str(schedule)
    return text if active else f"inactive {text}"


def read_deployed(entries: list[DeploymentEntry]) -> list[DeployedDeployment]:
    """The deployments named in prefect.yaml as the API holds them (same name and entrypoint)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    wanted = {e.name: e.entrypoint for e in entries}
    by_names = DeploymentFilter(name=DeploymentFilterName(any_=list(wanted)))
    with get_client(sync_client=True) as client:
        found = client.read_deployments(deployment_filter=by_names)
        flows = {f.id: f.name for f in client.read_flows(deployment_filter=by_names)}
    by_name = {d.name: d for d in found if d.entrypoint == wanted.get(d.name)}
    return [
        DeployedDeployment(
            full_name=f"{flows.get(d.flow_id, '?')}/{d.name}",
            work_pool=d.work_pool_name,
            parameters=dict(d.parameters or {}),
            schedules=[_describe_schedule(s.schedule, bool(s.active)) for s in d.schedules],
            entrypoint=d.entrypoint,
        )
        for name in wanted
        if (d := by_name.get(name)) is not None
    ]


@dataclass(frozen=True)
class DeployReport:
    api_url: str
    prefect_file: Path
    pools: list[PoolStatus]
    deployments: list[DeployedDeployment]


def deploy_project(
    root: Path | None = None,
    prefect_file: Path | None = None,
    pool_type: str = "process",
    echo: Echo = _quiet,
) -> DeployReport:
    """Create the work pools prefect.yaml names if missing, then `prefect --no-prompt deploy --all`."""
    root = (root or project_dir()).resolve()
    prefect_file = (prefect_file or root / PREFECT_FILE).resolve()
    entries = read_prefect_file(prefect_file)
    missing = missing_entrypoints(root, entries)
    if missing:
        raise InputError(
            f"{prefect_file}: {len(missing)} deployment(s) name a flow that is not in {root}; "
            "nothing was deployed:\n" + "\n".join(f"  - {m}" for m in missing)
        )
    url = check_api()
    pools = []
    for pool_name in sorted({e.work_pool for e in entries if e.work_pool}):
        pool = ensure_work_pool(pool_name, pool_type)
        echo(f"work pool {pool.name} ({pool.type}): {'created' if pool.created else 'exists'}")
        pools.append(pool)
    echo(f"deploying {len(entries)} deployment(s) from {prefect_file} to {url} ...")
    command = [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all", "--prefect-file", str(prefect_file)]
    try:
        done = subprocess.run(
            command,
            cwd=root,
            env={**os.environ, "COLUMNS": "200"},
            capture_output=True,
            text=True,
            timeout=DEPLOY_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise MigrationError(f"`prefect deploy --all` did not finish in {DEPLOY_TIMEOUT_SECONDS:.0f} s") from None
    if done.returncode != 0:
        lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
        tail = "\n".join(f"  {line}" for line in lines[-15:])
        raise MigrationError(f"`prefect deploy --all` failed (exit {done.returncode}):\n{tail}")
    deployed = read_deployed(entries)
    absent = sorted({e.name for e in entries} - {d.full_name.split("/", 1)[1] for d in deployed})
    if absent:
        raise MigrationError(f"`prefect deploy --all` succeeded but the API lacks: {', '.join(absent)}")
    return DeployReport(api_url=url, prefect_file=prefect_file, pools=pools, deployments=deployed)


# --- trigger and follow a run ------------------------------------------------------------------


@dataclass
class FollowResult:
    flow_run_id: UUID
    deployment: str
    state_type: str  # COMPLETED, FAILED, CRASHED, CANCELLED ...
    state_name: str
    message: str | None
    reports: list[str] = field(default_factory=list)  # the run's markdown artifacts, in creation order

    @property
    def ok(self) -> bool:
        return self.state_type == "COMPLETED"


class _Follower:
    """Polls one flow run (and its subflow runs) for state changes and new log lines."""

    def __init__(self, client: Any, flow_run_id: UUID, echo: Echo, show_logs: bool) -> None:
        self.client = client
        self.flow_run_id = flow_run_id
        self.echo = echo
        self.show_logs = show_logs
        self.run_ids: list[UUID] = [flow_run_id]
        self.seen_logs: set[UUID] = set()
        self.since: Any = None

    def refresh_children(self) -> None:
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

        children = self.client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[self.flow_run_id]))
        )
        for child in children:
            if child.id not in self.run_ids:
                self.run_ids.append(child.id)

    def print_new_logs(self) -> int:
        if not self.show_logs:
            return 0
        from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId, LogFilterTimestamp

        log_filter = LogFilter(flow_run_id=LogFilterFlowRunId(any_=list(self.run_ids)))
        if self.since is not None:
            log_filter.timestamp = LogFilterTimestamp(after_=self.since)
        new = 0
        for log in self.client.read_logs(log_filter=log_filter, limit=200):
            if log.id in self.seen_logs:
                continue
            self.seen_logs.add(log.id)
            self.since = log.timestamp
            new += 1
            if log.task_run_id is not None and log.level < logging.WARNING:
                continue  # "Finished in state Completed()" per task says nothing without the task's name
            self.echo(f"  {log.timestamp:%H:%M:%S} {logging.getLevelName(log.level):<7} {log.message}")
        return new

    def reports(self) -> list[str]:
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterType

        artifacts = self.client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=list(self.run_ids)),
                type=ArtifactFilterType(any_=["markdown"]),
            )
        )
        artifacts.sort(key=lambda a: a.created)
        return [str(a.data) for a in artifacts if a.data]


def _cancel(client: Any, flow_run_id: UUID, why: str) -> None:
    from prefect.states import Cancelled

    try:
        client.set_flow_run_state(flow_run_id, Cancelled(message=why), force=True)
    except Exception:  # best effort: the message to the user says what to do either way
        logging.getLogger(__name__).debug("could not cancel flow run %s", flow_run_id, exc_info=True)


def _pool_status(client: Any, pool_name: str | None) -> str | None:
    if not pool_name:
        return None
    from prefect.exceptions import ObjectNotFound

    try:
        pool = client.read_work_pool(pool_name)
    except ObjectNotFound:
        return "MISSING"
    return pool.status.value if pool.status is not None else None


def trigger_and_follow(
    name: str,
    parameters: dict[str, Any] | None = None,
    *,
    echo: Echo = _quiet,
    start_timeout: float = START_TIMEOUT_SECONDS,
    poll_interval: float = 1.0,
    show_logs: bool = True,
) -> FollowResult:
    """Run deployment `flow/deployment` with `parameters` (merged over its own) and follow it to a final state.

    Raises PrefectUnavailable when the API does not answer, MigrationError when the deployment
    does not exist or refuses the parameters, and NoWorker (after cancelling the run) when no
    worker picked the run up within `start_timeout` seconds.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError

    url = check_api()
    with get_client(sync_client=True) as client:
        try:
            deployment = client.read_deployment_by_name(name)
        except ObjectNotFound:
            raise MigrationError(
                f"no deployment {name!r} on {url}: register the deployments first: mmrv-migrate deploy"
            ) from None
        pool_name = deployment.work_pool_name
        status = _pool_status(client, pool_name)
        if status == "PAUSED":
            echo(f"work pool {pool_name} is paused: resume it with `prefect work-pool resume {pool_name}`")
        elif status != "READY":
            echo(f"no worker is polling work pool {pool_name} yet; waiting up to {start_timeout:.0f} s ({WORKER_HINT})")
        try:
            flow_run = cast(
                "FlowRun",
                run_deployment(name=name, parameters=parameters or {}, timeout=0, as_subflow=False),
            )
        except PrefectHTTPStatusError as exc:
            detail = exc.response.text[:500] if exc.response is not None else str(exc)
            raise MigrationError(f"the Prefect API refused a run of {name}: {detail}") from None
        run_id = flow_run.id
        where = _ui_run_url(run_id)
        echo(f"{name}: flow run {flow_run.name} ({run_id}) created{f': {where}' if where else ''}")

        follower = _Follower(client, run_id, echo, show_logs)
        last_state: tuple[str, str] | None = None
        began = time.monotonic()
        try:
            while True:
                current = client.read_flow_run(run_id)
                state = current.state
                state_type = state.type if state is not None else StateType.SCHEDULED
                state_name = state.name if state is not None and state.name else state_type.value.title()
                if (state_type.value, state_name) != last_state:
                    message = f": {state.message}" if state is not None and state.message else ""
                    echo(f"{name}: {state_name}{message}")
                    last_state = (state_type.value, state_name)
                    if state_type == StateType.PAUSED:
                        echo(f"{name}: waiting for input: resume or reject it from the run's page in the UI")
                follower.refresh_children()
                follower.print_new_logs()
                if state is not None and state.is_final():
                    for _ in range(3):  # the run's last log lines arrive after its final state
                        time.sleep(max(poll_interval, 1.0))
                        if not follower.print_new_logs():
                            break
                    return FollowResult(
                        flow_run_id=run_id,
                        deployment=name,
                        state_type=state_type.value,
                        state_name=state_name,
                        message=state.message,
                        reports=follower.reports(),
                    )
                never_started = state_type == StateType.SCHEDULED and not current.run_count
                if never_started and time.monotonic() - began > start_timeout:
                    now = _pool_status(client, pool_name)
                    why = (
                        f"no worker is polling work pool {pool_name}"
                        if now != "READY"
                        else f"no worker of work pool {pool_name} picked it up"
                    )
                    _cancel(client, run_id, f"not started within {start_timeout:.0f} s: {why}")
                    raise NoWorker(
                        f"{name}: flow run {run_id} was still {state_name} after {start_timeout:.0f} s: {why}; "
                        f"cancelled it so it cannot start by surprise later. {WORKER_HINT}, then run again",
                        run_id,
                    )
                time.sleep(poll_interval)
        except KeyboardInterrupt:
            raise MigrationError(
                f"stopped following {name}; flow run {run_id} goes on on its worker "
                f"(cancel it with `prefect flow-run cancel {run_id}`)"
            ) from None
