"""The progressive DNS cutover on Route 53, computed before anything changes. Pure: no SDK, no Prefect, no network.

Route 53 stays authoritative. For one public name, from

* the record sets of the name exactly as `ListResourceRecordSets` returned them (saved
  before the first change: the rollback puts back these very dicts, and the audit shows them),
* the Azure target: an IPv4 / IPv6 address (paired with an A / AAAA record, alias or not) or
  a host name (paired with a CNAME record),
* the spec's cutover policy (TTL, weight steps, bake time, error budget),

`plan_name` computes the states the name goes through and one atomic change batch per step:

    saved          the simple record as it is today (an alias A to the ALB, a CNAME with TTL 300 ...)
    lowered        the same record with the policy's TTL, when its own TTL is higher; then the old
                   TTL is waited out, so every resolver holds the short TTL before weights move
    weight-<w>     the weighted pair: `aws` (the saved target, weight 100-w) and `azure` (the Azure
                   target, weight w), both with the lowered TTL (an alias keeps the target's TTL),
                   one state per weight step; each is held for the bake time while the gates run

Each batch DELETEs the sets of the current state that change and CREATEs those of the next
state. Route 53 validates a batch as a whole and applies all of it or nothing, and a DELETE
must match the current values exactly, so every batch is also a compare-and-swap: when
someone changed the records in between, the batch fails and nothing changes (an UPSERT would
overwrite their change). At 100 % the pair stays, AWS at weight 0, warm for the rollback
window. `restore_changes(saved, current)` is the batch that puts the saved sets back
exactly, from whatever state Route 53 shows; `NamePlan.position(current)` tells how far a
cutover got, so a rerun continues from what Route 53 shows.

Waits (the old TTL, the bake time, the smoke interval) are real seconds in the cloud and are
multiplied by a time scale (e.g. 0.01) in the rehearsal: `scaled`.

The gates are evaluated here too (`evaluate_smoke`, `evaluate_error_rate`,
`parse_query_value`), from what the tasks observed; the tasks only do the I/O.
"""

from __future__ import annotations

import copy
import hashlib
import ipaddress
import json
import math
import re
import string
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from migration.errors import PermanentError
from migration.spec import Cutover, SmokeCheck

RecordSet = dict[str, Any]  # one ResourceRecordSet exactly as Route 53 returned it (JSON-able)

AWS_SET_ID = "aws"
AZURE_SET_ID = "azure"
OUR_SET_IDS = (AWS_SET_ID, AZURE_SET_ID)
# Route 53 answers an alias to an ELB with the load balancer's fixed TTL: it cannot be lowered
ALIAS_TTL_SECONDS = 60
LOWER_TTL = "lower-ttl"
# keys that make a record set part of a routing policy (not a simple record)
ROUTING_KEYS = (
    "SetIdentifier",
    "Weight",
    "Region",
    "Failover",
    "GeoLocation",
    "GeoProximityLocation",
    "CidrRoutingConfig",
    "MultiValueAnswer",
)
ADDRESS_TYPES = ("A", "AAAA", "CNAME")


class CutoverError(PermanentError):
    """The cutover cannot (or must not) go on: the message says why and what to do."""

    def __init__(self, message: str) -> None:
        super().__init__("cutover", message)


class GateFailed(CutoverError):
    """A gate failed during a bake; the saved records were put back before this is raised."""


# --- record sets ------------------------------------------------------------------------


def normalize_name(name: str) -> str:
    """A DNS name as compared: lower case, no trailing dot, Route 53's `\\052` escape as `*`."""
    return name.replace("\\052", "*").rstrip(".").lower()


def _values(rs: RecordSet) -> list[str]:
    return [str(v.get("Value", "")) for v in rs.get("ResourceRecords") or []]


