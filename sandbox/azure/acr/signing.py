"""The key that signs ACR tokens, and the certificate the sandbox's registries trust it by.

Distribution 2.8 verifies a bearer token's signature with `auth.token.rootcertbundle`: the
token header carries the signing certificate (`x5c`), which must chain to a certificate of
that bundle. The sandbox uses one self-signed RSA certificate as both: `x5c` is `[cert]`
and the bundle is the same certificate (Go's verifier accepts a leaf that is itself a root).

The files live under the sandbox's state directory (`acr-token/`), are made at the first
`sandbox up` and kept while valid: registries and the ARM emulator started by later `up`s
trust the same key. The private key is written owner-readable only and never logged.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

KEY_FILE = "signing-key.pem"
CERT_FILE = "signing-cert.pem"
DIRECTORY = "acr-token"
VALIDITY = dt.timedelta(days=90)
RENEW_BEFORE = dt.timedelta(days=7)  # a certificate this close to expiry is replaced at `up`
ISSUER = "Azure Container Registry"  # ACR's own `iss`; Distribution checks it equals auth.token.issuer


class TokenInvalid(ValueError):
    """A token this signer did not make, or one that has expired."""


@dataclass(frozen=True)
class SigningFiles:
    key: Path
    cert: Path


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _still_valid(cert_path: Path) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (OSError, ValueError):
        return False
    return cert.not_valid_after_utc - dt.datetime.now(dt.UTC) > RENEW_BEFORE


def ensure_signing_files(state_dir: Path) -> SigningFiles:
    """The key and certificate under `state_dir/acr-token/`, made when missing or near expiry."""
    directory = state_dir / DIRECTORY
    directory.mkdir(parents=True, exist_ok=True)
    files = SigningFiles(directory / KEY_FILE, directory / CERT_FILE)
    if files.key.is_file() and _still_valid(files.cert):
        return files
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mmrv-sandbox acr token signing")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    _write_private(files.key, pem)
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return files


class Signer:
    """Signs and checks RS256 JWTs with the sandbox's ACR key (access and refresh tokens alike)."""

    def __init__(self, files: SigningFiles, issuer: str = ISSUER) -> None:
        key = serialization.load_pem_private_key(files.key.read_bytes(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError(f"{files.key}: not an RSA private key")
        self._key = key
        cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
        self._x5c = [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode("ascii")]
        self.issuer = issuer

    def sign(self, claims: dict[str, Any], lifetime_seconds: int) -> str:
        """A JWT with the standard claims filled in (iss, iat, nbf, exp, jti) around `claims`."""
        now = int(time.time())
        body = {"jti": str(uuid.uuid4()), "iss": self.issuer, "iat": now, "nbf": now, "exp": now + lifetime_seconds}
        body.update(claims)
        header = {"typ": "JWT", "alg": "RS256", "x5c": self._x5c}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(body).encode())}"
        signature = self._key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64url(signature)}"

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of a token this signer made and that has not expired; else TokenInvalid."""
        parts = token.split(".")
        if len(parts) != 3:
            raise TokenInvalid("not a JWT")
        try:
            header = json.loads(_b64url_decode(parts[0]))
            claims = json.loads(_b64url_decode(parts[1]))
            signature = _b64url_decode(parts[2])
        except ValueError:
            raise TokenInvalid("not a JWT") from None
        if not isinstance(header, dict) or header.get("alg") != "RS256" or not isinstance(claims, dict):
            raise TokenInvalid("not an ACR token")
        try:
            self._key.public_key().verify(
                signature, f"{parts[0]}.{parts[1]}".encode("ascii"), padding.PKCS1v15(), hashes.SHA256()
            )
        except InvalidSignature:
            raise TokenInvalid("the signature does not verify") from None
        if claims.get("iss") != self.issuer:
            raise TokenInvalid("issued by someone else")
        if int(claims.get("exp", 0)) < time.time():
            raise TokenInvalid("the token has expired")
        return claims
