"""The DNS cutover of one component in one environment; Route 53 stays authoritative.

For every public name of the component (the spec's `dns.records`):

1. save the current record sets exactly (a Prefect Variable for the rollback, an artifact for the audit);
2. lower the TTL to the spec's value and wait out the old TTL;
3. turn the record into a weighted pair (`aws`: today's target, `azure`: the AKS address) and
   shift the weight through the spec's steps, holding each for the bake time while the gates
   run (the smoke checks against the Azure URL; the error rate from a Prometheus-compatible
   endpoint, when the spec names one);
4. on a failed gate: put the saved record sets back exactly, report, fail naming the gate and weight;
5. at 100 %: keep the pair with AWS at weight 0, warm for the rollback window.

`rollback=True` puts the saved record sets back at any time. A rerun continues from what
Route 53 shows (the step it shows is baked again); a rerun of a completed cutover changes
nothing. Waits are multiplied by `time_scale` (1 in the cloud, e.g. 0.01 in a rehearsal).
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact
from pydantic import ValidationError

from migration.cutover import (
    CutoverError,
    CutoverReport,
    GateFailed,
    NamePlan,
    RecordSet,
    SavedRecords,
    StepReport,
    has_our_weighted_sets,
    phases,
    plan_name,
    render_report,
    restore_changes,
    scaled,
    variable_name,
)
from migration.errors import InputError
from migration.settings import RetrySettings
from migration.spec import DEFAULT_SPEC_PATH, Spec, load_spec
from tasks.cutover import apply_batch, artifact_slug, bake, find_zone, load_saved, read_records, store_saved
from tasks.defaults import with_retries

INSYNC_POLL_SECONDS = 5.0  # Route 53 propagates in about 60 s; polled every 5 s (times the time scale)
INSYNC_TIMEOUT_SECONDS = 600.0


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class _Run:
    """The state of one cutover run: the spec's names, the saved originals, the report as it grows."""

    def __init__(self, spec: Spec, env: str, component: str, time_scale: float, report: CutoverReport) -> None:
        self.spec = spec
        self.env = env
        self.component = component
        self.time_scale = time_scale
        self.report = report
        self.retry = RetrySettings()
        self.logger = get_run_logger()
        self.read = with_retries(read_records, self.retry)
        self.apply = with_retries(apply_batch, self.retry)
        self.store = with_retries(store_saved, self.retry)
        self.saved: dict[str, SavedRecords] = {}
        self.progress: UUID | None = None
        self.key = f"cutover-{artifact_slug(env)}-{artifact_slug(component)}"

    def publish(self) -> None:
        create_markdown_artifact(
            key=self.key,
            markdown=render_report(self.report),
            description=f"DNS {self.report.mode} of {self.component} [{self.env}]: {self.report.outcome}",
        )

    def set_progress(self, azure_weight: int) -> None:
        description = f"azure weight {azure_weight}% for {self.component} [{self.env}]"
        if self.progress is None:
            self.progress = create_progress_artifact(
                progress=float(azure_weight), key=f"{self.key}-progress", description=description
            )
        else:
            update_progress_artifact(self.progress, float(azure_weight), description=description)

    def apply_changes(self, zone_id: str, name: str, label: str, changes: list[dict[str, Any]], expected: Any) -> str:
        poll = scaled(INSYNC_POLL_SECONDS, self.time_scale)
        return str(
            self.apply(
                zone_id,
                name,
                label,
                changes,
                list(expected),
                poll_seconds=poll,
                timeout_seconds=max(INSYNC_TIMEOUT_SECONDS * self.time_scale, 10 * poll, 5.0),
            )
        )

    def mark(self, name: str, status: str, azure_weight: int | None = None) -> None:
        """Record how far the name got (a Variable write only when the status changes)."""
        if self.saved[name].status == status:
            return
        update: dict[str, Any] = {"status": status, "updated_at": _now()}
        if azure_weight is not None:
            update["azure_weight"] = azure_weight
        self.saved[name] = self.store(self.saved[name].model_copy(update=update))


