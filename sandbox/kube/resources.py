"""The resource types a cluster serves: the built-in ones and those CustomResourceDefinitions add.

A `ResourceType` carries what discovery advertises (names, scope, verbs, subresources) and
what the generic verbs need to know (name rule, whether `metadata.generation` is kept,
whether `status` is a subresource, whether strategic merge patch applies).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")

# name rules (k8s.io/apimachinery validation), picked per type as the API server does
SUBDOMAIN = "subdomain"  # DNS-1123 subdomain, 253 chars: most objects
LABEL = "label"  # DNS-1123 label, 63 chars: namespaces
DNS1035 = "dns1035"  # DNS-1035 label: services
PATH_SEGMENT = "path"  # anything that is a valid path segment: events, CRs' default


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()  # "status", "scale"
    generation: bool = False  # metadata.generation bumps on spec changes
    name_rule: str = SUBDOMAIN
    custom: bool = False  # served from a CRD: no strategic merge patch, items keep kind/apiVersion
    verbs: tuple[str, ...] = ALL_VERBS
    # a CRD's scale subresource paths; built-ins use spec.replicas / status.replicas
    scale_paths: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """`deployments.apps`, `configmaps`: how errors name the resource."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def group_kind(self) -> str:
        """`Deployment.apps`, `ConfigMap`: how validation errors name the kind."""
        return f"{self.kind}.{self.group}" if self.group else self.kind

    @property
    def key(self) -> tuple[str, str]:
        """Storage identity: a group's resource is one set of objects whatever version serves it."""
        return (self.group, self.plural)

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    def discovery_entry(self) -> list[dict[str, Any]]:
        entry: dict[str, Any] = {
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": list(self.verbs),
        }
        if self.short_names:
            entry["shortNames"] = list(self.short_names)
        if self.categories:
            entry["categories"] = list(self.categories)
        entries = [entry]
        for sub in self.subresources:
            sub_entry: dict[str, Any] = {
                "name": f"{self.plural}/{sub}",
                "singularName": "",
                "namespaced": self.namespaced,
                "kind": self.kind,
                "verbs": ["get", "patch", "update"],
            }
            if sub == "scale":
                sub_entry.update(group="autoscaling", version="v1", kind="Scale")
            entries.append(sub_entry)
        return entries


def _rt(group: str, version: str, plural: str, kind: str, namespaced: bool = True, **kw: Any) -> ResourceType:
    return ResourceType(group, version, plural, kw.pop("singular", kind.lower()), kind, namespaced, **kw)


BUILTIN: tuple[ResourceType, ...] = (
    _rt("", "v1", "namespaces", "Namespace", False, short_names=("ns",), subresources=("status",), name_rule=LABEL),
    _rt("", "v1", "nodes", "Node", False, short_names=("no",), subresources=("status",)),
    _rt("", "v1", "pods", "Pod", short_names=("po",), categories=("all",), subresources=("status",)),
    _rt("", "v1", "services", "Service", short_names=("svc",), categories=("all",), subresources=("status",),
        name_rule=DNS1035),
    _rt("", "v1", "secrets", "Secret"),
    _rt("", "v1", "configmaps", "ConfigMap", short_names=("cm",)),
    _rt("", "v1", "serviceaccounts", "ServiceAccount", short_names=("sa",)),
    _rt("", "v1", "events", "Event", short_names=("ev",), name_rule=PATH_SEGMENT),
    _rt("apps", "v1", "deployments", "Deployment", short_names=("deploy",), categories=("all",),
        subresources=("status", "scale"), generation=True),
    _rt("apps", "v1", "replicasets", "ReplicaSet", short_names=("rs",), categories=("all",),
        subresources=("status", "scale"), generation=True),
    _rt("networking.k8s.io", "v1", "ingresses", "Ingress", short_names=("ing",), subresources=("status",),
        generation=True),
    _rt("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", short_names=("netpol",), generation=True),
    _rt("networking.k8s.io", "v1", "ingressclasses", "IngressClass", False, generation=True),
    _rt("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler", short_names=("hpa",),
        categories=("all",), subresources=("status",), generation=True),
    _rt("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", short_names=("pdb",),
        subresources=("status",), generation=True),
    _rt("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False,
        short_names=("crd", "crds"), categories=("api-extensions",), subresources=("status",), generation=True),
)  # fmt: skip

# group -> preferred version, in the order /apis lists groups
GROUP_ORDER = ("apps", "networking.k8s.io", "autoscaling", "policy", "apiextensions.k8s.io")

