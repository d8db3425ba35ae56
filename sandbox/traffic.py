"""The users during a cutover: a traffic generator that resolves names like a resolver and counts failures.

Run as `python -m sandbox.traffic --config FILE.json` (a `TrafficConfig`); tests and the
rehearsal start it next to the sandbox: `config_for_sandbox(...)` writes its config from a
running sandbox, `start(config, ...)` starts it and returns its URL (the cutover's
`metrics_query_url`) and the process to stop.

* Resolving. Each of `clients` virtual users has its own resolver cache. A resolver asks the
  authority (Route 53: moto's API, read with boto3) for the record sets of the name, picks
  one answer the way Route 53 answers a weighted set (by weight among the sets of one type;
  all at weight 0: any of them, equally), and caches it for its TTL (an alias: the target's
  TTL, 60 s for a load balancer), all TTLs times `time_scale`. When the authority cannot be
  reached, a cached answer is served stale (RFC 8767); an empty answer is NXDOMAIN: a failure.
* Sending. The chosen DNS target (the ALB's alias DNS name, the AKS load balancer's IP ...)
  is mapped to a real URL by `targets` (shell-style patterns, first match wins): the AWS
  stand-in workload server, the AKS LoadBalancer's `127.0.0.1:PORT`. Requests go out at a
  steady `rate_per_second` overall, each a fresh connection, `GET <url><path>`; 2xx/3xx is
  a success, anything else (status, refused, timeout, an unmapped target) a failure.
* Counting. Per name, side (the matched target's side: aws / azure; `none` when resolution
  failed) and outcome (success / failure), as the counter `mmrv_requests_total`.

Endpoints (plain HTTP on 127.0.0.1):

    GET /api/v1/query?query=...   the Prometheus HTTP API (also POST form): instant vectors of
                                  `mmrv_requests_total{...}`, `rate(...[d])`, `increase(...[d])`,
                                  `sum(...)` of those, and `A / B` of two such expressions;
                                  answers `{"status": "success", "data": {"resultType": "vector",
                                  "result": [{"metric": {...}, "value": [ts, "0.0"]}]}}`
    GET /metrics                  the counters in the Prometheus text format
    GET /stats                    JSON: totals per name and side, recent failures with reasons
    POST /reset                   zero the counters (series stay, at 0)
    GET /healthz                  200 ok
"""

from __future__ import annotations

import argparse
import fnmatch
import http.client
import json
import logging
import math
import os
import random
import re
import signal
import sys
import threading
import time
import urllib.request
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from migration.spec import Spec
from sandbox import process
from sandbox.state import read_state

log = logging.getLogger("sandbox.traffic")

METRIC = "mmrv_requests_total"
SIDES = ("aws", "azure")
OUTCOMES = ("success", "failure")
NO_SIDE = "none"
ALIAS_TTL_SECONDS = 60.0  # an alias to a load balancer is answered with the ELB's fixed TTL
MAX_EVENTS = 2_000_000
RECENT_FAILURES = 100


# --- configuration ----------------------------------------------------------------------


@dataclass(frozen=True)
class TargetRoute:
    """DNS targets matching `match` (a shell pattern, compared without case and trailing dot) go to `url`."""

    match: str
    url: str
    side: str


@dataclass(frozen=True)
class NameConfig:
    name: str
    zone: str  # the hosted zone's name (its id is looked up once)
    path: str = "/healthz"
    targets: tuple[TargetRoute, ...] = ()


@dataclass(frozen=True)
class TrafficConfig:
    names: tuple[NameConfig, ...]
    aws_endpoint_url: str | None = None  # Route 53's API (moto); None: boto3's default
    region: str = "us-east-1"
    ca_bundle: str | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    host: str = "127.0.0.1"
    port: int = 0
    rate_per_second: float = 20.0
    clients: int = 8
    alias_ttl_seconds: float = ALIAS_TTL_SECONDS
    time_scale: float = 1.0
    request_timeout_seconds: float = 2.0
    seed: int = 0

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> TrafficConfig:
        data: dict[str, Any] = json.loads(text)
        names = tuple(
            NameConfig(**{**n, "targets": tuple(TargetRoute(**t) for t in n.get("targets") or ())})
            for n in data.pop("names")
        )
        return cls(names=names, **data)


