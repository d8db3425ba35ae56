"""Bearer tokens for the Azure emulator, and the azure-core credential that mints them.

A token is a JWT carrying the claims ARM and Key Vault look at: `oid` (who), `tid` (which
tenant), `aud` (for which service), `appid`, `exp`. It is signed HS256 with a fixed key that
is deliberately not a secret: the sandbox only needs to tell well-formed tokens from garbage,
and any sandbox process (the Kubernetes emulator, a test) may mint one. Unsigned tokens
(`alg: none`) are accepted too, so a shell script can build one by hand.

    from sandbox.azure.tokens import SandboxCredential
    credential = SandboxCredential(oid=OPERATOR_OID, tenant_id=tenant)
    ResourceManagementClient(credential, sub, base_url=arm_url, connection_verify=ca,
                             credential_scopes=["https://management.azure.com/.default"])

The audience is the scope minus `/.default`, as Entra does it, so the same scopes the tool
uses against the real cloud work here (and a token asked for the wrong service is refused).
A static token for a process that cannot mint (the tool reads one from the sandbox profile)
may carry several audiences at once: `mint_token(..., audience=ALL_SANDBOX_AUDIENCES)`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from azure.core.credentials import AccessToken, AccessTokenInfo, TokenRequestOptions

SIGNING_KEY = b"mmrv-sandbox-azure-emulator-signing-key (not a secret)"
DEFAULT_LIFETIME_SECONDS = 3600

# the principal that deploys (runs the tool) unless --operator-oid says otherwise
OPERATOR_OID = "0e8f5b2a-6d1c-4f7e-9a3b-5c2d1e0f9a8b"
# the tenant used when none is configured (the manager passes the spec's tenant)
SANDBOX_TENANT_ID = "72f988bf-0000-4000-8000-000000000000"

ARM_AUDIENCES = frozenset(
    {
        "https://management.azure.com",
        "https://management.azure.com/",
        "https://management.core.windows.net",
        "https://management.core.windows.net/",
    }
)
KEY_VAULT_AUDIENCE = "https://vault.azure.net"
# Entra's well-known application for the AKS API server (what kubelogin asks a token for)
AKS_SERVER_APP_ID = "6dae42f8-4368-4678-94ff-3960e28e3630"
# one static token good for every service the emulators guard (ARM, Key Vault, AKS)
ALL_SANDBOX_AUDIENCES = ("https://management.azure.com", KEY_VAULT_AUDIENCE, AKS_SERVER_APP_ID)


class TokenError(ValueError):
    """The bearer token is malformed, badly signed or expired."""


@dataclass(frozen=True)
class TokenClaims:
    oid: str  # "" when the token names only a client (appid/azp): see principals.resolve_principal
    tid: str
    audiences: tuple[str, ...]
    appid: str | None
    principal_type: str  # "User" or "ServicePrincipal"
    expires_on: int


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    return base64.urlsafe_b64decode(padded.encode("ascii"))


def audience_for_scope(scope: str) -> str:
    """`https://vault.azure.net/.default` -> `https://vault.azure.net`, like Entra's v1 resources."""
    return scope.removesuffix("/.default") if scope.endswith("/.default") else scope


