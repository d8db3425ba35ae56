"""Drift, the pure part: plans and reports become drift items with remedies; Route 53 vs the saved cutover state."""

from __future__ import annotations

import copy
import json
import os
import pickle
import subprocess
import sys
from typing import Any

from migration.cutover import SavedRecords, plan_name
from migration.drift import (
    NOT_OWNED_REMEDY,
    Drift,
    DriftCheckFailed,
    DriftFound,
    DriftReport,
    check_dns_name,
    merge,
    plan_drift,
    remedy_command,
    secrets_drift,
)
from migration.plan import Action, FieldChange, Plan
from migration.secrets import SecretResult, SecretsReport
from migration.spec import Cutover
from tests.conftest import ROOT

POLICY = Cutover(ttl_seconds=60, weight_steps=[10, 50, 100], bake_seconds=600, error_budget=0.01)
NAME = "staging-api.mmrv.example.com"
ORIGINAL: dict[str, Any] = {
    "Name": NAME + ".",
    "Type": "A",
    "TTL": 300,
    "ResourceRecords": [{"Value": "203.0.113.10"}],
}
TXT: dict[str, Any] = {"Name": NAME + ".", "Type": "TXT", "TTL": 3600, "ResourceRecords": [{"Value": '"owner=mmrv"'}]}
AZURE = "198.51.100.7"


def saved(
    status: str = "complete", azure_weight: int = 100, records: list[dict[str, Any]] | None = None
) -> SavedRecords:
    return SavedRecords(
        spec="mmrv",
        environment="staging",
        component="backend",
        name=NAME,
        zone_id="/hostedzone/Z1",
        record_sets=records if records is not None else [ORIGINAL, TXT],
        saved_at="2025-01-01T00:00:00+00:00",
        azure_target=AZURE,
        status=status,  # type: ignore[arg-type]
        azure_weight=azure_weight,
    )


def states() -> list[tuple[dict[str, Any], ...]]:
    return plan_name(NAME, [ORIGINAL, TXT], AZURE, POLICY).states()


def check(state: SavedRecords | None, current: Any) -> Any:
    return check_dns_name("staging", "backend", NAME, state, list(current), POLICY, spec_name="mmrv")


def reweighted(records: tuple[dict[str, Any], ...], aws: int, azure: int) -> list[dict[str, Any]]:
    out = copy.deepcopy(list(records))
    for rs in out:
        if rs.get("SetIdentifier") == "aws":
            rs["Weight"] = aws
        elif rs.get("SetIdentifier") == "azure":
            rs["Weight"] = azure
    return out


# --- plans and reports -> drift ----------------------------------------------------------------


def test_every_change_of_an_expected_empty_plan_is_drift_with_a_remedy() -> None:
    plan = Plan(
        phase="platform",
        environment="staging",
        actions=(
            Action(kind="noop", resource="/rg", reason="as desired"),
            Action(kind="create", resource="/kv", resource_type="Microsoft.KeyVault/vaults", reason="not in Azure"),
            Action(
                kind="update",
                resource="/acr",
                resource_type="Microsoft.ContainerRegistry/registries",
                changes=(FieldChange(field="sku.name", observed="Premium", desired="Standard"),),
            ),
            Action(kind="blocked", resource="/aks", reason="exists without managed-by: mmrv-migrate"),
        ),
    )
    remedy = remedy_command("azure", "staging")
    assert remedy == "mmrv-migrate run platform --env staging"
    items = plan_drift("azure", plan, remedy)
    assert [(d.resource, d.owned) for d in items] == [("/kv", True), ("/acr", True), ("/aks", False)]
    created, updated, blocked = items
    assert created.differs == "missing: not in Azure" and created.remedy == remedy
    assert updated.differs == "sku.name: Premium → Standard" and updated.remedy == remedy
    assert "managed-by" in blocked.differs and blocked.remedy == NOT_OWNED_REMEDY
    assert plan_drift("azure", Plan(phase="platform", environment="staging"), remedy) == []


def test_many_changed_fields_are_summarised_and_long_values_cut() -> None:
    changes = tuple(FieldChange(field=f"f{i}", observed="x" * 100, desired="y") for i in range(6))
    plan = Plan(
        phase="ship",
        environment="staging",
        actions=(Action(kind="update", resource="Deployment a/b", changes=changes),),
    )
    (item,) = plan_drift("kubernetes", plan, "r")
    assert item.differs.count("→") == 4 and item.differs.endswith("and 2 more field(s)")
    assert "x" * 100 not in item.differs and "..." in item.differs