def canonical(rs: RecordSet) -> dict[str, Any]:
    """What makes two record sets the same set to Route 53, whatever the spelling.

    Names and host names compare without case and trailing dot (Route 53 adds one), values
    as a set. Only for comparing: what is sent and restored is always the record set as saved.
    """
    out: dict[str, Any] = {"Name": normalize_name(str(rs.get("Name", ""))), "Type": str(rs.get("Type", "")).upper()}
    for key in (*ROUTING_KEYS, "TTL", "HealthCheckId", "TrafficPolicyInstanceId"):
        if rs.get(key) is not None:
            out[key] = rs[key]
    if rs.get("ResourceRecords"):
        values = _values(rs)
        if out["Type"] in ("CNAME", "NS", "PTR"):
            values = [normalize_name(v) for v in values]
        out["ResourceRecords"] = sorted(values)
    alias = rs.get("AliasTarget")
    if alias:
        out["AliasTarget"] = {
            "DNSName": normalize_name(str(alias.get("DNSName", ""))),
            "HostedZoneId": alias.get("HostedZoneId"),
            "EvaluateTargetHealth": bool(alias.get("EvaluateTargetHealth", False)),
        }
    return out


def _key(rs: RecordSet) -> str:
    return json.dumps(canonical(rs), sort_keys=True)


def same_record_sets(a: list[RecordSet] | tuple[RecordSet, ...], b: list[RecordSet] | tuple[RecordSet, ...]) -> bool:
    """True when Route 53 would answer both lists the same way (order and spelling aside)."""
    return sorted(map(_key, a)) == sorted(map(_key, b))


def describe(rs: RecordSet) -> str:
    """One record set for a person: `A alias -> alb.example.com (set aws, weight 90)`."""
    name = normalize_name(str(rs.get("Name", "")))
    alias = rs.get("AliasTarget")
    if alias:
        target = f"alias -> {normalize_name(str(alias.get('DNSName', '')))}"
    else:
        target = ", ".join(_values(rs)) or "(no value)"
    extras = []
    if rs.get("TTL") is not None:
        extras.append(f"TTL {rs['TTL']}")
    if rs.get("SetIdentifier") is not None:
        extras.append(f"set {rs['SetIdentifier']}")
    if rs.get("Weight") is not None:
        extras.append(f"weight {rs['Weight']}")
    for key in ("Region", "Failover", "GeoLocation", "MultiValueAnswer"):
        if rs.get(key) is not None:
            extras.append(f"{key} {rs[key]}")
    suffix = f" ({', '.join(extras)})" if extras else ""
    return f"{name} {rs.get('Type')} {target}{suffix}"


def target_type(target: str) -> str:
    """The record type an Azure target pairs with: A for IPv4, AAAA for IPv6, CNAME for a host name."""
    try:
        address = ipaddress.ip_address(target)
    except ValueError:
        pass
    else:
        return "A" if address.version == 4 else "AAAA"
    host = target.rstrip(".")
    label = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
    if len(host) > 253 or len(host.split(".")) < 2 or not all(label.fullmatch(x) for x in host.split(".")):
        raise CutoverError(
            f"the Azure target {target!r} is neither an IP address nor a host name: give the AKS load balancer's "
            "IP address (for an A record) or its DNS name (for a CNAME)"
        )
    return "CNAME"


def target_of_url(url: str) -> str:
    """The DNS target behind an external URL: its host (an IP for A records, a name for CNAMEs), no port."""
    host = url.split("://", 1)[-1].split("/", 1)[0]
    if host.startswith("["):
        return host[1 : host.index("]")]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def scaled(seconds: float, time_scale: float) -> float:
    """A wait as it happens: the cloud's seconds times the time scale (1 in the cloud, e.g. 0.01 in a rehearsal)."""
    if not time_scale > 0 or math.isinf(time_scale):
        raise CutoverError(f"time scale {time_scale} must be a positive number (1 in the cloud)")
    return max(0.0, seconds) * time_scale


