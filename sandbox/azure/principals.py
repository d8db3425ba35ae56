"""Who a token stands for, when it names a client rather than a principal.

Entra puts the principal's object id (`oid`) in every token. The Kubernetes emulator's
workload identity tokens (what the Secrets Store CSI driver presents to Key Vault) carry only
the managed identity's client id as `appid`/`azp`, because a cluster does not know principal
ids. In Entra a user-assigned identity is a service principal whose appId is the identity's
clientId and whose objectId is its principalId, so the emulator resolves the one to the other
here, and RBAC then sees the identity's real role assignments.
"""

from __future__ import annotations

import dataclasses

from sandbox.azure.providers.identities import IDENTITY_TYPE
from sandbox.azure.store import Store
from sandbox.azure.tokens import TokenClaims


def principal_of_client(store: Store, client_id: str) -> str | None:
    """The principalId of the user-assigned identity whose clientId is `client_id`, if any."""
    wanted = client_id.lower()
    for record in store.of_type(IDENTITY_TYPE):
        props = record["body"]["properties"]
        if str(props.get("clientId", "")).lower() == wanted:
            return str(props["principalId"])
    return None


def resolve_principal(store: Store, claims: TokenClaims) -> TokenClaims | None:
    """`claims` with `oid` filled in from the client id when missing; None when nobody matches."""
    if claims.oid:
        return claims
    principal = principal_of_client(store, claims.appid or "")
    return dataclasses.replace(claims, oid=principal) if principal else None