SPC_GROUP = "secrets-store.csi.x-k8s.io"
_SPC_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "SecretProviderClass is the Schema for the secretproviderclasses API",
    "properties": {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
        "spec": {
            "type": "object",
            "properties": {
                "parameters": {"type": "object", "additionalProperties": {"type": "string"}},
                "provider": {"type": "string"},
                "secretObjects": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
                            "data": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "properties": {"key": {"type": "string"}, "objectName": {"type": "string"}},
                                },
                            },
                            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                            "secretName": {"type": "string"},
                            "type": {"type": "string"},
                        },
                    },
                },
            },
        },
        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    },
}


def secret_provider_class_crd() -> dict[str, Any]:
    """The CRD the Secrets Store CSI driver installs (AKS add-on `azure-keyvault-secrets-provider`)."""
    version = {"served": True, "schema": {"openAPIV3Schema": _SPC_SCHEMA}, "subresources": {"status": {}}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"secretproviderclasses.{SPC_GROUP}",
            "labels": {"addonmanager.kubernetes.io/mode": "Reconcile", "kubernetes.azure.com/managedby": "aks"},
        },
        "spec": {
            "group": SPC_GROUP,
            "names": {
                "kind": "SecretProviderClass",
                "listKind": "SecretProviderClassList",
                "plural": "secretproviderclasses",
                "singular": "secretproviderclass",
            },
            "scope": "Namespaced",
            "versions": [
                {"name": "v1", "storage": True, **version},
                {"name": "v1alpha1", "storage": False, **version},
            ],
        },
    }


def types_from_crd(crd: dict[str, Any]) -> list[ResourceType]:
    """One ResourceType per served version of a CRD."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    result = []
    for version in spec.get("versions") or []:
        if not version.get("served", True):
            continue
        subs = version.get("subresources") or {}
        scale = subs.get("scale") or {}
        result.append(
            ResourceType(
                group=spec.get("group", ""),
                version=version.get("name", "v1"),
                plural=names.get("plural", ""),
                singular=names.get("singular") or names.get("kind", "").lower(),
                kind=names.get("kind", ""),
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                subresources=tuple(s for s in ("status", "scale") if s in subs),
                generation=True,
                name_rule=PATH_SEGMENT,
                custom=True,
                scale_paths={k: v for k, v in scale.items() if isinstance(v, str)},
            )
        )
    return result


class Registry:
    """The resource types one cluster serves right now (built-ins plus established CRDs)."""

    def __init__(self) -> None:
        self._types: dict[tuple[str, str, str], ResourceType] = {}
        self._crd_types: dict[str, list[ResourceType]] = {}
        for rt in BUILTIN:
            self._types[(rt.group, rt.version, rt.plural)] = rt

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._types.get((group, version, plural))

    def by_kind(self, api_version: str, kind: str) -> ResourceType | None:
        group, _, version = api_version.rpartition("/")
        for rt in self._types.values():
            if rt.group == group and rt.version == version and rt.kind == kind:
                return rt
        return None

    def storage_type(self, group: str, plural: str) -> ResourceType | None:
        """The type to read stored objects of a group/resource with (the first served version)."""
        for rt in self._types.values():
            if rt.group == group and rt.plural == plural:
                return rt
        return None

    def all(self) -> Iterable[ResourceType]:
        return self._types.values()

    def groups(self) -> dict[str, list[str]]:
        """group -> served versions (preferred first), excluding the core group."""
        found: dict[str, list[str]] = {}
        for rt in self._types.values():
            if rt.group and rt.version not in found.setdefault(rt.group, []):
                found[rt.group].append(rt.version)
        ordered = {g: found[g] for g in GROUP_ORDER if g in found}
        ordered.update({g: v for g, v in sorted(found.items()) if g not in ordered})
        return ordered

    def in_group_version(self, group: str, version: str) -> list[ResourceType]:
        return [rt for rt in self._types.values() if rt.group == group and rt.version == version]

    def set_crd(self, crd: dict[str, Any]) -> None:
        name = crd["metadata"]["name"]
        self.remove_crd(name)
        types = types_from_crd(crd)
        self._crd_types[name] = types
        for rt in types:
            self._types[(rt.group, rt.version, rt.plural)] = rt

    def remove_crd(self, name: str) -> None:
        for rt in self._crd_types.pop(name, []):
            self._types.pop((rt.group, rt.version, rt.plural), None)