# --- the plan ---------------------------------------------------------------------------


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class Change(_Frozen):
    action: Literal["CREATE", "DELETE", "UPSERT"]
    record_set: RecordSet

    def to_api(self) -> dict[str, Any]:
        """The `Changes` item of a ChangeResourceRecordSets call."""
        return {"Action": self.action, "ResourceRecordSet": copy.deepcopy(self.record_set)}

    def describe(self) -> str:
        return f"{self.action} {describe(self.record_set)}"


class Step(_Frozen):
    """One atomic change batch and what follows it: a wait (the old TTL) or a bake with gates."""

    phase: str  # "lower-ttl" or "weight-<w>"
    azure_weight: int | None = None  # None for lower-ttl
    changes: tuple[Change, ...]
    wait_seconds: float  # unscaled
    wait_reason: str
    before: tuple[RecordSet, ...]
    after: tuple[RecordSet, ...]

    @property
    def bakes(self) -> bool:
        return self.azure_weight is not None

    def api_changes(self) -> list[dict[str, Any]]:
        return [c.to_api() for c in self.changes]


class NamePlan(_Frozen):
    """Every step of one name's cutover, from the saved record sets to Azure at 100 %."""

    name: str
    record_type: str
    azure_target: str
    saved: tuple[RecordSet, ...]
    ttl: int | None  # the lowered TTL of the weighted pair (None: alias on both sides is impossible)
    steps: tuple[Step, ...]
    notes: tuple[str, ...] = ()

    def states(self) -> list[tuple[RecordSet, ...]]:
        """What Route 53 shows before the first step and after each step."""
        return [self.saved, *(s.after for s in self.steps)]

    def position(self, current: list[RecordSet]) -> int:
        """How many steps Route 53 shows as done (0: the saved state; len(steps): complete).

        Raises CutoverError when Route 53 shows something this cutover would never produce:
        a change behind the tool's back, or a different Azure target than the run that
        started it.
        """
        states = self.states()
        for index in range(len(states) - 1, -1, -1):
            if same_record_sets(states[index], current):
                return index
        shown = "; ".join(describe(rs) for rs in current) or "no record"
        raise CutoverError(
            f"{self.name}: Route 53 shows {shown}, which is neither the saved original nor a state of a cutover "
            f"to {self.azure_target}: nothing was changed. If the records were changed on purpose, restore them "
            "with --rollback (or by hand) and run the cutover again; if the Azure target changed, roll back first"
        )

    def weights_at(self, position: int) -> tuple[int, int] | None:
        """(aws, azure) weights after `position` steps, None while the record is still simple."""
        weights = [s.azure_weight for s in self.steps[:position] if s.azure_weight is not None]
        return (100 - weights[-1], weights[-1]) if weights else None

    @property
    def complete(self) -> tuple[RecordSet, ...]:
        return self.steps[-1].after


def _simple(rs: RecordSet) -> bool:
    return not any(rs.get(k) is not None for k in ROUTING_KEYS)


