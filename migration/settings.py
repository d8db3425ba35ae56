"""Where each service lives and how to authenticate: the real clouds or the sandbox.

Only endpoints and credentials differ between the two; nothing below `migration.clouds`
asks which one it talks to. boto3 reads the standard AWS variables itself
(`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_<SERVICE>`, `AWS_CA_BUNDLE`, the keys), so the
sandbox profile is simply a set of environment variables. Settings are instantiated in
entrypoints (CLI commands, tasks), never at import time: Prefect workers import flow
modules as scripts.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from migration.errors import SandboxNotRunning

PROFILE_FILE = "profile.env"


def sandbox_dir() -> Path:
    """The sandbox's state directory: `MMRV_SANDBOX_DIR`, else `.sandbox` here."""
    return Path(os.environ.get("MMRV_SANDBOX_DIR", ".sandbox")).resolve()


def read_profile(path: Path) -> dict[str, str]:
    """Parse `KEY=VALUE` lines (the format `set -a; . profile.env` understands)."""
    values: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip().strip("'\"")
    return values


def activate_sandbox_profile(state_dir: Path | None = None) -> dict[str, str]:
    """Point this process at the running sandbox by exporting its profile.

    Raises SandboxNotRunning (an input error) when there is no profile to read.
    """
    state_dir = state_dir or sandbox_dir()
    profile = state_dir / PROFILE_FILE
    if not profile.is_file():
        raise SandboxNotRunning(str(state_dir))
    values = read_profile(profile)
    os.environ.update(values)
    return values


class AwsSettings(BaseSettings):
    """AWS side. The boto3 client picks up endpoint and keys from the environment."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    region: str = Field(default="eu-west-1", validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION"))
    # host[:port] of the ECR registry's data plane when it is not the account's
    # `<account>.dkr.ecr.<region>.amazonaws.com` (the sandbox's Distribution registry)
    ecr_registry: str | None = Field(default=None, validation_alias="MMRV_ECR_REGISTRY")
    ca_bundle: str | None = Field(default=None, validation_alias="MMRV_CA_BUNDLE")
    max_attempts: int = Field(default=5, validation_alias="MMRV_AWS_MAX_ATTEMPTS")
    connect_timeout: float = Field(default=5.0, validation_alias="MMRV_CONNECT_TIMEOUT")
    read_timeout: float = Field(default=30.0, validation_alias="MMRV_READ_TIMEOUT")


class RetrySettings(BaseSettings):
    """Backoff for Prefect task retries (TransientError only)."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    retries: int = Field(default=4, validation_alias="MMRV_TASK_RETRIES")
    base_delay_seconds: float = Field(default=2.0, validation_alias="MMRV_RETRY_BASE_SECONDS")
    jitter_factor: float = Field(default=0.5, validation_alias="MMRV_RETRY_JITTER")


class AzureSettings(BaseSettings):
    """Azure side: where ARM is, which CA to trust, and which credential to use.

    In the cloud: `DefaultAzureCredential`. When `MMRV_AZURE_ACCESS_TOKEN` is set (the
    sandbox profile sets it, and CI systems that mint their own token can too) that bearer
    token is used as is.
    """

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    arm_url: str = Field(default="https://management.azure.com", validation_alias="MMRV_ARM_URL")
    arm_scope: str = Field(default="https://management.azure.com/.default", validation_alias="MMRV_ARM_SCOPE")
    ca_bundle: str | None = Field(default=None, validation_alias="MMRV_CA_BUNDLE")
    access_token: str | None = Field(default=None, validation_alias="MMRV_AZURE_ACCESS_TOKEN", repr=False)
    poll_interval: float = Field(default=5.0, validation_alias="MMRV_ARM_POLL_SECONDS")
    lro_timeout: float = Field(default=1800.0, validation_alias="MMRV_ARM_LRO_TIMEOUT")
    retry_total: int = Field(default=3, validation_alias="MMRV_ARM_RETRIES")
    # Key Vault's 401 challenge names the resource to get a token for; the SDK checks that its
    # domain matches the vault's host (vault.azure.net). A stand-in on another host (the
    # sandbox's) turns the check off.
    keyvault_verify_challenge_resource: bool = Field(
        default=True, validation_alias="MMRV_KEYVAULT_VERIFY_CHALLENGE_RESOURCE"
    )


class RegistrySettings(BaseSettings):
    """How to reach registries' data planes (the OCI distribution API) and a Docker Engine.

    `MMRV_PLAIN_HTTP_REGISTRIES` lists hosts (host:port, comma-separated) spoken to over
    plain http, like Docker's insecure-registries; everything else is https, verified
    against `MMRV_CA_BUNDLE` when set (else the system's trust store). `REGISTRY_AUTH_FILE`
    (the containers auth.json / Docker config.json format, what skopeo and podman read)
    may hold credentials for registries the tool has no other way to log in to.
    """

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    ca_bundle: str | None = Field(default=None, validation_alias="MMRV_CA_BUNDLE")
    plain_http: str = Field(default="", validation_alias="MMRV_PLAIN_HTTP_REGISTRIES")
    auth_file: str | None = Field(default=None, validation_alias="REGISTRY_AUTH_FILE")
    max_attempts: int = Field(default=8, validation_alias="MMRV_REGISTRY_MAX_ATTEMPTS")
    backoff_seconds: float = Field(default=0.25, validation_alias="MMRV_REGISTRY_BACKOFF_SECONDS")
    connect_timeout: float = Field(default=10.0, validation_alias="MMRV_CONNECT_TIMEOUT")
    read_timeout: float = Field(default=120.0, validation_alias="MMRV_REGISTRY_READ_TIMEOUT")
    chunk_threshold: int = Field(default=256 * 1024 * 1024, validation_alias="MMRV_REGISTRY_CHUNK_THRESHOLD")
    chunk_size: int = Field(default=64 * 1024 * 1024, validation_alias="MMRV_REGISTRY_CHUNK_SIZE")
    docker_host: str | None = Field(default=None, validation_alias="DOCKER_HOST")

    def is_plain_http(self, host: str) -> bool:
        return host in {h.strip() for h in self.plain_http.split(",") if h.strip()}
