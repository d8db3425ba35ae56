"""The node: runs each pod through the stages a kubelet does, with real checks and real events.

  scheduled -> mounting (Secret/ConfigMap volumes, Secrets Store CSI via the secret reader)
  -> pulling (pull authorizer + image checker) -> creating (env references) -> running
  (probes against the app's real port) -> crash loop when the app is broken

Failures leave the pod where a real one would stay (ContainerCreating with `FailedMount`,
`ErrImagePull`/`ImagePullBackOff`, `CreateContainerConfigError`, `CrashLoopBackOff`) and
retry with the kubelet's back-offs, in emulated time. Outside calls run as tasks so a slow
registry or vault never stalls the cluster's loop.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from sandbox.kube.clock import rfc3339
from sandbox.kube.cluster import NODE_NAME
from sandbox.kube.events import NORMAL, WARNING
from sandbox.kube.images import ImageInfo, PullError, PullRequest, parse_image, unauthorized_detail
from sandbox.kube.secrets_store import (
    WORKLOAD_CLIENT_ID,
    WORKLOAD_TENANT_ID,
    SecretReadError,
    SecretRequest,
    csi_volumes,
    parse_objects,
)
from sandbox.kube.workloads import AppIdentity, probe_paths

if TYPE_CHECKING:
    from sandbox.kube.runtime import ClusterRuntime

log = logging.getLogger(__name__)

SCHEDULE_DELAY = 0.2  # emulated seconds from creation to the node taking the pod
PULL_SECONDS = 1.0  # how long a successful pull takes
START_SECONDS = 0.5
CRASH_AFTER = 3.0  # a broken app exits this long after it starts
CONFIG_RETRY = 2.0
MOUNT_BACKOFF = (2.0, 60.0)  # first, max
PULL_BACKOFF = (10.0, 300.0)
CRASH_BACKOFF = (10.0, 300.0)
HOST_IP = "10.224.0.4"
_PROBES = ("startupProbe", "readinessProbe", "livenessProbe")


def _next_backoff(current: float, bounds: tuple[float, float]) -> float:
    return bounds[0] if current <= 0 else min(current * 2, bounds[1])


def _fmt_seconds(value: float) -> str:
    return f"{int(value)}s" if value < 60 else f"{int(value // 60)}m{int(value % 60)}s"


@dataclass
class ProbeState:
    next_at: float
    failures: int = 0
    successes: int = 0
    passed: bool = False


@dataclass
class PodRun:
    uid: str
    stage: str = "new"  # new, mounting, pulling, creating, running, crashloop
    next_at: float = 0.0  # real time of the stage's next action
    task: asyncio.Task[Any] | None = None
    mount_backoff: float = 0.0
    pull_backoff: float = 0.0
    crash_backoff: float = 0.0
    backoff_visible_at: float | None = None  # when ErrImagePull turns into ImagePullBackOff
    images: dict[str, ImageInfo] = field(default_factory=dict)
    waiting: dict[str, tuple[str, str]] = field(default_factory=dict)
    started_at: float = 0.0
    started_stamp: str = ""
    crash_at: float | None = None
    restart_count: int = 0
    last_terminated: dict[str, Any] | None = None
    ready: bool = False
    ready_since: float | None = None
    probes: dict[tuple[str, str], ProbeState] = field(default_factory=dict)
    probe_task: asyncio.Task[list[tuple[str, str, bool, str]]] | None = None
    app_key: str | None = None
    app_port: int | None = None
    ip: str = ""
    start_time: str = ""
    container_ids: dict[str, str] = field(default_factory=dict)


class Kubelet:
    def __init__(self, runtime: ClusterRuntime) -> None:
        self.runtime = runtime
        self.cluster = runtime.cluster
        self.clock = runtime.clock
        self.events = runtime.events
        self.runs: dict[str, PodRun] = {}
        self._http = httpx.AsyncClient(timeout=5.0)

    # --- queries the controllers and the network use ------------------------------------------------

    def ready_since(self, pod_uid: str) -> float | None:
        run = self.runs.get(pod_uid)
        return run.ready_since if run and run.ready else None

    def app_port(self, pod_uid: str) -> int | None:
        run = self.runs.get(pod_uid)
        return run.app_port if run and run.stage == "running" else None

    # --- the loop ----------------------------------------------------------------------------------

    async def step(self) -> None:
        pods = self.cluster.store.list("", "pods")
        alive = set()
        for pod in pods:
            uid = pod["metadata"]["uid"]
            alive.add(uid)
            run = self.runs.setdefault(uid, PodRun(uid))
            try:
                await self._advance(pod, run)
            except Exception:
                log.exception(
                    "pod %s/%s: kubelet step failed", pod["metadata"].get("namespace"), pod["metadata"]["name"]
                )
        for uid in [u for u in self.runs if u not in alive]:
            await self._forget(uid)

    async def stop(self) -> None:
        for uid in list(self.runs):
            await self._forget(uid)
        await self._http.aclose()

    async def _forget(self, uid: str) -> None:
        run = self.runs.pop(uid)
        for task in (run.task, run.probe_task):
            if task is not None:
                task.cancel()
        if run.app_key:
            await self.runtime.workloads.detach(run.app_key, uid)

    def _current(self, pod: dict[str, Any]) -> dict[str, Any] | None:
        meta = pod["metadata"]
        fresh = self.cluster.store.get("", "pods", meta.get("namespace", ""), meta["name"])
        return fresh if fresh is not None and fresh["metadata"]["uid"] == meta["uid"] else None

    async def _advance(self, pod: dict[str, Any], run: PodRun) -> None:
        now = time.time()
        if run.stage == "new":
            self._schedule(pod, run)
            pod = self._current(pod) or pod
        if run.stage == "mounting" and now >= run.next_at:
            self._mount_step(pod, run)
        if run.stage == "pulling" and now >= run.next_at:
            self._pull_step(pod, run)
        if run.stage == "pulling" and run.backoff_visible_at and now >= run.backoff_visible_at:
            run.backoff_visible_at = None
            for name, (reason, _) in list(run.waiting.items()):
                if reason == "ErrImagePull":
                    image = self._image_of(pod, name)
                    run.waiting[name] = ("ImagePullBackOff", f'Back-off pulling image "{image}"')
                    self._event(pod, NORMAL, "BackOff", f'Back-off pulling image "{image}"', name)
                    self._event(pod, WARNING, "Failed", "Error: ImagePullBackOff", name)
        if run.stage == "creating" and now >= run.next_at:
            await self._create_step(pod, run)
        if run.stage == "crashloop" and now >= run.next_at:
            await self._restart(pod, run)
        if run.stage == "running":
            self._running_step(pod, run, now)
        self._write_status(pod, run)

    # --- stages ------------------------------------------------------------------------------------

    def _schedule(self, pod: dict[str, Any], run: PodRun) -> None:
        meta = pod["metadata"]
        scheduled = any(c.get("type") == "PodScheduled" for c in (pod.get("status") or {}).get("conditions") or [])
        if not scheduled:
            self._event(
                pod,
                NORMAL,
                "Scheduled",
                f"Successfully assigned {meta.get('namespace')}/{meta['name']} to {NODE_NAME}",
                None,
                "default-scheduler",
            )
        if (pod.get("spec") or {}).get("nodeName") != NODE_NAME:
            bound = copy.deepcopy(pod)
            bound["spec"]["nodeName"] = NODE_NAME
            self.cluster.update(self.cluster.type_of("", "pods"), pod, bound, manager="kube-scheduler")
        run.stage = "mounting"
        run.next_at = time.time() + self.clock.real(SCHEDULE_DELAY)
        run.start_time = rfc3339()
        run.ip = self._allocate_ip()

    def _allocate_ip(self) -> str:
        config = self.cluster.store.config
        n = int(config.get("nextPodIp", 10))
        config["nextPodIp"] = n + 1
        return f"10.244.{(n // 250) % 250}.{n % 250 + 2}"

    def _mount_step(self, pod: dict[str, Any], run: PodRun) -> None:
        if run.task is None:
            problem = self._plain_volume_problem(pod)
            if problem:
                self._mount_failed(pod, run, problem)
                return
            volumes = csi_volumes(pod.get("spec") or {})
            if not volumes:
                self._mounted(run)
                return
            run.task = asyncio.create_task(self._mount_csi(pod, volumes))
            return
        if not run.task.done():
            return
        task, run.task = run.task, None
        problem = task.result() if not task.cancelled() and task.exception() is None else str(task.exception())
        if problem:
            self._mount_failed(pod, run, problem)
        else:
            self._mounted(run)

    def _mounted(self, run: PodRun) -> None:
        run.stage = "pulling"
        run.mount_backoff = 0.0
        run.next_at = 0.0

    def _mount_failed(self, pod: dict[str, Any], run: PodRun, message: str) -> None:
        self._event(pod, WARNING, "FailedMount", message)
        run.mount_backoff = _next_backoff(run.mount_backoff, MOUNT_BACKOFF)
        run.next_at = time.time() + self.clock.real(run.mount_backoff)

    def _plain_volume_problem(self, pod: dict[str, Any]) -> str | None:
        namespace = pod["metadata"].get("namespace", "")
        for volume in (pod.get("spec") or {}).get("volumes") or []:
            for source, plural, noun, key in (("secret", "secrets", "secret", "secretName"),
                                              ("configMap", "configmaps", "configmap", "name")):  # fmt: skip
                ref = volume.get(source)
                if not isinstance(ref, dict) or ref.get("optional"):
                    continue
                name = ref.get(key, "")
                if self.cluster.store.get("", plural, namespace, name) is None:
                    return f'MountVolume.SetUp failed for volume "{volume.get("name")}" : {noun} "{name}" not found'
        return None

    async def _mount_csi(self, pod: dict[str, Any], volumes: list[tuple[str, str]]) -> str | None:
        """Mount every Secrets Store volume; None when all mounted, else the FailedMount message."""
        meta = pod["metadata"]
        namespace, pod_name = meta.get("namespace", ""), meta["name"]
        for volume, spc_name in volumes:
            prefix = (
                f'MountVolume.SetUp failed for volume "{volume}" : rpc error: code = Unknown desc = failed to '
                f"mount secrets store objects for pod {namespace}/{pod_name}, err: "
            )
            spc = self.cluster.store.get("secrets-store.csi.x-k8s.io", "secretproviderclasses", namespace, spc_name)
            if spc is None:
                return (
                    prefix + f"failed to get secretproviderclass {namespace}/{spc_name}, error: "
                    f'SecretProviderClass.secrets-store.csi.x-k8s.io "{spc_name}" not found'
                )
            parameters = (spc.get("spec") or {}).get("parameters") or {}
            inner = prefix + "rpc error: code = Unknown desc = failed to mount objects, error: "
            try:
                objects = parse_objects(parameters)
            except ValueError as exc:
                return inner + str(exc)
            request_base = self._secret_request_base(pod, parameters)
            if isinstance(request_base, str):
                return inner + request_base
            values: dict[str, str] = {}
            for obj in objects:
                request = SecretRequest(
                    **request_base,
                    object_name=obj.name,
                    object_type=obj.type,
                    object_version=obj.version,
                )
                try:
                    values[obj.file_name] = await self.runtime.emulator.secret_reader(request)
                except SecretReadError as exc:
                    return inner + (
                        f"failed to get objects, error: failed to get keyvault object: failed to get "
                        f"objectType:{obj.type}, objectName:{obj.name}, objectVersion:{obj.version}: "
                        f'StatusCode={exc.status} -- Original Error: Code="{exc.code}" Message="{exc.message}"'
                    )
            self._sync_secret_objects(spc, namespace, values)
        return None

    def _secret_request_base(self, pod: dict[str, Any], parameters: dict[str, Any]) -> dict[str, Any] | str:
        meta = pod["metadata"]
        namespace = meta.get("namespace", "")
        sa_name = (pod.get("spec") or {}).get("serviceAccountName") or "default"
        sa = self.cluster.store.get("", "serviceaccounts", namespace, sa_name) or {"metadata": {}}
        sa_annotations = sa["metadata"].get("annotations") or {}
        client_id = parameters.get("clientID") or ""
        if not client_id and str(parameters.get("useVMManagedIdentity", "")).lower() == "true":
            client_id = parameters.get("userAssignedIdentityID") or ""
        client_id = client_id or sa_annotations.get(WORKLOAD_CLIENT_ID, "")
        if not client_id:
            return "failed to get keyvault client: no identity: set parameters.clientID or the service account annotation azure.workload.identity/client-id"  # noqa: E501
        vault = parameters.get("keyvaultName") or ""
        if not vault:
            return "keyvaultName is not set in the secret provider class"
        settings = self.cluster.store.config.get("settings") or {}
        tenant = parameters.get("tenantId") or sa_annotations.get(WORKLOAD_TENANT_ID) or self.runtime.tenant_id
        return {
            "cluster": self.cluster.name,
            "namespace": namespace,
            "pod": meta["name"],
            "service_account": sa_name,
            "vault": vault,
            "client_id": client_id,
            "tenant_id": tenant,
            "principal_id": (settings.get("identities") or {}).get(client_id),
        }

    def _sync_secret_objects(self, spc: dict[str, Any], namespace: str, values: dict[str, str]) -> None:
        rt = self.cluster.type_of("", "secrets")
        for wanted in (spc.get("spec") or {}).get("secretObjects") or []:
            name = wanted.get("secretName")
            if not name:
                continue
            data = {
                item["key"]: base64.b64encode(values[item["objectName"]].encode()).decode()
                for item in wanted.get("data") or []
                if item.get("key") and item.get("objectName") in values
            }
            labels = {**(wanted.get("labels") or {}), "secrets-store.csi.k8s.io/managed": "true"}
            existing = self.cluster.store.get("", "secrets", namespace, name)
            body: dict[str, Any] = {
                "metadata": {"name": name, "namespace": namespace, "labels": labels},
                "type": wanted.get("type") or "Opaque",
                "data": data,
            }
            if wanted.get("annotations"):
                body["metadata"]["annotations"] = dict(wanted["annotations"])
            if existing is None:
                self.cluster.create(rt, body, manager="secrets-store-csi-driver")
            elif existing.get("data") != data:
                updated = copy.deepcopy(existing)
                updated["data"] = data
                self.cluster.update(rt, existing, updated, manager="secrets-store-csi-driver")

    def _image_of(self, pod: dict[str, Any], container: str) -> str:
        for c in self._containers(pod):
            if c.get("name") == container:
                return str(c.get("image", ""))
        return ""

    @staticmethod
    def _containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
        spec = pod.get("spec") or {}
        return list(spec.get("initContainers") or []) + list(spec.get("containers") or [])

    def _pull_step(self, pod: dict[str, Any], run: PodRun) -> None:
        if run.task is None:
            for container in self._containers(pod):
                self._event(pod, NORMAL, "Pulling", f'Pulling image "{container.get("image")}"', container.get("name"))
            run.task = asyncio.create_task(self._pull_all(pod))
            return
        if not run.task.done():
            return
        task, run.task = run.task, None
        if task.exception() is not None:
            log.error("pull task failed", exc_info=task.exception())
            run.next_at = time.time() + self.clock.real(PULL_BACKOFF[0])
            return
        result = task.result()
        if isinstance(result, dict):
            run.images = result
            run.waiting.clear()
            run.pull_backoff = 0.0
            for container in self._containers(pod):
                self._event(pod, NORMAL, "Pulled",
                            f'Successfully pulled image "{container.get("image")}" in {PULL_SECONDS:.3f}s '
                            f"({PULL_SECONDS:.3f}s including waiting)", container.get("name"))  # fmt: skip
            run.stage = "creating"
            run.next_at = time.time() + self.clock.real(PULL_SECONDS)
            return
        container, image, error = result
        message = error.event_message(image)
        self._event(pod, WARNING, "Failed", message, container)
        self._event(pod, WARNING, "Failed", "Error: ErrImagePull", container)
        run.waiting[container] = ("ErrImagePull", message)
        run.pull_backoff = _next_backoff(run.pull_backoff, PULL_BACKOFF)
        run.next_at = time.time() + self.clock.real(run.pull_backoff)
        run.backoff_visible_at = time.time() + self.clock.real(min(1.0, run.pull_backoff / 2))

    async def _pull_all(self, pod: dict[str, Any]) -> dict[str, ImageInfo] | tuple[str, str, PullError]:
        emulator = self.runtime.emulator
        found: dict[str, ImageInfo] = {}
        for container in self._containers(pod):
            name, image = container.get("name", ""), str(container.get("image", ""))
            ref = parse_image(image)
            try:
                decision = await emulator.authorizer(
                    PullRequest(
                        cluster=self.cluster.name,
                        image=image,
                        registry=ref.registry,
                        repository=ref.repository,
                        reference=ref.reference,
                        kubelet_identity=(self.cluster.store.config.get("settings") or {}).get("kubeletIdentity"),
                    )
                )
                if not decision.allowed:
                    log.info("pull of %s refused for cluster %s: %s", image, self.cluster.name, decision.reason)
                    raise PullError("Unauthorized", unauthorized_detail(ref))
                found[name] = await emulator.image_checker(image)
            except PullError as error:
                return name, image, error
        return found

    def _config_problem(self, pod: dict[str, Any]) -> str | None:
        """The first env reference to a missing Secret/ConfigMap (or key): CreateContainerConfigError."""
        namespace = pod["metadata"].get("namespace", "")
        store = self.cluster.store
        for container in self._containers(pod):
            for env in container.get("env") or []:
                source = env.get("valueFrom") or {}
                for kind, plural, noun, field_name in (
                    ("secretKeyRef", "secrets", "secret", "data"),
                    ("configMapKeyRef", "configmaps", "configmap", "data"),
                ):
                    ref = source.get(kind)
                    if not isinstance(ref, dict) or ref.get("optional"):
                        continue
                    obj = store.get("", plural, namespace, ref.get("name", ""))
                    if obj is None:
                        return f'{noun} "{ref.get("name")}" not found'
                    if ref.get("key") not in (obj.get(field_name) or {}) and ref.get("key") not in (
                        obj.get("binaryData") or {}
                    ):
                        kind_name = "Secret" if noun == "secret" else "ConfigMap"
                        return f"couldn't find key {ref.get('key')} in {kind_name} {namespace}/{ref.get('name')}"
            for env_from in container.get("envFrom") or []:
                for kind, plural, noun in (
                    ("secretRef", "secrets", "secret"),
                    ("configMapRef", "configmaps", "configmap"),
                ):
                    ref = env_from.get(kind)
                    missing = store.get("", plural, namespace, (ref or {}).get("name", "")) is None
                    if isinstance(ref, dict) and not ref.get("optional") and missing:
                        return f'{noun} "{ref.get("name")}" not found'
        return None

    async def _create_step(self, pod: dict[str, Any], run: PodRun) -> None:
        problem = self._config_problem(pod)
        if problem:
            for container in self._containers(pod):
                run.waiting[container.get("name", "")] = ("CreateContainerConfigError", problem)
            self._event(pod, WARNING, "Failed", f"Error: {problem}")
            run.next_at = time.time() + self.clock.real(CONFIG_RETRY)
            return
        run.waiting.clear()
        identity = self._identity(pod, run)
        key = self._app_key(pod)
        app = await self.runtime.workloads.attach(key, run.uid, identity)
        run.app_key, run.app_port = key, app.port
        for container in (pod.get("spec") or {}).get("containers") or []:
            name = container.get("name", "")
            run.container_ids[name] = (
                "containerd://" + hashlib.sha256(f"{run.uid}/{name}/{run.restart_count}".encode()).hexdigest()
            )
            self._event(pod, NORMAL, "Created", f"Created container: {name}", name)
            self._event(pod, NORMAL, "Started", f"Started container {name}", name)
        self._enter_running(pod, run)

    def _enter_running(self, pod: dict[str, Any], run: PodRun) -> None:
        now = time.time()
        run.stage = "running"
        run.started_at = now
        run.started_stamp = rfc3339(now)
        run.ready, run.ready_since = False, None
        broken = any(info.broken for info in run.images.values())
        run.crash_at = now + self.clock.real(START_SECONDS + CRASH_AFTER) if broken else None
        run.probes = {}
        for container in (pod.get("spec") or {}).get("containers") or []:
            for kind in _PROBES:
                probe = container.get(kind)
                if isinstance(probe, dict):
                    delay = float(probe.get("initialDelaySeconds") or 0)
                    run.probes[(container.get("name", ""), kind)] = ProbeState(
                        now + self.clock.real(START_SECONDS + delay)
                    )

    async def _restart(self, pod: dict[str, Any], run: PodRun) -> None:
        for container in (pod.get("spec") or {}).get("containers") or []:
            name = container.get("name", "")
            run.container_ids[name] = (
                "containerd://" + hashlib.sha256(f"{run.uid}/{name}/{run.restart_count}".encode()).hexdigest()
            )
            self._event(
                pod, NORMAL, "Pulled", f'Container image "{container.get("image")}" already present on machine', name
            )
            self._event(pod, NORMAL, "Created", f"Created container: {name}", name)
            self._event(pod, NORMAL, "Started", f"Started container {name}", name)
        self._enter_running(pod, run)

    def _crash(self, pod: dict[str, Any], run: PodRun, container: str, reason: str = "Error") -> None:
        now = time.time()
        run.restart_count += 1
        run.last_terminated = {
            "exitCode": 137 if reason == "Killed" else 1,
            "reason": "Error",
            "startedAt": run.started_stamp,
            "finishedAt": rfc3339(now),
            "containerID": run.container_ids.get(container, ""),
        }
        run.stage = "crashloop"
        run.ready, run.ready_since = False, None
        run.crash_backoff = _next_backoff(run.crash_backoff, CRASH_BACKOFF)
        run.next_at = now + self.clock.real(run.crash_backoff)
        run.probes = {}
        meta = pod["metadata"]
        self._event(pod, WARNING, "BackOff",
                    f"Back-off restarting failed container {container} in pod {meta['name']}_{meta.get('namespace')}({meta['uid']})",  # noqa: E501
                    container)  # fmt: skip

    def _running_step(self, pod: dict[str, Any], run: PodRun, now: float) -> None:
        containers = (pod.get("spec") or {}).get("containers") or []
        if run.crash_at is not None and now >= run.crash_at:
            self._crash(pod, run, containers[0].get("name", "") if containers else "")
            return
        if run.probe_task is not None and run.probe_task.done():
            task, run.probe_task = run.probe_task, None
            if not task.cancelled() and task.exception() is None:
                self._probe_results(pod, run, task.result())
                if run.stage != "running":
                    return
        if run.probe_task is None:
            due = [
                (c, k) for (c, k), state in run.probes.items() if now >= state.next_at and self._probe_active(run, c, k)
            ]
            if due:
                run.probe_task = asyncio.create_task(self._probe(pod, run, due))
        readiness = [s for (c, k), s in run.probes.items() if k == "readinessProbe"]
        startup = [s for (c, k), s in run.probes.items() if k == "startupProbe"]
        started = all(s.passed for s in startup)
        ready = started and all(s.passed for s in readiness) and now >= run.started_at + self.clock.real(START_SECONDS)
        if ready and not run.ready:
            run.ready, run.ready_since = True, now
        elif not ready and run.ready:
            run.ready, run.ready_since = False, None

    @staticmethod
    def _probe_active(run: PodRun, container: str, kind: str) -> bool:
        if kind == "startupProbe":
            return not run.probes[(container, kind)].passed
        startup = run.probes.get((container, "startupProbe"))
        return startup is None or startup.passed

    async def _probe(
        self, pod: dict[str, Any], run: PodRun, due: list[tuple[str, str]]
    ) -> list[tuple[str, str, bool, str]]:
        results = []
        containers = {c.get("name"): c for c in (pod.get("spec") or {}).get("containers") or []}
        broken = any(info.broken for info in run.images.values())
        for name, kind in due:
            probe = containers.get(name, {}).get(kind) or {}
            http_get = probe.get("httpGet")
            if isinstance(http_get, dict) and run.app_port:
                path = http_get.get("path") or "/"
                port = http_get.get("port")
                shown = f"http://{run.ip}:{port}{path}"
                try:
                    response = await self._http.get(
                        f"http://127.0.0.1:{run.app_port}{path}",
                        timeout=max(0.5, self.clock.real(float(probe.get("timeoutSeconds") or 1))),
                    )
                    ok = 200 <= response.status_code < 400
                    message = "" if ok else f"HTTP probe failed with statuscode: {response.status_code}"
                except httpx.HTTPError:
                    ok, message = False, f'Get "{shown}": dial tcp {run.ip}:{port}: connect: connection refused'
            else:
                ok = not broken
                message = "" if ok else "command failed: container reported unhealthy (image marked broken)"
            results.append((name, kind, ok, message))
        return results

    def _probe_results(self, pod: dict[str, Any], run: PodRun, results: list[tuple[str, str, bool, str]]) -> None:
        now = time.time()
        containers = {c.get("name"): c for c in (pod.get("spec") or {}).get("containers") or []}
        label = {"readinessProbe": "Readiness", "livenessProbe": "Liveness", "startupProbe": "Startup"}
        for name, kind, ok, message in results:
            state = run.probes.get((name, kind))
            if state is None:
                continue
            probe = containers.get(name, {}).get(kind) or {}
            state.next_at = now + self.clock.real(float(probe.get("periodSeconds") or 10))
            if ok:
                state.failures = 0
                state.successes += 1
                if state.successes >= int(probe.get("successThreshold") or 1):
                    state.passed = True
                continue
            state.successes = 0
            state.failures += 1
            self._event(pod, WARNING, "Unhealthy", f"{label[kind]} probe failed: {message}", name)
            if state.failures >= int(probe.get("failureThreshold") or 3):
                state.passed = False
                if kind in ("livenessProbe", "startupProbe"):
                    self._event(pod, NORMAL, "Killing",
                                f"Container {name} failed {kind.replace('Probe', '')} probe, will be restarted", name)  # fmt: skip  # noqa: E501
                    self._crash(pod, run, name, "Killed")
                    return

    # --- identity of the app ------------------------------------------------------------------------

    @staticmethod
    def _owner(pod: dict[str, Any]) -> dict[str, Any] | None:
        return next((r for r in pod["metadata"].get("ownerReferences") or [] if r.get("controller")), None)

    def _app_key(self, pod: dict[str, Any]) -> str:
        owner = self._owner(pod)
        return owner["uid"] if owner else pod["metadata"]["uid"]

    def _identity(self, pod: dict[str, Any], run: PodRun) -> AppIdentity:
        owner = self._owner(pod)
        namespace = pod["metadata"].get("namespace", "")
        revision = ""
        if owner:
            rs = self.cluster.store.get("apps", "replicasets", namespace, owner["name"])
            revision = ((rs or {}).get("metadata", {}).get("annotations") or {}).get(
                "deployment.kubernetes.io/revision", ""
            )
        containers = [
            (c.get("name", ""), run.images[c.get("name", "")])
            for c in (pod.get("spec") or {}).get("containers") or []
            if c.get("name", "") in run.images
        ]
        return AppIdentity(
            namespace=namespace,
            owner=owner["name"] if owner else pod["metadata"]["name"],
            revision=revision,
            containers=containers,
            health_paths=probe_paths(pod.get("spec") or {}),
        )

    # --- status and events --------------------------------------------------------------------------

    def _event(
        self,
        pod: dict[str, Any],
        event_type: str,
        reason: str,
        message: str,
        container: str | None = None,
        component: str = "kubelet",
    ) -> None:
        field_path = f"spec.containers{{{container}}}" if container else None
        self.events.emit(pod, event_type, reason, message, component=component, field_path=field_path)

    def _write_status(self, pod: dict[str, Any], run: PodRun) -> None:
        current = self._current(pod)
        if current is None:
            return
        status = self._status(current, run)
        self.cluster.update_status(self.cluster.type_of("", "pods"), current, status, manager="kubelet")

    def _container_status(self, pod: dict[str, Any], run: PodRun, container: dict[str, Any]) -> dict[str, Any]:
        name = container.get("name", "")
        meta = pod["metadata"]
        info = run.images.get(name)
        started = run.stage == "running"
        if started:
            state: dict[str, Any] = {"running": {"startedAt": run.started_stamp}}
        elif run.stage == "crashloop":
            message = (
                f"back-off {_fmt_seconds(run.crash_backoff)} restarting failed container={name} "
                f"pod={meta['name']}_{meta.get('namespace')}({meta['uid']})"
            )
            state = {"waiting": {"reason": "CrashLoopBackOff", "message": message}}
        elif name in run.waiting:
            reason, message = run.waiting[name]
            state = {"waiting": {"reason": reason, "message": message}}
        else:
            state = {"waiting": {"reason": "ContainerCreating"}}
        status: dict[str, Any] = {
            "name": name,
            "state": state,
            "lastState": {"terminated": run.last_terminated} if run.last_terminated else {},
            "ready": bool(started and run.ready),
            "restartCount": run.restart_count,
            "image": container.get("image", ""),
            "imageID": info.image_id if info and (started or run.stage == "crashloop") else "",
            "started": started,
        }
        if name in run.container_ids:
            status["containerID"] = run.container_ids[name]
        return status

    def _status(self, pod: dict[str, Any], run: PodRun) -> dict[str, Any]:
        old = pod.get("status") or {}
        previous = {c.get("type"): c for c in old.get("conditions") or []}
        now = rfc3339()

        def condition(kind: str, ok: bool, reason: str | None = None) -> dict[str, Any]:
            value = "True" if ok else "False"
            before = previous.get(kind)
            cond: dict[str, Any] = {"type": kind, "status": value, "lastProbeTime": None,
                                    "lastTransitionTime": before["lastTransitionTime"]
                                    if before and before.get("status") == value else now}  # fmt: skip
            if reason and not ok:
                cond["reason"] = reason
            return cond

        spec = pod.get("spec") or {}
        containers = spec.get("containers") or []
        running = run.stage == "running"
        ready = running and run.ready
        sandbox = run.stage not in ("new", "mounting")
        status: dict[str, Any] = {
            "phase": "Running" if run.stage in ("running", "crashloop") else "Pending",
            "conditions": [
                condition("PodReadyToStartContainers", sandbox),
                condition("Initialized", True),
                condition("Ready", ready, "ContainersNotReady"),
                condition("ContainersReady", ready, "ContainersNotReady"),
                condition("PodScheduled", True),
            ],
            "hostIP": HOST_IP,
            "hostIPs": [{"ip": HOST_IP}],
            "startTime": old.get("startTime") or run.start_time or now,
            "containerStatuses": [self._container_status(pod, run, c) for c in containers],
            "qosClass": "Burstable" if any(c.get("resources") for c in containers) else "BestEffort",
        }
        if sandbox and run.ip:
            status["podIP"] = run.ip
            status["podIPs"] = [{"ip": run.ip}]
        if spec.get("initContainers"):
            done = run.stage in ("creating", "running", "crashloop")
            status["initContainerStatuses"] = [
                {
                    "name": c.get("name", ""),
                    "image": c.get("image", ""),
                    "imageID": run.images[c["name"]].image_id if done and c.get("name") in run.images else "",
                    "ready": done,
                    "restartCount": 0,
                    "started": False,
                    "state": {"terminated": {"exitCode": 0, "reason": "Completed"}} if done
                    else {"waiting": {"reason": "PodInitializing"}},
                    "lastState": {},
                }
                for c in spec["initContainers"]
            ]  # fmt: skip
        if not ready and containers:
            not_ready = [c.get("name", "") for c in containers]
            for cond in status["conditions"]:
                if cond["type"] in ("Ready", "ContainersReady"):
                    cond["message"] = f"containers with unready status: [{' '.join(not_ready)}]"
        return status
