"""The ARM mechanics every resource type shares: PUT/GET/PATCH/DELETE/list/POST on a ResourceKind."""

from __future__ import annotations

import copy
import logging
import uuid
from typing import Any

from sandbox.azure.errors import ServiceError, conflict, resource_group_not_found, resource_not_found
from sandbox.azure.lro import FinishContext, finisher
from sandbox.azure.providers.base import (
    ArmRequest,
    ArmResponse,
    ResourceId,
    ResourceKind,
    kind_of,
    normalize_location,
    resource_group_id,
    system_data,
)
from sandbox.azure.store import Record, Store

log = logging.getLogger("sandbox.azure.engine")

RESOURCE_GROUP_TYPE = "Microsoft.Resources/resourceGroups"


# --- resource groups ------------------------------------------------------------------


def get_resource_group(store: Store, subscription: str, name: str) -> Record | None:
    return store.get(resource_group_id(subscription, name))


def require_resource_group(req: ArmRequest, subscription: str, name: str) -> Record:
    record = get_resource_group(req.store, subscription, name)
    if record is None:
        raise resource_group_not_found(name)
    # ARM refuses writes into a group being deleted; reads still work
    if record["body"]["properties"]["provisioningState"] == "Deleting" and req.method in ("PUT", "PATCH", "POST"):
        raise conflict(
            "ResourceGroupBeingDeleted",
            f"The resource group '{name}' is in deprovisioning state and cannot perform this operation.",
        )
    return record


def canonical_id(req: ArmRequest, kind: ResourceKind, rid: ResourceId) -> ResourceId:
    """The id with the resource group's and the parents' stored casing, as ARM echoes them."""
    group = require_resource_group(req, rid.subscription, rid.resource_group)
    names = list(rid.names)
    for depth in range(1, len(rid.types)):
        parent = ResourceId(
            rid.subscription, group["body"]["name"], kind.namespace, rid.types[:depth], rid.names[:depth]
        )
        stored = req.store.get(str(parent))
        if stored is None:
            raise ServiceError(
                404,
                "ParentResourceNotFound",
                f"Can not perform requested operation on nested resource. Parent resource "
                f"'{'/'.join(rid.names[:depth])}' not found.",
            )
        names[depth - 1] = stored["body"]["name"]
    existing = req.store.get(str(rid))
    if existing is not None:
        names[-1] = existing["body"]["name"]
    return ResourceId(rid.subscription, group["body"]["name"], kind.namespace, kind.types, tuple(names))


# --- generic operations -----------------------------------------------------------------


def put_resource(req: ArmRequest, kind: ResourceKind, rid: ResourceId) -> ArmResponse:
    rid = canonical_id(req, kind, rid)
    body = req.json_body()
    existing = req.store.get(str(rid))
    if existing is None:
        kind.validate_name(rid.name)
    else:
        kind.check_update(req, existing)
    stored = kind.build(req, rid, existing, body)
    full: dict[str, Any] = {"id": str(rid), "name": rid.name, "type": kind.type_name}
    location = ""
    if kind.tracked:
        location = _location_of(body, existing, rid)
        full["location"] = location
        full["tags"] = dict(body.get("tags") or {})
    full.update(stored)
    if kind.has_system_data:
        full["systemData"] = system_data(req, existing)
    meta = copy.deepcopy(existing["meta"]) if existing else {}
    meta["etag"] = str(uuid.uuid4())
    record: Record = {"id": str(rid), "type": kind.type_name, "body": full, "meta": meta}
    headers: dict[str, str] = {}
    if kind.reports_provisioning_state:
        props = full.setdefault("properties", {})
        if kind.long_running_put:
            props["provisioningState"] = kind.creating_state if existing is None else kind.updating_state
            op = _start(req, kind, record, "provisioned", location)
            headers = req.lro.async_headers(op, req.public_url, req.api_version)
        else:
            props["provisioningState"] = "Succeeded"
    req.store.put(record)
    kind.after_put(req, record, created=existing is None)
    log.info("%s %s", "updated" if existing else "created", rid)
    return ArmResponse(200 if existing else 201, kind.render(req, record), headers)


def patch_resource(req: ArmRequest, kind: ResourceKind, rid: ResourceId) -> ArmResponse:
    if not kind.patchable:
        raise ServiceError(405, "MethodNotAllowed", f"PATCH is not supported on '{kind.type_name}'.")
    record = require_resource(req, kind, rid)
    kind.check_update(req, record)
    body = req.json_body()
    current = record["body"]
    # a PATCH is a merge: send back the whole resource with the given parts replaced
    merged = copy.deepcopy(current)
    if "tags" in body:
        merged["tags"] = dict(body["tags"] or {})
    for key in ("sku", "identity"):
        if key in body:
            merged[key] = copy.deepcopy(body[key])
    if isinstance(body.get("properties"), dict):
        merged.setdefault("properties", {}).update(copy.deepcopy(body["properties"]))
    rebuilt = kind.build(req, resource_id_of(record, kind), record, merged)
    current.update(rebuilt)
    if "tags" in merged:
        current["tags"] = merged["tags"]
    if kind.has_system_data:
        current["systemData"] = system_data(req, record)
    headers: dict[str, str] = {}
    if kind.reports_provisioning_state:
        if kind.long_running_patch:
            current["properties"]["provisioningState"] = kind.updating_state
            op = _start(req, kind, record, "provisioned", current.get("location", ""))
            headers = req.lro.async_headers(op, req.public_url, req.api_version)
        else:
            current["properties"]["provisioningState"] = "Succeeded"
    record["meta"]["etag"] = str(uuid.uuid4())
    kind.after_put(req, record, created=False)
    req.store.touch()
    return ArmResponse(200, kind.render(req, record), headers)


