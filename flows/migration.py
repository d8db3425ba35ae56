"""The migration, in the decision record's order: each environment's phases, staging before production.

What has landed runs here: for each environment, the Azure platform, then the images
ECR -> ACR. Shipping the back end to AKS, the DNS cutover and the approval gate between
staging and production join as their issues land (the cutover flow exists on its own:
flows/cutover.py). A final report artifact says what changed where.
"""

from __future__ import annotations

import time

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel, Field

from flows.images import ImagesResult, images_flow
from flows.platform import PlatformResult, platform_flow
from migration.spec import DEFAULT_SPEC_PATH, load_spec


class EnvironmentOutcome(BaseModel):
    environment: str
    platform: PlatformResult
    images: ImagesResult
    seconds: dict[str, float] = Field(default_factory=dict)


class MigrationResult(BaseModel):
    environments: list[EnvironmentOutcome] = Field(default_factory=list)

    def render_markdown(self) -> str:
        lines = ["# Migration report", ""]
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
            lines += [""]
        lines += [
            "Not yet part of the migration flow: shipping the back end to AKS, the DNS cutover, the approval",
            "gate before production (see the README's phase table).",
        ]
        return "\n".join(lines) + "\n"


@flow(name="migration", flow_run_name="migration-{env}", validate_parameters=True)
def migration_flow(spec_path: str = str(DEFAULT_SPEC_PATH), env: str = "all") -> MigrationResult:
    logger = get_run_logger()
    spec = load_spec(spec_path)
    result = MigrationResult()
    for environment in spec.select(env):
        name = environment.name
        logger.info("phase %s: platform, then images", name)
        began = time.monotonic()
        platform = platform_flow(spec_path=spec_path, env=name)
        platform_seconds = time.monotonic() - began
        began = time.monotonic()
        images = images_flow(spec_path=spec_path, env=name)
        result.environments.append(
            EnvironmentOutcome(
                environment=name,
                platform=platform,
                images=images,
                seconds={"platform": platform_seconds, "images": time.monotonic() - began},
            )
        )
    create_markdown_artifact(
        key="migration-report", markdown=result.render_markdown(), description="what changed where"
    )
    return result
