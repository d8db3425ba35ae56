"""Approval decisions: only allow-listed approvers approve; timeouts and rejections stop."""

from __future__ import annotations

from migration.approval import Answer, judge, render_request
from migration.plan import Action, Plan

ALLOWED = ["alice", "bob"]


def test_allowed_approver_approves() -> None:
    decision = judge("production", Answer(approved=True, approver="alice", reason="staging green"), ALLOWED)
    assert decision.go and decision.outcome == "approved" and decision.approver == "alice"
    assert decision.summary() == "production: approved by alice: staging green"


def test_rejection_stops() -> None:
    decision = judge("production", Answer(approved=False, approver="bob", reason="wait for Monday"), ALLOWED)
    assert not decision.go and decision.outcome == "rejected"


def test_unknown_approver_cannot_approve() -> None:
    decision = judge("production", Answer(approved=True, approver="mallory"), ALLOWED)
    assert not decision.go and decision.outcome == "not_allowed"
    assert "'mallory' is not an approver; allowed: alice, bob" in decision.reason


def test_timeout_stops() -> None:
    decision = judge("production", None, ALLOWED)
    assert not decision.go and decision.outcome == "timed_out"


def test_auto_approval_is_recorded_as_such() -> None:
    decision = judge("production", Answer(approved=True, approver="alice"), ALLOWED, auto=True)
    assert decision.go and "(automatic, --auto-approve)" in decision.summary()


def test_request_shows_the_plans_and_evidence() -> None:
    plan = Plan(phase="platform", environment="production", actions=(Action(kind="create", resource="rg"),))
    text = render_request("production", [plan], ["staging smoke tests passed"], ALLOWED, 3600)
    assert "platform [production]: 1 to create" in text and "staging smoke tests passed" in text
    assert "alice, bob" in text
