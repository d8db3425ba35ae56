"""The emulator's controllers, kubelet and apps against real outside servers.

A real Distribution registry (`docker-registry`, htpasswd auth) holds the images, pushed
over its HTTP API; a small real HTTP server stands in for the ARM emulator's AcrPull check
and for Key Vault. Emulated time runs 20x faster (`--time-scale 0.05`), so deadlines of
tens of emulated seconds pass in a second or two.
"""

from __future__ import annotations

import base64
import copy
import gzip
import hashlib
import io
import json
import shutil
import socket
import subprocess
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from sandbox.kube import build_kubeconfig
from sandbox.kube.auth import decode_jwt
from sandbox.kube.testing import EmulatorProcess, free_port, make_token

pytestmark = [
    pytest.mark.sandbox,
    pytest.mark.skipif(
        shutil.which("docker-registry") is None or shutil.which("htpasswd") is None,
        reason="needs docker-registry and htpasswd (Debian packages docker-registry, apache2-utils)",
    ),
]

REGISTRY_HOST = "mmrvsandbox.azurecr.io"  # what image references name; mapped to the local registry
REPOSITORY = "mmrv-backend"
TIME_SCALE = 0.05
MANAGER = "mmrv-migrate"
CLIENT_ID = "5d3c3a5e-0000-4000-8000-00000000c1d1"
VAULT = "kv-mmrv-staging"


