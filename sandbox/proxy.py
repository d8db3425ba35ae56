"""The sandbox's only public front: a TLS-terminating HTTP/1.1 proxy that fails like a cloud.

Run as `python -m sandbox.proxy --config FILE.json`. One process serves one TLS listener per
backend ("route"). Per request, with probability `fault_rate` (an RNG seeded per route, so a
run with the same seed fails the same way), it injects one fault:

    throttle     before the upstream sees it: 429 with Retry-After: 1
    unavailable  before the upstream sees it: 503
    reset        before the upstream sees it: the TCP connection is reset (RST)
    lost         after the upstream processed it: the response is read and thrown away,
                 and the client connection is closed without an answer

A route may send some paths elsewhere (`RouteConfig.paths`, longest prefix first): an ACR
front sends `/oauth2/` to the ARM emulator (ACR's token service) and everything else to its
registry, so a client sees one host as with `<name>.azurecr.io`. Faults apply the same way
whichever upstream serves the path.

Otherwise the request is forwarded faithfully: method, target, every end-to-end header
(the original Host, which the registry builds URLs from, and Authorization included),
plus X-Forwarded-Proto/-For; bodies are streamed both ways with backpressure, so memory
stays bounded whatever the size of a registry blob. Each listener answers two reserved
paths itself, never faulted nor counted: `/__sandbox/stats` (JSON counters of all routes)
and `/__sandbox/health` (200 when the upstream accepts connections, else 502).

Written on asyncio streams with h11: one upstream keep-alive connection per client
connection, request and response pumped concurrently (an upstream may answer before it has
read the whole body, e.g. a 401 on a blob upload).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import random
import signal
import socket
import ssl
import struct
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import h11

log = logging.getLogger("sandbox.proxy")

THROTTLE = "throttle"
UNAVAILABLE = "unavailable"
RESET = "reset"
LOST = "lost"
FAULT_KINDS = (THROTTLE, UNAVAILABLE, RESET, LOST)

STATS_PATH = "/__sandbox/stats"
HEALTH_PATH = "/__sandbox/health"

CHUNK = 256 * 1024
MAX_HEADER_BYTES = 64 * 1024
IDLE_TIMEOUT = 300.0  # a keep-alive client connection with no new request for this long is closed
CONNECT_TIMEOUT = 5.0
UPSTREAM_READ_TIMEOUT = 600.0  # generous: a registry may take long to commit a large blob
# An upstream keep-alive connection idle longer than this is not reused: servers close idle
# connections on their own clocks (uvicorn after 5 s), and a request sent into a connection
# the server is closing that very moment is lost.
UPSTREAM_REUSE_IDLE = 2.0
BODY_GRACE = 1.0  # after the response, how long the request-body pump may take to finish

# Connection-specific headers (RFC 9110 section 7.6.1) are not forwarded; h11 sets its own
# framing. Expect is answered here (we send 100 Continue ourselves), never passed upstream.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"upgrade",
        b"expect",
    }
)


# --- configuration ----------------------------------------------------------------------


@dataclass(frozen=True)
class PathRoute:
    """Requests whose path starts with `prefix` go to this upstream instead of the route's own."""

    prefix: str
    upstream_port: int
    upstream_host: str = "127.0.0.1"


@dataclass(frozen=True)
class RouteConfig:
    name: str
    listen_port: int
    upstream_port: int
    upstream_host: str = "127.0.0.1"
    fault_rate: float | None = None  # None: the proxy-wide rate
    fault_kinds: tuple[str, ...] | None = None  # None: the proxy-wide kinds
    paths: tuple[PathRoute, ...] = ()  # path-prefix exceptions to the upstream above

    def upstream_for(self, path: str) -> tuple[str, int]:
        for route in sorted(self.paths, key=lambda p: len(p.prefix), reverse=True):
            if path.startswith(route.prefix):
                return route.upstream_host, route.upstream_port
        return self.upstream_host, self.upstream_port


