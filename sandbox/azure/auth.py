"""Who is calling: the bearer token of a request, checked for form, lifetime, audience and tenant.

ARM and Key Vault answer a failed check differently (see arm_routes.py and keyvault.py), so
this module only says what is wrong (`AuthProblem.kind`), not how to say it.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from sandbox.azure.tokens import TokenClaims, TokenError, decode_token

MISSING = "missing"
INVALID = "invalid"
EXPIRED = "expired"
AUDIENCE = "audience"
TENANT = "tenant"


@dataclass
class AuthProblem(Exception):
    kind: str
    detail: str
    claims: TokenClaims | None = None


def authenticate(authorization: str | None, *, audiences: Collection[str], tenant_id: str) -> TokenClaims:
    """The claims of a valid `Authorization: Bearer <jwt>` for one of `audiences` in `tenant_id`."""
    if not authorization:
        raise AuthProblem(MISSING, "The 'Authorization' header is missing.")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthProblem(INVALID, "The 'Authorization' header is not of the form 'Bearer <token>'.")
    try:
        claims = decode_token(token.strip())
    except TokenError as exc:
        kind = EXPIRED if "expired" in str(exc) else INVALID
        raise AuthProblem(kind, str(exc)) from None
    accepted = {a.lower() for a in audiences}
    if not any(aud.lower() in accepted for aud in claims.audiences):
        raise AuthProblem(AUDIENCE, ", ".join(claims.audiences), claims)
    if claims.tid.lower() != tenant_id.lower():
        raise AuthProblem(TENANT, claims.tid, claims)
    return claims