@flow(name="cutover", flow_run_name="cutover-{env}-{component}", validate_parameters=True)
def cutover_flow(
    spec_path: str = str(DEFAULT_SPEC_PATH),
    env: str = "staging",
    component: str = "backend",
    azure_target: str | None = None,
    azure_url: str | None = None,
    rollback: bool = False,
    time_scale: float = 1.0,
    metrics_query_url: str | None = None,
) -> CutoverReport:
    """Shift the component's public names from AWS to Azure by weighted DNS, or roll them back.

    `azure_target`: the AKS load balancer's IP address (A records) or host name (CNAMEs);
    `azure_url`: where the smoke checks reach it (default `http://<azure_target>`; in the
    sandbox `http://127.0.0.1:PORT`); `metrics_query_url`: the Prometheus-compatible API of
    the error-rate gate, instead of the spec's `cutover.metrics_query_url` (the rehearsal's
    traffic generator listens on a port chosen at run time).
    """
    spec = load_spec(spec_path)
    if metrics_query_url:
        try:
            cutover = spec.cutover.model_validate({**spec.cutover.model_dump(), "metrics_query_url": metrics_query_url})
        except ValidationError:
            raise InputError(f"metrics query URL {metrics_query_url!r} is not an http(s) URL") from None
        spec = spec.model_copy(update={"cutover": cutover})
    environment = spec.environment(env)
    if component not in spec.components:
        raise InputError(f"component {component!r} is not in the spec; allowed: {', '.join(spec.components)}")
    if not time_scale > 0:
        raise InputError(f"--time-scale {time_scale} must be a positive number (1 in the cloud)")
    names = [r.name for r in environment.dns.records if r.component == component]
    if not names:
        raise InputError(f"environment {env!r} has no dns.records for component {component!r}: nothing to cut over")
    report = CutoverReport(
        spec=spec.name,
        environment=env,
        component=component,
        mode="rollback" if rollback else "cutover",
        azure_target=azure_target,
        time_scale=time_scale,
        names=names,
    )
    run = _Run(spec, env, component, time_scale, report)
    zone_id = with_retries(find_zone, run.retry)(environment.dns.zone)
    if rollback:
        return _rollback(run, zone_id, names)
    if not azure_target:
        raise InputError(
            "a cutover needs the Azure target: the AKS load balancer's IP address or host name (--azure-target)"
        )
    report.azure_url = azure_url or (f"http://[{azure_target}]" if ":" in azure_target else f"http://{azure_target}")
    return _cutover(run, zone_id, names, azure_target, report.azure_url)


# --- the cutover ----------------------------------------------------------------------------


def _original(run: _Run, zone_id: str, name: str, current: list[RecordSet], azure_target: str) -> NamePlan:
    """The plan from the saved original, saving it first when this is the first run; never saves a weighted state."""
    policy = run.spec.cutover
    saved = load_saved(run.spec.name, run.env, name)
    if saved is not None:
        plan = plan_name(name, saved.record_sets, azure_target, policy)
        try:
            done = plan.position(current)
        except CutoverError:
            if saved.status not in ("restored", "rolled-back") or has_our_weighted_sets(current):
                raise
            run.logger.info("%s: changed since its last restore: saving the records Route 53 shows now", name)
        else:
            # a cutover starting (again) from the original publishes its rollback target for this run's audit
            # too, and records this run's Azure target (a later drift check or resume replays with it)
            if done == 0:
                saved = run.store(saved.model_copy(update={"azure_target": azure_target}), audit=True)
            run.saved[name] = saved
            return plan
    elif has_our_weighted_sets(current):
        raise CutoverError(
            f"{name}: Route 53 shows the cutover's weighted pair, but no saved original was found (Prefect Variable "
            f"{variable_name(run.spec.name, run.env, name)}): the tool will not take a weighted state for the "
            "original; restore the records from the audit artifact `cutover-saved-...` by hand"
        )
    plan = plan_name(name, current, azure_target, policy)  # refuses what cannot be paired, before saving
    original = SavedRecords(
        spec=run.spec.name,
        environment=run.env,
        component=run.component,
        name=plan.name,
        zone_id=zone_id,
        record_sets=current,
        saved_at=_now(),
        azure_target=azure_target,
    )
    run.saved[name] = run.store(original, audit=True)
    run.logger.info("%s: saved %d record set(s) as the rollback target", name, len(current))
    return plan


