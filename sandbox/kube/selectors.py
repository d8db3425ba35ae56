"""Label selectors (query strings and LabelSelector objects) and field selectors.

Field selectors are checked against the fields the API server supports for each resource:
`metadata.name` and `metadata.namespace` everywhere, plus a few per type. Any other field
is refused with 400 `field label not supported: <field>`, as the API server does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sandbox.kube.errors import ApiError, bad_request

_FIELDS_BY_PLURAL: dict[str, tuple[str, ...]] = {
    "pods": ("spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
             "status.phase", "status.podIP", "status.nominatedNodeName"),
    "events": ("involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
               "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath",
               "reason", "reportingComponent", "source", "type"),
    "secrets": ("type",),
    "namespaces": ("status.phase",),
    "replicasets": ("status.replicas",),
    "nodes": ("spec.unschedulable",),
}  # fmt: skip


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "=":
            return present and value == self.values[0]
        if self.op == "!=":
            return not present or value != self.values[0]
        if self.op == "in":
            return present and value in self.values
        if self.op == "notin":
            return not present or value not in self.values
        if self.op == "exists":
            return present
        return not present  # "!"


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside `( )`."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


_SET_RE = re.compile(r"^([^\s!=(),]+)\s+(in|notin)\s+\(([^)]*)\)$")


def parse_label_selector(text: str | None) -> list[Requirement]:
    if not text:
        return []
    requirements = []
    for part in _split_top_level(text):
        match = _SET_RE.match(part)
        if match:
            values = tuple(v.strip() for v in match.group(3).split(",") if v.strip())
            requirements.append(Requirement(match.group(1), match.group(2), values))
        elif "!=" in part:
            key, value = part.split("!=", 1)
            requirements.append(Requirement(key.strip(), "!=", (value.strip(),)))
        elif "==" in part or "=" in part:
            key, value = part.split("==", 1) if "==" in part else part.split("=", 1)
            requirements.append(Requirement(key.strip(), "=", (value.strip(),)))
        elif part.startswith("!"):
            requirements.append(Requirement(part[1:].strip(), "!"))
        elif re.fullmatch(r"[A-Za-z0-9./_-]+", part):
            requirements.append(Requirement(part, "exists"))
        else:
            raise bad_request(f'unable to parse requirement: found "{part}", expected: identifier')
    return requirements


def labels_match(requirements: list[Requirement], labels: Mapping[str, str] | None) -> bool:
    return all(r.matches(labels or {}) for r in requirements)


def selector_object_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str] | None) -> bool:
    """A metav1.LabelSelector (matchLabels + matchExpressions). An empty selector matches everything."""
    if selector is None:
        return False
    labels = labels or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    ops = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
    for expr in selector.get("matchExpressions") or []:
        op = ops.get(expr.get("operator", ""))
        if op is None or not Requirement(expr.get("key", ""), op, tuple(expr.get("values") or ())).matches(labels):
            return False
    return True


def map_selector_matches(selector: Mapping[str, str] | None, labels: Mapping[str, str] | None) -> bool:
    """A Service's plain map selector. An empty or missing one selects nothing (no endpoints)."""
    if not selector:
        return False
    labels = labels or {}
    return all(labels.get(k) == v for k, v in selector.items())


def selector_string(selector: Mapping[str, Any] | None) -> str:
    """A LabelSelector as the query-string form (what Scale.status.selector holds)."""
    if not selector:
        return ""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        op, key, values = expr.get("operator"), expr.get("key"), ",".join(expr.get("values") or [])
        parts.append(
            {"In": f"{key} in ({values})", "NotIn": f"{key} notin ({values})", "Exists": key}.get(op, f"!{key}")
        )
    return ",".join(parts)


@dataclass(frozen=True)
class FieldRequirement:
    field: str
    value: str
    negate: bool


def parse_field_selector(text: str | None, plural: str) -> list[FieldRequirement]:
    if not text:
        return []
    supported = ("metadata.name", "metadata.namespace", *_FIELDS_BY_PLURAL.get(plural, ()))
    requirements = []
    for part in _split_top_level(text):
        if "!=" in part:
            field, value = part.split("!=", 1)
            negate = True
        elif "=" in part:
            field, value = part.split("==", 1) if "==" in part else part.split("=", 1)
            negate = False
        else:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        field = field.strip()
        if field not in supported:
            raise ApiError(400, "BadRequest", f"field label not supported: {field}")
        requirements.append(FieldRequirement(field, value.strip(), negate))
    return requirements


def _field_value(obj: Mapping[str, Any], dotted: str) -> str:
    value: Any = obj
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    if dotted == "source" and isinstance(value, Mapping):
        value = value.get("component")
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def fields_match(requirements: list[FieldRequirement], obj: Mapping[str, Any]) -> bool:
    return all((_field_value(obj, r.field) == r.value) != r.negate for r in requirements)
