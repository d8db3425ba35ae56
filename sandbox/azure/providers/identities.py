"""Microsoft.ManagedIdentity: user-assigned identities and their federated identity credentials.

Identity PUTs are synchronous (200/201, no provisioningState), as in the 2024-11-30 API. An
identity keeps its principalId and clientId for life, whatever later PUTs say. A federated
credential must name the OIDC issuer of a cluster this emulator runs, byte for byte: AKS
issuers end with '/', and Entra compares the token's `iss` exactly, so a missing slash is the
classic cause of "AADSTS70021: No matching federated identity record found".
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from sandbox.azure.errors import ServiceError, bad_request, conflict
from sandbox.azure.oidc import known_issuers
from sandbox.azure.providers.base import (
    ArmRequest,
    ResourceId,
    ResourceKind,
    register_kind,
    require_properties,
)
from sandbox.azure.store import Record, Store

NAMESPACE = "Microsoft.ManagedIdentity"
IDENTITY_TYPE = f"{NAMESPACE}/userAssignedIdentities"
IDENTITY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{2,127}")
CREDENTIAL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{2,119}")
MAX_CREDENTIALS_PER_IDENTITY = 20
DEFAULT_AUDIENCE = "api://AzureADTokenExchange"
CLUSTER_TYPE = "Microsoft.ContainerService/managedClusters"


def identity_properties(tenant_id: str, previous: dict[str, Any] | None = None) -> dict[str, Any]:
    previous = previous or {}
    return {
        "tenantId": previous.get("tenantId", tenant_id),
        "principalId": previous.get("principalId", str(uuid.uuid4())),
        "clientId": previous.get("clientId", str(uuid.uuid4())),
        "isolationScope": previous.get("isolationScope", "None"),
    }


class UserAssignedIdentities(ResourceKind):
    namespace = NAMESPACE
    types = ("userAssignedIdentities",)
    long_running_put = False
    long_running_delete = False
    reports_provisioning_state = False
    patchable = True

    def validate_name(self, name: str) -> None:
        if not IDENTITY_NAME.fullmatch(name):
            raise bad_request(
                "InvalidResourceName",
                f"Resource name '{name}' is invalid. Managed identity names are 3-128 letters, digits, '-' or '_', "
                "starting with a letter or digit.",
            )

    def build(self, req: ArmRequest, rid: ResourceId, existing: Record | None, body: dict[str, Any]) -> dict[str, Any]:
        previous = (existing or {}).get("body", {}).get("properties")
        return {"properties": identity_properties(req.config.tenant_id, previous)}


class FederatedIdentityCredentials(ResourceKind):
    namespace = NAMESPACE
    types = ("userAssignedIdentities", "federatedIdentityCredentials")
    tracked = False
    long_running_put = False
    long_running_delete = False
    reports_provisioning_state = False

    def validate_name(self, name: str) -> None:
        if not CREDENTIAL_NAME.fullmatch(name):
            raise bad_request(
                "InvalidResourceName",
                f"Resource name '{name}' is invalid. Federated identity credential names are 3-120 letters, digits, "
                "'-' or '_', starting with a letter or digit.",
            )

    def build(self, req: ArmRequest, rid: ResourceId, existing: Record | None, body: dict[str, Any]) -> dict[str, Any]:
        props = require_properties(body)
        issuer, subject, audiences = props.get("issuer"), props.get("subject"), props.get("audiences")
        if not issuer or not subject:
            raise bad_request("BadRequest", "Both 'issuer' and 'subject' are required.")
        if not isinstance(audiences, list) or not audiences:
            raise bad_request("BadRequest", f"'audiences' is required, e.g. [\"{DEFAULT_AUDIENCE}\"].")
        self._check_issuer(req, str(issuer))
        parent = str(rid.parent())
        siblings = [r for r in req.store.under(parent) if r["type"].lower() == self.type_name.lower()]
        for sibling in siblings:
            other = sibling["body"]["properties"]
            if sibling["id"].lower() != str(rid).lower() and (other["issuer"], other["subject"]) == (issuer, subject):
                raise conflict(
                    "Conflict",
                    f"Federated identity credential '{sibling['body']['name']}' already uses issuer '{issuer}' "
                    f"and subject '{subject}' on this identity.",
                )
        if existing is None and len(siblings) >= MAX_CREDENTIALS_PER_IDENTITY:
            raise bad_request(
                "BadRequest",
                f"An identity can have at most {MAX_CREDENTIALS_PER_IDENTITY} federated identity credentials.",
            )
        return {"properties": {"issuer": issuer, "subject": subject, "audiences": list(audiences)}}

    @staticmethod
    def _check_issuer(req: ArmRequest, issuer: str) -> None:
        issuers = known_issuers(req.store, req.public_url)
        if issuer in issuers:
            return
        near = [url for url in issuers if url.rstrip("/") == issuer.rstrip("/")]
        hint = (
            f" Did you mean '{near[0]}'? AKS issuer URLs end with '/' and must match exactly."
            if near
            else f" Known issuers: {', '.join(sorted(issuers)) or 'none (no cluster has the OIDC issuer enabled)'}."
        )
        raise bad_request(
            "BadRequest",
            f"The issuer '{issuer}' is not the OIDC issuer URL of any cluster in this sandbox.{hint}",
            target="properties.issuer",
        )


register_kind(UserAssignedIdentities())
register_kind(FederatedIdentityCredentials())


def create_identity_internally(
    store: Store, *, subscription: str, resource_group: str, name: str, location: str, tenant_id: str
) -> Record:
    """An identity a service makes for itself (the AKS kubelet identity in the node resource group)."""
    rid = f"/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/{IDENTITY_TYPE}/{name}"
    existing = store.get(rid)
    if existing is not None:
        return existing
    body = {
        "id": rid,
        "name": name,
        "type": IDENTITY_TYPE,
        "location": location,
        "tags": {},
        "properties": identity_properties(tenant_id),
    }
    record: Record = {"id": rid, "type": IDENTITY_TYPE, "body": body, "meta": {}}
    store.put(record)
    return record


def principal_exists(req: ArmRequest, principal_id: str) -> bool:
    """Is there such an object in the (emulated) directory?"""
    wanted = principal_id.lower()
    if wanted in {p.lower() for p in (*req.config.operator_oids, *req.config.known_principals)}:
        return True
    for record in req.store.of_type(IDENTITY_TYPE):
        if record["body"]["properties"]["principalId"].lower() == wanted:
            return True
    for record in req.store.of_type(CLUSTER_TYPE):
        system = record["body"].get("identity") or {}
        if str(system.get("principalId", "")).lower() == wanted:
            return True
    return False


def require_identity(req: ArmRequest, resource_id: str) -> Record:
    record = req.store.get(resource_id)
    if record is None or record["type"].lower() != IDENTITY_TYPE.lower():
        raise ServiceError(
            400, "InvalidUserAssignedIdentity", f"The user assigned identity '{resource_id}' was not found."
        )
    return record