def _cutover(run: _Run, zone_id: str, names: list[str], azure_target: str, azure_url: str) -> CutoverReport:
    report, policy, logger = run.report, run.spec.cutover, run.logger
    plans: dict[str, NamePlan] = {}
    done: dict[str, int] = {}  # steps Route 53 shows as done, per name
    for name in names:
        current = run.read(zone_id, name)
        plans[name] = _original(run, zone_id, name, current, azure_target)
        done[name] = plans[name].position(current)
        report.saved[name] = list(plans[name].saved)
        report.notes += [f"{name}: {note}" for note in plans[name].notes]
    complete = all(done[n] == len(plans[n].steps) for n in names)
    if complete and all(run.saved[n].status == "complete" for n in names):
        report.outcome = "already-complete"
        report.message = "Route 53 already shows the completed cutover (AWS at weight 0): nothing changed."
        report.final = {n: list(plans[n].complete) for n in names}
        run.set_progress(100)
        run.publish()
        logger.info("%s", report.message)
        return report
    resumed = [f"{n} ({done[n]} of {len(plans[n].steps)} steps)" for n in names if done[n]]
    if resumed:
        logger.info("resuming from what Route 53 shows: %s", ", ".join(resumed))

    try:
        _shift(run, zone_id, names, plans, done, azure_url)
    except GateFailed:
        raise
    except Exception as exc:
        where = report.steps[-1].phase if report.steps else "the start"
        report.outcome = "stopped"
        report.message = (
            f"stopped during {where}: {exc}. Each change batch is all or nothing, so Route 53 shows the last step "
            "applied: run the cutover again to continue from there, or roll back."
        )
        run.publish()
        raise

    until = dt.datetime.now(dt.UTC) + dt.timedelta(hours=policy.rollback_window_hours)
    for name in names:
        run.mark(name, "complete", 100)
    report.outcome = "complete"
    report.rollback_until = until.isoformat(timespec="minutes")
    report.message = (
        f"{', '.join(names)} answer from Azure ({azure_target}) at weight 100; AWS stays at weight 0 until "
        f"{report.rollback_until} (`--rollback` restores the saved records at any time)."
    )
    report.final = {n: run.read(zone_id, n) for n in names}
    run.set_progress(100)
    run.publish()
    logger.info("%s", report.message)
    return report


