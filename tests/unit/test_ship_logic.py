"""The ship phase's decisions (`migration.ship`), pure: plans, rollout judgement, rollback, addresses.

The Kubernetes objects are small dicts shaped as the API server (and the sandbox's
emulator, `sandbox/kube/controller.py` and `kubelet.py`) writes them: a Deployment with
its `deployment.kubernetes.io/revision` annotation and status counts, ReplicaSets owned
by it through `ownerReferences` and labelled `pod-template-hash`, pods carrying that
label with `containerStatuses`, events pointing at pods through `involvedObject`.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from migration.plan import FieldChange, Plan
from migration.ship import (
    MOUNT_FAILURES_FATAL,
    OWNER,
    OWNER_LABEL,
    REVISION,
    TEMPLATE_HASH,
    comparable,
    current_replica_set,
    describe_event,
    field_changes,
    ingress_url,
    is_ours,
    key_of,
    plan_manifests,
    render_diff,
    rollback_template,
    rollout_status,
    running_digests,
    service_url,
)

NS = "mmrv"
NAME = "mmrv-backend"
DEPLOYMENT_UID = "0b6a3c1e-0000-4000-8000-000000000001"
OWNED = {OWNER_LABEL: OWNER, "app.kubernetes.io/name": NAME}

# --- builders ------------------------------------------------------------------------------------


def pod_template(image: str = "mmrvacr.azurecr.io/mmrv-backend@sha256:" + "a" * 64, **env: str) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app.kubernetes.io/name": NAME}},
        "spec": {
            "serviceAccountName": NAME,
            "containers": [
                {
                    "name": "app",
                    "image": image,
                    "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                    "env": [{"name": k, "value": v} for k, v in (env or {"LOG_LEVEL": "info"}).items()],
                }
            ],
        },
    }


def deployment_manifest(**env: str) -> dict[str, Any]:
    """What the translation writes (no server defaults, no status)."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": NAME, "namespace": NS, "labels": dict(OWNED)},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app.kubernetes.io/name": NAME}},
            "template": pod_template(**env),
        },
    }


def as_served(manifest: dict[str, Any], **meta: Any) -> dict[str, Any]:
    """The manifest as the API server answers it: server-owned metadata, defaults, status."""
    obj = copy.deepcopy(manifest)
    obj["metadata"].update(
        {
            "uid": "11111111-2222-3333-4444-555555555555",
            "resourceVersion": "4711",
            "generation": 3,
            "creationTimestamp": "2024-05-01T10:00:00Z",
            "managedFields": [{"manager": "mmrv-migrate", "operation": "Apply", "fieldsV1": {}}],
            "annotations": {REVISION: "3", **(obj["metadata"].get("annotations") or {})},
            **meta,
        }
    )
    if obj["kind"] == "Deployment":
        obj["spec"].setdefault("revisionHistoryLimit", 10)
        obj["spec"].setdefault("progressDeadlineSeconds", 600)
        obj["spec"].setdefault("strategy", {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}})
        obj["status"] = {"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}
    return obj


def namespace_manifest(labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS, "labels": labels or dict(OWNED)}}


def service_account_manifest() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": NAME, "namespace": NS, "labels": OWNED}}


def service_manifest() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": NAME, "namespace": NS, "labels": dict(OWNED)},
        "spec": {"type": "LoadBalancer", "selector": {"app.kubernetes.io/name": NAME}, "ports": [{"port": 80}]},
    }


def deployment(
    *,
    revision: int = 2,
    generation: int = 2,
    observed_generation: int = 2,
    replicas: int = 2,
    updated: int = 2,
    ready: int = 2,
    available: int = 2,
    total: int = 2,
    conditions: list[dict[str, Any]] | None = None,
    uid: str = DEPLOYMENT_UID,
    name: str = NAME,
) -> dict[str, Any]:
    status: dict[str, Any] = {
        "observedGeneration": observed_generation,
        "replicas": total,
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": available,
        "conditions": conditions
        if conditions is not None
        else [
            {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
        ],
    }
    for key in ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas"):
        if status[key] == 0:
            status.pop(key)  # omitempty, as the API server serialises them
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": NS,
            "uid": uid,
            "generation": generation,
            "labels": dict(OWNED),
            "annotations": {REVISION: str(revision)},
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            "template": pod_template(),
        },
        "status": status,
    }


