"""The vocabulary shared by the resource providers: requests, responses, ARM ids, resource kinds.

A provider module describes each resource type once as a `ResourceKind` (name rules, how a PUT
body becomes the stored resource, what changes when it is deleted) and registers it with
`register_kind`; the generic engine (engine.py) does the ARM mechanics every type shares:
resource group and parent checks, ids, tags, systemData, long-running operations, listing.
Subscription-level endpoints that are not a resource (checkNameAvailability, kubernetesVersions,
deletedVaults) are registered with `provider_route`.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from sandbox.azure.config import EmulatorConfig
from sandbox.azure.errors import ServiceError, bad_request
from sandbox.azure.lro import Lro, iso_now
from sandbox.azure.store import Record, Store
from sandbox.azure.tokens import TokenClaims

GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


@dataclass
class ArmRequest:
    method: str
    segments: list[str]
    query: dict[str, str]
    body: Any
    principal: TokenClaims
    api_version: str
    public_url: str
    config: EmulatorConfig
    store: Store
    lro: Lro
    # the ACR data plane's runtime (sandbox.azure.acr.runtime.AcrRuntime), for importImage
    acr: Any = None

    def json_body(self) -> dict[str, Any]:
        """The request body as a JSON object, or 400 InvalidRequestContent."""
        if not isinstance(self.body, dict):
            raise bad_request("InvalidRequestContent", "The request content was invalid and could not be deserialized.")
        return self.body


@dataclass
class ArmResponse:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ResourceId:
    """`/subscriptions/{s}/resourceGroups/{rg}/providers/{ns}/{type}/{name}[/{type}/{name}...]`."""

    subscription: str
    resource_group: str
    namespace: str
    types: tuple[str, ...]
    names: tuple[str, ...]

    def __str__(self) -> str:
        pairs = "/".join(f"{t}/{n}" for t, n in zip(self.types, self.names, strict=True))
        return f"{resource_group_id(self.subscription, self.resource_group)}/providers/{self.namespace}/{pairs}"

    @property
    def name(self) -> str:
        return self.names[-1]

    def parent(self) -> ResourceId | None:
        if len(self.types) == 1:
            return None
        return ResourceId(self.subscription, self.resource_group, self.namespace, self.types[:-1], self.names[:-1])


def resource_group_id(subscription: str, resource_group: str) -> str:
    return f"/subscriptions/{subscription}/resourceGroups/{resource_group}"


class ResourceKind:
    """One ARM resource type. Subclasses override what differs from the defaults below."""

    namespace: ClassVar[str]
    types: ClassVar[tuple[str, ...]]
    tracked: ClassVar[bool] = True  # has location and tags (top-level resources)
    long_running_put: ClassVar[bool] = True
    long_running_delete: ClassVar[bool] = True
    long_running_patch: ClassVar[bool] = False
    patchable: ClassVar[bool] = False
    reports_provisioning_state: ClassVar[bool] = True
    has_system_data: ClassVar[bool] = True
    creating_state: ClassVar[str] = "Creating"
    updating_state: ClassVar[str] = "Updating"

    @property
    def type_name(self) -> str:
        return f"{self.namespace}/{'/'.join(self.types)}"

    def validate_name(self, name: str) -> None:
        """Raise 400 when ARM (or the resource provider) would refuse this name."""

    def build(self, req: ArmRequest, rid: ResourceId, existing: Record | None, body: dict[str, Any]) -> dict[str, Any]:
        """The stored representation of a PUT body: `properties` and the type's other keys.

        The engine adds id, name, type, location, tags and systemData. Raise ServiceError to refuse.
        """
        return {"properties": copy.deepcopy(body.get("properties") or {})}

    def check_update(self, req: ArmRequest, record: Record) -> None:
        """Refuse a PUT/PATCH while the resource is busy, if the service does."""

    def after_put(self, req: ArmRequest, record: Record, created: bool) -> None:
        """Side effects of an accepted PUT (e.g. AKS creates its node resource group)."""

    def render(self, req: ArmRequest, record: Record) -> dict[str, Any]:
        """The JSON a GET returns. Derived fields that depend on the public URL go here."""
        return copy.deepcopy(record["body"])

    def before_delete(self, req: ArmRequest, record: Record) -> None:
        """Refuse a DELETE the service would refuse (e.g. a subnet in use)."""

    def on_deleted(self, store: Store, record: Record) -> None:
        """What else changes when the resource is gone (soft-deleted vaults, node groups)."""

    def on_provisioned(self, store: Store, record: Record, succeeded: bool) -> None:
        """What else changes when a PUT's operation finishes."""

    def action(self, req: ArmRequest, record: Record, name: str) -> ArmResponse:
        """POST {id}/{name}."""
        raise ServiceError(
            404,
            "InvalidResourceType",
            f"The resource type '{self.type_name}/{name}' could not be found in the namespace "
            f"'{self.namespace}' for api version '{req.api_version}'.",
        )


