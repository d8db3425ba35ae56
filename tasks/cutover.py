"""Cutover tasks: read and change Route 53, keep the saved original, run the gates of a bake.

Each task builds its own gateway from `AwsSettings()` and returns plain data (record sets
as the dicts Route 53 returns, pydantic models of `migration.cutover`). Changing the records
is idempotent: `apply_batch` first reads what Route 53 shows and does nothing when the
batch's result is already there, so a retry after a lost response (or a rerun after a
crash) never applies a batch twice. Route 53's own check does the rest: a batch whose
DELETEs do not match the current records exactly is refused whole.

The saved original of a name lives in a Prefect Variable (`variable_name(spec, env, name)`)
so a later run (a resume, `--rollback`) finds it, and in a markdown artifact for the audit.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

import httpx
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.variables import Variable

from migration.clouds.dns import DnsGateway
from migration.cutover import (
    BakeResult,
    CutoverError,
    GateResult,
    RecordSet,
    SavedRecords,
    evaluate_error_rate,
    evaluate_smoke,
    normalize_name,
    parse_query_value,
    render_query,
    render_saved,
    same_record_sets,
    variable_name,
)
from migration.errors import PermanentError
from migration.settings import AwsSettings
from migration.spec import SmokeCheck
from tasks.defaults import read_task, retry_options

VARIABLE_LIMIT = 5000  # Prefect's limit on a Variable's JSON value
CHECK_ATTEMPTS = 2  # a failed smoke check is tried once more before it fails the gate
QUERY_ATTEMPTS = 3  # an unreachable metrics endpoint, likewise, with a short pause


def _gateway() -> DnsGateway:
    return DnsGateway(AwsSettings())


def artifact_slug(text: str) -> str:
    """Artifact keys: lower-case letters, digits and dashes."""
    return "-".join(part for part in "".join(c if c.isalnum() else "-" for c in text.lower()).split("-") if part)


# --- Route 53 -----------------------------------------------------------------------------


@read_task(name="dns-zone", task_run_name="dns-zone[{zone}]")
def find_zone(zone: str) -> str:
    """The id of the public hosted zone named `zone`."""
    return _gateway().get_zone(zone).id


@read_task(name="dns-read", task_run_name="dns-read[{name}]")
def read_records(zone_id: str, name: str) -> list[RecordSet]:
    """Every record set of `name`, exactly as Route 53 returns them."""
    return _gateway().list_raw_record_sets(zone_id, name)


@task(name="dns-change", task_run_name="dns-change[{name}] {label}", cache_policy=NO_CACHE, **retry_options())
def apply_batch(
    zone_id: str,
    name: str,
    label: str,
    changes: list[dict[str, Any]],
    expected: list[RecordSet],
    poll_seconds: float = 5.0,
    timeout_seconds: float = 600.0,
) -> str:
    """Apply one atomic change batch so that Route 53 shows `expected`; "applied" or "already" (nothing to do).

    When Route 53 refuses the batch (a DELETE that does not match), the records are read
    again: if they show `expected`, an earlier attempt whose answer was lost applied it.
    """
    gateway = _gateway()
    if same_record_sets(gateway.list_raw_record_sets(zone_id, name), expected):
        return "already"
    comment = f"mmrv-migrate cutover {name}: {label}"
    try:
        gateway.change_record_sets(
            zone_id, changes, comment, poll_seconds=poll_seconds, timeout_seconds=timeout_seconds
        )
    except PermanentError as exc:
        if "InvalidChangeBatch" in str(exc) and same_record_sets(gateway.list_raw_record_sets(zone_id, name), expected):
            return "already"
        raise
    return "applied"


# --- the saved original -------------------------------------------------------------------


@read_task(name="dns-saved", task_run_name="dns-saved[{name}]")
def load_saved(spec: str, env: str, name: str) -> SavedRecords | None:
    """The saved original of a name (and how far its cutover got), None when none was saved."""
    value = Variable.get(variable_name(spec, env, name), default=None)
    if value is None:
        return None
    return SavedRecords.model_validate(value)


@task(name="dns-save", task_run_name="dns-save[{saved.name}] {saved.status}", cache_policy=NO_CACHE, **retry_options())
def store_saved(saved: SavedRecords, audit: bool = False) -> SavedRecords:
    """Write the Variable (and, with `audit`, the markdown artifact of the original for the audit trail)."""
    value = saved.model_dump(mode="json")
    size = len(json.dumps(value))
    if size > VARIABLE_LIMIT:
        raise CutoverError(
            f"{saved.name}: the saved record sets take {size} characters, more than a Prefect Variable holds "
            f"({VARIABLE_LIMIT}): this name has too many records for the cutover to keep"
        )
    Variable.set(variable_name(saved.spec, saved.environment, saved.name), value, overwrite=True)
    if audit:
        create_markdown_artifact(
            key=f"cutover-saved-{artifact_slug(saved.environment)}-{artifact_slug(saved.name)}",
            markdown=render_saved(saved),
            description=f"The DNS records of {saved.name} as they were before the cutover (the rollback target).",
        )
    return saved


# --- the gates ----------------------------------------------------------------------------


def _client(timeout: float) -> httpx.Client:
    ca = AwsSettings().ca_bundle  # MMRV_CA_BUNDLE: the sandbox's CA; unset in the cloud (system trust)
    return httpx.Client(verify=ca or True, timeout=timeout, trust_env=False, follow_redirects=False)


def smoke_check(
    client: httpx.Client,
    check: SmokeCheck,
    base_url: str,
    weight: int,
    elapsed: float,
    expected_digest: str | None = None,
) -> GateResult:
    url = base_url.rstrip("/") + check.path
    result = None
    for _ in range(CHECK_ATTEMPTS):
        began = time.perf_counter()
        try:
            response = client.get(url)
            latency = (time.perf_counter() - began) * 1000
            result = evaluate_smoke(
                check,
                url,
                weight,
                status=response.status_code,
                body=response.text,
                latency_ms=latency,
                elapsed_seconds=elapsed,
                expected_digest=expected_digest,
            )
        except httpx.HTTPError as exc:
            latency = (time.perf_counter() - began) * 1000
            result = evaluate_smoke(
                check,
                url,
                weight,
                status=None,
                body="",
                latency_ms=latency,
                error=f"{type(exc).__name__}: {exc}",
                elapsed_seconds=elapsed,
            )
        if result.ok:
            return result
    assert result is not None
    return result


def error_rate(
    client: httpx.Client, base_url: str, query: str, budget: float, weight: int, elapsed: float
) -> GateResult:
    url = base_url.rstrip("/")
    if not url.endswith("/api/v1/query"):
        url += "/api/v1/query"
    problem = ""
    for attempt in range(QUERY_ATTEMPTS):
        try:
            response = client.get(url, params={"query": query})
            payload = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            problem = f"{type(exc).__name__}: {exc}"
            time.sleep(0.2 * (attempt + 1))
            continue
        try:
            value = parse_query_value(payload)
        except CutoverError as exc:
            return GateResult(
                gate="error-rate", ok=False, detail=f"{exc} ({url})", azure_weight=weight, elapsed_seconds=elapsed
            )
        return evaluate_error_rate(value, budget, weight, query, elapsed)
    return GateResult(
        gate="error-rate",
        ok=False,
        detail=f"the metrics endpoint {url} did not answer ({problem})",
        azure_weight=weight,
        elapsed_seconds=elapsed,
    )


@task(name="bake", task_run_name="bake[{env}] azure {azure_weight}%", cache_policy=NO_CACHE, persist_result=False)
def bake(
    env: str,
    component: str,
    names: list[str],
    azure_weight: int,
    azure_url: str,
    smoke_checks: list[SmokeCheck],
    bake_seconds: float,
    interval_seconds: float,
    metrics_query_url: str | None = None,
    error_rate_query: str = "",
    error_budget: float = 0.0,
    expected_digest: str | None = None,
) -> BakeResult:
    """Hold a step for `bake_seconds` (already scaled), running the gates every `interval_seconds`.

    Stops at the first failed gate. Always runs at least one round, and a last one at the end.
    """
    began = time.monotonic()
    deadline = began + max(0.0, bake_seconds)
    timeout = max([c.max_latency_ms for c in smoke_checks] or [1000]) / 1000 * 2 + 1
    result = BakeResult(azure_weight=azure_weight)
    with _client(timeout) as client:
        while True:
            elapsed = time.monotonic() - began
            outcomes = [
                smoke_check(client, check, azure_url, azure_weight, elapsed, expected_digest) for check in smoke_checks
            ]
            if metrics_query_url:
                for name in names:
                    query = render_query(
                        error_rate_query,
                        name=normalize_name(name),
                        env=env,
                        component=component,
                        window_seconds=max(elapsed, interval_seconds),
                    )
                    outcome = error_rate(client, metrics_query_url, query, error_budget, azure_weight, elapsed)
                    outcomes.append(outcome)
                    if outcome.value is not None and not math.isnan(outcome.value):
                        worst = result.max_error_rate
                        result.max_error_rate = outcome.value if worst is None else max(worst, outcome.value)
            result.checks += len(outcomes)
            result.failures = [o for o in outcomes if not o.ok]
            now = time.monotonic()
            if result.failures or now >= deadline:
                break
            time.sleep(min(interval_seconds, deadline - now))
    result.waited_seconds = round(time.monotonic() - began, 3)
    return result
