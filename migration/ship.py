"""The ship phase's decisions, pure: what changes in the cluster, how a rollout stands, where to roll back.

No SDK, no Prefect, no network: the tasks read the cluster and hand the objects in.

* `plan_manifests`: the desired manifests (in apply order) against what the cluster has
  and what a server-side dry-run apply says each would become: create, update (with the
  changed fields), noop, or blocked (an object of that name exists and is not ours).
* `rollout_status`: from the Deployment, its ReplicaSets, pods and events: progressing,
  complete, or failed with the reason a person acts on (the image cannot be pulled, the
  container crashes, a secret cannot be mounted, the deadline passed).
* `rollback_template`: the pod template of the revision before the current one.
* `service_url`: the external address of a LoadBalancer Service or an Ingress.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from migration.plan import Action, FieldChange, Plan

OWNER_LABEL = "app.kubernetes.io/managed-by"
OWNER = "mmrv-migrate"
REVISION = "deployment.kubernetes.io/revision"
TEMPLATE_HASH = "pod-template-hash"

# Fields the API server owns: never part of what the tool decides.
_VOLATILE_METADATA = (
    "resourceVersion",
    "managedFields",
    "generation",
    "uid",
    "creationTimestamp",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)
_VOLATILE_ANNOTATIONS = (REVISION, "deployment.kubernetes.io/revision-history", "sandbox.mmrv/url")

# A pod waiting for one of these will not get better by waiting: fail the rollout at once.
FATAL_WAITING = {
    "ImagePullBackOff": "the image cannot be pulled",
    "ErrImageNeverPull": "the image cannot be pulled",
    "InvalidImageName": "the image reference is invalid",
    "CrashLoopBackOff": "the container keeps crashing",
    "CreateContainerConfigError": "the container's configuration refers to something missing",
    "CreateContainerError": "the container cannot be created",
}
MOUNT_FAILURES_FATAL = 3  # FailedMount events for one pod before the rollout is failed


def key_of(manifest: Mapping[str, Any]) -> str:
    """`Kind namespace/name` (`Kind name` for cluster-scoped objects): the plan's resource names."""
    meta = manifest.get("metadata") or {}
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{manifest['kind']} {where}{meta['name']}"


def is_ours(obj: Mapping[str, Any]) -> bool:
    return ((obj.get("metadata") or {}).get("labels") or {}).get(OWNER_LABEL) == OWNER


