"""Route 53 writes for the DNS cutover: raw record sets in, atomic change batches out.

Builds on the AWS gateway (`migration.clouds.aws`): the same boto3 client construction
(settings, retries, timeouts, CA bundle) and the same error translation (TransientError
for throttling such as `PriorRequestNotComplete`, 5xx and lost connections; PermanentError
for `InvalidChangeBatch` and other 4xx; NotFoundError for `NoSuchHostedZone`).

Record sets travel as the plain dicts Route 53 returns (`RecordSet`), never converted: the
cutover saves them byte for byte and puts them back exactly. Verbs follow the gateway
conventions: `get_` raises when missing, `list_` returns empty, the long operation (a
change propagating to every Route 53 name server) is `begin_` + `wait_`.
"""

from __future__ import annotations

import time
from typing import Any

from migration.clouds.aws import AwsGateway, aws_errors
from migration.errors import TransientError
from migration.inventory import HostedZone
from migration.settings import AwsSettings

RecordSet = dict[str, Any]
SERVICE = "route53"


class DnsGateway(AwsGateway):
    """Route 53 reads and writes of one account. Build one per task from `AwsSettings()`."""

    def __init__(self, settings: AwsSettings) -> None:
        super().__init__(settings)

    def get_zone(self, zone: str) -> HostedZone:
        """The (public, when there are both) hosted zone named `zone`; NotFoundError when there is none."""
        return self.get_hosted_zone(zone)

    def list_raw_record_sets(self, zone_id: str, name: str) -> list[RecordSet]:
        """Every record set named `name` (all types, all set identifiers), exactly as Route 53 returned them."""
        wanted = name.rstrip(".").lower()
        found: list[RecordSet] = []
        with aws_errors(SERVICE):
            paginator = self._client(SERVICE).get_paginator("list_resource_record_sets")
            for page in paginator.paginate(HostedZoneId=zone_id, StartRecordName=wanted + "."):
                for rr in page.get("ResourceRecordSets", []):
                    if str(rr.get("Name", "")).replace("\\052", "*").rstrip(".").lower() != wanted:
                        return found  # sorted by name: the sets of `name` come first and together
                    found.append(dict(rr))
        return found

    def begin_change_record_sets(self, zone_id: str, changes: list[dict[str, Any]], comment: str) -> str:
        """Submit one change batch (applied all or nothing); returns the change id to wait for."""
        out = self._call(
            SERVICE,
            "change_resource_record_sets",
            HostedZoneId=zone_id,
            ChangeBatch={"Comment": comment[:256], "Changes": changes},
        )
        return str(out["ChangeInfo"]["Id"]).rsplit("/", 1)[-1]

    def wait_for_change(self, change_id: str, *, poll_seconds: float = 5.0, timeout_seconds: float = 600.0) -> str:
        """Poll `get_change` until the change is INSYNC on every Route 53 name server.

        Route 53 documents about 60 s; a change still PENDING at the deadline is a
        TransientError (the batch is applied: a retry waits again, it does not resubmit).
        """
        deadline = time.monotonic() + max(0.0, timeout_seconds)
        while True:
            status = str(self._call(SERVICE, "get_change", Id=change_id)["ChangeInfo"]["Status"])
            if status == "INSYNC":
                return status
            if time.monotonic() >= deadline:
                raise TransientError(
                    SERVICE, f"change {change_id} is still {status} after {timeout_seconds:.0f} s (not yet INSYNC)"
                )
            time.sleep(max(0.01, poll_seconds))

    def change_record_sets(
        self,
        zone_id: str,
        changes: list[dict[str, Any]],
        comment: str,
        *,
        poll_seconds: float = 5.0,
        timeout_seconds: float = 600.0,
    ) -> str:
        """Submit a batch and wait until it is INSYNC; returns the change id."""
        change_id = self.begin_change_record_sets(zone_id, changes, comment)
        self.wait_for_change(change_id, poll_seconds=poll_seconds, timeout_seconds=timeout_seconds)
        return change_id