def plan_name(name: str, saved: list[RecordSet], azure_target: str, policy: Cutover) -> NamePlan:
    """The steps of one name's cutover. Raises CutoverError when the records cannot be shifted safely."""
    wanted = normalize_name(name)
    saved = [copy.deepcopy(rs) for rs in saved]
    if not saved:
        raise CutoverError(f"{wanted}: Route 53 has no record of this name: there is nothing to shift to Azure")
    strangers = [rs for rs in saved if normalize_name(str(rs.get("Name", ""))) != wanted]
    if strangers:
        raise CutoverError(f"{wanted}: the saved record sets include another name: {describe(strangers[0])}")
    ours = [rs for rs in saved if rs.get("SetIdentifier") in OUR_SET_IDS]
    if ours:
        raise CutoverError(
            f"{wanted}: the record sets to save already hold the cutover's weighted pair ({describe(ours[0])}): "
            "the original is the saved copy of the run that started, not this state"
        )
    routed = [rs for rs in saved if rs.get("Type") in ADDRESS_TYPES and not _simple(rs)]
    if routed:
        raise CutoverError(
            f"{wanted}: {describe(routed[0])} belongs to a routing policy the tool did not create; the cutover "
            "shifts a simple record only and does not change routing it does not own"
        )
    kind = target_type(azure_target)
    addresses = [rs for rs in saved if rs.get("Type") in ADDRESS_TYPES]
    paired = [rs for rs in addresses if rs.get("Type") == kind]
    if not paired:
        have = "; ".join(describe(rs) for rs in addresses) or "no A, AAAA or CNAME record"
        wants = {"A": "an IPv4 address (an A record)", "AAAA": "an IPv6 address (an AAAA record)"}.get(
            kind, "a host name (a CNAME record)"
        )
        types = {rs["Type"] for rs in addresses}
        if "CNAME" in types:
            hint = "give the Azure side's host name instead"
        elif kind == "CNAME":
            hint = "give the Azure side's IP address instead"
        else:
            hint = f"give an Azure target for the {' and '.join(sorted(types))} record instead"
        raise CutoverError(
            f"{wanted}: the Azure target {azure_target!r} is {wants}, but Route 53 has {have}; the records of a "
            f"weighted set must all have one type, so they cannot be paired: {hint}"
        )
    (shifted,) = paired  # a simple record set is unique per name and type
    bypass = [rs for rs in addresses if rs is not shifted]
    if bypass:
        raise CutoverError(
            f"{wanted}: {describe(bypass[0])} would keep answering from AWS while the {kind} record shifts to "
            f"Azure; shift it too (an Azure target of that type) or remove it first"
        )
    others = tuple(rs for rs in saved if rs is not shifted)

    old_ttl = shifted.get("TTL")
    ttl = policy.ttl_seconds if old_ttl is None else min(int(old_ttl), policy.ttl_seconds)
    notes = []
    if shifted.get("AliasTarget"):
        notes.append(
            f"the AWS side is an alias: its TTL is the target's ({ALIAS_TTL_SECONDS} s for a load balancer) "
            "and cannot be lowered"
        )
    steps: list[Step] = []
    current: tuple[RecordSet, ...] = tuple(saved)
    simple = shifted
    if old_ttl is not None and int(old_ttl) > ttl:
        simple = {**shifted, "TTL": ttl}
        after = (*others, simple)
        steps.append(
            Step(
                phase=LOWER_TTL,
                changes=(Change(action="DELETE", record_set=shifted), Change(action="CREATE", record_set=simple)),
                wait_seconds=float(old_ttl),
                wait_reason=f"the old TTL ({old_ttl} s): resolvers drop the answers they cached before the change",
                before=current,
                after=after,
            )
        )
        current = after

    previous: tuple[RecordSet, RecordSet] | None = None
    for weight in policy.weight_steps:
        aws = _weighted(simple, AWS_SET_ID, 100 - weight)
        azure = _azure_record(shifted, kind, azure_target, ttl, weight)
        changes: tuple[Change, ...]
        if previous is None:
            changes = (
                Change(action="DELETE", record_set=simple),
                Change(action="CREATE", record_set=aws),
                Change(action="CREATE", record_set=azure),
            )
        else:
            changes = (
                Change(action="DELETE", record_set=previous[0]),
                Change(action="CREATE", record_set=aws),
                Change(action="DELETE", record_set=previous[1]),
                Change(action="CREATE", record_set=azure),
            )
        after = (*others, aws, azure)
        steps.append(
            Step(
                phase=f"weight-{weight}",
                azure_weight=weight,
                changes=changes,
                wait_seconds=float(policy.bake_seconds),
                wait_reason=f"the bake time ({policy.bake_seconds} s) with the gates running",
                before=current,
                after=after,
            )
        )
        current = after
        previous = (aws, azure)
    return NamePlan(
        name=wanted,
        record_type=kind,
        azure_target=azure_target,
        saved=tuple(saved),
        ttl=ttl,
        steps=tuple(steps),
        notes=tuple(notes),
    )


