"""Drift: what the spec and the last successful run say should be, against what is there.

A drift check is a set of plans that are expected to be empty (the platform's, the images',
the ship's manifests and IAM federation, the secrets' by hash) plus the DNS records the
cutover left, compared with the cutover state it saved. This module turns each of those into
`Drift` items a person can act on (what differs, and the command that puts it back) and
gathers them in a `DriftReport` per environment. Pure: no SDK, no Prefect, no network.

    plan_drift(area, plan, remedy)               Plan -> drift items (create/update/delete/blocked)
    secrets_drift(report, remedy)                a dry-run SecretsReport -> drift items (names only)
    check_dns_name(env, component, name, ...)    Route 53 vs the saved cutover state -> DnsCheck
    DriftReport.render_markdown() / table_rows() / to_json_dict()
    DriftFound (exit 3): there is drift;  DriftCheckFailed (exit 1): an area could not be read

An area that cannot be read (the cluster does not exist yet, a permission is missing) is an
error, never drift: the report keeps the two apart.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from migration.cutover import (
    CutoverError,
    NamePlan,
    RecordSet,
    SavedRecords,
    canonical,
    describe,
    has_our_weighted_sets,
    normalize_name,
    plan_name,
    restore_changes,
    variable_name,
)
from migration.errors import MigrationError
from migration.plan import Action, Plan
from migration.secrets import SecretsReport
from migration.spec import Cutover

Area = Literal["azure", "images", "kubernetes", "secrets", "dns"]
AREAS: tuple[Area, ...] = ("azure", "images", "kubernetes", "secrets", "dns")
AREA_TITLES: dict[str, str] = {
    "azure": "Azure resources",
    "images": "images ECR -> ACR",
    "kubernetes": "Kubernetes objects",
    "secrets": "Key Vault secrets",
    "dns": "DNS records",
}
MAX_FIELDS_SHOWN = 4
MAX_VALUE_SHOWN = 60


# --- remedies ------------------------------------------------------------------------------


def remedy_command(area: Area, env: str, component: str = "backend") -> str:
    """The command that puts an area back as the spec says (what `--remediate` runs)."""
    if area == "azure":
        return f"mmrv-migrate run platform --env {env}"
    if area == "images":
        return f"mmrv-migrate run images --env {env}"
    if area in ("kubernetes", "secrets"):
        return f"mmrv-migrate run ship --env {env} --component {component}"
    return f"mmrv-migrate drift --env {env} --remediate"


def rollback_command(env: str, component: str) -> str:
    return f"mmrv-migrate run cutover --env {env} --component {component} --rollback"


NOT_OWNED_REMEDY = (
    "not the tool's to change (no managed-by: mmrv-migrate): fix it by hand, or hand it to the tool "
    "(tag/label it) and run the phase"
)


# --- the items -----------------------------------------------------------------------------


class Drift(BaseModel):
    """One difference between what should be and what is there. Names and fields only, never a secret value."""

    model_config = ConfigDict(frozen=True)

    area: Area
    resource: str
    resource_type: str = ""
    differs: str  # what differs, for a person
    remedy: str  # what puts it back
    owned: bool = True  # the tool owns it: `--remediate` may put it back


def _show(value: Any) -> str:
    text = "∅" if value is None else str(value)
    return text if len(text) <= MAX_VALUE_SHOWN else text[: MAX_VALUE_SHOWN - 3] + "..."


def _fields(action: Action) -> str:
    shown = [f"{c.field}: {_show(c.observed)} → {_show(c.desired)}" for c in action.changes[:MAX_FIELDS_SHOWN]]
    more = len(action.changes) - MAX_FIELDS_SHOWN
    if more > 0:
        shown.append(f"and {more} more field(s)")
    return "; ".join(shown)


def action_drift(area: Area, action: Action, remedy: str) -> Drift | None:
    """The drift an action of an expected-empty plan stands for (None for a noop)."""
    if action.kind == "noop":
        return None
    if action.kind == "blocked":
        detail = _fields(action)
        return Drift(
            area=area,
            resource=action.resource,
            resource_type=action.resource_type,
            differs=f"blocked: {action.reason}" + (f" ({detail})" if detail else ""),
            remedy=NOT_OWNED_REMEDY,
            owned=False,
        )
    if action.kind == "create":
        differs = f"missing: {action.reason}" if action.reason else "missing"
    elif action.kind == "delete":
        differs = f"should not be there: {action.reason}" if action.reason else "should not be there"
    else:
        differs = _fields(action) or action.reason or "differs"
    return Drift(
        area=area, resource=action.resource, resource_type=action.resource_type, differs=differs, remedy=remedy
    )


def plan_drift(area: Area, plan: Plan, remedy: str) -> list[Drift]:
    """Every action of a plan that would change something (or is blocked), as drift."""
    return [d for a in plan.actions if (d := action_drift(area, a, remedy)) is not None]


def secrets_drift(report: SecretsReport, remedy: str) -> list[Drift]:
    """A dry-run secrets report: anything not `unchanged` is drift. Names only."""
    out = []
    for secret in report.secrets:
        if secret.status == "unchanged":
            continue
        source = f"{secret.source_service} {secret.source}" + (f" key {secret.json_key}" if secret.json_key else "")
        if secret.status == "would-create":
            differs = f"not in Key Vault (source: {source})"
        elif secret.status == "would-update":
            differs = f"Key Vault holds another value than {source} (compared by hash)"
        else:
            differs = f"{secret.status} (source: {source})"
        out.append(
            Drift(
                area="secrets",
                resource=f"{report.vault}/secrets/{secret.name}",
                resource_type="Key Vault secret",
                differs=differs,
                remedy=remedy,
            )
        )
    return out


# --- DNS: Route 53 against the cutover's saved state ------------------------------------------


class DnsCheck(BaseModel):
    """One public name: where Route 53 stands against the cutover state saved for it.

    `restore` is the exact record sets to put back when that is safe (the cutover finished
    or was rolled back, and only the record type it shifts differs); None when a person
    must decide (a cutover may be running, or records it never touched changed).
    """

    name: str
    component: str
    state: str  # for the report: "no cutover", "cutover complete (aws 0 / azure 100)" ...
    drift: Drift | None = None
    restore: list[RecordSet] | None = None
    zone_id: str = ""


def _weights(current: Sequence[RecordSet]) -> str:
    pairs = {rs.get("SetIdentifier"): rs.get("Weight") for rs in current if rs.get("Weight") is not None}
    if not pairs:
        return "no weighted records"
    return " / ".join(f"{k} {v}" for k, v in sorted(pairs.items(), key=lambda kv: str(kv[0])))


_RECORD_FIELDS = (("Weight", "weight"), ("TTL", "TTL"), ("ResourceRecords", "value"), ("AliasTarget", "alias"))


def _field_text(rs: RecordSet, key: str) -> str:
    value = canonical(rs).get(key)
    if value is None:
        return "none"
    if key == "ResourceRecords":
        return ", ".join(value)
    if key == "AliasTarget":
        return str(value.get("DNSName"))
    return str(value)


def _difference(expected: Sequence[RecordSet], current: Sequence[RecordSet], left: str = "the cutover left") -> str:
    """What differs between the expected record sets and Route 53's, one line: per record set, the fields."""
    changes = restore_changes(list(expected), list(current))
    extra = {
        (c.record_set.get("Type"), c.record_set.get("SetIdentifier")): c.record_set
        for c in changes
        if c.action == "DELETE"
    }
    missing = {
        (c.record_set.get("Type"), c.record_set.get("SetIdentifier")): c.record_set
        for c in changes
        if c.action == "CREATE"
    }
    parts = []
    for key in [k for k in missing if k in extra]:
        have, want = extra.pop(key), missing.pop(key)
        label = f"{key[0]} set {key[1]}" if key[1] else f"{key[0]} record"
        fields = [
            f"{name} {_field_text(have, field)} ({left} {_field_text(want, field)})"
            for field, name in _RECORD_FIELDS
            if canonical(have).get(field) != canonical(want).get(field)
        ]
        parts.append(f"{label}: " + (", ".join(fields) or "differs"))
    parts += [f"extra: {describe(rs)}" for rs in extra.values()]
    parts += [f"missing: {describe(rs)}" for rs in missing.values()]
    return "; ".join(parts) or "the records differ"