def replica_set(
    pod_hash: str, revision: int, *, owner_uid: str = DEPLOYMENT_UID, image: str = "", replicas: int = 2
) -> dict[str, Any]:
    template = pod_template(image) if image else pod_template()
    template["metadata"]["labels"][TEMPLATE_HASH] = pod_hash
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": f"{NAME}-{pod_hash}",
            "namespace": NS,
            "uid": f"rs-{pod_hash}",
            "labels": dict(template["metadata"]["labels"]),
            "annotations": {REVISION: str(revision)},
            "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "Deployment", "name": NAME, "uid": owner_uid, "controller": True}
            ],
        },
        "spec": {"replicas": replicas, "selector": {"matchLabels": {TEMPLATE_HASH: pod_hash}}, "template": template},
    }


OLD_HASH, NEW_HASH = "7b9c5d4f6d", "5f8d9c7b2x"


def replica_sets() -> list[dict[str, Any]]:
    return [replica_set(OLD_HASH, 1), replica_set(NEW_HASH, 2)]


def pod(
    pod_hash: str,
    suffix: str,
    *,
    waiting: str | None = None,
    message: str = "",
    init_waiting: str | None = None,
    image_id: str = "",
) -> dict[str, Any]:
    if waiting:
        state: dict[str, Any] = {"waiting": {"reason": waiting, **({"message": message} if message else {})}}
    else:
        state = {"running": {"startedAt": "2024-05-01T10:00:05Z"}}
    status: dict[str, Any] = {
        "phase": "Pending" if waiting else "Running",
        "containerStatuses": [
            {"name": "app", "state": state, "ready": not waiting, "restartCount": 0, "imageID": image_id}
        ],
    }
    if init_waiting:
        status["initContainerStatuses"] = [
            {"name": "migrate-db", "state": {"waiting": {"reason": init_waiting}}, "ready": False}
        ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{NAME}-{pod_hash}-{suffix}",
            "namespace": NS,
            "labels": {"app.kubernetes.io/name": NAME, TEMPLATE_HASH: pod_hash},
            "ownerReferences": [{"kind": "ReplicaSet", "name": f"{NAME}-{pod_hash}", "uid": f"rs-{pod_hash}"}],
        },
        "status": status,
    }


def event(
    pod_name: str, reason: str, *, count: int = 1, kind: str = "Warning", message: str = "", at: str = "10:00:10"
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{pod_name}.17c3a0d1e2f3a4b5", "namespace": NS},
        "involvedObject": {"kind": "Pod", "namespace": NS, "name": pod_name, "apiVersion": "v1"},
        "reason": reason,
        "message": message or reason,
        "type": kind,
        "count": count,
        "firstTimestamp": f"2024-05-01T{at}Z",
        "lastTimestamp": f"2024-05-01T{at}Z",
        "source": {"component": "kubelet"},
    }


# --- key_of / is_ours / comparable ---------------------------------------------------------------


def test_key_of_names_namespaced_and_cluster_scoped_objects() -> None:
    assert key_of(deployment_manifest()) == "Deployment mmrv/mmrv-backend"
    assert key_of(namespace_manifest()) == "Namespace mmrv"


@pytest.mark.parametrize(
    ("obj", "ours"),
    [
        ({"metadata": {"name": "x", "labels": {OWNER_LABEL: OWNER}}}, True),
        ({"metadata": {"name": "x", "labels": {OWNER_LABEL: "Helm"}}}, False),
        ({"metadata": {"name": "x", "labels": {"app.kubernetes.io/name": "x"}}}, False),
        ({"metadata": {"name": "x", "annotations": {OWNER_LABEL: OWNER}}}, False),  # a label, not an annotation
        ({"metadata": {"name": "x", "labels": None}}, False),
        ({"metadata": {"name": "x"}}, False),
        ({}, False),
    ],
)
def test_is_ours_only_with_the_ownership_label(obj: dict[str, Any], ours: bool) -> None:
    assert is_ours(obj) is ours


def test_comparable_drops_what_the_api_server_writes() -> None:
    served = as_served(deployment_manifest())
    served["metadata"]["annotations"].update(
        {"deployment.kubernetes.io/revision-history": "1,2", "sandbox.mmrv/url": "http://127.0.0.1:30001"}
    )
    served["metadata"]["deletionGracePeriodSeconds"] = 30
    served["metadata"]["selfLink"] = "/apis/apps/v1/namespaces/mmrv/deployments/mmrv-backend"
    before = copy.deepcopy(served)

    clean = comparable(served)

    assert "status" not in clean
    assert set(clean["metadata"]) == {"name", "namespace", "labels"}  # no annotations left: key dropped
    assert clean["spec"] == served["spec"]
    assert served == before  # the input is not changed


