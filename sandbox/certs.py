"""The sandbox's TLS material: one CA, made at the first `up` and kept, and one server certificate.

Clients trust the sandbox by pointing at `ca.pem` (AWS_CA_BUNDLE, MMRV_CA_BUNDLE), so the CA
must survive `down`/`up`: a fresh CA on every start would invalidate every bundle a user
has already exported. The CA key is kept (mode 0600) so later backends can be issued
certificates for other names without re-trusting anything.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import trustme

log = logging.getLogger(__name__)

CA_FILE = "ca.pem"
CA_KEY_FILE = "ca-key.pem"
SERVER_CERT_FILE = "server.pem"
SERVER_KEY_FILE = "server-key.pem"
SERVER_NAMES = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class TlsFiles:
    ca: Path  # what clients trust
    server_cert: Path  # leaf + chain, what the proxy presents
    server_key: Path


def _write_private(path: Path, data: bytes) -> None:
    """Write key material readable by the owner only, never briefly world-readable."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def ensure_tls(state_dir: Path) -> TlsFiles:
    """Load the sandbox CA from state_dir, or make it; issue the server certificate if missing."""
    state_dir.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(state_dir / CA_FILE, state_dir / SERVER_CERT_FILE, state_dir / SERVER_KEY_FILE)
    ca_key = state_dir / CA_KEY_FILE
    if files.ca.is_file() and ca_key.is_file():
        ca = trustme.CA.from_pem(files.ca.read_bytes(), ca_key.read_bytes())
    else:
        log.info("creating the sandbox CA in %s", files.ca)
        ca = trustme.CA(organization_name="mmrv-migrate sandbox")
        _write_private(ca_key, ca.private_key_pem.bytes())
        files.ca.write_bytes(ca.cert_pem.bytes())
        # a new CA invalidates any server certificate signed by an older one
        files.server_cert.unlink(missing_ok=True)
    if not (files.server_cert.is_file() and files.server_key.is_file()):
        leaf = ca.issue_cert(*SERVER_NAMES)
        _write_private(files.server_key, leaf.private_key_pem.bytes())
        files.server_cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    return files
