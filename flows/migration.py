"""The migration, as the decision record orders it, for the back end (the front end joins with its phases 3/4).

    phase 1, staging:     platform -> images -> ship backend -> cutover of the staging names
    gate "production":    what phase 2 will change (the production plans, from the same Plan
                          objects apply uses) and the staging evidence (smoke, digests, rollout)
    phase 2, production:  platform -> images -> ship backend
    gate "production-cutover": the production evidence, then -> cutover of the production names

Each phase is its own flow (flows/platform.py, images.py, ship.py, cutover.py), runnable and
deployable alone; here they run as subflows named after environment and component. A refused
gate (rejected, timed out, not an approver) ends the run Cancelled before production changes,
saying why. A final markdown artifact says what changed where, how long it took and who approved.
Waits (rollout deadlines, bakes, TTLs, approval timeouts) are multiplied by `time_scale`.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.states import State
from pydantic import BaseModel, Field

from flows.approval import approval_gate, refusal_state, scaled_waits
from flows.cutover import cutover_flow
from flows.images import ImagesResult, images_flow
from flows.platform import PlatformResult, platform_flow
from flows.ship import ShipResult, ship_flow
from migration.approval import Decision, render_request
from migration.cutover import CutoverReport, target_of_url
from migration.errors import CloudError, InputError
from migration.plan import Plan
from migration.spec import DEFAULT_SPEC_PATH, Spec, load_spec

COMPONENT = "backend"  # phases 1 and 2 of the decision record; the front end is phases 3 and 4


class EnvironmentOutcome(BaseModel):
    environment: str
    platform: PlatformResult
    images: ImagesResult
    ship: ShipResult | None = None
    cutover: CutoverReport | None = None
    seconds: dict[str, float] = Field(default_factory=dict)


class MigrationResult(BaseModel):
    started_at: str = ""
    environments: list[EnvironmentOutcome] = Field(default_factory=list)
    approvals: list[Decision] = Field(default_factory=list)
    stopped: str | None = None  # why the migration stopped before the end (a refused gate)

    def outcome(self, env: str) -> EnvironmentOutcome | None:
        return next((e for e in self.environments if e.environment == env), None)

    def render_markdown(self) -> str:
        lines = ["# Migration report", ""]
        if self.started_at:
            lines += [f"Started {self.started_at} (UTC). Component: the back end (phases 1 and 2).", ""]
        for outcome in self.environments:
            lines += [f"## {outcome.environment}", ""]
            took = ", ".join(f"{phase} {s:.1f} s" for phase, s in outcome.seconds.items())
            lines += [f"Durations: {took}.", ""]
            platform = outcome.platform
            lines += [f"- platform: {platform.plan.summary()}; {len(platform.applied)} change(s) applied, verified"]
            if platform.outputs:
                lines += [
                    f"  - ACR `{platform.outputs.acr_login_server}`, Key Vault `{platform.outputs.key_vault_uri}`",
                    f"  - AKS OIDC issuer `{platform.outputs.aks_oidc_issuer}`",
                ]
            ledger = outcome.images.ledger
            lines += [f"- {ledger.summary() if ledger else 'images: planned only'}"]
            if outcome.ship is not None:
                ship = outcome.ship
                lines += [f"- ship {ship.component}: {ship.plan.summary()}; {len(ship.applied)} object(s) applied"]
                if ship.secrets is not None:
                    lines += [f"  - {ship.secrets.summary()}"]
                if ship.aws_role_arn:
                    lines += [f"  - AWS access through `{ship.aws_role_arn}`"]
                e = ship.evidence
                if e is not None:
                    lines += [
                        f"  - revision {e.revision}, digest `{e.digest}`, rollout {e.rollout_seconds or 0:.1f} s",
                        f"  - {e.smoke_checks} smoke check(s) against {e.url}, {len(e.smoke_failures)} failed",
                    ]
            if outcome.cutover is not None:
                c = outcome.cutover
                lines += [f"- cutover of {', '.join(c.names)}: {c.outcome}"]
            lines += [""]
        if self.approvals:
            lines += ["## Approvals", ""]
            for d in self.approvals:
                who = d.approver or ("the rehearsal (--auto-approve)" if d.auto else "nobody")
                lines += [f"- {d.gate}: **{d.outcome}** by {who} at {d.decided_at.isoformat(timespec='seconds')}"]
                if d.reason:
                    lines += [f"  - why: {d.reason}"]
            lines += [""]
        if self.stopped:
            lines += ["## Stopped", "", self.stopped, ""]
        lines += [
            "Artifacts of each phase: `platform-plan-<env>`, `platform-report-<env>`, `images-*-<env>`,",
            "`ship-plan-<env>-backend`, `ship-report-<env>-backend`, `secrets-report-<env>`, `cutover-<env>-backend`,",
            "`approval-<gate>`. The front end (Amplify -> AKS) is phases 3 and 4: not part of this flow yet.",
        ]
        return "\n".join(lines) + "\n"


def _phase(
    spec_path: str,
    env: str,
    time_scale: float,
    result: MigrationResult,
    *,
    cutover: bool,
    metrics_query_url: str | None,
) -> EnvironmentOutcome:
    logger = get_run_logger()
    seconds: dict[str, float] = {}

    def timed(name: str, call: Any) -> Any:
        began = time.monotonic()
        out = call()
        seconds[name] = round(time.monotonic() - began, 1)
        return out

    logger.info("%s: platform -> images -> ship %s%s", env, COMPONENT, " -> cutover" if cutover else "")
    platform = timed("platform", lambda: platform_flow.with_options(flow_run_name=f"platform-{env}")(spec_path, env))
    images = timed("images", lambda: images_flow.with_options(flow_run_name=f"images-{env}")(spec_path, env))
    ship = timed(
        f"ship {COMPONENT}",
        lambda: ship_flow.with_options(flow_run_name=f"ship-{env}-{COMPONENT}")(
            spec_path=spec_path, env=env, component=COMPONENT, time_scale=time_scale
        ),
    )
    outcome = EnvironmentOutcome(environment=env, platform=platform, images=images, ship=ship, seconds=seconds)
    result.environments.append(outcome)
    if cutover:
        _cut_over(spec_path, env, time_scale, outcome, metrics_query_url)
    return outcome


def _cut_over(
    spec_path: str, env: str, time_scale: float, outcome: EnvironmentOutcome, metrics_query_url: str | None
) -> None:
    url = outcome.ship.evidence.url if outcome.ship and outcome.ship.evidence else None
    if not url:
        raise InputError(f"{env}: the back end has no external address to cut over to (expose it: ship.expose)")
    began = time.monotonic()
    outcome.cutover = cutover_flow.with_options(flow_run_name=f"cutover-{env}-{COMPONENT}")(
        spec_path=spec_path,
        env=env,
        component=COMPONENT,
        azure_target=target_of_url(url),
        azure_url=url,
        time_scale=time_scale,
        metrics_query_url=metrics_query_url,
    )
    outcome.seconds[f"cutover {COMPONENT}"] = round(time.monotonic() - began, 1)


def _production_request(spec_path: str, spec: Spec, staging: EnvironmentOutcome | None, time_scale: float) -> str:
    """What phase 2 changes (the production plans) and what staging proved."""
    plans: list[Plan] = [
        platform_flow.with_options(flow_run_name="plan-platform-production")(spec_path, "production", dry_run=True).plan
    ]
    evidence: list[str] = []
    try:
        images = images_flow.with_options(flow_run_name="plan-images-production")(spec_path, "production", dry_run=True)
        if images.plan is not None:
            plans.append(images.plan.plan)
    except CloudError as exc:  # the production registry does not exist before its platform
        evidence.append(f"images for production are planned once its registry exists ({exc})")
    if staging is not None and staging.ship is not None and staging.ship.evidence is not None:
        e = staging.ship.evidence
        evidence += [
            f"staging runs digest `{e.digest}` (revision {e.revision}), rolled out in {e.rollout_seconds or 0:.1f} s",
            f"staging smoke checks: {e.smoke_checks} run against {e.url}, {len(e.smoke_failures)} failed",
        ]
        if staging.ship.secrets is not None:
            evidence.append(staging.ship.secrets.summary())
    if staging is not None and staging.cutover is not None:
        evidence.append(f"staging DNS cutover: {staging.cutover.outcome}")
    if staging is None:
        evidence.append("staging was not part of this run: check its last migration report")
    timeout, _ = scaled_waits(spec.approvals.timeout_seconds, time_scale)
    return render_request("production", plans, evidence, list(spec.approvals.approvers), timeout)


def _cutover_request(spec: Spec, production: EnvironmentOutcome, time_scale: float) -> str:
    names = [r.name for r in spec.environment("production").dns.records if r.component == COMPONENT]
    steps = ", ".join(f"{w}%" for w in spec.cutover.weight_steps)
    evidence = []
    if production.ship is not None and production.ship.evidence is not None:
        e = production.ship.evidence
        evidence += [
            f"production runs digest `{e.digest}` (revision {e.revision}); {e.smoke_checks} smoke checks passed "
            f"against {e.url}",
        ]
    evidence.append(
        f"the cutover moves {', '.join(names)} to Azure in steps of {steps}, each baked "
        f"{spec.cutover.bake_seconds} s; a failed gate restores the saved records exactly"
    )
    timeout, _ = scaled_waits(spec.approvals.timeout_seconds, time_scale)
    return render_request("production-cutover", [], evidence, list(spec.approvals.approvers), timeout)


@flow(name="migration", flow_run_name="migration-{env}", validate_parameters=True)
def migration_flow(
    spec_path: str = str(DEFAULT_SPEC_PATH),
    env: str = "all",
    auto_approve: bool = False,
    time_scale: float = 1.0,
    metrics_query_urls: dict[str, str] | None = None,
) -> MigrationResult | State[Any]:
    """Phases 1 and 2 for the back end (see the module doc).

    `env`: staging (phase 1), production (phase 2, behind its gates) or all;
    `auto_approve`: the gates approve themselves (a rehearsal; recorded as such);
    `metrics_query_urls`: per environment, the Prometheus-compatible API of the cutover's
    error-rate gate when it differs from the spec's (the rehearsal's traffic generators).
    """
    spec = load_spec(spec_path)
    if env not in ("all", "staging", "production"):
        spec.environment(env)  # a SpecError naming what is allowed
    if not time_scale > 0:
        raise InputError(f"--time-scale {time_scale} must be a positive number (1 in the cloud)")
    urls = dict(metrics_query_urls or {})
    result = MigrationResult(started_at=datetime.now(UTC).isoformat(timespec="seconds"))
    staging: EnvironmentOutcome | None = None
    try:
        if env in ("all", "staging"):
            staging = _phase(
                spec_path, "staging", time_scale, result, cutover=True, metrics_query_url=urls.get("staging")
            )
        if env in ("all", "production"):
            decision = approval_gate(
                spec,
                "production",
                _production_request(spec_path, spec, staging, time_scale),
                auto_approve=auto_approve,
                time_scale=time_scale,
            )
            result.approvals.append(decision)
            if not decision.go:
                return _stop(result, decision)
            production = _phase(spec_path, "production", time_scale, result, cutover=False, metrics_query_url=None)
            decision = approval_gate(
                spec,
                "production-cutover",
                _cutover_request(spec, production, time_scale),
                auto_approve=auto_approve,
                time_scale=time_scale,
            )
            result.approvals.append(decision)
            if not decision.go:
                return _stop(result, decision)
            _cut_over(spec_path, "production", time_scale, production, urls.get("production"))
    finally:
        _publish(result)
    return result


def _stop(result: MigrationResult, decision: Decision) -> State[Any]:
    state = refusal_state(decision)
    result.stopped = state.message
    return state


def _publish(result: MigrationResult) -> None:
    done = ", ".join(e.environment for e in result.environments) or "nothing"
    create_markdown_artifact(
        key="migration-report",
        markdown=result.render_markdown(),
        description=f"what changed where: {done}" + (f"; stopped: {result.stopped}" if result.stopped else ""),
    )
