"""Microsoft.Resources: subscriptions (read-only, from the configuration) and resource groups."""

from __future__ import annotations

import copy
import re
from typing import Any

from sandbox.azure.errors import ServiceError, bad_request, resource_group_not_found
from sandbox.azure.lro import FinishContext, finisher
from sandbox.azure.providers.base import ArmRequest, ArmResponse, normalize_location, resource_group_id
from sandbox.azure.providers.engine import RESOURCE_GROUP_TYPE, cascade_delete, get_resource_group
from sandbox.azure.store import Record, Store

GROUP_NAME = re.compile(r"[-\w.()]{1,90}")


def subscription_body(req: ArmRequest, subscription: str) -> dict[str, Any]:
    return {
        "id": f"/subscriptions/{subscription}",
        "subscriptionId": subscription,
        "tenantId": req.config.tenant_id,
        "displayName": f"sandbox subscription {subscription}",
        "state": "Enabled",
    }


def list_subscriptions(req: ArmRequest) -> ArmResponse:
    return ArmResponse(200, {"value": [subscription_body(req, s) for s in req.config.subscriptions]})


def get_subscription(req: ArmRequest, subscription: str) -> ArmResponse:
    return ArmResponse(200, subscription_body(req, subscription))


def _validate_group_name(name: str) -> None:
    if not GROUP_NAME.fullmatch(name) or name.endswith("."):
        raise bad_request(
            "InvalidResourceGroupName",
            f"Resource group name '{name}' is invalid. It can contain 1-90 letters, digits, underscores, "
            "parentheses, hyphens and periods, and cannot end with a period.",
        )


def put_group(req: ArmRequest, subscription: str, name: str) -> ArmResponse:
    _validate_group_name(name)
    body = req.json_body()
    if not body.get("location"):
        raise bad_request("LocationRequired", "The location property is required for this definition.")
    location = normalize_location(body["location"])
    existing = get_resource_group(req.store, subscription, name)
    if existing is not None:
        if existing["body"]["location"] != location:
            raise ServiceError(
                409,
                "InvalidResourceGroupLocation",
                f"Invalid resource group location '{location}'. The Resource group already exists in location "
                f"'{existing['body']['location']}'.",
            )
        if existing["body"]["properties"]["provisioningState"] == "Deleting":
            raise ServiceError(
                409,
                "ResourceGroupBeingDeleted",
                f"The resource group '{existing['body']['name']}' is in deprovisioning state and cannot perform "
                "this operation.",
            )
    canonical = existing["body"]["name"] if existing else name
    group: dict[str, Any] = {
        "id": resource_group_id(subscription, canonical),
        "name": canonical,
        "type": RESOURCE_GROUP_TYPE,
        "location": location,
        "tags": dict(body.get("tags") or {}),
        "properties": {"provisioningState": "Succeeded"},
    }
    managed_by = body.get("managedBy") or (existing or {}).get("body", {}).get("managedBy")
    if managed_by:
        group["managedBy"] = managed_by
    record = {"id": group["id"], "type": RESOURCE_GROUP_TYPE, "body": group, "meta": {}}
    req.store.put(record)
    return ArmResponse(200 if existing else 201, copy.deepcopy(group))


def create_group_internally(store: Store, subscription: str, name: str, location: str, **extra: Any) -> Record:
    """A group a service makes for itself (AKS's node resource group)."""
    existing = get_resource_group(store, subscription, name)
    if existing is not None:
        return existing
    group = {
        "id": resource_group_id(subscription, name),
        "name": name,
        "type": RESOURCE_GROUP_TYPE,
        "location": location,
        "tags": dict(extra.pop("tags", {})),
        "properties": {"provisioningState": "Succeeded"},
        **extra,
    }
    record = {"id": group["id"], "type": RESOURCE_GROUP_TYPE, "body": group, "meta": {}}
    store.put(record)
    return record


def _require(req: ArmRequest, subscription: str, name: str) -> Record:
    record = get_resource_group(req.store, subscription, name)
    if record is None:
        raise resource_group_not_found(name)
    return record


def get_group(req: ArmRequest, subscription: str, name: str) -> ArmResponse:
    return ArmResponse(200, copy.deepcopy(_require(req, subscription, name)["body"]))


def head_group(req: ArmRequest, subscription: str, name: str) -> ArmResponse:
    return ArmResponse(204 if get_resource_group(req.store, subscription, name) else 404)


def patch_group(req: ArmRequest, subscription: str, name: str) -> ArmResponse:
    record = _require(req, subscription, name)
    body = req.json_body()
    if "tags" in body:
        record["body"]["tags"] = dict(body["tags"] or {})
    if body.get("managedBy"):
        record["body"]["managedBy"] = body["managedBy"]
    req.store.touch()
    return ArmResponse(200, copy.deepcopy(record["body"]))


def list_groups(req: ArmRequest, subscription: str) -> ArmResponse:
    prefix = f"/subscriptions/{subscription}/".lower()
    groups = [
        copy.deepcopy(r["body"]) for r in req.store.of_type(RESOURCE_GROUP_TYPE) if r["id"].lower().startswith(prefix)
    ]
    return ArmResponse(200, {"value": sorted(groups, key=lambda g: g["name"].lower())})


def delete_group(req: ArmRequest, subscription: str, name: str) -> ArmResponse:
    record = _require(req, subscription, name)
    record["body"]["properties"]["provisioningState"] = "Deleting"
    op = req.lro.start(
        subscription=subscription,
        namespace="Microsoft.Resources",
        location=record["body"]["location"],
        resource_type=RESOURCE_GROUP_TYPE,
        resource_id=record["id"],
        finisher_name="resource_group_deleted",
    )
    return ArmResponse(202, None, req.lro.location_headers(op, req.public_url, req.api_version))


@finisher("resource_group_deleted")
def _group_deleted(ctx: FinishContext, op: Record, succeeded: bool) -> None:
    record = ctx.store.get(op["resource_id"])
    if record is None:
        return
    if not succeeded:
        record["body"]["properties"]["provisioningState"] = "Succeeded"
        ctx.store.touch()
        return
    cascade_delete(ctx.store, record)


def list_generic_resources(req: ArmRequest, prefix: str) -> ArmResponse:
    """GET .../resources[?$filter=resourceType eq 'X']: every tracked resource below `prefix`."""
    wanted = _resource_type_filter(req.query.get("$filter", ""))
    lowered = prefix.lower().rstrip("/") + "/"
    values = []
    for record in req.store.resources.values():
        body = record["body"]
        if not record["id"].lower().startswith(lowered) or "/providers/" not in record["id"]:
            continue
        if "location" not in body or record["type"] == RESOURCE_GROUP_TYPE:
            continue  # only tracked resources are listed, as ARM does
        if wanted and record["type"].lower() != wanted:
            continue
        item = {k: copy.deepcopy(body[k]) for k in ("id", "name", "type", "location", "tags", "sku") if k in body}
        values.append(item)
    return ArmResponse(200, {"value": sorted(values, key=lambda v: v["id"].lower())})


def _resource_type_filter(expression: str) -> str | None:
    match = re.search(r"resourceType\s+eq\s+'([^']+)'", expression, flags=re.IGNORECASE)
    return match.group(1).lower() if match else None