def _weighted(simple: RecordSet, set_id: str, weight: int) -> RecordSet:
    """The simple record as a member of the weighted set (same target, same TTL or alias)."""
    out: RecordSet = {"Name": simple["Name"], "Type": simple["Type"], "SetIdentifier": set_id, "Weight": weight}
    for key, value in simple.items():
        if key not in out:
            out[key] = copy.deepcopy(value)
    return out


def _azure_record(shifted: RecordSet, kind: str, target: str, ttl: int, weight: int) -> RecordSet:
    return {
        "Name": shifted["Name"],
        "Type": kind,
        "SetIdentifier": AZURE_SET_ID,
        "Weight": weight,
        "TTL": ttl,
        "ResourceRecords": [{"Value": target}],
    }


def restore_changes(saved: list[RecordSet] | tuple[RecordSet, ...], current: list[RecordSet]) -> tuple[Change, ...]:
    """The one batch that turns what Route 53 shows (`current`) back into the saved sets, exactly.

    DELETEs name the current sets as Route 53 shows them (a DELETE must match exactly);
    CREATEs are the saved sets byte for byte. Empty when nothing differs.
    """
    saved_keys = {_key(rs) for rs in saved}
    current_keys = {_key(rs) for rs in current}
    deletes = [Change(action="DELETE", record_set=rs) for rs in current if _key(rs) not in saved_keys]
    creates = [Change(action="CREATE", record_set=copy.deepcopy(rs)) for rs in saved if _key(rs) not in current_keys]
    return (*deletes, *creates)


def has_our_weighted_sets(current: list[RecordSet]) -> bool:
    return any(rs.get("SetIdentifier") in OUR_SET_IDS and rs.get("Weight") is not None for rs in current)


def phases(policy: Cutover) -> list[str]:
    """Every phase a cutover can go through, in order (a name skips lower-ttl when its TTL is low already)."""
    return [LOWER_TTL, *(f"weight-{w}" for w in policy.weight_steps)]


# --- where the saved original is kept ---------------------------------------------------

SavedStatus = Literal["saved", "in-progress", "complete", "restored", "rolled-back"]


class SavedRecords(BaseModel):
    """What a later run (a resume, a `--rollback`) needs: the original record sets and how far the cutover got."""

    spec: str
    environment: str
    component: str
    name: str
    zone_id: str
    record_sets: list[RecordSet]
    saved_at: str
    azure_target: str | None = None
    status: SavedStatus = "saved"
    azure_weight: int = 0  # when the status last changed (Route 53 shows where the cutover is)
    updated_at: str | None = None


def variable_name(spec: str, env: str, name: str) -> str:
    """The Prefect Variable holding a name's saved records (lower-case letters, digits and '_' only)."""
    slug = re.sub(r"[^a-z0-9]+", "_", normalize_name(name)).strip("_")[:120]
    digest = hashlib.sha256(f"{spec}/{env}/{normalize_name(name)}".encode()).hexdigest()[:8]
    clean = "_".join(re.sub(r"[^a-z0-9]+", "_", x.lower()).strip("_") for x in (spec, env))
    return f"mmrv_cutover_{clean}_{slug}_{digest}"


# --- gates --------------------------------------------------------------------------------


class GateResult(_Frozen):
    gate: str  # "smoke:<check>" or "error-rate"
    ok: bool
    detail: str
    azure_weight: int
    elapsed_seconds: float = 0.0  # since the step began
    value: float | None = None  # the error rate, for the error-rate gate


class BakeResult(BaseModel):
    """What one bake saw: how many gate checks ran, the failures (the bake stops at the first), the worst error rate."""

    azure_weight: int
    checks: int = 0
    failures: list[GateResult] = Field(default_factory=list)
    max_error_rate: float | None = None
    waited_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures


def evaluate_smoke(
    check: SmokeCheck,
    url: str,
    azure_weight: int,
    *,
    status: int | None,
    body: str,
    latency_ms: float,
    error: str | None = None,
    elapsed_seconds: float = 0.0,
    expected_digest: str | None = None,
) -> GateResult:
    """One smoke check's outcome from what the request saw: status, body content, latency budget.

    `expected_digest`: the image digest just shipped, which a check with `expect_digest`
    must find in the body (None when it is not known: the check's digest part is skipped).
    """
    gate = f"smoke:{check.name}"

    def result(ok: bool, detail: str) -> GateResult:
        return GateResult(
            gate=gate, ok=ok, detail=detail, azure_weight=azure_weight, elapsed_seconds=round(elapsed_seconds, 3)
        )

    where = f"GET {url}"
    if error is not None or status is None:
        return result(False, f"{where}: no answer ({error or 'no response'})")
    if status != check.expect_status:
        return result(False, f"{where}: HTTP {status}, expected {check.expect_status}")
    if check.expect_body_contains is not None and check.expect_body_contains not in body:
        return result(False, f"{where}: the body does not contain {check.expect_body_contains!r}")
    if check.expect_digest and expected_digest and expected_digest not in body:
        return result(False, f"{where}: the body does not name the digest just shipped ({expected_digest})")
    if latency_ms > check.max_latency_ms:
        return result(False, f"{where}: answered in {latency_ms:.0f} ms, over the {check.max_latency_ms} ms budget")
    return result(True, f"{where}: HTTP {status} in {latency_ms:.0f} ms")


def render_query(template: str, *, name: str, env: str, component: str, window_seconds: float) -> str:
    """The spec's query with $name, $env, $component and $window (a Prometheus duration, e.g. `42s`) filled in."""
    window = f"{max(1, math.ceil(window_seconds))}s"
    return string.Template(template).safe_substitute(name=name, env=env, component=component, window=window)


def parse_query_value(payload: Any) -> float | None:
    """The value of a Prometheus `/api/v1/query` answer: the largest sample of a vector, or a scalar.

    None when there is no data (an empty vector, NaN: nothing was requested in the window).
    Raises CutoverError for an error answer or a shape that is not the Prometheus HTTP API's.
    """
    if not isinstance(payload, dict):
        raise CutoverError(f"the metrics endpoint answered {type(payload).__name__}, not a Prometheus API object")
    if payload.get("status") != "success":
        raise CutoverError(
            f"the metrics query failed: {payload.get('errorType', 'error')}: {payload.get('error', 'no reason given')}"
        )
    data = payload.get("data") or {}
    kind = data.get("resultType")
    result = data.get("result")
    samples: list[Any]
    if kind == "vector" and isinstance(result, list):
        samples = [item.get("value", [None, None])[1] for item in result if isinstance(item, dict)]
    elif kind == "scalar" and isinstance(result, list) and len(result) == 2:
        samples = [result[1]]
    else:
        raise CutoverError(f"the metrics query answered resultType {kind!r}; the gate needs a vector or a scalar")
    values = []
    for sample in samples:
        try:
            value = float(sample)
        except (TypeError, ValueError):
            raise CutoverError(f"the metrics query answered a sample that is not a number: {sample!r}") from None
        if not math.isnan(value):
            values.append(value)
    return max(values) if values else None


def evaluate_error_rate(
    value: float | None, budget: float, azure_weight: int, query: str, elapsed_seconds: float = 0.0
) -> GateResult:
    if value is None:
        detail = f"no data yet (no request in the window) for {query}"
        ok = True
    elif value <= budget:
        detail, ok = f"error rate {value:.4f} within the budget {budget}", True
    else:
        detail, ok = f"error rate {value:.4f} over the budget {budget}", False
    return GateResult(
        gate="error-rate",
        ok=ok,
        detail=detail,
        azure_weight=azure_weight,
        elapsed_seconds=round(elapsed_seconds, 3),
        value=value,
    )


