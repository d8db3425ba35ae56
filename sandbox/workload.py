"""A small HTTP server standing in for a running app: the ECS service behind the ALB, or any other side.

Run as `python -m sandbox.workload --port P [--side aws] [--service mmrv-backend] [--path /extra]`.
The sandbox starts one as the `aws-workload` backend (the ALB's target for every environment,
and the Amplify hosting the front end), so the traffic generator has a real AWS side to send
users to during a cutover; tests also start one per Azure side they need.

It answers the paths MMRV's smoke checks and probes use (`/`, `/healthz`, `/health`,
`/livez`, `/readyz`, `/api/health` and every `--path`) with 200 `ok`, and `GET /version`
with `{"side", "service", "host", "healthy", ...}`. Anything else is 404.

Control paths (never failed, never counted):

    GET  /__workload/state   JSON: side, failing status, delay, requests served per path and status
    POST /__workload/fail    {"status": 500} (default 500): every app path answers that status from now on
    POST /__workload/heal    back to healthy
    POST /__workload/delay   {"ms": 1200}: every app answer waits that long first
    POST /__workload/reset   zero the counters

The sandbox imports nothing from the tool's flows or tasks: it is a server.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger("sandbox.workload")

DEFAULT_PATHS = frozenset({"/", "/healthz", "/health", "/livez", "/readyz", "/api/health"})
CONTROL = "/__workload/"


class WorkloadState:
    def __init__(self, side: str, service: str, paths: Iterable[str] = ()) -> None:
        self.side = side
        self.service = service
        self.paths = frozenset(DEFAULT_PATHS | set(paths))
        self.failing_status: int | None = None
        self.delay_ms = 0
        self.served: Counter[str] = Counter()
        self.lock = threading.Lock()

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "side": self.side,
                "service": self.service,
                "failing_status": self.failing_status,
                "delay_ms": self.delay_ms,
                "served": dict(self.served),
                "requests": sum(self.served.values()),
            }


class _Handler(BaseHTTPRequestHandler):
    server: WorkloadServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _send(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, data: Any) -> None:
        self._send(status, json.dumps(data).encode(), "application/json")

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            data = json.loads(raw) if raw.strip() else {}
        except ValueError:
            data = {}
        return data if isinstance(data, dict) else {}

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        state = self.server.state
        if path == CONTROL + "state":
            self._json(200, state.snapshot())
            return
        with state.lock:
            failing, delay = state.failing_status, state.delay_ms
        if delay:
            time.sleep(delay / 1000)
        if path == "/version":
            status = failing or 200
            document = {
                "side": state.side,
                "service": state.service,
                "host": self.headers.get("Host", ""),
                "healthy": failing is None,
            }
            self._count(path, status)
            self._json(status, document)
        elif path in state.paths:
            status = failing or 200
            self._count(path, status)
            self._send(status, b"ok" if failing is None else b"failing")
        else:
            self._count(path, 404)
            self._send(404, b"not found")

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        state = self.server.state
        body = self._body()
        with state.lock:
            if path == CONTROL + "fail":
                state.failing_status = int(body.get("status", 500))
            elif path == CONTROL + "heal":
                state.failing_status = None
            elif path == CONTROL + "delay":
                state.delay_ms = max(0, int(body.get("ms", 0)))
            elif path == CONTROL + "reset":
                state.served.clear()
            else:
                self._send(404, b"not found")
                return
        log.info("%s: %s %s", state.side, path.removeprefix(CONTROL), body or "")
        self._json(200, state.snapshot())

    def _count(self, path: str, status: int) -> None:
        with self.server.state.lock:
            self.server.state.served[f"{path} {status}"] += 1


class WorkloadServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, host: str, port: int, state: WorkloadState) -> None:
        self.state = state
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def start_in_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name=f"workload-{self.state.side}", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox.workload", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--side", default="aws", help="which side this server plays (aws, azure ...)")
    parser.add_argument("--service", default="mmrv-backend")
    parser.add_argument("--path", action="append", default=[], help="another path answered with 200 ok")
    parser.add_argument("--fail-status", type=int, default=None, help="start failing with this status")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    state = WorkloadState(args.side, args.service, args.path)
    state.failing_status = args.fail_status
    server = WorkloadServer(args.host, args.port, state)
    # SIGTERM (sandbox down, a test's teardown): stop serving and exit cleanly
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    log.info("workload %s (%s) on %s", args.side, args.service, server.url)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