def test_comparable_keeps_the_users_annotations() -> None:
    served = as_served(deployment_manifest())
    served["metadata"]["annotations"]["team"] = "payments"
    assert comparable(served)["metadata"]["annotations"] == {"team": "payments"}


# --- field_changes ---------------------------------------------------------------------------------


def test_an_env_var_change_is_one_field_under_its_container_and_name() -> None:
    observed = as_served(deployment_manifest(LOG_LEVEL="info", REGION="eu-west-1"))
    desired = as_served(deployment_manifest(LOG_LEVEL="debug", REGION="eu-west-1"))
    assert field_changes(observed, desired) == (
        FieldChange(field="spec.template.spec.containers[app].env[LOG_LEVEL].value", observed="info", desired="debug"),
    )


def test_an_added_and_a_removed_item_show_as_absent_on_one_side() -> None:
    observed = deployment_manifest(LOG_LEVEL="info", OLD="1")
    desired = deployment_manifest(LOG_LEVEL="info", NEW="2")
    changes = {c.field: (c.observed, c.desired) for c in field_changes(observed, desired)}
    prefix = "spec.template.spec.containers[app].env"
    assert changes == {
        f"{prefix}[NEW].name": (None, "NEW"),
        f"{prefix}[NEW].value": (None, "2"),
        f"{prefix}[OLD].name": ("OLD", None),
        f"{prefix}[OLD].value": ("1", None),
    }


def test_lists_without_names_compare_whole_and_changes_are_sorted_by_path() -> None:
    observed = deployment_manifest()
    desired = copy.deepcopy(observed)
    desired["spec"]["replicas"] = 3
    desired["spec"]["template"]["spec"]["containers"][0]["args"] = ["--workers", "4"]
    desired["metadata"]["labels"]["tier"] = "api"
    changes = field_changes(observed, desired)
    assert [c.field for c in changes] == [
        "metadata.labels.tier",
        "spec.replicas",
        "spec.template.spec.containers[app].args",
    ]
    assert changes[2] == FieldChange(
        field="spec.template.spec.containers[app].args", observed=None, desired=["--workers", "4"]
    )


def test_server_owned_fields_are_no_change() -> None:
    manifest = deployment_manifest()
    served = as_served(manifest)
    again = as_served(manifest, resourceVersion="9999", generation=7)
    again["status"] = {"observedGeneration": 7}
    assert field_changes(served, again) == ()


# --- plan_manifests ----------------------------------------------------------------------------------


def test_plan_creates_updates_blocks_and_leaves_alone_in_manifest_order() -> None:
    ns, sa, dep, svc = namespace_manifest(), service_account_manifest(), deployment_manifest(), service_manifest()
    changed = deployment_manifest()
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = "mmrvacr.azurecr.io/mmrv-backend@sha256:" + "b" * 64
    foreign_service = as_served(service_manifest())
    foreign_service["metadata"]["labels"] = {"app.kubernetes.io/name": NAME}  # someone else's Service
    observed: dict[str, dict[str, Any] | None] = {
        key_of(ns): as_served(ns),
        key_of(sa): None,
        key_of(dep): as_served(dep),
        key_of(svc): foreign_service,
    }
    dry_run = {key_of(ns): as_served(ns), key_of(dep): as_served(changed)}

    plan = plan_manifests("staging", [ns, sa, changed, svc], observed, dry_run)

    assert (plan.phase, plan.environment) == ("ship", "staging")
    assert [(a.kind, a.resource) for a in plan.actions] == [
        ("noop", "Namespace mmrv"),
        ("create", "ServiceAccount mmrv/mmrv-backend"),
        ("update", "Deployment mmrv/mmrv-backend"),
        ("blocked", "Service mmrv/mmrv-backend"),
    ]
    noop, create, update, blocked = plan.actions
    assert [a.depends_on for a in (noop, create, update)] == [
        (),
        ("Namespace mmrv",),
        ("ServiceAccount mmrv/mmrv-backend",),
    ]
    assert create.desired == sa
    assert create.resource_type == "ServiceAccount"
    assert update.changes == (
        FieldChange(
            field="spec.template.spec.containers[app].image",
            observed="mmrvacr.azurecr.io/mmrv-backend@sha256:" + "a" * 64,
            desired="mmrvacr.azurecr.io/mmrv-backend@sha256:" + "b" * 64,
        ),
    )
    assert update.desired == changed
    assert update.reason == "1 field(s) differ"
    assert f"{OWNER_LABEL}={OWNER}" in blocked.reason
    assert blocked.desired == {}  # nothing to apply
    assert len(plan.blocked) == 1
    assert not plan.is_empty