KINDS: dict[str, ResourceKind] = {}


def register_kind(kind: ResourceKind) -> ResourceKind:
    KINDS[kind.type_name.lower()] = kind
    return kind


def kind_of(type_name: str) -> ResourceKind | None:
    return KINDS.get(type_name.lower())


def find_kind(namespace: str, types: tuple[str, ...]) -> ResourceKind | None:
    return KINDS.get(f"{namespace}/{'/'.join(types)}".lower())


ProviderHandler = Callable[[ArmRequest, str, dict[str, str]], ArmResponse]


@dataclass(frozen=True)
class ProviderRoute:
    method: str
    pattern: tuple[str, ...]  # segments after /providers/{ns}/; "{x}" captures, others match case-insensitively
    handler: ProviderHandler


PROVIDER_ROUTES: dict[str, list[ProviderRoute]] = {}


def provider_route(namespace: str, method: str, pattern: str) -> Callable[[ProviderHandler], ProviderHandler]:
    """Register `handler(req, subscription, captures)` for /subscriptions/{s}/providers/{ns}/{pattern}."""

    def register(handler: ProviderHandler) -> ProviderHandler:
        route = ProviderRoute(method, tuple(pattern.split("/")), handler)
        PROVIDER_ROUTES.setdefault(namespace.lower(), []).append(route)
        return handler

    return register


def match_segments(pattern: tuple[str, ...], segments: list[str]) -> dict[str, str] | None:
    if len(pattern) != len(segments):
        return None
    captures: dict[str, str] = {}
    for want, got in zip(pattern, segments, strict=True):
        if want.startswith("{") and want.endswith("}"):
            captures[want[1:-1]] = got
        elif want.lower() != got.lower():
            return None
    return captures


# --- helpers every provider uses ------------------------------------------------------


def system_data(req: ArmRequest, existing: Record | None) -> dict[str, Any]:
    now = iso_now()
    by_type = "Application" if req.principal.principal_type == "ServicePrincipal" else "User"
    created = (existing or {}).get("body", {}).get("systemData") or {
        "createdBy": req.principal.oid,
        "createdByType": by_type,
        "createdAt": now,
    }
    return {
        "createdBy": created["createdBy"],
        "createdByType": created["createdByType"],
        "createdAt": created["createdAt"],
        "lastModifiedBy": req.principal.oid,
        "lastModifiedByType": by_type,
        "lastModifiedAt": now,
    }


def normalize_location(value: Any) -> str:
    """ARM normalises display names: "West Europe" -> "westeurope"."""
    return str(value).replace(" ", "").lower()


def require_properties(body: dict[str, Any]) -> dict[str, Any]:
    props = body.get("properties")
    if props is None:
        return {}
    if not isinstance(props, dict):
        raise bad_request("InvalidRequestContent", "The 'properties' of the request content must be an object.")
    return props


def id_ref(resource_id: str) -> dict[str, str]:
    return {"id": resource_id}


def etag_of(record: Record) -> str:
    return f'W/"{record["meta"].get("etag", "")}"'
