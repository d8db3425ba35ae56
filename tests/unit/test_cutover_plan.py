"""The cutover's steps, computed from saved record sets: pure, no Route 53.

A tiny in-memory zone applies the batches with Route 53's rules (all or nothing, a DELETE
must match exactly, a CREATE must not exist yet), so every step and every restore is
checked the way Route 53 would check it.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest

from migration.cutover import (
    ALIAS_TTL_SECONDS,
    AWS_SET_ID,
    AZURE_SET_ID,
    Change,
    CutoverError,
    NamePlan,
    plan_name,
    restore_changes,
    same_record_sets,
    scaled,
    target_type,
    variable_name,
)
from migration.spec import Cutover

POLICY = Cutover(ttl_seconds=60, weight_steps=[10, 50, 100], bake_seconds=600, error_budget=0.01)

ALIAS_A: dict[str, Any] = {
    "Name": "api.mmrv.example.com.",
    "Type": "A",
    "AliasTarget": {
        "HostedZoneId": "Z32O12XQLNTSW2",
        "DNSName": "mmrv-production-alb-1234.eu-west-1.elb.amazonaws.com",
        "EvaluateTargetHealth": True,
    },
}
CNAME: dict[str, Any] = {
    "Name": "www.mmrv.example.com.",
    "Type": "CNAME",
    "TTL": 300,
    "ResourceRecords": [{"Value": "main.d1abcdef.amplifyapp.com"}],
}
TXT: dict[str, Any] = {
    "Name": "api.mmrv.example.com.",
    "Type": "TXT",
    "TTL": 3600,
    "ResourceRecords": [{"Value": '"v=owner mmrv"'}],
}


class Zone:
    """Route 53's change-batch rules on a list of record sets."""

    def __init__(self, sets: list[dict[str, Any]]) -> None:
        self.sets = copy.deepcopy(sets)

    @staticmethod
    def _id(rs: dict[str, Any]) -> tuple[str, str, str | None]:
        return (rs["Name"].rstrip(".").lower(), rs["Type"], rs.get("SetIdentifier"))

    def apply(self, changes: tuple[Change, ...] | list[dict[str, Any]]) -> None:
        items = [c.to_api() if isinstance(c, Change) else c for c in changes]
        new = copy.deepcopy(self.sets)
        for item in items:
            rs = item["ResourceRecordSet"]
            if item["Action"] == "DELETE":
                matches = [s for s in new if same_record_sets([s], [rs])]
                assert matches, f"DELETE of a set that is not there exactly: {rs}"
                new.remove(matches[0])
            elif item["Action"] == "CREATE":
                assert not [s for s in new if self._id(s) == self._id(rs)], f"CREATE of an existing set: {rs}"
                new.append(copy.deepcopy(rs))
            else:
                new = [s for s in new if self._id(s) != self._id(rs)] + [copy.deepcopy(rs)]
        self.sets = new  # all or nothing

    def exact(self) -> list[str]:
        return sorted(json.dumps(s, sort_keys=True) for s in self.sets)


def exact(sets: Any) -> list[str]:
    return sorted(json.dumps(s, sort_keys=True) for s in sets)


def by_set(sets: Any) -> dict[str | None, dict[str, Any]]:
    return {s.get("SetIdentifier"): s for s in sets}


def test_alias_a_record_becomes_a_weighted_pair_and_shifts_in_steps() -> None:
    plan = plan_name("api.mmrv.example.com", [ALIAS_A], "20.31.5.7", POLICY)
    assert plan.record_type == "A" and plan.ttl == 60
    assert [s.phase for s in plan.steps] == ["weight-10", "weight-50", "weight-100"]  # an alias has no TTL to lower
    assert any(str(ALIAS_TTL_SECONDS) in n for n in plan.notes)

    first = plan.steps[0]
    assert [(c.action, c.record_set.get("SetIdentifier")) for c in first.changes] == [
        ("DELETE", None),
        ("CREATE", AWS_SET_ID),
        ("CREATE", AZURE_SET_ID),
    ]
    assert first.changes[0].record_set == ALIAS_A  # the DELETE names the record exactly as saved
    pair = by_set(first.after)
    assert pair[AWS_SET_ID] == {
        "Name": "api.mmrv.example.com.",
        "Type": "A",
        "SetIdentifier": "aws",
        "Weight": 90,
        "AliasTarget": ALIAS_A["AliasTarget"],
    }  # an alias keeps its target and has no TTL
    assert pair[AZURE_SET_ID] == {
        "Name": "api.mmrv.example.com.",
        "Type": "A",
        "SetIdentifier": "azure",
        "Weight": 10,
        "TTL": 60,
        "ResourceRecords": [{"Value": "20.31.5.7"}],
    }
    weights = [(by_set(s.after)[AWS_SET_ID]["Weight"], by_set(s.after)[AZURE_SET_ID]["Weight"]) for s in plan.steps]
    assert weights == [(90, 10), (50, 50), (0, 100)]  # at 100 % AWS stays, warm, at weight 0
    assert all(s.wait_seconds == 600 and s.bakes for s in plan.steps)
    # later steps move both weights in one batch: DELETE+CREATE each (a compare-and-swap)
    assert [c.action for c in plan.steps[1].changes] == ["DELETE", "CREATE", "DELETE", "CREATE"]
    assert plan.weights_at(0) is None and plan.weights_at(2) == (50, 50) and plan.weights_at(3) == (0, 100)


