"""The fault proxy against real servers: a small ASGI upstream (uvicorn, in a thread) and moto.

One proxy process serves a route per behaviour under test: a clean route, one route per
fault kind with fault_rate 1.0, a mixed route for reproducibility, a route to nothing
(502) and a faulty route to moto for botocore's retries.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import ssl
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import boto3
import httpx
import pytest
import uvicorn
from botocore.config import Config
from botocore.exceptions import ClientError

from sandbox import process
from sandbox.certs import TlsFiles, ensure_tls
from sandbox.proxy import (
    FAULT_KINDS,
    LOST,
    RESET,
    STATS_PATH,
    THROTTLE,
    UNAVAILABLE,
    PathRoute,
    ProxyConfig,
    RouteConfig,
)

pytestmark = pytest.mark.sandbox

MB = 1024 * 1024
BLOCK = hashlib.sha256(b"mmrv").digest() * (MB // 32)  # 1 MiB of a fixed pattern


def pattern(size: int) -> Iterator[bytes]:
    while size > 0:
        piece = BLOCK[: min(size, len(BLOCK))]
        size -= len(piece)
        yield piece


def pattern_digest(size: int) -> str:
    digest = hashlib.sha256()
    for piece in pattern(size):
        digest.update(piece)
    return digest.hexdigest()


# --- a real upstream --------------------------------------------------------------------


class UpstreamApp:
    """ASGI app: /echo (what it received), /upload (size + sha256 of a streamed body),
    /download?size=N[&chunked=1] (a streamed pattern), /status?code=N, /count (requests seen)."""

    def __init__(self) -> None:
        self.hits = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        path, method = scope["path"], scope["method"]
        query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
        if path == "/count":
            return await self._json(send, {"hits": self.hits})
        self.hits += 1
        if path == "/echo":
            body = await self._read(receive)
            headers = [[k.decode(), v.decode()] for k, v in scope["headers"]]
            info = {
                "method": method,
                "path": path,
                "query": scope["query_string"].decode(),
                "headers": headers,
                "client_port": scope["client"][1],
                "body": len(body),
            }
            return await self._json(send, info, extra=[(b"x-upstream", b"yes")])
        if path == "/upload":
            digest, size = hashlib.sha256(), 0
            while True:
                message = await receive()
                chunk = message.get("body", b"")
                digest.update(chunk)
                size += len(chunk)
                if not message.get("more_body"):
                    break
            return await self._json(send, {"size": size, "sha256": digest.hexdigest()})
        if path == "/download":
            size = int(query["size"])
            framing = [(b"content-type", b"application/octet-stream")]
            if "chunked" not in query:
                framing.append((b"content-length", str(size).encode()))
            await send({"type": "http.response.start", "status": 200, "headers": framing})
            if method != "HEAD":
                for piece in pattern(size):
                    await send({"type": "http.response.body", "body": piece, "more_body": True})
            return await send({"type": "http.response.body", "body": b""})
        if path == "/status":
            await send({"type": "http.response.start", "status": int(query["code"]), "headers": []})
            return await send({"type": "http.response.body", "body": b""})
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    @staticmethod
    async def _read(receive: Any) -> bytes:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                return body

    @staticmethod
    async def _json(send: Any, data: dict[str, Any], extra: list[tuple[bytes, bytes]] | None = None) -> None:
        body = json.dumps(data).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers + (extra or [])})
        await send({"type": "http.response.body", "body": body})


@dataclass
class Upstream:
    app: UpstreamApp
    port: int

    def hits(self) -> int:
        with httpx.Client() as client:
            return int(client.get(f"http://127.0.0.1:{self.port}/count").json()["hits"])


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    app = UpstreamApp()
    (port,) = process.free_ports(1)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, http="h11", lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, "upstream")
    yield Upstream(app, port)
    server.should_exit = True
    thread.join(timeout=10)


def wait_for(check: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not ready within {timeout} s")
        time.sleep(0.05)


# --- proxies ----------------------------------------------------------------------------


@dataclass
class RunningProxy:
    record: process.ProcessRecord
    ports: dict[str, int]
    tls: TlsFiles
    log: Path

    def url(self, route: str, path: str = "") -> str:
        return f"https://127.0.0.1:{self.ports[route]}{path}"

    def stats(self, route: str) -> dict[str, Any]:
        with httpx.Client(verify=client_ssl(self.tls)) as client:
            return dict(client.get(self.url(route, STATS_PATH)).json()["routes"][route])

    def rss_kib(self, field: str) -> int:
        for line in Path(f"/proc/{self.record.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise AssertionError(field)


def client_ssl(tls: TlsFiles) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(tls.ca))


def start_proxy(directory: Path, tls: TlsFiles, routes: list[dict[str, Any]], *, seed: int) -> RunningProxy:
    ports = process.free_ports(len(routes))
    config = ProxyConfig(
        certfile=str(tls.server_cert),
        keyfile=str(tls.server_key),
        seed=seed,
        routes=tuple(RouteConfig(listen_port=port, **route) for route, port in zip(routes, ports, strict=True)),
    )
    directory.mkdir(parents=True, exist_ok=True)
    config_path = directory / "proxy.json"
    config_path.write_text(config.to_json())
    log = directory / "proxy.log"
    record = process.spawn(
        [sys.executable, "-m", "sandbox.proxy", "--config", str(config_path)],
        log_path=log,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        cwd=directory,
    )
    proxy = RunningProxy(record, {r["name"]: p for r, p in zip(routes, ports, strict=True)}, tls, log)

    def ready() -> bool:
        assert process.is_running(record), process.tail(log, 20)
        return all(process.port_accepts(port) for port in ports)

    try:
        wait_for(ready, "proxy")
    except BaseException:
        process.stop(record)  # a failed start leaves nothing running
        raise
    return proxy


def forced(kind: str) -> dict[str, Any]:
    return {"name": kind, "fault_rate": 1.0, "fault_kinds": (kind,)}


@pytest.fixture(scope="module")
def moto_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    (port,) = process.free_ports(1)
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    record = process.spawn(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        log_path=log,
        env={"PATH": "/usr/bin:/bin"},
        cwd=log.parent,
    )
    yield port
    process.stop(record)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return ensure_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def proxy(
    tmp_path_factory: pytest.TempPathFactory, tls: TlsFiles, upstream: Upstream, moto_port: int
) -> Iterator[RunningProxy]:
    (dead_port,) = process.free_ports(1)
    to_upstream = {"upstream_port": upstream.port}
    routes = [
        {"name": "clean", **to_upstream},
        *({**forced(kind), **to_upstream} for kind in FAULT_KINDS),
        {"name": "dead", "upstream_port": dead_port},
        {"name": "moto", "upstream_port": moto_port, "fault_rate": 0.3},
        # an ACR front's shape: one path prefix to another upstream, the rest to the route's own
        {"name": "split", "upstream_port": dead_port, "paths": (PathRoute("/echo", upstream.port),)},
        {
            **forced(THROTTLE),
            "name": "split-throttled",
            "upstream_port": dead_port,
            "paths": (PathRoute("/echo", upstream.port),),
        },
    ]
    running = start_proxy(tmp_path_factory.mktemp("proxy"), tls, routes, seed=11)
    wait_for(lambda: process.port_accepts(moto_port), "moto")
    yield running
    assert process.stop(running.record)


@pytest.fixture()
def client(proxy: RunningProxy) -> Iterator[httpx.Client]:
    with httpx.Client(verify=client_ssl(proxy.tls), timeout=60) as c:
        yield c


# --- faithful forwarding ----------------------------------------------------------------


def test_forwards_method_target_and_headers(proxy: RunningProxy, client: httpx.Client) -> None:
    response = client.request(
        "PATCH",
        proxy.url("clean", "/echo?a=1&b=two%20words"),
        headers={
            "Host": "registry.example.test:5000",
            "Authorization": "Basic QVdTOnNlY3JldA==",
            "X-Custom": "kept",
            "X-Forwarded-For": "10.9.8.7",
        },
        content=b"hello",
    )
    assert response.status_code == 200
    assert response.headers["x-upstream"] == "yes"  # response headers come back
    seen = response.json()
    headers = {k: v for k, v in seen["headers"]}
    assert seen["method"] == "PATCH"
    assert seen["query"] == "a=1&b=two%20words"
    assert seen["body"] == 5
    assert headers["host"] == "registry.example.test:5000"
    assert headers["authorization"] == "Basic QVdTOnNlY3JldA=="
    assert headers["x-custom"] == "kept"
    assert headers["x-forwarded-proto"] == "https"
    assert headers["x-forwarded-for"] == "10.9.8.7, 127.0.0.1"
    assert "connection" not in headers


def test_keep_alive_on_both_sides(proxy: RunningProxy) -> None:
    conn = http.client.HTTPSConnection("127.0.0.1", proxy.ports["clean"], context=client_ssl(proxy.tls))
    upstream_ports = set()
    sockets = set()
    for _ in range(3):
        conn.request("GET", "/echo")
        response = conn.getresponse()
        assert response.status == 200
        upstream_ports.add(json.loads(response.read())["client_port"])
        sockets.add(id(conn.sock))
    conn.close()
    assert len(sockets) == 1  # one client connection carried all three
    assert len(upstream_ports) == 1  # and one upstream connection behind it


def test_streams_50_mb_both_ways_with_bounded_memory(proxy: RunningProxy, client: httpx.Client) -> None:
    size = 50 * MB
    expected = pattern_digest(size)
    rss_before = proxy.rss_kib("VmRSS")

    sized = client.put(
        proxy.url("clean", "/upload"), content=pattern(size), headers={"Content-Length": str(size)}
    ).json()
    chunked = client.post(proxy.url("clean", "/upload"), content=pattern(size)).json()  # no length: chunked
    assert sized == chunked == {"size": size, "sha256": expected}

    for query, framing in (("", "content-length"), ("&chunked=1", "transfer-encoding")):
        with client.stream("GET", proxy.url("clean", f"/download?size={size}{query}")) as response:
            assert response.status_code == 200
            assert framing in response.headers
            digest, received = hashlib.sha256(), 0
            for piece in response.iter_raw():
                digest.update(piece)
                received += len(piece)
        assert (received, digest.hexdigest()) == (size, expected)

    growth_mib = (proxy.rss_kib("VmHWM") - rss_before) / 1024
    assert growth_mib < 32, f"proxy peak memory grew {growth_mib:.0f} MiB for 50 MiB bodies: it buffers"


def test_head_keeps_content_length_and_sends_no_body(proxy: RunningProxy) -> None:
    conn = http.client.HTTPSConnection("127.0.0.1", proxy.ports["clean"], context=client_ssl(proxy.tls))
    conn.request("HEAD", "/download?size=12345")
    response = conn.getresponse()
    assert (response.status, response.getheader("content-length"), response.read()) == (200, "12345", b"")
    conn.request("GET", "/echo")  # the same connection is still in step
    assert conn.getresponse().status == 200
    conn.close()


@pytest.mark.parametrize("code", [204, 304])
def test_bodiless_statuses(client: httpx.Client, proxy: RunningProxy, code: int) -> None:
    response = client.get(proxy.url("clean", f"/status?code={code}"))
    assert (response.status_code, response.content) == (code, b"")


def raw_exchange(proxy: RunningProxy, route: str, head: bytes, body: bytes = b"") -> tuple[bytes, BaseException | None]:
    """Send a request on a fresh TLS socket; return what came back before EOF, and the error if any."""
    raw = socket.create_connection(("127.0.0.1", proxy.ports[route]), timeout=30)
    # no ragged-EOF suppression: an abrupt end must show as an error, an orderly close as b""
    sock = client_ssl(proxy.tls).wrap_socket(raw, server_hostname="127.0.0.1", suppress_ragged_eofs=False)
    received = b""
    try:
        sock.sendall(head + body)
        while chunk := sock.recv(65536):
            received += chunk
        return received, None
    except (OSError, ssl.SSLError) as exc:
        return received, exc
    finally:
        sock.close()


def test_expect_100_continue(proxy: RunningProxy) -> None:
    raw = socket.create_connection(("127.0.0.1", proxy.ports["clean"]), timeout=30)
    with client_ssl(proxy.tls).wrap_socket(raw, server_hostname="127.0.0.1") as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        reply = b""
        while b"\r\n\r\n" not in reply:  # the body waits for this interim answer
            reply += sock.recv(65536)
        interim, _, reply = reply.partition(b"\r\n\r\n")
        assert interim.startswith(b"HTTP/1.1 100 ")
        sock.sendall(b"data")
        while b"}" not in reply:
            reply += sock.recv(65536)
    assert reply.startswith(b"HTTP/1.1 200 ")
    assert json.loads(reply.split(b"\r\n\r\n", 1)[1])["size"] == 4


def test_unreachable_upstream_is_502(client: httpx.Client, proxy: RunningProxy) -> None:
    assert client.get(proxy.url("dead", "/anything")).status_code == 502


def test_path_routes_pick_the_upstream_per_request(proxy: RunningProxy, upstream: Upstream) -> None:
    conn = http.client.HTTPSConnection("127.0.0.1", proxy.ports["split"], context=client_ssl(proxy.tls))
    statuses = []
    for path in ("/echo?x=1", "/v2/", "/echo"):  # one keep-alive connection, two upstreams
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        statuses.append(response.status)
    conn.close()
    assert statuses == [200, 502, 200]
    hits = upstream.hits()
    with httpx.Client(verify=client_ssl(proxy.tls)) as client:
        assert client.get(proxy.url("split-throttled", "/echo")).status_code == 429  # faults apply to path routes
    assert upstream.hits() == hits


# --- faults, as a client sees them ------------------------------------------------------


def test_throttle_fault_is_429_with_retry_after(client: httpx.Client, proxy: RunningProxy, upstream: Upstream) -> None:
    hits = upstream.hits()
    response = client.post(proxy.url(THROTTLE, "/echo"), content=b"x" * 100_000)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "1"
    assert response.json()["__type"] == "ThrottlingException"
    assert client.get(proxy.url(THROTTLE, "/echo")).status_code == 429  # the connection stays usable
    assert upstream.hits() == hits  # the upstream never saw them


def test_fault_answer_to_head_has_no_body(proxy: RunningProxy) -> None:
    conn = http.client.HTTPSConnection("127.0.0.1", proxy.ports[UNAVAILABLE], context=client_ssl(proxy.tls))
    for method in ("HEAD", "GET"):  # the HEAD answer leaves the connection in step for the GET
        conn.request(method, "/v2/repo/blobs/sha256:0")
        response = conn.getresponse()
        body = response.read()
        assert response.status == 503
        assert (body == b"") == (method == "HEAD")
    conn.close()


def test_unavailable_fault_is_503(client: httpx.Client, proxy: RunningProxy, upstream: Upstream) -> None:
    hits = upstream.hits()
    assert client.get(proxy.url(UNAVAILABLE, "/echo")).status_code == 503
    assert upstream.hits() == hits


def test_reset_fault_resets_the_connection(proxy: RunningProxy, upstream: Upstream) -> None:
    hits = upstream.hits()
    received, error = raw_exchange(proxy, RESET, b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
    assert received == b""
    # a TCP RST under TLS: Python's ssl reports ECONNRESET or, more often, an EOF without close_notify
    assert isinstance(error, ConnectionResetError | ssl.SSLEOFError), error
    assert upstream.hits() == hits


def test_lost_fault_processes_then_drops_the_response(proxy: RunningProxy, upstream: Upstream) -> None:
    hits = upstream.hits()
    received, error = raw_exchange(proxy, LOST, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n", b"abc")
    assert (received, error) == (b"", None)  # closed without a byte of response
    assert upstream.hits() == hits + 1  # but the upstream did process it


def test_stats_count_requests_and_faults_and_are_never_faulted(proxy: RunningProxy, client: httpx.Client) -> None:
    before = proxy.stats(UNAVAILABLE)
    for _ in range(3):
        client.get(proxy.url(UNAVAILABLE, "/echo"))
    after = proxy.stats(UNAVAILABLE)  # fault_rate 1.0 on this route, yet the stats answer
    assert after["requests"] - before["requests"] == 3
    assert after["faults"][UNAVAILABLE] - before["faults"][UNAVAILABLE] == 3
    assert after["forwarded"] == 0
    lost = proxy.stats(LOST)
    assert lost["forwarded"] == lost["faults"][LOST] >= 1


def outcomes(proxy: RunningProxy, route: str, count: int) -> list[str]:
    """What each of `count` sequential requests got, as a client would tell them apart."""
    seen = []
    for _ in range(count):
        received, error = raw_exchange(proxy, route, b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        if error is not None:
            seen.append(type(error).__name__)
        elif not received:
            seen.append("no response")
        else:
            seen.append(received.split(b" ", 2)[1].decode())
    return seen


def test_same_seed_same_fault_sequence(tmp_path: Path, tls: TlsFiles, upstream: Upstream) -> None:
    route = [{"name": "mixed", "upstream_port": upstream.port, "fault_rate": 0.5}]
    runs = []
    for index, seed in enumerate((5, 5, 6)):
        running = start_proxy(tmp_path / str(index), tls, route, seed=seed)
        try:
            runs.append(outcomes(running, "mixed", 40))
        finally:
            process.stop(running.record)
    first, again, other = runs
    assert first == again
    assert first != other
    assert {"200", "429", "503", "no response"} <= set(first)
    assert {"ConnectionResetError", "SSLEOFError"} & set(first)
    assert sum(o == "200" for o in first) in range(10, 31)  # about half


def test_boto3_succeeds_through_faults_with_standard_retries(proxy: RunningProxy) -> None:
    config = Config(retries={"mode": "standard", "total_max_attempts": 8}, connect_timeout=5, read_timeout=30)
    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="eu-west-1")
    common: dict[str, Any] = {"endpoint_url": proxy.url("moto"), "verify": str(proxy.tls.ca), "config": config}
    sts, ecr = session.client("sts", **common), session.client("ecr", **common)
    try:
        ecr.create_repository(repositoryName="through-faults")
    except ecr.exceptions.RepositoryAlreadyExistsException:
        pass  # a retry after a lost response finds it made: the real-cloud semantics we emulate
    for _ in range(8):
        assert sts.get_caller_identity()["Account"] == "123456789012"
        names = [r["repositoryName"] for r in ecr.describe_repositories()["repositories"]]
        assert names == ["through-faults"]
    stats = proxy.stats("moto")
    assert stats["faults_total"] > 0
    assert stats["requests"] >= 17


# every AWS protocol the migration speaks: query (STS, ELBv2), EC2, JSON (ECR, ECS, Secrets
# Manager), rest-xml (Route 53), rest-json (Amplify)
AWS_CALLS = [
    ("sts", "get_caller_identity"),
    ("elbv2", "describe_load_balancers"),
    ("ec2", "describe_vpcs"),
    ("ecr", "describe_repositories"),
    ("ecs", "list_clusters"),
    ("secretsmanager", "list_secrets"),
    ("route53", "list_hosted_zones"),
    ("amplify", "list_apps"),
]


@pytest.mark.parametrize(
    ("kind", "status", "codes", "retries"),
    [
        # one retry proves botocore classed the throttle as retryable (costs up to 1 s of backoff per call)
        (THROTTLE, 429, {"Throttling", "ThrottlingException"}, 1),
        (UNAVAILABLE, 503, {"ServiceUnavailable"}, 0),
    ],
)
def test_botocore_parses_faults_in_every_protocol(
    proxy: RunningProxy, kind: str, status: int, codes: set[str], retries: int
) -> None:
    """A fault botocore cannot parse (ResponseParserError) is never retried: each must parse."""
    config = Config(retries={"mode": "standard", "total_max_attempts": 1 + retries})
    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="eu-west-1")
    for service, operation in AWS_CALLS:
        client = session.client(service, endpoint_url=proxy.url(kind), verify=str(proxy.tls.ca), config=config)
        with pytest.raises(ClientError) as raised:
            getattr(client, operation)()
        error = raised.value.response
        assert error["ResponseMetadata"]["HTTPStatusCode"] == status, service
        assert error["Error"]["Code"] in codes, (service, error["Error"])
        assert error["ResponseMetadata"]["RetryAttempts"] == retries, service
