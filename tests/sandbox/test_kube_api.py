"""The Kubernetes API emulator's API server, through the official client (typed and dynamic).

One emulator process (a real HTTP server) for the module; each test works in its own
namespace. Restart and TLS tests start their own processes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
import yaml
from kubernetes import client, config, dynamic, watch
from kubernetes.client.rest import ApiException

from sandbox.kube import build_kubeconfig
from sandbox.kube.testing import EmulatorProcess, make_token

pytestmark = pytest.mark.sandbox

DEPLOYMENT_MANAGER = "mmrv-migrate"


def api_client(server: str, *, ca_pem: bytes | None = None, token: str | None = None) -> client.ApiClient:
    kubeconfig = build_kubeconfig("staging", server, ca_pem=ca_pem, token=token or make_token())
    configuration = client.Configuration()
    config.load_kube_config_from_dict(kubeconfig, client_configuration=configuration)
    return client.ApiClient(configuration)


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    process = EmulatorProcess(tmp_path_factory.mktemp("kube"), clusters=["staging", "production"],
                              extra_args=["--time-scale", "0.05"])  # fmt: skip
    with process:
        yield process


@pytest.fixture(scope="module")
def api(kube: EmulatorProcess) -> Iterator[client.ApiClient]:
    with api_client(kube.url("staging")) as api_:
        yield api_


@pytest.fixture
def ns(api: client.ApiClient, request: pytest.FixtureRequest) -> str:
    name = request.node.name.replace("_", "-")[:50].strip("-").lower()
    client.CoreV1Api(api).create_namespace({"metadata": {"name": name}})
    return name


def status_of(error: ApiException) -> dict[str, Any]:
    return json.loads(error.body)


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def deployment(name: str, image: str = "nginx:1.25", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": image,
                            "ports": [{"containerPort": 8080}],
                            "env": [{"name": "MODE", "value": "a"}],
                            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                        },
                        {"name": "sidecar", "image": "busybox:1.36"},
                    ],
                    "volumes": [{"name": "tmp", "emptyDir": {}}],
                },
            },
            **spec,
        },
    }


# --- discovery ------------------------------------------------------------------------------------


def test_discovery_serves_the_typed_and_dynamic_clients(api: client.ApiClient, tmp_path: Path) -> None:
    assert client.VersionApi(api).get_code().git_version.startswith("v1.")
    groups = {g.name: g.preferred_version.version for g in client.ApisApi(api).get_api_versions().groups}
    assert groups["apps"] == "v1" and groups["autoscaling"] == "v2"
    assert groups["secrets-store.csi.x-k8s.io"] == "v1"

    dyn = dynamic.DynamicClient(api, cache_file=str(tmp_path / "discovery.json"))
    wanted = {
        ("v1", "Namespace"): False, ("v1", "Service"): True, ("v1", "Secret"): True, ("v1", "ConfigMap"): True,
        ("v1", "ServiceAccount"): True, ("v1", "Pod"): True, ("v1", "Event"): True,
        ("apps/v1", "Deployment"): True, ("apps/v1", "ReplicaSet"): True,
        ("networking.k8s.io/v1", "Ingress"): True, ("networking.k8s.io/v1", "NetworkPolicy"): True,
        ("autoscaling/v2", "HorizontalPodAutoscaler"): True, ("policy/v1", "PodDisruptionBudget"): True,
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition"): False,
        ("secrets-store.csi.x-k8s.io/v1", "SecretProviderClass"): True,
    }  # fmt: skip
    for (api_version, kind), namespaced in wanted.items():
        resource = dyn.resources.get(api_version=api_version, kind=kind)
        assert resource.namespaced is namespaced, kind
    deployments = dyn.resources.get(api_version="apps/v1", kind="Deployment")
    assert set(deployments.subresources) == {"status", "scale"}
    names = [ns.metadata.name for ns in dyn.get(dyn.resources.get(api_version="v1", kind="Namespace")).items]
    assert {"default", "kube-system"} <= set(names)


def test_missing_or_broken_token_is_401(kube: EmulatorProcess) -> None:
    for headers in ({}, {"Authorization": "Bearer not-a-jwt"}, {"Authorization": "Basic dXNlcjpwYXNz"}):
        response = httpx.get(f"{kube.url('staging')}/api/v1/namespaces", headers=headers)
        assert response.status_code == 401
        assert response.json() == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                   "message": "Unauthorized", "reason": "Unauthorized", "code": 401}  # fmt: skip


def test_clusters_are_separate(kube: EmulatorProcess, api: client.ApiClient) -> None:
    client.CoreV1Api(api).create_namespace({"metadata": {"name": "only-in-staging"}})
    with api_client(kube.url("production")) as production:
        names = {n.metadata.name for n in client.CoreV1Api(production).list_namespace().items}
    assert "only-in-staging" not in names and "default" in names
    unknown = httpx.get(f"{kube.base_url}/clusters/nope/api", headers={"Authorization": f"Bearer {make_token()}"})
    assert unknown.status_code == 404


# --- CRUD, selectors, conflicts ----------------------------------------------------------------------


def test_crud_with_label_and_field_selectors(api: client.ApiClient, ns: str) -> None:
    core = client.CoreV1Api(api)
    for name, tier in (("alpha", "web"), ("beta", "web"), ("gamma", "db")):
        created = core.create_namespaced_config_map(ns, {"metadata": {"name": name, "labels": {"tier": tier}},
                                                         "data": {"k": name}})  # fmt: skip
        assert created.metadata.uid and created.metadata.creation_timestamp and created.metadata.resource_version

    def names(**kw: str) -> list[str]:
        return [
            c.metadata.name
            for c in core.list_namespaced_config_map(ns, **kw).items
            if c.metadata.name != "kube-root-ca.crt"
        ]

    assert names(label_selector="tier=web") == ["alpha", "beta"]
    assert names(label_selector="tier in (db,cache)") == ["gamma"]
    assert names(label_selector="tier!=web") == ["gamma"]
    assert names(field_selector="metadata.name=beta") == ["beta"]
    assert names(label_selector="tier=web", field_selector="metadata.name!=alpha") == ["beta"]
    with pytest.raises(ApiException) as unsupported:
        core.list_namespaced_config_map(ns, field_selector="data.k=alpha")
    assert (
        unsupported.value.status == 400
        and "field label not supported: data.k" in status_of(unsupported.value)["message"]
    )

    current = core.read_namespaced_config_map("alpha", ns)
    current.data = {"k": "changed"}
    replaced = core.replace_namespaced_config_map("alpha", ns, current)
    assert replaced.data == {"k": "changed"}
    assert int(replaced.metadata.resource_version) > int(current.metadata.resource_version)

    deleted = core.delete_namespaced_config_map("alpha", ns)  # this client version hands back the raw Status
    assert deleted["kind"] == "Status" and deleted["status"] == "Success"
    assert deleted["details"] == {"name": "alpha", "kind": "configmaps", "uid": replaced.metadata.uid}
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_config_map("alpha", ns)
    assert status_of(missing.value) == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'configmaps "alpha" not found', "reason": "NotFound",
        "details": {"name": "alpha", "kind": "configmaps"}, "code": 404,
    }  # fmt: skip
    with pytest.raises(ApiException) as exists:
        core.create_namespaced_config_map(ns, {"metadata": {"name": "beta"}})
    assert exists.value.status == 409 and status_of(exists.value)["reason"] == "AlreadyExists"


def test_stale_resource_version_is_a_409_conflict(api: client.ApiClient, ns: str) -> None:
    apps = client.AppsV1Api(api)
    first = apps.create_namespaced_deployment(ns, deployment("web"))
    apps.patch_namespaced_deployment("web", ns, {"metadata": {"labels": {"touched": "yes"}}})
    stale = deployment("web")
    stale["metadata"]["resourceVersion"] = first.metadata.resource_version
    with pytest.raises(ApiException) as conflict:
        apps.replace_namespaced_deployment("web", ns, stale)
    body = status_of(conflict.value)
    assert conflict.value.status == 409 and body["reason"] == "Conflict"
    assert body["message"] == (
        'Operation cannot be fulfilled on deployments.apps "web": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )
    assert body["details"] == {"name": "web", "group": "apps", "kind": "deployments"}


def test_generation_bumps_on_spec_changes_only(api: client.ApiClient, ns: str) -> None:
    apps = client.AppsV1Api(api)
    assert apps.create_namespaced_deployment(ns, deployment("gen")).metadata.generation == 1
    labelled = apps.patch_namespaced_deployment("gen", ns, {"metadata": {"labels": {"x": "y"}}})
    assert labelled.metadata.generation == 1
    scaled = apps.patch_namespaced_deployment("gen", ns, {"spec": {"replicas": 0}})
    assert scaled.metadata.generation == 2
    unchanged = apps.patch_namespaced_deployment("gen", ns, {"spec": {"replicas": 0}})
    assert unchanged.metadata.generation == 2  # the same spec again is no spec change
    # a no-op write is no write: shown on a ConfigMap, which no controller touches in the meantime
    core = client.CoreV1Api(api)
    created = core.create_namespaced_config_map(ns, {"metadata": {"name": "noop"}, "data": {"a": "1"}})
    same = core.patch_namespaced_config_map("noop", ns, {"data": {"a": "1"}})
    assert same.metadata.resource_version == created.metadata.resource_version
    scale = apps.read_namespaced_deployment_scale("gen", ns)
    assert scale.spec.replicas == 0 and scale.status.selector == "app=gen"
    apps.patch_namespaced_deployment_scale("gen", ns, {"spec": {"replicas": 3}})
    assert apps.read_namespaced_deployment("gen", ns).spec.replicas == 3


def test_invalid_name_is_422_with_causes(api: client.ApiClient, ns: str) -> None:
    with pytest.raises(ApiException) as invalid:
        client.AppsV1Api(api).create_namespaced_deployment(ns, deployment("Bad_Name"))
    body = status_of(invalid.value)
    assert invalid.value.status == 422 and body["reason"] == "Invalid" and body["code"] == 422
    assert body["message"].startswith(
        'Deployment.apps "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": '
        "a lowercase RFC 1123 subdomain must consist of"
    )
    assert body["details"]["name"] == "Bad_Name" and body["details"]["group"] == "apps"
    assert body["details"]["kind"] == "Deployment"
    (cause,) = body["details"]["causes"]
    assert cause["reason"] == "FieldValueInvalid" and cause["field"] == "metadata.name"
    with pytest.raises(ApiException) as service:
        client.CoreV1Api(api).create_namespaced_service(ns, {"metadata": {"name": "1web"},
                                                             "spec": {"ports": [{"port": 80}]}})  # fmt: skip
    assert "a DNS-1035 label must consist" in status_of(service.value)["message"]
    broken = deployment("mismatch")
    broken["spec"]["selector"] = {"matchLabels": {"app": "other"}}
    with pytest.raises(ApiException) as selector:
        client.AppsV1Api(api).create_namespaced_deployment(ns, broken)
    assert [c["field"] for c in status_of(selector.value)["details"]["causes"]] == ["spec.template.metadata.labels"]


def test_objects_in_a_missing_namespace_are_404(api: client.ApiClient) -> None:
    with pytest.raises(ApiException) as missing:
        client.CoreV1Api(api).create_namespaced_secret("no-such-ns", {"metadata": {"name": "s"}})
    assert missing.value.status == 404
    assert status_of(missing.value)["details"] == {"name": "no-such-ns", "kind": "namespaces"}


def test_namespace_delete_cascades(api: client.ApiClient) -> None:
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    core.create_namespace({"metadata": {"name": "doomed"}})
    core.create_namespaced_config_map("doomed", {"metadata": {"name": "cfg"}})
    apps.create_namespaced_deployment("doomed", deployment("web", replicas=0))
    terminating = core.delete_namespace("doomed")
    assert terminating["status"]["phase"] == "Terminating"  # the Namespace itself, as the API server answers

    def gone() -> bool:
        try:
            core.read_namespace("doomed")
        except ApiException as error:
            return error.status == 404
        return False

    wait_for(gone, what="namespace removal")
    assert not [c for c in core.list_config_map_for_all_namespaces().items if c.metadata.namespace == "doomed"]
    assert not [d for d in apps.list_deployment_for_all_namespaces().items if d.metadata.namespace == "doomed"]


# --- patches -----------------------------------------------------------------------------------------


def test_merge_strategic_and_json_patches(api: client.ApiClient, ns: str) -> None:
    apps = client.AppsV1Api(api)
    apps.create_namespaced_deployment(ns, deployment("web"))
    strategic = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": "nginx:1.27",
                            "env": [{"name": "EXTRA", "value": "b"}],
                            "ports": [{"containerPort": 9090}],
                            "volumeMounts": [{"mountPath": "/tmp", "readOnly": True}],
                        }
                    ],
                    "volumes": [{"name": "cache", "emptyDir": {}}],
                }
            }
        }
    }
    patched = apps.patch_namespaced_deployment("web", ns, strategic)  # the client's default: strategic merge
    web, sidecar = patched.spec.template.spec.containers
    assert (web.name, web.image, sidecar.name) == ("web", "nginx:1.27", "sidecar")  # merged by name, not replaced
    assert [e.name for e in web.env] == ["MODE", "EXTRA"]
    assert [p.container_port for p in web.ports] == [8080, 9090]
    assert [(m.mount_path, m.read_only) for m in web.volume_mounts] == [("/tmp", True)]
    assert [v.name for v in patched.spec.template.spec.volumes] == ["tmp", "cache"]

    removal = {"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}}}
    assert [c.name for c in apps.patch_namespaced_deployment("web", ns, removal).spec.template.spec.containers] == [
        "web"
    ]

    merge = apps.patch_namespaced_deployment(
        "web", ns, {"metadata": {"labels": {"team": "mmrv"}}, "spec": {"template": {"spec": {"containers": [
            {"name": "only", "image": "busybox:1"}]}}}}, _content_type="application/merge-patch+json",
    )  # fmt: skip
    assert merge.metadata.labels == {"app": "web", "team": "mmrv"}
    assert [c.name for c in merge.spec.template.spec.containers] == ["only"]  # merge patch replaces lists

    ops = [
        {"op": "test", "path": "/spec/replicas", "value": 1},
        {"op": "replace", "path": "/spec/replicas", "value": 2},
        {"op": "add", "path": "/metadata/annotations", "value": {"note": "json-patch"}},
    ]
    jsonpatched = apps.patch_namespaced_deployment("web", ns, ops)
    assert jsonpatched.spec.replicas == 2 and jsonpatched.metadata.annotations["note"] == "json-patch"
    with pytest.raises(ApiException) as failed:
        apps.patch_namespaced_deployment("web", ns, [{"op": "test", "path": "/spec/replicas", "value": 7}])
    assert failed.value.status == 422


def test_custom_resources_refuse_strategic_merge(api: client.ApiClient, ns: str, tmp_path: Path) -> None:
    dyn = dynamic.DynamicClient(api, cache_file=str(tmp_path / "discovery.json"))
    spc = dyn.resources.get(api_version="secrets-store.csi.x-k8s.io/v1", kind="SecretProviderClass")
    body = {
        "apiVersion": "secrets-store.csi.x-k8s.io/v1",
        "kind": "SecretProviderClass",
        "metadata": {"name": "kv", "namespace": ns},
        "spec": {"provider": "azure", "parameters": {"a": "1"}},
    }
    spc.create(body=body, namespace=ns)
    with pytest.raises(ApiException) as refused:
        dyn.patch(spc, body={"spec": {"parameters": {"b": "2"}}}, name="kv", namespace=ns)
    assert refused.value.status == 415
    merged = dyn.patch(spc, body={"spec": {"parameters": {"b": "2"}}}, name="kv", namespace=ns,
                       content_type="application/merge-patch+json")  # fmt: skip
    assert dict(merged.spec.parameters) == {"a": "1", "b": "2"}


# --- server-side apply -------------------------------------------------------------------------------


def test_server_side_apply_managed_fields_conflicts_and_force(api: client.ApiClient, ns: str) -> None:
    apps = client.AppsV1Api(api)
    desired = deployment("api")
    desired["metadata"]["labels"]["extra"] = "1"

    def apply(body: dict[str, Any], manager: str, force: bool = False) -> client.V1Deployment:
        return apps.patch_namespaced_deployment(
            "api", ns, body, field_manager=manager, force=force, _content_type="application/apply-patch+yaml"
        )

    desired["spec"]["replicas"] = 0  # no pods: the controller settles at once, so resourceVersions stay still
    created = apply(desired, DEPLOYMENT_MANAGER)
    (entry,) = [m for m in created.metadata.managed_fields if m.manager == DEPLOYMENT_MANAGER]
    assert entry.operation == "Apply" and entry.api_version == "apps/v1" and entry.fields_type == "FieldsV1"
    containers = entry.fields_v1["f:spec"]["f:template"]["f:spec"]["f:containers"]
    assert containers['k:{"name":"web"}']["f:image"] == {} and "." in containers['k:{"name":"web"}']
    assert 'k:{"containerPort":8080,"protocol":"TCP"}' in containers['k:{"name":"web"}']["f:ports"]
    assert "f:progressDeadlineSeconds" not in entry.fields_v1["f:spec"]  # defaulted fields are not the applier's

    settled = wait_for(
        lambda: (
            (d := apps.read_namespaced_deployment("api", ns)).status
            and d.status.observed_generation == 1
            and (d.metadata.annotations or {}).get("deployment.kubernetes.io/revision") == "1"
            and d.status.conditions
            and d
        ),
        what="the controller to observe the deployment",
    )
    time.sleep(0.2)
    settled = apps.read_namespaced_deployment("api", ns)
    again = apply(desired, DEPLOYMENT_MANAGER)
    assert again.metadata.resource_version == settled.metadata.resource_version  # re-applying changes nothing

    other = deployment("api", image="nginx:9.9")
    other["spec"] = {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:9.9"}]}},
                     "selector": desired["spec"]["selector"]}  # fmt: skip
    other["spec"]["template"]["metadata"] = {"labels": {"app": "api"}}
    with pytest.raises(ApiException) as conflict:
        apply(other, "ops-team")
    body = status_of(conflict.value)
    assert conflict.value.status == 409 and body["reason"] == "Conflict"
    assert body["message"] == (
        'Apply failed with 1 conflict: conflict with "mmrv-migrate": .spec.template.spec.containers[name="web"].image'
    )
    assert body["details"]["causes"] == [{"reason": "FieldManagerConflict", "message": 'conflict with "mmrv-migrate"',
                                          "field": '.spec.template.spec.containers[name="web"].image'}]  # fmt: skip

    forced = apply(other, "ops-team", force=True)
    assert forced.spec.template.spec.containers[0].image == "nginx:9.9"
    assert [c.name for c in forced.spec.template.spec.containers] == ["web", "sidecar"]  # ops only owns its fields
    owners = {m.manager: m.fields_v1 for m in forced.metadata.managed_fields}
    web_by_tool = owners[DEPLOYMENT_MANAGER]["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"web"}']
    assert "f:image" not in web_by_tool  # force took the field over
    assert "f:image" in owners["ops-team"]["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"web"}']

    # a field the applier stops applying is removed, unless someone else owns it
    desired["metadata"]["labels"].pop("extra")
    desired["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:9.9"
    trimmed = apply(desired, DEPLOYMENT_MANAGER)
    assert "extra" not in trimmed.metadata.labels

    # an Update (plain patch) takes over the fields it changes
    apps.patch_namespaced_deployment("api", ns, {"spec": {"replicas": 4}}, field_manager="kubectl-scale")
    with pytest.raises(ApiException) as update_conflict:
        apply(desired, DEPLOYMENT_MANAGER)
    assert 'conflict with "kubectl-scale" using apps/v1: .spec.replicas' in status_of(update_conflict.value)["message"]


def test_server_side_apply_creates_and_requires_a_field_manager(api: client.ApiClient, ns: str) -> None:
    core = client.CoreV1Api(api)
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": {"a": "1"}}
    created = core.patch_namespaced_config_map("applied", ns, body, field_manager=DEPLOYMENT_MANAGER,
                                               _content_type="application/apply-patch+yaml")  # fmt: skip
    assert created.data == {"a": "1"} and created.metadata.uid
    with pytest.raises(ApiException) as missing:
        core.patch_namespaced_config_map("applied", ns, body, _content_type="application/apply-patch+yaml")
    assert missing.value.status == 422 and "fieldManager: Required value" in status_of(missing.value)["message"]
    dry = core.patch_namespaced_config_map("applied", ns, {**body, "data": {"a": "2"}}, dry_run="All",
                                           field_manager=DEPLOYMENT_MANAGER,
                                           _content_type="application/apply-patch+yaml")  # fmt: skip
    assert dry.data == {"a": "2"} and core.read_namespaced_config_map("applied", ns).data == {"a": "1"}


# --- watch, restart, TLS, kubectl --------------------------------------------------------------------


def test_watch_streams_changes(api: client.ApiClient, ns: str) -> None:
    core = client.CoreV1Api(api)
    start = core.list_namespaced_config_map(ns).metadata.resource_version

    def writer() -> None:
        time.sleep(0.3)
        core.create_namespaced_config_map(ns, {"metadata": {"name": "watched"}})
        core.patch_namespaced_config_map("watched", ns, {"data": {"k": "v"}})
        core.delete_namespaced_config_map("watched", ns)

    thread = threading.Thread(target=writer)
    thread.start()
    seen = []
    for event in watch.Watch().stream(core.list_namespaced_config_map, ns, resource_version=start, timeout_seconds=5):
        seen.append((event["type"], event["object"].metadata.name))
        if event["type"] == "DELETED":
            break
    thread.join()
    assert seen == [("ADDED", "watched"), ("MODIFIED", "watched"), ("DELETED", "watched")]


def test_state_survives_a_restart(tmp_path: Path) -> None:
    emulator = EmulatorProcess(tmp_path, clusters=["staging"])
    with emulator, api_client(emulator.url("staging")) as api:
        core = client.CoreV1Api(api)
        core.create_namespace({"metadata": {"name": "kept"}})
        before = core.create_namespaced_config_map("kept", {"metadata": {"name": "cfg"}, "data": {"a": "1"}})
    state = json.loads(emulator.state.read_text())
    assert state["version"] == 1 and "staging" in state["clusters"]
    with emulator, api_client(emulator.url("staging")) as api:
        core = client.CoreV1Api(api)
        after = core.read_namespaced_config_map("cfg", "kept")
        assert (after.metadata.uid, after.metadata.resource_version) == (
            before.metadata.uid, before.metadata.resource_version)  # fmt: skip
        newer = core.create_namespaced_config_map("kept", {"metadata": {"name": "next"}})
        assert int(newer.metadata.resource_version) > int(before.metadata.resource_version)


@pytest.fixture(scope="module")
def tls_kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EmulatorProcess, trustme.CA]]:
    """The emulator serving HTTPS from a trustme CA, as the sandbox's TLS front presents it."""
    workdir = tmp_path_factory.mktemp("kube-tls")
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    cert, key, ca_file = workdir / "server.pem", workdir / "server-key.pem", workdir / "ca.pem"
    leaf.private_key_pem.write_to_path(str(key))
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    ca.cert_pem.write_to_path(str(ca_file))
    emulator = EmulatorProcess(workdir, clusters=["staging", "production"], tls=(cert, key))
    emulator.start(verify=str(ca_file))
    try:
        yield emulator, ca
    finally:
        emulator.stop()


