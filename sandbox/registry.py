"""A Distribution (`docker-registry`) instance as a sandbox backend: its config, and htpasswd or token auth.

Plain HTTP on loopback; the fault proxy terminates TLS in front of it. Distribution accepts
htpasswd basic auth over plain HTTP (verified with 2.8.2: 401 with a Basic challenge, 200
with the right credentials), so TLS on the proxy alone is enough. `http.relativeurls` makes
the upload `Location` headers relative, so they stay right behind the proxy whatever Host
the client used. Blobs live under `<state>/<name>/data` on disk, kept across `down`, so a
test can inspect what was pushed.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from pathlib import Path

import yaml

from migration.errors import MigrationError

REGISTRY_BINARY = "docker-registry"
HTPASSWD_BINARY = "htpasswd"
# bcrypt cost: Distribution checks the password on every request, and a blob push is many
# requests; 5 (htpasswd's default) keeps that cheap, and these are throwaway credentials.
BCRYPT_COST = "5"


class RegistrySetupError(MigrationError):
    """A tool the registry backend needs is missing or failed (the Makefile's apt step installs them)."""


def _require(binary: str, package: str) -> str:
    path = shutil.which(binary)
    if path is None:
        raise RegistrySetupError(f"`{binary}` not found: install the Debian package {package} (make deps does)")
    return path


def write_htpasswd(path: Path, user: str, password: str) -> None:
    """A bcrypt htpasswd file; the password goes through stdin, never onto a command line."""
    result = subprocess.run(
        [_require(HTPASSWD_BINARY, "apache2-utils"), "-niB", "-C", BCRYPT_COST, user],
        input=password.encode(),
        capture_output=True,
        check=False,
    )
    line = result.stdout.decode().strip()
    if result.returncode != 0 or not line.startswith(f"{user}:$2"):
        raise RegistrySetupError(f"htpasswd failed (exit {result.returncode}) writing {path}")
    path.write_text(line + "\n", encoding="utf-8")
    path.chmod(0o600)


def prepare_registry(root: Path, *, name: str, port: int, user: str, password: str) -> list[str]:
    """Write `<root>/config.yml` and `<root>/htpasswd`; return the command that serves it."""
    htpasswd = root / "htpasswd"
    root.mkdir(parents=True, exist_ok=True)
    write_htpasswd(htpasswd, user, password)
    return _write_config(root, name, port, {"htpasswd": {"realm": f"mmrv-sandbox-{name}", "path": str(htpasswd)}})


def prepare_token_registry(
    root: Path, *, name: str, port: int, realm: str, service: str, issuer: str, root_cert: Path
) -> list[str]:
    """A registry that takes bearer tokens only (Distribution's `auth.token`), as ACR's does.

    A client without a token gets `401` with `WWW-Authenticate: Bearer realm="<realm>",
    service="<service>",scope="..."`; a token must be a JWT signed by the key of `root_cert`
    (x5c), with `iss` = issuer, `aud` = service and an `access` claim naming the repository
    and actions, else 401 (`insufficient_scope` when it merely lacks the action).
    """
    auth = {"token": {"realm": realm, "service": service, "issuer": issuer, "rootcertbundle": str(root_cert)}}
    return _write_config(root, name, port, auth)


def _write_config(root: Path, name: str, port: int, auth: dict[str, object]) -> list[str]:
    binary = _require(REGISTRY_BINARY, "docker-registry")
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    config = {
        "version": "0.1",
        "log": {"level": "info", "formatter": "text", "fields": {"service": name}},
        "storage": {
            "filesystem": {"rootdirectory": str(data)},
            "delete": {"enabled": True},
            # a sandbox lives minutes; purging would only race with slow test uploads
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {
            "addr": f"127.0.0.1:{port}",
            # signs upload state; a new one per start only invalidates uploads in flight
            "secret": secrets.token_hex(16),
            "relativeurls": True,
            "headers": {"X-Content-Type-Options": ["nosniff"]},
        },
        "auth": auth,
    }
    config_path = root / "config.yml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    config_path.chmod(0o600)
    return [binary, "serve", str(config_path)]
