"""Start, inspect and stop the sandbox: `mmrv-migrate sandbox up|status|down`.

Topology (the same whatever the fault rate):

    client --https--> fault proxy (one TLS listener per backend) --http--> backend on 127.0.0.1

Every backend of `sandbox.services.BACKENDS` gets a free loopback port and a public TLS port
on the proxy. `up` starts them all detached, waits until each answers, seeds the AWS estate
directly on the backends (bypassing the proxy, so seeding is deterministic), and writes
`profile.env`. Any failure on the way stops what was started: nothing is left half-up.
"""

from __future__ import annotations

import datetime as dt
import http.client
import importlib.util
import os
import shlex
import ssl
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from migration.errors import CloudError, InputError
from migration.settings import PROFILE_FILE
from migration.spec import Spec
from sandbox import process
from sandbox.backend import DEFAULT_KUBE_TIME_SCALE, expand
from sandbox.certs import TlsFiles, ensure_tls
from sandbox.endpoints import SeedEndpoints
from sandbox.proxy import HEALTH_PATH, STATS_PATH, PathRoute, ProxyConfig, RouteConfig
from sandbox.services import BACKENDS, ECR_REGISTRY_USER, Backend, Context, ecr_registry_password
from sandbox.state import (
    READY,
    STARTING,
    SandboxState,
    ServiceRecord,
    locked,
    read_state,
    remove_state,
    write_atomic,
    write_state,
)

PROXY = "proxy"
PROXY_CONFIG_FILE = "proxy.json"
LOG_DIR = "logs"
HEALTH_TIMEOUT = 60.0  # per `up`; moto needs ~1 s here, a loaded CI machine more
STOP_TIMEOUT = 5.0  # SIGTERM grace before SIGKILL
DUMMY_KEY = "testing"  # moto accepts any credentials
CLIENT_RETRIES = "8"  # for ad-hoc boto3/aws CLI use of the profile under --fault-rate

# the sandbox's environment must not leak into the servers it starts (a sourced profile.env
# would otherwise point a server's own SDK calls at the previous sandbox)
_CLIENT_ONLY_ENV = ("AWS_ENDPOINT_URL", "AWS_CA_BUNDLE", "MMRV_")


class SandboxAlreadyRunning(InputError):
    def __init__(self, state_dir: Path, running: list[ServiceRecord]) -> None:
        pids = ", ".join(f"{s.name} pid {s.process.pid}" for s in running)
        super().__init__(
            f"a sandbox is already running in {state_dir} ({pids}): stop it with `mmrv-migrate sandbox down` "
            f"(MMRV_SANDBOX_DIR={state_dir}), or start another one with a different MMRV_SANDBOX_DIR"
        )


class SandboxError(CloudError):
    """The sandbox could not be started or stopped cleanly."""

    def __init__(self, message: str) -> None:
        super().__init__("sandbox", message)


@dataclass(frozen=True)
class SandboxProfile:
    profile_path: Path
    values: dict[str, str]


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    pid: int
    url: str
    healthy: bool


# --- up ---------------------------------------------------------------------------------


def up(
    state_dir: Path,
    *,
    spec: Spec,
    fault_rate: float = 0.0,
    seed: int = 0,
    progress: Callable[[str], None] = lambda m: None,
    time_scale: float | None = None,
) -> SandboxProfile:
    """Start every backend and the fault proxy, wait until healthy, seed, write profile.env.

    `time_scale`: real seconds per emulated second in the Kubernetes emulator (default 0.1:
    rollouts, pulls and back-offs run ten times faster than on AKS).
    """
    if not 0.0 <= fault_rate <= 1.0:
        raise InputError(f"fault rate {fault_rate} must lie within 0 and 1")
    scale = DEFAULT_KUBE_TIME_SCALE if time_scale is None else time_scale
    if not 0.0 < scale <= 10.0:
        raise InputError(f"time scale {scale} must lie above 0 and at most 10")
    state_dir = state_dir.resolve()
    began = time.monotonic()
    with locked(state_dir):
        _clear_previous(state_dir, progress)
        tls = ensure_tls(state_dir)
        backends = _available_backends(spec, progress)
        state = SandboxState(
            phase=STARTING,
            started_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            fault_rate=fault_rate,
            seed=seed,
            ca_bundle=str(tls.ca),
        )
        try:
            _start_all(state_dir, spec, backends, state, tls, progress, scale)
            _wait_healthy(state, tls.ca, progress)
            _seed(state, spec, seed, progress)
            values = _profile_values(state_dir, spec, state, backends, tls.ca)
            profile_path = state_dir / PROFILE_FILE
            write_atomic(profile_path, _render_profile(values))
            state.phase = READY
            write_state(state_dir, state)
        except BaseException:
            # nothing half-up: stop whatever this `up` started, keep the logs to read
            _stop_all(state, check_ports=False)
            remove_state(state_dir)
            (state_dir / PROFILE_FILE).unlink(missing_ok=True)
            raise
    progress(f"sandbox up in {time.monotonic() - began:.1f} s (fault rate {fault_rate}, seed {seed})")
    return SandboxProfile(profile_path=profile_path, values=values)


