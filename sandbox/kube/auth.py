"""Bearer-token authentication as AKS with Entra ID does it, minus the signature check.

Any `Authorization: Bearer <JWT>` whose payload decodes and names a principal (`oid`,
else `sub`) is accepted, unless it has expired or (when configured) is for another
audience. The sandbox's tokens are unsigned or HS256; checking signatures would only
couple the emulator to whoever mints them.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Principal:
    oid: str
    claims: dict[str, Any]


def _b64url(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def decode_jwt(token: str) -> dict[str, Any] | None:
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(_b64url(parts[1]))
    except (ValueError, UnicodeDecodeError):
        return None
    return claims if isinstance(claims, dict) else None


def authenticate(header: str | None, audience: str | None = None) -> Principal | None:
    if not header or not header.lower().startswith("bearer "):
        return None
    claims = decode_jwt(header[7:].strip())
    if claims is None:
        return None
    principal = claims.get("oid") or claims.get("sub")
    if not isinstance(principal, str) or not principal:
        return None
    exp = claims.get("exp")
    if isinstance(exp, int | float) and exp < time.time():
        return None
    if audience:
        aud = claims.get("aud")
        audiences = aud if isinstance(aud, list) else [aud]
        if audience not in audiences and f"api://{audience}" not in audiences:
            return None
    return Principal(principal, claims)


def unsigned_jwt(claims: dict[str, Any]) -> str:
    """An `alg: none` JWT (what the sandbox hands to other emulators as a workload's token)."""

    def enc(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")

    return f"{enc({'alg': 'none', 'typ': 'JWT'})}.{enc(claims)}."
