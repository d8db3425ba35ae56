"""An OCI distribution client over httpx: the only code that speaks HTTP to registries.

What it does, per registry host (`RegistryClient`):

- Authentication. Basic credentials (ECR: the `get_authorization_token` user and password;
  any htpasswd Distribution) are sent with the first request. A `WWW-Authenticate: Bearer`
  challenge is answered with a token for exactly the scope the request needs, cached per
  scope and fetched again on a 401: the Docker token protocol (`GET realm?service&scope`,
  with the basic credentials if any) for any Distribution token server, and ACR's own when
  an Entra token is at hand and the realm is `.../oauth2/token`: the Entra token is
  exchanged once for a refresh token (`POST .../oauth2/exchange`, form grant_type=
  access_token, service, tenant, access_token), which buys an access token per scope
  (`POST .../oauth2/token`, grant_type=refresh_token, service, scope, refresh_token).
- Manifests are read and written as exact bytes (`Docker-Content-Digest` and our own
  sha256 must agree, so a digest is never changed by a copy), images and indexes alike.
- Blobs: HEAD before upload, cross-repository mount (`POST /v2/<repo>/blobs/uploads/?
  mount=<digest>&from=<repo>`), monolithic streamed PUT or chunked PATCHes; the body comes
  straight from the source's GET and is hashed on the way: a blob whose bytes do not match
  its digest is never committed (the last piece is held back until the digest checks out).
- Faults: 429 (honouring Retry-After), 408, 5xx and broken connections are retried with
  exponential backoff and jitter; requests with a body that cannot be replayed (a streamed
  upload) are not retried here but raise TransientError, and the caller restarts the whole
  upload (HEAD first, so an upload whose response was lost is not done twice).
- TLS is verified against `ca_bundle` exactly when given (never the environment's bundle).

Errors are `migration.errors` kinds whose service is `registry <host>`, so every message
names the registry. Secrets (passwords, tokens) never appear in messages or logs.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import random
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NoReturn, TypeVar

import httpx

from migration.errors import CloudError, NotFoundError, PermanentError, TransientError
from migration.images import INDEX_TYPES, MANIFEST_TYPES, BlobRef

log = logging.getLogger(__name__)

T = TypeVar("T")
READ_CHUNK = 1024 * 1024  # bytes per read from a source stream; the most a copy holds per blob
ACR_NULL_USER = "00000000-0000-0000-0000-000000000000"  # the user name ACR refresh tokens go with


class RegistryTransient(TransientError):
    """A transient registry failure; `retry_after` is the server's hint in seconds, if it gave one."""

    def __init__(self, service: str, message: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(service, message, status)
        self.retry_after = retry_after


class CorruptBlob(PermanentError):
    """The source served bytes that do not match the digest: the image fails, nothing is committed."""


@dataclass(frozen=True)
class BasicLogin:
    username: str
    password: str = field(repr=False)
    expires_at: datetime | None = None


@dataclass
class RegistryAuth:
    """How to authenticate to one registry. Empty: anonymous (and any Bearer challenge anonymously)."""

    basic: BasicLogin | None = None
    # fetches fresh basic credentials when the registry refuses the current ones (ECR's expire after 12 h)
    refresh_basic: Callable[[], BasicLogin] | None = field(default=None, repr=False)
    # ACR: an Entra access token for ARM (what `az acr login` exchanges), and its tenant
    aad_token: Callable[[], str] | None = field(default=None, repr=False)
    tenant: str | None = None


@dataclass(frozen=True)
class RegistryOptions:
    ca_bundle: str | None = None  # PEM file to trust, exactly (the sandbox's CA); None: the system's
    plain_http: bool = False  # speak http:// (a registry on loopback without TLS)
    max_attempts: int = 8
    backoff_seconds: float = 0.25
    backoff_cap_seconds: float = 8.0
    retry_after_cap_seconds: float = 30.0
    connect_timeout: float = 10.0
    read_timeout: float = 120.0
    chunk_threshold: int = 256 * 1024 * 1024  # blobs larger than this go up in PATCH chunks
    chunk_size: int = 64 * 1024 * 1024
    pool_size: int = 16  # keep-alive connections per registry


@dataclass(frozen=True)
class Manifest:
    data: bytes
    media_type: str
    digest: str

    def json(self) -> dict[str, Any]:
        try:
            parsed = json.loads(self.data)
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {}

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES

    def children(self) -> list[str]:
        """Digests of the manifests an index lists."""
        return [str(m["digest"]) for m in self.json().get("manifests", []) if m.get("digest")]

    def blobs(self) -> list[BlobRef]:
        """Config and layers of an image manifest, in order (an index has none of its own)."""
        body = self.json()
        out = []
        for item in [body.get("config"), *body.get("layers", [])]:
            if isinstance(item, dict) and item.get("digest"):
                out.append(
                    BlobRef(
                        digest=item["digest"], size=int(item.get("size") or 0), media_type=item.get("mediaType", "")
                    )
                )
        return out


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# --- challenges and scopes ----------------------------------------------------------------

_PARAM = re.compile(r'(\w+)=(?:"([^"]*)"|([^,\s]*))')


@dataclass(frozen=True)
class Challenge:
    scheme: str  # "basic" or "bearer"
    realm: str = ""
    service: str = ""
    scope: str = ""


def parse_challenge(header: str) -> Challenge | None:
    scheme, _, rest = header.strip().partition(" ")
    if not scheme:
        return None
    params = {m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3) for m in _PARAM.finditer(rest)}
    return Challenge(scheme.lower(), params.get("realm", ""), params.get("service", ""), params.get("scope", ""))