def comparable(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The object without what the API server alone writes (status, resourceVersion, managedFields...)."""
    out = {k: v for k, v in obj.items() if k != "status"}
    meta = dict(out.get("metadata") or {})
    for field in _VOLATILE_METADATA:
        meta.pop(field, None)
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in _VOLATILE_ANNOTATIONS}
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    out["metadata"] = meta
    return out


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, dict) and value:
        for key in sorted(value):
            _flatten(value[key], f"{prefix}.{key}" if prefix else str(key), out)
    elif isinstance(value, list) and value and all(isinstance(v, dict) and "name" in v for v in value):
        for item in value:  # lists keyed by name (containers, env, volumes, ports) diff per item
            _flatten(item, f"{prefix}[{item['name']}]", out)
    else:
        out[prefix] = value


def field_changes(observed: Mapping[str, Any], desired: Mapping[str, Any]) -> tuple[FieldChange, ...]:
    """Every leaf field that differs between two objects (after `comparable`), sorted by path."""
    a: dict[str, Any] = {}
    b: dict[str, Any] = {}
    _flatten(comparable(observed), "", a)
    _flatten(comparable(desired), "", b)
    changes = []
    for path in sorted(set(a) | set(b)):
        if a.get(path, _MISSING) != b.get(path, _MISSING):
            changes.append(FieldChange(field=path, observed=a.get(path), desired=b.get(path)))
    return tuple(changes)


_MISSING = object()


def plan_manifests(
    environment: str,
    manifests: list[dict[str, Any]],
    observed: Mapping[str, dict[str, Any] | None],
    dry_run: Mapping[str, dict[str, Any]],
    *,
    phase: str = "ship",
) -> Plan:
    """Create/update/noop/blocked per manifest, in the manifests' (apply) order.

    `observed[key]` is what the cluster has (None: absent); `dry_run[key]` what a server-side
    dry-run apply returned (the object as it would be, defaults filled in). An object that
    exists without the tool's ownership label is blocked: the tool does not take it over.
    """
    actions: list[Action] = []
    previous: str | None = None
    for manifest in manifests:
        key = key_of(manifest)
        current = observed.get(key)
        depends = (previous,) if previous else ()
        if current is None:
            actions.append(
                Action(
                    kind="create",
                    resource=key,
                    resource_type=manifest["kind"],
                    reason="not in the cluster",
                    depends_on=depends,
                    desired=manifest,
                )
            )
        elif not is_ours(current):
            actions.append(
                Action(
                    kind="blocked",
                    resource=key,
                    resource_type=manifest["kind"],
                    reason=f"exists without the label {OWNER_LABEL}={OWNER}: not the tool's to change",
                )
            )
        else:
            changes = field_changes(current, dry_run.get(key) or manifest)
            actions.append(
                Action(
                    kind="update" if changes else "noop",
                    resource=key,
                    resource_type=manifest["kind"],
                    reason=f"{len(changes)} field(s) differ" if changes else "as desired",
                    changes=changes,
                    depends_on=depends,
                    desired=manifest,
                )
            )
        previous = key
    return Plan(phase=phase, environment=environment, actions=tuple(actions))


def render_diff(plan: Plan, *, limit: int = 40) -> str:
    """The manifest diff as a person reads it: `~ Deployment mmrv/mmrv-backend` then `field: old -> new`."""
    lines: list[str] = []
    for action in plan.actions:
        if action.kind == "noop":
            continue
        symbol = {"create": "+", "update": "~", "blocked": "!", "delete": "-"}[action.kind]
        lines.append(f"{symbol} {action.resource}  ({action.reason})")
        for change in action.changes[:limit]:
            lines.append(f"    {change.field}: {_short(change.observed)} -> {_short(change.desired)}")
        if len(action.changes) > limit:
            lines.append(f"    ... {len(action.changes) - limit} more")
    return "\n".join(lines) if lines else "(no change)"


def _short(value: Any) -> str:
    text = "(absent)" if value is None else json.dumps(value, sort_keys=True)
    return text if len(text) <= 100 else text[:97] + "..."


# --- rollouts --------------------------------------------------------------------------------


class RolloutStatus(BaseModel):
    model_config = ConfigDict(frozen=True)

    state: Literal["progressing", "complete", "failed"]
    reason: str = ""
    revision: int | None = None
    desired: int = 0
    updated: int = 0
    ready: int = 0
    available: int = 0
    events: tuple[str, ...] = ()  # the new pods' warnings, newest last

    @property
    def done(self) -> bool:
        return self.state != "progressing"

    def line(self) -> str:
        text = f"revision {self.revision}: {self.updated}/{self.desired} updated, {self.available} available"
        return text + (f" ({self.reason})" if self.reason else "")


def revision_of(obj: Mapping[str, Any]) -> int | None:
    value = ((obj.get("metadata") or {}).get("annotations") or {}).get(REVISION)
    return int(value) if value and str(value).isdigit() else None


def owned_by(obj: Mapping[str, Any], owner: Mapping[str, Any]) -> bool:
    uid = (owner.get("metadata") or {}).get("uid")
    return any(ref.get("uid") == uid for ref in (obj.get("metadata") or {}).get("ownerReferences") or [])


def current_replica_set(
    deployment: Mapping[str, Any], replica_sets: Iterable[Mapping[str, Any]]
) -> dict[str, Any] | None:
    revision = revision_of(deployment)
    ours = [dict(rs) for rs in replica_sets if owned_by(rs, deployment)]
    for rs in ours:
        if revision is not None and revision_of(rs) == revision:
            return rs
    return max(ours, key=lambda rs: revision_of(rs) or 0, default=None)


def _pod_events(pod_names: set[str], events: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    found = [e for e in events if (e.get("involvedObject") or {}).get("name") in pod_names]
    return sorted(found, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))


def describe_event(event: Mapping[str, Any]) -> str:
    obj = event.get("involvedObject") or {}
    count = event.get("count") or 1
    times = f" (x{count})" if count and int(count) > 1 else ""
    return f"{obj.get('kind', '')}/{obj.get('name', '')}: {event.get('reason', '')}: {event.get('message', '')}{times}"


def rollout_status(
    deployment: Mapping[str, Any],
    replica_sets: Iterable[Mapping[str, Any]],
    pods: Iterable[Mapping[str, Any]],
    events: Iterable[Mapping[str, Any]] = (),
) -> RolloutStatus:
    """Where the Deployment's rollout stands, as `kubectl rollout status` judges it, plus fail-fast causes."""
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    desired = int(spec.get("replicas", 1))
    updated = int(status.get("updatedReplicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    counts: dict[str, Any] = {
        "revision": revision_of(deployment),
        "desired": desired,
        "updated": updated,
        "ready": int(status.get("readyReplicas") or 0),
        "available": available,
    }
    current = current_replica_set(deployment, list(replica_sets))
    template_hash = ((current or {}).get("metadata") or {}).get("labels", {}).get(TEMPLATE_HASH)
    new_pods = [
        p
        for p in pods
        if template_hash and ((p.get("metadata") or {}).get("labels") or {}).get(TEMPLATE_HASH) == template_hash
    ]
    names = {p["metadata"]["name"] for p in new_pods}
    pod_events = _pod_events(names, events)
    warnings = tuple(describe_event(e) for e in pod_events if e.get("type") == "Warning")[-8:]

    for condition in status.get("conditions") or []:
        if condition.get("type") == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded":
            return RolloutStatus(
                state="failed",
                reason=f"the rollout did not finish within its deadline: {condition.get('message', '')}",
                events=warnings,
                **counts,
            )
    for pod in new_pods:
        for container in ((pod.get("status") or {}).get("containerStatuses") or []) + (
            (pod.get("status") or {}).get("initContainerStatuses") or []
        ):
            waiting = (container.get("state") or {}).get("waiting") or {}
            why = FATAL_WAITING.get(waiting.get("reason", ""))
            if why:
                detail = waiting.get("message") or ""
                return RolloutStatus(
                    state="failed",
                    reason=f"{why}: pod {pod['metadata']['name']} container {container.get('name')} is "
                    f"{waiting['reason']}" + (f" ({detail})" if detail else ""),
                    events=warnings,
                    **counts,
                )
    mounts: dict[str, list[Mapping[str, Any]]] = {}
    for event in pod_events:
        if event.get("reason") == "FailedMount":
            mounts.setdefault((event.get("involvedObject") or {}).get("name", ""), []).append(event)
    for pod_name, failures in mounts.items():
        if sum(int(e.get("count") or 1) for e in failures) >= MOUNT_FAILURES_FATAL:
            return RolloutStatus(
                state="failed",
                reason=f"a volume cannot be mounted: pod {pod_name}: {failures[-1].get('message', '')}",
                events=warnings,
                **counts,
            )

    observed = int(status.get("observedGeneration") or 0) >= int(
        (deployment.get("metadata") or {}).get("generation") or 0
    )
    total = int(status.get("replicas") or 0)
    if observed and updated >= desired and available >= desired and total <= updated:
        return RolloutStatus(state="complete", **counts)
    waiting_for = "the new revision's pods" if updated < desired else "old pods to go / new pods to be available"
    return RolloutStatus(state="progressing", reason=f"waiting for {waiting_for}", events=warnings, **counts)


def rollback_template(
    deployment: Mapping[str, Any], replica_sets: Iterable[Mapping[str, Any]]
) -> tuple[int, dict[str, Any]] | None:
    """The revision before the current one and its pod template (as `kubectl rollout undo` takes it), or None."""
    current = revision_of(deployment) or 0
    older = [rs for rs in replica_sets if owned_by(rs, deployment) and (revision_of(rs) or 0) < current]
    if not older:
        return None
    previous = max(older, key=lambda rs: revision_of(rs) or 0)
    template = json.loads(json.dumps((previous.get("spec") or {}).get("template") or {}))
    labels = (template.get("metadata") or {}).get("labels") or {}
    labels.pop(TEMPLATE_HASH, None)
    return revision_of(previous) or 0, template


def running_digests(pods: Iterable[Mapping[str, Any]], template_hash: str | None) -> set[str]:
    """The image digests the ready pods of one ReplicaSet run (from `status.containerStatuses[].imageID`)."""
    out: set[str] = set()
    for pod in pods:
        if template_hash and ((pod.get("metadata") or {}).get("labels") or {}).get(TEMPLATE_HASH) != template_hash:
            continue
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            image_id = container.get("imageID") or ""
            if "@sha256:" in image_id:
                out.add(image_id.rsplit("@", 1)[1])
    return out


# --- the way in ------------------------------------------------------------------------------


def service_url(service: Mapping[str, Any], port_index: int = 0) -> str | None:
    """`http://address[:port]` of a LoadBalancer Service, or None while it has no address.

    The port: `status.loadBalancer.ingress[0].ports[i].port` when the provider reports one
    (the sandbox does), else `spec.ports[i].port` (AKS reports none).
    """
    ingress = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    if not ingress:
        return None
    first = ingress[0]
    host = first.get("ip") or first.get("hostname")
    if not host:
        return None
    ports = first.get("ports") or []
    spec_ports = (service.get("spec") or {}).get("ports") or []
    port = None
    if len(ports) > port_index and ports[port_index].get("port"):
        port = ports[port_index]["port"]
    elif len(spec_ports) > port_index:
        port = spec_ports[port_index].get("port")
    host_text = f"[{host}]" if ":" in host else host
    return f"http://{host_text}" + (f":{port}" if port and int(port) != 80 else "")


def ingress_url(ingress: Mapping[str, Any]) -> str | None:
    """`http://address[:port]` of an Ingress's load balancer (the first host routes by Host header)."""
    return service_url({"status": ingress.get("status") or {}, "spec": {}})


class ShipEvidence(BaseModel):
    """What the ship phase proved, for the approval gate and the report."""

    environment: str
    component: str
    image: str = ""
    digest: str = ""
    revision: int | None = None
    rollout_seconds: float | None = None
    url: str | None = None
    smoke_checks: int = 0
    smoke_failures: list[str] = Field(default_factory=list)
    rolled_back_to: int | None = None
    failure: str | None = None
