"""Phase 1/2, step 2: the images ECR -> ACR, every digest verified.

read what runs on AWS (the inventory's own reads) and where ACR is (the platform's outputs)
-> select the images -> observe both registries -> plan (published) -> transfer with the
spec's strategy (import, falling back to copy per image; copy; docker) and a progress
artifact -> verify every digest at the target -> ledger (published, returned).
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_progress_artifact
from pydantic import BaseModel

from migration.errors import InputError, PermanentError
from migration.images import (
    ImageItem,
    ImagePlan,
    ImagesIncomplete,
    Ledger,
    TransferOutcome,
    build_ledger,
    plan_images,
    select_images,
    verification_targets,
)
from migration.settings import RetrySettings
from migration.spec import DEFAULT_SPEC_PATH, load_spec
from tasks import images as t
from tasks import inventory as reads
from tasks.defaults import with_retries
from tasks.platform import read_outputs

STRATEGIES = ("import", "copy", "docker")


class ImagesResult(BaseModel):
    plan: ImagePlan
    ledger: Ledger | None = None


@flow(name="images", flow_run_name="images-{env}", validate_parameters=True)
def images_flow(
    spec_path: str = str(DEFAULT_SPEC_PATH), env: str = "staging", strategy: str | None = None, dry_run: bool = False
) -> ImagesResult:
    logger = get_run_logger()
    retry = RetrySettings()
    spec = load_spec(spec_path)
    environment = spec.environment(env)
    policy = spec.images
    chosen = strategy or policy.strategy
    if chosen not in STRATEGIES:
        raise InputError(f"strategy {chosen!r} is not one of {', '.join(STRATEGIES)}")
    region = spec.aws.region

    # what runs on AWS: the inventory's reads (the active and the last N task definition revisions)
    history = None
    backend = environment.aws.backend
    if backend is not None:
        service = with_retries(reads.read_ecs_service, retry)(
            env=env, region=region, cluster=backend.ecs_cluster, service=backend.ecs_service
        )
        history = with_retries(reads.read_task_definitions, retry)(
            env=env, region=region, service=service, max_revisions=policy.revisions + 1
        ).value
    repositories = [
        with_retries(reads.read_ecr_repository, retry)(
            env=env,
            region=region,
            component=name,
            repository=component.image_repository,
            required=component.source == "ecs",
        ).value
        for name, component in spec.components.items()
    ]
    outputs = with_retries(read_outputs, retry)(spec_path, env)
    if not outputs.acr_login_server:
        raise PermanentError(
            "azure",
            f"ACR {environment.azure.acr.name} has no login server (not created yet?): "
            f"run `mmrv-migrate run platform --env {env}` first",
        )
    source_registry = t.source_registry(spec)
    selection = select_images(spec, history, repositories, ecr_host=source_registry)
    observed = with_retries(t.observe_images, retry)(spec_path, env, outputs.acr_login_server, selection)
    plan = plan_images(
        env, selection, observed, source_registry=source_registry, target_registry=outputs.acr_login_server
    )
    create_markdown_artifact(key=f"images-plan-{env}", markdown=plan.render_markdown(), description=plan.summary())
    logger.info("%s", plan.summary())
    if dry_run:
        return ImagesResult(plan=plan)

    outcomes = _transfer(spec_path, env, plan, chosen, policy.fallback_to_copy, retry)
    done = {(o.repository, o.digest): o for o in outcomes}
    targets = verification_targets(plan, done)
    verifications = (
        with_retries(t.verify_images, retry)(spec_path, env, plan.target_registry, targets) if targets else []
    )
    ledger = build_ledger(plan, chosen, outcomes, verifications)
    create_markdown_artifact(
        key=f"images-ledger-{env}", markdown=ledger.render_markdown(), description=ledger.summary()
    )
    logger.info("%s", ledger.summary())
    if not ledger.complete:
        raise ImagesIncomplete(ledger)
    return ImagesResult(plan=plan, ledger=ledger)


def _transfer(
    spec_path: str, env: str, plan: ImagePlan, strategy: str, fallback: bool, retry: RetrySettings
) -> list[TransferOutcome]:
    items = plan.to_transfer
    if not items:
        return []
    progress = str(
        create_progress_artifact(
            0.0, key=f"images-progress-{env}", description=f"images {env}: {plan.bytes_to_move} bytes to move"
        )
    )
    if strategy == "copy":
        return list(with_retries(t.copy_images, retry)(spec_path, env, plan, items, progress))
    if strategy == "docker":
        return list(with_retries(t.docker_images, retry)(spec_path, env, plan, items, progress))
    importing = with_retries(t.import_image, retry)
    futures: list[Any] = [importing.submit(spec_path, env, plan, item) for item in items]
    imported: list[TransferOutcome] = [f.result() for f in futures]
    failed = [o for o in imported if o.error]
    if not failed or not fallback:
        return imported
    by_key: dict[tuple[str, str], ImageItem] = {(i.source.repository, i.source.digest): i for i in items}
    retry_items = [by_key[(o.repository, o.digest)] for o in failed]
    copied = {
        (o.repository, o.digest): o
        for o in with_retries(t.copy_images, retry)(spec_path, env, plan, retry_items, progress)
    }
    out = []
    for outcome in imported:
        replacement = copied.get((outcome.repository, outcome.digest))
        if replacement is None:
            out.append(outcome)
            continue
        note = f"{outcome.error}; copied instead"
        out.append(
            replacement.model_copy(update={"note": (replacement.note + "; " if replacement.note else "") + note})
        )
    return out
