"""Secrets tasks: plan and copy the back end's AWS secrets into Key Vault, compared and verified by hash.

A value is read inside the task that needs it (from Secrets Manager or SSM), hashed, written
to Key Vault when the hashes differ and read back; it never becomes a task parameter, a
result, a log line or an artifact. Tasks take names (`SecretCopy`), return names
(`Plan`, `SecretResult`), cache nothing and persist nothing: `cache_policy=NO_CACHE,
persist_result=False`, and `SecretValue` refuses to be pickled besides. Prefect retries
TransientError only (`tasks.defaults`).

    plan_secrets_task(spec_path, env, copies, vault_uri) -> Plan     (also the drift check)
    copy_secret(spec_path, env, copy, vault_uri, planned) -> SecretResult
    sync_secrets(spec_path, env, copies, vault_uri, dry_run) -> SecretsReport
        plan (artifact) -> refuse while anything is blocked -> copy what differs -> report (artifact)
"""

from __future__ import annotations

import logging
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import MissingContextError

from migration.clouds.aws import AwsGateway
from migration.clouds.keyvault import KeyVaultGateway
from migration.errors import PermanentError
from migration.plan import Plan
from migration.secrets import (
    MANAGED_BY,
    MANAGER,
    ObservedSecret,
    SecretResult,
    SecretsReport,
    SecretValue,
    check_value,
    dry_run_report,
    extract_json_key,
    fingerprint,
    is_managed,
    plan_secrets,
    result_for,
    secret_of,
    source_label,
    source_name,
    vault_tags,
)
from migration.settings import AwsSettings, AzureSettings, RetrySettings
from migration.spec import load_spec
from migration.translate.model import SecretCopy
from tasks.defaults import retry_options, with_retries

__all__ = ["SecretResult", "SecretsReport", "copy_secret", "plan_secrets_task", "sync_secrets"]

_NEVER_KEEP: dict[str, Any] = {"cache_policy": NO_CACHE, "persist_result": False}


def _logger() -> Any:
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(__name__)


def _vault(spec_path: str, env: str, vault_uri: str) -> tuple[str, KeyVaultGateway]:
    """(the spec's name, a gateway to the environment's vault at `vault_uri`)."""
    spec = load_spec(spec_path)
    environment = spec.environment(env)
    return spec.name, KeyVaultGateway(AzureSettings(), vault_uri, environment.azure.key_vault.name)


class _Sources:
    """Reads source values, each AWS secret once per task (three JSON keys of one secret: one read)."""

    def __init__(self) -> None:
        self.aws = AwsGateway(AwsSettings())
        self._read: dict[tuple[str, str, str | None, str | None], SecretValue] = {}

    def value(self, copy: SecretCopy) -> SecretValue:
        key = (copy.source_service, copy.source, copy.version_stage, copy.version_id)
        if key not in self._read:
            if copy.source_service == "secretsmanager":
                self._read[key] = self.aws.get_secret_value(copy.source, copy.version_stage, copy.version_id)
            else:
                self._read[key] = self.aws.get_parameter_value(copy.source)
        value = self._read[key]
        if copy.json_key:
            value = extract_json_key(value, copy.json_key, source=source_name(copy))
        check_value(value, key_vault_secret=copy.key_vault_secret, source=source_label(copy))
        return value


@task(name="plan-secrets", task_run_name="plan-secrets[{env}]", **_NEVER_KEEP, **retry_options())
def plan_secrets_task(spec_path: str, env: str, copies: list[SecretCopy], vault_uri: str) -> Plan:
    """Read every source value and Key Vault's current one, compare their hashes: the plan (names only)."""
    _, vault = _vault(spec_path, env, vault_uri)
    sources = _Sources()
    observed: dict[str, ObservedSecret] = {}
    try:
        for copy in copies:
            observed[copy.key_vault_secret] = ObservedSecret(
                source=fingerprint(sources.value(copy)), vault=vault.find_secret(copy.key_vault_secret)
            )
    finally:
        vault.close()
    return plan_secrets(env, copies, observed, vault=vault.vault)


