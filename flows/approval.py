"""Approval gates inside a running flow, and the Prefect-API side of `mmrv-migrate approve/reject/pending`.

The gate (`approval_gate`, called by a *sync* flow, e.g. between staging and production):

1. pauses the flow run with `pause_flow_run(wait_for_input=Approval...)`: the Prefect UI
   shows the request (the rendered plan) above a form with `approved`, `approver`, `reason`;
   `mmrv-migrate approve|reject RUN_ID` submits the same form;
2. judges the answer with `migration.approval.judge` (only the spec's approvers can approve);
3. publishes the decision as the markdown artifact `approval-<gate>` (who, when, why, outcome,
   what was asked), also when it timed out or was auto-approved;
4. returns the `Decision`. The caller decides what a refusal means; to stop the flow cleanly
   it returns `refusal_state(decision)` (or raises `ApprovalRefused(decision)` from a subflow):

       decision = approval_gate(spec, "production", request, auto_approve=auto, time_scale=scale)
       if not decision.go:
           return refusal_state(decision)   # before any production task runs

A refused gate ends the flow run *Cancelled* (not Failed: nothing broke, somebody said no or
nobody answered) with a message that says why, e.g. "approval gate production: rejected by
bob: wait for Monday. Nothing in production changed."; whoever called the flow gets
`ApprovalRefused` (a `MigrationError`: exit 1 in the CLI).

The timeout is the spec's `approvals.timeout_seconds` times `time_scale` (polling for an
answer, 10 s, too). Prefect fails a run whose pause deadline passed and refuses any later
state, so the gate keeps its own deadline a few seconds ahead of Prefect's: at the gate's
deadline it closes the pause itself (the run goes back to Running, a late `approve` is told
the run is not paused) and the flow can still end Cancelled with its reason. An answer that
landed before the gate closed still counts.

Each gate key pauses once per flow run: Prefect replays the first answer for a repeated key.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import anyio
import httpx
from prefect import get_client, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.responses import SetStateStatus
from prefect.client.schemas.sorting import FlowRunSort
from prefect.context import FlowRunContext
from prefect.exceptions import FlowPauseTimeout, ObjectNotFound, PrefectHTTPStatusError
from prefect.flow_runs import apause_flow_run
from prefect.input import RunInput, keyset_from_base_key
from prefect.settings import get_current_settings
from prefect.states import Cancelled, Running, State
from prefect.utilities.asyncutils import run_coro_as_sync
from prefect.utilities.engine import propose_state
from pydantic import BaseModel

from migration.approval import Answer, ApprovalRefused, Decision, judge, render_decision, stop_message
from migration.errors import CloudError, InputError
from migration.spec import Spec

__all__ = [
    "Approval",
    "ApprovalRefused",
    "PendingRun",
    "answer_gate",
    "approval_gate",
    "list_pending",
    "refusal_state",
    "render_pending",
]

POLL_SECONDS = 10.0  # how often a paused run asks whether it was resumed (times time_scale)
MIN_POLL_SECONDS = 0.2
GRACE_SECONDS = 5  # Prefect's pause deadline is this much later than the gate's own
AUTO_REASON = "auto-approved by the rehearsal"


class Approval(Answer, RunInput):
    """The form under the request in the Prefect UI; `mmrv-migrate approve/reject` submits it too."""


GATE_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")  # it keys the pause, the form's inputs and the artifact


def artifact_key(gate: str) -> str:
    return f"approval-{gate}"


def scaled_waits(timeout_seconds: int, time_scale: float) -> tuple[int, float]:
    """(timeout, poll interval) in seconds for a time scale (1 in the cloud, small in rehearsals and tests)."""
    if not time_scale > 0:
        raise ValueError(f"time_scale must be positive, got {time_scale}")
    return max(1, math.ceil(timeout_seconds * time_scale)), max(MIN_POLL_SECONDS, POLL_SECONDS * time_scale)


def approval_gate(
    spec: Spec, gate: str, description_markdown: str, *, auto_approve: bool = False, time_scale: float = 1.0
) -> Decision:
    """Pause the running flow until an approver answers (or the timeout), record and return the decision."""
    if not GATE_NAME.fullmatch(gate):
        raise ValueError(f"gate {gate!r}: use lowercase letters, digits and dashes (it names the pause and artifact)")
    logger = get_run_logger()
    approvers = list(spec.approvals.approvers)
    timeout, poll = scaled_waits(spec.approvals.timeout_seconds, time_scale)
    requested_at = datetime.now(UTC)
    if auto_approve:
        decision = Decision(gate=gate, outcome="approved", reason=AUTO_REASON, decided_at=requested_at, auto=True)
    else:
        deadline = requested_at + timedelta(seconds=timeout)
        description = _form_description(description_markdown, approvers, deadline)
        form = Approval.with_initial_data(description=description, approved=False)  # left off: a rejection
        logger.info("approval gate %s: waiting up to %d s for one of %s", gate, timeout, ", ".join(approvers))
        answer = run_coro_as_sync(_await_answer(form, key=gate, timeout=timeout, poll=poll))
        decision = judge(gate, answer, approvers)
        if answer is None:
            decision = decision.model_copy(update={"reason": f"no decision within {timeout} s"})
    create_markdown_artifact(
        key=artifact_key(gate),
        markdown=render_decision(
            decision,
            requested_at=requested_at,
            timeout_seconds=timeout,
            approvers=approvers,
            request=description_markdown,
        ),
        description=decision.summary(),
    )
    if decision.go:
        logger.info("approval gate %s", decision.summary())
    else:
        logger.warning(stop_message(decision))
    return decision


def refusal_state(decision: Decision) -> State[Any]:
    """The final state of a flow stopped at a gate: Cancelled, saying why.

    Return it from the flow. The flow's caller (a parent flow, the CLI) then gets
    `ApprovalRefused(decision)` raised, as from any cancelled run whose data is an exception.
    """
    return Cancelled(message=stop_message(decision), data=ApprovalRefused(decision))


def _form_description(request: str, approvers: list[str], deadline: datetime) -> str:
    return (
        request.rstrip()
        + "\n\n---\n\n"
        + f"**Decide before {deadline.isoformat(timespec='seconds')}** (no decision by then stops the migration). "
        + f"Approvers: {', '.join(approvers)}. Switch *approved* on to approve, leave it off to reject; "
        + "give your name as *approver* and say why in *reason*.\n"
    )


async def _await_answer(form: type[Approval], *, key: str, timeout: int, poll: float) -> Approval | None:
    with anyio.move_on_after(timeout):
        try:
            # poll_interval is typed int; Prefect sleeps a float just as well (sub-second polls in tests)
            return await apause_flow_run(  # type: ignore[call-overload]
                wait_for_input=form, timeout=timeout + GRACE_SECONDS, poll_interval=poll, key=key
            )
        except FlowPauseTimeout:  # only if this process stalled past Prefect's deadline
            return None
    return await _close_pause(form, key=key, timeout=timeout)


async def _close_pause(form: type[Approval], *, key: str, timeout: int) -> Approval | None:
    """The gate's deadline passed: take the run out of Paused, then read an answer that made it in time."""
    context = FlowRunContext.get()
    assert context is not None and context.flow_run is not None
    run_id = context.flow_run.id
    logger = get_run_logger()
    async with get_client() as client:
        run = await client.read_flow_run(run_id)
        if run.state is not None and run.state.is_paused():
            message = f"approval gate {key}: no decision within {timeout} s"
            try:
                await propose_state(client, Running(message=message), flow_run_id=run_id)
            except Exception as exc:  # Prefect may already have failed the run: the decision stays timed out
                logger.warning("approval gate %s: could not close the pause: %s", key, exc)
                return None
        try:
            value = await client.read_flow_run_input(run_id, keyset_from_base_key(f"paused-{key}")["response"])
        except PrefectHTTPStatusError as exc:
            if exc.response.status_code == 404:
                return None
            raise
    return form.model_validate(json.loads(value))