def _safe_restore(
    plan: NamePlan, expected: Sequence[RecordSet], current: Sequence[RecordSet]
) -> list[RecordSet] | None:
    """`expected` when every differing record set is of the type the cutover shifts (the tool's), else None."""
    changes = restore_changes(list(expected), list(current))
    if changes and all(str(c.record_set.get("Type", "")).upper() == plan.record_type for c in changes):
        return [dict(rs) for rs in expected]
    return None


def check_dns_name(
    env: str,
    component: str,
    name: str,
    saved: SavedRecords | None,
    current: Sequence[RecordSet],
    policy: Cutover,
    *,
    spec_name: str = "",
) -> DnsCheck:
    """Route 53's records for one of the component's public names vs the cutover state saved for it.

    No saved state and no weighted pair of ours: no cutover yet, clean. A cutover that
    finished must show its last state (AWS at weight 0); one rolled back or restored, the
    saved original (or records changed since then without our weighted pair: not ours any
    more); one in progress, a state of the cutover at the weight it recorded.
    """
    wanted = normalize_name(name)
    current = list(current)
    rollback = rollback_command(env, component)

    def drift(differs: str, remedy: str, owned: bool = True) -> Drift:
        return Drift(
            area="dns",
            resource=wanted,
            resource_type="Route 53 record sets",
            differs=differs,
            remedy=remedy,
            owned=owned,
        )

    if saved is None:
        if has_our_weighted_sets(current):
            where = variable_name(spec_name, env, wanted) if spec_name else "its Prefect Variable"
            return DnsCheck(
                name=wanted,
                component=component,
                state="weighted pair without a saved cutover state",
                drift=drift(
                    f"Route 53 shows the cutover's weighted pair ({_weights(current)}) but no saved cutover state "
                    f"was found ({where})",
                    "restore the records from the audit artifact `cutover-saved-...` by hand",
                    owned=False,
                ),
            )
        return DnsCheck(name=wanted, component=component, state="no cutover")

    try:
        plan = plan_name(wanted, saved.record_sets, saved.azure_target or "", policy)
    except CutoverError as exc:
        return DnsCheck(
            name=wanted,
            component=component,
            state=f"cutover {saved.status}: cannot be replayed",
            drift=drift(
                f"the saved cutover state cannot be replayed with the spec's cutover policy ({exc})",
                f"roll back (`{rollback}`) and cut over again",
                owned=False,
            ),
        )
    try:
        position: int | None = plan.position(current)
    except CutoverError:
        position = None
    shown = _weights(current)

    if saved.status == "complete":
        expected = plan.complete
        if position == len(plan.steps):
            return DnsCheck(name=wanted, component=component, state=f"cutover complete ({shown})")
        restore = _safe_restore(plan, expected, current)
        how = f"put back the state the cutover left with `mmrv-migrate drift --env {env} --remediate`"
        return DnsCheck(
            name=wanted,
            component=component,
            state="cutover complete; Route 53 changed since",
            drift=drift(
                f"changed after the completed cutover: {_difference(expected, current)}",
                f"{how}, or roll back: `{rollback}`"
                if restore is not None
                else f"fix by hand, or roll back: `{rollback}`",
                owned=restore is not None,
            ),
            restore=restore,
        )

    if saved.status in ("restored", "rolled-back"):
        if position == 0:
            return DnsCheck(name=wanted, component=component, state=f"cutover {saved.status}: the saved original")
        if not has_our_weighted_sets(current):
            # changed after the restore, by its owner: the next cutover saves what is there then
            return DnsCheck(name=wanted, component=component, state=f"cutover {saved.status}; changed since (not ours)")
        restore = _safe_restore(plan, plan.saved, current)
        return DnsCheck(
            name=wanted,
            component=component,
            state=f"cutover {saved.status}; weighted pair back",
            drift=drift(
                f"the cutover was {saved.status}, but Route 53 shows the weighted pair again ({shown}): "
                + _difference(plan.saved, current, "the rollback left"),
                f"roll back again: `{rollback}`",
                owned=restore is not None,
            ),
            restore=restore,
        )

    # saved / in-progress: a cutover may be running now; never restore, say what to do
    resume = f"run the cutover again to continue from what Route 53 shows, or roll back: `{rollback}`"
    if position is None:
        return DnsCheck(
            name=wanted,
            component=component,
            state=f"cutover {saved.status} (azure {saved.azure_weight}%): unknown state",
            drift=drift(
                f"Route 53 shows {'; '.join(describe(rs) for rs in current) or 'no record'}, neither the saved "
                f"original nor a state of the cutover to {saved.azure_target}",
                f"fix by hand, or roll back: `{rollback}`",
                owned=False,
            ),
        )
    weights = plan.weights_at(position)
    azure = weights[1] if weights else 0
    if azure == saved.azure_weight:
        return DnsCheck(name=wanted, component=component, state=f"cutover {saved.status} at azure {azure}%")
    return DnsCheck(
        name=wanted,
        component=component,
        state=f"cutover {saved.status}: weights moved",
        drift=drift(
            f"Route 53 shows azure at {azure}% ({shown}); the cutover recorded azure at {saved.azure_weight}% "
            f"(status {saved.status})",
            resume,
            owned=False,
        ),
    )


