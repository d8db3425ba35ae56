"""The cutover's gates and reports: evaluation of what the tasks observed. Pure."""

from __future__ import annotations

import pytest

from migration.cutover import (
    CutoverError,
    CutoverReport,
    GateResult,
    SavedRecords,
    StepReport,
    evaluate_error_rate,
    evaluate_smoke,
    parse_query_value,
    render_query,
    render_report,
    render_saved,
)
from migration.spec import DEFAULT_ERROR_RATE_QUERY, SmokeCheck

HEALTH = SmokeCheck(name="health", path="/healthz", expect_status=200, expect_body_contains="ok", max_latency_ms=800)
URL = "http://127.0.0.1:8080/healthz"


def smoke(**seen: object) -> GateResult:
    defaults: dict[str, object] = {"status": 200, "body": "ok", "latency_ms": 12.0}
    return evaluate_smoke(HEALTH, URL, 50, **{**defaults, **seen})  # type: ignore[arg-type]


def test_smoke_check_passes_and_fails_for_each_reason() -> None:
    assert smoke().ok and smoke().gate == "smoke:health"
    assert "HTTP 500, expected 200" in smoke(status=500).detail
    assert "does not contain 'ok'" in smoke(body="degraded").detail
    assert "over the 800 ms budget" in smoke(latency_ms=950.0).detail
    refused = smoke(status=None, error="connection refused")
    assert not refused.ok and "no answer (connection refused)" in refused.detail
    assert all(not r.ok for r in (smoke(status=500), smoke(body=""), smoke(latency_ms=801.0)))
    assert smoke(status=500).azure_weight == 50


def test_prometheus_answers_are_read_like_the_http_api_shapes_them() -> None:
    vector = {
        "status": "success",
        "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1717171717.5, "0.025"]}]},
    }
    assert parse_query_value(vector) == 0.025
    two = {
        "status": "success",
        "data": {"resultType": "vector", "result": [{"value": [1, "0.1"]}, {"value": [1, "0.3"]}]},
    }
    assert parse_query_value(two) == 0.3  # the worst series counts
    assert parse_query_value({"status": "success", "data": {"resultType": "scalar", "result": [1, "0.5"]}}) == 0.5
    assert parse_query_value({"status": "success", "data": {"resultType": "vector", "result": []}}) is None
    nan = {"status": "success", "data": {"resultType": "vector", "result": [{"value": [1, "NaN"]}]}}
    assert parse_query_value(nan) is None  # 0/0: nothing requested in the window
    with pytest.raises(CutoverError, match="bad_data: parse error"):
        parse_query_value({"status": "error", "errorType": "bad_data", "error": "parse error"})
    with pytest.raises(CutoverError, match="resultType 'matrix'"):
        parse_query_value({"status": "success", "data": {"resultType": "matrix", "result": []}})
    with pytest.raises(CutoverError, match="not a number"):
        parse_query_value({"status": "success", "data": {"resultType": "vector", "result": [{"value": [1, "x"]}]}})
    with pytest.raises(CutoverError, match="not a Prometheus API object"):
        parse_query_value(["no"])


def test_error_rate_gate_against_the_budget() -> None:
    assert evaluate_error_rate(0.0, 0.01, 10, "q").ok
    assert evaluate_error_rate(0.01, 0.01, 10, "q").ok  # within means <=
    over = evaluate_error_rate(0.2, 0.01, 50, "q")
    assert not over.ok and "0.2000 over the budget 0.01" in over.detail and over.value == 0.2
    assert evaluate_error_rate(None, 0.01, 10, "q").ok  # no traffic yet is not a failure


def test_the_default_query_is_filled_in_per_name_and_window() -> None:
    query = render_query(
        DEFAULT_ERROR_RATE_QUERY, name="api.mmrv.example.com", env="staging", component="backend", window_seconds=5.2
    )
    assert 'name="api.mmrv.example.com"' in query and "[6s]" in query and "$" not in query
    assert "[1s]" in render_query("x[$window]", name="n", env="e", component="c", window_seconds=0)
    assert render_query("up{job=$x}", name="n", env="e", component="c", window_seconds=1) == "up{job=$x}"


def test_report_shows_steps_weights_and_the_failed_gate() -> None:
    failure = GateResult(gate="smoke:health", ok=False, detail="GET u: HTTP 500, expected 200", azure_weight=50)
    report = CutoverReport(
        spec="mmrv",
        environment="staging",
        component="backend",
        mode="cutover",
        azure_target="127.0.0.1",
        azure_url="http://127.0.0.1:9",
        time_scale=0.01,
        names=["staging-api.mmrv.example.com"],
        steps=[
            StepReport(phase="weight-10", azure_weight=10, changed=["staging-api.mmrv.example.com"], checks=4),
            StepReport(phase="weight-50", azure_weight=50, changed=["x"], failures=[failure], status="failed"),
        ],
        outcome="restored",
        message="gate smoke:health failed at azure weight 50",
        saved={"x": [{"Name": "x.", "Type": "A", "TTL": 60, "ResourceRecords": [{"Value": "1.2.3.4"}]}]},
    )
    text = render_report(report)
    assert "| weight-10 | 90 / 10 |" in text and "| weight-50 | 50 / 50 |" in text
    assert "failed: smoke:health GET u: HTTP 500" in text
    assert "restored" in text and "x A 1.2.3.4 (TTL 60)" in text and "time scale: 0.01" in text


def test_saved_records_render_with_their_exact_json() -> None:
    saved = SavedRecords(
        spec="mmrv",
        environment="staging",
        component="backend",
        name="x",
        zone_id="Z1",
        record_sets=[{"Name": "x.", "Type": "A", "AliasTarget": {"DNSName": "alb.", "HostedZoneId": "Z2"}}],
        saved_at="2024-01-01T00:00:00+00:00",
    )
    text = render_saved(saved)
    assert '"DNSName": "alb."' in text and "x A alias -> alb" in text