def config_for_sandbox(
    state_dir: Path,
    spec: Spec,
    env: str,
    component: str,
    *,
    azure_target: str,
    azure_url: str | None,
    port: int = 0,
    time_scale: float = 1.0,
    rate_per_second: float = 20.0,
    clients: int = 8,
) -> TrafficConfig:
    """The generator's config for the running sandbox: its moto, its AWS stand-in, the spec's names.

    The ALB's and Amplify's DNS names go to the sandbox's `aws-workload` backend,
    `azure_target` to `azure_url` (the AKS LoadBalancer); `azure_url=None`: the component's
    LoadBalancer Service in the environment's emulated cluster, looked up when first needed
    (the rehearsal starts the users before the ship phase creates it).
    """
    state = read_state(state_dir)
    if state is None:
        raise RuntimeError(f"no sandbox is running in {state_dir}")
    moto = state.services["moto"].direct_url
    aws = state.services["aws-workload"].direct_url if "aws-workload" in state.services else None
    if aws is None:
        raise RuntimeError("the sandbox runs no aws-workload backend: the AWS side has nowhere to answer")
    environment = spec.environment(env)
    path = spec.components[component].health_check_path  # type: ignore[index]
    if azure_url is None:
        kube = state.services["kubernetes"].direct_url if "kubernetes" in state.services else None
        if kube is None:
            raise RuntimeError("the sandbox runs no kubernetes backend: the Azure side has nowhere to answer")
        azure_url = lazy_lb_url(kube, environment.azure.aks.name, spec.name, f"{spec.name}-{component}")
    targets = (
        TargetRoute(match=azure_target, url=azure_url, side="azure"),
        TargetRoute(match="*.elb.amazonaws.com", url=aws, side="aws"),
        TargetRoute(match="*.amplifyapp.com", url=aws, side="aws"),
    )
    names = tuple(
        NameConfig(name=r.name, zone=environment.dns.zone, path=path, targets=targets)
        for r in environment.dns.records
        if r.component == component
    )
    return TrafficConfig(
        names=names,
        aws_endpoint_url=moto,
        region=spec.aws.region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        port=port,
        time_scale=time_scale,
        rate_per_second=rate_per_second,
        clients=clients,
    )


@dataclass(frozen=True)
class RunningTraffic:
    """A traffic generator process started by `start`; stop it with `stop()` (by its pid)."""

    url: str  # http://127.0.0.1:PORT: /api/v1/query, /stats, /metrics
    record: process.ProcessRecord
    log: Path

    def stop(self) -> None:
        process.stop_all([self.record], timeout=5.0)


