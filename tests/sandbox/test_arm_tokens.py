"""The sandbox's bearer tokens and credential: what the emulators accept and what they refuse."""

from __future__ import annotations

import time

import pytest

from sandbox.azure.auth import AUDIENCE, EXPIRED, INVALID, MISSING, TENANT, AuthProblem, authenticate
from sandbox.azure.tokens import (
    ALL_SANDBOX_AUDIENCES,
    KEY_VAULT_AUDIENCE,
    SandboxCredential,
    TokenError,
    decode_token,
    mint_token,
)

OID = "5f0c3b2a-1111-4222-8333-444455556666"
TID = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"


def test_a_minted_token_decodes_to_its_claims() -> None:
    claims = decode_token(mint_token(OID, TID, audience=KEY_VAULT_AUDIENCE, principal_type="ServicePrincipal"))
    assert (claims.oid, claims.tid, claims.audiences, claims.principal_type) == (
        OID,
        TID,
        (KEY_VAULT_AUDIENCE,),
        "ServicePrincipal",
    )
    assert claims.expires_on > time.time()


def test_unsigned_tokens_are_accepted_tampered_ones_are_not() -> None:
    assert decode_token(mint_token(OID, TID, signed=False)).oid == OID
    header, _, signature = mint_token(OID, TID).split(".")
    forged_payload = mint_token("someone-else", TID).split(".")[1]
    with pytest.raises(TokenError, match="signature"):
        decode_token(f"{header}.{forged_payload}.{signature}")
    with pytest.raises(TokenError):
        decode_token("not.a.jwt")


def test_expired_tokens_are_refused() -> None:
    with pytest.raises(TokenError, match="expired"):
        decode_token(mint_token(OID, TID, lifetime_seconds=-10))


@pytest.mark.parametrize(
    ("header", "kind"),
    [
        (None, MISSING),
        ("Basic abc", INVALID),
        (f"Bearer {mint_token(OID, TID, lifetime_seconds=-10)}", EXPIRED),
        (f"Bearer {mint_token(OID, TID, audience='https://storage.azure.com')}", AUDIENCE),
        (f"Bearer {mint_token(OID, 'ffffffff-0000-4000-8000-000000000000')}", TENANT),
    ],
)
def test_authenticate_says_what_is_wrong(header: str | None, kind: str) -> None:
    with pytest.raises(AuthProblem) as info:
        authenticate(header, audiences={"https://management.azure.com"}, tenant_id=TID)
    assert info.value.kind == kind


def test_one_static_token_can_serve_every_sandbox_service() -> None:
    token = f"Bearer {mint_token(OID, TID, audience=ALL_SANDBOX_AUDIENCES, lifetime_seconds=30 * 86400)}"
    for audience in ALL_SANDBOX_AUDIENCES:
        assert authenticate(token, audiences={audience}, tenant_id=TID).oid == OID


def test_the_credential_derives_the_audience_from_the_scope() -> None:
    credential = SandboxCredential(OID, TID)
    token = credential.get_token("https://vault.azure.net/.default", tenant_id="ignored", enable_cae=True)
    assert decode_token(token.token).audiences == (KEY_VAULT_AUDIENCE,)
    info = credential.get_token_info("https://management.azure.com/.default")
    assert decode_token(info.token).audiences == ("https://management.azure.com",)
    assert info.refresh_on is not None and info.refresh_on < info.expires_on