# --- the report ----------------------------------------------------------------------------


class Remediation(BaseModel):
    area: Area
    action: str  # what ran: "platform_flow", "restore staging-api.mmrv.example.com" ...
    ok: bool
    detail: str = ""


class DriftReport(BaseModel):
    """One environment's drift check: the drift found, what was compared per area, what could not be read."""

    environment: str
    spec: str = ""
    items: list[Drift] = Field(default_factory=list)
    checked: dict[str, int] = Field(default_factory=dict)  # area -> resources compared
    errors: dict[str, str] = Field(default_factory=dict)  # area -> why it could not be read
    notes: list[str] = Field(default_factory=list)  # "<area>: ..." (what was seen, not drift)
    remediated: list[Remediation] = Field(default_factory=list)
    checked_at: str | None = None

    @property
    def is_clean(self) -> bool:
        """Every area was read and nothing differs."""
        return not self.items and not self.errors

    @property
    def has_drift(self) -> bool:
        return bool(self.items)

    def by_area(self) -> dict[str, list[Drift]]:
        out: dict[str, list[Drift]] = {a: [] for a in AREAS}
        for item in self.items:
            out[item.area].append(item)
        return out

    def drifted_areas(self) -> list[str]:
        return [a for a, items in self.by_area().items() if items]

    def summary(self) -> str:
        if self.is_clean:
            total = sum(self.checked.values())
            return f"drift [{self.environment}]: clean ({total} resource(s) compared in {len(self.checked)} area(s))"
        parts = []
        if self.items:
            counts = ", ".join(f"{a} {len(i)}" for a, i in self.by_area().items() if i)
            parts.append(f"{len(self.items)} drift(s) ({counts})")
        if self.errors:
            parts.append(f"{len(self.errors)} area(s) could not be read ({', '.join(self.errors)})")
        return f"drift [{self.environment}]: " + "; ".join(parts)

    def table_rows(self) -> list[dict[str, str]]:
        """The table artifact: one row per drift, per unreadable area, and one per clean area."""
        rows = []
        for area in AREAS:
            items = self.by_area()[area]
            for d in items:
                rows.append(
                    {
                        "area": area,
                        "status": "drift" if d.owned else "drift (not owned)",
                        "resource": d.resource,
                        "type": d.resource_type,
                        "what differs": d.differs,
                        "remedy": d.remedy,
                    }
                )
            if area in self.errors:
                rows.append(
                    {
                        "area": area,
                        "status": "error",
                        "resource": "-",
                        "type": "",
                        "what differs": f"could not be read: {self.errors[area]}",
                        "remedy": "make it readable (see the message), then check again",
                    }
                )
            elif not items and area in self.checked:
                rows.append(
                    {
                        "area": area,
                        "status": "clean",
                        "resource": "-",
                        "type": "",
                        "what differs": f"nothing: {self.checked[area]} compared",
                        "remedy": "",
                    }
                )
        return rows

    def render_markdown(self) -> str:
        lines = [f"# Drift: {self.environment}", "", self.summary(), ""]
        if self.checked_at:
            lines += [f"Checked at {self.checked_at}.", ""]
        lines += ["| area | compared | drift | status |", "|---|---|---|---|"]
        by_area = self.by_area()
        for area in AREAS:
            if area in self.errors:
                status = "**could not be read**"
            elif area not in self.checked:
                status = "not checked"
            elif by_area[area]:
                status = "**drift**"
            else:
                status = "clean"
            lines.append(f"| {AREA_TITLES[area]} | {self.checked.get(area, '-')} | {len(by_area[area])} | {status} |")
        if self.items:
            lines += ["", "## Drift", "", "| area | resource | what differs | remedy |", "|---|---|---|---|"]
            lines += [
                f"| {d.area} | `{_cell(d.resource)}` | {_cell(d.differs)} | {_cell(d.remedy)} |" for d in self.items
            ]
        if self.errors:
            lines += ["", "## Could not be read", ""]
            lines += [f"- {area}: {_cell(message)}" for area, message in self.errors.items()]
        if self.remediated:
            lines += ["", "## Remediation", ""]
            lines += [
                f"- {r.area}: {r.action}: {'done' if r.ok else 'FAILED'}"
                + (f" ({_cell(r.detail)})" if r.detail else "")
                for r in self.remediated
            ]
        if self.notes:
            lines += ["", "## Notes", ""] + [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"

    def to_json_dict(self) -> dict[str, Any]:
        """The stable `drift --json` shape."""
        return {
            "environment": self.environment,
            "clean": self.is_clean,
            "summary": self.summary(),
            "checked": dict(self.checked),
            "errors": dict(self.errors),
            "drift": [d.model_dump(mode="json") for d in self.items],
            "remediated": [r.model_dump(mode="json") for r in self.remediated],
            "notes": list(self.notes),
            "checked_at": self.checked_at,
        }


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def merge(report: DriftReport, again: DriftReport, areas: Iterable[str]) -> DriftReport:
    """`report` with the areas checked again (after a remediation) taken from `again`."""
    fresh = set(areas)
    items = [d for d in report.items if d.area not in fresh] + [d for d in again.items if d.area in fresh]
    order = {a: i for i, a in enumerate(AREAS)}
    items.sort(key=lambda d: order[d.area])
    checked = {
        **{a: n for a, n in report.checked.items() if a not in fresh},
        **{a: n for a, n in again.checked.items() if a in fresh},
    }
    errors = {
        **{a: m for a, m in report.errors.items() if a not in fresh},
        **{a: m for a, m in again.errors.items() if a in fresh},
    }
    return report.model_copy(
        update={
            "items": items,
            "checked": {a: checked[a] for a in AREAS if a in checked},
            "errors": {a: errors[a] for a in AREAS if a in errors},
            "notes": [n for n in report.notes if n.split(":", 1)[0] not in fresh]
            + [n for n in again.notes if n.split(":", 1)[0] in fresh],
            "checked_at": again.checked_at or report.checked_at,
        }
    )


# --- the outcome ---------------------------------------------------------------------------


class DriftFound(MigrationError):
    """The check ran and found drift (exit 3): the run ends Failed so automations can notify."""

    exit_code = 3

    def __init__(self, report: DriftReport) -> None:
        self.report = report
        areas = ", ".join(report.drifted_areas())
        super().__init__(f"{report.summary()}: {areas} differ from what the spec and the last run say (see the report)")

    def __reduce__(self) -> tuple[Any, ...]:  # pickled with its report (Prefect keeps a failed run's exception)
        return (type(self), (self.report,))


class DriftCheckFailed(MigrationError):
    """An area could not be read (exit 1): the check is incomplete, which is not the same as drift."""

    exit_code = 1

    def __init__(self, report: DriftReport) -> None:
        self.report = report
        details = "; ".join(f"{area}: {message}" for area, message in report.errors.items())
        super().__init__(f"{report.summary()}: {details}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.report,))