def test_update_compares_with_the_dry_run_not_the_bare_manifest() -> None:
    """The cluster fills defaults (strategy, revisionHistoryLimit...): compared with the manifest they'd all differ."""
    manifest = deployment_manifest()
    observed = {key_of(manifest): as_served(manifest)}
    with_dry_run = plan_manifests("staging", [manifest], observed, {key_of(manifest): as_served(manifest)})
    assert [a.kind for a in with_dry_run.actions] == ["noop"]
    assert with_dry_run.is_empty
    without = plan_manifests("staging", [manifest], observed, {})  # falls back to the manifest itself
    assert without.actions[0].kind == "update"
    assert "spec.revisionHistoryLimit" in {c.field for c in without.actions[0].changes}


def test_an_object_that_exists_unlabelled_is_blocked_even_when_equal() -> None:
    manifest = namespace_manifest()
    foreign = as_served(namespace_manifest(labels={"kubernetes.io/metadata.name": NS}))
    plan = plan_manifests("production", [manifest], {key_of(manifest): foreign}, {key_of(manifest): foreign})
    assert [a.kind for a in plan.actions] == ["blocked"]


def test_plan_takes_the_phase_name() -> None:
    manifest = namespace_manifest()
    plan = plan_manifests("staging", [manifest], {}, {}, phase="ship frontend")
    assert plan.phase == "ship frontend"
    assert [a.kind for a in plan.actions] == ["create"]


# --- render_diff ------------------------------------------------------------------------------------------


def test_render_diff_shows_each_change_and_skips_noops() -> None:
    ns, sa, dep = namespace_manifest(), service_account_manifest(), deployment_manifest(LOG_LEVEL="debug")
    observed: dict[str, dict[str, Any] | None] = {
        key_of(ns): as_served(ns),
        key_of(dep): as_served(deployment_manifest(LOG_LEVEL="info")),
    }
    plan = plan_manifests("staging", [ns, sa, dep], observed, {key_of(ns): as_served(ns), key_of(dep): as_served(dep)})
    assert render_diff(plan).splitlines() == [
        "+ ServiceAccount mmrv/mmrv-backend  (not in the cluster)",
        "~ Deployment mmrv/mmrv-backend  (1 field(s) differ)",
        '    spec.template.spec.containers[app].env[LOG_LEVEL].value: "info" -> "debug"',
    ]


def test_render_diff_of_nothing_to_do() -> None:
    manifest = namespace_manifest()
    plan = plan_manifests("staging", [manifest], {key_of(manifest): as_served(manifest)}, {})
    assert render_diff(plan) == "(no change)"
    assert render_diff(Plan(phase="ship", environment="staging")) == "(no change)"


def test_render_diff_marks_blocked_absent_values_long_values_and_the_limit() -> None:
    observed = deployment_manifest()
    desired = copy.deepcopy(observed)
    env = desired["spec"]["template"]["spec"]["containers"][0]["env"]
    env += [{"name": f"VAR_{i:02}", "value": str(i)} for i in range(5)]
    env.append({"name": "LONG", "value": "x" * 300})
    foreign = as_served(namespace_manifest(labels={"team": "platform"}))
    plan = plan_manifests(
        "staging",
        [namespace_manifest(), desired],
        {"Namespace mmrv": foreign, key_of(desired): observed},
        {key_of(desired): desired},
    )
    lines = render_diff(plan, limit=3).splitlines()
    assert lines[0].startswith("! Namespace mmrv  (exists without the label app.kubernetes.io/managed-by")
    assert lines[1] == "~ Deployment mmrv/mmrv-backend  (12 field(s) differ)"
    long_line = lines[2]  # [LONG] sorts first
    assert long_line.startswith("    spec.template.spec.containers[app].env[LONG].name: (absent) -> ")
    assert lines[3].endswith(' -> "' + "x" * 96 + "...")
    assert len(lines[3].split(" -> ")[1]) == 100
    assert lines[5] == "    ... 9 more"
    assert len(lines) == 6