# --- the CLI's side: find paused runs, answer a gate ---------------------------------------


class PendingRun(BaseModel):
    """A flow run paused and waiting for someone."""

    run_id: UUID
    flow_name: str
    run_name: str
    gate: str | None  # the pause key: the gate's name
    since: datetime | None
    expires: datetime | None
    approval: bool  # waits for the approval form (approved, approver, reason)
    description: str = ""


def _api_url() -> str:
    url = get_current_settings().api.url
    if not url:
        raise InputError(
            "PREFECT_API_URL is not set: point it at the Prefect server the migration runs report to, "
            "e.g. export PREFECT_API_URL=http://127.0.0.1:4200/api"
        )
    return str(url)


def _api_error(url: str, exc: Exception) -> CloudError:
    if isinstance(exc, PrefectHTTPStatusError):
        return CloudError("Prefect API", f"{url} answered {exc.response.text[:300]}", exc.response.status_code)
    return CloudError("Prefect API", f"cannot reach {url}: {exc.__class__.__name__}: {exc}")


def _read_input(client: Any, run_id: UUID, key: str) -> Any:
    try:
        return json.loads(client.read_flow_run_input(run_id, key))
    except PrefectHTTPStatusError as exc:
        if exc.response.status_code == 404:
            return None
        raise


