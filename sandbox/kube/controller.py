"""kube-controller-manager, the parts MMRV's rollout depends on.

* deployment controller: one ReplicaSet per pod template (named `<deployment>-<hash>`,
  labelled `pod-template-hash`), rolling update within maxSurge/maxUnavailable (or
  Recreate), `deployment.kubernetes.io/revision` on both (a template that matches an old
  ReplicaSet reuses it under the next revision, which is how a rollback by re-applying
  the previous template works), revision history trimmed to `revisionHistoryLimit`, and
  the status the tool waits on: observedGeneration, replicas counts, `Available` and
  `Progressing` (NewReplicaSetCreated / FoundNewReplicaSet / ReplicaSetUpdated /
  NewReplicaSetAvailable / ProgressDeadlineExceeded) with `progressDeadlineSeconds`
  measured in emulated time;
* replica set controller: pods to match spec.replicas (refusing, with a FailedCreate
  event, when the ServiceAccount is missing, as the admission plugin does);
* garbage collector (owner references), namespace controller (empties a Terminating
  namespace, then removes it), PodDisruptionBudget and HPA status (the HPA keeps its
  target's replicas within min/max; there are no metrics).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import time
from typing import TYPE_CHECKING, Any

from sandbox.kube.api import generated_name
from sandbox.kube.clock import parse_rfc3339, rfc3339
from sandbox.kube.events import NORMAL, WARNING
from sandbox.kube.resources import ResourceType
from sandbox.kube.selectors import selector_object_matches

if TYPE_CHECKING:
    from sandbox.kube.runtime import ClusterRuntime

log = logging.getLogger(__name__)

MANAGER = "kube-controller-manager"
HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
_SAFE = "bcdfghjklmnpqrstvwxz2456789"


def template_hash(template: dict[str, Any]) -> str:
    """A stable short hash of a pod template (without its own hash label), in apimachinery's alphabet."""
    clean = copy.deepcopy(template)
    (clean.get("metadata") or {}).get("labels", {}).pop(HASH_LABEL, None)
    digest = hashlib.sha256(json.dumps(clean, sort_keys=True, separators=(",", ":")).encode()).digest()
    return "".join(_SAFE[b % len(_SAFE)] for b in digest[:10])


