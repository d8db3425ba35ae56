"""`migration.clouds.kube.KubeGateway` against the sandbox's Kubernetes API emulator (a real HTTP server).

One emulator process for the module (plain HTTP: the gateway is built from
`ServerSettings(url, None)` and a token the emulator accepts); each test works in its own
namespace. The error mapping for statuses the emulator does not answer on demand (429,
503, 409) is checked against a few-line stub server.
"""

from __future__ import annotations

import base64
import json
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from migration.clouds.kube import (
    CLUSTER_SCOPED,
    FIELD_MANAGER,
    KubeGateway,
    ServerSettings,
    object_path,
    plural,
    write_kubeconfig,
)
from migration.errors import NotFoundError, PermanentError, TransientError
from migration.ship import field_changes
from sandbox.kube import build_kubeconfig
from sandbox.kube.testing import EmulatorProcess, free_port, make_token

pytestmark = pytest.mark.sandbox

LABELS = {"app.kubernetes.io/managed-by": "mmrv-migrate", "app.kubernetes.io/name": "gw"}


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    with EmulatorProcess(tmp_path_factory.mktemp("kube-gateway"), clusters=["staging"]) as process:
        yield process


@pytest.fixture(scope="module")
def gateway(kube: EmulatorProcess) -> Iterator[KubeGateway]:
    with KubeGateway(ServerSettings(kube.url("staging"), None), make_token()) as gw:
        yield gw


@pytest.fixture
def ns(gateway: KubeGateway, request: pytest.FixtureRequest) -> str:
    name = request.node.name.replace("_", "-")[:50].strip("-").lower()
    gateway.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": LABELS}})
    return name


def config_map(ns: str, name: str = "settings", labels: dict[str, str] | None = None, **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns, "labels": labels if labels is not None else dict(LABELS)},
        "data": data or {"LOG_LEVEL": "info"},
    }


def deployment(ns: str, image: str = "nginx:1.25") -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": "web"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": ns, "labels": dict(LABELS)},
        "spec": {
            "replicas": 0,  # no pods: the test is about the API, not the kubelet
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": image, "env": [{"name": "MODE", "value": "a"}]}]},
            },
        },
    }


def settled(read: Callable[[], dict[str, Any] | None], quiet: float = 0.6, timeout: float = 15.0) -> dict[str, Any]:
    """The object once the controllers stopped writing it (its resourceVersion unchanged for `quiet` s)."""
    deadline = time.monotonic() + timeout
    last = read()
    since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = read()
        assert now is not None
        if last is None or now["metadata"]["resourceVersion"] != last["metadata"]["resourceVersion"]:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return now
    raise AssertionError("the object kept changing")


# --- apply / get / dry run ---------------------------------------------------------------------------