def start(config: TrafficConfig, *, state_dir: Path, label: str = "traffic", timeout: float = 20.0) -> RunningTraffic:
    """Start `python -m sandbox.traffic` with `config` (a free port when it names none); config and log in `state_dir`.

    The rehearsal: `start(config_for_sandbox(state_dir, spec, env, component, ...), state_dir=state_dir)`,
    then the cutover with `metrics_query_url=running.url`, then `running.stop()`.
    """
    if not config.port:
        config = replace(config, port=process.free_ports(1)[0])
    config_path = state_dir / f"{label}.json"
    config_path.write_text(config.to_json(), encoding="utf-8")
    log_path = state_dir / "logs" / f"{label}.log"
    root = str(Path(__file__).resolve().parent.parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_ENDPOINT_URL", "AWS_CA_BUNDLE", "MMRV_"))}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    argv = [sys.executable, "-m", "sandbox.traffic", "--config", str(config_path)]
    record = process.spawn(argv, log_path=log_path, env=env, cwd=state_dir)
    running = RunningTraffic(url=f"http://{config.host}:{config.port}", record=record, log=log_path)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(running.url + "/healthz", timeout=1):
                return running
        except OSError:
            if not process.is_running(record) or time.monotonic() > deadline:
                running.stop()
                raise RuntimeError(f"the traffic generator did not start; see {log_path}") from None
            time.sleep(0.05)


def _norm(name: str) -> str:
    return name.replace("\\052", "*").rstrip(".").lower()


# --- resolving --------------------------------------------------------------------------


class ResolveError(Exception):
    pass


@dataclass(frozen=True)
class Answer:
    target: str  # an IP address or a host name, normalized
    ttl: float  # seconds, already scaled
    record_type: str
    set_identifier: str | None


class Authority:
    """Route 53 as a resolver's upstream: the record sets of a name, read through the API."""

    def __init__(self, config: TrafficConfig) -> None:
        import boto3
        from botocore.config import Config

        kwargs: dict[str, Any] = {
            "region_name": config.region,
            "config": Config(retries={"mode": "standard", "total_max_attempts": 2}, connect_timeout=2, read_timeout=5),
        }
        if config.aws_endpoint_url:
            kwargs["endpoint_url"] = config.aws_endpoint_url
        if config.ca_bundle:
            kwargs["verify"] = config.ca_bundle
        if config.aws_access_key_id:
            kwargs["aws_access_key_id"] = config.aws_access_key_id
            kwargs["aws_secret_access_key"] = config.aws_secret_access_key
        self._client = boto3.client("route53", **kwargs)
        self._zones: dict[str, str] = {}
        self._lock = threading.Lock()
        self.queries = 0

    def zone_id(self, zone: str) -> str:
        with self._lock:
            if zone in self._zones:
                return self._zones[zone]
        wanted = _norm(zone) + "."
        found = self._client.list_hosted_zones_by_name(DNSName=wanted)["HostedZones"]
        zones = [z for z in found if z["Name"].lower() == wanted and not z.get("Config", {}).get("PrivateZone")]
        if not zones:
            raise ResolveError(f"no public hosted zone {zone}")
        with self._lock:
            self._zones[zone] = zones[0]["Id"]
        return str(zones[0]["Id"])

    def record_sets(self, zone: str, name: str) -> list[dict[str, Any]]:
        wanted = _norm(name)
        out = self._client.list_resource_record_sets(
            HostedZoneId=self.zone_id(zone), StartRecordName=wanted + ".", MaxItems="100"
        )
        with self._lock:
            self.queries += 1
        return [rs for rs in out.get("ResourceRecordSets", []) if _norm(rs["Name"]) == wanted]


def choose(sets: list[dict[str, Any]], rng: random.Random, alias_ttl: float, time_scale: float) -> Answer:
    """Route 53's answer for a name: CNAME if there is one, else A (these users speak IPv4), by weight."""
    for wanted in ("CNAME", "A"):
        candidates = [rs for rs in sets if rs.get("Type") == wanted]
        if candidates:
            break
    else:
        raise ResolveError("NXDOMAIN (no CNAME or A record)")
    weights = [int(rs.get("Weight") or 0) for rs in candidates]
    if len(candidates) > 1 or any(rs.get("SetIdentifier") for rs in candidates):
        # every weight 0: all of them, equally
        picked = rng.choices(candidates, weights=weights)[0] if sum(weights) > 0 else rng.choice(candidates)
    else:
        picked = candidates[0]
    alias = picked.get("AliasTarget")
    if alias:
        target, ttl = _norm(alias["DNSName"]), alias_ttl
    else:
        values = [v["Value"] for v in picked.get("ResourceRecords") or []]
        if not values:
            raise ResolveError("NODATA (a record set without values)")
        target, ttl = _norm(rng.choice(values)), float(picked.get("TTL") or 0)
    return Answer(target, ttl * time_scale, str(picked["Type"]), picked.get("SetIdentifier"))


class Resolver:
    """One user's caching resolver."""

    def __init__(self, authority: Authority, config: TrafficConfig, rng: random.Random, stats: Stats) -> None:
        self.authority = authority
        self.config = config
        self.rng = rng
        self.stats = stats
        self.cache: dict[str, tuple[Answer, float]] = {}

    def resolve(self, name: NameConfig) -> Answer:
        now = time.monotonic()
        cached = self.cache.get(name.name)
        if cached and cached[1] > now:
            return cached[0]
        try:
            sets = self.authority.record_sets(name.zone, name.name)
        except ResolveError:
            raise
        except Exception as exc:  # the authority is unreachable: serve stale if we can
            self.stats.note("resolver_errors")
            if cached:
                self.stats.note("served_stale")
                return cached[0]
            raise ResolveError(f"SERVFAIL ({type(exc).__name__}: {exc})") from exc
        answer = choose(sets, self.rng, self.config.alias_ttl_seconds, self.config.time_scale)
        self.cache[name.name] = (answer, now + answer.ttl)
        self.stats.note(f"answers_{answer.set_identifier or 'simple'}")
        return answer


def route_for(name: NameConfig, target: str) -> TargetRoute | None:
    for route in name.targets:
        if fnmatch.fnmatchcase(target, _norm(route.match)):
            return route
    return None


LAZY_LB = "kube-lb:"  # `kube-lb:<emulator url>#<cluster>/<namespace>/<service>`: asked when first needed


def lazy_lb_url(kube_url: str, cluster: str, namespace: str, service: str) -> str:
    """A target URL the generator resolves from the Kubernetes emulator's load balancers when it needs it.

    The AKS LoadBalancer's port exists only after the ship phase; the rehearsal starts the
    users before the migration, so the Azure side of a name is looked up on first use.
    """
    return f"{LAZY_LB}{kube_url.rstrip('/')}#{cluster}/{namespace}/{service}"


class LoadBalancers:
    """Resolves `kube-lb:` target URLs through `GET <emulator>/_sandbox/clusters`, cached briefly."""

    def __init__(self, ttl_seconds: float = 1.0) -> None:
        self.ttl = ttl_seconds
        self.cache: dict[str, tuple[str | None, float]] = {}
        self.lock = threading.Lock()

    def url(self, target_url: str) -> str | None:
        if not target_url.startswith(LAZY_LB):
            return target_url
        now = time.monotonic()
        with self.lock:
            hit = self.cache.get(target_url)
            if hit and hit[0] and hit[1] > now:
                return hit[0]
        base, _, where = target_url[len(LAZY_LB) :].partition("#")
        cluster, _, service = where.partition("/")
        found: str | None = None
        try:
            with urllib.request.urlopen(base + "/_sandbox/clusters", timeout=2) as response:
                clusters = json.loads(response.read())["clusters"]
            for entry in clusters:
                if entry.get("name") == cluster:
                    urls = (entry.get("loadBalancers") or {}).get(service) or []
                    found = urls[0] if urls else None
        except (OSError, ValueError, KeyError) as exc:
            log.warning("load balancers of %s: %s", base, exc)
        with self.lock:
            self.cache[target_url] = (found, now + self.ttl)
        return found


# --- counting ---------------------------------------------------------------------------


@dataclass
class Event:
    at: float  # time.time()
    name: str
    side: str
    outcome: str


@dataclass
class Stats:
    names: tuple[str, ...]
    started_at: float = field(default_factory=time.time)
    events: deque[Event] = field(default_factory=lambda: deque(maxlen=MAX_EVENTS))
    counters: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    failures: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=RECENT_FAILURES))
    notes: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._init_series()

    def _init_series(self) -> None:
        # every series exists from the start at 0, as a Prometheus client initialises its labels
        for name in self.names:
            for side in SIDES:
                for outcome in OUTCOMES:
                    self.counters[(name, side, outcome)] += 0

    def record(self, name: str, side: str, ok: bool, detail: dict[str, Any]) -> None:
        outcome = "success" if ok else "failure"
        now = time.time()
        with self.lock:
            self.counters[(name, side, outcome)] += 1
            self.events.append(Event(now, name, side, outcome))
            if not ok:
                self.failures.append({"at": now, "name": name, "side": side, **detail})

    def note(self, what: str) -> None:
        with self.lock:
            self.notes[what] += 1

    def reset(self) -> None:
        with self.lock:
            self.events.clear()
            self.counters.clear()
            self.failures.clear()
            self.notes.clear()
            self.started_at = time.time()
            self._init_series()

    def series(self) -> list[tuple[dict[str, str], int]]:
        with self.lock:
            return [
                ({"__name__": METRIC, "name": n, "side": s, "outcome": o}, count)
                for (n, s, o), count in sorted(self.counters.items())
            ]

    def window(self, since: float, until: float) -> Counter[tuple[str, str, str]]:
        counted: Counter[tuple[str, str, str]] = Counter()
        with self.lock:
            for event in reversed(self.events):
                if event.at <= since:
                    break
                if event.at <= until:
                    counted[(event.name, event.side, event.outcome)] += 1
        return counted

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            per_name: dict[str, dict[str, dict[str, int]]] = {}
            for (name, side, outcome), count in self.counters.items():
                per_name.setdefault(name, {}).setdefault(side, {"success": 0, "failure": 0})[outcome] = count
            total = sum(self.counters.values())
            failed = sum(c for (_, _, o), c in self.counters.items() if o == "failure")
            return {
                "started_at": self.started_at,
                "requests": total,
                "failures": failed,
                "successes": total - failed,
                "names": per_name,
                "recent_failures": list(self.failures),
                "notes": dict(self.notes),
            }