@task(name="copy-secret", **_NEVER_KEEP, **retry_options())
def copy_secret(spec_path: str, env: str, copy: SecretCopy, vault_uri: str, planned: str = "create") -> SecretResult:
    """Copy one value when Key Vault's differs, then read the new version back and compare hashes.

    Idempotent: a rerun (or a retry after a lost response) finds the same hash and writes nothing.
    """
    logger = _logger()
    spec_name, vault = _vault(spec_path, env, vault_uri)
    name = copy.key_vault_secret
    try:
        value = _Sources().value(copy)
        want = fingerprint(value)
        have = vault.find_secret(name)
        if have is not None and have.fingerprint == want:
            # written already: by an attempt whose response was lost, or by someone else
            logger.info("%s: already holds the value of %s", name, source_label(copy))
            return result_for(copy, "created" if planned == "create" else "updated", True)
        if have is not None and not is_managed(have.tags):
            raise PermanentError(
                "keyvault",
                f"{vault.vault}: secret {name!r} holds another value and is not managed by {MANAGER} "
                f"(no '{MANAGED_BY}' tag): the tool will not overwrite it",
            )
        version = vault.set_secret(name, value, tags=vault_tags(copy, spec_name))
        verified = vault.get_version(name, version).fingerprint == want
    finally:
        vault.close()
    status = "created" if have is None else "updated"
    logger.info("%s: %s from %s (%s)", name, status, source_label(copy), "verified" if verified else "NOT verified")
    return result_for(copy, status, verified)


def sync_secrets(
    spec_path: str, env: str, copies: list[SecretCopy], vault_uri: str | None, dry_run: bool = False
) -> SecretsReport:
    """The secrets phase for one workload: plan (artifact), copy what differs, verify, report (artifact).

    Call it inside a flow (the ship flow does). Nothing is written while any secret is blocked
    (it exists, differs and is not the tool's); every source value is read, and every JSON key
    found, before the first write. Raises PermanentError when a copy cannot be verified.
    """
    logger = _logger()
    spec = load_spec(spec_path)
    vault_name = spec.environment(env).azure.key_vault.name
    if not copies:
        report = SecretsReport(environment=env, vault=vault_name, dry_run=dry_run)
        logger.info("%s", report.summary())
        return report
    if not vault_uri:
        raise PermanentError("keyvault", f"no Key Vault URI for {env!r}: run `mmrv-migrate run platform` first")
    retry = RetrySettings()
    plan = with_retries(plan_secrets_task, retry)(spec_path, env, copies, vault_uri)
    create_markdown_artifact(
        key=f"secrets-plan-{env}",
        markdown=f"# Secrets plan: {env}\n\n{plan.render_markdown(include_noop=True)}",
        description=plan.summary(),
    )
    logger.info("%s", plan.summary())
    if dry_run:
        report = dry_run_report(env, vault_name, copies, plan)
        _publish(report)
        return report
    if plan.blocked:
        names = ", ".join(secret_of(a) for a in plan.blocked)
        raise PermanentError(
            "keyvault",
            f"nothing written: {len(plan.blocked)} Key Vault secret(s) hold other values and are not managed by "
            f"{MANAGER}: {names}",
        )
    by_name = {c.key_vault_secret: c for c in copies}
    copy_task = with_retries(copy_secret, retry)
    results: list[SecretResult] = []
    for action in plan.actions:
        copy = by_name[secret_of(action)]
        if action.kind == "noop":
            results.append(result_for(copy, "unchanged", True))  # the plan compared the hashes just now
            continue
        run = copy_task.with_options(task_run_name=f"{action.kind}-secret[{env}] {copy.key_vault_secret}")
        results.append(run(spec_path, env, copy, vault_uri, action.kind))
    report = SecretsReport(environment=env, vault=vault_name, secrets=results)
    _publish(report)
    logger.info("%s", report.summary())
    unverified = [r.name for r in report.secrets if not r.verified]
    if unverified:
        raise PermanentError(
            "keyvault",
            f"{vault_name}: read back after the write, {', '.join(unverified)} do(es) not hold the source's value "
            "(another writer?): run again",
        )
    return report


def _publish(report: SecretsReport) -> None:
    create_markdown_artifact(
        key=f"secrets-report-{report.environment}", markdown=report.render_markdown(), description=report.summary()
    )