def test_secrets_drift_names_the_secret_and_its_source_never_a_value() -> None:
    def result(name: str, status: str, key: str | None = None) -> SecretResult:
        return SecretResult(name=name, source="mmrv/staging/db", json_key=key, status=status, verified=False)  # type: ignore[arg-type]

    report = SecretsReport(
        environment="staging",
        vault="kv-mmrv-staging",
        dry_run=True,
        secrets=[
            result("db-host", "unchanged", "host"),
            result("db-password", "would-update", "password"),
            result("jwt", "would-create"),
        ],
    )
    items = secrets_drift(report, remedy_command("secrets", "staging"))
    assert [d.resource for d in items] == ["kv-mmrv-staging/secrets/db-password", "kv-mmrv-staging/secrets/jwt"]
    assert "another value than secretsmanager mmrv/staging/db key password (compared by hash)" in items[0].differs
    assert items[1].differs.startswith("not in Key Vault")
    assert {d.remedy for d in items} == {"mmrv-migrate run ship --env staging --component backend"}
    assert "sha256" not in json.dumps([d.model_dump() for d in items])


# --- DNS against the saved cutover state ----------------------------------------------------------


def test_no_saved_state_and_no_weighted_pair_is_no_cutover_yet() -> None:
    result = check(None, [ORIGINAL, TXT])
    assert result.drift is None and result.state == "no cutover"


def test_a_weighted_pair_without_a_saved_state_is_drift_the_tool_will_not_guess_about() -> None:
    result = check(None, states()[-1])
    assert result.drift is not None and not result.drift.owned and result.restore is None
    assert "no saved cutover state" in result.drift.differs and "mmrv_cutover_mmrv_staging" in result.drift.differs


def test_a_completed_cutover_is_clean_while_route53_shows_its_last_state() -> None:
    result = check(saved("complete"), states()[-1])
    assert result.drift is None and "aws 0 / azure 100" in result.state


def test_weights_changed_by_hand_after_a_completed_cutover_are_drift_with_a_safe_restore() -> None:
    last = states()[-1]
    result = check(saved("complete"), reweighted(last, aws=10, azure=90))
    drift = result.drift
    assert drift is not None and drift.area == "dns" and drift.resource == NAME and drift.owned
    assert drift.differs == (
        "changed after the completed cutover: A set aws: weight 10 (the cutover left 0); "
        "A set azure: weight 90 (the cutover left 100)"
    )
    assert "--remediate" in drift.remedy and "--rollback" in drift.remedy
    assert result.restore == list(last)


def test_an_earlier_state_of_the_cutover_after_it_completed_is_drift_too() -> None:
    result = check(saved("complete"), states()[-2])  # weights 50 / 50, exactly as the cutover wrote them
    assert result.drift is not None and result.restore == list(states()[-1])


def test_a_deleted_record_or_a_changed_ttl_is_drift() -> None:
    last = states()[-1]
    without_azure = [rs for rs in last if rs.get("SetIdentifier") != "azure"]
    assert check(saved("complete"), without_azure).drift is not None
    longer = copy.deepcopy(list(last))
    for rs in longer:
        if rs.get("SetIdentifier") == "azure":
            rs["TTL"] = 3600
    result = check(saved("complete"), longer)
    assert result.drift is not None and "A set azure: TTL 3600 (the cutover left 60)" in result.drift.differs
    assert "missing: staging-api.mmrv.example.com A 198.51.100.7 (TTL 60, set azure, weight 100)" in (
        check(saved("complete"), without_azure).drift.differs  # type: ignore[union-attr]
    )


def test_a_change_to_records_the_cutover_never_shifts_is_not_restored_by_the_tool() -> None:
    last = [rs for rs in reweighted(states()[-1], aws=10, azure=90) if rs["Type"] != "TXT"]
    result = check(saved("complete"), [*last, {**TXT, "ResourceRecords": [{"Value": '"owner=someone"'}]}])
    assert result.drift is not None and not result.drift.owned and result.restore is None


def test_a_cutover_in_progress_is_clean_at_the_weight_it_recorded_and_never_restored() -> None:
    at_50 = states()[-2]
    assert check(saved("in-progress", 50), at_50).drift is None
    moved = check(saved("in-progress", 50), states()[-3])  # Route 53 back at 10 %
    assert moved.drift is not None and not moved.drift.owned and moved.restore is None
    assert "azure at 10%" in moved.drift.differs and "continue" in moved.drift.remedy
    unknown = check(saved("in-progress", 50), reweighted(at_50, aws=70, azure=30))
    assert (
        unknown.drift is not None and unknown.restore is None and "neither the saved original" in unknown.drift.differs
    )


