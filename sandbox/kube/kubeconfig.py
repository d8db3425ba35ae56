"""Kubeconfigs for the emulator's clusters, in the shape `az aks get-credentials` writes.

The server URL is `<public url>/clusters/<cluster>`; the CA is the sandbox CA that the
TLS front (the fault proxy) presents. With a token the user authenticates with it
directly; without one the user gets the `kubelogin` exec stanza AKS hands out for Entra
ID clusters (the tool replaces it with its own token).
"""

from __future__ import annotations

import base64
from typing import Any

AKS_SERVER_APP_ID = "6dae42f8-4368-4678-94ff-3960e28e3630"  # Entra ID app of the AKS API servers


def cluster_url(public_url: str, cluster: str) -> str:
    return f"{public_url.rstrip('/')}/clusters/{cluster}"


def build_kubeconfig(
    cluster: str,
    server: str,
    *,
    ca_pem: bytes | None = None,
    token: str | None = None,
    user: str | None = None,
    namespace: str | None = None,
) -> dict[str, Any]:
    """A kubeconfig dict (dump it with yaml.safe_dump). `server` is the full cluster URL."""
    user_name = user or f"clusterUser_{cluster}"
    cluster_entry: dict[str, Any] = {"server": server}
    if ca_pem is not None:
        cluster_entry["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
    if token is not None:
        user_entry: dict[str, Any] = {"token": token}
    else:
        user_entry = {
            "exec": {
                "apiVersion": "client.authentication.k8s.io/v1beta1",
                "command": "kubelogin",
                "args": ["get-token", "--login", "azurecli", "--server-id", AKS_SERVER_APP_ID],
                "interactiveMode": "IfAvailable",
                "provideClusterInfo": False,
            }
        }
    context: dict[str, Any] = {"cluster": cluster, "user": user_name}
    if namespace:
        context["namespace"] = namespace
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": cluster_entry}],
        "contexts": [{"name": cluster, "context": context}],
        "current-context": cluster,
        "users": [{"name": user_name, "user": user_entry}],
        "preferences": {},
    }
