"""The drift check of one environment: what the spec and the last successful run say should be, against what is there.

Each area is the dry run of the phase that owns it, as a subflow named for the area:

    drift[staging] azure                      the platform plan must be empty
    drift[staging] images                     every ECR image in scope is in ACR with the same digest
    drift[staging] kubernetes+secrets backend the ship plan (manifests, IAM federation) must be empty,
                                              every Key Vault secret holds its source's value (by hash)
    drift[staging] dns                        Route 53 shows what the cutover's saved state says

-> a table artifact `drift-<env>` (each drift with its remedy) and the report (`drift-report-<env>`)
-> the run ends Failed when there is drift (`DriftFound`, exit 3) so Prefect automations can
notify; an area that cannot be read (e.g. no cluster yet) is an error (`DriftCheckFailed`, exit 1).

`remediate=True` re-runs the owning phase for each drifted area the tool owns (platform, images,
ship; the secrets are the ship's), puts DNS back where the cutover left it when that is safe
(a finished or rolled-back cutover, only the record type it shifts), then checks those areas
again. Waits of a remediating ship run are multiplied by `time_scale` (1 in the cloud).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from functools import partial

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.cutover import INSYNC_POLL_SECONDS, INSYNC_TIMEOUT_SECONDS
from flows.images import images_flow
from flows.platform import platform_flow
from flows.ship import ship_flow
from migration.cutover import restore_changes, scaled
from migration.drift import (
    AREAS,
    DnsCheck,
    DriftCheckFailed,
    DriftFound,
    DriftReport,
    Remediation,
    check_dns_name,
    merge,
    plan_drift,
    remedy_command,
    secrets_drift,
)
from migration.errors import InputError, MigrationError
from migration.settings import RetrySettings
from migration.spec import DEFAULT_SPEC_PATH, Spec, load_spec
from tasks.cutover import apply_batch, artifact_slug, find_zone, load_saved, read_records
from tasks.defaults import with_retries

SHIP_AREAS = ("kubernetes", "secrets")


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text if isinstance(exc, MigrationError) and text else f"{type(exc).__name__}: {text or 'no message'}"


def _shipped_components(spec: Spec) -> list[str]:
    """The components the ship phase brings to AKS (the ECS back end; Amplify is a later phase)."""
    return [name for name, c in spec.components.items() if c.source == "ecs"]


@flow(name="drift-dns", flow_run_name="drift[{env}] dns", validate_parameters=True)
def dns_drift_flow(spec_path: str = str(DEFAULT_SPEC_PATH), env: str = "staging") -> list[DnsCheck]:
    """Route 53's records of the environment's public names against the cutover state saved for each."""
    spec = load_spec(spec_path)
    environment = spec.environment(env)
    if not environment.dns.records:
        return []
    retry = RetrySettings()
    zone_id = with_retries(find_zone, retry)(environment.dns.zone)
    checks = []
    for record in environment.dns.records:
        current = with_retries(read_records, retry)(zone_id, record.name)
        saved = with_retries(load_saved, retry)(spec.name, env, record.name)
        check = check_dns_name(env, record.component, record.name, saved, current, spec.cutover, spec_name=spec.name)
        checks.append(check.model_copy(update={"zone_id": zone_id}))
    return checks


class _Check:
    """One pass over some areas: fills a report, keeps the DNS checks (the remediation needs their restores)."""

    def __init__(self, spec_path: str, spec: Spec, env: str) -> None:
        self.spec_path = spec_path
        self.spec = spec
        self.env = env
        self.logger = get_run_logger()
        self.report = DriftReport(environment=env, spec=spec.name, checked_at=_now())
        self.dns: list[DnsCheck] = []

    def fail(self, areas: tuple[str, ...], exc: BaseException, what: str = "") -> None:
        message = (f"{what}: " if what else "") + _reason(exc)
        for area in areas:
            previous = self.report.errors.get(area)
            self.report.errors[area] = f"{previous}; {message}" if previous else message
        self.logger.error("%s: could not be read: %s", "+".join(areas), message)

    def count(self, area: str, n: int) -> None:
        self.report.checked[area] = self.report.checked.get(area, 0) + n

    def run(self, areas: set[str]) -> DriftReport:
        env, spec_path = self.env, self.spec_path
        if "azure" in areas:
            try:
                platform = platform_flow.with_options(flow_run_name=f"drift[{env}] azure")(
                    spec_path=spec_path, env=env, dry_run=True
                )
            except Exception as exc:
                self.fail(("azure",), exc)
            else:
                self.report.items += plan_drift("azure", platform.plan, remedy_command("azure", env))
                self.count("azure", len(platform.plan.actions))
        if "images" in areas:
            try:
                images = images_flow.with_options(flow_run_name=f"drift[{env}] images")(
                    spec_path=spec_path, env=env, dry_run=True
                )
            except Exception as exc:
                self.fail(("images",), exc)
            else:
                self.report.items += plan_drift("images", images.plan.plan, remedy_command("images", env))
                self.count("images", len(images.plan.items))
        ship_areas = tuple(a for a in SHIP_AREAS if a in areas)
        if ship_areas:
            for component in _shipped_components(self.spec):
                self._ship(component, ship_areas)
        if "dns" in areas:
            try:
                self.dns = dns_drift_flow(spec_path=spec_path, env=env)
            except Exception as exc:
                self.fail(("dns",), exc)
            else:
                self.report.items += [c.drift for c in self.dns if c.drift is not None]
                self.report.notes += [f"dns: {c.name} ({c.component}): {c.state}" for c in self.dns]
                self.count("dns", len(self.dns))
        order = {a: i for i, a in enumerate(AREAS)}
        self.report.items.sort(key=lambda d: order[d.area])
        return self.report

    def _ship(self, component: str, areas: tuple[str, ...]) -> None:
        env = self.env
        try:
            shipped = ship_flow.with_options(flow_run_name=f"drift[{env}] kubernetes+secrets {component}")(
                spec_path=self.spec_path, env=env, component=component, dry_run=True
            )
        except Exception as exc:
            self.fail(areas, exc, component)
            return
        remedy = remedy_command("kubernetes", env, component)
        if "kubernetes" in areas:
            self.report.items += plan_drift("kubernetes", shipped.plan, remedy)
            self.count("kubernetes", len(shipped.plan.actions))
            if shipped.federation is not None:
                self.report.items += plan_drift("kubernetes", shipped.federation, remedy)
                self.count("kubernetes", len(shipped.federation.actions))
        if "secrets" in areas:
            if shipped.secrets is not None:
                self.report.items += secrets_drift(shipped.secrets, remedy)
                self.count("secrets", len(shipped.secrets.secrets))
            else:
                self.count("secrets", 0)


def _remediate(spec_path: str, spec: Spec, env: str, check: _Check, time_scale: float) -> DriftReport:
    """Re-run the owning phase of each drifted area the tool owns, then check those areas again."""
    logger = get_run_logger()
    report = check.report
    by_area = report.by_area()
    owned = [a for a in AREAS if any(d.owned for d in by_area[a])]
    notes = [
        f"{a}: not remediated: the drift is not the tool's to change (see the remedy)"
        for a in AREAS
        if by_area[a] and a not in owned
    ]
    done: list[Remediation] = []
    rechecked: set[str] = set()

    def attempt(area: str, action: str, call: Callable[[], object]) -> None:
        try:
            call()
        except Exception as exc:
            done.append(
                Remediation.model_validate({"area": area, "action": action, "ok": False, "detail": _reason(exc)})
            )
            logger.error("remediation %s of %s failed: %s", action, area, _reason(exc))
        else:
            done.append(Remediation.model_validate({"area": area, "action": action, "ok": True}))

    if "azure" in owned:
        rechecked.add("azure")
        attempt(
            "azure",
            remedy_command("azure", env),
            lambda: platform_flow.with_options(flow_run_name=f"remediate[{env}] azure")(spec_path=spec_path, env=env),
        )
    if "images" in owned:
        rechecked.add("images")
        attempt(
            "images",
            remedy_command("images", env),
            lambda: images_flow.with_options(flow_run_name=f"remediate[{env}] images")(spec_path=spec_path, env=env),
        )
    ship_owned = [a for a in SHIP_AREAS if a in owned]
    if ship_owned:
        rechecked.update(SHIP_AREAS)
        for component in _shipped_components(spec):
            attempt(
                ship_owned[0],
                remedy_command("kubernetes", env, component),
                partial(
                    ship_flow.with_options(flow_run_name=f"remediate[{env}] kubernetes+secrets {component}"),
                    spec_path=spec_path,
                    env=env,
                    component=component,
                    time_scale=time_scale,
                ),
            )
    if "dns" in owned:
        rechecked.add("dns")
        for dns in check.dns:
            if dns.drift is None:
                continue
            if dns.restore is None:
                notes.append(f"dns: {dns.name} not remediated: {dns.drift.remedy}")
                continue
            attempt("dns", f"restore {dns.name} as the cutover left it", partial(_restore, dns, time_scale))

    if rechecked:
        again = _Check(spec_path, spec, env).run(rechecked)
        logger.info("after remediation: %s", again.summary())
        report = merge(report, again, rechecked)
    return report.model_copy(update={"remediated": done, "notes": [*report.notes, *notes]})


def _restore(dns: DnsCheck, time_scale: float) -> None:
    """One compare-and-swap batch that puts the name's records back as the cutover left them."""
    assert dns.restore is not None
    retry = RetrySettings()
    current = with_retries(read_records, retry)(dns.zone_id, dns.name)
    changes = [c.to_api() for c in restore_changes(dns.restore, current)]
    if not changes:
        return
    poll = scaled(INSYNC_POLL_SECONDS, time_scale)
    with_retries(apply_batch, retry)(
        dns.zone_id,
        dns.name,
        "drift restore",
        changes,
        dns.restore,
        poll_seconds=poll,
        timeout_seconds=max(INSYNC_TIMEOUT_SECONDS * time_scale, 10 * poll, 5.0),
    )


