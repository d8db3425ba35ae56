"""Approval gates: what a person is asked, and how their answer is judged.

The flow pauses with the request rendered from the same `Plan` objects apply will use,
then judges the answer here: only an approver on the spec's allow-list can approve; a
rejection, a timeout or an approver not on the list stops the migration before
production changes. Pure: the Prefect pause itself lives in flows/.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from migration.errors import MigrationError
from migration.plan import Plan

Outcome = Literal["approved", "rejected", "timed_out", "not_allowed"]


class Answer(BaseModel):
    """What a person submits in the Prefect UI form or with `mmrv-migrate approve/reject`."""

    approved: bool = Field(description="Approve (true) or reject (false) what the description shows.")
    approver: str = Field(description="Who decides: must be one of the spec's approvers.", min_length=1)
    reason: str = Field(default="", description="Why: kept in the decision record.")


class Decision(BaseModel):
    model_config = ConfigDict(frozen=True)

    gate: str
    outcome: Outcome
    approver: str | None = None
    reason: str = ""
    decided_at: datetime
    auto: bool = False  # given by `--auto-approve` (a rehearsal), recorded as such

    @property
    def go(self) -> bool:
        return self.outcome == "approved"

    def summary(self) -> str:
        who = f" by {self.approver}" if self.approver else ""
        auto = " (automatic, --auto-approve)" if self.auto else ""
        why = f": {self.reason}" if self.reason else ""
        return f"{self.gate}: {self.outcome}{who}{auto}{why}"


def judge(gate: str, answer: Answer | None, allowed: list[str], *, auto: bool = False) -> Decision:
    """Turn an answer (None when the pause timed out) into a decision."""
    now = datetime.now(UTC)
    if answer is None:
        return Decision(gate=gate, outcome="timed_out", decided_at=now, reason="no decision before the timeout")
    approver = answer.approver.strip()
    if approver not in allowed:
        return Decision(
            gate=gate,
            outcome="not_allowed",
            approver=approver,
            decided_at=now,
            reason=f"{approver!r} is not an approver; allowed: {', '.join(allowed)}",
        )
    outcome: Outcome = "approved" if answer.approved else "rejected"
    return Decision(gate=gate, outcome=outcome, approver=approver, reason=answer.reason, decided_at=now, auto=auto)


def render_request(
    gate: str, plans: list[Plan], evidence: list[str], approvers: list[str], timeout_seconds: int
) -> str:
    """The markdown a person reads before deciding: what will change, and what proves it is safe."""
    lines = [f"## Approval needed: {gate}", ""]
    lines += [
        f"Approvers: {', '.join(approvers)}. Without a decision within {timeout_seconds} s the migration stops",
        "",
    ]
    lines += ["safely: nothing in production changes.", "", "### What will change", ""]
    lines += [p.render_markdown() for p in plans] or ["(no plan)"]
    lines += ["", "### Evidence so far", ""]
    lines += [f"- {e}" for e in evidence] or ["- none"]
    return "\n".join(lines) + "\n"


_TITLES: dict[Outcome, str] = {
    "approved": "approved",
    "rejected": "rejected, the migration stops here",
    "timed_out": "no decision in time, the migration stops here",
    "not_allowed": "answered by someone not on the allow-list, the migration stops here",
}


def stop_message(decision: Decision) -> str:
    """What a refused gate says in the flow's final state, the CLI and the log."""
    return f"approval gate {decision.summary()}. Nothing in production changed."


class ApprovalRefused(MigrationError):
    """A gate did not approve: rejected, timed out, or answered by someone not allowed (exit 1)."""

    def __init__(self, decision: Decision) -> None:
        self.decision = decision
        super().__init__(stop_message(decision))

    def __reduce__(self) -> tuple[type[ApprovalRefused], tuple[Decision]]:
        return (type(self), (self.decision,))  # pickles with its decision (Prefect may persist it)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|") or "-"


def render_decision(
    decision: Decision, *, requested_at: datetime, timeout_seconds: int, approvers: list[str], request: str
) -> str:
    """The audit record of one gate: who decided what, when and why, and what they were shown."""
    if decision.auto:
        who = "nobody: automatic (`--auto-approve`, a rehearsal)"
    elif decision.approver is None:
        who = "nobody"
    elif decision.outcome == "not_allowed":
        who = f"{decision.approver} (not an approver)"
    else:
        who = decision.approver
    waited = (decision.decided_at - requested_at).total_seconds()
    production = "may change: the migration continues" if decision.go else "unchanged: the migration stops here"
    rows = [
        ("outcome", decision.outcome),
        ("decided by", who),
        ("why", decision.reason or "(no reason given)"),
        ("requested at", requested_at.isoformat(timespec="seconds")),
        ("decided at", decision.decided_at.isoformat(timespec="seconds")),
        ("waited", f"{waited:.0f} s of at most {timeout_seconds} s"),
        ("approvers", ", ".join(approvers)),
        ("production", production),
    ]
    lines = [f"# Approval gate `{decision.gate}`: {_TITLES[decision.outcome]}", "", "| | |", "|---|---|"]
    lines += [f"| {name} | {_cell(value)} |" for name, value in rows]
    lines += ["", "## What the approvers were asked", "", request.strip() or "(no description)"]
    return "\n".join(lines) + "\n"
