"""The traffic generator's resolver choice and its Prometheus API, without a network."""

from __future__ import annotations

import json
import random
import time
from collections import Counter

import pytest

from migration.cutover import parse_query_value, render_query
from migration.spec import DEFAULT_ERROR_RATE_QUERY
from sandbox.traffic import (
    Evaluator,
    NameConfig,
    ResolveError,
    Stats,
    TargetRoute,
    TrafficConfig,
    choose,
    format_value,
    parse_duration,
    query_answer,
    route_for,
)

ALIAS = {
    "Name": "api.x.com.",
    "Type": "A",
    "SetIdentifier": "aws",
    "Weight": 90,
    "AliasTarget": {"DNSName": "alb-1.eu-west-1.elb.amazonaws.com", "HostedZoneId": "Z", "EvaluateTargetHealth": True},
}
AZURE = {
    "Name": "api.x.com.",
    "Type": "A",
    "SetIdentifier": "azure",
    "Weight": 10,
    "TTL": 60,
    "ResourceRecords": [{"Value": "127.0.0.1"}],
}


def test_weighted_answers_follow_the_weights_and_ttls_scale() -> None:
    rng = random.Random(1)
    picks = Counter(choose([ALIAS, AZURE], rng, 60, 0.01).set_identifier for _ in range(5000))
    assert 0.07 < picks["azure"] / 5000 < 0.13
    answer = choose([{**ALIAS, "Weight": 0}, {**AZURE, "Weight": 100}], rng, 60, 0.01)
    assert (answer.target, answer.ttl, answer.set_identifier) == ("127.0.0.1", pytest.approx(0.6), "azure")
    alias = choose([{**ALIAS, "Weight": 100}, {**AZURE, "Weight": 0}], rng, 60, 0.5)
    assert (alias.target, alias.ttl) == ("alb-1.eu-west-1.elb.amazonaws.com", 30.0)
    both_zero = Counter(
        choose([{**ALIAS, "Weight": 0}, {**AZURE, "Weight": 0}], rng, 60, 1).set_identifier for _ in range(400)
    )
    assert both_zero["aws"] > 100 and both_zero["azure"] > 100  # all at 0: equally
    simple = {"Name": "api.x.com.", "Type": "A", "AliasTarget": ALIAS["AliasTarget"]}
    assert choose([simple], rng, 60, 1).set_identifier is None
    with pytest.raises(ResolveError, match="NXDOMAIN"):
        choose([], rng, 60, 1)


def test_targets_map_to_urls_by_pattern() -> None:
    name = NameConfig(
        name="api.x.com",
        zone="x.com",
        targets=(
            TargetRoute("127.0.0.1", "http://127.0.0.1:9", "azure"),
            TargetRoute("*.elb.amazonaws.com", "http://127.0.0.1:8", "aws"),
        ),
    )
    assert route_for(name, "alb-1.eu-west-1.elb.amazonaws.com") == name.targets[1]
    assert route_for(name, "127.0.0.1") == name.targets[0]
    assert route_for(name, "10.0.0.1") is None


def test_config_round_trips_through_json() -> None:
    config = TrafficConfig(
        names=(NameConfig("api.x.com", "x.com", "/healthz", (TargetRoute("a", "http://b", "aws"),)),), port=5
    )
    assert TrafficConfig.from_json(config.to_json()) == config


def stats_with(events: list[tuple[float, str, bool]]) -> Stats:
    stats = Stats(names=("api.x.com",))
    for at, side, ok in events:
        stats.record("api.x.com", side, ok, {})
        stats.events[-1].at = at
    return stats


def test_the_spec_default_error_rate_query_is_answered_in_the_prometheus_shape() -> None:
    now = time.time()
    stats = stats_with(
        [(now - 100, "azure", False)]  # outside the window
        + [(now - 5, "azure", True)] * 18
        + [(now - 4, "azure", False)] * 2
        + [(now - 3, "aws", False)] * 50  # the AWS side does not count
    )
    query = render_query(
        DEFAULT_ERROR_RATE_QUERY, name="api.x.com", env="staging", component="backend", window_seconds=10
    )
    status, body = query_answer(Evaluator(stats), query, now)
    assert status == 200
    assert body["status"] == "success" and body["data"]["resultType"] == "vector"
    (sample,) = body["data"]["result"]
    assert sample["metric"] == {} and isinstance(sample["value"][1], str)
    assert parse_query_value(json.loads(json.dumps(body))) == pytest.approx(0.1)


def test_no_request_in_the_window_is_nan_and_unknown_metrics_are_empty() -> None:
    now = time.time()
    evaluator = Evaluator(stats_with([]))
    query = render_query(DEFAULT_ERROR_RATE_QUERY, name="api.x.com", env="e", component="c", window_seconds=10)
    _, body = query_answer(evaluator, query, now)
    assert body["data"]["result"][0]["value"][1] == "NaN"
    assert parse_query_value(body) is None
    _, empty = query_answer(evaluator, "sum(rate(nope_total[1m]))", now)
    assert empty["data"]["result"] == []


def test_other_query_forms_and_errors() -> None:
    now = time.time()
    evaluator = Evaluator(stats_with([(now - 1, "azure", True), (now - 1, "aws", True), (now - 1, "aws", False)]))
    _, body = query_answer(evaluator, 'mmrv_requests_total{side=~"a.*",outcome="success"}', now)
    assert sorted((r["metric"]["side"], r["value"][1]) for r in body["data"]["result"]) == [
        ("aws", "1"),
        ("azure", "1"),
    ]
    _, body = query_answer(evaluator, 'sum(increase(mmrv_requests_total{side!="azure"}[1m]))', now)
    assert body["data"]["result"][0]["value"][1] == "2"
    _, body = query_answer(evaluator, '(sum(rate(mmrv_requests_total{outcome="failure"}[10s])))', now)
    assert body["data"]["result"][0]["value"][1] == "0.1"
    for bad in ("sum(rate(mmrv_requests_total[5x]))", 'mmrv_requests_total{side~"a"}', "a / b / c", "rate(x)"):
        status, body = query_answer(evaluator, bad, now)
        assert status == 400 and body["status"] == "error" and body["errorType"] == "bad_data", bad


def test_durations_and_values() -> None:
    assert parse_duration("1m30s") == 90 and parse_duration("250ms") == 0.25
    assert [format_value(v) for v in (0.0, 2.0, 0.25, float("nan"), float("inf"))] == ["0", "2", "0.25", "NaN", "+Inf"]