# --- a little PromQL ------------------------------------------------------------------------

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_SELECTOR = re.compile(r"\s*(?P<metric>[A-Za-z_:][A-Za-z0-9_:]*)\s*(?:\{(?P<matchers>[^}]*)\})?\s*")
_MATCHER = re.compile(r'\s*(?P<label>[A-Za-z_][A-Za-z0-9_]*)\s*(?P<op>=~|!~|!=|=)\s*"(?P<value>(?:[^"\\]|\\.)*)"\s*')
_RANGE = re.compile(r"(?P<selector>.*)\[(?P<duration>[^\]]+)\]\s*$", re.S)

Sample = tuple[dict[str, str], float]


class QueryError(Exception):
    pass


def parse_duration(text: str) -> float:
    text = text.strip()
    pos, total = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise QueryError(f"bad duration {text!r}")
    return total


def _matchers(text: str | None) -> list[Callable[[dict[str, str]], bool]]:
    tests: list[Callable[[dict[str, str]], bool]] = []
    for part in _split(text or "", ","):
        if not part.strip():
            continue
        m = _MATCHER.fullmatch(part)
        if not m:
            raise QueryError(f"bad label matcher {part.strip()!r}")
        label, op, value = m.group("label"), m.group("op"), bytes(m.group("value"), "utf-8").decode("unicode_escape")
        tests.append(_matcher(label, op, value))
    return tests