def test_after_a_rollback_the_original_is_clean_and_later_changes_by_its_owner_are_not_drift() -> None:
    assert check(saved("rolled-back", 0), [ORIGINAL, TXT]).drift is None
    moved = {**ORIGINAL, "ResourceRecords": [{"Value": "203.0.113.99"}]}
    assert check(saved("rolled-back", 0), [moved, TXT]).drift is None
    back = check(saved("restored", 0), states()[-1])  # the weighted pair reappeared
    assert back.drift is not None and back.restore == [ORIGINAL, TXT]


# --- the report -------------------------------------------------------------------------------------


def report_with_drift() -> DriftReport:
    return DriftReport(
        environment="staging",
        items=[
            Drift(
                area="azure",
                resource="/acr",
                differs="sku.name: Premium → Standard",
                remedy="mmrv-migrate run platform --env staging",
            ),
            Drift(area="dns", resource=NAME, differs="Route 53 has a|b", remedy="roll back", owned=False),
        ],
        checked={"azure": 12, "images": 6, "kubernetes": 11, "secrets": 5, "dns": 2},
    )


def test_a_report_lists_each_drift_with_its_remedy_in_a_table() -> None:
    report = report_with_drift()
    assert not report.is_clean and report.drifted_areas() == ["azure", "dns"]
    assert report.summary() == "drift [staging]: 2 drift(s) (azure 1, dns 1)"
    markdown = report.render_markdown()
    assert "| azure | `/acr` | sku.name: Premium → Standard | mmrv-migrate run platform --env staging |" in markdown
    assert "a\\|b" in markdown  # a pipe in a cell does not break the table
    rows = report.table_rows()
    assert [(r["area"], r["status"]) for r in rows] == [
        ("azure", "drift"),
        ("images", "clean"),
        ("kubernetes", "clean"),
        ("secrets", "clean"),
        ("dns", "drift (not owned)"),
    ]
    assert rows[0]["remedy"] == "mmrv-migrate run platform --env staging"
    payload = report.to_json_dict()
    assert payload["clean"] is False and len(payload["drift"]) == 2 and payload["checked"]["azure"] == 12


def test_an_area_that_cannot_be_read_is_an_error_not_drift() -> None:
    report = DriftReport(environment="staging", checked={"azure": 12}, errors={"kubernetes": "no cluster"})
    assert not report.is_clean and not report.has_drift
    assert "could not be read (kubernetes)" in report.summary()
    assert ("kubernetes", "error") in [(r["area"], r["status"]) for r in report.table_rows()]
    failed = DriftCheckFailed(report)
    assert failed.exit_code == 1 and "kubernetes: no cluster" in str(failed)


def test_a_clean_report() -> None:
    report = DriftReport(environment="staging", checked={"azure": 12, "dns": 2})
    assert report.is_clean and report.summary() == "drift [staging]: clean (14 resource(s) compared in 2 area(s))"
    assert {r["status"] for r in report.table_rows()} == {"clean"}


def test_drift_found_exits_3_and_keeps_its_report_through_pickling() -> None:
    found = DriftFound(report_with_drift())
    assert found.exit_code == 3 and "azure, dns differ" in str(found)
    again = pickle.loads(pickle.dumps(found))
    assert isinstance(again, DriftFound) and again.report == found.report and str(again) == str(found)
    failed = pickle.loads(pickle.dumps(DriftCheckFailed(DriftReport(environment="x", errors={"dns": "down"}))))
    assert failed.report.errors == {"dns": "down"}


def test_merge_takes_the_rechecked_areas_from_the_second_pass() -> None:
    first = report_with_drift().model_copy(update={"notes": ["dns: changed since", "azure: before"]})
    second = DriftReport(environment="staging", checked={"dns": 2}, notes=["dns: as left"], checked_at="later")
    merged = merge(first, second, ["dns"])
    assert [d.area for d in merged.items] == ["azure"] and merged.checked == first.checked
    assert merged.notes == ["azure: before", "dns: as left"] and merged.checked_at == "later"
    assert merge(first, DriftReport(environment="staging", errors={"dns": "down"}), ["dns"]).errors == {"dns": "down"}


def test_the_cli_says_what_is_wrong_with_bad_input_and_exits_2() -> None:
    env = {**os.environ, "COLUMNS": "200", "MMRV_SANDBOX_DIR": str(ROOT / ".no-sandbox-here")}
    for args, message in (
        (("drift", "--env", "qa"), "environment 'qa' is not in the spec"),
        (("drift", "--time-scale", "0"), "--time-scale 0.0 must be a positive number"),
        (("drift", "--sandbox"), "run `mmrv-migrate sandbox up` first"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "migration.cli", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2, result.stdout + result.stderr
        assert message in result.stderr.replace("\n", " "), result.stderr
