"""moto's server, with Route 53 change batches applied the way Route 53 applies them.

Run as `python -m sandbox.moto_server -H 127.0.0.1 -p PORT` (the arguments of `moto.server`).

moto 5 (checked on 5.2) differs from Route 53 exactly where a DNS cutover depends on it:

* a batch is applied change by change: a failing change leaves the earlier ones applied,
  and a concurrent read can see a half-applied batch (a name with no record at all between
  a DELETE and the CREATE after it). Route 53 validates the whole batch, then applies all of
  it or nothing, at once.
* a DELETE of a weighted set removes every set with that SetIdentifier in the whole zone
  (other names too), and a DELETE whose values differ from the current ones is accepted.
  Route 53 deletes by name, type and set identifier, and only when every value matches.
* a CREATE of a set that exists adds a duplicate; Route 53 refuses it.
* simple and weighted sets of one name and type, or a CNAME beside other records of its
  name, are accepted; Route 53 refuses both.

Here `change_resource_record_sets` builds the zone's new record list from a copy, checks
it, and swaps it in with one assignment under a lock, so readers see the zone before or
after a batch, never in between. Errors are Route 53's `InvalidChangeBatch` (HTTP 400) with
its wording. IAM gets the two OIDC provider audience calls moto lacks
(`AddClientIDToOpenIDConnectProvider`, `RemoveClientIDFromOpenIDConnectProvider`).
Everything else is moto as is.
"""

from __future__ import annotations

import copy
import sys
import threading
from collections import defaultdict
from typing import Any

from moto.core.responses import EmptyResult
from moto.iam.responses import IamResponse
from moto.route53.exceptions import DnsNameInvalidForZone, InvalidActionValue, Route53ClientError
from moto.route53.models import FakeZone, RecordSet, Route53Backend
from moto.route53.utils import validate_domain_name

_LOCK = threading.Lock()


def _bad_batch(message: str) -> Route53ClientError:
    return Route53ClientError("InvalidChangeBatch", f"[{message}]")


def _name(name: str) -> str:
    return name.replace("\\052", "*").rstrip(".").lower()


def _identity(rs: RecordSet) -> tuple[str, str, str | None]:
    return (_name(rs.name), str(rs.type), rs.set_identifier)


def _described(rs: RecordSet) -> str:
    ident = f", set-identifier='{rs.set_identifier}'" if rs.set_identifier is not None else ""
    return f"name='{_name(rs.name)}.', type='{rs.type}'{ident}"


def _number(value: Any) -> Any:
    try:
        return int(value)
    except (TypeError, ValueError):
        return value


def _alias(alias: dict[str, Any] | None) -> tuple[Any, ...] | None:
    if not alias:
        return None
    evaluate = alias.get("EvaluateTargetHealth", False)
    if isinstance(evaluate, str):
        evaluate = evaluate.lower() == "true"
    return (_name(str(alias.get("DNSName", ""))), alias.get("HostedZoneId"), bool(evaluate))


def _values(rs: RecordSet) -> tuple[Any, ...]:
    return (
        _number(rs.ttl),
        sorted(str(v) for v in rs.records or []),
        _alias(rs.alias_target),
        _number(rs.weight),
        rs.region,
        rs.failover,
        rs.health_check_id,
        rs.multi_value_answer,
    )


def _record_set(raw: dict[str, Any], zone: FakeZone) -> RecordSet:
    rs = copy.deepcopy(raw)
    validate_domain_name(rs["Name"], code="InvalidChangeBatch")
    if not _name(rs["Name"]).endswith(_name(zone.name)):
        raise DnsNameInvalidForZone(name=rs["Name"], zone_name=zone.name)
    if not rs["Name"].endswith("."):
        rs["Name"] += "."
    if "ResourceRecords" in rs:
        rs["ResourceRecords"] = [v["Value"] if isinstance(v, dict) else v for v in rs["ResourceRecords"]]
    return RecordSet(rs)  # type: ignore[abstract]