def test_apply_creates_and_a_reapply_changes_nothing(gateway: KubeGateway, ns: str) -> None:
    assert gateway.get("v1", "ConfigMap", ns, "settings") is None
    created = gateway.apply(config_map(ns))
    assert created["data"] == {"LOG_LEVEL": "info"}
    assert created["metadata"]["labels"] == LABELS
    managers = {(m["manager"], m["operation"]) for m in created["metadata"]["managedFields"]}
    assert (FIELD_MANAGER, "Apply") in managers

    again = gateway.apply(config_map(ns))
    assert again["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    got = gateway.get("v1", "ConfigMap", ns, "settings")
    assert got is not None
    assert got["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    assert got["metadata"]["uid"] == created["metadata"]["uid"]

    changed = gateway.apply(config_map(ns, LOG_LEVEL="debug"))
    assert changed["data"] == {"LOG_LEVEL": "debug"}
    assert int(changed["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])


def test_reapplying_a_deployment_the_controller_has_written_to_changes_nothing(gateway: KubeGateway, ns: str) -> None:
    gateway.apply(deployment(ns))
    current = settled(lambda: gateway.get("apps/v1", "Deployment", ns, "web"))
    assert current["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    again = gateway.apply(deployment(ns))
    assert again["metadata"]["resourceVersion"] == current["metadata"]["resourceVersion"]
    assert again["metadata"]["generation"] == current["metadata"]["generation"]


def test_dry_run_apply_answers_the_result_and_stores_nothing(gateway: KubeGateway, ns: str) -> None:
    preview = gateway.apply(config_map(ns, "new-one"), dry_run=True)
    assert preview["data"] == {"LOG_LEVEL": "info"}
    assert gateway.get("v1", "ConfigMap", ns, "new-one") is None

    stored = gateway.apply(config_map(ns))
    preview = gateway.apply(config_map(ns, LOG_LEVEL="debug"), dry_run=True)
    assert preview["data"] == {"LOG_LEVEL": "debug"}
    after = gateway.get("v1", "ConfigMap", ns, "settings")
    assert after is not None
    assert after["data"] == {"LOG_LEVEL": "info"}
    assert after["metadata"]["resourceVersion"] == stored["metadata"]["resourceVersion"]


def test_the_ship_planner_sees_no_change_in_a_dry_run_of_what_is_applied(gateway: KubeGateway, ns: str) -> None:
    """What `plan_manifests` gets: the stored object vs the dry-run answer, server defaults on both sides."""
    gateway.apply(deployment(ns))
    observed = settled(lambda: gateway.get("apps/v1", "Deployment", ns, "web"))
    same = gateway.apply(deployment(ns), dry_run=True)
    assert same["spec"]["revisionHistoryLimit"] == 10  # defaulted by the server, absent from the manifest
    assert field_changes(observed, same) == ()

    other = gateway.apply(deployment(ns, image="nginx:1.27"), dry_run=True)
    assert [(c.field, c.observed, c.desired) for c in field_changes(observed, other)] == [
        ("spec.template.spec.containers[app].image", "nginx:1.25", "nginx:1.27")
    ]


def test_get_of_a_missing_object_or_namespace_is_none(gateway: KubeGateway, ns: str) -> None:
    assert gateway.get("v1", "ConfigMap", ns, "nothing-here") is None
    assert gateway.get("apps/v1", "Deployment", "no-such-namespace", "web") is None
    assert gateway.get("v1", "Namespace", None, "no-such-namespace") is None
    namespace = gateway.get("v1", "Namespace", None, ns)
    assert namespace is not None
    assert namespace["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "mmrv-migrate"


# --- list -------------------------------------------------------------------------------------------------


def test_list_with_a_label_selector_names_each_items_kind(gateway: KubeGateway, ns: str) -> None:
    gateway.apply(config_map(ns, "mine"))
    gateway.apply(config_map(ns, "theirs", labels={"team": "platform"}))
    everything = {i["metadata"]["name"] for i in gateway.list("v1", "ConfigMap", ns)}
    assert everything == {"mine", "theirs", "kube-root-ca.crt"}  # the API server adds the last one

    ours = gateway.list("v1", "ConfigMap", ns, label_selector="app.kubernetes.io/managed-by=mmrv-migrate")
    assert [i["metadata"]["name"] for i in ours] == ["mine"]
    assert (ours[0]["apiVersion"], ours[0]["kind"]) == ("v1", "ConfigMap")  # list items come without them
    assert gateway.list("v1", "ConfigMap", ns, label_selector="team in (nobody)") == []
    assert gateway.list("apps/v1", "Deployment", ns) == []


def test_list_follows_continue_tokens_until_the_last_page(
    gateway: KubeGateway, ns: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gateway asks for pages of 500; pages of 2 here make it walk the `continue` tokens with 5 objects."""
    names = [f"cm-{i}" for i in range(5)]
    for name in names:
        gateway.apply(config_map(ns, name))
    pages: list[dict[str, Any]] = []
    real_call = gateway._call

    def small_pages(method: str, path: str, what: str, *, query: Any = None, **kwargs: Any) -> Any:
        if method == "GET" and query and ("limit", 500) in query:
            query = [("limit", 2) if q == ("limit", 500) else q for q in query]
            answer = real_call(method, path, what, query=query, **kwargs)
            pages.append({"query": dict(query), "count": len(answer["items"]), "metadata": answer["metadata"]})
            if len(pages) > 10:
                raise AssertionError(f"still paging after {len(pages)} pages: {pages[-2:]}")
            return answer
        return real_call(method, path, what, query=query, **kwargs)

    monkeypatch.setattr(gateway, "_call", small_pages)
    items = gateway.list("v1", "ConfigMap", ns, label_selector="app.kubernetes.io/name=gw")

    assert sorted(i["metadata"]["name"] for i in items) == names
    assert len({i["metadata"]["uid"] for i in items}) == 5  # no page read twice
    assert [p["count"] for p in pages] == [2, 2, 1]
    assert "continue" not in pages[0]["query"]
    assert pages[1]["query"]["continue"] == pages[0]["metadata"]["continue"]
    assert pages[2]["query"]["continue"] == pages[1]["metadata"]["continue"]
    assert not pages[2]["metadata"].get("continue")
    assert all(p["query"]["labelSelector"] == "app.kubernetes.io/name=gw" for p in pages)


# --- json patch / delete -------------------------------------------------------------------------------------


def test_json_patch_replaces_what_it_names(gateway: KubeGateway, ns: str) -> None:
    gateway.apply(deployment(ns))
    template = deployment(ns, image="nginx:1.27")["spec"]["template"]
    patched = gateway.json_patch(
        "apps/v1", "Deployment", ns, "web", [{"op": "replace", "path": "/spec/template", "value": template}]
    )
    assert patched["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.27"
    stored = gateway.get("apps/v1", "Deployment", ns, "web")
    assert stored is not None
    assert stored["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.27"
    assert f"{FIELD_MANAGER}-rollback" in {m["manager"] for m in stored["metadata"]["managedFields"]}


def test_json_patch_of_a_missing_object_is_a_permanent_error(gateway: KubeGateway, ns: str) -> None:
    with pytest.raises(NotFoundError) as caught:
        gateway.json_patch("v1", "ConfigMap", ns, "absent", [{"op": "add", "path": "/data/x", "value": "1"}])
    assert isinstance(caught.value, PermanentError)
    assert f"ConfigMap {ns}/absent" in str(caught.value)
    with pytest.raises(NotFoundError) as cluster_scoped:
        gateway.json_patch(
            "v1", "Namespace", None, "absent", [{"op": "add", "path": "/metadata/labels/x", "value": "1"}]
        )
    assert str(cluster_scoped.value).startswith("kubernetes: Namespace absent: 404")  # not "Namespace None/absent"


def test_delete_removes_and_a_missing_object_is_already_deleted(gateway: KubeGateway, ns: str) -> None:
    gateway.apply(config_map(ns))
    gateway.delete("v1", "ConfigMap", ns, "settings")
    assert gateway.get("v1", "ConfigMap", ns, "settings") is None
    gateway.delete("v1", "ConfigMap", ns, "settings")  # again: nothing to do, no error
    gateway.delete("apps/v1", "Deployment", "no-such-namespace", "web")


# --- errors --------------------------------------------------------------------------------------------------


def test_a_rejected_object_is_a_permanent_error_naming_it_and_the_api_servers_reason(
    gateway: KubeGateway, ns: str
) -> None:
    with pytest.raises(PermanentError) as caught:
        gateway.apply(config_map(ns, "Bad_Name"))
    error = caught.value
    assert not isinstance(error, NotFoundError)
    assert error.status == 422
    assert error.service == "kubernetes"
    text = str(error)
    assert text.startswith(f"kubernetes: ConfigMap {ns}/Bad_Name: 422 Invalid: ")
    assert 'metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain' in text
    with pytest.raises(PermanentError, match="422 Invalid"):
        gateway.apply(config_map(ns, "Bad_Name"), dry_run=True)
    assert gateway.get("v1", "ConfigMap", ns, "Bad_Name") is None


def test_applying_into_a_missing_namespace_is_a_permanent_error(gateway: KubeGateway) -> None:
    with pytest.raises(PermanentError) as caught:
        gateway.apply(config_map("no-such-namespace"))
    assert caught.value.status == 404
    assert "ConfigMap no-such-namespace/settings" in str(caught.value)


@pytest.mark.parametrize(
    "token",
    ["not-a-jwt", make_token(exp=int(time.time()) - 60)],
    ids=["garbage", "expired"],
)
def test_a_refused_token_is_a_permanent_error(kube: EmulatorProcess, token: str) -> None:
    with KubeGateway(ServerSettings(kube.url("staging"), None), token) as gw:
        with pytest.raises(PermanentError) as on_get:
            gw.get("v1", "Namespace", None, "default")
        with pytest.raises(PermanentError) as on_list:
            gw.list("v1", "Namespace", None)
    assert on_get.value.status == on_list.value.status == 401
    assert "Namespace default: 401 Unauthorized" in str(on_get.value)
    assert not isinstance(on_get.value, TransientError)


def test_a_refused_connection_is_transient() -> None:
    with KubeGateway(ServerSettings(f"http://127.0.0.1:{free_port()}", None), make_token(), attempts=3) as gw:
        started = time.monotonic()
        with pytest.raises(TransientError) as caught:
            gw.get("v1", "ConfigMap", "mmrv", "settings")
    assert "ConfigMap mmrv/settings: connection problem" in str(caught.value)
    assert caught.value.status is None
    assert time.monotonic() - started < 10  # three quick attempts, then the task's retry policy


def test_a_dropped_connection_is_retried_then_transient() -> None:
    """The API server hangs up without answering: the gateway's attempts, then TransientError for the task."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    accepted: list[int] = []
    stop = threading.Event()

    def hang_up() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            accepted.append(1)
            connection.close()

    thread = threading.Thread(target=hang_up, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        gateway = KubeGateway(ServerSettings(url, None), make_token(), attempts=3, backoff_seconds=0.01)
        with gateway as gw, pytest.raises(TransientError) as caught:
            gw.get("v1", "ConfigMap", "mmrv", "settings")
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()
    assert "ConfigMap mmrv/settings: connection problem" in str(caught.value)
    assert len(accepted) == 3


class _Canned(BaseHTTPRequestHandler):
    """Answers every request with the status in the path's last segment and a Kubernetes `Status` body."""

    def do_GET(self) -> None:
        code = int(self.path.rstrip("/").rsplit("/", 1)[-1])
        body = json.dumps(
            {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "code": code,
                "reason": "Canned",
                "message": f"canned answer {code}",
            }
        ).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def canned() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Canned)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("code", "kind"),
    [(429, TransientError), (500, TransientError), (503, TransientError), (408, TransientError),
     (409, PermanentError), (403, PermanentError), (400, PermanentError)],
)  # fmt: skip
def test_status_codes_map_to_error_kinds(canned: str, code: int, kind: type[Exception]) -> None:
    with (
        KubeGateway(ServerSettings(canned, None), make_token(), backoff_seconds=0.01) as gw,
        pytest.raises(kind) as caught,
    ):
        gw.get("v1", "ConfigMap", "mmrv", str(code))
    assert type(caught.value) is kind
    assert f"ConfigMap mmrv/{code}: {code} Canned: canned answer {code}" in str(caught.value)
    assert getattr(caught.value, "status", None) == code


# --- paths ---------------------------------------------------------------------------------------------------

KINDS = [
    ("v1", "Namespace", "/api/v1/namespaces/mmrv"),
    ("v1", "ServiceAccount", "/api/v1/namespaces/mmrv/serviceaccounts/mmrv"),
    (
        "secrets-store.csi.x-k8s.io/v1",
        "SecretProviderClass",
        "/apis/secrets-store.csi.x-k8s.io/v1/namespaces/mmrv/secretproviderclasses/mmrv",
    ),
    ("v1", "ConfigMap", "/api/v1/namespaces/mmrv/configmaps/mmrv"),
    ("apps/v1", "Deployment", "/apis/apps/v1/namespaces/mmrv/deployments/mmrv"),
    ("v1", "Service", "/api/v1/namespaces/mmrv/services/mmrv"),
    ("networking.k8s.io/v1", "Ingress", "/apis/networking.k8s.io/v1/namespaces/mmrv/ingresses/mmrv"),
    (
        "autoscaling/v2",
        "HorizontalPodAutoscaler",
        "/apis/autoscaling/v2/namespaces/mmrv/horizontalpodautoscalers/mmrv",
    ),
    ("policy/v1", "PodDisruptionBudget", "/apis/policy/v1/namespaces/mmrv/poddisruptionbudgets/mmrv"),
    ("networking.k8s.io/v1", "NetworkPolicy", "/apis/networking.k8s.io/v1/namespaces/mmrv/networkpolicies/mmrv"),
]


@pytest.mark.parametrize(("api_version", "kind", "path"), KINDS, ids=[k for _, k, _ in KINDS])
def test_object_paths_of_every_kind_the_translation_writes(
    gateway: KubeGateway, api_version: str, kind: str, path: str
) -> None:
    # the namespace is passed as the ship phase passes it; a cluster-scoped kind ignores it
    assert object_path(api_version, kind, "mmrv", "mmrv") == path
    assert object_path(api_version, kind, "mmrv") == path.rsplit("/", 1)[0]
    # the API server agrees: its discovery lists the plural with the same scope
    group_path = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    resources = gateway._call("GET", group_path, "discovery")["resources"]
    served = {r["name"]: r for r in resources}
    assert plural(kind) in served
    assert served[plural(kind)]["kind"] == kind
    assert served[plural(kind)]["namespaced"] is (kind not in CLUSTER_SCOPED)


def test_plural_follows_the_api_servers_rules() -> None:
    assert [plural(k) for k in ("Endpoints", "Ingress", "NetworkPolicy", "Pod", "Status", "Policy")] == [
        "endpoints",
        "ingresses",
        "networkpolicies",
        "pods",
        "statuses",
        "policies",
    ]


MANIFESTS: list[dict[str, Any]] = [
    {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "web"}},
    {
        "apiVersion": "secrets-store.csi.x-k8s.io/v1",
        "kind": "SecretProviderClass",
        "metadata": {"name": "web-keyvault"},
        "spec": {"provider": "azure", "parameters": {"keyvaultName": "kv-mmrv", "tenantId": "t", "objects": ""}},
    },
    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web-env"}, "data": {"A": "1"}},
    {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"selector": {"app.kubernetes.io/name": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    },
    {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "web"},
        "spec": {
            "rules": [
                {
                    "host": "api.mmrv.example.com",
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": "web", "port": {"number": 80}}},
                            }
                        ]
                    },
                }
            ]
        },
    },
    {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 1,
            "maxReplicas": 3,
        },
    },
    {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "web"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": "web"}}},
    },
    {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "web"},
        "spec": {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "web"}}, "policyTypes": ["Ingress"]},
    },
]


