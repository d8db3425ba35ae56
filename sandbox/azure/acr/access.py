"""Who may pull, push or delete in which registry: ARM's role assignments, read the way ACR reads them.

A registry in the default `LegacyRegistryPermissions` mode authorizes data-plane operations
with control-plane actions of the caller's roles at the registry's scope or above:

    pull    Microsoft.ContainerRegistry/registries/pull/read      AcrPull, AcrPush, Reader, Contributor, Owner
    push    Microsoft.ContainerRegistry/registries/push/write     AcrPush, Contributor, Owner
    delete  Microsoft.ContainerRegistry/registries/artifacts/delete  AcrDelete, Contributor, Owner

The deploying principal (the emulator's operators) is treated as Owner of every subscription
(`EmulatorConfig.operators_own_subscriptions`), which is what lets it use all of ARM here: so it
can pull and push every registry without a role assignment, as a subscription Owner can in Azure.
`NODE_READER_OID` is the sandbox's Kubernetes nodes: they read every registry, because the pull
decision itself (AcrPull of the cluster's kubelet identity) is made by `pull_decision`, which the
Kubernetes emulator asks before each pull.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sandbox.azure.config import EmulatorConfig
from sandbox.azure.rbac import roles_allowing_action
from sandbox.azure.store import Record, Store

REGISTRY_TYPE = "Microsoft.ContainerRegistry/registries"
CLUSTER_TYPE = "Microsoft.ContainerService/managedClusters"
PULL = "Microsoft.ContainerRegistry/registries/pull/read"
PUSH = "Microsoft.ContainerRegistry/registries/push/write"
DELETE = "Microsoft.ContainerRegistry/registries/artifacts/delete"
DISTRIBUTION_ACTIONS = {"pull": PULL, "push": PUSH, "delete": DELETE}
ALL_ACTIONS = frozenset(DISTRIBUTION_ACTIONS)
# the sandbox's Kubernetes nodes (see the module docstring); not a principal of the directory
NODE_READER_OID = "9d3c5a1b-7e2f-4c8d-a6b4-0f1e2d3c4b5a"


@dataclass(frozen=True)
class Scope:
    """One Docker token scope, `type:name:action[,action]` (e.g. `repository:mmrv-backend:pull,push`)."""

    type: str
    name: str
    actions: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> Scope | None:
        kind, sep, rest = text.partition(":")
        name, sep2, actions = rest.rpartition(":")
        if not sep or not sep2 or not kind or not name:
            return None
        return cls(kind, name, tuple(a for a in actions.split(",") if a))

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(self.actions)}"


def parse_scopes(values: Iterable[str]) -> list[Scope]:
    """Every scope of the (repeatable, space-separated) `scope` parameters; malformed ones are dropped."""
    scopes = []
    for value in values:
        for part in value.split():
            scope = Scope.parse(part)
            if scope is not None:
                scopes.append(scope)
    return scopes


def registry_by_login_server(store: Store, host: str) -> Record | None:
    wanted = host.lower()
    for record in store.of_type(REGISTRY_TYPE):
        if str(record["body"]["properties"].get("loginServer", "")).lower() == wanted:
            return record
    return None


def allowed_actions(store: Store, config: EmulatorConfig, principal_id: str, registry_id: str) -> frozenset[str]:
    """The Distribution actions (`pull`, `push`, `delete`) the principal holds on this registry."""
    principal = principal_id.lower()
    if config.operators_own_subscriptions and principal in {o.lower() for o in config.operator_oids}:
        return ALL_ACTIONS
    if principal == NODE_READER_OID:
        return frozenset({"pull"})
    held = (
        name
        for name, action in DISTRIBUTION_ACTIONS.items()
        if roles_allowing_action(store, principal, registry_id, action)
    )
    return frozenset(held)


def grant(scopes: list[Scope], allowed: frozenset[str]) -> list[dict[str, Any]]:
    """The `access` claim: each requested scope narrowed to what is allowed (an empty list where nothing is).

    `registry:catalog:*` (listing repositories) comes with pull, as for AcrPull in Azure.
    """
    access = []
    for scope in scopes:
        if scope.type == "registry" and scope.name == "catalog":
            actions = ["*"] if "pull" in allowed and "*" in scope.actions else []
        elif scope.type == "repository":
            wanted = ALL_ACTIONS if "*" in scope.actions else set(scope.actions)
            actions = sorted(a for a in wanted if a in allowed)
        else:
            actions = []
        access.append({"type": scope.type, "name": scope.name, "actions": actions})
    return access


# --- the Kubernetes emulator's pull authorizer -----------------------------------------------


@dataclass(frozen=True)
class PullDecision:
    allowed: bool
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"allowed": self.allowed, "reason": self.reason}


def _kubelet_object_ids(store: Store, cluster: str, fallback: dict[str, Any] | None) -> list[str]:
    """Kubelet identity object ids of the managed clusters named `cluster` (or the caller's own idea)."""
    found = []
    for record in store.of_type(CLUSTER_TYPE):
        if record["body"]["name"].lower() != cluster.lower():
            continue
        kubelet = (record["body"]["properties"].get("identityProfile") or {}).get("kubeletidentity") or {}
        if kubelet.get("objectId"):
            found.append(str(kubelet["objectId"]))
    if not found and fallback and fallback.get("objectId"):
        found.append(str(fallback["objectId"]))
    return found


def pull_decision(store: Store, config: EmulatorConfig, request: dict[str, Any]) -> PullDecision:
    """May the kubelet of `request["cluster"]` pull from `request["registry"]`? (the kube README's contract)"""
    host = str(request.get("registry", ""))
    cluster = str(request.get("cluster", ""))
    registry = registry_by_login_server(store, host)
    if registry is None:
        if host.lower() in {h.lower() for h in config.registry_hosts.values()}:
            return PullDecision(False, f"the registry {host} has not been created in Azure (no such registry)")
        return PullDecision(True, f"{host} is not an Azure Container Registry of this sandbox")
    kubelets = _kubelet_object_ids(store, cluster, request.get("kubeletIdentity"))
    if not kubelets:
        return PullDecision(False, f"no AKS cluster named {cluster} (or kubelet identity) is known to ARM")
    for object_id in kubelets:
        roles = roles_allowing_action(store, object_id, registry["id"], PULL)
        if roles:
            return PullDecision(
                True, f"kubelet identity {object_id} of cluster {cluster} holds {', '.join(sorted(set(roles)))}"
            )
    return PullDecision(
        False,
        f"kubelet identity {kubelets[0]} of cluster {cluster} holds no AcrPull (nor any role granting {PULL}) "
        f"on {registry['id']}",
    )