def revision_of(obj: dict[str, Any]) -> int:
    try:
        return int((obj["metadata"].get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def _scaled(value: Any, total: int, round_up: bool) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.endswith("%"):
        fraction = int(value[:-1]) * total / 100
        return math.ceil(fraction) if round_up else math.floor(fraction)
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return 0


def _controller_of(obj: dict[str, Any]) -> str | None:
    return next((r.get("uid") for r in obj["metadata"].get("ownerReferences") or [] if r.get("controller")), None)


def _owner_ref(owner: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _condition(conditions: list[dict[str, Any]], kind: str) -> dict[str, Any] | None:
    return next((c for c in conditions if c.get("type") == kind), None)


class Controllers:
    def __init__(self, runtime: ClusterRuntime) -> None:
        self.runtime = runtime
        self.cluster = runtime.cluster
        self.clock = runtime.clock
        self.events = runtime.events
        self._progress_at: dict[str, float] = {}  # deployment uid -> real time of last progress
        self._pending_reason: dict[str, tuple[str, str]] = {}  # deployment uid -> Progressing reason to record

    def _type(self, group: str, plural: str) -> ResourceType:
        return self.cluster.type_of(group, plural)

    def reconcile(self) -> None:
        self._namespaces()
        self._garbage_collect()
        for deployment in self.cluster.store.list("apps", "deployments"):
            self._deployment(deployment)
        for rs in self.cluster.store.list("apps", "replicasets"):
            self._replica_set(rs)
        for deployment in self.cluster.store.list("apps", "deployments"):
            self._deployment_status(deployment)
        for pdb in self.cluster.store.list("policy", "poddisruptionbudgets"):
            self._pdb_status(pdb)
        for hpa in self.cluster.store.list("autoscaling", "horizontalpodautoscalers"):
            self._hpa(hpa)

    # --- namespaces and garbage collection -----------------------------------------------------

    def _namespaces(self) -> None:
        for ns in self.cluster.store.list("", "namespaces"):
            if not ns["metadata"].get("deletionTimestamp"):
                continue
            name = ns["metadata"]["name"]
            for (group, plural, _, _), obj in list(self.cluster.store.in_namespace(name)):
                self.cluster.remove(self._type(group, plural), obj)
            self.cluster.remove(self._type("", "namespaces"), ns)
            log.info("namespace %s deleted with its contents", name)

    def _garbage_collect(self) -> None:
        uids = {obj["metadata"].get("uid") for obj in self.cluster.store.objects.values()}
        for (group, plural, _, _), obj in list(self.cluster.store.objects.items()):
            refs = obj["metadata"].get("ownerReferences") or []
            if refs and not any(r.get("uid") in uids for r in refs):
                self.cluster.remove(self._type(group, plural), obj)

    # --- deployments ---------------------------------------------------------------------------

    def _owned_replica_sets(self, deployment: dict[str, Any]) -> list[dict[str, Any]]:
        uid = deployment["metadata"]["uid"]
        namespace = deployment["metadata"]["namespace"]
        return [rs for rs in self.cluster.store.list("apps", "replicasets", namespace) if _controller_of(rs) == uid]

    @staticmethod
    def _surge_unavailable(deployment: dict[str, Any]) -> tuple[int, int]:
        spec = deployment.get("spec") or {}
        desired = int(spec.get("replicas", 1))
        strategy = spec.get("strategy") or {}
        if strategy.get("type") == "Recreate":
            return 0, desired
        rolling = strategy.get("rollingUpdate") or {}
        surge = _scaled(rolling.get("maxSurge", "25%"), desired, round_up=True)
        unavailable = _scaled(rolling.get("maxUnavailable", "25%"), desired, round_up=False)
        if surge == 0 and unavailable == 0:
            unavailable = 1
        return surge, unavailable

    def _scale(self, deployment: dict[str, Any], rs: dict[str, Any], replicas: int) -> dict[str, Any]:
        before = int((rs.get("spec") or {}).get("replicas", 0))
        if before == replicas:
            return rs
        updated = copy.deepcopy(rs)
        updated["spec"]["replicas"] = replicas
        annotations = updated["metadata"].setdefault("annotations", {})
        desired = int((deployment.get("spec") or {}).get("replicas", 1))
        surge, _ = self._surge_unavailable(deployment)
        annotations[DESIRED] = str(desired)
        annotations[MAX_REPLICAS] = str(desired + surge)
        stored = self.cluster.update(self._type("apps", "replicasets"), rs, updated, manager=MANAGER)
        direction = "up" if replicas > before else "down"
        self.events.emit(deployment, NORMAL, "ScalingReplicaSet",
                         f"Scaled {direction} replica set {rs['metadata']['name']} to {replicas} from {before}",
                         component="deployment-controller")  # fmt: skip
        return stored

    def _deployment(self, deployment: dict[str, Any]) -> None:
        spec = deployment.get("spec") or {}
        meta = deployment["metadata"]
        if meta.get("deletionTimestamp"):
            return
        template = spec.get("template") or {}
        wanted_hash = template_hash(template)
        owned = self._owned_replica_sets(deployment)
        new_rs = next(
            (rs for rs in owned if template_hash((rs.get("spec") or {}).get("template") or {}) == wanted_hash),
            None,
        )
        max_revision = max((revision_of(rs) for rs in owned), default=0)
        if spec.get("paused"):
            return
        if new_rs is None:
            new_rs = self._create_replica_set(deployment, template, wanted_hash, max_revision + 1)
            self._progress(
                deployment, "NewReplicaSetCreated", f'Created new replica set "{new_rs["metadata"]["name"]}"'
            )
            owned.append(new_rs)
        elif revision_of(new_rs) < max_revision:
            new_rs = self._reuse_replica_set(new_rs, max_revision + 1)
            self._progress(deployment, "FoundNewReplicaSet", f'Found new replica set "{new_rs["metadata"]["name"]}"')
        self._sync_revision_annotation(deployment, revision_of(new_rs))
        olds = [rs for rs in owned if rs["metadata"]["uid"] != new_rs["metadata"]["uid"]]
        desired = int(spec.get("replicas", 1))
        if (spec.get("strategy") or {}).get("type") == "Recreate":
            self._recreate(deployment, new_rs, olds, desired)
        else:
            self._rolling(deployment, new_rs, olds, desired)
        self._trim_history(deployment, new_rs, olds)

    def _create_replica_set(
        self, deployment: dict[str, Any], template: dict[str, Any], pod_hash: str, revision: int
    ) -> dict[str, Any]:
        meta = deployment["metadata"]
        spec = deployment["spec"]
        rs_template = copy.deepcopy(template)
        rs_template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = pod_hash
        selector = copy.deepcopy(spec.get("selector") or {})
        selector.setdefault("matchLabels", {})[HASH_LABEL] = pod_hash
        surge, _ = self._surge_unavailable(deployment)
        desired = int(spec.get("replicas", 1))
        rs = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": f"{meta['name']}-{pod_hash}",
                "namespace": meta["namespace"],
                "labels": dict(rs_template["metadata"]["labels"]),
                "annotations": {REVISION: str(revision), DESIRED: str(desired), MAX_REPLICAS: str(desired + surge)},
                "ownerReferences": [_owner_ref(deployment)],
            },
            "spec": {
                "replicas": 0,
                "minReadySeconds": int(spec.get("minReadySeconds", 0)),
                "selector": selector,
                "template": rs_template,
            },
        }
        return self.cluster.create(self._type("apps", "replicasets"), rs, manager=MANAGER)

    def _reuse_replica_set(self, rs: dict[str, Any], revision: int) -> dict[str, Any]:
        updated = copy.deepcopy(rs)
        annotations = updated["metadata"].setdefault("annotations", {})
        history = [h for h in annotations.get(REVISION_HISTORY, "").split(",") if h]
        history.append(annotations.get(REVISION, "0"))
        annotations[REVISION_HISTORY] = ",".join(history)
        annotations[REVISION] = str(revision)
        return self.cluster.update(self._type("apps", "replicasets"), rs, updated, manager=MANAGER)

    def _sync_revision_annotation(self, deployment: dict[str, Any], revision: int) -> None:
        annotations = deployment["metadata"].get("annotations") or {}
        if annotations.get(REVISION) == str(revision):
            return
        current = self.cluster.get(self._type("apps", "deployments"), deployment["metadata"]["namespace"],
                                   deployment["metadata"]["name"])  # fmt: skip
        if current is None:
            return
        updated = copy.deepcopy(current)
        updated["metadata"].setdefault("annotations", {})[REVISION] = str(revision)
        self.cluster.update(self._type("apps", "deployments"), current, updated, manager=MANAGER)

    def _available(self, rs: dict[str, Any]) -> int:
        return int((rs.get("status") or {}).get("availableReplicas", 0))

    def _rolling(
        self, deployment: dict[str, Any], new_rs: dict[str, Any], olds: list[dict[str, Any]], desired: int
    ) -> None:
        surge, max_unavailable = self._surge_unavailable(deployment)
        all_rs = [new_rs, *olds]
        total = sum(int(rs["spec"].get("replicas", 0)) for rs in all_rs)
        new_replicas = int(new_rs["spec"].get("replicas", 0))
        if new_replicas > desired:
            new_rs = self._scale(deployment, new_rs, desired)
        elif new_replicas < desired:
            room = desired + surge - total
            if room > 0:
                new_rs = self._scale(deployment, new_rs, min(desired, new_replicas + room))
        olds = [rs for rs in olds if int(rs["spec"].get("replicas", 0)) > 0]
        if not olds:
            return
        # as the deployment controller: old pods that are unavailable go first (they serve nobody), then
        # available old pods while availability stays at desired - maxUnavailable
        min_available = desired - max_unavailable
        all_pods = int(new_rs["spec"].get("replicas", 0)) + sum(int(rs["spec"]["replicas"]) for rs in olds)
        new_unavailable = int(new_rs["spec"].get("replicas", 0)) - self._available(new_rs)
        budget = all_pods - min_available - new_unavailable
        if budget <= 0:
            return
        olds.sort(key=revision_of)
        for i, rs in enumerate(olds):
            unhealthy = int(rs["spec"]["replicas"]) - self._available(rs)
            cut = min(max(0, unhealthy), budget)
            if cut > 0:
                olds[i] = self._scale(deployment, rs, int(rs["spec"]["replicas"]) - cut)
                budget -= cut
            if budget <= 0:
                break
        removable = self._available(new_rs) + sum(self._available(rs) for rs in olds) - min_available
        for rs in olds:
            if removable <= 0:
                break
            count = int(rs["spec"].get("replicas", 0))
            cut = min(count, removable, self._available(rs))
            if cut > 0:
                self._scale(deployment, rs, count - cut)
                removable -= cut

    def _recreate(
        self, deployment: dict[str, Any], new_rs: dict[str, Any], olds: list[dict[str, Any]], desired: int
    ) -> None:
        still_running = False
        for rs in olds:
            if int(rs["spec"].get("replicas", 0)) > 0:
                self._scale(deployment, rs, 0)
                still_running = True
            if int((rs.get("status") or {}).get("replicas", 0)) > 0:
                still_running = True
        if not still_running:
            self._scale(deployment, new_rs, desired)

    def _trim_history(self, deployment: dict[str, Any], new_rs: dict[str, Any], olds: list[dict[str, Any]]) -> None:
        limit = int((deployment.get("spec") or {}).get("revisionHistoryLimit", 10))
        idle = [
            rs
            for rs in olds
            if int(rs["spec"].get("replicas", 0)) == 0 and int((rs.get("status") or {}).get("replicas", 0)) == 0
        ]
        idle.sort(key=revision_of)
        for rs in idle[: max(0, len(idle) - limit)]:
            current = self.cluster.store.get("apps", "replicasets", rs["metadata"]["namespace"], rs["metadata"]["name"])
            if current is not None:
                self.cluster.remove(self._type("apps", "replicasets"), current)

    # --- deployment status -------------------------------------------------------------------------

    def _progress(self, deployment: dict[str, Any], reason: str, message: str) -> None:
        """Note progress now; the next status write records it in the Progressing condition."""
        uid = deployment["metadata"]["uid"]
        self._progress_at[uid] = time.time()
        self._pending_reason[uid] = (reason, message)

    def _deployment_status(self, deployment: dict[str, Any]) -> None:
        meta = deployment["metadata"]
        uid = meta["uid"]
        current = self.cluster.get(self._type("apps", "deployments"), meta["namespace"], meta["name"])
        if current is None:
            return
        deployment = current
        spec = deployment.get("spec") or {}
        desired = int(spec.get("replicas", 1))
        owned = self._owned_replica_sets(deployment)
        wanted_hash = template_hash(spec.get("template") or {})
        new_rs = next(
            (rs for rs in owned if template_hash((rs.get("spec") or {}).get("template") or {}) == wanted_hash), None
        )

        def total(field: str, sets: list[dict[str, Any]]) -> int:
            return sum(int((rs.get("status") or {}).get(field, 0)) for rs in sets)

        old_status = deployment.get("status") or {}
        status: dict[str, Any] = {
            "observedGeneration": int(meta.get("generation", 1)),
            "replicas": total("replicas", owned),
            "updatedReplicas": total("replicas", [new_rs]) if new_rs else 0,
            "readyReplicas": total("readyReplicas", owned),
            "availableReplicas": total("availableReplicas", owned),
        }
        status["unavailableReplicas"] = max(0, desired - status["availableReplicas"])
        for key in ("readyReplicas", "availableReplicas", "unavailableReplicas", "updatedReplicas", "replicas"):
            if status[key] == 0:
                status.pop(key)  # omitempty, as the API server serializes them
        _, max_unavailable = self._surge_unavailable(deployment)
        conditions = copy.deepcopy(old_status.get("conditions") or [])
        now = rfc3339()
        available_ok = status.get("availableReplicas", 0) >= desired - max_unavailable
        if available_ok:
            reason, message = "MinimumReplicasAvailable", "Deployment has minimum availability."
        else:
            reason, message = "MinimumReplicasUnavailable", "Deployment does not have minimum availability."
        self._set_condition(conditions, "Available", available_ok, reason, message, now)
        progress_reason, progress_message = None, None
        pending = self._pending_reason.pop(uid, None)
        if pending:
            progress_reason, progress_message = pending
        rs_name = new_rs["metadata"]["name"] if new_rs else ""
        complete = (
            new_rs is not None
            and status.get("updatedReplicas", 0) == desired
            and status.get("replicas", 0) == desired
            and status.get("availableReplicas", 0) == desired
        )
        progressed = any(
            status.get(k, 0) > old_status.get(k, 0) for k in ("updatedReplicas", "readyReplicas", "availableReplicas")
        ) or status.get("replicas", 0) < old_status.get("replicas", 0)
        progressing = _condition(conditions, "Progressing")
        if complete:
            progress_reason = "NewReplicaSetAvailable"
            progress_message = f'ReplicaSet "{rs_name}" has successfully progressed.'
            self._progress_at.setdefault(uid, time.time())
        elif progress_reason is None and (progressed or progressing is None):
            progress_reason = "ReplicaSetUpdated"
            progress_message = f'ReplicaSet "{rs_name}" is progressing.'
            self._progress_at[uid] = time.time()
        if progress_reason is not None and progress_message is not None:
            if not (complete and progressing and progressing.get("reason") == "NewReplicaSetAvailable"):
                self._set_condition(conditions, "Progressing", True, progress_reason, progress_message, now,
                                    touch=True)  # fmt: skip
        elif progressing is not None and progressing.get("reason") != "NewReplicaSetAvailable":
            deadline = spec.get("progressDeadlineSeconds")
            since = self._progress_at.get(uid) or parse_rfc3339(progressing.get("lastUpdateTime")) or time.time()
            self._progress_at.setdefault(uid, since)
            if (
                deadline is not None
                and progressing.get("reason") != "ProgressDeadlineExceeded"
                and self.clock.emulated_since(since) > float(deadline)
            ):
                self._set_condition(conditions, "Progressing", False, "ProgressDeadlineExceeded",
                                    f'ReplicaSet "{rs_name}" has timed out progressing.', now, touch=True)  # fmt: skip
                self.events.emit(deployment, WARNING, "ProgressDeadlineExceeded",
                                 f'Deployment "{meta["name"]}" has timed out progressing.',
                                 component="deployment-controller")  # fmt: skip
        # the API server orders them Available, Progressing
        conditions.sort(key=lambda c: {"Available": 0, "Progressing": 1}.get(c.get("type", ""), 2))
        status["conditions"] = conditions
        if old_status.get("collisionCount"):
            status["collisionCount"] = old_status["collisionCount"]
        self.cluster.update_status(self._type("apps", "deployments"), deployment, status, manager=MANAGER)

    @staticmethod
    def _set_condition(
        conditions: list[dict[str, Any]],
        kind: str,
        ok: bool,
        reason: str,
        message: str,
        now: str,
        *,
        touch: bool = False,
    ) -> None:
        value = "True" if ok else "False"
        existing = _condition(conditions, kind)
        if existing is None:
            conditions.append({"type": kind, "status": value, "lastUpdateTime": now, "lastTransitionTime": now,
                               "reason": reason, "message": message})  # fmt: skip
            return
        if existing.get("status") != value:
            existing["lastTransitionTime"] = now
        if touch or existing.get("status") != value or existing.get("reason") != reason:
            existing["lastUpdateTime"] = now
        existing.update(status=value, reason=reason, message=message)

    # --- replica sets ------------------------------------------------------------------------------

    def _replica_set(self, rs: dict[str, Any]) -> None:
        meta = rs["metadata"]
        namespace = meta["namespace"]
        uid = meta["uid"]
        pods = [p for p in self.cluster.store.list("", "pods", namespace) if _controller_of(p) == uid]
        wanted = int((rs.get("spec") or {}).get("replicas", 0))
        pod_type = self._type("", "pods")
        if len(pods) < wanted:
            template = (rs.get("spec") or {}).get("template") or {}
            sa = (template.get("spec") or {}).get("serviceAccountName") or "default"
            if self.cluster.store.get("", "serviceaccounts", namespace, sa) is None:
                self.events.emit(rs, WARNING, "FailedCreate",
                                 f'Error creating: pods "{meta["name"]}-" is forbidden: error looking up service '
                                 f'account {namespace}/{sa}: serviceaccount "{sa}" not found',
                                 component="replicaset-controller")  # fmt: skip
            else:
                for _ in range(wanted - len(pods)):
                    pods.append(self._create_pod(rs, template))
        elif len(pods) > wanted:
            kubelet = self.runtime.kubelet

            def rank(pod: dict[str, Any]) -> tuple[int, str]:
                ready = kubelet.ready_since(pod["metadata"]["uid"]) is not None
                return (1 if ready else 0, pod["metadata"].get("creationTimestamp", ""))

            doomed = sorted(pods, key=rank)[: len(pods) - wanted]
            for pod in doomed:
                self.cluster.remove(pod_type, pod)
                self.events.emit(rs, NORMAL, "SuccessfulDelete", f"Deleted pod: {pod['metadata']['name']}",
                                 component="replicaset-controller")  # fmt: skip
            pods = [p for p in pods if p not in doomed]
        self._replica_set_status(rs, pods)

    def _create_pod(self, rs: dict[str, Any], template: dict[str, Any]) -> dict[str, Any]:
        meta = rs["metadata"]
        pod_meta = copy.deepcopy(template.get("metadata") or {})
        pod_meta.pop("name", None)
        pod_meta.update(
            name=generated_name(f"{meta['name']}-"),
            generateName=f"{meta['name']}-",
            namespace=meta["namespace"],
            ownerReferences=[_owner_ref(rs)],
        )
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": pod_meta,
            "spec": copy.deepcopy(template.get("spec") or {}),
        }
        created = self.cluster.create(self._type("", "pods"), pod, manager=MANAGER)
        self.events.emit(rs, NORMAL, "SuccessfulCreate", f"Created pod: {created['metadata']['name']}",
                         component="replicaset-controller")  # fmt: skip
        return created

    def _replica_set_status(self, rs: dict[str, Any], pods: list[dict[str, Any]]) -> None:
        kubelet = self.runtime.kubelet
        min_ready = float((rs.get("spec") or {}).get("minReadySeconds", 0))
        ready = [p for p in pods if kubelet.ready_since(p["metadata"]["uid"]) is not None]
        available = [
            p for p in ready if self.clock.emulated_since(kubelet.ready_since(p["metadata"]["uid"]) or 0) >= min_ready
        ]
        status: dict[str, Any] = {
            "replicas": len(pods),
            "fullyLabeledReplicas": len(pods),
            "readyReplicas": len(ready),
            "availableReplicas": len(available),
            "observedGeneration": int(rs["metadata"].get("generation", 1)),
        }
        for key in ("fullyLabeledReplicas", "readyReplicas", "availableReplicas"):
            if status[key] == 0:
                status.pop(key)
        self.cluster.update_status(self._type("apps", "replicasets"), rs, status, manager=MANAGER)

    # --- PDB and HPA -------------------------------------------------------------------------------

    def _pdb_status(self, pdb: dict[str, Any]) -> None:
        spec = pdb.get("spec") or {}
        namespace = pdb["metadata"]["namespace"]
        pods = [
            p
            for p in self.cluster.store.list("", "pods", namespace)
            if selector_object_matches(spec.get("selector") or {}, p["metadata"].get("labels"))
        ]
        healthy = sum(1 for p in pods if self.runtime.kubelet.ready_since(p["metadata"]["uid"]) is not None)
        expected = len(pods)
        if spec.get("minAvailable") is not None:
            desired = _scaled(spec["minAvailable"], expected, round_up=True)
        elif spec.get("maxUnavailable") is not None:
            desired = max(0, expected - _scaled(spec["maxUnavailable"], expected, round_up=True))
        else:
            desired = expected
        allowed = max(0, healthy - desired)
        old = pdb.get("status") or {}
        previous = _condition(old.get("conditions") or [], "DisruptionAllowed") or {}
        value = "True" if allowed > 0 else "False"
        condition = {
            "type": "DisruptionAllowed",
            "status": value,
            "reason": "SufficientPods" if allowed > 0 else "InsufficientPods",
            "message": "",
            "observedGeneration": int(pdb["metadata"].get("generation", 1)),
            "lastTransitionTime": previous.get("lastTransitionTime") if previous.get("status") == value else rfc3339(),
        }
        status = {
            "observedGeneration": int(pdb["metadata"].get("generation", 1)),
            "currentHealthy": healthy,
            "desiredHealthy": desired,
            "disruptionsAllowed": allowed,
            "expectedPods": expected,
            "conditions": [condition],
        }
        self.cluster.update_status(self._type("policy", "poddisruptionbudgets"), pdb, status,
                                   manager="controller-manager")  # fmt: skip

    def _hpa(self, hpa: dict[str, Any]) -> None:
        spec = hpa.get("spec") or {}
        target = spec.get("scaleTargetRef") or {}
        namespace = hpa["metadata"]["namespace"]
        if target.get("kind") != "Deployment":
            return
        deployment = self.cluster.store.get("apps", "deployments", namespace, target.get("name", ""))
        if deployment is None:
            return
        current = int((deployment.get("spec") or {}).get("replicas", 1))
        low, high = int(spec.get("minReplicas", 1)), int(spec.get("maxReplicas", 1))
        wanted = min(max(current, low), high)
        if wanted != current:
            updated = copy.deepcopy(deployment)
            updated["spec"]["replicas"] = wanted
            self.cluster.update(self._type("apps", "deployments"), deployment, updated,
                                manager="horizontal-pod-autoscaler", subresource="scale")  # fmt: skip
        status: dict[str, Any] = {
            "currentReplicas": int((deployment.get("status") or {}).get("replicas", current)),
            "desiredReplicas": wanted,
        }
        old = hpa.get("status") or {}
        if old.get("currentReplicas") != status["currentReplicas"] or old.get("desiredReplicas") != wanted:
            status["lastScaleTime"] = rfc3339() if wanted != current else old.get("lastScaleTime")
            if status["lastScaleTime"] is None:
                status.pop("lastScaleTime")
            self.cluster.update_status(self._type("autoscaling", "horizontalpodautoscalers"), hpa, status,
                                       manager="horizontal-pod-autoscaler")  # fmt: skip