def test_every_kind_round_trips_through_the_gateway(gateway: KubeGateway, ns: str) -> None:
    for manifest in MANIFESTS:
        body = json.loads(json.dumps(manifest))
        body["metadata"].update(namespace=ns, labels=dict(LABELS))
        applied = gateway.apply(body)
        kind, name = manifest["kind"], manifest["metadata"]["name"]
        assert (applied["kind"], applied["metadata"]["namespace"]) == (kind, ns)
        stored = gateway.get(manifest["apiVersion"], kind, ns, name)
        assert stored is not None, kind
        assert stored["metadata"]["uid"] == applied["metadata"]["uid"], kind
        listed = gateway.list(manifest["apiVersion"], kind, ns, label_selector="app.kubernetes.io/name=gw")
        assert [i["metadata"]["name"] for i in listed] == [name], kind
        gateway.delete(manifest["apiVersion"], kind, ns, name)
        assert gateway.get(manifest["apiVersion"], kind, ns, name) is None, kind


# --- kubeconfig ----------------------------------------------------------------------------------------------


def aks_kubeconfig(ca_pem: bytes | None = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n") -> str:
    """What `list_cluster_user_credentials` hands out for an Entra ID cluster: the kubelogin exec user."""
    return yaml.safe_dump(build_kubeconfig("staging", "https://aks.example.com:443", ca_pem=ca_pem))


def test_write_kubeconfig_replaces_the_exec_user_with_the_token(tmp_path: Path) -> None:
    text = aks_kubeconfig()
    assert "exec" in yaml.safe_load(text)["users"][0]["user"]
    path = write_kubeconfig(text, "the-token", tmp_path / "kubeconfig")
    written = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert written["users"] == [{"name": "clusterUser_staging", "user": {"token": "the-token"}}]
    original = yaml.safe_load(text)
    assert written["clusters"] == original["clusters"]
    assert written["current-context"] == "staging"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_write_kubeconfig_without_a_token_keeps_the_exec_user(tmp_path: Path) -> None:
    path = write_kubeconfig(aks_kubeconfig(), None, tmp_path / "kubeconfig")
    assert yaml.safe_load(path.read_text(encoding="utf-8"))["users"][0]["user"]["exec"]["command"] == "kubelogin"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("existing", [False, True], ids=["new-file", "existing-readable-file"])
def test_the_token_never_sits_in_a_file_others_can_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, existing: bool
) -> None:
    path = tmp_path / "kubeconfig"
    if existing:
        path.write_text("old\n", encoding="utf-8")
        path.chmod(0o644)
    modes: list[int | None] = []
    real_write_text = Path.write_text

    def watching(self: Path, data: str, *args: Any, **kwargs: Any) -> int:
        if self == path:  # the mode the file has when the token goes in (None: created by this write, umask mode)
            modes.append(stat.S_IMODE(self.stat().st_mode) if self.exists() else None)
        return real_write_text(self, data, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", watching)
    write_kubeconfig(aks_kubeconfig(), "the-token", path)
    assert modes == [0o600]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_server_settings_from_the_kubeconfig(tmp_path: Path) -> None:
    ca = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    settings = ServerSettings.from_kubeconfig(aks_kubeconfig(ca))
    assert settings.server == "https://aks.example.com:443"
    assert settings.ca_pem == ca
    assert base64.b64encode(ca).decode() in aks_kubeconfig(ca)
    assert ServerSettings.from_kubeconfig(aks_kubeconfig(None)).ca_pem is None
    with pytest.raises(PermanentError, match="kubeconfig is not usable"):
        ServerSettings.from_kubeconfig("clusters: [")