# --- rollout_status -----------------------------------------------------------------------------------------


def new_pods(*waiting: str | None) -> list[dict[str, Any]]:
    return [pod(NEW_HASH, f"p{i}", waiting=w) for i, w in enumerate(waiting)]


def test_a_finished_rollout_is_complete() -> None:
    status = rollout_status(deployment(), replica_sets(), new_pods(None, None))
    assert status.state == "complete"
    assert status.done
    assert (status.revision, status.desired, status.updated, status.ready, status.available) == (2, 2, 2, 2, 2)
    assert status.reason == ""
    assert status.line() == "revision 2: 2/2 updated, 2 available"


def test_fewer_updated_than_desired_is_progressing() -> None:
    status = rollout_status(deployment(updated=1, available=1, total=2), replica_sets(), new_pods(None))
    assert status.state == "progressing"
    assert not status.done
    assert "new revision's pods" in status.reason


def test_old_pods_still_around_is_progressing() -> None:
    """All new pods are up but the old ReplicaSet still has a pod (status.replicas 3 > updatedReplicas 2)."""
    status = rollout_status(
        deployment(total=3, available=3, ready=3), replica_sets(), [*new_pods(None, None), pod(OLD_HASH, "o1")]
    )
    assert status.state == "progressing"
    assert "old pods" in status.reason


def test_new_pods_not_yet_available_is_progressing() -> None:
    status = rollout_status(deployment(available=1, ready=1), replica_sets(), new_pods(None, None))
    assert status.state == "progressing"


def test_a_spec_change_the_controller_has_not_seen_is_progressing() -> None:
    """observedGeneration behind generation: the counts describe the previous spec."""
    status = rollout_status(deployment(generation=3, observed_generation=2), replica_sets(), new_pods(None, None))
    assert status.state == "progressing"