def repo_scope(repository: str, push: bool = False) -> str:
    return f"repository:{repository}:{'pull,push' if push else 'pull'}"


# --- the client ---------------------------------------------------------------------------


class RegistryClient:
    """One registry host. Thread-safe: share one per registry across a transfer's threads."""

    def __init__(self, host: str, auth: RegistryAuth | None = None, options: RegistryOptions | None = None) -> None:
        self.host = host
        self.auth = auth or RegistryAuth()
        self.options = options or RegistryOptions()
        self.service = f"registry {host}"
        self.base_url = f"{'http' if self.options.plain_http else 'https'}://{host}"
        verify: ssl.SSLContext = (
            ssl.create_default_context(cafile=self.options.ca_bundle)
            if self.options.ca_bundle
            else ssl.create_default_context()
        )
        self._http = httpx.Client(
            verify=verify,
            timeout=httpx.Timeout(self.options.read_timeout, connect=self.options.connect_timeout),
            limits=httpx.Limits(
                max_connections=self.options.pool_size, max_keepalive_connections=self.options.pool_size
            ),
            headers={"User-Agent": "mmrv-migrate"},
        )
        self._lock = threading.Lock()
        self._challenge: Challenge | None = None
        self._tokens: dict[str, str] = {}
        self._refresh_token: str | None = None
        self._basic_refused = False

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- errors ------------------------------------------------------------------------

    def _fail(self, response: httpx.Response, what: str) -> NoReturn:
        status = response.status_code
        code, message = _registry_error(response)
        detail = f"{what}: {message or code or response.reason_phrase}" + (f" [{code}]" if code and message else "")
        if status in (408, 429) or status >= 500:
            raise RegistryTransient(self.service, detail, status, _retry_after(response))
        if status == 404:
            raise NotFoundError(self.service, detail, status)
        if status == 401:
            raise PermanentError(self.service, f"{what}: credentials refused", status)
        if status == 403:
            raise PermanentError(self.service, f"{what}: access denied ({message or code or 'forbidden'})", status)
        raise PermanentError(self.service, detail, status)

    def transport_error(self, exc: httpx.HTTPError, what: str) -> CloudError:
        text = str(exc) or type(exc).__name__
        if isinstance(exc, httpx.ConnectError):
            if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
                return PermanentError(self.service, f"{what}: TLS certificate not trusted ({text})")
            if "WRONG_VERSION_NUMBER" in text or "wrong version number" in text:
                return PermanentError(
                    self.service, f"{what}: the registry does not speak TLS (list it in MMRV_PLAIN_HTTP_REGISTRIES)"
                )
            return RegistryTransient(self.service, f"{what}: cannot reach the registry ({text})")
        return RegistryTransient(self.service, f"{what}: connection problem ({type(exc).__name__}: {text})")

    def retrying(self, what: str, operation: Callable[[], T]) -> T:
        """Run `operation`, retrying TransientErrors with exponential backoff and jitter (or Retry-After)."""
        attempts = max(1, self.options.max_attempts)
        for attempt in range(1, attempts + 1):
            try:
                return operation()
            except TransientError as exc:
                if attempt == attempts:
                    raise
                delay = self.backoff_delay(attempt, exc)
                log.info("%s: %s; retry %d/%d in %.2f s", self.service, exc, attempt, attempts - 1, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def backoff_delay(self, attempt: int, exc: TransientError) -> float:
        """Seconds to wait before attempt `attempt + 1`: the server's Retry-After, else exponential with jitter."""
        hint = getattr(exc, "retry_after", None)
        if hint is not None:
            return float(min(hint, self.options.retry_after_cap_seconds))
        delay = min(self.options.backoff_cap_seconds, self.options.backoff_seconds * 2 ** (attempt - 1))
        return delay * (0.5 + random.random())  # jitter: threads hit by one fault do not retry in step

    # -- authentication ----------------------------------------------------------------

    def _auth_headers(self, scope: str) -> dict[str, str]:
        with self._lock:
            challenge = self._challenge
            token = self._tokens.get(scope)
        if token:
            return {"Authorization": f"Bearer {token}"}
        if challenge is not None and challenge.scheme == "bearer":
            return {"Authorization": f"Bearer {self._token(challenge, scope)}"}
        basic = self._basic()
        if basic is not None and not self._basic_refused:
            return {"Authorization": _basic_header(basic)}
        return {}

    def _basic(self) -> BasicLogin | None:
        """The basic credentials, fetched at first use when only a way to fetch them was given."""
        if self.auth.basic is None and self.auth.refresh_basic is not None:
            with self._lock:
                if self.auth.basic is None:
                    self.auth.basic = self.auth.refresh_basic()
        return self.auth.basic

    def _on_unauthorized(self, response: httpx.Response, scope: str, sent: dict[str, str], what: str) -> None:
        """Learn from a 401 how to authenticate next time; raise when there is nothing left to try."""
        challenge = parse_challenge(response.headers.get("www-authenticate", ""))
        sent_auth = sent.get("Authorization", "")
        with self._lock:
            if challenge is not None:
                self._challenge = challenge
            if sent_auth.startswith("Bearer "):
                stale = sent_auth.removeprefix("Bearer ")
                if self._tokens.get(scope) == stale:
                    del self._tokens[scope]
                if "invalid_token" in response.headers.get("www-authenticate", ""):
                    self._refresh_token = None  # the refresh token may have expired too: exchange again
        if challenge is None or challenge.scheme not in ("basic", "bearer"):
            raise PermanentError(self.service, f"{what}: authentication required, but no usable scheme was named", 401)
        if challenge.scheme == "basic":
            if self._basic() is None:
                raise PermanentError(self.service, f"{what}: credentials required (basic), none configured", 401)
            if sent_auth.startswith("Basic "):
                if self._renew_basic(sent_auth):
                    return
                self._basic_refused = True
                user = self.auth.basic.username if self.auth.basic else "?"
                raise PermanentError(self.service, f"{what}: credentials refused for user {user}", 401)

    def _renew_basic(self, refused: str) -> bool:
        """Swap in fresh basic credentials once per refusal of the current ones; False when there are none."""
        if self.auth.refresh_basic is None or self.auth.basic is None:
            return False
        with self._lock:
            current = _basic_header(self.auth.basic)
            if current != refused:
                return True  # another thread renewed them already
            fresh = self.auth.refresh_basic()
            if fresh == self.auth.basic:
                return False
            self.auth.basic = fresh
            return True

    def _token(self, challenge: Challenge, scope: str) -> str:
        if self.auth.aad_token is not None and challenge.realm.rstrip("/").endswith("/oauth2/token"):
            token = self._acr_access_token(challenge, scope)
        else:
            token = self._docker_token(challenge, scope)
        with self._lock:
            self._tokens[scope] = token
        return token

    def _docker_token(self, challenge: Challenge, scope: str) -> str:
        params: list[tuple[str, str | int | float | bool | None]] = (
            [("service", challenge.service)] if challenge.service else []
        )
        params += [("scope", s) for s in scope.split(" ") if s]
        basic = self._basic()
        auth = httpx.BasicAuth(basic.username, basic.password) if basic else None

        def fetch() -> str:
            try:
                response = self._http.get(challenge.realm, params=params, auth=auth)
            except httpx.HTTPError as exc:
                raise self.transport_error(exc, "token request") from None
            if response.status_code in (401, 403):
                raise PermanentError(self.service, "token request: credentials refused", response.status_code)
            if response.status_code != 200:
                self._fail(response, "token request")
            body = _json(response)
            token = body.get("token") or body.get("access_token")
            if not token:
                raise PermanentError(self.service, "token request: the token server answered without a token")
            return str(token)

        return self.retrying("token", fetch)

    def _acr_refresh(self, challenge: Challenge) -> str:
        with self._lock:
            if self._refresh_token:
                return self._refresh_token
        assert self.auth.aad_token is not None
        realm = challenge.realm.rstrip("/")
        exchange = realm[: -len("/oauth2/token")] + "/oauth2/exchange"
        data = {"grant_type": "access_token", "service": challenge.service or self.host, "access_token": ""}
        if self.auth.tenant:
            data["tenant"] = self.auth.tenant

        def fetch() -> str:
            data["access_token"] = self.auth.aad_token() if self.auth.aad_token else ""
            try:
                response = self._http.post(exchange, data=data)
            except httpx.HTTPError as exc:
                raise self.transport_error(exc, "ACR token exchange") from None
            if response.status_code in (400, 401, 403):
                _, message = _registry_error(response)
                raise PermanentError(
                    self.service,
                    f"ACR token exchange: the Entra token was refused ({message or response.reason_phrase})",
                    response.status_code,
                )
            if response.status_code != 200:
                self._fail(response, "ACR token exchange")
            token = _json(response).get("refresh_token")
            if not token:
                raise PermanentError(self.service, "ACR token exchange: no refresh_token in the answer")
            return str(token)

        token = self.retrying("exchange", fetch)
        with self._lock:
            self._refresh_token = token
        return token

    def _acr_access_token(self, challenge: Challenge, scope: str) -> str:
        for attempt in (1, 2):
            refresh = self._acr_refresh(challenge)
            form: dict[str, Any] = {
                "grant_type": "refresh_token",
                "service": challenge.service or self.host,
                "refresh_token": refresh,
                "scope": [s for s in scope.split(" ") if s],
            }

            def fetch(form: dict[str, Any] = form) -> httpx.Response:
                try:
                    response = self._http.post(challenge.realm, data=form)
                except httpx.HTTPError as exc:
                    raise self.transport_error(exc, "ACR token request") from None
                if response.status_code in (408, 429) or response.status_code >= 500:
                    self._fail(response, "ACR token request")
                return response

            response = self.retrying("token", fetch)
            if response.status_code == 200:
                token = _json(response).get("access_token")
                if not token:
                    raise PermanentError(self.service, "ACR token request: no access_token in the answer")
                return str(token)
            if response.status_code in (400, 401) and attempt == 1:
                with self._lock:
                    self._refresh_token = None  # expired: exchange the Entra token again
                continue
            _, message = _registry_error(response)
            raise PermanentError(
                self.service,
                f"ACR token request for {scope}: refused ({message or response.reason_phrase})",
                response.status_code,
            )
        raise AssertionError("unreachable")  # pragma: no cover

    def registry_password(self, repository: str) -> tuple[str, str]:
        """(user, password) a Docker daemon can log in with: basic credentials, or an ACR refresh token."""
        basic = self._basic()
        if basic is not None:
            return basic.username, basic.password
        self.ping(repository)
        with self._lock:
            challenge = self._challenge
        if challenge is not None and self.auth.aad_token is not None and challenge.scheme == "bearer":
            return ACR_NULL_USER, self._acr_refresh(challenge)
        raise PermanentError(self.service, "no credentials a Docker daemon could use for this registry")

    # -- requests ----------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else self.base_url + path

    def _send(
        self,
        method: str,
        path: str,
        *,
        scope: str,
        what: str,
        headers: dict[str, str] | None = None,
        content: bytes | Iterable[bytes] | None = None,
        params: dict[str, str] | None = None,
        stream: bool = False,
        follow_redirects: bool = False,
    ) -> httpx.Response:
        """One request with authentication (answering up to two challenges); no retries here.

        Transport problems raise RegistryTransient; a 401 on a streamed body raises
        RegistryTransient too (the token expired mid-upload: the caller starts over).
        """
        replayable = content is None or isinstance(content, bytes)
        bearer_tries = 0
        for _ in range(3):
            auth = self._auth_headers(scope)
            if auth.get("Authorization", "").startswith("Bearer "):
                bearer_tries += 1
            request = self._http.build_request(
                method, self._url(path), headers={**(headers or {}), **auth}, content=content, params=params
            )
            try:
                response = self._http.send(request, stream=stream, follow_redirects=follow_redirects)
            except httpx.HTTPError as exc:
                raise self.transport_error(exc, what) from None
            if response.status_code != 401:
                return response
            response.read()
            response.close()
            if bearer_tries >= 2:  # a token fetched for this very request was refused: no access, not expiry
                raise PermanentError(self.service, f"{what}: access denied ({scope or 'no scope'})", 401)
            self._on_unauthorized(response, scope, auth, what)
            if not replayable:
                raise RegistryTransient(self.service, f"{what}: authorization expired mid-request; starting over", 401)
        raise PermanentError(self.service, f"{what}: credentials refused", 401)

    def _request(
        self, method: str, path: str, *, scope: str, what: str, ok: tuple[int, ...], **kw: Any
    ) -> httpx.Response:
        """A replayable request with retries; any status outside `ok` raises the classified error."""

        def once() -> httpx.Response:
            response = self._send(method, path, scope=scope, what=what, **kw)
            if response.status_code not in ok:
                self._fail(response, what)
            return response

        return self.retrying(what, once)

    # -- the API -----------------------------------------------------------------------

    def ping(self, repository: str | None = None) -> None:
        """GET /v2/: reachable, and our credentials accepted (raises naming the registry otherwise)."""
        scope = repo_scope(repository) if repository else ""
        self._request("GET", "/v2/", scope=scope, what="GET /v2/", ok=(200,))

    def list_repositories(self) -> set[str] | None:
        """Every repository the registry lists (`/v2/_catalog`, all pages), or None when it will not say.

        Registries that hide their catalog (ECR), or a token without `registry:catalog:*`,
        answer 401/403/404: None then, and callers look repository by repository instead.
        """
        found: set[str] = set()
        path: str | None = "/v2/_catalog?n=1000"
        scope = "registry:catalog:*"
        hidden = (401, 403, 404, 405)
        while path:
            page = path

            def once(page: str = page) -> httpx.Response:
                response = self._send("GET", page, scope=scope, what="GET /v2/_catalog")
                if response.status_code not in (200, *hidden):
                    self._fail(response, "GET /v2/_catalog")  # 429/5xx: transient, retried like every request
                return response

            try:
                response = self.retrying("GET /v2/_catalog", once)
            except PermanentError:
                return None
            if response.status_code in hidden:
                return None
            found.update(str(r) for r in _json(response).get("repositories") or [])
            link = response.headers.get("link", "")
            m = re.match(r"\s*<([^>]+)>\s*;\s*rel=\"?next\"?", link)
            path = m.group(1) if m else None
        return found

    def get_manifest(self, repository: str, reference: str) -> Manifest:
        """The manifest's exact bytes; by digest, the bytes must hash to it (else CorruptBlob)."""
        what = (
            f"GET manifest {repository}:{reference}"
            if ":" not in reference
            else f"GET manifest {repository}@{reference}"
        )
        response = self._request(
            "GET",
            f"/v2/{repository}/manifests/{reference}",
            scope=repo_scope(repository),
            what=what,
            ok=(200,),
            headers={"Accept": ", ".join(MANIFEST_TYPES)},
        )
        data = response.content
        digest = sha256_digest(data)
        served = response.headers.get("docker-content-digest")
        if reference.startswith("sha256:") and digest != reference:
            raise CorruptBlob(self.service, f"{what}: the manifest's bytes hash to {digest}, not {reference}")
        if served and served.startswith("sha256:") and served != digest:
            raise CorruptBlob(self.service, f"{what}: Docker-Content-Digest {served} but the bytes hash to {digest}")
        media_type = response.headers.get("content-type", "").split(";")[0].strip()
        if media_type not in MANIFEST_TYPES:
            declared = _json_bytes(data).get("mediaType")
            media_type = str(declared) if declared else media_type
        return Manifest(data=data, media_type=media_type, digest=digest)

    def manifest_digest(self, repository: str, reference: str) -> str | None:
        """HEAD: the digest the registry serves for a tag or digest, None when it has none."""
        what = f"HEAD manifest {repository}:{reference}"

        def once() -> str:
            response = self._send(
                "HEAD",
                f"/v2/{repository}/manifests/{reference}",
                scope=repo_scope(repository),
                what=what,
                headers={"Accept": ", ".join(MANIFEST_TYPES)},
            )
            if response.status_code == 404:
                return "absent"
            if response.status_code != 200:
                self._fail(response, what)
            return response.headers.get("docker-content-digest") or ""

        digest = self.retrying(what, once)
        if digest == "absent":
            return None
        if not digest.startswith("sha256:"):
            try:  # a registry that does not say: read it and hash it
                return self.get_manifest(repository, reference).digest
            except NotFoundError:
                return None
        return digest

    def put_manifest(self, repository: str, reference: str, manifest: Manifest) -> str:
        """PUT the exact bytes by tag or digest; the registry must report the same digest."""
        what = f"PUT manifest {repository}:{reference}"
        response = self._request(
            "PUT",
            f"/v2/{repository}/manifests/{reference}",
            scope=repo_scope(repository, push=True),
            what=what,
            ok=(200, 201, 202),
            headers={"Content-Type": manifest.media_type},
            content=manifest.data,
        )
        served = response.headers.get("docker-content-digest")
        if served and served != manifest.digest:
            raise PermanentError(self.service, f"{what}: the registry stored it as {served}, not {manifest.digest}")
        return manifest.digest

    def blob_exists(self, repository: str, digest: str) -> bool:
        what = f"HEAD blob {repository}@{digest}"

        def once() -> bool:
            response = self._send("HEAD", f"/v2/{repository}/blobs/{digest}", scope=repo_scope(repository), what=what)
            if response.status_code in (200, 307, 302):
                return True
            if response.status_code == 404:
                return False
            self._fail(response, what)

        return self.retrying(what, once)

    @contextmanager
    def open_blob(self, repository: str, digest: str) -> Iterator[httpx.Response]:
        """A streaming GET of a blob (following a redirect to storage); no retries (the caller restarts)."""
        what = f"GET blob {repository}@{digest}"
        response = self._send(
            "GET",
            f"/v2/{repository}/blobs/{digest}",
            scope=repo_scope(repository),
            what=what,
            stream=True,
            follow_redirects=True,
        )
        try:
            if response.status_code != 200:
                response.read()
                self._fail(response, what)
            yield response
        finally:
            response.close()

    def start_upload(self, repository: str, digest: str, mount_from: str | None = None) -> str | None:
        """Open an upload session; with `mount_from`, ask for a cross-repository mount first.

        None: mounted (201, nothing to send). Else the session's Location for the upload.
        """
        what = f"start upload of {digest} to {repository}"
        scope = repo_scope(repository, push=True) + (f" {repo_scope(mount_from)}" if mount_from else "")
        params = {"mount": digest, "from": mount_from} if mount_from else None
        response = self._request(
            "POST", f"/v2/{repository}/blobs/uploads/", scope=scope, what=what, ok=(201, 202), params=params
        )
        if response.status_code == 201 and mount_from:
            return None
        location = response.headers.get("location")
        if response.status_code != 202 or not location:
            raise PermanentError(self.service, f"{what}: no upload location in the answer", response.status_code)
        return location

    def _with_digest(self, location: str, digest: str) -> httpx.URL:
        return httpx.URL(self._url(location)).copy_merge_params({"digest": digest})

    def upload_monolithic(self, repository: str, location: str, digest: str, size: int, body: Iterable[bytes]) -> None:
        """PUT the whole blob in one streamed request (Content-Length known, so never chunked encoding)."""
        what = f"upload {digest} to {repository}"
        response = self._send(
            "PUT",
            str(self._with_digest(location, digest)),
            scope=repo_scope(repository, push=True),
            what=what,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
            content=body,
        )
        if response.status_code not in (201, 204):
            self._fail(response, what)
        self._check_blob_digest(response, digest, what)

    def upload_chunked(
        self, repository: str, location: str, digest: str, size: int, body: Iterable[bytes], chunk_size: int
    ) -> None:
        """PATCH the blob in streamed chunks of `chunk_size` bytes, then PUT ?digest= to commit it.

        A chunk is streamed from the source as it is sent (never held whole); each PATCH
        answers with the Location of the next one.
        """
        what = f"chunked upload of {digest} to {repository}"
        scope = repo_scope(repository, push=True)
        reader = _Reader(body)
        offset = 0
        while offset < size:
            length = min(chunk_size, size - offset)
            last = offset + length - 1
            response = self._send(
                "PATCH",
                location,
                scope=scope,
                what=f"{what} (bytes {offset}-{last})",
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{offset}-{last}",
                    "Content-Length": str(length),
                },
                content=reader.take(length),
            )
            if response.status_code != 202:
                self._fail(response, what)
            location = response.headers.get("location", location)
            offset += length
        reader.drain()  # a zero-byte blob, or a source that sent more than declared: verified here
        response = self._send(
            "PUT",
            str(self._with_digest(location, digest)),
            scope=scope,
            what=f"{what} (commit)",
            headers={"Content-Length": "0"},
            content=b"",
        )
        if response.status_code not in (201, 204):
            self._fail(response, what)
        self._check_blob_digest(response, digest, what)

    def cancel_upload(self, repository: str, location: str) -> None:
        """DELETE an abandoned upload session; best effort (registries purge stale ones anyway)."""
        try:
            response = self._send(
                "DELETE", location, scope=repo_scope(repository, push=True), what=f"cancel upload to {repository}"
            )
            response.close()
        except CloudError:
            pass

    def _check_blob_digest(self, response: httpx.Response, digest: str, what: str) -> None:
        served = response.headers.get("docker-content-digest")
        if served and served != digest:
            raise PermanentError(self.service, f"{what}: the registry stored {served}, not {digest}")


