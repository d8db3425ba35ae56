"""What the API server refuses with 422 Invalid: names, labels, and the required fields of our kinds.

Messages are apimachinery's validation messages word for word, so the tool's error output
reads the same against the emulator and against AKS.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from sandbox.kube import errors
from sandbox.kube.errors import Cause, invalid_value, required_value
from sandbox.kube.resources import DNS1035, LABEL, PATH_SEGMENT, SUBDOMAIN, ResourceType
from sandbox.kube.selectors import selector_object_matches

_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1035_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_QUALIFIED_NAME_RE = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_CONFIG_KEY_RE = re.compile(r"^[-._a-zA-Z0-9]+$")

LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and "
    "end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
DNS1035_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic "
    "character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for "
    "validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
)
QUALIFIED_NAME_MSG = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
    "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used "
    "for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)
CONFIG_KEY_MSG = "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"  # noqa: E501


def dns_label(value: str, field: str) -> list[Cause]:
    causes = []
    if len(value) > 63:
        causes.append(invalid_value(field, value, "must be no more than 63 characters"))
    if not _LABEL_RE.match(value):
        causes.append(invalid_value(field, value, LABEL_MSG))
    return causes


def dns_subdomain(value: str, field: str) -> list[Cause]:
    causes = []
    if len(value) > 253:
        causes.append(invalid_value(field, value, "must be no more than 253 characters"))
    if not _SUBDOMAIN_RE.match(value):
        causes.append(invalid_value(field, value, SUBDOMAIN_MSG))
    return causes


def dns1035(value: str, field: str) -> list[Cause]:
    causes = []
    if len(value) > 63:
        causes.append(invalid_value(field, value, "must be no more than 63 characters"))
    if not _DNS1035_RE.match(value):
        causes.append(invalid_value(field, value, DNS1035_MSG))
    return causes


def name_causes(rt: ResourceType, name: str, field: str = "metadata.name") -> list[Cause]:
    if rt.name_rule == LABEL:
        return dns_label(name, field)
    if rt.name_rule == DNS1035:
        return dns1035(name, field)
    if rt.name_rule == SUBDOMAIN:
        return dns_subdomain(name, field)
    if rt.name_rule == PATH_SEGMENT and (name in (".", "..") or "/" in name or "%" in name):
        return [invalid_value(field, name, "may not contain '/' or '%' and may not be '.' or '..'")]
    return []


def check_name(rt: ResourceType, name: str) -> None:
    """Raise 422 for an invalid name (used before anything else is looked at)."""
    causes = name_causes(rt, name)
    if causes:
        raise errors.invalid(rt, name, causes)


def _qualified_key(key: str, field: str) -> list[Cause]:
    prefix, _, name = key.rpartition("/")
    causes = []
    if prefix:
        causes += [
            Cause(
                c.reason,
                c.message.replace("a lowercase RFC 1123 subdomain", "prefix part a lowercase RFC 1123 subdomain"),
                c.field,
            )
            for c in dns_subdomain(prefix, field)
        ]
    if not name:
        causes.append(invalid_value(field, key, "name part must be non-empty"))
    elif len(name) > 63:
        causes.append(invalid_value(field, key, "name part must be no more than 63 characters"))
    elif not _QUALIFIED_NAME_RE.match(name):
        causes.append(invalid_value(field, key, QUALIFIED_NAME_MSG))
    return causes


def _metadata_causes(meta: dict[str, Any]) -> list[Cause]:
    causes: list[Cause] = []
    labels = meta.get("labels") or {}
    if not isinstance(labels, dict):
        return [invalid_value("metadata.labels", labels, "must be a map of strings")]
    for key, value in labels.items():
        causes += _qualified_key(key, "metadata.labels")
        if not isinstance(value, str):
            causes.append(invalid_value("metadata.labels", value, "must be a string"))
        elif len(value) > 63:
            causes.append(invalid_value("metadata.labels", value, "must be no more than 63 characters"))
        elif not _LABEL_VALUE_RE.match(value):
            causes.append(invalid_value("metadata.labels", value, LABEL_VALUE_MSG))
    for key, value in (meta.get("annotations") or {}).items():
        causes += _qualified_key(key, "metadata.annotations")
        if not isinstance(value, str):
            causes.append(invalid_value("metadata.annotations", value, "must be a string"))
    return causes


def _containers_causes(spec: dict[str, Any], field: str) -> list[Cause]:
    causes: list[Cause] = []
    containers = spec.get("containers")
    if not containers:
        return [required_value(f"{field}.containers")]
    seen: set[str] = set()
    for kind in ("initContainers", "containers"):
        for i, container in enumerate(spec.get(kind) or []):
            where = f"{field}.{kind}[{i}]"
            name = container.get("name")
            if not name:
                causes.append(required_value(f"{where}.name"))
            else:
                causes += dns_label(name, f"{where}.name")
                if name in seen:
                    causes.append(errors.duplicate_value(f"{where}.name", name))
                seen.add(name)
            if not container.get("image"):
                causes.append(required_value(f"{where}.image"))
            for j, port in enumerate(container.get("ports") or []):
                number = port.get("containerPort")
                if not isinstance(number, int) or not 0 < number < 65536:
                    causes.append(
                        invalid_value(
                            f"{where}.ports[{j}].containerPort", number, "must be between 1 and 65535, inclusive"
                        )
                    )
            for j, env in enumerate(container.get("env") or []):
                if not env.get("name"):
                    causes.append(required_value(f"{where}.env[{j}].name"))
    volume_names = [v.get("name") for v in spec.get("volumes") or []]
    for i, name in enumerate(volume_names):
        if not name:
            causes.append(required_value(f"{field}.volumes[{i}].name"))
        elif volume_names.index(name) != i:
            causes.append(errors.duplicate_value(f"{field}.volumes[{i}].name", name))
    for kind in ("initContainers", "containers"):
        for i, container in enumerate(spec.get(kind) or []):
            for j, mount in enumerate(container.get("volumeMounts") or []):
                if mount.get("name") not in volume_names:
                    causes.append(
                        Cause("FieldValueNotFound", f"Not found: {errors._go_value(mount.get('name'))}",
                              f"{field}.{kind}[{i}].volumeMounts[{j}].name")
                    )  # fmt: skip
    return causes


def _workload_causes(obj: dict[str, Any]) -> list[Cause]:
    spec = obj.get("spec") or {}
    causes: list[Cause] = []
    selector = spec.get("selector")
    if not selector or not (selector.get("matchLabels") or selector.get("matchExpressions")):
        causes.append(required_value("spec.selector"))
    template = spec.get("template") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    if selector and not selector_object_matches(selector, labels):
        causes.append(
            invalid_value("spec.template.metadata.labels", labels, "`selector` does not match template `labels`")
        )
    replicas = spec.get("replicas")
    if isinstance(replicas, int) and replicas < 0:
        causes.append(invalid_value("spec.replicas", replicas, "must be greater than or equal to 0"))
    causes += _containers_causes(template.get("spec") or {}, "spec.template.spec")
    return causes


def _service_causes(obj: dict[str, Any]) -> list[Cause]:
    spec = obj.get("spec") or {}
    causes: list[Cause] = []
    kind = spec.get("type", "ClusterIP")
    if kind not in ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName"):
        causes.append(
            errors.not_supported("spec.type", kind, ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"])
        )
    ports = spec.get("ports") or []
    if not ports and kind != "ExternalName" and spec.get("clusterIP") != "None":
        causes.append(required_value("spec.ports"))
    for i, port in enumerate(ports):
        number = port.get("port")
        if not isinstance(number, int) or not 0 < number < 65536:
            causes.append(invalid_value(f"spec.ports[{i}].port", number, "must be between 1 and 65535, inclusive"))
        if len(ports) > 1 and not port.get("name"):
            causes.append(required_value(f"spec.ports[{i}].name"))
    return causes


def _config_causes(obj: dict[str, Any]) -> list[Cause]:
    causes: list[Cause] = []
    for field in ("data", "binaryData"):
        for key in obj.get(field) or {}:
            if not _CONFIG_KEY_RE.match(key) or len(key) > 253:
                causes.append(invalid_value(f"{field}[{key}]", key, CONFIG_KEY_MSG))
    if obj.get("kind") == "Secret":
        for key, value in (obj.get("data") or {}).items():
            try:
                base64.b64decode(value, validate=True)
            except (binascii.Error, TypeError, ValueError):
                causes.append(invalid_value(f"data[{key}]", "<value>", "must be base64-encoded"))
    return causes


def _hpa_causes(obj: dict[str, Any]) -> list[Cause]:
    spec = obj.get("spec") or {}
    causes = []
    if not (spec.get("scaleTargetRef") or {}).get("name"):
        causes.append(required_value("spec.scaleTargetRef.name"))
    max_replicas = spec.get("maxReplicas")
    if not isinstance(max_replicas, int) or max_replicas < 1:
        causes.append(invalid_value("spec.maxReplicas", max_replicas, "must be greater than or equal to 1"))
    elif isinstance(spec.get("minReplicas"), int) and spec["minReplicas"] > max_replicas:
        causes.append(
            invalid_value("spec.minReplicas", spec["minReplicas"], "must be less than or equal to maxReplicas")
        )
    return causes


def _pdb_causes(obj: dict[str, Any]) -> list[Cause]:
    spec = obj.get("spec") or {}
    if spec.get("minAvailable") is not None and spec.get("maxUnavailable") is not None:
        return [invalid_value("spec", spec, "minAvailable and maxUnavailable cannot be both set")]
    return []


def _ingress_causes(obj: dict[str, Any]) -> list[Cause]:
    causes = []
    for i, rule in enumerate((obj.get("spec") or {}).get("rules") or []):
        for j, path in enumerate(((rule.get("http") or {}).get("paths")) or []):
            where = f"spec.rules[{i}].http.paths[{j}]"
            if path.get("pathType") not in ("Exact", "Prefix", "ImplementationSpecific"):
                causes.append(required_value(f"{where}.pathType", "pathType must be specified"))
            if not (path.get("backend") or {}).get("service", {}).get("name"):
                causes.append(required_value(f"{where}.backend", "one of service or resource must be specified"))
    return causes


_BY_KIND = {
    "Deployment": _workload_causes,
    "ReplicaSet": _workload_causes,
    "Service": _service_causes,
    "ConfigMap": _config_causes,
    "Secret": _config_causes,
    "HorizontalPodAutoscaler": _hpa_causes,
    "PodDisruptionBudget": _pdb_causes,
    "Ingress": _ingress_causes,
}


def validate(rt: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None = None) -> None:
    meta = obj.get("metadata") or {}
    name = meta.get("name", "")
    causes = name_causes(rt, name) + _metadata_causes(meta)
    if rt.kind == "Pod":
        causes += _containers_causes(obj.get("spec") or {}, "spec")
    causes += _BY_KIND.get(rt.kind, lambda o: [])(obj)
    if old is not None and rt.kind in ("Deployment", "ReplicaSet"):
        before, after = (old.get("spec") or {}).get("selector"), (obj.get("spec") or {}).get("selector")
        if before != after:
            causes.append(invalid_value("spec.selector", after, "field is immutable"))
    if rt.kind == "CustomResourceDefinition":
        spec = obj.get("spec") or {}
        plural, group = (spec.get("names") or {}).get("plural"), spec.get("group")
        if name != f"{plural}.{group}":
            causes.append(invalid_value("metadata.name", name, 'must be spec.names.plural+"."+spec.group'))
    if causes:
        raise errors.invalid(rt, name, causes)
