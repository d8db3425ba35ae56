"""OIDC issuers of the emulated AKS clusters: one URL per cluster under the public URL.

    {public}/oidc/{tenant}/{cluster-guid}/                      the issuer (trailing slash, like AKS)
    {public}/oidc/{tenant}/{cluster-guid}/.well-known/openid-configuration
    {public}/oidc/{tenant}/{cluster-guid}/openid/v1/jwks

The URL is derived when rendered, not stored, so it follows the public URL the emulator is
given; keep `--public-url` stable across restarts or federated credentials written before the
restart name an issuer that no longer exists.
"""

from __future__ import annotations

from typing import Any

from sandbox.azure.store import Store

CLUSTER_TYPE = "Microsoft.ContainerService/managedClusters"


def issuer_url(public_url: str, tenant_id: str, oidc_id: str) -> str:
    return f"{public_url}/oidc/{tenant_id}/{oidc_id}/"


def known_issuers(store: Store, public_url: str) -> dict[str, str]:
    """Issuer URL -> the id of the cluster it belongs to, for clusters with the issuer enabled."""
    issuers: dict[str, str] = {}
    for record in store.of_type(CLUSTER_TYPE):
        oidc_id = record["meta"].get("oidc_id")
        if oidc_id and record["body"]["properties"].get("oidcIssuerProfile", {}).get("enabled"):
            issuers[issuer_url(public_url, record["meta"]["tenant_id"], oidc_id)] = record["id"]
    return issuers


def discovery_document(issuer: str) -> dict[str, Any]:
    return {
        "issuer": issuer,
        "jwks_uri": f"{issuer}openid/v1/jwks",
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    }
