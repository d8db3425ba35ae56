"""One emulated cluster: its store and resource types, and the write path every writer shares.

The API verbs (api.py) and the controllers both write through `Cluster`: it stamps system
metadata (uid, creationTimestamp, generation, resourceVersion), records field managers,
skips writes that change nothing (no resourceVersion bump, as the API server), and runs
the side effects a write has on the cluster itself (a CRD adds a resource type, a new
namespace gets its `default` ServiceAccount).
"""

from __future__ import annotations

import copy
import logging
import uuid
from collections.abc import Callable
from typing import Any

from sandbox.kube import apply as ssa
from sandbox.kube import defaults
from sandbox.kube.clock import rfc3339
from sandbox.kube.errors import namespace_not_found, namespace_terminating
from sandbox.kube.resources import Registry, ResourceType, secret_provider_class_crd
from sandbox.kube.store import ClusterStore

log = logging.getLogger(__name__)

INITIAL_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
NODE_NAME = "aks-nodepool1-12345678-vmss000000"
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
_SYSTEM_METADATA = ("uid", "creationTimestamp", "generation", "deletionTimestamp", "deletionGracePeriodSeconds")


def shape(rt: ResourceType) -> ssa.Shape:
    return ssa.Shape(kind=rt.kind, custom=rt.custom)