def mint_token(
    oid: str,
    tid: str,
    *,
    audience: str | Sequence[str] = "https://management.azure.com",
    appid: str | None = None,
    principal_type: str = "User",
    lifetime_seconds: int = DEFAULT_LIFETIME_SECONDS,
    signed: bool = True,
) -> str:
    """A bearer token the emulator accepts for principal `oid` of tenant `tid`."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "aud": audience if isinstance(audience, str) else list(audience),
        "iss": f"https://sts.windows.net/{tid}/",
        "iat": now,
        "nbf": now - 60,
        "exp": now + lifetime_seconds,
        "oid": oid,
        "sub": oid,
        "tid": tid,
        "appid": appid or oid,
        "idtyp": "app" if principal_type == "ServicePrincipal" else "user",
        "uti": uuid.uuid4().hex,
    }
    header = {"alg": "HS256" if signed else "none", "typ": "JWT"}
    signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
    signature = hmac.new(SIGNING_KEY, signing_input.encode("ascii"), hashlib.sha256).digest() if signed else b""
    return f"{signing_input}.{_b64url(signature)}"


def decode_token(token: str, *, now: float | None = None) -> TokenClaims:
    """Check a token's form, signature and lifetime; return its claims. Raises TokenError."""
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenError("not a JWT (expected three dot-separated parts)")
    try:
        header = json.loads(_b64url_decode(parts[0]))
        claims = json.loads(_b64url_decode(parts[1]))
        signature = _b64url_decode(parts[2])
    except (ValueError, binascii.Error) as exc:
        raise TokenError(f"not a JWT: {exc}") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise TokenError("not a JWT: header and payload must be JSON objects")
    alg = header.get("alg")
    if alg == "HS256":
        expected = hmac.new(SIGNING_KEY, f"{parts[0]}.{parts[1]}".encode("ascii"), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, signature):
            raise TokenError("signature does not verify with the sandbox key")
    elif alg != "none":
        raise TokenError(f"unsupported alg {alg!r} (the sandbox accepts HS256 or none)")
    for claim in ("tid", "aud", "exp"):
        if not claims.get(claim):
            raise TokenError(f"claim {claim!r} is missing")
    # Entra app tokens always name the principal (`oid`); the Kubernetes emulator's workload
    # identity tokens may carry only the client id (`appid`/`azp`), which the emulator then
    # resolves to the identity's principal (principals.py)
    appid = claims.get("appid") or claims.get("azp")
    if not claims.get("oid") and not appid:
        raise TokenError("claim 'oid' is missing (and no 'appid'/'azp' names a client)")
    aud = claims["aud"]
    audiences = (aud,) if isinstance(aud, str) else tuple(str(a) for a in aud)
    try:
        exp = int(claims["exp"])
    except (TypeError, ValueError):
        raise TokenError("claim 'exp' is not a number") from None
    if exp < (time.time() if now is None else now):
        raise TokenError("the token has expired")
    return TokenClaims(
        oid=str(claims.get("oid") or ""),
        tid=str(claims["tid"]),
        audiences=audiences,
        appid=str(appid) if appid else None,
        principal_type="ServicePrincipal" if claims.get("idtyp") == "app" else "User",
        expires_on=exp,
    )


class SandboxCredential:
    """An azure-core TokenCredential (and SupportsTokenInfo) minting sandbox tokens.

    Keeps its own tenant even when a Key Vault challenge names another one: a real
    credential would fail there too, and the emulator then answers 401 so the mismatch shows.
    """

    def __init__(
        self,
        oid: str = OPERATOR_OID,
        tenant_id: str = SANDBOX_TENANT_ID,
        *,
        appid: str | None = None,
        principal_type: str = "User",
        lifetime_seconds: int = DEFAULT_LIFETIME_SECONDS,
    ) -> None:
        self.oid = oid
        self.tenant_id = tenant_id
        self.appid = appid
        self.principal_type = principal_type
        self.lifetime_seconds = lifetime_seconds

    def _mint(self, scopes: tuple[str, ...]) -> tuple[str, int]:
        if not scopes:
            raise ValueError("get_token needs at least one scope")
        token = mint_token(
            self.oid,
            self.tenant_id,
            audience=audience_for_scope(scopes[0]),
            appid=self.appid,
            principal_type=self.principal_type,
            lifetime_seconds=self.lifetime_seconds,
        )
        return token, int(time.time()) + self.lifetime_seconds

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        token, expires_on = self._mint(scopes)
        return AccessToken(token, expires_on)

    def get_token_info(self, *scopes: str, options: TokenRequestOptions | None = None) -> AccessTokenInfo:
        token, expires_on = self._mint(scopes)
        return AccessTokenInfo(token, expires_on, refresh_on=expires_on - 300)

    def close(self) -> None:
        """Nothing to release; present because azure-core closes credentials it owns."""

    def __enter__(self) -> SandboxCredential:
        return self

    def __exit__(self, *args: object) -> None:
        self.close()
