"""Real registries for the image tests: Distribution (`docker-registry serve`), an ACR-style token
server, the sandbox's fault proxy in front, and a source that serves corrupted blobs.

- `start_registry`: the sandbox's own registry set-up (`sandbox.registry.prepare_registry`,
  htpasswd user and password), started with `sandbox.process`; `auth="token"` swaps the
  htpasswd section for Distribution's `auth.token` pointing at an `AcrTokenServer`. Access
  logs are on: `RunningRegistry.access()` parses them to count uploads, mounts and bytes served.
- `AcrTokenServer`: ACR's token protocol on a real socket: `POST /oauth2/exchange` (an
  Entra token for a refresh token), `POST /oauth2/token` (a refresh token for an access
  token per scope) and the Docker `GET /oauth2/token` with basic auth (user
  00000000-0000-0000-0000-000000000000, the refresh token as password), as a daemon logs
  in. Access tokens are RS256 JWTs with an x5c header that Distribution verifies.
- `start_fault_proxy`: `python -m sandbox.proxy` (TLS, the sandbox's CA) with one route per registry.
- `CorruptSource`: a registry API that serves one manifest whose first layer's bytes do not
  match its digest.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
import secrets
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from sandbox import process
from sandbox.certs import TlsFiles, ensure_tls
from sandbox.proxy import ProxyConfig, RouteConfig
from sandbox.registry import RegistrySetupError, prepare_registry

ROOT = Path(__file__).resolve().parent.parent
ACR_NULL_USER = "00000000-0000-0000-0000-000000000000"
_ACCESS = re.compile(r'"(?P<method>[A-Z]+) (?P<uri>\S+) HTTP/[\d.]+" (?P<status>\d{3}) (?P<bytes>\d+|-)')


@dataclass(frozen=True)
class AccessLine:
    method: str
    path: str
    query: dict[str, list[str]]
    status: int
    bytes: int


@dataclass
class RunningRegistry:
    name: str
    port: int
    record: process.ProcessRecord
    log: Path
    data: Path
    user: str
    password: str

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def stop(self) -> None:
        process.stop(self.record)

    def access(self) -> list[AccessLine]:
        """The registry's access log (combined format), parsed."""
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            m = _ACCESS.search(line)
            if not m or "response completed" in line:
                continue
            parsed = urlparse(m["uri"])
            size = 0 if m["bytes"] == "-" else int(m["bytes"])
            out.append(AccessLine(m["method"], parsed.path, parse_qs(parsed.query), int(m["status"]), size))
        return out

    def wipe(self) -> None:
        """Forget every repository and blob (the registry keeps no cache, so it sees an empty store at once)."""
        import shutil

        shutil.rmtree(self.data / "docker", ignore_errors=True)

    def mark(self) -> int:
        """A position in the access log: `access_since(mark)` shows only what came after."""
        return len(self.access())

    def access_since(self, mark: int) -> list[AccessLine]:
        return self.access()[mark:]


def blob_uploads(lines: list[AccessLine]) -> list[AccessLine]:
    """Committed blob uploads: the final PUT of an upload session (monolithic or after PATCHes)."""
    return [a for a in lines if a.method == "PUT" and "/blobs/uploads/" in a.path and a.status == 201]


def mounts(lines: list[AccessLine]) -> list[AccessLine]:
    return [a for a in lines if a.method == "POST" and "mount" in a.query and a.status == 201]


def blob_bytes_served(lines: list[AccessLine]) -> int:
    return sum(a.bytes for a in lines if a.method == "GET" and "/blobs/sha256:" in a.path and a.status == 200)


def start_registry(
    home: Path,
    name: str,
    *,
    user: str = "AWS",
    password: str = "registry-password",
    token: AcrTokenServer | None = None,
) -> RunningRegistry:
    """A Distribution registry on a free loopback port, plain HTTP, access log on."""
    home.mkdir(parents=True, exist_ok=True)
    (port,) = process.free_ports(1)
    try:
        argv = prepare_registry(home, name=name, port=port, user=user, password=password)
    except RegistrySetupError as exc:
        pytest.skip(str(exc))
    config_path = home / "config.yml"
    config = yaml.safe_load(config_path.read_text())
    if token is not None:
        config["auth"] = {
            "token": {
                "realm": token.realm,
                "service": token.service_for(f"127.0.0.1:{port}"),
                "issuer": token.issuer,
                "rootcertbundle": str(token.cert_path),
            }
        }
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    log = home / "registry.log"
    record = process.spawn(argv, log_path=log, env={"PATH": "/usr/bin:/bin"}, cwd=home)
    registry = RunningRegistry(name, port, record, log, home / "data", user, password)
    deadline = time.monotonic() + 20
    while not process.port_accepts(port):
        if not process.is_running(record) or time.monotonic() > deadline:
            process.stop(record)
            raise RuntimeError(f"registry {name} did not start: {process.tail(log, 20)}")
        time.sleep(0.05)
    return registry