def _start_all(
    state_dir: Path,
    spec: Spec,
    backends: list[Backend],
    state: SandboxState,
    tls: TlsFiles,
    progress: Callable[[str], None],
    kube_time_scale: float = DEFAULT_KUBE_TIME_SCALE,
) -> None:
    """Each backend on its own loopback port, then the proxy with one TLS route per backend.

    The state file is rewritten after every start, so an `up` killed halfway leaves a
    record of exactly what it started.
    """
    ports = process.free_ports(2 * len(backends))
    pairs = list(zip(ports[::2], ports[1::2], strict=True))
    public = {b.name: f"https://127.0.0.1:{pub}" for b, (_, pub) in zip(backends, pairs, strict=True)}
    own_port = {b.name: own for b, (own, _) in zip(backends, pairs, strict=True)}
    direct = {name: f"http://127.0.0.1:{own}" for name, own in own_port.items()}
    routes = []
    for backend, (backend_port, public_port) in zip(backends, pairs, strict=True):
        ctx = Context(
            name=backend.name,
            state_dir=state_dir,
            spec=spec,
            port=backend_port,
            public_port=public_port,
            public_urls=public,
            direct_urls=direct,
            ca_bundle=tls.ca,
            kube_time_scale=kube_time_scale,
        )
        state.services[backend.name] = _start_backend(ctx, backend, progress)
        write_state(state_dir, state)
        # e.g. an ACR front's /oauth2/ to the ARM emulator: skipped when that backend is not running
        paths = tuple(
            PathRoute(prefix, own_port[target]) for prefix, target in backend.path_routes.items() if target in own_port
        )
        routes.append(
            RouteConfig(backend.name, public_port, backend_port, fault_kinds=backend.fault_kinds, paths=paths)
        )
    proxy_config = ProxyConfig(
        certfile=str(tls.server_cert),
        keyfile=str(tls.server_key),
        routes=tuple(routes),
        seed=state.seed,
        fault_rate=state.fault_rate,
    )
    state.services[PROXY] = _start_proxy(state_dir, proxy_config)
    write_state(state_dir, state)


def _available_backends(spec: Spec, progress: Callable[[str], None]) -> list[Backend]:
    available = []
    for backend in expand(BACKENDS, spec):
        if backend.requires_module and importlib.util.find_spec(backend.requires_module) is None:
            # progress, not a log warning: the CLI shows progress, and would show it twice
            progress(f"warning: {backend.requires_module} is missing: starting without {backend.name}")
            continue
        available.append(backend)
    return available


def _clear_previous(state_dir: Path, progress: Callable[[str], None]) -> None:
    """Refuse a live sandbox; clean up after a dead one or after an `up` that died halfway."""
    state = read_state(state_dir)
    if state is None:
        (state_dir / PROFILE_FILE).unlink(missing_ok=True)
        return
    running = [s for s in state.services.values() if process.is_running(s.process)]
    if running and state.phase == READY:
        raise SandboxAlreadyRunning(state_dir, running)
    if running:  # phase STARTING and we hold the lock: the `up` that wrote it is gone
        progress(f"stopping {len(running)} process(es) left by an interrupted `sandbox up`")
    else:
        progress("removing stale sandbox state (its processes are gone)")
    _stop_all(state, check_ports=False)  # also reaps the dead ones if this process started them
    remove_state(state_dir)
    (state_dir / PROFILE_FILE).unlink(missing_ok=True)