def test_cname_lowers_the_ttl_first_and_waits_out_the_old_one() -> None:
    plan = plan_name("www.mmrv.example.com", [CNAME], "mmrv-web.westeurope.cloudapp.azure.com", POLICY)
    assert plan.record_type == "CNAME"
    lower = plan.steps[0]
    assert lower.phase == "lower-ttl" and not lower.bakes
    assert lower.wait_seconds == 300  # the OLD ttl: resolvers drop what they cached before
    assert [(c.action, c.record_set["TTL"]) for c in lower.changes] == [("DELETE", 300), ("CREATE", 60)]
    assert [s.phase for s in plan.steps[1:]] == ["weight-10", "weight-50", "weight-100"]
    final = by_set(plan.complete)
    assert final[AWS_SET_ID]["TTL"] == 60 and final[AWS_SET_ID]["ResourceRecords"] == CNAME["ResourceRecords"]
    assert final[AZURE_SET_ID]["ResourceRecords"] == [{"Value": "mmrv-web.westeurope.cloudapp.azure.com"}]
    assert (final[AWS_SET_ID]["Weight"], final[AZURE_SET_ID]["Weight"]) == (0, 100)


def test_a_ttl_already_below_the_policy_is_kept_and_not_waited() -> None:
    low = {**CNAME, "TTL": 20}
    plan = plan_name("www.mmrv.example.com", [low], "web.example.net", POLICY)
    assert plan.steps[0].phase == "weight-10"
    assert {s["TTL"] for s in plan.complete} == {20}


def test_waits_scale_with_the_time_scale() -> None:
    plan = plan_name("www.mmrv.example.com", [CNAME], "web.example.net", POLICY)
    assert [scaled(s.wait_seconds, 1) for s in plan.steps] == [300, 600, 600, 600]
    assert [scaled(s.wait_seconds, 0.01) for s in plan.steps] == pytest.approx([3.0, 6.0, 6.0, 6.0])
    for bad in (0, -1, float("inf"), float("nan")):
        with pytest.raises(CutoverError, match="time scale"):
            scaled(10, bad)


@pytest.mark.parametrize(
    ("saved", "target"),
    [([ALIAS_A, TXT], "20.31.5.7"), ([CNAME], "web.example.net"), ([{**CNAME, "TTL": 30}], "web.example.net")],
)
def test_every_step_applies_and_restore_puts_back_the_saved_sets_byte_for_byte(saved: Any, target: str) -> None:
    plan = plan_name(saved[0]["Name"], saved, target, POLICY)
    for stop in range(len(plan.steps) + 1):
        zone = Zone(saved)
        for step in plan.steps[:stop]:
            assert same_record_sets(zone.sets, list(step.before))
            zone.apply(step.changes)
            assert zone.exact() == exact(step.after)
        assert plan.position(zone.sets) == stop
        zone.apply(restore_changes(plan.saved, zone.sets))
        assert zone.exact() == exact(saved)  # exactly, not merely equivalent
    assert restore_changes(saved, copy.deepcopy(saved)) == ()  # nothing to restore: an empty batch


def test_restore_uses_the_saved_dicts_as_saved_and_deletes_what_route53_shows() -> None:
    plan = plan_name("api.mmrv.example.com", [ALIAS_A, TXT], "20.31.5.7", POLICY)
    shown = [copy.deepcopy(rs) for rs in plan.complete]
    shown[-1]["Name"] = "API.mmrv.example.com"  # Route 53's spelling may differ from ours
    changes = restore_changes(plan.saved, shown)
    assert [c.action for c in changes] == ["DELETE", "DELETE", "CREATE"]
    assert changes[1].record_set is not None and changes[1].record_set["Name"] == "API.mmrv.example.com"
    assert changes[2].record_set == ALIAS_A  # the TXT record never moved: not touched


def test_untouched_records_of_the_name_stay_in_every_state() -> None:
    plan = plan_name("api.mmrv.example.com", [TXT, ALIAS_A], "20.31.5.7", POLICY)
    for step in plan.steps:
        assert TXT in step.after and all(c.record_set != TXT for c in step.changes)


