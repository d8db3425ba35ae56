"""Key Vault's data plane (secrets) through azure-keyvault-secrets' `SecretClient`.

The same credential and CA bundle as ARM (`make_credential`, `transport_kwargs` of
`migration.clouds.azure`). Values go in (`set_secret`) but never come out: a read returns the
value's fingerprint (`migration.secrets.fingerprint`), its tags and version. Errors name the
vault and the secret, never a value:

- 403 Forbidden: PermanentError naming the role the principal running the tool lacks (reading
  needs Key Vault Secrets User, writing Key Vault Secrets Officer); a disabled secret says so.
- 409 on a soft-deleted name: PermanentError saying to recover or purge it first.
- 404 of a `get_`: NotFoundError (`find_secret` answers None instead).
- 408, 429, 5xx, connection problems: TransientError (Prefect retries the task).
- anything else: PermanentError with Key Vault's code.

Errors are raised outside the SDK's `except` block, so they carry no chained SDK exception
(whose request would hold the value that was being written).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlparse

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)

from migration.clouds.azure import TRANSIENT_CODES, make_credential, transport_kwargs
from migration.errors import CloudError, NotFoundError, PermanentError, TransientError
from migration.secrets import SecretValue, VaultSecret, fingerprint
from migration.settings import AzureSettings

SERVICE = "keyvault"
ROLE_READ = "Key Vault Secrets User"
ROLE_WRITE = "Key Vault Secrets Officer"
T = TypeVar("T")


def vault_name_of(vault_uri: str) -> str:
    """`https://kv-mmrv-staging.vault.azure.net/` -> `kv-mmrv-staging`; a stand-in's URI: its last path segment."""
    parsed = urlparse(vault_uri)
    path = [p for p in parsed.path.split("/") if p]
    if path:
        return path[-1]
    return (parsed.hostname or vault_uri).split(".")[0]


class KeyVaultGateway:
    """One vault's secrets. Build it inside a task from `AzureSettings()` and the vault's URI."""

    def __init__(self, settings: AzureSettings, vault_uri: str, vault_name: str | None = None) -> None:
        from azure.keyvault.secrets import SecretClient  # large to import: only where a vault is used

        self.vault_uri = vault_uri
        self.vault = vault_name or vault_name_of(vault_uri)
        self._client = SecretClient(
            vault_uri,
            make_credential(settings),
            verify_challenge_resource=settings.keyvault_verify_challenge_resource,
            **transport_kwargs(settings),
        )

    def find_secret(self, name: str) -> VaultSecret | None:
        """The current version's fingerprint, tags and version; None when there is no such (live) secret."""
        secret = self._call("read", name, lambda: self._client.get_secret(name), missing_ok=True)
        return None if secret is None else _observed(secret)

    def get_version(self, name: str, version: str) -> VaultSecret:
        """One version, as `find_secret` shows it; NotFoundError when it does not exist."""
        secret = self._call("read", name, lambda: self._client.get_secret(name, version))
        return _observed(secret)

    def set_secret(
        self, name: str, value: SecretValue, *, tags: dict[str, str], content_type: str | None = None
    ) -> str:
        """Write a new version; returns its version id (never the value)."""
        secret = self._call(
            "write",
            name,
            lambda: self._client.set_secret(name, value.reveal(), tags=tags, content_type=content_type),
        )
        version = secret.properties.version
        if not version:  # pragma: no cover - Key Vault always answers with the new version's id
            raise PermanentError(SERVICE, f"{self.vault}: set {name!r} answered without a version id")
        return str(version)

    def close(self) -> None:
        self._client.close()

    # --- errors ---------------------------------------------------------------------------------

    def _call(self, action: str, name: str, fn: Callable[[], T], *, missing_ok: bool = False) -> Any:
        error: CloudError
        try:
            return fn()
        except HttpResponseError as exc:
            if missing_ok and exc.status_code == 404 and _code(exc) in ("SecretNotFound", "NotFound", ""):
                return None
            error = self._classify(exc, action, name)
        except (ServiceRequestError, ServiceResponseError) as exc:
            error = TransientError(SERVICE, f"{self.vault}: {action} of secret {name!r}: connection problem: {exc}")
        raise error  # outside the except block: no chained SDK exception

    def _classify(self, exc: HttpResponseError, action: str, name: str) -> CloudError:
        status = exc.status_code
        code, inner = _code(exc), _inner_code(exc)
        what = f"{self.vault}: {action} of secret {name!r}"
        detail = _first_line(exc)
        if isinstance(exc, ClientAuthenticationError) and status != 403:
            return PermanentError(SERVICE, f"{what}: authentication failed: {detail}", status)
        if status == 403 and inner == "SecretDisabled":
            return PermanentError(
                SERVICE, f"{what}: the secret is disabled in Key Vault: enable it, or name another secret", status
            )
        if status == 403:
            role = ROLE_WRITE if action == "write" else f"{ROLE_READ} (to copy secrets: {ROLE_WRITE})"
            return PermanentError(
                SERVICE,
                f"{what} was refused ({code or 'Forbidden'}{'/' + inner if inner else ''}): the principal running "
                f"the tool needs the role {role} on vault {self.vault!r}; the platform phase assigns "
                f"{ROLE_WRITE} to the deploying principal (run it again, or assign the role by hand)",
                status,
            )
        if status == 409 and inner == "ObjectIsDeletedButRecoverable":
            return PermanentError(
                SERVICE,
                f"{what}: a deleted secret of that name is still recoverable: recover it "
                f"(az keyvault secret recover --vault-name {self.vault} --name {name}) or purge it, then run again",
                status,
            )
        text = f"{what}: {code + ': ' if code else ''}{detail}"
        if status == 404:
            return NotFoundError(SERVICE, text, status)
        if status in (408, 429) or (status is not None and status >= 500) or code in TRANSIENT_CODES:
            return TransientError(SERVICE, text, status)
        return PermanentError(SERVICE, text, status)


def _observed(secret: Any) -> VaultSecret:
    props = secret.properties
    return VaultSecret(
        fingerprint=fingerprint(secret.value or ""),
        tags=dict(props.tags or {}),
        version=props.version,
        enabled=props.enabled is not False,
    )


def _code(exc: HttpResponseError) -> str:
    return str(getattr(getattr(exc, "error", None), "code", None) or "")


def _inner_code(exc: HttpResponseError) -> str:
    """Key Vault's `innererror.code` (ForbiddenByRbac, SecretDisabled, ObjectIsDeletedButRecoverable ...)."""
    error = getattr(exc, "error", None)
    inner = getattr(error, "innererror", None)
    if isinstance(inner, dict):
        return str(inner.get("code") or "")
    response: Any = exc.response
    try:
        body = json.loads(response.text()) if response is not None else {}
        inner = body["error"]["innererror"]
    except (ValueError, AttributeError, KeyError, TypeError):
        return ""
    return str(inner.get("code") or "") if isinstance(inner, dict) else ""


def _first_line(exc: HttpResponseError) -> str:
    error = getattr(exc, "error", None)
    message = getattr(error, "message", None) or getattr(exc, "message", None) or str(exc)
    return str(message).splitlines()[0][:300]
