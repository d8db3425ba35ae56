"""Microsoft.KeyVault/vaults: the management side of Key Vault (the data plane is keyvault.py).

Vault names are global. Deleting a vault soft-deletes it (soft delete cannot be switched off):
it leaves the resource list, shows under deletedVaults, keeps its secrets, blocks its name
until purged, and comes back with `createMode: recover`. Purge protection, once on, stays on
and forbids purging. `properties.vaultUri` points back at this emulator:
`{public}/kv/{vault-name}/` (see keyvault.py for why the path, not the host, names the vault).
"""

from __future__ import annotations

import copy
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from sandbox.azure.errors import ServiceError, bad_request, conflict, not_found
from sandbox.azure.lro import FinishContext, finisher
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

NAMESPACE = "Microsoft.KeyVault"
VAULT_TYPE = f"{NAMESPACE}/vaults"
DELETED_VAULT_TYPE = f"{NAMESPACE}/deletedVaults"
VAULT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]{1,22}[A-Za-z0-9]")
# from this API version on, a vault *created* without the flag uses Azure RBAC (learn.microsoft.com:
# key-vault/general/access-control-default); updates keep whatever model the vault has
RBAC_BY_DEFAULT_SINCE = "2026-02-01"


def vault_uri(public_url: str, name: str) -> str:
    return f"{public_url}/kv/{name}/"


def find_vault(store: Store, name: str) -> Record | None:
    wanted = name.lower()
    for record in store.of_type(VAULT_TYPE):
        if record["body"]["name"].lower() == wanted:
            return record
    return None


def _name_problem(name: str) -> str | None:
    if VAULT_NAME.fullmatch(name) and "--" not in name:
        return None
    return (
        f"The vault name '{name}' is invalid. A vault's name must be between 3-24 alphanumeric characters. The name "
        "must begin with a letter, end with a letter or digit, and not contain consecutive hyphens."
    )


def _already_exists(name: str) -> str:
    return (
        f"The vault name '{name}' is already in use. Vault names are globally unique so it is possible that the name "
        "is already taken. If you are sure that the vault name was not taken then it is possible that a vault with "
        "the same name was recently deleted but not purged after being placed in a recoverable state."
    )


class Vaults(ResourceKind):
    namespace = NAMESPACE
    types = ("vaults",)
    long_running_delete = False
    patchable = True
    creating_state = "RegisteringDns"
    updating_state = "RegisteringDns"

    def validate_name(self, name: str) -> None:
        problem = _name_problem(name)
        if problem:
            raise bad_request("VaultNameNotValid", problem)

    def build(self, req: ArmRequest, rid: ResourceId, existing: Record | None, body: dict[str, Any]) -> dict[str, Any]:
        given = require_properties(body)
        previous = (existing or {}).get("body", {}).get("properties", {})
        recovering = self._check_name_free(req, rid, given) if existing is None else False
        if not given.get("tenantId"):
            raise bad_request("BadRequest", "The parameter 'properties.tenantId' is required.")
        sku = given.get("sku") or {}
        if sku.get("name", "").lower() not in ("standard", "premium"):
            raise bad_request("BadRequest", "The parameter 'properties.sku' must name 'standard' or 'premium'.")
        if given.get("enableSoftDelete") is False:
            raise bad_request(
                "BadRequest",
                "The property \"enableSoftDelete\" cannot be set to false. Enabling the 'soft delete' functionality "
                "is an irreversible action.",
            )
        purge_protection = given.get("enablePurgeProtection", previous.get("enablePurgeProtection"))
        if previous.get("enablePurgeProtection") and purge_protection is False:
            raise bad_request(
                "BadRequest",
                'The property "enablePurgeProtection" cannot be set to false. Enabling the purge protection for a '
                "vault is an irreversible action.",
            )
        retention = int(given.get("softDeleteRetentionInDays") or previous.get("softDeleteRetentionInDays") or 90)
        if not 7 <= retention <= 90:
            raise bad_request("BadRequest", "softDeleteRetentionInDays must be between 7 and 90.")
        if previous and retention != previous.get("softDeleteRetentionInDays"):
            raise bad_request("BadRequest", "softDeleteRetentionInDays cannot be changed once the vault exists.")
        if given.get("enableRbacAuthorization") is not None:
            rbac = bool(given["enableRbacAuthorization"])
        elif previous:
            rbac = bool(previous.get("enableRbacAuthorization"))  # an update never flips the model
        else:
            rbac = req.api_version >= RBAC_BY_DEFAULT_SINCE
        props: dict[str, Any] = {
            "tenantId": given["tenantId"],
            "sku": {"family": sku.get("family", "A"), "name": sku["name"].lower()},
            "accessPolicies": copy.deepcopy(given.get("accessPolicies") or []),
            "enabledForDeployment": bool(given.get("enabledForDeployment", False)),
            "enabledForDiskEncryption": bool(given.get("enabledForDiskEncryption", False)),
            "enabledForTemplateDeployment": bool(given.get("enabledForTemplateDeployment", False)),
            "enableSoftDelete": True,
            "softDeleteRetentionInDays": retention,
            "enableRbacAuthorization": rbac,
            "publicNetworkAccess": given.get("publicNetworkAccess") or "Enabled",
        }
        if purge_protection:
            props["enablePurgeProtection"] = True
        if given.get("networkAcls") is not None:
            props["networkAcls"] = copy.deepcopy(given["networkAcls"])
        if recovering:
            # only now, with the body valid: a refused recovery must leave the deleted vault alone
            del req.store.deleted_vaults[rid.name.lower()]
            req.store.touch()
        return {"properties": props}

    @staticmethod
    def _check_name_free(req: ArmRequest, rid: ResourceId, given: dict[str, Any]) -> bool:
        """Refuse a taken name; True when this PUT recovers a soft-deleted vault of that name."""
        other = find_vault(req.store, rid.name)
        if other is not None:
            raise conflict("VaultAlreadyExists", _already_exists(rid.name))
        deleted = req.store.deleted_vaults.get(rid.name.lower())
        if deleted is None:
            if given.get("createMode") == "recover":
                raise not_found("ResourceNotFound", f"No deleted vault named '{rid.name}' to recover.")
            return False
        if given.get("createMode") != "recover":
            raise conflict(
                "ConflictError",
                "A vault with the same name already exists in deleted state. You need to either recover or purge "
                "existing key vault. Follow this link https://go.microsoft.com/fwlink/?linkid=2149745 for more "
                "information on soft delete.",
            )
        if deleted["subscription"].lower() != rid.subscription.lower():
            raise conflict("ConflictError", f"The deleted vault '{rid.name}' belongs to another subscription.")
        # recovery: the vault's stored properties come back (the data never left vault_data)
        for key, value in deleted["body"]["properties"].items():
            given.setdefault(key, copy.deepcopy(value))
        return True

    def render(self, req: ArmRequest, record: Record) -> dict[str, Any]:
        body = copy.deepcopy(record["body"])
        body["properties"]["vaultUri"] = vault_uri(req.public_url, body["name"])
        return body

    def on_deleted(self, store: Store, record: Record) -> None:
        body = record["body"]
        now = datetime.now(UTC)
        retention = body["properties"]["softDeleteRetentionInDays"]
        store.deleted_vaults[body["name"].lower()] = {
            "subscription": record["id"].split("/")[2],
            "body": copy.deepcopy(body),
            "deletionDate": now.isoformat().replace("+00:00", "Z"),
            "scheduledPurgeDate": (now + timedelta(days=retention)).isoformat().replace("+00:00", "Z"),
        }
        store.touch()