def test_tls_with_a_kubeconfig_carrying_the_ca(tls_kube: tuple[EmulatorProcess, trustme.CA]) -> None:
    emulator, ca = tls_kube
    server = emulator.url("production")
    assert server.startswith("https://")
    with api_client(server, ca_pem=ca.cert_pem.bytes()) as api:
        names = [n.metadata.name for n in client.CoreV1Api(api).list_namespace().items]
    assert "default" in names
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server}/version")  # the system trust store does not know the sandbox CA


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_kubectl_works_against_it(tls_kube: tuple[EmulatorProcess, trustme.CA], tmp_path: Path) -> None:
    emulator, ca = tls_kube  # kubectl sends credentials over HTTPS only
    kubeconfig = tmp_path / "kubeconfig"
    server = emulator.url("staging")
    kubeconfig.write_text(
        yaml.safe_dump(build_kubeconfig("staging", server, ca_pem=ca.cert_pem.bytes(), token=make_token()))
    )
    manifest = tmp_path / "cm.yaml"
    manifest.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap",
                                        "metadata": {"name": "from-kubectl", "namespace": "default"},
                                        "data": {"a": "1"}}))  # fmt: skip

    def kubectl(*args: str) -> str:
        result = subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), *args], capture_output=True,
                                text=True, timeout=60, check=False)  # fmt: skip
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert "namespace/kube-system" in kubectl("get", "namespaces", "-o", "name")
    # no /openapi documents are served: kubectl's client-side schema validation has to be off
    assert "serverside-applied" in kubectl("apply", "--server-side", "--validate=false", "-f", str(manifest))
    assert json.loads(kubectl("get", "configmap", "from-kubectl", "-o", "json"))["data"] == {"a": "1"}