# --- an ACR-style token server ------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class AcrTokenServer:
    """ACR's /oauth2/exchange and /oauth2/token on 127.0.0.1 (plain HTTP), issuing Distribution JWTs."""

    home: Path
    accepted_aad_tokens: set[str]
    tenant: str | None = None
    # repository -> actions granted (None: whatever is asked); lets a test refuse push
    grants: dict[str, set[str]] | None = None
    calls: list[tuple[str, dict[str, list[str]]]] = field(default_factory=list)
    issuer: str = "mmrv-test-acr"

    def __post_init__(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mmrv test token issuer")])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.cert_path = self.home / "token-issuer.pem"
        self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self._x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
        self._refresh: dict[str, str] = {}  # refresh token -> service
        (self.port,) = process.free_ports(1)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode(), keep_blank_values=True)
                path = urlparse(self.path).path
                server.calls.append((f"POST {path}", {k: v for k, v in form.items() if "token" not in k}))
                status, body = server.handle_post(path, form)
                self._reply(status, body)

            def do_GET(self) -> None:
                parsed = urlparse(self.path)
                query = parse_qs(parsed.query)
                server.calls.append((f"GET {parsed.path}", query))
                status, body = server.handle_get(parsed.path, query, self.headers.get("Authorization", ""))
                self._reply(status, body)

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/oauth2/token"

    def service_for(self, host: str) -> str:
        return host

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- the protocol --

    def handle_post(self, path: str, form: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        first = {k: v[0] for k, v in form.items()}
        if path == "/oauth2/exchange":
            if first.get("grant_type") != "access_token" or not first.get("service"):
                return 400, {"error": "invalid_request", "error_description": "grant_type and service required"}
            if self.tenant and first.get("tenant") not in (None, self.tenant):
                return 401, {"error": "invalid_tenant"}
            if first.get("access_token") not in self.accepted_aad_tokens:
                return 401, {"error": "unauthorized", "error_description": "the Entra token is not accepted"}
            refresh = secrets.token_urlsafe(24)
            self._refresh[refresh] = first["service"]
            return 200, {"refresh_token": refresh}
        if path == "/oauth2/token":
            if first.get("grant_type") != "refresh_token":
                return 400, {"error": "unsupported_grant_type"}
            service = self._refresh.get(first.get("refresh_token", ""))
            if service is None or service != first.get("service"):
                return 401, {"error": "invalid_grant", "error_description": "unknown refresh token"}
            return 200, {"access_token": self._jwt(service, form.get("scope", []))}
        return 404, {"error": "not found"}

    def handle_get(self, path: str, query: dict[str, list[str]], authorization: str) -> tuple[int, dict[str, Any]]:
        if path != "/oauth2/token":
            return 404, {"error": "not found"}
        user, _, password = base64.b64decode(authorization.removeprefix("Basic ") or "Og==").decode().partition(":")
        service = self._refresh.get(password)
        if user != ACR_NULL_USER or service is None:
            return 401, {"error": "unauthorized"}
        token = self._jwt(service, query.get("scope", []))
        return 200, {"token": token, "access_token": token}

    def _jwt(self, service: str, scopes: list[str]) -> str:
        access = []
        for scope in scopes:
            for item in scope.split(" "):
                kind, _, rest = item.partition(":")
                name, _, actions = rest.rpartition(":")
                if kind != "repository" or not name:
                    continue
                wanted = set(actions.split(","))
                if self.grants is not None:
                    wanted &= self.grants.get(name, set())
                access.append({"type": "repository", "name": name, "actions": sorted(wanted)})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self._x5c]}
        claims = {
            "iss": self.issuer,
            "sub": "mmrv-test",
            "aud": service,
            "exp": now + 600,
            "nbf": now - 60,
            "iat": now,
            "jti": str(uuid.uuid4()),
            "access": access,
        }
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        signature = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64url(signature)}"


# --- the fault proxy ----------------------------------------------------------------------


@dataclass
class RunningProxy:
    record: process.ProcessRecord
    ports: dict[str, int]
    tls: TlsFiles
    log: Path

    def host(self, route: str) -> str:
        return f"127.0.0.1:{self.ports[route]}"

    def stats(self, route: str) -> dict[str, Any]:
        with httpx.Client(verify=str(self.tls.ca)) as client:
            url = f"https://{self.host(route)}/__sandbox/stats"
            return dict(client.get(url).json()["routes"][route])

    def stop(self) -> None:
        process.stop(self.record)