def _matcher(label: str, op: str, value: str) -> Callable[[dict[str, str]], bool]:
    if op in ("=", "!="):
        return lambda labels: (labels.get(label, "") == value) == (op == "=")
    try:
        pattern = re.compile(value)
    except re.error as exc:
        raise QueryError(f"bad regular expression {value!r}: {exc}") from None
    return lambda labels: (pattern.fullmatch(labels.get(label, "")) is not None) == (op == "=~")


def _split(text: str, sep: str) -> list[str]:
    """Split at `sep` outside parentheses, brackets, braces and quotes."""
    parts: list[str] = []
    current: list[str] = []
    depth, quoted, previous = 0, False, ""
    for char in text:
        if char == '"' and previous != "\\":
            quoted = not quoted
        elif not quoted and char in "([{":
            depth += 1
        elif not quoted and char in ")]}":
            depth -= 1
        if char == sep and depth == 0 and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
        previous = char
    parts.append("".join(current))
    return parts


def _strip_parens(text: str) -> str:
    """`(a / b)` -> `a / b`, as long as the first parenthesis closes at the very end."""
    text = text.strip()
    while text.startswith("("):
        depth, closes_at = 0, -1
        for index, char in enumerate(text):
            depth += char == "("
            depth -= char == ")"
            if depth == 0:
                closes_at = index
                break
        if closes_at != len(text) - 1:
            return text
        text = text[1:-1].strip()
    return text