def _publish(report: DriftReport) -> None:
    slug = artifact_slug(report.environment)
    create_table_artifact(key=f"drift-{slug}", table=report.table_rows(), description=report.summary())
    create_markdown_artifact(
        key=f"drift-report-{slug}", markdown=report.render_markdown(), description=report.summary()
    )


@flow(name="drift", flow_run_name="drift-{env}", validate_parameters=True)
def drift_flow(
    spec_path: str = str(DEFAULT_SPEC_PATH), env: str = "staging", remediate: bool = False, time_scale: float = 1.0
) -> DriftReport:
    """Check one environment for drift in every area (see the module doc); Failed when there is drift.

    Raises DriftFound (exit 3) on drift, DriftCheckFailed (exit 1) when an area could not be
    read; both carry the report. `remediate`: put back what the tool owns, then check again.
    """
    logger = get_run_logger()
    spec = load_spec(spec_path)
    spec.environment(env)  # a SpecError naming the allowed environments
    if not time_scale > 0:
        raise InputError(f"time scale {time_scale} must be a positive number (1 in the cloud)")
    check = _Check(spec_path, spec, env)
    report = check.run(set(AREAS))
    logger.info("%s", report.summary())
    if remediate and report.items:
        report = _remediate(spec_path, spec, env, check, time_scale)
    _publish(report)
    for item in report.items:
        logger.warning("drift: %s %s: %s -> %s", item.area, item.resource, item.differs, item.remedy)
    if report.errors:
        raise DriftCheckFailed(report)
    if report.items:
        raise DriftFound(report)
    logger.info("%s", report.summary())
    return report