def start_fault_proxy(
    home: Path, upstreams: dict[str, int], *, fault_rate: float, seed: int = 7, kinds: tuple[str, ...] | None = None
) -> RunningProxy:
    """`python -m sandbox.proxy` with a TLS route per upstream port (the sandbox's CA in `home`)."""
    home.mkdir(parents=True, exist_ok=True)
    tls = ensure_tls(home / "tls")
    ports = dict(zip(upstreams, process.free_ports(len(upstreams)), strict=True))
    config = ProxyConfig(
        certfile=str(tls.server_cert),
        keyfile=str(tls.server_key),
        seed=seed,
        fault_rate=fault_rate,
        **({"fault_kinds": kinds} if kinds else {}),
        routes=tuple(RouteConfig(name, ports[name], upstream) for name, upstream in upstreams.items()),
    )
    config_path = home / "proxy.json"
    config_path.write_text(config.to_json())
    log = home / "proxy.log"
    record = process.spawn(
        [sys.executable, "-m", "sandbox.proxy", "--config", str(config_path)],
        log_path=log,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        cwd=home,
    )
    deadline = time.monotonic() + 20
    while not all(process.port_accepts(p) for p in ports.values()):
        if not process.is_running(record) or time.monotonic() > deadline:
            process.stop(record)
            raise RuntimeError(f"fault proxy did not start: {process.tail(log, 20)}")
        time.sleep(0.05)
    return RunningProxy(record, ports, tls, log)


# --- a source that lies -------------------------------------------------------------------


class CorruptSource:
    """Serves `/v2/<repo>/manifests/<ref>` and blobs of one image whose first layer is corrupted
    in transit (the bytes served hash to something else than the digest the manifest names)."""

    def __init__(self, manifest: bytes, media_type: str, blobs: dict[str, bytes], corrupt: str) -> None:
        self.manifest = manifest
        self.digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        self.media_type = media_type
        self.blobs = blobs
        self.corrupt = corrupt
        self.port = process.free_ports(1)[0]
        source = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def do_GET(self) -> None:
                path = urlparse(self.path).path
                if path == "/v2/":
                    return self._send(200, b"{}", {"Content-Type": "application/json"})
                if "/manifests/" in path:
                    headers = {"Content-Type": source.media_type, "Docker-Content-Digest": source.digest}
                    return self._send(200, source.manifest, headers)
                digest = path.rsplit("/", 1)[-1]
                if "/blobs/" in path and digest in source.blobs:
                    data = source.blobs[digest]
                    if digest == source.corrupt:
                        data = bytes([data[0] ^ 0xFF]) + data[1:]  # one flipped byte, same length
                    return self._send(200, data, {"Content-Type": "application/octet-stream"})
                return self._send(404, b'{"errors":[{"code":"BLOB_UNKNOWN"}]}', {"Content-Type": "application/json"})

            do_HEAD = do_GET

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


# --- a Docker Engine API: podman's service ------------------------------------------------


@dataclass
class RunningPodman:
    record: process.ProcessRecord
    socket: Path
    home: Path
    log: Path

    @property
    def docker_host(self) -> str:
        return f"unix://{self.socket}"

    def stop(self) -> None:
        process.stop(self.record)


def start_podman(home: Path, insecure_hosts: list[str]) -> RunningPodman:
    """`podman system service` on a unix socket with vfs storage under `home` and the given registries
    marked insecure (plain http or unverified TLS); skips the test when podman cannot serve here."""
    import shutil

    binary = shutil.which("podman")
    if binary is None:
        pytest.skip("podman (Debian package podman) is not installed")
    home.mkdir(parents=True, exist_ok=True)
    storage = home / "storage.conf"
    storage.write_text(
        f'[storage]\ndriver = "vfs"\ngraphroot = "{home}/graph"\nrunroot = "{home}/run"\n', encoding="utf-8"
    )
    registries = home / "registries.conf"
    registries.write_text(
        "unqualified-search-registries = []\n"
        + "".join(f'\n[[registry]]\nlocation = "{h}"\ninsecure = true\n' for h in insecure_hosts),
        encoding="utf-8",
    )
    sock = home / "podman.sock"
    log = home / "podman.log"
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(home),
        "CONTAINERS_STORAGE_CONF": str(storage),
        "CONTAINERS_REGISTRIES_CONF": str(registries),
        "XDG_RUNTIME_DIR": str(home / "xdg"),
        "TMPDIR": str(home),
    }
    (home / "xdg").mkdir(exist_ok=True)
    record = process.spawn(
        [binary, "--log-level=info", "system", "service", "--time=0", f"unix://{sock}"], log_path=log, env=env, cwd=home
    )
    deadline = time.monotonic() + 30
    while True:
        if sock.exists():
            try:
                transport = httpx.HTTPTransport(uds=str(sock))
                with httpx.Client(transport=transport, timeout=5) as client:
                    if client.get("http://d/_ping").status_code == 200:
                        break
            except httpx.HTTPError:
                pass
        if not process.is_running(record) or time.monotonic() > deadline:
            process.stop(record)
            pytest.skip(f"podman's API service cannot start here: {process.tail(log, 5)}")
        time.sleep(0.1)
    return RunningPodman(record, sock, home, log)