def test_progress_deadline_exceeded_fails_with_the_controllers_message() -> None:
    conditions = [
        {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
        {
            "type": "Progressing",
            "status": "False",
            "reason": "ProgressDeadlineExceeded",
            "message": f'ReplicaSet "{NAME}-{NEW_HASH}" has timed out progressing.',
        },
    ]
    status = rollout_status(deployment(updated=1, available=1, conditions=conditions), replica_sets(), new_pods(None))
    assert status.state == "failed"
    assert status.done
    assert "deadline" in status.reason
    assert f'ReplicaSet "{NAME}-{NEW_HASH}" has timed out progressing.' in status.reason


@pytest.mark.parametrize(
    ("reason", "explanation"),
    [
        ("ImagePullBackOff", "the image cannot be pulled"),
        ("CrashLoopBackOff", "the container keeps crashing"),
        ("CreateContainerConfigError", "the container's configuration refers to something missing"),
    ],
)
def test_a_new_pod_stuck_for_good_fails_the_rollout_at_once(reason: str, explanation: str) -> None:
    pods = [pod(NEW_HASH, "p0"), pod(NEW_HASH, "p1", waiting=reason, message='secret "db" not found')]
    status = rollout_status(deployment(updated=2, available=1, ready=1), replica_sets(), pods)
    assert status.state == "failed"
    assert status.reason == (
        f'{explanation}: pod {NAME}-{NEW_HASH}-p1 container app is {reason} (secret "db" not found)'
    )


@pytest.mark.parametrize("reason", ["ImagePullBackOff", "CrashLoopBackOff", "CreateContainerConfigError"])
def test_old_pods_in_trouble_do_not_fail_the_new_rollout(reason: str) -> None:
    pods = [*new_pods(None, None), pod(OLD_HASH, "o1", waiting=reason)]
    status = rollout_status(deployment(total=3, available=2, ready=2), replica_sets(), pods)
    assert status.state == "progressing"
    assert complete_without_old_pod(reason).state == "complete"


def complete_without_old_pod(reason: str) -> Any:
    """Once the old ReplicaSet is scaled away the same rollout is complete: the old pod's state never mattered."""
    return rollout_status(deployment(), replica_sets(), [*new_pods(None, None), pod(OLD_HASH, "o1", waiting=reason)])


@pytest.mark.parametrize("reason", ["ErrImagePull", "ContainerCreating", "PodInitializing"])
def test_waiting_states_that_can_still_clear_keep_it_progressing(reason: str) -> None:
    status = rollout_status(deployment(updated=2, available=1, ready=1), replica_sets(), new_pods(None, reason))
    assert status.state == "progressing"


def test_an_init_container_stuck_for_good_fails_the_rollout() -> None:
    pods = [pod(NEW_HASH, "p0"), pod(NEW_HASH, "p1", waiting="PodInitializing", init_waiting="ImagePullBackOff")]
    status = rollout_status(deployment(updated=2, available=1, ready=1), replica_sets(), pods)
    assert status.state == "failed"
    assert "container migrate-db is ImagePullBackOff" in status.reason


MOUNT = (
    'MountVolume.SetUp failed for volume "secrets-store" : rpc error: failed to get keyvault object: '
    'failed to get objectType:secret, objectName:db-password: StatusCode=403 Code="Forbidden"'
)


def mounting(name: str = "p1") -> dict[str, Any]:
    return pod(NEW_HASH, name, waiting="ContainerCreating")


def test_failed_mounts_below_the_threshold_keep_it_progressing() -> None:
    p1 = mounting()
    events = [event(p1["metadata"]["name"], "FailedMount", message=MOUNT, at=f"10:00:1{i}") for i in range(2)]
    status = rollout_status(deployment(updated=2, available=1), replica_sets(), [pod(NEW_HASH, "p0"), p1], events)
    assert status.state == "progressing"
    assert len(status.events) == 2


def test_three_failed_mounts_of_one_new_pod_fail_the_rollout() -> None:
    p1 = mounting()
    events = [
        event(p1["metadata"]["name"], "FailedMount", message=f"attempt {i}", at=f"10:00:1{i}")
        for i in range(MOUNT_FAILURES_FATAL)
    ]
    status = rollout_status(deployment(updated=2, available=1), replica_sets(), [pod(NEW_HASH, "p0"), p1], events)
    assert status.state == "failed"
    assert status.reason == f"a volume cannot be mounted: pod {p1['metadata']['name']}: attempt 2"  # the newest


def test_the_event_count_of_a_repeated_failed_mount_is_honoured() -> None:
    """The kubelet emits one Event and bumps its `count`: count 3 is three failures."""
    p1 = mounting()
    events = [event(p1["metadata"]["name"], "FailedMount", message=MOUNT, count=3)]
    status = rollout_status(deployment(updated=2, available=1), replica_sets(), [pod(NEW_HASH, "p0"), p1], events)
    assert status.state == "failed"
    assert MOUNT in status.reason
    assert status.events == (f"Pod/{p1['metadata']['name']}: FailedMount: {MOUNT} (x3)",)


def test_failed_mounts_count_per_pod_not_across_pods() -> None:
    p1, p2 = mounting("p1"), mounting("p2")
    events = [
        event(p1["metadata"]["name"], "FailedMount", message=MOUNT, count=2),
        event(p2["metadata"]["name"], "FailedMount", message=MOUNT, count=2),
    ]
    status = rollout_status(deployment(updated=2, available=0, ready=0), replica_sets(), [p1, p2], events)
    assert status.state == "progressing"


def test_failed_mounts_of_an_old_pod_do_not_count() -> None:
    old = pod(OLD_HASH, "o1", waiting="ContainerCreating")
    events = [event(old["metadata"]["name"], "FailedMount", message=MOUNT, count=9)]
    status = rollout_status(deployment(total=3), replica_sets(), [*new_pods(None, None), old], events)
    assert status.state == "progressing"
    assert status.events == ()  # old pods' warnings are not the new revision's story


def test_only_the_new_pods_warnings_are_reported_newest_last() -> None:
    p0, p1 = pod(NEW_HASH, "p0"), pod(NEW_HASH, "p1", waiting="ErrImagePull")
    n0, n1 = p0["metadata"]["name"], p1["metadata"]["name"]
    events = [
        event(n1, "Failed", message="Failed to pull image", at="10:00:30"),
        event(n0, "Pulled", kind="Normal", at="10:00:05"),
        event(n1, "BackOff", message="Back-off pulling image", at="10:00:20"),
        event(pod(OLD_HASH, "o1")["metadata"]["name"], "Unhealthy", at="10:00:25"),
    ]
    status = rollout_status(deployment(updated=2, available=1), replica_sets(), [p0, p1], events)
    assert status.events == (
        f"Pod/{n1}: BackOff: Back-off pulling image",
        f"Pod/{n1}: Failed: Failed to pull image",
    )


def test_describe_event_shows_the_count_only_when_repeated() -> None:
    assert describe_event(event("p", "BackOff", message="m")) == "Pod/p: BackOff: m"
    assert describe_event(event("p", "BackOff", message="m", count=4)) == "Pod/p: BackOff: m (x4)"


# --- current_replica_set / rollback_template ------------------------------------------------------------------


def test_current_replica_set_is_the_one_with_the_deployments_revision() -> None:
    sets = [replica_set(OLD_HASH, 3), replica_set(NEW_HASH, 2)]  # after a rollback the old one may be newer
    current = current_replica_set(deployment(revision=2), sets)
    assert current is not None
    assert current["metadata"]["name"] == f"{NAME}-{NEW_HASH}"


def test_current_replica_set_falls_back_to_the_highest_revision() -> None:
    dep = deployment()
    del dep["metadata"]["annotations"][REVISION]
    current = current_replica_set(dep, replica_sets())
    assert current is not None
    assert current["metadata"]["name"] == f"{NAME}-{NEW_HASH}"


def test_current_replica_set_ignores_other_deployments_replica_sets() -> None:
    foreign = replica_set("zzzzzzzzzz", 2, owner_uid="another-deployment")
    assert current_replica_set(deployment(revision=2), [foreign]) is None
    current = current_replica_set(deployment(revision=2), [foreign, replica_set(OLD_HASH, 1)])
    assert current is not None
    assert current["metadata"]["name"] == f"{NAME}-{OLD_HASH}"


def test_rollback_takes_the_previous_revisions_template_without_its_hash() -> None:
    previous_image = "mmrvacr.azurecr.io/mmrv-backend@sha256:" + "1" * 64
    sets = [
        replica_set("aaaaaaaaaa", 1, image="mmrvacr.azurecr.io/mmrv-backend@sha256:" + "0" * 64),
        replica_set(OLD_HASH, 2, image=previous_image),
        replica_set(NEW_HASH, 3),
    ]
    before = copy.deepcopy(sets)

    found = rollback_template(deployment(revision=3), sets)

    assert found is not None
    revision, template = found
    assert revision == 2
    assert template["spec"]["containers"][0]["image"] == previous_image
    assert template["metadata"]["labels"] == {"app.kubernetes.io/name": NAME}  # no pod-template-hash
    assert sets == before  # the ReplicaSet keeps its label


def test_no_rollback_without_an_older_revision() -> None:
    assert rollback_template(deployment(revision=1), [replica_set(NEW_HASH, 1)]) is None
    assert rollback_template(deployment(revision=1), []) is None


def test_rollback_ignores_replica_sets_of_another_deployment() -> None:
    foreign = replica_set("zzzzzzzzzz", 2, owner_uid="another-deployment", image="someone/else:1")
    assert rollback_template(deployment(revision=3), [foreign, replica_set(NEW_HASH, 3)]) is None
    found = rollback_template(deployment(revision=3), [foreign, replica_set(OLD_HASH, 1), replica_set(NEW_HASH, 3)])
    assert found is not None
    assert found[0] == 1


# --- running_digests -------------------------------------------------------------------------------------------


def test_running_digests_of_one_replica_set() -> None:
    digest_new, digest_old = "sha256:" + "c" * 64, "sha256:" + "d" * 64
    pods = [
        pod(NEW_HASH, "p0", image_id=f"mmrvacr.azurecr.io/mmrv-backend@{digest_new}"),
        pod(NEW_HASH, "p1", image_id=f"mmrvacr.azurecr.io/mmrv-backend@{digest_new}"),
        pod(NEW_HASH, "p2", waiting="ContainerCreating", image_id=""),  # not started: no imageID yet
        pod(NEW_HASH, "p3", image_id="sha256:" + "e" * 64),  # an image id, not a repository digest
        pod(OLD_HASH, "o1", image_id=f"mmrvacr.azurecr.io/mmrv-backend@{digest_old}"),
    ]
    assert running_digests(pods, NEW_HASH) == {digest_new}
    assert running_digests(pods, None) == {digest_new, digest_old}
    assert running_digests(pods, "nomatch000") == set()


# --- service_url -----------------------------------------------------------------------------------------------


def service(ingress: list[dict[str, Any]] | None, *ports: int) -> dict[str, Any]:
    svc = service_manifest()
    svc["spec"]["ports"] = [{"name": f"p{p}", "port": p, "targetPort": 8080, "protocol": "TCP"} for p in ports]
    svc["status"] = {"loadBalancer": {"ingress": ingress} if ingress is not None else {}}
    return svc


@pytest.mark.parametrize(
    ("ingress", "ports", "index", "url"),
    [
        # the sandbox: the real port in ingress[0].ports wins over spec.ports
        (
            [{"ip": "127.0.0.1", "ipMode": "VIP", "ports": [{"port": 41873, "protocol": "TCP"}]}],
            (80,),
            0,
            "http://127.0.0.1:41873",
        ),
        # AKS: no ports in status, spec port 80 is omitted
        ([{"ip": "20.61.3.7", "ipMode": "VIP"}], (80,), 0, "http://20.61.3.7"),
        ([{"ip": "20.61.3.7", "ports": []}], (8080,), 0, "http://20.61.3.7:8080"),
        ([{"hostname": "a1b2.elb.example.com"}], (8080,), 0, "http://a1b2.elb.example.com:8080"),
        ([{"ip": "2001:db8::7"}], (8080,), 0, "http://[2001:db8::7]:8080"),
        ([{"ip": "2001:db8::7"}], (80,), 0, "http://[2001:db8::7]"),
        ([{"ip": "20.61.3.7", "ports": [{"port": 80, "protocol": "TCP"}]}], (8080,), 0, "http://20.61.3.7"),
        (
            [{"ip": "127.0.0.1", "ports": [{"port": 41873}, {"port": 41874}]}],
            (80, 443),
            1,
            "http://127.0.0.1:41874",
        ),
        ([{"ip": "127.0.0.1", "ports": [{"port": 41873}]}], (80, 8443), 1, "http://127.0.0.1:8443"),
        ([{"ip": "20.61.3.7"}], (), 0, "http://20.61.3.7"),
        ([], (80,), 0, None),
        ([{"ipMode": "VIP"}], (80,), 0, None),
        (None, (80,), 0, None),
    ],
)
def test_service_url(ingress: list[dict[str, Any]] | None, ports: tuple[int, ...], index: int, url: str | None) -> None:
    assert service_url(service(ingress, *ports), index) == url


def test_service_url_of_a_service_without_status() -> None:
    svc = service_manifest()
    assert service_url(svc) is None


def test_ingress_url_reads_the_ingress_load_balancer() -> None:
    ingress = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": NAME, "namespace": NS},
        "spec": {"rules": [{"host": "api.mmrv.example.com"}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "127.0.0.1", "ports": [{"port": 38001}]}]}},
    }
    assert ingress_url(ingress) == "http://127.0.0.1:38001"
    ingress["status"] = {"loadBalancer": {"ingress": [{"ip": "20.61.3.9"}]}}
    assert ingress_url(ingress) == "http://20.61.3.9"
    ingress["status"] = {}
    assert ingress_url(ingress) is None