@dataclass(frozen=True)
class ProxyConfig:
    certfile: str
    keyfile: str
    routes: tuple[RouteConfig, ...]
    host: str = "127.0.0.1"
    seed: int = 0
    fault_rate: float = 0.0
    fault_kinds: tuple[str, ...] = FAULT_KINDS

    def __post_init__(self) -> None:
        for kinds in [self.fault_kinds, *(r.fault_kinds for r in self.routes if r.fault_kinds is not None)]:
            unknown = set(kinds) - set(FAULT_KINDS)
            if unknown or not kinds:
                raise ValueError(f"fault kinds {sorted(kinds)} invalid; allowed: {', '.join(FAULT_KINDS)}")
        for rate in [self.fault_rate, *(r.fault_rate for r in self.routes if r.fault_rate is not None)]:
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"fault rate {rate} must lie within 0 and 1")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> ProxyConfig:
        data: dict[str, Any] = json.loads(text)
        routes = tuple(
            RouteConfig(
                **{
                    **r,
                    "fault_kinds": tuple(r["fault_kinds"]) if r.get("fault_kinds") else None,
                    "paths": tuple(PathRoute(**p) for p in r.get("paths") or ()),
                }
            )
            for r in data.pop("routes")
        )
        if "fault_kinds" in data:
            data["fault_kinds"] = tuple(data["fault_kinds"])
        return cls(routes=routes, **data)


# --- per-route state --------------------------------------------------------------------


@dataclass
class RouteStats:
    requests: int = 0  # requests seen, reserved paths excluded
    forwarded: int = 0  # requests that reached the upstream (including those whose response was lost)
    upstream_errors: int = 0  # answered 502: the upstream could not be reached or broke off
    faults: Counter[str] = field(default_factory=Counter)

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "forwarded": self.forwarded,
            "upstream_errors": self.upstream_errors,
            "faults": {kind: self.faults.get(kind, 0) for kind in FAULT_KINDS},
            "faults_total": sum(self.faults.values()),
        }


class Route:
    def __init__(self, config: RouteConfig, proxy: ProxyConfig) -> None:
        self.config = config
        self.rate = proxy.fault_rate if config.fault_rate is None else config.fault_rate
        self.kinds = proxy.fault_kinds if config.fault_kinds is None else config.fault_kinds
        # one RNG per route, seeded by name: a route's fault sequence does not depend on how
        # its requests interleave with other routes' requests
        self.rng = random.Random(f"{proxy.seed}:{config.name}")
        self.stats = RouteStats()

    def draw(self) -> str | None:
        """The fault for the next request, or None to forward it."""
        if self.rate <= 0.0 or self.rng.random() >= self.rate:
            return None
        return self.rng.choice(self.kinds)


# --- errors -----------------------------------------------------------------------------


class _ClientGone(Exception):
    """The client went away or broke the protocol: drop the connection."""


class _UpstreamFailed(Exception):
    """The upstream could not be reached, or broke off an exchange."""


_NET_ERRORS = (OSError, ssl.SSLError, asyncio.IncompleteReadError, EOFError)


# --- the upstream side ------------------------------------------------------------------