def _pending(client: Any, run: FlowRun, flow_name: str) -> PendingRun:
    state = run.state
    assert state is not None
    details = state.state_details
    keyset = details.run_input_keyset
    approval = False
    description = ""
    if keyset:
        schema = _read_input(client, run.id, keyset["schema"]) or {}
        approval = {"approved", "approver"} <= set(schema.get("properties", {}))
        description = _read_input(client, run.id, keyset["description"]) or ""
    return PendingRun(
        run_id=run.id,
        flow_name=flow_name,
        run_name=run.name,
        gate=details.pause_key,
        since=state.timestamp,
        expires=details.pause_timeout,
        approval=approval,
        description=description,
    )


def list_pending(limit: int = 200) -> list[PendingRun]:
    """Paused flow runs, oldest pause first."""
    url = _api_url()
    try:
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
                ),
                sort=FlowRunSort.START_TIME_DESC,
                limit=limit,
            )
            flows = {fid: client.read_flow(fid).name for fid in {r.flow_id for r in runs}}
            pending = [_pending(client, run, flows[run.flow_id]) for run in runs]
    except (httpx.TransportError, PrefectHTTPStatusError) as exc:
        raise _api_error(url, exc) from exc
    return sorted(pending, key=lambda p: p.since or datetime.min.replace(tzinfo=UTC))


def answer_gate(run_id: str, *, approved: bool, approver: str, reason: str = "") -> PendingRun:
    """Resume a run paused at an approval gate with an answer, as the UI form does.

    Returns the gate that was answered. The run judges the answer (the spec's allow-list)
    at its next poll. InputError (exit 2) for an unknown run, a run not paused at an
    approval gate, or an answer the server refuses; CloudError (exit 1) when the API is
    unreachable.
    """
    try:
        flow_run_id = UUID(run_id)
    except ValueError:
        raise InputError(f"{run_id!r} is not a flow run id (a UUID; see `mmrv-migrate pending`)") from None
    if not approver.strip():
        raise InputError("--approver must name who decides")
    url = _api_url()
    answer = {"approved": approved, "approver": approver.strip(), "reason": reason}
    try:
        with get_client(sync_client=True) as client:
            try:
                run = client.read_flow_run(flow_run_id)
            except ObjectNotFound:
                raise InputError(f"no flow run {run_id} on the Prefect server at {url}") from None
            if run.state is None or not run.state.is_paused():
                now_in = run.state.name if run.state else "no state"
                raise InputError(f"flow run {run_id} ({run.name}) is not paused (it is {now_in}): nothing to answer")
            gate = _pending(client, run, client.read_flow(run.flow_id).name)
            if not gate.approval:
                raise InputError(f"flow run {run_id} ({run.name}) is paused but does not wait for an approval")
            result = client.resume_flow_run(flow_run_id, run_input=answer)
    except (httpx.TransportError, PrefectHTTPStatusError) as exc:
        raise _api_error(url, exc) from exc
    if result.status != SetStateStatus.ACCEPT:  # the HTTP code is 200/201 either way
        if result.state is not None and result.state.is_failed():
            raise InputError(f"flow run {run_id}: the gate timed out, the run can no longer be resumed")
        why = getattr(result.details, "reason", None) or result.status.value
        raise InputError(f"flow run {run_id}: Prefect refused the answer: {why}")
    return gate


def render_pending(pending: list[PendingRun], *, now: datetime | None = None, lines: int = 3) -> str:
    """One block per paused run: id, flow/run, gate, since when, until when, the request's first lines."""
    if not pending:
        return "no flow run is paused\n"
    now = now or datetime.now(UTC)
    out: list[str] = []
    for p in pending:
        waits = "an approval (approved, approver, reason)" if p.approval else "a resume (no approval form)"
        out.append(f"{p.run_id}  {p.flow_name}/{p.run_name}  gate {p.gate or '-'}: waits for {waits}")
        since = f"{p.since.isoformat(timespec='seconds')} ({_ago(now - p.since)} ago)" if p.since else "-"
        expires = f"{p.expires.isoformat(timespec='seconds')} (in {_ago(p.expires - now)})" if p.expires else "never"
        out.append(f"  paused since {since}, times out at {expires}")
        text = [line.strip() for line in p.description.splitlines() if line.strip() and line.strip() != "---"]
        out += [f"  | {line}" for line in text[:lines]]
        if len(text) > lines:
            out.append(f"  | ... ({len(text) - lines} more line(s): see the flow run in the Prefect UI)")
    return "\n".join(out) + "\n"


def _ago(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"
