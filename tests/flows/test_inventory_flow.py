"""The inventory flow under a Prefect test server, against real local AWS stand-ins (moto + Amplify)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import yaml
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.logging.handlers import APILogWorker

from flows.inventory import inventory_flow
from migration.errors import NotFoundError, PermanentError, TransientError
from migration.inventory import Inventory, render_markdown
from migration.settings import RetrySettings
from tasks.defaults import read_task, with_retries
from tests.aws_estate import SeededEstate, StatusServer, find_sensitive

pytestmark = pytest.mark.usefixtures("prefect_harness")


def run(spec_path: Path | str, env: str) -> tuple[Inventory, UUID]:
    state = inventory_flow(spec_path=str(spec_path), env=env, return_state=True)
    flow_run_id = state.state_details.flow_run_id
    assert flow_run_id is not None
    return state.result(), flow_run_id


def artifacts_of(flow_run_id: UUID) -> dict[str, Any]:
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key: a for a in found}


def logs_of(flow_run_id: UUID) -> str:
    APILogWorker.drain_all(timeout=10)
    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    return "\n".join(log.message for log in logs)


@pytest.fixture(scope="module")
def full_run(aws_estate: SeededEstate, spec_path: Path) -> tuple[Inventory, UUID]:
    return run(spec_path, "all")


def test_reads_the_backend_precisely(full_run: tuple[Inventory, UUID], aws_estate: SeededEstate) -> None:
    inv, _ = full_run
    assert [e.name for e in inv.environments] == ["staging", "production"]
    assert (inv.spec_name, inv.account_id, inv.region) == ("mmrv", "123456789012", "eu-west-1")
    assert inv.missing == []

    for env in inv.environments:
        seeded = aws_estate.environments[env.name]
        backend = env.backend
        assert backend is not None
        assert (backend.service.cluster, backend.service.name, backend.service.desired_count) == (
            f"mmrv-{env.name}",
            "mmrv-backend",
            2,
        )
        td = backend.task_definition
        assert td is not None
        assert td.label == f"{seeded.family}:{seeded.active_revision}"
        assert (td.cpu, td.memory, td.network_mode) == ("512", "1024", "awsvpc")
        (container,) = td.containers
        assert container.image.registry == "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
        assert (container.image.repository, container.image.tag) == ("mmrv-backend", seeded.active_tag)
        assert container.environment_names == ["APP_ENV", "LOG_LEVEL", "SESSION_SIGNING_KEY"]
        assert [(s.name, s.secret_name) for s in container.secrets] == [
            ("DB_PASSWORD", f"mmrv/{env.name}/db-password"),
            ("API_KEY", f"mmrv/{env.name}/api-key"),
            ("SENTRY_DSN", f"mmrv/shared/{env.name}-sentry-dsn"),
        ]
        assert [c.container_port for c in container.ports] == [8080]
        (tg,) = backend.target_groups
        assert tg.arn == seeded.target_group_arn
        assert (tg.health_check.path, tg.health_check.interval_seconds, tg.health_check.matcher) == (
            "/healthz",
            15,
            "200",
        )

    staging = inv.environment("staging").backend
    assert staging is not None
    assert [(r.revision, r.active, [i.tag for i in r.images]) for r in staging.revisions] == [
        (2, True, ["1.4.0"]),
        (1, False, ["1.3.2"]),
    ]


def test_reads_images_with_digests_and_usage(full_run: tuple[Inventory, UUID], aws_estate: SeededEstate) -> None:
    inv, _ = full_run
    staging, production = inv.environments
    (repo,) = staging.images  # the front end's repository is not on ECR: not required, not reported
    assert repo.name == "mmrv-backend" and repo.component == "backend"
    by_tag = {image.tags[0]: image for image in repo.images}
    assert set(by_tag) == {"1.3.2", "1.4.0", "1.5.0-rc1"}
    for tag, image in by_tag.items():
        assert image.digest == aws_estate.digests[f"mmrv-backend:{tag}"]
        assert image.size_bytes == aws_estate.sizes[f"mmrv-backend:{tag}"]
        assert image.pushed_at is not None
    assert by_tag["1.4.0"].used_by == ["mmrv-backend-staging:2 (active)"]
    assert by_tag["1.3.2"].used_by == ["mmrv-backend-staging:1"]
    assert by_tag["1.5.0-rc1"].used_by == []
    prod_usage = {image.tags[0]: image.used_by for image in production.images[0].images}
    assert prod_usage["1.3.2"] == ["mmrv-backend-production:1 (active)"]


def test_reads_secrets_by_name_only(full_run: tuple[Inventory, UUID], aws_estate: SeededEstate) -> None:
    inv, _ = full_run
    for env in inv.environments:
        seeded = aws_estate.environments[env.name]
        assert sorted(s.name for s in env.secrets) == seeded.referenced_secret_names
        under_prefix = sorted(s.name for s in env.secrets if s.under_prefix)
        assert under_prefix == seeded.secret_names
        refs = {s.name: s.referenced_by for s in env.secrets}
        assert refs[f"mmrv/{env.name}/db-password"] == ["backend/DB_PASSWORD"]
        assert refs[f"mmrv/shared/{env.name}-sentry-dsn"] == ["backend/SENTRY_DSN"]
        assert all(s.arn.startswith("arn:aws:secretsmanager:eu-west-1:123456789012:secret:") for s in env.secrets)


def test_reads_amplify_dns_autoscaling_iam(full_run: tuple[Inventory, UUID], aws_estate: SeededEstate) -> None:
    inv, _ = full_run
    for env, branch, stage in (("staging", "staging", "BETA"), ("production", "main", "PRODUCTION")):
        e = inv.environment(env)
        assert e.frontend is not None and e.frontend.branch is not None
        app = e.frontend.app
        assert (app.name, app.platform) == ("mmrv-web", "WEB_COMPUTE")
        assert app.environment_variable_names == ["NEXTAUTH_SECRET", "NEXT_PUBLIC_API_URL"]
        assert [(r.source, r.status) for r in app.rewrites] == [("/api/<*>", "200"), ("/old", "301")]
        (domain,) = app.domains
        assert domain.domain_name == "mmrv.example.com"
        assert [(s.prefix, s.branch) for s in domain.subdomains] == [("staging", "staging"), ("www", "main")]
        b = e.frontend.branch
        assert (b.name, b.stage, b.framework) == (branch, stage, "Next.js - SSR")
        assert b.environment_variable_names == ["NEXT_PUBLIC_ENV", "REVALIDATE_TOKEN"]

        records = {(r.name, r.type): r for r in e.dns.records}
        api, web = aws_estate.environments[env].record_names
        assert e.dns.zone is not None and e.dns.zone.name == "mmrv.example.com"
        assert (records[(api, "CNAME")].set_identifier, records[(api, "CNAME")].weight) == ("aws", 100)
        assert records[(api, "CNAME")].ttl == 60 and records[(api, "CNAME")].component == "backend"
        assert records[(web, "CNAME")].values == [f"{branch}.{app.default_domain}"]
        assert records[(web, "CNAME")].component == "frontend"

        (target,) = e.autoscaling.targets
        assert (target.resource_id, target.min_capacity, target.max_capacity) == (
            f"service/mmrv-{env}/mmrv-backend",
            2,
            6 if env == "staging" else 12,
        )
        (policy,) = e.autoscaling.policies
        assert (policy.type, policy.metric, policy.target_value) == (
            "TargetTrackingScaling",
            "ECSServiceAverageCPUUtilization",
            60.0,
        )

        roles = {r.purpose: r for r in e.iam}
        assert roles["task"].name == aws_estate.environments[env].task_role
        assert roles["execution"].name == aws_estate.environments[env].execution_role
        policies = {(p.kind, p.name): p.document for p in roles["task"].policies}
        assert set(policies) == {("attached", f"mmrv-{env}-uploads"), ("inline", "sqs-jobs")}
        assert policies[("inline", "sqs-jobs")]["Statement"][0]["Action"] == "sqs:*"
        assert policies[("attached", f"mmrv-{env}-uploads")]["Statement"][0]["Action"] == [
            "s3:GetObject",
            "s3:PutObject",
        ]


def test_publishes_table_and_markdown_artifacts(full_run: tuple[Inventory, UUID]) -> None:
    inv, flow_run_id = full_run
    artifacts = artifacts_of(flow_run_id)
    assert set(artifacts) == {"inventory-staging", "inventory-production", "inventory-summary"}
    assert artifacts["inventory-summary"].type == "markdown"
    assert artifacts["inventory-summary"].data == render_markdown(inv)
    table = artifacts["inventory-staging"]
    assert table.type == "table"
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    images = {r["name"]: r["detail"] for r in rows if r["kind"] == "ecr-image"}
    assert set(images) == {"mmrv-backend:1.3.2", "mmrv-backend:1.4.0", "mmrv-backend:1.5.0-rc1"}
    assert {r["status"] for r in rows} == {"found"}
    assert {r["environment"] for r in rows} == {"staging"}


def test_no_secret_value_anywhere(full_run: tuple[Inventory, UUID], aws_estate: SeededEstate) -> None:
    inv, flow_run_id = full_run
    assert len(aws_estate.sensitive_values) >= 10
    outputs = {
        "json": inv.model_dump_json(),
        "markdown": render_markdown(inv),
        "logs": logs_of(flow_run_id),
        "artifacts": "\n".join(str(a.data) for a in artifacts_of(flow_run_id).values()),
    }
    assert "inventory of mmrv (all)" in outputs["logs"]  # the logs were really read
    for where, text in outputs.items():
        assert find_sensitive(text, aws_estate.sensitive_values) == [], where


def test_reports_what_the_spec_names_but_aws_lacks(aws_estate: SeededEstate, spec_path: Path, tmp_path: Path) -> None:
    data = yaml.safe_load(spec_path.read_text())
    staging, production = data["environments"]
    staging["aws"]["backend"]["ecs_service"] = "mmrv-backend-old"
    staging["aws"]["frontend"]["amplify_branch"] = "develop"
    production["aws"]["backend"]["ecs_cluster"] = "mmrv-prod-old"
    production["dns"]["records"][1]["name"] = "shop.mmrv.example.com"
    spec = tmp_path / "mmrv-drifted.yaml"
    spec.write_text(yaml.safe_dump(data, sort_keys=False))

    inv, flow_run_id = run(spec, "all")

    app_id = inv.environment("production").frontend.app.app_id  # type: ignore[union-attr]
    zone_id = inv.environment("production").dns.zone.id  # type: ignore[union-attr]
    assert [(m.environment, m.kind, str(m)) for m in inv.missing] == [
        ("staging", "ecs-service", "ECS service mmrv-backend-old in cluster mmrv-staging: not found"),
        ("staging", "amplify-branch", f"Amplify branch develop in Amplify app mmrv-web ({app_id}): not found"),
        ("production", "ecs-service", "ECS service mmrv-backend in cluster mmrv-prod-old: cluster not found"),
        (
            "production",
            "dns-record",
            f"DNS record shop.mmrv.example.com (frontend) in hosted zone mmrv.example.com ({zone_id}): not found",
        ),
    ]
    staging = inv.environment("staging")
    assert staging.backend is None and staging.iam == []
    assert staging.frontend is not None and staging.frontend.branch is None
    assert [s.name for s in staging.secrets] == aws_estate.environments["staging"].secret_names  # prefix still read
    report = render_markdown(inv)
    assert "- [staging] ECS service mmrv-backend-old in cluster mmrv-staging: not found" in report
    rows = json.loads(artifacts_of(flow_run_id)["inventory-production"].data)
    assert [r["name"] for r in rows if r["status"] == "missing"] == [
        "ECS service mmrv-backend",
        "DNS record shop.mmrv.example.com (frontend)",
    ]


def test_transient_failures_are_retried_then_fail_the_flow(
    aws_estate: SeededEstate, spec_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = StatusServer(status=503, code="ServiceUnavailableException")
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL_AMPLIFY", server.url)
        monkeypatch.setenv("MMRV_AWS_MAX_ATTEMPTS", "2")
        monkeypatch.setenv("MMRV_TASK_RETRIES", "2")
        monkeypatch.setenv("MMRV_RETRY_BASE_SECONDS", "0.05")
        with pytest.raises(TransientError) as info:
            inventory_flow(spec_path=str(spec_path), env="staging")
        assert (info.value.service, info.value.status) == ("amplify", 503)
        assert server.requests == 2 * 3  # botocore's 2 attempts, in each of Prefect's 3 runs of the task
    finally:
        server.stop()


def test_permanent_failures_are_not_retried(
    aws_estate: SeededEstate, spec_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = StatusServer(status=403, code="AccessDeniedException")
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL_AMPLIFY", server.url)
        monkeypatch.setenv("MMRV_AWS_MAX_ATTEMPTS", "3")
        monkeypatch.setenv("MMRV_TASK_RETRIES", "3")
        with pytest.raises(PermanentError) as info:
            inventory_flow(spec_path=str(spec_path), env="staging")
        assert (info.value.service, info.value.status) == ("amplify", 403)
        assert "AccessDeniedException" in str(info.value)
        assert server.requests == 1
    finally:
        server.stop()


# --- the task defaults on their own ------------------------------------------------------------

calls: dict[str, int] = {}


@read_task(name="flaky", task_run_name="flaky[{key}]")
def flaky(key: str, error: str, failures: int) -> str:
    calls[key] = calls.get(key, 0) + 1
    if calls[key] <= failures:
        raise {"transient": TransientError, "permanent": PermanentError, "missing": NotFoundError}[error](
            "test", f"attempt {calls[key]}"
        )
    return f"ok after {calls[key]}"


@flow
def run_flaky(key: str, error: str, failures: int, retries: int) -> str:
    settings = RetrySettings.model_validate({"retries": retries, "base_delay_seconds": 0.01, "jitter_factor": 0.5})
    return with_retries(flaky, settings)(key=key, error=error, failures=failures)


def test_retry_only_transient_errors() -> None:
    assert run_flaky("t", "transient", failures=2, retries=3) == "ok after 3"
    with pytest.raises(TransientError):
        run_flaky("t2", "transient", failures=5, retries=1)
    assert calls["t2"] == 2
    with pytest.raises(PermanentError):
        run_flaky("p", "permanent", failures=1, retries=3)
    assert calls["p"] == 1
    with pytest.raises(NotFoundError):
        run_flaky("n", "missing", failures=1, retries=3)
    assert calls["n"] == 1