def get_resource(req: ArmRequest, kind: ResourceKind, rid: ResourceId) -> ArmResponse:
    record = require_resource(req, kind, rid)
    return ArmResponse(200, kind.render(req, record))


def require_resource(req: ArmRequest, kind: ResourceKind, rid: ResourceId) -> Record:
    require_resource_group(req, rid.subscription, rid.resource_group)
    record = req.store.get(str(rid))
    if record is None:
        raise resource_not_found(kind.type_name, "/".join(rid.names), rid.resource_group)
    return record


def delete_resource(req: ArmRequest, kind: ResourceKind, rid: ResourceId) -> ArmResponse:
    require_resource_group(req, rid.subscription, rid.resource_group)
    record = req.store.get(str(rid))
    if record is None:
        return ArmResponse(204)  # ARM: deleting what is not there succeeds with No Content
    kind.before_delete(req, record)
    if kind.long_running_delete:
        if kind.reports_provisioning_state:
            record["body"].setdefault("properties", {})["provisioningState"] = "Deleting"
        op = _start(req, kind, record, "deleted", record["body"].get("location", ""))
        return ArmResponse(202, None, req.lro.location_headers(op, req.public_url, req.api_version))
    cascade_delete(req.store, record)
    log.info("deleted %s", record["id"])
    return ArmResponse(200, kind.render(req, record) if not kind.tracked else None)


def list_resources(req: ArmRequest, kind: ResourceKind, prefix: str) -> ArmResponse:
    """Every resource of `kind` whose id starts with `prefix` (a group, a parent or a subscription)."""
    lowered = prefix.lower()
    # children keep the order they were given in (a route table's routes); the rest go by id
    records = sorted(
        (r for r in req.store.of_type(kind.type_name) if r["id"].lower().startswith(lowered)),
        key=lambda r: (r["meta"].get("order", 0), r["id"].lower()),
    )
    return ArmResponse(200, {"value": [kind.render(req, r) for r in records]})


def post_action(req: ArmRequest, kind: ResourceKind, rid: ResourceId, action: str) -> ArmResponse:
    record = require_resource(req, kind, rid)
    return kind.action(req, record, action)


# --- long-running operation plumbing ----------------------------------------------------


def _start(req: ArmRequest, kind: ResourceKind, record: Record, finisher_name: str, location: str) -> Record:
    subscription = record["id"].split("/")[2]
    op = req.lro.start(
        subscription=subscription,
        namespace=kind.namespace,
        location=location or _parent_location(req.store, record),
        resource_type=kind.type_name,
        resource_id=record["id"],
        finisher_name=finisher_name,
    )
    record["meta"]["op"] = op["id"]
    return op


def _parent_location(store: Store, record: Record) -> str:
    """Child resources have no location of their own; their operations run where the parent is."""
    parent_id = record["id"].rsplit("/", 2)[0]
    parent = store.get(parent_id)
    return (parent or {}).get("body", {}).get("location", "global")


@finisher("provisioned")
def _provisioned(ctx: FinishContext, op: Record, succeeded: bool) -> None:
    record = ctx.store.get(op["resource_id"])
    if record is None or record["meta"].get("op") != op["id"]:
        return  # deleted meanwhile, or a newer operation owns the resource now
    record["body"]["properties"]["provisioningState"] = "Succeeded" if succeeded else "Failed"
    kind = kind_of(record["type"])
    if kind is not None:
        kind.on_provisioned(ctx.store, record, succeeded)
    ctx.store.touch()


@finisher("deleted")
def _deleted(ctx: FinishContext, op: Record, succeeded: bool) -> None:
    record = ctx.store.get(op["resource_id"])
    if record is None:
        return
    if not succeeded:
        record["body"].setdefault("properties", {})["provisioningState"] = "Failed"
        ctx.store.touch()
        return
    cascade_delete(ctx.store, record)


def cascade_delete(store: Store, record: Record) -> None:
    """Remove a resource and everything below it, letting each kind react (soft delete, node groups)."""
    for child in sorted(store.under(record["id"]), key=lambda r: -len(r["id"])):
        if store.get(child["id"]) is None:
            continue
        child_kind = kind_of(child["type"])
        if child_kind is not None:
            child_kind.on_deleted(store, child)
        store.remove(child["id"])
    kind = kind_of(record["type"])
    if kind is not None:
        kind.on_deleted(store, record)
    store.remove(record["id"])


def resource_id_of(record: Record, kind: ResourceKind) -> ResourceId:
    parts = record["id"].split("/")
    # /subscriptions/{s}/resourceGroups/{rg}/providers/{ns}/{t}/{n}...
    pairs = parts[7:]
    return ResourceId(parts[2], parts[4], kind.namespace, tuple(pairs[0::2]), tuple(pairs[1::2]))


def _location_of(body: dict[str, Any], existing: Record | None, rid: ResourceId) -> str:
    raw = body.get("location")
    if not raw:
        raise ServiceError(400, "LocationRequired", "The location property is required for this definition.")
    location = normalize_location(raw)
    if existing is not None and existing["body"].get("location") not in (None, location):
        raise ServiceError(
            409,
            "InvalidResourceLocation",
            f"The resource '{rid.name}' already exists in location '{existing['body']['location']}' in resource "
            f"group '{rid.resource_group}'. A resource with the same name cannot be created in location "
            f"'{location}'. Please select a new resource name.",
        )
    return location