# --- a real registry with real images ---------------------------------------------------------------


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _layer(text: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        payload = text.encode()
        info = tarfile.TarInfo("app/VERSION")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    return gzip.compress(buffer.getvalue(), mtime=0)


@dataclass
class Registry:
    url: str
    auth: tuple[str, str]
    digests: dict[str, str] = field(default_factory=dict)

    def push(self, tag: str, labels: dict[str, str]) -> str:
        """Push a one-layer image (config with `labels`) as <repo>:<tag>; returns the manifest digest."""
        layer = _layer(f"mmrv-backend {tag}")
        config_blob = json.dumps({
            "architecture": "amd64", "os": "linux",
            "config": {"Labels": labels, "ExposedPorts": {"8080/tcp": {}}},
            "rootfs": {"type": "layers", "diff_ids": [_digest(gzip.decompress(layer))]},
        }).encode()  # fmt: skip
        with httpx.Client(auth=self.auth, timeout=10) as http:
            for blob in (layer, config_blob):
                start = http.post(f"{self.url}/v2/{REPOSITORY}/blobs/uploads/")
                assert start.status_code == 202, start.text
                location = httpx.URL(self.url).join(start.headers["location"])
                done = http.put(location.copy_merge_params({"digest": _digest(blob)}), content=blob,
                                headers={"content-type": "application/octet-stream"})  # fmt: skip
                assert done.status_code == 201, done.text
            manifest = json.dumps({
                "schemaVersion": 2,
                "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                           "size": len(config_blob), "digest": _digest(config_blob)},
                "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                            "size": len(layer), "digest": _digest(layer)}],
            }).encode()  # fmt: skip
            put = http.put(
                f"{self.url}/v2/{REPOSITORY}/manifests/{tag}",
                content=manifest,
                headers={"content-type": "application/vnd.docker.distribution.manifest.v2+json"},
            )
            assert put.status_code == 201, put.text
        self.digests[tag] = put.headers["docker-content-digest"]
        return self.digests[tag]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    root = tmp_path_factory.mktemp("registry")
    user, password = "acr-admin", "s3cret-registry-pass"
    hashed = subprocess.run(["htpasswd", "-niB", "-C", "5", user], input=password, capture_output=True, text=True,
                            check=True).stdout.strip()  # fmt: skip
    (root / "htpasswd").write_text(hashed + "\n")
    port = free_port()
    (root / "config.yml").write_text(yaml.safe_dump({
        "version": "0.1",
        "log": {"level": "warn"},
        "storage": {"filesystem": {"rootdirectory": str(root / "data")}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": "test-secret"},
        "auth": {"htpasswd": {"realm": "test", "path": str(root / "htpasswd")}},
    }))  # fmt: skip
    log = (root / "registry.log").open("wb")
    process = subprocess.Popen(["docker-registry", "serve", str(root / "config.yml")], stdout=log, stderr=log)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 15
        while True:
            try:
                if httpx.get(f"{url}/v2/", timeout=1).status_code == 401:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "registry did not start"
            time.sleep(0.1)
        reg = Registry(url, (user, password))
        reg.push("v1", {"org.opencontainers.image.version": "v1"})
        reg.push("v2", {"org.opencontainers.image.version": "v2"})
        reg.push("v3-bad", {"org.opencontainers.image.version": "v3", "mmrv.sandbox/broken": "true"})
        yield reg
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


# --- stand-ins for the ARM emulator's AcrPull check and for Key Vault ----------------------------------


@dataclass
class Policy:
    pull_clusters: set[str] = field(default_factory=lambda: {"staging"})
    readable: dict[tuple[str, str, str], str] = field(default_factory=dict)  # (vault, secret, client id) -> value
    seen_tokens: list[dict[str, Any]] = field(default_factory=list)
    pull_requests: list[dict[str, Any]] = field(default_factory=list)


def _stand_in(policy: Policy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:  # the AcrPull check
            request = json.loads(self.rfile.read(int(self.headers["content-length"])))
            policy.pull_requests.append(request)
            allowed = request["cluster"] in policy.pull_clusters
            self._send(200, {"allowed": allowed, "reason": "" if allowed else "no AcrPull for the kubelet identity"})

        def do_GET(self) -> None:  # Key Vault: /vaults/<vault>/secrets/<name>
            parts = self.path.split("?", 1)[0].strip("/").split("/")
            claims = decode_jwt(self.headers.get("authorization", "").removeprefix("Bearer ")) or {}
            policy.seen_tokens.append(claims)
            if len(parts) < 4 or parts[0] != "vaults" or parts[2] != "secrets" or "api-version=" not in self.path:
                self._send(404, {"error": {"code": "NotFound", "message": "no such path"}})
                return
            value = policy.readable.get((parts[1], parts[3], claims.get("appid", "")))
            if value is None:
                message = f"Caller is not authorized to perform action on resource. Caller: appid={claims.get('appid')}"
                self._send(403, {"error": {"code": "Forbidden", "message": message}})
                return
            self._send(200, {"value": value, "id": f"https://{parts[1]}.vault.azure.net/secrets/{parts[3]}/1"})

    return Handler


@pytest.fixture(scope="module")
def policy() -> Policy:
    return Policy()


@pytest.fixture(scope="module")
def stand_in(policy: Policy) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _stand_in(policy))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory, registry: Registry, stand_in: str) -> Iterator[EmulatorProcess]:
    workdir = tmp_path_factory.mktemp("kube")
    credentials = workdir / "registry-credentials.json"
    credentials.write_text(json.dumps({REGISTRY_HOST: {"username": registry.auth[0], "password": registry.auth[1]}}))
    args = [
        "--time-scale", str(TIME_SCALE),
        "--registry-map", f"{REGISTRY_HOST}={registry.url}",
        "--registry-credentials", str(credentials),
        "--authorizer-url", f"{stand_in}/acr-pull",
        "--keyvault-url-template", f"{stand_in}/vaults/{{vault}}",
    ]  # fmt: skip
    with EmulatorProcess(workdir, clusters=["staging", "production"], extra_args=args) as process:
        yield process
    assert REGISTRY_HOST in credentials.read_text()
    assert registry.auth[1] not in process.log_tail(10000)  # the registry password never reaches the log


def api_client(server: str) -> client.ApiClient:
    configuration = client.Configuration()
    config.load_kube_config_from_dict(build_kubeconfig("c", server, token=make_token()),
                                      client_configuration=configuration)  # fmt: skip
    return client.ApiClient(configuration)


@pytest.fixture(scope="module")
def staging(kube: EmulatorProcess) -> Iterator[client.ApiClient]:
    with api_client(kube.url("staging")) as api:
        yield api


@pytest.fixture
def ns(staging: client.ApiClient, request: pytest.FixtureRequest) -> str:
    name = request.node.name.replace("_", "-")[:50].strip("-").lower()
    client.CoreV1Api(staging).create_namespace({"metadata": {"name": name}})
    return name


# --- helpers -----------------------------------------------------------------------------------------


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def image(tag: str) -> str:
    return f"{REGISTRY_HOST}/{REPOSITORY}:{tag}"


def backend(name: str, tag: str, *, replicas: int = 2, deadline: int = 40, spc: str | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "backend",
        "image": image(tag),
        "ports": [{"containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 1},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 2, "failureThreshold": 2},
    }
    pod_spec: dict[str, Any] = {"containers": [container]}
    if spc:
        pod_spec["serviceAccountName"] = "backend"
        csi = {"driver": "secrets-store.csi.k8s.io", "readOnly": True, "volumeAttributes": {"secretProviderClass": spc}}
        pod_spec["volumes"] = [{"name": "secrets", "csi": csi}]
        container["volumeMounts"] = [{"name": "secrets", "mountPath": "/mnt/secrets", "readOnly": True}]
        secret_ref = {"secretKeyRef": {"name": "backend-secrets", "key": "DB_PASSWORD"}}
        container["env"] = [{"name": "DB_PASSWORD", "valueFrom": secret_ref}]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "progressDeadlineSeconds": deadline,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": pod_spec},
        },
    }


def apply(api: client.ApiClient, ns: str, body: dict[str, Any]) -> client.V1Deployment:
    return client.AppsV1Api(api).patch_namespaced_deployment(
        body["metadata"]["name"], ns, body, field_manager=MANAGER, force=True,
        _content_type="application/apply-patch+yaml",
    )  # fmt: skip


def progressing(api: client.ApiClient, ns: str, name: str) -> client.V1DeploymentCondition | None:
    status = client.AppsV1Api(api).read_namespaced_deployment_status(name, ns).status
    return next((c for c in (status.conditions or []) if c.type == "Progressing"), None) if status else None


def wait_complete(api: client.ApiClient, ns: str, name: str, timeout: float = 20.0) -> client.V1Deployment:
    apps = client.AppsV1Api(api)

    def complete() -> client.V1Deployment | None:
        d = apps.read_namespaced_deployment(name, ns)
        s = d.status
        done = (
            s is not None
            and s.observed_generation == d.metadata.generation
            and s.updated_replicas == s.replicas == s.available_replicas == d.spec.replicas
            and any(c.type == "Progressing" and c.reason == "NewReplicaSetAvailable" for c in s.conditions or [])
            and any(c.type == "Available" and c.status == "True" for c in s.conditions or [])
        )
        return d if done else None

    return wait_for(complete, timeout, f"rollout of {ns}/{name}")


def wait_deadline(api: client.ApiClient, ns: str, name: str) -> client.V1DeploymentCondition:
    def exceeded() -> client.V1DeploymentCondition | None:
        cond = progressing(api, ns, name)
        return cond if cond and cond.reason == "ProgressDeadlineExceeded" else None

    cond = wait_for(exceeded, 20.0, f"{ns}/{name} to exceed its progress deadline")
    assert cond.status == "False" and cond.message.endswith("has timed out progressing.")
    return cond


def events(api: client.ApiClient, ns: str) -> list[client.CoreV1Event]:
    return client.CoreV1Api(api).list_namespaced_event(ns).items


def load_balancer(api: client.ApiClient, ns: str, name: str, app: str) -> str:
    core = client.CoreV1Api(api)
    core.create_namespaced_service(ns, {"metadata": {"name": name}, "spec": {
        "type": "LoadBalancer", "selector": {"app": app}, "ports": [{"port": 80, "targetPort": 8080}]}})  # fmt: skip

    def address() -> str | None:
        svc = core.read_namespaced_service(name, ns)
        ingress = (svc.status.load_balancer.ingress or []) if svc.status and svc.status.load_balancer else []
        if not ingress or not ingress[0].ports:
            return None
        assert ingress[0].ip == "127.0.0.1"
        url = f"http://{ingress[0].ip}:{ingress[0].ports[0].port}"
        assert svc.metadata.annotations["sandbox.mmrv/url"] == url
        return url

    return wait_for(address, what="a load balancer address")


# --- tests -------------------------------------------------------------------------------------------


def test_good_image_rolls_out_and_serves_traffic(staging: client.ApiClient, ns: str, registry: Registry) -> None:
    apply(staging, ns, backend("web", "v1"))
    done = wait_complete(staging, ns, "web")
    assert done.metadata.annotations["deployment.kubernetes.io/revision"] == "1"
    url = load_balancer(staging, ns, "web", "web")
    health = httpx.get(f"{url}/healthz")
    assert (health.status_code, health.text) == (200, "ok")
    version = httpx.get(f"{url}/version").json()
    assert version["digest"] == registry.digests["v1"] and version["image"] == image("v1")
    assert version["imageID"] == f"{REGISTRY_HOST}/{REPOSITORY}@{registry.digests['v1']}"

    pods = client.CoreV1Api(staging).list_namespaced_pod(ns, label_selector="app=web").items
    assert len(pods) == 2 and all(p.status.phase == "Running" for p in pods)
    statuses = [p.status.container_statuses[0] for p in pods]
    assert all(s.ready and s.image_id.endswith(registry.digests["v1"]) for s in statuses)
    (rs,) = client.AppsV1Api(staging).list_namespaced_replica_set(ns).items
    assert rs.metadata.name == f"web-{rs.metadata.labels['pod-template-hash']}"
    reasons = {e.reason for e in events(staging, ns)}
    assert {"Scheduled", "Pulling", "Pulled", "Created", "Started", "SuccessfulCreate", "ScalingReplicaSet"} <= reasons


def test_missing_image_backs_off_and_misses_the_deadline(staging: client.ApiClient, ns: str) -> None:
    apply(staging, ns, backend("ghost", "does-not-exist", deadline=20))
    wait_deadline(staging, ns, "ghost")
    pods = client.CoreV1Api(staging).list_namespaced_pod(ns).items
    waiting = {p.status.container_statuses[0].state.waiting.reason for p in pods}
    assert waiting <= {"ErrImagePull", "ImagePullBackOff"} and waiting
    failed = [e.message for e in events(staging, ns) if e.reason == "Failed" and "Failed to pull image" in e.message]
    assert failed and failed[0].startswith(f'Failed to pull image "{image("does-not-exist")}": ')
    assert failed[0].endswith(": not found")
    assert any(e.reason == "BackOff" and "Back-off pulling image" in e.message for e in events(staging, ns))


def test_pull_without_acr_pull_is_unauthorized(kube: EmulatorProcess, policy: Policy) -> None:
    with api_client(kube.url("production")) as production:
        client.CoreV1Api(production).create_namespace({"metadata": {"name": "noacrpull"}})
        apply(production, "noacrpull", backend("web", "v1", replicas=1, deadline=20))
        wait_deadline(production, "noacrpull", "web")
        messages = [e.message for e in events(production, "noacrpull") if e.reason == "Failed"]
    assert any("Failed to pull image" in m and m.endswith("401 Unauthorized") for m in messages)
    asked = [r for r in policy.pull_requests if r["cluster"] == "production"]
    assert asked and asked[0]["registry"] == REGISTRY_HOST and asked[0]["repository"] == REPOSITORY


def test_broken_image_never_gets_ready_and_rollback_restores_the_old_replica_set(
    staging: client.ApiClient, ns: str, registry: Registry
) -> None:
    apps, core = client.AppsV1Api(staging), client.CoreV1Api(staging)
    apply(staging, ns, backend("api", "v1"))
    wait_complete(staging, ns, "api")
    url = load_balancer(staging, ns, "api", "api")
    (good_rs,) = apps.list_namespaced_replica_set(ns).items

    seen: list[tuple[int, str]] = []
    stop = threading.Event()

    def traffic() -> None:
        with httpx.Client(timeout=5) as http:
            while not stop.is_set():
                response = http.get(f"{url}/version")
                digest = response.json().get("digest", "") if response.status_code == 200 else ""
                seen.append((response.status_code, digest))
                time.sleep(0.02)

    thread = threading.Thread(target=traffic)
    thread.start()
    try:
        apply(staging, ns, backend("api", "v3-bad"))
        wait_deadline(staging, ns, "api")
        bad_pods = [p for p in core.list_namespaced_pod(ns).items
                    if p.spec.containers[0].image == image("v3-bad")]  # fmt: skip
        assert bad_pods and not any(p.status.container_statuses[0].ready for p in bad_pods)
        wait_for(lambda: any(p.status.container_statuses[0].restart_count >= 1
                             for p in core.list_namespaced_pod(ns).items
                             if p.spec.containers[0].image == image("v3-bad")), what="a restart")  # fmt: skip
        unhealthy = [e.message for e in events(staging, ns) if e.reason == "Unhealthy"]
        assert "Readiness probe failed: HTTP probe failed with statuscode: 500" in unhealthy
        assert any(e.reason == "BackOff" and "restarting failed container" in e.message for e in events(staging, ns))

        # roll back as the tool does: re-apply the previous ReplicaSet's template
        previous = apps.read_namespaced_replica_set(good_rs.metadata.name, ns)
        template = api_dict(staging, previous.spec.template)
        template["metadata"]["labels"].pop("pod-template-hash")
        rollback = backend("api", "v1")
        rollback["spec"]["template"] = template
        apply(staging, ns, rollback)
        done = wait_complete(staging, ns, "api")
        time.sleep(0.3)
    finally:
        stop.set()
        thread.join()

    sets = {rs.metadata.name: rs for rs in apps.list_namespaced_replica_set(ns).items}
    assert set(sets) == {good_rs.metadata.name, f"api-{bad_pods[0].metadata.labels['pod-template-hash']}"}
    restored = sets[good_rs.metadata.name]
    assert restored.metadata.uid == good_rs.metadata.uid  # the old ReplicaSet itself, not a copy
    assert restored.metadata.annotations["deployment.kubernetes.io/revision"] == "3"
    assert restored.metadata.annotations["deployment.kubernetes.io/revision-history"] == "1"
    assert done.metadata.annotations["deployment.kubernetes.io/revision"] == "3"
    bad = next(rs for name, rs in sets.items() if name != good_rs.metadata.name)
    assert bad.spec.replicas == 0
    assert httpx.get(f"{url}/version").json()["digest"] == registry.digests["v1"]
    # traffic kept flowing to the good pods throughout: never a failure, never the broken image
    assert seen and all(status == 200 for status, _ in seen)
    assert {digest for _, digest in seen} == {registry.digests["v1"]}


def api_dict(api: client.ApiClient, model: Any) -> dict[str, Any]:
    return api.sanitize_for_serialization(model)


def test_secrets_store_csi_gate(staging: client.ApiClient, ns: str, policy: Policy, kube: EmulatorProcess) -> None:
    core, apps = client.CoreV1Api(staging), client.AppsV1Api(staging)
    core.create_namespaced_service_account(ns, {"metadata": {"name": "backend", "annotations": {
        "azure.workload.identity/client-id": CLIENT_ID}}})  # fmt: skip
    objects = yaml.safe_dump({"array": [yaml.safe_dump({"objectName": "db-password", "objectType": "secret"})]})
    spc = {
        "apiVersion": "secrets-store.csi.x-k8s.io/v1",
        "kind": "SecretProviderClass",
        "metadata": {"name": "backend-kv"},
        "spec": {
            "provider": "azure",
            "parameters": {"keyvaultName": VAULT, "objects": objects, "tenantId": "tenant-1"},
            "secretObjects": [{"secretName": "backend-secrets", "type": "Opaque",
                               "data": [{"objectName": "db-password", "key": "DB_PASSWORD"}]}],
        },
    }  # fmt: skip
    client.CustomObjectsApi(staging).create_namespaced_custom_object(
        "secrets-store.csi.x-k8s.io", "v1", ns, "secretproviderclasses", spc
    )
    apply(staging, ns, backend("vaulted", "v1", replicas=1, spc="backend-kv"))

    def failed_mount() -> list[str]:
        return [e.message for e in events(staging, ns) if e.reason == "FailedMount"]

    messages = wait_for(failed_mount, what="a FailedMount event")
    assert "failed to get keyvault object" in messages[0] and "objectName:db-password" in messages[0]
    assert "StatusCode=403" in messages[0]
    (pod,) = core.list_namespaced_pod(ns).items
    assert pod.status.phase == "Pending"
    assert pod.status.container_statuses[0].state.waiting.reason == "ContainerCreating"
    with pytest.raises(ApiException):
        core.read_namespaced_secret("backend-secrets", ns)
    token = next(t for t in policy.seen_tokens if t.get("appid") == CLIENT_ID)
    assert token["aud"] == "https://vault.azure.net" and token["tid"] == "tenant-1"

    policy.readable[(VAULT, "db-password", CLIENT_ID)] = "hunter2-from-key-vault"
    wait_complete(staging, ns, "vaulted")
    synced = core.read_namespaced_secret("backend-secrets", ns)
    assert base64.b64decode(synced.data["DB_PASSWORD"]).decode() == "hunter2-from-key-vault"
    assert synced.metadata.labels["secrets-store.csi.k8s.io/managed"] == "true"
    assert "hunter2-from-key-vault" not in kube.log_tail(10000)  # secret values never reach the log

    missing = backend("nospc", "v1", replicas=1, spc="does-not-exist")
    apply(staging, ns, missing)
    wait_for(lambda: [m for m in failed_mount() if 'SecretProviderClass.secrets-store.csi.x-k8s.io "does-not-exist" not found' in m],  # noqa: E501
             what="FailedMount for a missing SecretProviderClass")  # fmt: skip
    assert apps.read_namespaced_deployment("nospc", ns).status.ready_replicas is None


def test_ingress_routes_by_host(staging: client.ApiClient, ns: str, registry: Registry) -> None:
    apply(staging, ns, backend("site", "v2", replicas=1))
    wait_complete(staging, ns, "site")
    client.CoreV1Api(staging).create_namespaced_service(ns, {"metadata": {"name": "site"}, "spec": {
        "selector": {"app": "site"}, "ports": [{"port": 80, "targetPort": 8080}]}})  # fmt: skip
    path = {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "site", "port": {"number": 80}}}}
    ingress = {"metadata": {"name": "site"}, "spec": {"rules": [{"host": "api.mmrv.test", "http": {"paths": [path]}}]}}
    networking = client.NetworkingV1Api(staging)
    networking.create_namespaced_ingress(ns, ingress)

    def address() -> str | None:
        lb = networking.read_namespaced_ingress("site", ns).status.load_balancer
        points = lb.ingress if lb else None
        return f"http://{points[0].ip}:{points[0].ports[0].port}" if points and points[0].ports else None

    url = wait_for(address, what="an ingress address")
    routed = httpx.get(f"{url}/version", headers={"Host": "api.mmrv.test"})
    assert routed.status_code == 200 and routed.json()["digest"] == registry.digests["v2"]
    assert httpx.get(f"{url}/version", headers={"Host": "elsewhere.test"}).status_code == 404


