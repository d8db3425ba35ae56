"""The `inventory` flow: what MMRV runs on AWS today, per environment.

First checks that the credentials belong to the spec's AWS account (one STS call, so a wrong
endpoint or account fails once, clearly). Then reads (concurrently, one task per resource
and environment) the ECS service and its task
definitions, the ECR images, the Amplify app and branch, the secrets' names, the Route 53
records, autoscaling, IAM roles and the target group health check; assembles a typed
`Inventory`; publishes a table artifact per environment (`inventory-<env>`) and the
markdown report (`inventory-summary`); returns the Inventory. Missing things are
reported in `Inventory.missing`, not raised.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import Task, flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.futures import PrefectFuture

from migration.inventory import EnvironmentReadings, Inventory, assemble, render_markdown, table_rows
from migration.settings import RetrySettings
from migration.spec import Environment, Spec, load_spec
from tasks import inventory as reads
from tasks.defaults import with_retries


def _submit(t: Task[..., Any], retry: RetrySettings, **kwargs: Any) -> PrefectFuture[Any]:
    return with_retries(t, retry).submit(**kwargs)


def _submit_environment(spec: Spec, env: Environment, retry: RetrySettings) -> dict[str, Any]:
    """Submit every read of one environment at once; dependent reads get their upstream futures."""
    region = spec.aws.region
    name = env.name
    futures: dict[str, Any] = {}
    backend = env.aws.backend
    if backend is not None:
        cluster, service = backend.ecs_cluster, backend.ecs_service
        svc = _submit(reads.read_ecs_service, retry, env=name, region=region, cluster=cluster, service=service)
        tds = _submit(reads.read_task_definitions, retry, env=name, region=region, service=svc)
        futures["ecs_service"] = svc
        futures["task_definitions"] = tds
        futures["target_groups"] = _submit(reads.read_target_groups, retry, env=name, region=region, service=svc)
        futures["autoscaling"] = _submit(
            reads.read_autoscaling, retry, env=name, region=region, cluster=cluster, service=service
        )
        futures["iam"] = _submit(reads.read_iam_roles, retry, env=name, region=region, task_definitions=tds)
        futures["referenced_secrets"] = _submit(
            reads.read_referenced_secrets, retry, env=name, region=region, task_definitions=tds
        )
    frontend = env.aws.frontend
    if frontend is not None:
        app = _submit(reads.read_amplify_app, retry, env=name, region=region, app=frontend.amplify_app)
        futures["amplify_app"] = app
        futures["amplify_branch"] = _submit(
            reads.read_amplify_branch, retry, env=name, region=region, app=app, branch=frontend.amplify_branch
        )
    futures["images"] = [
        _submit(
            reads.read_ecr_repository,
            retry,
            env=name,
            region=region,
            component=component_name,
            repository=component.image_repository,
            required=component.source == "ecs",
        )
        for component_name, component in spec.components.items()
    ]
    futures["secrets"] = _submit(reads.read_secrets, retry, env=name, region=region, prefix=env.aws.secrets_prefix)
    futures["dns"] = _submit(
        reads.read_dns,
        retry,
        env=name,
        region=region,
        zone=env.dns.zone,
        records={r.name: r.component for r in env.dns.records},
    )
    return futures


def _collect(name: str, futures: dict[str, Any]) -> EnvironmentReadings:
    """Wait for the readings in dependency order, so a failed upstream read raises its own error first."""
    values: dict[str, Any] = {}
    for key, future in futures.items():
        if isinstance(future, list):
            values[key] = [f.result() for f in future]
        elif isinstance(future, PrefectFuture):
            values[key] = future.result()
    return EnvironmentReadings(name=name, **values)


@flow(name="inventory", flow_run_name="inventory-{env}", log_prints=False)
def inventory_flow(spec_path: str = "deployments/mmrv.yaml", env: str = "all") -> Inventory:
    """Discover what MMRV runs on AWS (per environment) and report what the spec names but AWS lacks."""
    logger = get_run_logger()
    spec = load_spec(spec_path)
    environments = spec.select(env)
    retry = RetrySettings()

    # first make sure these credentials reach the spec's account: else every read would fail or find nothing
    _submit(reads.check_aws_account, retry, account_id=spec.aws.account_id, region=spec.aws.region).result()
    submitted = {e.name: _submit_environment(spec, e, retry) for e in environments}
    readings = [_collect(name, futures) for name, futures in submitted.items()]

    inventory = assemble(
        spec_name=spec.name,
        account_id=spec.aws.account_id,
        region=spec.aws.region,
        generated_at=datetime.now(UTC),
        readings=readings,
    )
    for e in inventory.environments:
        create_table_artifact(
            key=f"inventory-{e.name}",
            table=table_rows(inventory, e.name),
            description=f"Inventory of {spec.name} {e.name} on AWS: one row per resource found or missing.",
        )
    create_markdown_artifact(
        key="inventory-summary",
        markdown=render_markdown(inventory),
        description=f"Inventory report of {spec.name} ({env}).",
    )
    logger.info(
        "inventory of %s (%s): %d environment(s), %d missing item(s)",
        spec.name,
        env,
        len(inventory.environments),
        len(inventory.missing),
    )
    for item in inventory.missing:
        logger.warning("missing [%s]: %s", item.environment, item)
    return inventory
