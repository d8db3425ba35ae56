"""Plan model: counts, emptiness, rendering, the stable --json shape, field diffs."""

from __future__ import annotations

from migration.plan import Action, FieldChange, Plan, diff_fields


def _plan(*actions: Action) -> Plan:
    return Plan(phase="platform", environment="staging", actions=actions)


def test_empty_plan_is_all_noop() -> None:
    plan = _plan(Action(kind="noop", resource="/subscriptions/s/resourceGroups/rg", reason="matches the spec"))
    assert plan.is_empty
    assert plan.counts() == {"create": 0, "update": 0, "delete": 0, "noop": 1, "blocked": 0}
    assert "Nothing to change" in plan.render_markdown()


def test_blocked_actions_keep_the_plan_non_empty() -> None:
    plan = _plan(Action(kind="blocked", resource="rg", reason="not owned by mmrv-migrate"))
    assert not plan.is_empty and plan.changes == [] and len(plan.blocked) == 1
    assert "1 blocked" in plan.summary()


def test_json_shape_is_stable() -> None:
    plan = _plan(
        Action(kind="create", resource="a", resource_type="acr", reason="missing"),
        Action(
            kind="update",
            resource="b",
            reason="differs",
            changes=(FieldChange(field="sku", observed="Basic", desired="Standard"),),
        ),
    )
    data = plan.to_json_dict()
    assert data["summary"]["create"] == 1 and data["summary"]["update"] == 1
    assert [a["kind"] for a in data["actions"]] == ["create", "update"]
    assert set(data["actions"][0]) >= {"kind", "resource", "reason"}
    assert data["actions"][1]["changes"] == [{"field": "sku", "observed": "Basic", "desired": "Standard"}]
    rendered = plan.render_markdown()
    assert "+ create" in rendered and "`sku`: Basic → Standard" in rendered


def test_diff_fields_only_looks_at_desired_keys() -> None:
    desired = {"sku": {"name": "Standard"}, "tags": {"managed-by": "mmrv-migrate"}, "admin": False}
    observed = {"sku": {"name": "Basic", "tier": "Basic"}, "tags": {"managed-by": "mmrv-migrate"}, "id": "x"}
    changes = diff_fields(desired, observed)
    assert [(c.field, c.observed, c.desired) for c in changes] == [
        ("sku.name", "Basic", "Standard"),
        ("admin", None, False),
    ]