register_kind(Vaults())


def _deleted_body(entry: Record) -> dict[str, Any]:
    vault = entry["body"]
    location = vault["location"]
    return {
        "id": f"/subscriptions/{entry['subscription']}/providers/{NAMESPACE}/locations/{location}/deletedVaults/"
        f"{vault['name']}",
        "name": vault["name"],
        "type": DELETED_VAULT_TYPE,
        "properties": {
            "vaultId": vault["id"],
            "location": location,
            "deletionDate": entry["deletionDate"],
            "scheduledPurgeDate": entry["scheduledPurgeDate"],
            "tags": copy.deepcopy(vault.get("tags") or {}),
            "purgeProtectionEnabled": bool(vault["properties"].get("enablePurgeProtection")),
        },
    }


def _require_deleted(req: ArmRequest, subscription: str, location: str, name: str) -> Record:
    entry = req.store.deleted_vaults.get(name.lower())
    if (
        entry is None
        or entry["subscription"].lower() != subscription.lower()
        or entry["body"]["location"] != location.lower()
    ):
        raise not_found("ResourceNotFound", f"The deleted vault '{name}' was not found in location '{location}'.")
    return entry


@provider_route(NAMESPACE, "GET", "deletedVaults")
def list_deleted(req: ArmRequest, subscription: str, captures: dict[str, str]) -> ArmResponse:
    entries = [e for e in req.store.deleted_vaults.values() if e["subscription"].lower() == subscription.lower()]
    return ArmResponse(200, {"value": [_deleted_body(e) for e in entries]})


@provider_route(NAMESPACE, "GET", "locations/{location}/deletedVaults/{name}")
def get_deleted(req: ArmRequest, subscription: str, captures: dict[str, str]) -> ArmResponse:
    return ArmResponse(200, _deleted_body(_require_deleted(req, subscription, captures["location"], captures["name"])))


@provider_route(NAMESPACE, "POST", "locations/{location}/deletedVaults/{name}/purge")
def purge_deleted(req: ArmRequest, subscription: str, captures: dict[str, str]) -> ArmResponse:
    entry = _require_deleted(req, subscription, captures["location"], captures["name"])
    if entry["body"]["properties"].get("enablePurgeProtection"):
        raise ServiceError(
            409,
            "ConflictError",
            f"Vault '{captures['name']}' has purge protection enabled and cannot be purged before "
            f"{entry['scheduledPurgeDate']}.",
        )
    op = req.lro.start(
        subscription=subscription,
        namespace=NAMESPACE,
        location=entry["body"]["location"],
        resource_type=DELETED_VAULT_TYPE,
        resource_id=_deleted_body(entry)["id"],
        finisher_name="vault_purged",
        payload={"name": entry["body"]["name"]},
    )
    return ArmResponse(202, None, req.lro.location_headers(op, req.public_url, req.api_version))


@finisher("vault_purged")
def _purged(ctx: FinishContext, op: Record, succeeded: bool) -> None:
    if not succeeded:
        return
    name = op["payload"]["name"].lower()
    ctx.store.deleted_vaults.pop(name, None)
    ctx.store.vault_data.pop(name, None)
    ctx.store.touch()


@provider_route(NAMESPACE, "POST", "checkNameAvailability")
def check_name_availability(req: ArmRequest, subscription: str, captures: dict[str, str]) -> ArmResponse:
    name = str(req.json_body().get("name", ""))
    problem = _name_problem(name)
    if problem:
        return ArmResponse(200, {"nameAvailable": False, "reason": "AccountNameInvalid", "message": problem})
    if find_vault(req.store, name) or name.lower() in req.store.deleted_vaults:
        return ArmResponse(200, {"nameAvailable": False, "reason": "AlreadyExists", "message": _already_exists(name)})
    return ArmResponse(200, {"nameAvailable": True})