def test_the_dns_target_of_an_external_url_is_its_host_without_the_port() -> None:
    from migration.cutover import target_of_url

    assert target_of_url("http://127.0.0.1:31234") == "127.0.0.1"
    assert target_of_url("http://20.50.1.2") == "20.50.1.2"
    assert target_of_url("https://api.example.com:8443/healthz") == "api.example.com"
    assert target_of_url("http://[2001:db8::1]:8080") == "2001:db8::1"


def test_only_unacknowledged_action_items_stop_a_ship() -> None:
    from migration.translate.model import ReportItem, Translation

    items = [
        ReportItem(field="service.loadBalancers[0].targetGroupArn", severity="action", ecs="ALB", outcome="none"),
        ReportItem(field="taskDefinition.taskRoleArn", severity="action", ecs="role", outcome="no AWS access"),
        ReportItem(field="taskDefinition.ulimits", severity="warning", ecs="ulimits", outcome="runtime defaults"),
    ]
    translation = Translation(source="x:1", namespace="mmrv", name="mmrv-backend", manifests=[], report=items)
    assert [i.field for i in translation.unresolved_actions()] == [
        "service.loadBalancers[0].targetGroupArn",
        "taskDefinition.taskRoleArn",
    ]
    acknowledged = ["service.loadBalancers[0].targetGroupArn"]
    assert [i.field for i in translation.unresolved_actions(acknowledged)] == ["taskDefinition.taskRoleArn"]