# --- streaming helpers --------------------------------------------------------------------


class _Reader:
    """Hands out exact byte counts from a stream of pieces, keeping at most one piece back."""

    def __init__(self, pieces: Iterable[bytes]) -> None:
        self._pieces = iter(pieces)
        self._buffer = b""

    def take(self, count: int) -> Iterator[bytes]:
        while count > 0:
            if not self._buffer:
                self._buffer = next(self._pieces, b"")
                if not self._buffer:
                    raise ValueError("the source stream ended early")  # verified_stream reports it first
            piece, self._buffer = self._buffer[:count], self._buffer[count:]
            count -= len(piece)
            yield piece

    def drain(self) -> None:
        for _ in self._pieces:
            pass


def verified_stream(
    chunks: Iterable[bytes],
    digest: str,
    size: int | None,
    *,
    service: str,
    what: str,
    on_bytes: Callable[[int], None] | None = None,
) -> Iterator[bytes]:
    """Pass `chunks` through, hashing them; the last piece is held back until the digest (and size) check out.

    A mismatch raises CorruptBlob before the final bytes are sent, so a registry never
    receives the complete body and never commits the blob.
    """
    algorithm, _, expected = digest.partition(":")
    if algorithm != "sha256":
        raise PermanentError(service, f"{what}: only sha256 digests are supported, not {algorithm}")
    hasher = hashlib.sha256()
    seen = 0
    pending: bytes | None = None
    for chunk in chunks:
        if not chunk:
            continue
        if pending is not None:
            yield pending
            if on_bytes:
                on_bytes(len(pending))
        hasher.update(chunk)
        seen += len(chunk)
        if size is not None and seen > size:
            raise CorruptBlob(service, f"{what}: the source sent more than the {size} bytes the manifest declares")
        pending = chunk
    if size is not None and seen != size:
        raise CorruptBlob(service, f"{what}: the source sent {seen} bytes, the manifest declares {size}")
    if hasher.hexdigest() != expected:
        raise CorruptBlob(service, f"{what}: the bytes hash to sha256:{hasher.hexdigest()}, not {digest}; not copied")
    if pending is not None:
        yield pending
        if on_bytes:
            on_bytes(len(pending))


# --- small helpers ------------------------------------------------------------------------


def _basic_header(login: BasicLogin) -> str:
    return "Basic " + base64.b64encode(f"{login.username}:{login.password}".encode()).decode()


def _json(response: httpx.Response) -> dict[str, Any]:
    return _json_bytes(response.content)


def _json_bytes(data: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(data)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _registry_error(response: httpx.Response) -> tuple[str, str]:
    """(code, message) of an OCI error body `{"errors": [{"code", "message"}]}` (or an OAuth one)."""
    try:
        response.read()
    except httpx.HTTPError:
        return "", ""
    body = _json(response)
    errors = body.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        return str(errors[0].get("code") or ""), str(errors[0].get("message") or "")[:300]
    if "error" in body:
        return str(body.get("error") or ""), str(body.get("error_description") or body.get("message") or "")[:300]
    return "", str(body.get("message") or "")[:300]


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