def _child_env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_CLIENT_ONLY_ENV)}
    # `python -m sandbox.<x>` must import this very checkout, whatever the cwd
    project_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (project_root, env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"  # log lines reach the log file as they happen
    env.update(extra)
    return env


def _start_backend(ctx: Context, backend: Backend, progress: Callable[[str], None]) -> ServiceRecord:
    state_dir, port, public_port = ctx.state_dir, ctx.port, ctx.public_port
    argv = backend.command(ctx)
    log_path = state_dir / LOG_DIR / f"{backend.name}.log"
    progress(f"starting {backend.name} on 127.0.0.1:{port} (public https://127.0.0.1:{public_port})")
    record = process.spawn(argv, log_path=log_path, env=_child_env(backend.env(ctx)), cwd=state_dir)
    return ServiceRecord(
        name=backend.name,
        process=record,
        log=str(log_path),
        ports=(port,),
        public_url=f"https://127.0.0.1:{public_port}",
        backend_port=port,
        public_port=public_port,
        direct_url=f"http://127.0.0.1:{port}",
        health_path=backend.health_path,
    )


def _start_proxy(state_dir: Path, config: ProxyConfig) -> ServiceRecord:
    config_path = state_dir / PROXY_CONFIG_FILE
    write_atomic(config_path, config.to_json())
    argv = [sys.executable, "-m", "sandbox.proxy", "--config", str(config_path)]
    log_path = state_dir / LOG_DIR / f"{PROXY}.log"
    record = process.spawn(argv, log_path=log_path, env=_child_env({}), cwd=state_dir)
    ports = tuple(r.listen_port for r in config.routes)
    return ServiceRecord(
        name=PROXY,
        process=record,
        log=str(log_path),
        ports=ports,
        public_url=f"https://127.0.0.1:{ports[0]}{STATS_PATH}" if ports else "",
    )


# --- health -----------------------------------------------------------------------------


def _client_ssl(ca: Path) -> ssl.SSLContext:
    # explicit CA, never the environment's bundle (this machine points AWS_CA_BUNDLE etc. elsewhere)
    return ssl.create_default_context(cafile=str(ca))


def _answers(url: str, path: str, ca: Path | None = None, timeout: float = 2.0) -> int | None:
    """The HTTP status `GET url+path` gets, or None when nothing answers."""
    scheme, _, hostport = url.partition("://")
    host, _, port = hostport.partition("/")[0].partition(":")
    conn: http.client.HTTPConnection
    if scheme == "https":
        assert ca is not None
        conn = http.client.HTTPSConnection(host, int(port), timeout=timeout, context=_client_ssl(ca))
    else:
        conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def _wait_healthy(state: SandboxState, ca: Path, progress: Callable[[str], None]) -> None:
    """Poll every service until it answers; fail fast when one exits, or at the deadline."""
    began = time.monotonic()
    deadline = began + HEALTH_TIMEOUT
    pending = dict(state.services)
    while pending:
        for name, svc in list(pending.items()):
            if not process.is_running(svc.process):
                code = process.exit_code(svc.process)
                exited = f"exited with code {code}" if code is not None else "exited"
                raise SandboxError(
                    f"{name} {exited} while starting; see its log {svc.log}:\n{process.tail(Path(svc.log))}"
                )
            if _service_answers(svc, ca):
                progress(f"{name} healthy in {time.monotonic() - began:.1f} s")
                del pending[name]
        if not pending:
            return
        if time.monotonic() > deadline:
            name, svc = next(iter(pending.items()))
            raise SandboxError(
                f"{name} did not become healthy within {HEALTH_TIMEOUT:.0f} s; see its log {svc.log}:\n"
                f"{process.tail(Path(svc.log))}"
            )
        time.sleep(0.1)


def _service_answers(svc: ServiceRecord, ca: Path) -> bool:
    if svc.name == PROXY:
        return all(_answers(f"https://127.0.0.1:{port}", STATS_PATH, ca) == 200 for port in svc.ports)
    assert svc.direct_url is not None
    return _answers(svc.direct_url, svc.health_path or "/") is not None


# --- seeding and the profile ------------------------------------------------------------


def _seed(state: SandboxState, spec: Spec, seed: int, progress: Callable[[str], None]) -> None:
    if importlib.util.find_spec("sandbox.seed") is None:
        progress("warning: sandbox.seed is missing: the sandbox starts empty (not seeded)")
        return
    from sandbox.seed import seed_aws

    def direct(name: str) -> str:
        svc = state.services.get(name)
        return (svc.direct_url or "") if svc else ""

    endpoints = SeedEndpoints(
        aws_endpoint=direct("moto"),
        amplify_endpoint=direct("amplify"),
        ecr_registry_url=direct("ecr-registry"),
        ecr_registry_user=ECR_REGISTRY_USER,
        ecr_registry_password=ecr_registry_password(spec),
        region=spec.aws.region,
        account_id=spec.aws.account_id,
    )
    began = time.monotonic()
    progress("seeding the AWS estate")
    seed_aws(endpoints, spec, seed)
    progress(f"seeded in {time.monotonic() - began:.1f} s")


def _profile_values(
    state_dir: Path, spec: Spec, state: SandboxState, backends: list[Backend], ca: Path
) -> dict[str, str]:
    values = {
        "AWS_ACCESS_KEY_ID": DUMMY_KEY,
        "AWS_SECRET_ACCESS_KEY": DUMMY_KEY,
        "AWS_DEFAULT_REGION": spec.aws.region,
        "AWS_REGION": spec.aws.region,
        "AWS_CA_BUNDLE": str(ca),
        "MMRV_CA_BUNDLE": str(ca),
        "AWS_RETRY_MODE": "standard",
        "AWS_MAX_ATTEMPTS": CLIENT_RETRIES,
        "MMRV_SANDBOX_DIR": str(state_dir),
    }
    for backend in backends:
        svc = state.services[backend.name]
        url = svc.public_url
        for key, template in backend.profile.items():
            values[key] = template.format(url=url, host=url.partition("://")[2])
        ctx = Context(
            name=backend.name,
            state_dir=state_dir,
            spec=spec,
            port=svc.backend_port or 0,
            public_port=svc.public_port or 0,
            public_urls={name: s.public_url for name, s in state.services.items() if name != PROXY},
            direct_urls={name: s.direct_url for name, s in state.services.items() if s.direct_url},
            ca_bundle=ca,
        )
        values.update(backend.profile_values(ctx))
    return values


def _render_profile(values: Mapping[str, str]) -> str:
    lines = [
        "# The running sandbox's endpoints, written by `mmrv-migrate sandbox up`; removed by `down`.",
        "# Use: set -a; . .sandbox/profile.env; set +a   (boto3 and the aws CLI then reach the sandbox)",
        *(f"{key}={shlex.quote(value)}" for key, value in values.items()),
    ]
    return "\n".join(lines) + "\n"


# --- status and down --------------------------------------------------------------------


def status(state_dir: Path) -> list[ServiceStatus]:
    """Each recorded service: alive, and answering through its public TLS front."""
    state_dir = state_dir.resolve()
    state = read_state(state_dir)
    if state is None:
        return []
    ca = Path(state.ca_bundle)
    proxy = state.services.get(PROXY)
    proxy_alive = proxy is not None and process.is_running(proxy.process)
    result = []
    for name, svc in state.services.items():
        alive = process.is_running(svc.process)
        if name == PROXY:
            healthy = alive and _service_answers(svc, ca)
        else:
            # /__sandbox/health: the proxy (TLS, never faulted) confirms the backend accepts connections
            healthy = alive and proxy_alive and _answers(svc.public_url, HEALTH_PATH, ca) == 200
        result.append(ServiceStatus(name=name, pid=svc.process.pid, url=svc.public_url, healthy=healthy))
    return result


def down(state_dir: Path) -> list[str]:
    """Stop exactly the recorded processes; remove profile.env and the state; keep data and logs."""
    state_dir = state_dir.resolve()
    if not state_dir.is_dir():
        return []
    with locked(state_dir):
        state = read_state(state_dir)
        (state_dir / PROFILE_FILE).unlink(missing_ok=True)
        if state is None:
            return []
        try:
            return _stop_all(state, check_ports=True)
        finally:
            remove_state(state_dir)


def _stop_all(state: SandboxState, *, check_ports: bool) -> list[str]:
    """The proxy is signalled first (no new requests reach the backends); all are awaited together."""
    order = sorted(state.services.values(), key=lambda s: s.name != PROXY)
    by_pid = {s.process.pid: s for s in order}
    stopped = [by_pid[r.pid] for r in process.stop_all([s.process for s in order], timeout=STOP_TIMEOUT)]
    if check_ports:
        # only ports of processes we just stopped: a long-dead sandbox's ports may be anyone's now
        lingering = process.wait_ports_closed([p for s in stopped for p in s.ports])
        if lingering:
            raise SandboxError(f"port(s) {sorted(lingering)} still have a listener after stopping the sandbox")
    return [s.name for s in stopped]