# --- the report -----------------------------------------------------------------------------


class StepReport(BaseModel):
    phase: str
    azure_weight: int | None = None
    changed: list[str] = Field(default_factory=list)  # names whose records this run changed
    already: list[str] = Field(default_factory=list)  # names Route 53 showed past this step already
    waited_seconds: float = 0.0
    checks: int = 0  # gate evaluations that ran
    failures: list[GateResult] = Field(default_factory=list)
    max_error_rate: float | None = None
    status: Literal["done", "failed", "skipped"] = "done"


class CutoverReport(BaseModel):
    spec: str
    environment: str
    component: str
    mode: Literal["cutover", "rollback"]
    azure_target: str | None = None
    azure_url: str | None = None
    time_scale: float = 1.0
    names: list[str] = Field(default_factory=list)
    steps: list[StepReport] = Field(default_factory=list)
    outcome: Literal[
        "complete", "already-complete", "restored", "rolled-back", "nothing-to-roll-back", "running", "stopped"
    ] = "running"
    message: str = ""
    saved: dict[str, list[RecordSet]] = Field(default_factory=dict)
    final: dict[str, list[RecordSet]] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)
    rollback_until: str | None = None


def render_report(report: CutoverReport) -> str:
    title = "DNS cutover" if report.mode == "cutover" else "DNS rollback"
    lines = [
        f"# {title}: {report.component} [{report.environment}] — {report.outcome}",
        "",
        report.message or "",
        "",
        f"- names: {', '.join(f'`{n}`' for n in report.names) or 'none'}",
    ]
    if report.azure_target:
        lines.append(f"- Azure target: `{report.azure_target}` (smoke checks against `{report.azure_url}`)")
    if report.time_scale != 1.0:
        lines.append(f"- time scale: {report.time_scale} (waits compressed)")
    if report.rollback_until:
        lines.append(f"- AWS kept warm at weight 0 for rollback until {report.rollback_until}")
    lines += [f"- note: {n}" for n in report.notes]
    if report.steps:
        lines += [
            "",
            "## Steps",
            "",
            "| step | weights aws / azure | changed | waited | gate checks | result |",
            "|---|---|---|---|---|---|",
        ]
        for s in report.steps:
            weights = f"{100 - s.azure_weight} / {s.azure_weight}" if s.azure_weight is not None else "—"
            changed = ", ".join(s.changed) or ("already done" if s.already else "—")
            result: str = s.status
            if s.failures:
                result += ": " + "; ".join(f"{f.gate} {f.detail}" for f in s.failures[:3])
            elif s.max_error_rate is not None:
                result += f" (max error rate {s.max_error_rate:.4f})"
            lines.append(f"| {s.phase} | {weights} | {changed} | {s.waited_seconds:.1f} s | {s.checks} | {result} |")
    for title_, sets in (("Saved record sets (the rollback target)", report.saved), ("Route 53 now", report.final)):
        if sets:
            lines += ["", f"## {title_}", ""]
            for name, records in sets.items():
                lines.append(f"- `{name}`:")
                lines += [f"  - {describe(rs)}" for rs in records] or ["  - (no record)"]
    return "\n".join(lines).rstrip() + "\n"


def render_saved(saved: SavedRecords) -> str:
    """The audit copy of a saved original: readable lines and the exact JSON Route 53 returned."""
    lines = [
        f"# Saved DNS records: `{saved.name}` [{saved.environment}]",
        "",
        f"Saved at {saved.saved_at} from hosted zone `{saved.zone_id}` before the cutover of `{saved.component}` "
        f"(spec `{saved.spec}`). `--rollback` puts back exactly these record sets.",
        "",
        *(f"- {describe(rs)}" for rs in saved.record_sets),
        "",
        "```json",
        json.dumps(saved.record_sets, indent=2, sort_keys=False),
        "```",
    ]
    return "\n".join(lines) + "\n"