def content_equal(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal apart from resourceVersion (what decides whether a write is a no-op)."""

    def strip(obj: dict[str, Any]) -> dict[str, Any]:
        copied = dict(obj)
        copied["metadata"] = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "resourceVersion"}
        return copied

    return strip(a) == strip(b)


def spec_changed(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """What bumps metadata.generation: any change outside metadata and status."""

    def body(obj: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}

    return body(old) != body(new)


class Cluster:
    def __init__(self, name: str, store: ClusterStore, on_write: Callable[[], None] | None = None) -> None:
        self.name = name
        self.store = store
        self.registry = Registry()
        self._on_write = on_write or (lambda: None)
        for crd in store.list("apiextensions.k8s.io", "customresourcedefinitions"):
            self.registry.set_crd(crd)

    # --- bootstrap -------------------------------------------------------------------------------

    def bootstrap(self) -> None:
        """What a new AKS cluster has before anyone touches it (idempotent across restarts)."""
        ns_type = self.type_of("", "namespaces")
        for name in INITIAL_NAMESPACES:
            if self.store.get("", "namespaces", "", name) is None:
                self.create(ns_type, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
                            manager="kube-apiserver")  # fmt: skip
        crd_type = self.type_of("apiextensions.k8s.io", "customresourcedefinitions")
        crd = secret_provider_class_crd()
        if self.store.get(crd_type.group, crd_type.plural, "", crd["metadata"]["name"]) is None:
            self.create(crd_type, crd, manager="addon-manager")
        node_type = self.type_of("", "nodes")
        if self.store.get("", "nodes", "", NODE_NAME) is None:
            self.create(node_type, _node(), manager="kubelet")

    def type_of(self, group: str, plural: str) -> ResourceType:
        rt = self.registry.storage_type(group, plural)
        if rt is None:
            raise KeyError(f"{plural}.{group} is not served")
        return rt

    # --- reads -----------------------------------------------------------------------------------

    def get(self, rt: ResourceType, namespace: str, name: str) -> dict[str, Any] | None:
        return self.store.get(rt.group, rt.plural, namespace if rt.namespaced else "", name)

    def list(self, rt: ResourceType, namespace: str | None = None) -> list[dict[str, Any]]:
        return self.store.list(rt.group, rt.plural, namespace if rt.namespaced else None)

    def check_namespace(self, rt: ResourceType, namespace: str, name: str) -> None:
        """404 for a missing namespace, 403 for one being deleted (new content only)."""
        ns = self.store.get("", "namespaces", "", namespace)
        if ns is None:
            raise namespace_not_found(namespace)
        if ns["metadata"].get("deletionTimestamp"):
            raise namespace_terminating(rt, name, namespace)

    # --- writes ----------------------------------------------------------------------------------

    def stamp_new(self, rt: ResourceType, obj: dict[str, Any], *, manager: str | None) -> dict[str, Any]:
        """System metadata and managers of an object about to be created (not stored yet)."""
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
        meta = obj.setdefault("metadata", {})
        for key in ("resourceVersion", "managedFields", "deletionTimestamp", "selfLink"):
            meta.pop(key, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = rfc3339()
        if rt.generation:
            meta["generation"] = 1
        else:
            meta.pop("generation", None)
        defaults.apply_defaults(rt.kind, obj)
        if manager is not None:
            ssa.record_update(None, obj, manager=manager, shape=shape(rt), api_version=rt.api_version, now=rfc3339())
        return obj

    def create(self, rt: ResourceType, obj: dict[str, Any], *, manager: str | None) -> dict[str, Any]:
        """Store a new object (no validation: controllers and bootstrap call this directly)."""
        if not obj.get("metadata", {}).get("uid"):
            obj = self.stamp_new(rt, obj, manager=manager)
        stored = self.store.put(rt.group, rt.plural, obj)
        self._after_write(rt, None, stored)
        return stored

    def finish_update(
        self,
        rt: ResourceType,
        old: dict[str, Any],
        new: dict[str, Any],
        *,
        manager: str | None,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """System metadata, generation and managers of an updated object (not stored yet)."""
        new["apiVersion"], new["kind"] = rt.api_version, rt.kind
        meta = new.setdefault("metadata", {})
        for key in _SYSTEM_METADATA:
            if key in old["metadata"]:
                meta[key] = old["metadata"][key]
            else:
                meta.pop(key, None)
        meta["name"] = old["metadata"]["name"]
        if "namespace" in old["metadata"]:
            meta["namespace"] = old["metadata"]["namespace"]
        meta["resourceVersion"] = old["metadata"]["resourceVersion"]
        if rt.generation and spec_changed(old, new):
            meta["generation"] = int(old["metadata"].get("generation", 1)) + 1
        if manager is not None:
            meta["managedFields"] = copy.deepcopy(old["metadata"].get("managedFields", []))
            ssa.record_update(
                old, new, manager=manager, shape=shape(rt), api_version=rt.api_version, now=rfc3339(),
                subresource=subresource,
            )  # fmt: skip
        return new

    def store_update(self, rt: ResourceType, old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
        """Write an updated object unless it changed nothing (then the stored one is returned)."""
        if content_equal(old, new):
            return old
        stored = self.store.put(rt.group, rt.plural, new)
        self._after_write(rt, old, stored)
        return stored

    def update(
        self,
        rt: ResourceType,
        old: dict[str, Any],
        new: dict[str, Any],
        *,
        manager: str,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """A controller's write: defaults, system metadata, managers, store (no validation)."""
        defaults.apply_defaults(rt.kind, new, old)
        return self.store_update(rt, old, self.finish_update(rt, old, new, manager=manager, subresource=subresource))

    def update_status(self, rt: ResourceType, obj: dict[str, Any], status: dict[str, Any], *, manager: str) -> None:
        """A controller's status write through the status subresource (skipped when unchanged)."""
        current = self.get(rt, obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        if current is None or current.get("status") == status:
            return
        new = copy.deepcopy(current)
        new["status"] = status
        self.update(rt, current, new, manager=manager, subresource="status")

    def remove(self, rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any] | None:
        meta = obj["metadata"]
        removed = self.store.delete(rt.group, rt.plural, meta.get("namespace", ""), meta["name"])
        if removed is not None and rt.kind == "CustomResourceDefinition":
            self.registry.remove_crd(meta["name"])
            spec = removed.get("spec") or {}
            plural = (spec.get("names") or {}).get("plural", "")
            for cr in self.store.list(spec.get("group", ""), plural):
                self.store.delete(spec.get("group", ""), plural, cr["metadata"].get("namespace", ""),
                                  cr["metadata"]["name"])  # fmt: skip
        self._on_write()
        return removed

    # --- side effects ----------------------------------------------------------------------------

    def _after_write(self, rt: ResourceType, old: dict[str, Any] | None, obj: dict[str, Any]) -> None:
        if rt.kind == "CustomResourceDefinition":
            self._establish_crd(rt, obj)
        elif rt.kind == "Namespace" and old is None:
            self._populate_namespace(obj["metadata"]["name"])
        self._on_write()

    def _establish_crd(self, rt: ResourceType, crd: dict[str, Any]) -> None:
        self.registry.set_crd(crd)
        spec = crd.get("spec") or {}
        names = dict(spec.get("names") or {})
        names.setdefault("singular", names.get("kind", "").lower())
        names.setdefault("listKind", f"{names.get('kind', '')}List")
        now = rfc3339()
        status = {
            "acceptedNames": names,
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                 "message": "no conflicts found", "lastTransitionTime": now},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                 "message": "the initial names have been accepted", "lastTransitionTime": now},
            ],
            "storedVersions": [v["name"] for v in spec.get("versions") or [] if v.get("storage")],
        }  # fmt: skip
        current = crd.get("status") or {}
        if {k: v for k, v in current.items() if k != "conditions"} != {
            k: v for k, v in status.items() if k != "conditions"
        } or not current.get("conditions"):
            self.update_status(rt, crd, status, manager="kube-apiserver")

    def _populate_namespace(self, namespace: str) -> None:
        """The ServiceAccount and root-CA ConfigMap the controllers add to every namespace."""
        sa_type, cm_type = self.type_of("", "serviceaccounts"), self.type_of("", "configmaps")
        if self.store.get("", "serviceaccounts", namespace, "default") is None:
            sa = {"metadata": {"name": "default", "namespace": namespace}}
            self.create(sa_type, sa, manager="kube-controller-manager")
        if self.store.get("", "configmaps", namespace, ROOT_CA_CONFIGMAP) is None:
            cm = {
                "metadata": {
                    "name": ROOT_CA_CONFIGMAP,
                    "namespace": namespace,
                    "annotations": {"kubernetes.io/description": "Contains a CA bundle for the API server."},
                },
                "data": {"ca.crt": "-----BEGIN CERTIFICATE-----\n(sandbox)\n-----END CERTIFICATE-----\n"},
            }
            self.create(cm_type, cm, manager="kube-controller-manager")