def _shift(
    run: _Run, zone_id: str, names: list[str], plans: dict[str, NamePlan], done: dict[str, int], azure_url: str
) -> None:
    """Each phase in order: apply it where Route 53 is not past it, then wait (lower-ttl) or bake with the gates."""
    report, policy, logger = run.report, run.spec.cutover, run.logger
    for phase in phases(policy):
        steps = {n: (i, s) for n in names for i, s in enumerate(plans[n].steps) if s.phase == phase}
        if not steps:
            continue
        step_any = next(iter(steps.values()))[1]
        weight = step_any.azure_weight
        step_report = StepReport(phase=phase, azure_weight=weight)
        report.steps.append(step_report)
        if all(done[n] > i + 1 for n, (i, _) in steps.items()):
            step_report.already = list(steps)
            step_report.status = "skipped"
            continue
        for name, (index, step) in steps.items():
            if done[name] > index:
                step_report.already.append(name)
                continue
            outcome = run.apply_changes(zone_id, name, phase, step.api_changes(), step.after)
            done[name] = index + 1
            (step_report.changed if outcome == "applied" else step_report.already).append(name)
            logger.info("%s: %s %s", name, phase, "applied" if outcome == "applied" else "was already applied")
            run.mark(name, "in-progress", weight)
        if weight is None:
            wait = scaled(max(s.wait_seconds for _, s in steps.values()), run.time_scale)
            logger.info("waiting %.1f s: %s", wait, step_any.wait_reason)
            time.sleep(wait)
            step_report.waited_seconds = round(wait, 3)
            run.publish()
            continue
        run.set_progress(weight)
        run.publish()
        component = run.spec.components[run.component]  # type: ignore[index]
        result = bake(
            run.env,
            run.component,
            list(steps),
            weight,
            azure_url,
            list(component.smoke_checks),
            scaled(policy.bake_seconds, run.time_scale),
            scaled(policy.smoke_interval_seconds, run.time_scale),
            metrics_query_url=policy.metrics_query_url,
            error_rate_query=policy.error_rate_query,
            error_budget=policy.error_budget,
        )
        step_report.checks, step_report.failures = result.checks, result.failures
        step_report.max_error_rate, step_report.waited_seconds = result.max_error_rate, result.waited_seconds
        if not result.ok:
            step_report.status = "failed"
            _fail(run, zone_id, names, plans, result.failures[0].gate, weight, result.failures[0].detail)
        logger.info("azure %d%%: %d gate check(s) passed in %.1f s", weight, result.checks, result.waited_seconds)


def _fail(
    run: _Run, zone_id: str, names: list[str], plans: dict[str, NamePlan], gate: str, weight: int, detail: str
) -> None:
    """Put every name's saved records back exactly, report, and raise GateFailed."""
    report = run.report
    run.logger.error("gate %s failed at azure weight %d: %s; restoring the saved records", gate, weight, detail)
    for name in names:
        current = run.read(zone_id, name)
        changes = restore_changes(plans[name].saved, current)
        if changes:
            run.apply_changes(zone_id, name, "restore", [c.to_api() for c in changes], plans[name].saved)
        run.mark(name, "restored", 0)
    report.final = {n: run.read(zone_id, n) for n in names}
    report.outcome = "restored"
    report.message = (
        f"gate {gate} failed at azure weight {weight}: {detail}. The saved DNS records of {', '.join(names)} were "
        "restored exactly; the AKS deployment stays for diagnosis."
    )
    run.set_progress(0)
    run.publish()
    run.logger.error("%s", report.message)
    raise GateFailed(report.message)


# --- the rollback -----------------------------------------------------------------------------


def _rollback(run: _Run, zone_id: str, names: list[str]) -> CutoverReport:
    report = run.report
    step = StepReport(phase="restore")
    report.steps.append(step)
    for name in names:
        saved = load_saved(run.spec.name, run.env, name)
        current = run.read(zone_id, name)
        if saved is None:
            if has_our_weighted_sets(current):
                raise CutoverError(
                    f"{name}: Route 53 shows the cutover's weighted pair, but no saved original was found (Prefect "
                    f"Variable {variable_name(run.spec.name, run.env, name)}): restore the records from the audit "
                    "artifact `cutover-saved-...` by hand"
                )
            step.already.append(name)
            continue
        run.saved[name] = saved
        report.saved[name] = list(saved.record_sets)
        changes = restore_changes(saved.record_sets, current)
        if changes:
            run.apply_changes(zone_id, name, "rollback", [c.to_api() for c in changes], saved.record_sets)
            step.changed.append(name)
        else:
            step.already.append(name)
        run.mark(name, "rolled-back", 0)
    report.final = {n: run.read(zone_id, n) for n in names}
    if step.changed:
        report.outcome = "rolled-back"
        report.message = f"the saved DNS records of {', '.join(step.changed)} were restored exactly: AWS answers again."
    else:
        report.outcome = "nothing-to-roll-back"
        report.message = "Route 53 already shows the saved records (or no cutover was started): nothing changed."
    run.set_progress(0)
    run.publish()
    run.logger.info("%s", report.message)
    return report
