"""Which credentials go to which registry: one place that builds `RegistryClient`s from settings.

In order, for a registry host:

1. an entry in `REGISTRY_AUTH_FILE` (containers auth.json / Docker config.json: `{"auths":
   {"host": {"auth": base64(user:password)}}}`), what skopeo and podman read too;
2. ECR (the spec's account registry, `MMRV_ECR_REGISTRY`, or any `*.dkr.ecr.*.amazonaws.com`):
   `AWS` and the token of `ecr.get_authorization_token`, fetched again when refused;
3. anything else: anonymous, answering a Bearer challenge with ACR's token exchange when
   the realm is `.../oauth2/token` (an Entra token for ARM from the Azure settings), or with
   the Docker token protocol otherwise.

The same rules serve the flows (which know the ACR host from ARM) and `images copy`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from pathlib import Path

from migration.clouds.registry import BasicLogin, RegistryAuth, RegistryClient, RegistryOptions
from migration.errors import InputError
from migration.settings import AwsSettings, AzureSettings, RegistrySettings

ECR_HOST = re.compile(r"(?P<account>\d{12})\.dkr\.ecr(-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(\.cn)?")


def options(settings: RegistrySettings, host: str, pool_size: int = 16) -> RegistryOptions:
    return RegistryOptions(
        ca_bundle=settings.ca_bundle,
        plain_http=settings.is_plain_http(host),
        max_attempts=max(1, settings.max_attempts),
        backoff_seconds=settings.backoff_seconds,
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        chunk_threshold=settings.chunk_threshold,
        chunk_size=settings.chunk_size,
        pool_size=pool_size,
    )


def auth_file_login(host: str, path: str | None) -> BasicLogin | None:
    """The basic credentials an auth file holds for `host`, if any (a bad file is an input error)."""
    if not path:
        return None
    file = Path(path)
    if not file.is_file():
        return None
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        entry = (data.get("auths") or {}).get(host) or {}
        if "auth" in entry:
            user, _, password = base64.b64decode(entry["auth"], validate=True).decode().partition(":")
        else:
            user, password = entry.get("username", ""), entry.get("password", "")
    except (ValueError, binascii.Error, UnicodeDecodeError, AttributeError) as exc:
        raise InputError(f"REGISTRY_AUTH_FILE {path}: not a readable auth file ({type(exc).__name__})") from None
    return BasicLogin(user, password) if user else None


def is_ecr(host: str, aws: AwsSettings) -> bool:
    return host == aws.ecr_registry or bool(ECR_HOST.fullmatch(host))


def ecr_login(region: str) -> Callable[[], BasicLogin]:
    """A function fetching ECR's current registry credentials (a boto3 call each time)."""

    def fetch() -> BasicLogin:
        from migration.clouds.aws import AwsGateway

        return AwsGateway(AwsSettings().model_copy(update={"region": region})).get_registry_login()

    return fetch


def entra_token() -> Callable[[], str]:
    """A function returning an Entra token for ARM, from the Azure settings (the sandbox's static one, or
    DefaultAzureCredential)."""

    def fetch() -> str:
        from migration.clouds.azure import make_credential

        settings = AzureSettings()
        return make_credential(settings).get_token(settings.arm_scope).token

    return fetch


def client_for(
    host: str,
    *,
    region: str | None = None,
    tenant: str | None = None,
    pool_size: int = 16,
    settings: RegistrySettings | None = None,
) -> RegistryClient:
    """A client for `host` with the credentials the rules above pick. Contacts nothing yet."""
    settings = settings or RegistrySettings()
    aws = AwsSettings()
    auth = RegistryAuth(tenant=tenant)
    from_file = auth_file_login(host, settings.auth_file)
    if from_file is not None:
        auth.basic = from_file
    elif is_ecr(host, aws):
        m = ECR_HOST.fullmatch(host)
        auth.refresh_basic = ecr_login(region or (m["region"] if m else aws.region))  # fetched at first use
    else:
        auth.aad_token = entra_token()
    return RegistryClient(host, auth, options(settings, host, pool_size))
