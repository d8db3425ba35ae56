"""The Route 53 gateway of the cutover against the sandbox's moto, through the TLS proxy.

Also proves the sandbox's Route 53 behaves like Route 53 where the cutover depends on it
(sandbox/moto_server.py): a batch is applied all or nothing and never seen half-applied, a
DELETE must match exactly, a weighted set is deleted by name, type and set identifier.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from migration.clouds.dns import DnsGateway
from migration.errors import NotFoundError, PermanentError
from migration.settings import AwsSettings
from tasks.cutover import apply_batch
from tests.conftest import RunningSandbox
from tests.flows.test_cutover_flow import STAGING_API, ZONE, listing, records_of, route53, zone_id

pytestmark = [pytest.mark.sandbox]

SCRATCH = "cutover-scratch.mmrv.example.com"


@pytest.fixture(scope="module")
def gateway(sandbox: RunningSandbox) -> Iterator[DnsGateway]:
    previous = sandbox.activate()
    try:
        yield DnsGateway(AwsSettings())
    finally:
        RunningSandbox.restore(previous)


@pytest.fixture(scope="module")
def r53(sandbox: RunningSandbox) -> Any:
    return route53(sandbox)


def a_record(name: str, value: str, ttl: int = 60, **extra: Any) -> dict[str, Any]:
    return {"Name": name + ".", "Type": "A", "TTL": ttl, "ResourceRecords": [{"Value": value}], **extra}


def test_record_sets_come_back_exactly_as_route53_lists_them(gateway: DnsGateway, r53: Any) -> None:
    zone = gateway.get_zone(ZONE)
    assert gateway.list_raw_record_sets(zone.id, STAGING_API) == records_of(r53, STAGING_API)
    assert gateway.list_raw_record_sets(zone.id, "nothing-here." + ZONE) == []
    with pytest.raises(NotFoundError):
        gateway.get_zone("no-such-zone.example.org")


def test_a_batch_is_applied_all_or_nothing(gateway: DnsGateway, r53: Any) -> None:
    zone = gateway.get_zone(ZONE).id
    gateway.change_record_sets(zone, [{"Action": "CREATE", "ResourceRecordSet": a_record(SCRATCH, "10.0.0.1")}], "t")
    before = json.dumps(listing(r53))
    bad = [
        {"Action": "DELETE", "ResourceRecordSet": a_record(SCRATCH, "10.0.0.1")},
        {"Action": "CREATE", "ResourceRecordSet": a_record(SCRATCH, "10.0.0.2")},
        {"Action": "DELETE", "ResourceRecordSet": a_record("ghost." + ZONE, "10.9.9.9")},  # not there: the batch fails
    ]
    with pytest.raises(PermanentError, match=r"ghost\.mmrv\.example\.com.*not found.*InvalidChangeBatch"):
        gateway.change_record_sets(zone, bad, "t")
    assert json.dumps(listing(r53)) == before  # not even the first two changes happened
    with pytest.raises(PermanentError, match="do not match the current values"):
        gateway.change_record_sets(
            zone, [{"Action": "DELETE", "ResourceRecordSet": a_record(SCRATCH, "10.0.0.1", 300)}], "t"
        )
    with pytest.raises(PermanentError, match="already exists"):
        gateway.change_record_sets(
            zone, [{"Action": "CREATE", "ResourceRecordSet": a_record(SCRATCH, "10.0.0.3")}], "t"
        )
    gateway.change_record_sets(zone, [{"Action": "DELETE", "ResourceRecordSet": a_record(SCRATCH, "10.0.0.1")}], "t")
    assert gateway.list_raw_record_sets(zone, SCRATCH) == []


def test_a_weighted_set_is_deleted_by_name_type_and_set_identifier(gateway: DnsGateway, r53: Any) -> None:
    zone = gateway.get_zone(ZONE).id
    other = "cutover-other.mmrv.example.com"
    pair = [a_record(n, "10.0.0.5", SetIdentifier="aws", Weight=0) for n in (SCRATCH, other)]
    gateway.change_record_sets(zone, [{"Action": "CREATE", "ResourceRecordSet": rs} for rs in pair], "t")
    gateway.change_record_sets(zone, [{"Action": "DELETE", "ResourceRecordSet": pair[0]}], "t")
    assert gateway.list_raw_record_sets(zone, SCRATCH) == []
    assert [rs["SetIdentifier"] for rs in gateway.list_raw_record_sets(zone, other)] == ["aws"]  # untouched
    with pytest.raises(PermanentError, match="non-weighted set exists"):
        gateway.change_record_sets(zone, [{"Action": "CREATE", "ResourceRecordSet": a_record(other, "10.0.0.6")}], "t")
    gateway.change_record_sets(zone, [{"Action": "DELETE", "ResourceRecordSet": pair[1]}], "t")


def test_readers_never_see_a_batch_half_applied(gateway: DnsGateway, r53: Any) -> None:
    zone = zone_id(r53)
    one, two = a_record(SCRATCH, "10.0.1.1"), a_record(SCRATCH, "10.0.1.2")
    r53.change_resource_record_sets(
        HostedZoneId=zone, ChangeBatch={"Changes": [{"Action": "CREATE", "ResourceRecordSet": one}]}
    )
    seen: list[int] = []
    stop = threading.Event()

    def read() -> None:
        reader = route53_reader()
        while not stop.is_set():
            out = reader.list_resource_record_sets(HostedZoneId=zone, StartRecordName=SCRATCH + ".", MaxItems="5")
            seen.append(sum(1 for rs in out["ResourceRecordSets"] if rs["Name"] == SCRATCH + "."))

    def route53_reader() -> Any:
        import boto3

        return boto3.client(
            "route53",
            endpoint_url=r53.meta.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    threads = [threading.Thread(target=read, daemon=True) for _ in range(3)]
    for thread in threads:
        thread.start()
    current = one
    for _ in range(60):
        following = two if current is one else one
        batch = [
            {"Action": "DELETE", "ResourceRecordSet": current},
            {"Action": "CREATE", "ResourceRecordSet": following},
        ]
        r53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": batch})
        current = following
    stop.set()
    for thread in threads:
        thread.join(5)
    r53.change_resource_record_sets(
        HostedZoneId=zone, ChangeBatch={"Changes": [{"Action": "DELETE", "ResourceRecordSet": current}]}
    )
    assert len(seen) > 30 and set(seen) == {1}  # always exactly one record: never none, never two


def test_applying_a_batch_twice_applies_it_once(gateway: DnsGateway) -> None:
    zone = gateway.get_zone(ZONE).id
    record = a_record(SCRATCH, "10.0.2.1")
    changes = [{"Action": "CREATE", "ResourceRecordSet": record}]
    assert apply_batch.fn(zone, SCRATCH, "test", changes, [record], poll_seconds=0.01) == "applied"
    assert apply_batch.fn(zone, SCRATCH, "test", changes, [record], poll_seconds=0.01) == "already"
    assert gateway.list_raw_record_sets(zone, SCRATCH) == [record]
    gone = [{"Action": "DELETE", "ResourceRecordSet": record}]
    assert apply_batch.fn(zone, SCRATCH, "test", gone, [], poll_seconds=0.01) == "applied"


def test_a_batch_whose_answer_was_lost_is_not_applied_twice(
    gateway: DnsGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    zone = gateway.get_zone(ZONE).id
    one, two = a_record(SCRATCH, "10.0.3.1"), a_record(SCRATCH, "10.0.3.2")
    gateway.change_record_sets(zone, [{"Action": "CREATE", "ResourceRecordSet": one}], "t")
    swap = [{"Action": "DELETE", "ResourceRecordSet": one}, {"Action": "CREATE", "ResourceRecordSet": two}]
    real = DnsGateway.change_record_sets

    def lost_then_retried(self: DnsGateway, *args: Any, **kwargs: Any) -> str:
        real(self, *args, **kwargs)  # Route 53 applied the batch, the answer was lost ...
        return real(self, *args, **kwargs)  # ... and the SDK's retry is refused: the DELETE matches nothing now

    monkeypatch.setattr(DnsGateway, "change_record_sets", lost_then_retried)
    assert apply_batch.fn(zone, SCRATCH, "test", swap, [two], poll_seconds=0.01) == "already"
    assert gateway.list_raw_record_sets(zone, SCRATCH) == [two]
    with pytest.raises(PermanentError, match="do not match the current values"):  # not our result: it fails
        apply_batch.fn(zone, SCRATCH, "test", swap, [a_record(SCRATCH, "10.0.3.9")], poll_seconds=0.01)
    monkeypatch.undo()
    gateway.change_record_sets(zone, [{"Action": "DELETE", "ResourceRecordSet": two}], "t")