def _node() -> dict[str, Any]:
    now = rfc3339()
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": NODE_NAME,
            "labels": {
                "kubernetes.io/hostname": NODE_NAME,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "agentpool": "nodepool1",
                "kubernetes.azure.com/mode": "system",
            },
        },
        "spec": {"podCIDR": "10.244.0.0/24", "providerID": f"azure:///sandbox/{NODE_NAME}"},
        "status": {
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "KubeletReady",
                 "message": "kubelet is posting ready status", "lastHeartbeatTime": now, "lastTransitionTime": now},
            ],
            "addresses": [{"type": "InternalIP", "address": "10.224.0.4"}, {"type": "Hostname", "address": NODE_NAME}],
            "capacity": {"cpu": "4", "memory": "16374584Ki", "pods": "110"},
            "allocatable": {"cpu": "3860m", "memory": "12880184Ki", "pods": "110"},
            "nodeInfo": {
                "architecture": "amd64", "bootID": "00000000-0000-0000-0000-000000000000",
                "containerRuntimeVersion": "containerd://1.7.22-1", "kernelVersion": "5.15.0-1073-azure",
                "kubeProxyVersion": "v1.31.2", "kubeletVersion": "v1.31.2", "machineID": "sandbox",
                "operatingSystem": "linux", "osImage": "Ubuntu 22.04.5 LTS", "systemUUID": "sandbox",
            },
        },
    }  # fmt: skip
