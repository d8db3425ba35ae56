"""The decision record (the `approval-<gate>` artifact) and the refusal error: pure, no Prefect server."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta

from migration.approval import Answer, ApprovalRefused, Decision, judge, render_decision, stop_message
from migration.errors import MigrationError

ASKED = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
ALLOWED = ["alice", "bob"]


def record(decision: Decision) -> str:
    return render_decision(decision, requested_at=ASKED, timeout_seconds=3600, approvers=ALLOWED, request="## Plan\n")


def test_record_says_who_when_why_and_what_was_asked() -> None:
    decision = judge("production", Answer(approved=True, approver="alice", reason="a | b\nc"), ALLOWED)
    decision = decision.model_copy(update={"decided_at": ASKED + timedelta(seconds=90)})
    text = record(decision)
    assert text.startswith("# Approval gate `production`: approved\n")
    assert "| decided by | alice |" in text and "| why | a \\| b c |" in text  # one table row, pipes escaped
    assert "| requested at | 2026-05-01T09:00:00+00:00 |" in text and "| waited | 90 s of at most 3600 s |" in text
    assert "| production | may change: the migration continues |" in text and text.endswith("## Plan\n")


def test_refusals_are_recorded_with_their_reason() -> None:
    timed_out = judge("production", None, ALLOWED)
    assert "| decided by | nobody |" in record(timed_out) and "no decision in time" in record(timed_out)
    outsider = judge("production", Answer(approved=True, approver="mallory"), ALLOWED)
    assert "| decided by | mallory (not an approver) |" in record(outsider)
    assert "| production | unchanged: the migration stops here |" in record(outsider)


def test_auto_approval_is_recorded_as_automatic() -> None:
    auto = Decision(gate="production", outcome="approved", reason="auto-approved", decided_at=ASKED, auto=True)
    assert "| decided by | nobody: automatic (`--auto-approve`, a rehearsal) |" in record(auto)


def test_refusal_error_says_why_and_survives_pickling() -> None:
    decision = judge("production", Answer(approved=False, approver="bob", reason="wait"), ALLOWED)
    error = ApprovalRefused(decision)
    assert isinstance(error, MigrationError) and error.exit_code == 1
    assert str(error) == stop_message(decision)
    assert str(error) == "approval gate production: rejected by bob: wait. Nothing in production changed."
    copy = pickle.loads(pickle.dumps(error))
    assert copy.decision == decision and str(copy) == str(error)