class Evaluator:
    """Instant queries over the generator's counter, the PromQL subset the cutover's gate needs."""

    def __init__(self, stats: Stats) -> None:
        self.stats = stats

    def evaluate(self, query: str, at: float) -> list[Sample]:
        text = _strip_parens(query)
        parts = _split(text, "/")
        if len(parts) > 2:
            raise QueryError("only one division is supported")
        if len(parts) == 2:
            return self._divide(self.evaluate(parts[0], at), self.evaluate(parts[1], at))
        return self._term(text, at)

    def _term(self, text: str, at: float) -> list[Sample]:
        text = _strip_parens(text)
        for func in ("sum", "rate", "increase"):
            if text.startswith(func) and text[len(func) :].lstrip().startswith("("):
                inner = text[len(func) :].lstrip()
                if not inner.endswith(")"):
                    raise QueryError(f"unbalanced parentheses in {text!r}")
                inner = inner[1:-1]
                if func == "sum":
                    samples = self._term(inner, at)
                    return [({}, sum(v for _, v in samples))] if samples else []
                return self._range(func, inner, at)
        return [(labels, float(count)) for labels, count in self._select(text)]

    def _select(self, text: str) -> list[tuple[dict[str, str], int]]:
        m = _SELECTOR.fullmatch(text)
        if not m:
            raise QueryError(f"cannot parse {text.strip()!r}: expected metric{{labels}}, rate(), increase() or sum()")
        tests = _matchers(m.group("matchers"))
        metric = m.group("metric")
        return [
            (labels, c)
            for labels, c in self.stats.series()
            if labels["__name__"] == metric and all(t(labels) for t in tests)
        ]

    def _range(self, func: str, text: str, at: float) -> list[Sample]:
        m = _RANGE.fullmatch(text.strip())
        if not m:
            raise QueryError(f"{func}() needs a range selector like metric{{...}}[5m]")
        seconds = parse_duration(m.group("duration"))
        if seconds <= 0:
            raise QueryError("the range must be positive")
        series = self._select(m.group("selector"))
        counted = self.stats.window(at - seconds, at)
        out = []
        for labels, _ in series:
            increase = float(counted.get((labels["name"], labels["side"], labels["outcome"]), 0))
            value = increase / seconds if func == "rate" else increase
            out.append(({k: v for k, v in labels.items() if k != "__name__"}, value))
        return out

    @staticmethod
    def _divide(left: list[Sample], right: list[Sample]) -> list[Sample]:
        out = []
        for labels, a in left:
            key = {k: v for k, v in labels.items() if k != "__name__"}
            match = [b for lb, b in right if {k: v for k, v in lb.items() if k != "__name__"} == key]
            if not match:
                continue
            b = match[0]
            value = a / b if b else (math.nan if a == 0 else math.copysign(math.inf, a))
            out.append((key, value))
        return out