def test_listeners_close_with_the_emulator(registry: Registry, stand_in: str, tmp_path: Path) -> None:
    """No app or load balancer port outlives the process."""
    args = ["--time-scale", str(TIME_SCALE), "--registry-map", f"{REGISTRY_HOST}={registry.url}",
            "--registry-credentials", str(tmp_path / "creds.json")]  # fmt: skip
    (tmp_path / "creds.json").write_text(json.dumps({REGISTRY_HOST: {"username": registry.auth[0],
                                                                     "password": registry.auth[1]}}))  # fmt: skip
    emulator = EmulatorProcess(tmp_path, extra_args=args)
    with emulator, api_client(emulator.url("default")) as api:
        client.CoreV1Api(api).create_namespace({"metadata": {"name": "shortlived"}})
        apply(api, "shortlived", backend("web", "v1", replicas=1))
        wait_complete(api, "shortlived", "web")
        url = load_balancer(api, "shortlived", "web", "web")
        assert httpx.get(f"{url}/healthz").status_code == 200
    port = int(url.rsplit(":", 1)[1])
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0


def test_copy_of_template_is_not_mutated() -> None:
    """The manifest helper returns fresh dicts (tests above mutate them)."""
    first = backend("a", "v1")
    second = copy.deepcopy(first)
    second["spec"]["replicas"] = 9
    assert backend("a", "v1")["spec"]["replicas"] == 2
