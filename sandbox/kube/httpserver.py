"""A small HTTP/1.1 server on asyncio streams (h11), for the apps and load balancers.

The emulator starts and stops many of these inside its own event loop (one per app
revision, one per LoadBalancer port, one per cluster's ingress), which uvicorn is not
made for. Keep-alive is supported; `stop()` closes open connections too, so a stopped
pod's clients see a reset, as they would.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import h11

log = logging.getLogger(__name__)

_MAX_BODY = 16 * 1024 * 1024


@dataclass
class HttpRequest:
    method: str
    target: str  # path and query, as sent
    headers: list[tuple[str, str]]
    body: bytes = b""

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k == name), None)


@dataclass
class HttpResponse:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def text(cls, status: int, text: str) -> HttpResponse:
        return cls(status, text.encode(), [("content-type", "text/plain; charset=utf-8")])

    @classmethod
    def json(cls, status: int, body: bytes) -> HttpResponse:
        return cls(status, body, [("content-type", "application/json")])


Handler = Callable[[HttpRequest], Awaitable[HttpResponse]]


class HttpServer:
    def __init__(self, handler: Handler, *, host: str = "127.0.0.1", port: int = 0, name: str = "http") -> None:
        self.handler = handler
        self.host = host
        self.wanted_port = port
        self.name = name
        self.port = 0
        self._server: asyncio.base_events.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()

    async def start(self) -> int:
        """Listen on the wanted port if it is free, else on any port; returns the port."""
        try:
            self._server = await asyncio.start_server(self._serve, self.host, self.wanted_port)
        except OSError:
            if not self.wanted_port:
                raise
            log.info("%s: port %s is taken, using another", self.name, self.wanted_port)
            self._server = await asyncio.start_server(self._serve, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._connections):
            writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 2.0)
        self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(writer)
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request = await self._read_request(conn, reader)
                if request is None:
                    return
                try:
                    response = await self.handler(request)
                except Exception:
                    log.exception("%s: handler failed", self.name)
                    response = HttpResponse.text(500, "internal error")
                headers = [(k, v) for k, v in response.headers if k.lower() not in ("content-length", "connection")]
                headers.append(("content-length", str(len(response.body))))
                writer.write(conn.send(h11.Response(status_code=response.status, headers=headers)))
                if response.body and request.method != "HEAD":
                    writer.write(conn.send(h11.Data(data=response.body)))
                writer.write(conn.send(h11.EndOfMessage()))
                await writer.drain()
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (h11.RemoteProtocolError, h11.LocalProtocolError, ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._connections.discard(writer)
            writer.close()

    async def _read_request(self, conn: h11.Connection, reader: asyncio.StreamReader) -> HttpRequest | None:
        request: HttpRequest | None = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await reader.read(65536)
                conn.receive_data(data)
                if not data and conn.their_state is h11.IDLE:
                    return None
                continue
            if isinstance(event, h11.Request):
                request = HttpRequest(
                    event.method.decode(),
                    event.target.decode(),
                    [(k.decode().lower(), v.decode(errors="replace")) for k, v in event.headers],
                )
            elif isinstance(event, h11.Data):
                body.extend(event.data)
                if len(body) > _MAX_BODY:
                    return None
            elif isinstance(event, h11.EndOfMessage):
                if request is not None:
                    request.body = bytes(body)
                return request
            elif isinstance(event, h11.ConnectionClosed):
                return None