def format_value(value: float) -> str:
    """A sample value as the Prometheus API writes it: a string, `NaN` and `+Inf` included."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if value.is_integer() else repr(value)


def query_answer(evaluator: Evaluator, query: str, at: float | None = None) -> tuple[int, dict[str, Any]]:
    when = time.time() if at is None else at
    try:
        samples = evaluator.evaluate(query, when)
    except QueryError as exc:
        return 400, {"status": "error", "errorType": "bad_data", "error": str(exc)}
    result = [{"metric": labels, "value": [round(when, 3), format_value(value)]} for labels, value in samples]
    return 200, {"status": "success", "data": {"resultType": "vector", "result": result}}


# --- the generator ----------------------------------------------------------------------------


class Generator:
    """The virtual users: `clients` threads sending `rate_per_second` requests in all, round robin over names."""

    def __init__(self, config: TrafficConfig, authority: Authority | None = None) -> None:
        if config.clients < 1 or config.rate_per_second <= 0 or config.time_scale <= 0:
            raise ValueError("clients >= 1, rate_per_second > 0 and time_scale > 0 are required")
        self.config = config
        self.stats = Stats(names=tuple(n.name for n in config.names))
        self.authority = authority or Authority(config)
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []
        self.load_balancers = LoadBalancers()

    def start(self) -> None:
        for index in range(self.config.clients):
            rng = random.Random(f"{self.config.seed}-{index}")
            resolver = Resolver(self.authority, self.config, rng, self.stats)
            thread = threading.Thread(target=self._user, args=(index, resolver), name=f"user-{index}", daemon=True)
            self.threads.append(thread)
            thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout)

    def _user(self, index: int, resolver: Resolver) -> None:
        interval = self.config.clients / self.config.rate_per_second
        next_at = time.monotonic() + interval * index / self.config.clients  # spread the users out
        turn = index
        names = self.config.names
        while not self.stop_event.is_set():
            delay = next_at - time.monotonic()
            if delay > 0 and self.stop_event.wait(delay):
                return
            next_at = max(next_at + interval, time.monotonic())
            name = names[turn % len(names)]
            turn += 1
            self.request(name, resolver)

    def request(self, name: NameConfig, resolver: Resolver) -> None:
        try:
            answer = resolver.resolve(name)
        except Exception as exc:  # ResolveError, or anything else: the user sees a failure
            self.stats.record(name.name, NO_SIDE, False, {"reason": f"dns: {exc}"})
            return
        route = route_for(name, answer.target)
        if route is None:
            self.stats.record(name.name, NO_SIDE, False, {"reason": f"no URL for the DNS target {answer.target}"})
            return
        resolved = self.load_balancers.url(route.url)
        if resolved is None:
            self.stats.record(name.name, route.side, False, {"reason": f"no load balancer yet for {answer.target}"})
            return
        url = urlsplit(resolved)
        conn_type = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        conn = conn_type(url.hostname or "127.0.0.1", url.port, timeout=self.config.request_timeout_seconds)
        detail: dict[str, Any] = {"target": answer.target, "url": resolved + name.path}
        try:
            conn.request("GET", (url.path.rstrip("/") or "") + name.path, headers={"Host": name.name})
            response = conn.getresponse()
            response.read()
            ok = 200 <= response.status < 400
            detail["status"] = response.status
            if not ok:
                detail["reason"] = f"HTTP {response.status}"
        except (OSError, http.client.HTTPException) as exc:
            ok = False
            detail["reason"] = f"{type(exc).__name__}: {exc}"
        finally:
            conn.close()
        self.stats.record(name.name, route.side, ok, detail if not ok else {})


# --- the HTTP front ---------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    server: TrafficServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _json(self, status: int, data: Any) -> None:
        self._send(status, json.dumps(data).encode(), "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _query(self, params: dict[str, list[str]]) -> None:
        query = (params.get("query") or [""])[0]
        if not query:
            self._json(400, {"status": "error", "errorType": "bad_data", "error": "missing the query parameter"})
            return
        at = None
        if params.get("time"):
            try:
                at = float(params["time"][0])
            except ValueError:
                self._json(400, {"status": "error", "errorType": "bad_data", "error": "time must be a unix timestamp"})
                return
        status, body = query_answer(self.server.evaluator, query, at)
        self._json(status, body)

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        generator = self.server.generator
        if parts.path == "/api/v1/query":
            self._query(parse_qs(parts.query))
        elif parts.path == "/stats":
            self._json(200, generator.stats.snapshot())
        elif parts.path == "/metrics":
            lines = [f"# TYPE {METRIC} counter"]
            for labels, count in generator.stats.series():
                rendered = ",".join(f'{k}="{v}"' for k, v in labels.items() if k != "__name__")
                lines.append(f"{METRIC}{{{rendered}}} {count}")
            self._send(200, ("\n".join(lines) + "\n").encode(), "text/plain; version=0.0.4")
        elif parts.path in ("/healthz", "/"):
            self._send(200, b"ok", "text/plain")
        else:
            self._send(404, b"not found", "text/plain")

    def do_POST(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        if parts.path == "/api/v1/query":
            self._query({**parse_qs(parts.query), **parse_qs(body)})
        elif parts.path == "/reset":
            self.server.generator.stats.reset()
            self._json(200, {"reset": True})
        else:
            self._send(404, b"not found", "text/plain")


class TrafficServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, generator: Generator) -> None:
        self.generator = generator
        self.evaluator = Evaluator(generator.stats)
        super().__init__((generator.config.host, generator.config.port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


def run(config: TrafficConfig, ready: Callable[[str], None] | None = None) -> None:
    generator = Generator(config)
    server = TrafficServer(generator)

    def stop(*_: object) -> None:
        generator.stop_event.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    generator.start()
    log.info(
        "traffic: %s rps over %d users to %s; Prometheus API on %s/api/v1/query",
        config.rate_per_second,
        config.clients,
        ", ".join(n.name for n in config.names),
        server.url,
    )
    if ready:
        ready(server.url)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        generator.stop()
        server.server_close()
        log.info(
            "traffic stopped: %s",
            json.dumps({k: v for k, v in generator.stats.snapshot().items() if k != "recent_failures"}),
        )


def main(argv: Iterable[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox.traffic", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, type=Path, help="a TrafficConfig as JSON")
    args = parser.parse_args(list(argv) if argv is not None else None)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("botocore").setLevel(logging.WARNING)
    run(TrafficConfig.from_json(args.config.read_text(encoding="utf-8")))


if __name__ == "__main__":
    main()