def _check_zone(zone: FakeZone, sets: list[RecordSet]) -> None:
    """What Route 53 refuses in the result of a batch: mixed simple/weighted sets, a CNAME with company."""
    kinds: dict[tuple[str, str], set[bool]] = defaultdict(set)
    types: dict[str, set[str]] = defaultdict(set)
    for rs in sets:
        kinds[(_name(rs.name), str(rs.type))].add(rs.set_identifier is not None)
        types[_name(rs.name)].add(str(rs.type))
    for (name, rtype), weighted in kinds.items():
        if len(weighted) > 1:
            raise _bad_batch(
                f"RRSet with DNS name {name}., type {rtype} cannot be created as a non-weighted set exists with the "
                "same name and type."
            )
    for name, present in types.items():
        if "CNAME" in present and len(present) > 1:
            raise _bad_batch(
                f"RRSet of type CNAME with DNS name {name}. is not permitted as it conflicts with other records with "
                f"the same DNS name in zone {zone.name}"
            )


def change_resource_record_sets(self: Route53Backend, zoneid: str, change_list: list[dict[str, Any]]) -> None:
    """Route 53's semantics: validate the whole batch, then apply all of it at once, or nothing."""
    zone = self.get_hosted_zone(zoneid)
    with _LOCK:
        sets = list(zone.rrsets)
        for change in change_list:
            action = change.get("Action")
            if action not in ("CREATE", "UPSERT", "DELETE"):
                raise InvalidActionValue(str(action))
            new = _record_set(change["ResourceRecordSet"], zone)
            at = [i for i, rs in enumerate(sets) if _identity(rs) == _identity(new)]
            if action == "CREATE":
                if at:
                    raise _bad_batch(f"Tried to create resource record set [{_described(new)}] but it already exists")
                sets.append(new)
            elif action == "UPSERT":
                if at:
                    sets[at[0]] = new
                else:
                    sets.append(new)
            else:
                if not at:
                    raise _bad_batch(f"Tried to delete resource record set [{_described(new)}] but it was not found")
                if _values(sets[at[0]]) != _values(new):
                    raise _bad_batch(
                        f"Tried to delete resource record set [{_described(new)}] but the values provided do not "
                        "match the current values"
                    )
                del sets[at[0]]
        _check_zone(zone, sets)
        zone.rrsets = sets  # one assignment: readers see the zone before or after the batch
        for change in change_list:
            zone.rr_changes.append(copy.deepcopy(change))


def patch_route53() -> None:
    Route53Backend.change_resource_record_sets = change_resource_record_sets  # type: ignore[method-assign]


# --- IAM: the OIDC provider audience calls moto 5.2 lacks (it raises NotImplementedError) ----


def _add_client_id(self: IamResponse) -> EmptyResult:
    """AddClientIDToOpenIDConnectProvider: IAM ignores a client id the provider already has."""
    provider = self.backend.get_open_id_connect_provider(self._get_param("OpenIDConnectProviderArn"))
    client_id = self._get_param("ClientID")
    if client_id not in provider.client_id_list:
        provider.client_id_list.append(client_id)
    return EmptyResult()


def _remove_client_id(self: IamResponse) -> EmptyResult:
    """RemoveClientIDFromOpenIDConnectProvider: removing one that is not there succeeds."""
    provider = self.backend.get_open_id_connect_provider(self._get_param("OpenIDConnectProviderArn"))
    client_id = self._get_param("ClientID")
    provider.client_id_list = [c for c in provider.client_id_list if c != client_id]
    return EmptyResult()


def patch_iam() -> None:
    IamResponse.add_client_id_to_open_id_connect_provider = _add_client_id  # type: ignore[attr-defined]
    IamResponse.remove_client_id_from_open_id_connect_provider = _remove_client_id  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> None:
    patch_route53()
    patch_iam()
    from moto.server import main as moto_main

    moto_main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