def test_every_kind_round_trips_through_the_typed_client(api: client.ApiClient, ns: str) -> None:
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    networking, autoscaling, policy = client.NetworkingV1Api(api), client.AutoscalingV2Api(api), client.PolicyV1Api(api)
    apps.create_namespaced_deployment(ns, deployment("web", replicas=1))
    core.create_namespaced_service_account(ns, {"metadata": {"name": "backend"}})
    secret = core.create_namespaced_secret(ns, {"metadata": {"name": "creds"}, "stringData": {"user": "mmrv"}})
    assert secret.type == "Opaque" and secret.data == {"user": "bW1ydg=="} and not secret.string_data
    service = core.create_namespaced_service(ns, {"metadata": {"name": "web"}, "spec": {
        "selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}})  # fmt: skip
    assert service.spec.type == "ClusterIP" and service.spec.cluster_ip and service.spec.ports[0].protocol == "TCP"
    networking.create_namespaced_network_policy(ns, {"metadata": {"name": "web"}, "spec": {
        "podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{}]}})  # fmt: skip
    assert networking.read_namespaced_network_policy("web", ns).spec.policy_types == ["Ingress"]
    autoscaling.create_namespaced_horizontal_pod_autoscaler(ns, {"metadata": {"name": "web"}, "spec": {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
        "minReplicas": 2, "maxReplicas": 4,
        "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                                                      "target": {"type": "Utilization", "averageUtilization": 70}}}],
    }})  # fmt: skip
    policy.create_namespaced_pod_disruption_budget(ns, {"metadata": {"name": "web"}, "spec": {
        "minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}})  # fmt: skip
    wait_for(lambda: apps.read_namespaced_deployment("web", ns).spec.replicas == 2, what="the HPA's minimum")
    hpa = wait_for(lambda: (h := autoscaling.read_namespaced_horizontal_pod_autoscaler("web", ns)).status and h)
    assert hpa.status.desired_replicas == 2
    pdb = wait_for(lambda: (p := policy.read_namespaced_pod_disruption_budget("web", ns)).status and p)
    assert pdb.status.desired_healthy == 1 and pdb.status.conditions[0].type == "DisruptionAllowed"
    for listing in (
        core.list_namespaced_pod(ns), core.list_namespaced_event(ns), apps.list_namespaced_replica_set(ns),
        core.list_namespaced_service_account(ns), core.list_node(),
        client.ApiextensionsV1Api(api).list_custom_resource_definition(),
    ):  # fmt: skip
        assert listing.items is not None  # every object deserializes into the client's models


def test_clusters_can_be_added_at_run_time(kube: EmulatorProcess) -> None:
    identity = {"clientId": "c-1", "objectId": "o-1"}
    added = httpx.put(f"{kube.base_url}/_sandbox/clusters/qa", json={"kubeletIdentity": identity})
    assert added.status_code == 200 and added.json()["settings"]["kubeletIdentity"] == identity
    with api_client(kube.url("qa")) as qa:
        assert "default" in {n.metadata.name for n in client.CoreV1Api(qa).list_namespace().items}
    listed = httpx.get(f"{kube.base_url}/_sandbox/clusters").json()["clusters"]
    assert {"staging", "production", "qa"} <= {c["name"] for c in listed}
    assert httpx.delete(f"{kube.base_url}/_sandbox/clusters/qa").json() == {"deleted": True}
