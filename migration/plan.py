"""Plans: what a phase will change, computed from desired vs observed state, before any change.

The same `Plan` object is rendered for `mmrv-migrate plan`, the approval description, the
dry run and the drift report, and consumed by apply. A drift check is a plan expected to
be empty. Pure: no SDK, no Prefect, no network.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ActionKind = Literal["create", "update", "delete", "noop", "blocked"]

# What each kind means to a person reading the plan.
KIND_SYMBOL: dict[str, str] = {"create": "+", "update": "~", "delete": "-", "noop": "=", "blocked": "!"}


class FieldChange(BaseModel):
    model_config = ConfigDict(frozen=True)

    field: str
    observed: Any = None
    desired: Any = None


class Action(BaseModel):
    """One change (or the decision not to change) to one resource, with its reason.

    `blocked` marks a resource that needs a change the tool will not make, e.g. one it
    does not own (no `managed-by: mmrv-migrate` tag): the plan says so instead.
    """

    model_config = ConfigDict(frozen=True)

    kind: ActionKind
    resource: str  # an ARM id, a Kubernetes ref, a record name ...
    resource_type: str = ""
    reason: str = ""
    changes: tuple[FieldChange, ...] = ()
    depends_on: tuple[str, ...] = ()  # resources that must be applied first
    desired: dict[str, Any] = Field(default_factory=dict)  # what apply sends; never a secret value

    @property
    def changes_something(self) -> bool:
        return self.kind in ("create", "update", "delete")


class Plan(BaseModel):
    model_config = ConfigDict(frozen=True)

    phase: str
    environment: str
    actions: tuple[Action, ...] = ()

    @property
    def changes(self) -> list[Action]:
        return [a for a in self.actions if a.changes_something]

    @property
    def blocked(self) -> list[Action]:
        return [a for a in self.actions if a.kind == "blocked"]

    @property
    def is_empty(self) -> bool:
        """True when applying would change nothing (what a clean drift check expects)."""
        return not self.changes and not self.blocked

    def counts(self) -> dict[str, int]:
        counted = Counter(a.kind for a in self.actions)
        return {kind: counted.get(kind, 0) for kind in ("create", "update", "delete", "noop", "blocked")}

    def summary(self) -> str:
        c = self.counts()
        return (
            f"{self.phase} [{self.environment}]: {c['create']} to create, {c['update']} to update, "
            f"{c['delete']} to delete, {c['noop']} unchanged" + (f", {c['blocked']} blocked" if c["blocked"] else "")
        )

    def to_json_dict(self) -> dict[str, Any]:
        """The stable `plan --json` shape: scripts count what would change from it."""
        return {
            "phase": self.phase,
            "environment": self.environment,
            "summary": self.counts(),
            "actions": [
                {
                    "kind": a.kind,
                    "resource": a.resource,
                    "resource_type": a.resource_type,
                    "reason": a.reason,
                    "changes": [c.model_dump(mode="json") for c in a.changes],
                }
                for a in self.actions
            ],
        }

    def render_markdown(self, *, include_noop: bool = False) -> str:
        lines = [f"### Plan: {self.summary()}", ""]
        shown = [a for a in self.actions if include_noop or a.kind != "noop"]
        if not shown:
            lines.append("Nothing to change: what is there matches the spec.")
            return "\n".join(lines) + "\n"
        lines += ["| | resource | type | reason |", "|---|---|---|---|"]
        for a in shown:
            reason = a.reason
            if a.changes:
                reason += "; " + ", ".join(f"`{c.field}`: {_show(c.observed)} → {_show(c.desired)}" for c in a.changes)
            lines.append(f"| {KIND_SYMBOL[a.kind]} {a.kind} | `{a.resource}` | {a.resource_type} | {reason} |")
        return "\n".join(lines) + "\n"


def _show(value: Any) -> str:
    text = "∅" if value is None else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def diff_fields(desired: dict[str, Any], observed: dict[str, Any], prefix: str = "") -> list[FieldChange]:
    """Field-level differences, looking only at what the spec cares about (desired's keys).

    Fields the cloud adds (ids, timestamps, defaults we did not set) are not drift.
    """
    changes: list[FieldChange] = []
    for key, want in desired.items():
        have = observed.get(key) if isinstance(observed, dict) else None
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(want, dict) and isinstance(have, dict):
            changes.extend(diff_fields(want, have, path))
        elif want != have:
            changes.append(FieldChange(field=path, observed=have, desired=want))
    return changes
