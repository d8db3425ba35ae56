"""Microsoft.ContainerRegistry/registries: names are global, like the DNS names they become.

Shapes follow the 2025-11-01 REST examples (RegistryCreate.json, RegistryCheckNameNotAvailable.json).
A taken name answers 409 AlreadyInUse "The registry DNS name <name>.azurecr.io is already in use."
as ACR does; `loginServer` is the registry's `--registry-host-map` entry (the sandbox's proxy
front, `127.0.0.1:PORT`) or `--registry-host` with `{name}` filled in (default `<name>.azurecr.io`).
`importImage` (POST) is the ACR module's (sandbox/azure/acr/importer.py).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from sandbox.azure.errors import ServiceError, bad_request
from sandbox.azure.lro import iso_now
from sandbox.azure.providers.base import (
    ArmRequest,
    ArmResponse,
    ResourceId,
    ResourceKind,
    provider_route,
    register_kind,
    require_properties,
)
from sandbox.azure.store import Record, Store

NAMESPACE = "Microsoft.ContainerRegistry"
REGISTRY_TYPE = f"{NAMESPACE}/registries"
NAME_RULE = re.compile(r"[A-Za-z0-9]{5,50}")
SKUS = ("Basic", "Standard", "Premium")
NAME_RULE_TEXT = "Registry names may contain only alpha numeric characters and must be between 5 and 50 characters."


def _taken_by_other(store: Store, name: str, own_id: str | None) -> Record | None:
    for record in store.of_type(REGISTRY_TYPE):
        if record["body"]["name"].lower() == name.lower() and record["id"].lower() != (own_id or "").lower():
            return record
    return None


def _login_server(req: ArmRequest, name: str) -> str:
    return req.config.login_server(name)


class Registries(ResourceKind):
    namespace = NAMESPACE
    types = ("registries",)
    patchable = True
    long_running_patch = True
    _defaults: ClassVar[dict[str, Any]] = {
        "adminUserEnabled": False,
        "anonymousPullEnabled": False,
        "publicNetworkAccess": "Enabled",
        "networkRuleBypassOptions": "AzureServices",
        "networkRuleBypassAllowedForTasks": False,
        "zoneRedundancy": "Disabled",
        "dataEndpointEnabled": False,
        "roleAssignmentMode": "LegacyRegistryPermissions",
    }

    def validate_name(self, name: str) -> None:
        if not NAME_RULE.fullmatch(name):
            raise bad_request("InvalidResourceName", f"Resource name '{name}' is invalid. {NAME_RULE_TEXT}")

    def build(self, req: ArmRequest, rid: ResourceId, existing: Record | None, body: dict[str, Any]) -> dict[str, Any]:
        if existing is None and _taken_by_other(req.store, rid.name, str(rid)):
            raise ServiceError(
                409,
                "AlreadyInUse",
                f"The registry DNS name {_login_server(req, rid.name)} is already in use. You can check if the name "
                "is already claimed using following API: "
                "https://docs.microsoft.com/en-us/rest/api/containerregistry/registries/checknameavailability",
            )
        sku = (body.get("sku") or {}).get("name")
        if sku not in SKUS:
            raise bad_request(
                "InvalidSku", f"The SKU '{sku}' is not valid. Valid values are: {', '.join(SKUS)}.", target="sku.name"
            )
        given = require_properties(body)
        previous = (existing or {}).get("body", {}).get("properties", {})
        props: dict[str, Any] = {**self._defaults}
        for key in self._defaults:
            if key in given and given[key] is not None:
                props[key] = given[key]
        if props["anonymousPullEnabled"] and sku == "Basic":
            raise bad_request(
                "AnonymousPullNotSupported", "Anonymous pull is only supported on the Standard and Premium SKUs."
            )
        props.update(
            {
                "loginServer": _login_server(req, rid.name),
                "creationDate": previous.get("creationDate") or iso_now(),
                "networkRuleSet": {"defaultAction": "Allow", "ipRules": []},
                "policies": {
                    "quarantinePolicy": {"status": "disabled"},
                    "trustPolicy": {"type": "Notary", "status": "disabled"},
                    "retentionPolicy": {"days": 7, "status": "disabled"},
                    "exportPolicy": {"status": "enabled"},
                    "azureADAuthenticationAsArmPolicy": {"status": "enabled"},
                },
                "encryption": {"status": "disabled"},
                "dataEndpointHostNames": [],
                "privateEndpointConnections": [],
            }
        )
        stored: dict[str, Any] = {"sku": {"name": sku, "tier": sku}, "properties": props}
        if body.get("identity"):
            stored["identity"] = body["identity"]
        return stored

    def action(self, req: ArmRequest, record: Record, name: str) -> ArmResponse:
        if name.lower() == "importimage" and req.acr is not None:
            # imported here: the ACR package imports the providers package, which imports this module
            from sandbox.azure.acr.importer import start_import

            return start_import(req, record, req.acr)
        return super().action(req, record, name)


register_kind(Registries())


@provider_route(NAMESPACE, "POST", "checkNameAvailability")
def check_name_availability(req: ArmRequest, subscription: str, captures: dict[str, str]) -> ArmResponse:
    name = str(req.json_body().get("name", ""))
    if not NAME_RULE.fullmatch(name):
        return ArmResponse(200, {"nameAvailable": False, "reason": "Invalid", "message": NAME_RULE_TEXT})
    if _taken_by_other(req.store, name, None):
        return ArmResponse(
            200,
            {"nameAvailable": False, "reason": "AlreadyExists", "message": f"The registry {name} is already in use."},
        )
    return ArmResponse(200, {"nameAvailable": True})