@pytest.mark.parametrize(
    ("saved", "target", "message"),
    [
        ([CNAME], "20.31.5.7", r"www\.mmrv\.example\.com CNAME main\.d1abcdef\.amplifyapp\.com.*host name instead"),
        ([ALIAS_A], "web.example.net", r"alias -> mmrv-production-alb-1234.*IP address instead"),
        ([ALIAS_A], "2001:db8::7", r"IPv6 address \(an AAAA record\).*A alias"),
        (
            [ALIAS_A, {**ALIAS_A, "Type": "AAAA"}],
            "20.31.5.7",
            r"AAAA alias -> .* would keep answering from AWS",
        ),
        (
            [{**ALIAS_A, "SetIdentifier": "blue", "Weight": 100}],
            "20.31.5.7",
            r"set blue, weight 100\) belongs to a routing policy the tool did not create",
        ),
        ([{**ALIAS_A, "SetIdentifier": "aws", "Weight": 0}], "20.31.5.7", "already hold the cutover's weighted pair"),
        ([], "20.31.5.7", "no record of this name"),
        ([CNAME], "not a host!", "neither an IP address nor a host name"),
    ],
)
def test_records_that_cannot_be_paired_are_refused_naming_the_record(saved: Any, target: str, message: str) -> None:
    name = saved[0]["Name"] if saved else "api.mmrv.example.com"
    with pytest.raises(CutoverError, match=message) as caught:
        plan_name(name, saved, target, POLICY)
    assert str(caught.value).startswith("cutover: ")


def test_position_refuses_a_state_the_cutover_never_produces() -> None:
    plan = plan_name("api.mmrv.example.com", [ALIAS_A], "20.31.5.7", POLICY)
    other_target = plan_name("api.mmrv.example.com", [ALIAS_A], "20.31.5.99", POLICY)
    with pytest.raises(CutoverError, match=r"neither the saved original nor a state of a cutover to 20\.31\.5\.7"):
        plan.position(list(other_target.steps[1].after))
    manual = [dict(rs) for rs in plan.steps[0].after]
    manual[0] = {**manual[0], "Weight": 77}
    with pytest.raises(CutoverError, match="weight 77"):
        plan.position(manual)


def test_spelling_differences_route53_makes_are_the_same_sets() -> None:
    shown = copy.deepcopy(ALIAS_A)
    shown["AliasTarget"]["DNSName"] += "."  # Route 53 adds the trailing dot moto leaves out
    shown["Name"] = shown["Name"].upper()
    assert same_record_sets([ALIAS_A], [shown])
    assert not same_record_sets([ALIAS_A], [{**shown, "AliasTarget": {**shown["AliasTarget"], "HostedZoneId": "Z1"}}])
    two = {**CNAME, "Type": "A", "ResourceRecords": [{"Value": "1.1.1.1"}, {"Value": "2.2.2.2"}]}
    assert same_record_sets([two], [{**two, "ResourceRecords": list(reversed(two["ResourceRecords"]))}])


def test_target_types() -> None:
    assert target_type("20.31.5.7") == "A"
    assert target_type("2001:db8::7") == "AAAA"
    assert target_type("mmrv.westeurope.cloudapp.azure.com") == "CNAME"
    assert target_type("mmrv.westeurope.cloudapp.azure.com.") == "CNAME"


def test_changes_are_copies_a_caller_cannot_corrupt() -> None:
    plan = plan_name("api.mmrv.example.com", [ALIAS_A], "20.31.5.7", POLICY)
    batch = plan.steps[0].api_changes()
    batch[0]["ResourceRecordSet"]["AliasTarget"]["DNSName"] = "evil.example.com"
    assert plan.steps[0].changes[0].record_set["AliasTarget"]["DNSName"].startswith("mmrv-production-alb")
    assert plan.saved[0] == ALIAS_A


def test_variable_names_are_valid_prefect_names_and_distinct() -> None:
    names = {
        variable_name("mmrv", "staging", n)
        for n in ("api.mmrv.example.com", "api-mmrv.example.com", "API.mmrv.example.com.", "*.mmrv.example.com")
    }
    assert len(names) == 3  # the first and third are one name
    for name in names:
        assert re.fullmatch(r"[a-z0-9_]{1,255}", name), name
    assert variable_name("mmrv", "staging", "api.mmrv.example.com") != variable_name("mmrv", "production", "api.x.y")


def test_plan_is_frozen_data_prefect_can_persist() -> None:
    plan = plan_name("www.mmrv.example.com", [CNAME], "web.example.net", POLICY)
    again = NamePlan.model_validate_json(plan.model_dump_json())
    assert again == plan