class Upstream:
    """One plain-HTTP keep-alive connection to a backend, spoken with an h11 client."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEADER_BYTES)
        self.idle_since = asyncio.get_running_loop().time()

    @classmethod
    async def open(cls, host: str, port: int) -> Upstream:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, limit=CHUNK), CONNECT_TIMEOUT)
        except (TimeoutError, *_NET_ERRORS) as exc:
            raise _UpstreamFailed(f"cannot connect to {host}:{port}: {exc}") from exc
        _nodelay(writer)
        return cls(reader, writer)

    def reusable(self) -> bool:
        """Idle, and the backend has not closed it meanwhile (its EOF would already be buffered)."""
        idle = asyncio.get_running_loop().time() - self.idle_since
        return (
            self.conn.our_state is h11.IDLE
            and idle < UPSTREAM_REUSE_IDLE
            and not self.reader.at_eof()
            and not self.writer.is_closing()
        )

    async def send(self, event: h11.Event) -> None:
        try:
            chunks = self.conn.send_with_data_passthrough(event)
            if chunks:
                self.writer.writelines(chunks)
                await self.writer.drain()
        except (h11.LocalProtocolError, *_NET_ERRORS) as exc:
            raise _UpstreamFailed(f"sending to the upstream: {exc}") from exc

    async def next_event(self) -> h11.Event:
        while True:
            try:
                event = self.conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise _UpstreamFailed(f"upstream broke HTTP/1.1: {exc}") from exc
            if event is h11.PAUSED:  # only after a complete response, where we never ask
                raise _UpstreamFailed("upstream connection paused")
            if event is not h11.NEED_DATA:
                if isinstance(event, h11.ConnectionClosed):
                    raise _UpstreamFailed("upstream closed the connection")
                assert isinstance(event, h11.Event)
                return event
            try:
                data = await asyncio.wait_for(self.reader.read(CHUNK), UPSTREAM_READ_TIMEOUT)
            except (TimeoutError, *_NET_ERRORS) as exc:
                raise _UpstreamFailed(f"reading from the upstream: {exc}") from exc
            self.conn.receive_data(data)

    async def next_response(self) -> h11.Response:
        while True:
            event = await self.next_event()
            if isinstance(event, h11.Response):
                return event
            # 1xx from the backend (we never send it Expect): nothing for the client

    async def discard_body(self) -> None:
        while not isinstance(await self.next_event(), h11.EndOfMessage):
            pass

    def finish_cycle(self) -> bool:
        """Prepare for the next request; False when this connection cannot carry one."""
        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            self.conn.start_next_cycle()
            self.idle_since = asyncio.get_running_loop().time()
            return True
        return False

    def close(self) -> None:
        self.writer.close()


# --- the client side --------------------------------------------------------------------


def _nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None


def _end_to_end(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    headers = list(headers)
    named = {token.strip().lower() for key, value in headers if key == b"connection" for token in value.split(b",")}
    return [(k, v) for k, v in headers if k not in HOP_BY_HOP and k not in named]


@dataclass(frozen=True)
class ErrorShape:
    status: int
    aws_code: str  # what botocore maps to a retryable error (ThrottledRetryableChecker's list)
    registry_code: str  # an OCI distribution error code
    message: str


THROTTLED = ErrorShape(429, "Throttling", "TOOMANYREQUESTS", "Rate exceeded (sandbox fault)")
SERVICE_UNAVAILABLE = ErrorShape(503, "ServiceUnavailable", "UNAVAILABLE", "Service Unavailable (sandbox fault)")
BAD_GATEWAY = ErrorShape(502, "BadGateway", "UNAVAILABLE", "The sandbox backend could not be reached")


# AWS services on the rest-xml protocol, recognised by the SigV4 scope of the Authorization header
REST_XML_SERVICES = frozenset({b"route53", b"s3", b"cloudfront"})


def _wants_xml(request: h11.Request) -> bool:
    content_type = _header(request.headers, b"content-type") or b""
    if content_type.startswith(b"application/x-www-form-urlencoded"):  # query and EC2 protocols
        return True
    authorization = _header(request.headers, b"authorization") or b""
    _, _, scope = authorization.partition(b"Credential=")
    parts = scope.split(b",", 1)[0].split(b"/")  # AKID/date/region/service/aws4_request
    return len(parts) == 5 and parts[3] in REST_XML_SERVICES


def error_body(shape: ErrorShape, request: h11.Request | None) -> tuple[str, bytes]:
    """(content type, body) of a locally made error, in the caller's protocol.

    botocore fails with ResponseParserError (never retried) on an error body it cannot
    parse in the query and EC2 protocols, so those (and rest-xml) get the XML error shape.
    Every other request gets JSON that serves all the rest: botocore's JSON parsers read
    `__type` (or the x-amzn-ErrorType header), and registry clients read `errors` (the OCI
    distribution shape).
    """
    if request is not None and _wants_xml(request):
        kind = "Sender" if shape.status < 500 else "Receiver"
        xml = (
            f"<ErrorResponse><Error><Type>{kind}</Type><Code>{shape.aws_code}</Code>"
            f"<Message>{shape.message}</Message></Error><RequestId>sandbox-fault</RequestId></ErrorResponse>"
        )
        return "text/xml", xml.encode()
    aws_type = "ThrottlingException" if shape is THROTTLED else shape.aws_code
    errors = [{"code": shape.registry_code, "message": shape.message}]
    return "application/json", json.dumps({"__type": aws_type, "message": shape.message, "errors": errors}).encode()


class ClientConnection:
    """One accepted TLS connection: a loop of requests, each faulted or forwarded."""

    def __init__(self, route: Route, proxy: Proxy, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.route = route
        self.proxy = proxy
        self.reader = reader
        self.writer = writer
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        self.upstream: Upstream | None = None  # the one the current request uses
        # one keep-alive connection per upstream this client's requests went to
        self.upstreams: dict[tuple[str, int], Upstream] = {}
        self.request: h11.Request | None = None  # the one being served
        peer = writer.get_extra_info("peername")
        self.client_ip = str(peer[0]) if peer else "unknown"

    async def serve(self) -> None:
        try:
            while True:
                event = await self._next_event(idle=True)
                if not isinstance(event, h11.Request):
                    return
                if not await self._handle(event) or not self._finish_cycle():
                    return
        except h11.RemoteProtocolError as exc:
            await self._bad_request(exc)
        except (_ClientGone, TimeoutError, *_NET_ERRORS):
            pass
        except Exception:  # a bug here must show in the log with its route, not kill the listener
            log.exception("route=%s: unexpected error; connection dropped", self.route.config.name)
        finally:
            for upstream in self.upstreams.values():
                upstream.close()
            self._close()

    # -- low-level I/O on the client side --

    async def _next_event(self, *, idle: bool = False) -> h11.Event | type[h11.PAUSED]:
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return cast(h11.Event | type[h11.PAUSED], event)
            try:
                read = self.reader.read(CHUNK)
                data = await (asyncio.wait_for(read, IDLE_TIMEOUT) if idle else read)
            except _NET_ERRORS:  # a broken client connection reads as its end
                data = b""
            self.conn.receive_data(data)

    async def _send(self, event: h11.Event) -> None:
        try:
            chunks = self.conn.send_with_data_passthrough(event)
            if chunks:
                self.writer.writelines(chunks)
                await self.writer.drain()
        except _NET_ERRORS as exc:
            raise _ClientGone(str(exc)) from exc

    async def _drain_request_body(self) -> None:
        while True:
            event = await self._next_event()
            if isinstance(event, h11.EndOfMessage):
                return
            if isinstance(event, h11.ConnectionClosed):
                raise _ClientGone("client closed mid-body")

    def _finish_cycle(self) -> bool:
        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            self.conn.start_next_cycle()
            self.request = None
            return True
        return False

    def _close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()

    def _reset(self) -> None:
        """Abort with RST: SO_LINGER with a zero timeout makes close() send a reset, not a FIN."""
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    async def _respond(
        self,
        status: int,
        body: bytes,
        headers: list[tuple[str, str]] | None = None,
        *,
        content_type: str = "application/json",
        drain: bool = True,
    ) -> bool:
        """Answer locally. Reads (and discards) the request body first, so the connection stays
        usable, except when the client waits for 100 Continue: then say no and close."""
        close = self.conn.they_are_waiting_for_100_continue or not drain
        if not close and self.conn.their_state is h11.SEND_BODY:
            await self._drain_request_body()
        all_headers = [("content-type", content_type), ("content-length", str(len(body))), *(headers or [])]
        if close:
            all_headers.append(("connection", "close"))
        await self._send(h11.Response(status_code=status, headers=all_headers))
        if self.request is None or self.request.method != b"HEAD":  # a HEAD answer has headers only
            await self._send(h11.Data(data=body))
        await self._send(h11.EndOfMessage())
        return not close

    async def _error(self, shape: ErrorShape, headers: list[tuple[str, str]] | None = None, **kw: bool) -> bool:
        content_type, body = error_body(shape, self.request)
        extra = [("x-amzn-errortype", shape.aws_code), *(headers or [])]
        return await self._respond(shape.status, body, extra, content_type=content_type, **kw)

    async def _bad_request(self, exc: Exception) -> None:
        if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            with contextlib.suppress(Exception):
                body = json.dumps({"message": f"bad request: {exc}"}).encode()
                await self._respond(400, body, drain=False)

    # -- one request --

    async def _handle(self, request: h11.Request) -> bool:
        """Serve one request; True when the connection can carry another."""
        self.request = request
        path = request.target.split(b"?", 1)[0].decode("ascii", "replace")
        if path in (STATS_PATH, HEALTH_PATH):
            return await self._reserved(request, path)
        stats = self.route.stats
        stats.requests += 1
        fault = self.route.draw()
        if fault is not None:
            stats.faults[fault] += 1
            # the path only: a query string may carry presigned credentials
            log.warning("fault %s route=%s %s %s", fault, self.route.config.name, request.method.decode(), path)
        if fault == RESET:
            self._reset()
            return False
        if fault == THROTTLE:
            return await self._error(THROTTLED, [("retry-after", "1")])
        if fault == UNAVAILABLE:
            return await self._error(SERVICE_UNAVAILABLE)
        return await self._forward(request, lose_response=fault == LOST)

    async def _reserved(self, request: h11.Request, path: str) -> bool:
        if request.method not in (b"GET", b"HEAD"):
            return await self._respond(405, b'{"message": "GET only"}', [("allow", "GET, HEAD")])
        if path == STATS_PATH:
            body = json.dumps({"route": self.route.config.name, "routes": self.proxy.stats()}, indent=1).encode()
            return await self._respond(200, body)
        config = self.route.config
        try:
            probe = await Upstream.open(config.upstream_host, config.upstream_port)
        except _UpstreamFailed:
            return await self._respond(502, b'{"upstream": "down"}')
        probe.close()
        return await self._respond(200, b'{"upstream": "up"}')

    def _upstream_headers(self, request: h11.Request) -> list[tuple[bytes, bytes]]:
        headers = [
            (k, v) for k, v in _end_to_end(request.headers) if k not in (b"x-forwarded-proto", b"x-forwarded-for")
        ]
        forwarded_for = _header(request.headers, b"x-forwarded-for")
        client = self.client_ip.encode()
        headers.append((b"x-forwarded-for", forwarded_for + b", " + client if forwarded_for else client))
        headers.append((b"x-forwarded-proto", b"https"))
        if _header(headers, b"host") is None:  # an HTTP/1.0 client may omit it; h11 needs it upstream
            headers.append((b"host", f"127.0.0.1:{self.route.config.listen_port}".encode()))
        return headers

    async def _connect_upstream(self, path: str) -> Upstream:
        target = self.route.config.upstream_for(path)
        upstream = self.upstreams.pop(target, None)
        if upstream is not None and not upstream.reusable():
            upstream.close()
            upstream = None
        if upstream is None:
            upstream = await Upstream.open(*target)
        self.upstreams[target] = self.upstream = upstream
        return upstream

    def _drop_upstream(self) -> None:
        if self.upstream is not None:
            self.upstream.close()
            self.upstreams = {k: v for k, v in self.upstreams.items() if v is not self.upstream}
            self.upstream = None

    async def _pump_request_body(self, upstream: Upstream) -> None:
        """Client body -> upstream. Stops quietly if the upstream stops reading (it may be
        answering early); raises _ClientGone if the client breaks off."""
        while True:
            event = await self._next_event()
            if isinstance(event, h11.ConnectionClosed):
                raise _ClientGone("client closed mid-body")
            if not isinstance(event, h11.Data | h11.EndOfMessage):
                continue
            try:
                await upstream.send(event)
            except _UpstreamFailed:
                return
            if isinstance(event, h11.EndOfMessage):
                return

    async def _forward(self, request: h11.Request, *, lose_response: bool) -> bool:
        stats = self.route.stats
        try:
            upstream = await self._connect_upstream(request.target.split(b"?", 1)[0].decode("ascii", "replace"))
            headers = self._upstream_headers(request)
            await upstream.send(h11.Request(method=request.method, target=request.target, headers=headers))
        except _UpstreamFailed as exc:
            stats.upstream_errors += 1
            log.error("route=%s upstream unreachable: %s", self.route.config.name, exc)
            self._drop_upstream()
            return await self._error(BAD_GATEWAY)
        stats.forwarded += 1
        if self.conn.they_are_waiting_for_100_continue:
            await self._send(h11.InformationalResponse(status_code=100, headers=[]))

        pump = asyncio.create_task(self._pump_request_body(upstream))
        head = asyncio.create_task(upstream.next_response())
        try:
            await asyncio.wait({pump, head}, return_when=asyncio.FIRST_COMPLETED)
            if pump.done() and pump.exception() is not None:
                raise _ClientGone("client broke off the request body")
            try:
                response = await head
            except _UpstreamFailed as exc:
                stats.upstream_errors += 1
                log.error("route=%s upstream failed before answering: %s", self.route.config.name, exc)
                self._drop_upstream()
                await self._error(BAD_GATEWAY, drain=False)
                return False
            if lose_response:
                await upstream.discard_body()
                self._close()
                return False
            await self._relay_response(upstream, response)
            if not pump.done():
                await asyncio.wait({pump}, timeout=BODY_GRACE)
            keep = pump.done() and not pump.cancelled() and pump.exception() is None
            if not upstream.finish_cycle():
                self._drop_upstream()
            return keep
        except (_ClientGone, _UpstreamFailed):
            self._drop_upstream()
            raise _ClientGone("exchange broken off") from None
        finally:
            for task in (pump, head):
                if not task.done():
                    task.cancel()
            await asyncio.gather(pump, head, return_exceptions=True)

    async def _relay_response(self, upstream: Upstream, response: h11.Response) -> None:
        headers = _end_to_end(response.headers)
        await self._send(h11.Response(status_code=response.status_code, headers=headers, reason=response.reason))
        while True:
            try:
                event = await upstream.next_event()
            except _UpstreamFailed:
                # mid-body: the status is already sent, only a broken connection says "failed"
                self.route.stats.upstream_errors += 1
                self._reset()
                raise
            if isinstance(event, h11.Data):
                await self._send(event)
            elif isinstance(event, h11.EndOfMessage):
                await self._send(h11.EndOfMessage())
                return


# --- the server -------------------------------------------------------------------------


class Proxy:
    def __init__(self, config: ProxyConfig) -> None:
        self.config = config
        self.routes = [Route(r, config) for r in config.routes]
        self.ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ssl.load_cert_chain(config.certfile, config.keyfile)
        self.servers: list[asyncio.Server] = []
        self._connections: set[asyncio.Task[None]] = set()

    def stats(self) -> dict[str, Any]:
        return {r.config.name: r.stats.to_json() for r in self.routes}

    async def start(self) -> None:
        for route in self.routes:

            async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, route: Route = route) -> None:
                _nodelay(writer)
                task = asyncio.current_task()
                if task is not None:
                    self._connections.add(task)
                try:
                    await ClientConnection(route, self, reader, writer).serve()
                finally:
                    if task is not None:
                        self._connections.discard(task)

            server = await asyncio.start_server(
                accept,
                self.config.host,
                route.config.listen_port,
                ssl=self.ssl,
                limit=CHUNK,
                reuse_address=True,
                ssl_handshake_timeout=30,
            )
            self.servers.append(server)
            exceptions = "".join(
                f", {p.prefix}* -> http://{p.upstream_host}:{p.upstream_port}" for p in route.config.paths
            )
            log.info(
                "route %s: https://%s:%d -> http://%s:%d%s (fault rate %.2f, kinds %s)",
                route.config.name,
                self.config.host,
                route.config.listen_port,
                route.config.upstream_host,
                route.config.upstream_port,
                exceptions,
                route.rate,
                ",".join(route.kinds),
            )

    async def close(self) -> None:
        for server in self.servers:
            server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)


async def _run(config: ProxyConfig) -> None:
    proxy = Proxy(config)
    await proxy.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping: %s", json.dumps(proxy.stats()))
    await proxy.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox.proxy", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, type=Path, help="JSON file (see ProxyConfig)")
    parser.add_argument("--seed", type=int, help="override the config's seed")
    parser.add_argument("--fault-rate", type=float, help="override the config's fault rate")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    config = ProxyConfig.from_json(args.config.read_text(encoding="utf-8"))
    overrides: dict[str, Any] = {}
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.fault_rate is not None:
        overrides["fault_rate"] = args.fault_rate
    if overrides:
        config = ProxyConfig(**{**asdict(config), "routes": config.routes, **overrides})
    asyncio.run(_run(config))


if __name__ == "__main__":
    main()
