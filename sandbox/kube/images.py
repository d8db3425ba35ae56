"""Image pulls, checked for real: does the image exist, and may this cluster pull it?

Two pluggable callables, each with an HTTP default:

* `ImageChecker(image) -> ImageInfo` (raises `PullError`). The default asks the registry
  the image names, through `registry_map` (login server -> base URL): `HEAD
  /v2/<repo>/manifests/<ref>` for existence and digest, then the image config for its
  labels; `mmrv.sandbox/broken: "true"` marks an image whose app fails its health checks.
  Credentials per host go as basic auth; a registry with token auth (the sandbox's ACRs)
  answers 401 with `WWW-Authenticate: Bearer realm=...,service=...`, and the checker then
  does what containerd does: GET the realm with `service`, `scope=repository:<repo>:pull`
  and the basic credentials, and retries with the bearer token it gets (cached until expiry).
* `PullAuthorizer(PullRequest) -> Decision`: may the cluster's kubelet identity pull from
  this registry (AcrPull)? The default POSTs the request as JSON to `authorizer_url` and
  reads `{"allowed": bool, "reason": str}`; with no URL every pull is allowed.

Failures read like containerd's, because that is what a person (and the tool's rollout
report) sees in the pod's events on AKS.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from sandbox.kube.config import EmulatorConfig

log = logging.getLogger(__name__)

BROKEN_LABEL = "mmrv.sandbox/broken"
_ACCEPT = ", ".join(
    (
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    )
)
_NO_AUTH = httpx.Auth()
_INDEX_TYPES = ("application/vnd.docker.distribution.manifest.list.v2+json", "application/vnd.oci.image.index.v1+json")
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')
_TOKEN_ATTEMPTS = 3  # the realm may sit behind the fault proxy
_TOKEN_DEFAULT_SECONDS = 60  # Docker's token spec: assume 60 s when `expires_in` is absent


@dataclass(frozen=True)
class ImageRef:
    raw: str
    registry: str
    repository: str
    tag: str | None
    digest: str | None

    @property
    def reference(self) -> str:
        """What goes in the manifest URL: the digest when pinned, else the tag."""
        return self.digest or self.tag or "latest"

    @property
    def canonical(self) -> str:
        """The fully qualified form containerd prints (`docker.io/library/nginx:latest`)."""
        name = f"{self.registry}/{self.repository}"
        if self.digest:
            return f"{name}@{self.digest}" if not self.tag else f"{name}:{self.tag}@{self.digest}"
        return f"{name}:{self.tag or 'latest'}"


def parse_image(image: str) -> ImageRef:
    name, _, digest = image.partition("@")
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, rest
    else:
        registry, path = "docker.io", name
        if "/" not in path:
            path = f"library/{path}"
    tag = None
    last = path.rsplit("/", 1)[-1]
    if ":" in last:
        path, tag = path.rsplit(":", 1)
    return ImageRef(image, registry, path, tag, digest or None)


@dataclass(frozen=True)
class ImageInfo:
    image: str  # as the pod spec names it
    digest: str
    image_id: str  # registry/repo@digest, what containerStatuses[].imageID reports
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def broken(self) -> bool:
        return self.labels.get(BROKEN_LABEL, "").lower() == "true"


class PullError(Exception):
    """A failed pull. `reason`: NotFound, Unauthorized or Unreachable; `detail`: containerd's words."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail

    def event_message(self, image: str) -> str:
        ref = parse_image(image)
        code = "NotFound" if self.reason == "NotFound" else "Unknown"
        return (
            f'Failed to pull image "{image}": rpc error: code = {code} desc = failed to pull and unpack image '
            f'"{ref.canonical}": failed to resolve reference "{ref.canonical}": {self.detail}'
        )


@dataclass(frozen=True)
class PullRequest:
    cluster: str
    image: str
    registry: str
    repository: str
    reference: str
    kubelet_identity: dict[str, Any] | None = None


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""


class ImageChecker(Protocol):
    async def __call__(self, image: str) -> ImageInfo: ...


class PullAuthorizer(Protocol):
    async def __call__(self, request: PullRequest) -> Decision: ...


def unauthorized_detail(ref: ImageRef) -> str:
    """What containerd says when the registry's token endpoint refuses the node (no AcrPull)."""
    scope = f"repository%3A{ref.repository.replace('/', '%2F')}%3Apull"
    return (
        "failed to authorize: failed to fetch anonymous token: unexpected status from GET request to "
        f"https://{ref.registry}/oauth2/token?scope={scope}&service={ref.registry}: 401 Unauthorized"
    )


class RegistryImageChecker:
    """Asks the registry (a Distribution server in the sandbox) about the image, over HTTP."""

    def __init__(
        self,
        registry_map: dict[str, str],
        credentials: dict[str, tuple[str, str]] | None = None,
        *,
        allow_unmapped: bool = False,
        verify: str | bool = True,
    ) -> None:
        self.registry_map = {host: url.rstrip("/") for host, url in registry_map.items()}
        # basic auth per registry host (Distribution's htpasswd); the base Auth sends none
        self._auth = {host: httpx.BasicAuth(user, password) for host, (user, password) in (credentials or {}).items()}
        self._tokens: dict[tuple[str, str], tuple[str, float]] = {}  # (host, repository) -> (token, expiry)
        self.allow_unmapped = allow_unmapped
        self._client = httpx.AsyncClient(timeout=10.0, verify=verify, follow_redirects=True)
        self._labels: dict[tuple[str, str], dict[str, str]] = {}  # (registry/repo, digest) -> labels

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __call__(self, image: str) -> ImageInfo:
        ref = parse_image(image)
        base = self.registry_map.get(ref.registry)
        if base is None:
            if self.allow_unmapped:
                digest = ref.digest or "sha256:" + hashlib.sha256(image.encode()).hexdigest()
                return ImageInfo(image, digest, f"{ref.registry}/{ref.repository}@{digest}")
            raise PullError(
                "Unreachable",
                f'failed to do request: Head "https://{ref.registry}/v2/{ref.repository}/manifests/{ref.reference}": '
                f"dial tcp: lookup {ref.registry}: no such host",
            )
        url = f"{base}/v2/{ref.repository}/manifests/{ref.reference}"
        try:
            response = await self._send("HEAD", url, ref)
        except httpx.HTTPError as exc:
            raise PullError("Unreachable", f'failed to do request: Head "https://{ref.registry}/v2/'
                                           f'{ref.repository}/manifests/{ref.reference}": {exc}') from exc  # fmt: skip
        if response.status_code in (401, 403):
            raise PullError("Unauthorized", unauthorized_detail(ref))
        if response.status_code == 404:
            raise PullError("NotFound", f"{ref.canonical}: not found")
        if response.status_code != 200:
            raise PullError("Unreachable", f"unexpected status from HEAD request to {url}: {response.status_code}")
        digest = response.headers.get("docker-content-digest") or ref.digest or ""
        labels = await self._image_labels(base, ref, digest)
        return ImageInfo(image, digest, f"{ref.registry}/{ref.repository}@{digest}", labels)

    async def _send(self, method: str, url: str, ref: ImageRef) -> httpx.Response:
        """One registry request with the host's credentials: basic, or a bearer token from the realm."""
        headers = {"Accept": _ACCEPT}
        cached = self._tokens.pop((ref.registry, ref.repository), None)
        if cached and cached[1] > time.monotonic():
            answer = await self._client.request(
                method, url, headers={**headers, "Authorization": f"Bearer {cached[0]}"}
            )
            if answer.status_code != 401:
                self._tokens[(ref.registry, ref.repository)] = cached
                return answer
        response = await self._client.request(method, url, headers=headers, auth=self._auth.get(ref.registry, _NO_AUTH))
        challenge = response.headers.get("www-authenticate", "")
        if response.status_code == 401 and challenge.lower().startswith("bearer ") and ref.registry in self._auth:
            token = await self._fetch_token(ref, dict(_CHALLENGE_PARAM.findall(challenge)))
            if token:
                headers["Authorization"] = f"Bearer {token}"
                response = await self._client.request(method, url, headers=headers, auth=_NO_AUTH)
        return response

    async def _fetch_token(self, ref: ImageRef, challenge: dict[str, str]) -> str | None:
        """Docker's token protocol: GET realm?service=&scope= with the basic credentials; None when refused."""
        realm = challenge.get("realm", "")
        if not realm:
            return None
        params = {"service": challenge.get("service", ""), "scope": f"repository:{ref.repository}:pull"}
        for attempt in range(1, _TOKEN_ATTEMPTS + 1):
            try:
                answer = await self._client.get(realm, params=params, auth=self._auth[ref.registry])
            except httpx.TransportError:
                answer = None
            if answer is not None and answer.status_code < 500 and answer.status_code != 429:
                break
            if attempt == _TOKEN_ATTEMPTS:
                return None
            await asyncio.sleep(0.2 * attempt)
        if answer is None or answer.status_code != 200:
            return None
        body = answer.json()
        token = str(body.get("token") or body.get("access_token") or "")
        lifetime = int(body.get("expires_in") or _TOKEN_DEFAULT_SECONDS)
        if token:
            self._tokens[(ref.registry, ref.repository)] = (token, time.monotonic() + max(1, lifetime - 10))
        return token or None

    async def _image_labels(self, base: str, ref: ImageRef, digest: str) -> dict[str, str]:
        cache_key = (f"{ref.registry}/{ref.repository}", digest)
        if cache_key in self._labels:
            return self._labels[cache_key]
        labels: dict[str, str] = {}
        try:
            manifest = await self._get_json(f"{base}/v2/{ref.repository}/manifests/{digest or ref.reference}", ref)
            if manifest.get("mediaType") in _INDEX_TYPES or "manifests" in manifest:
                chosen = next(
                    (
                        m
                        for m in manifest.get("manifests", [])
                        if (m.get("platform") or {}).get("architecture") == "amd64"
                        and (m.get("platform") or {}).get("os") == "linux"
                    ),
                    (manifest.get("manifests") or [{}])[0],
                )
                manifest = await self._get_json(f"{base}/v2/{ref.repository}/manifests/{chosen.get('digest')}", ref)
            config_digest = (manifest.get("config") or {}).get("digest")
            if config_digest:
                config = await self._get_json(f"{base}/v2/{ref.repository}/blobs/{config_digest}", ref)
                labels = dict(((config.get("config") or {}).get("Labels")) or {})
        except (httpx.HTTPError, ValueError) as exc:
            # the image exists; a config we cannot read only means we know no labels
            log.warning("reading the config of %s failed: %s", ref.raw, exc)
            return {}
        self._labels[cache_key] = labels
        return labels

    async def _get_json(self, url: str, ref: ImageRef) -> dict[str, Any]:
        response = await self._send("GET", url, ref)
        response.raise_for_status()
        data = json.loads(response.content)
        return data if isinstance(data, dict) else {}


class AllowAll:
    async def __call__(self, request: PullRequest) -> Decision:
        return Decision(True, "authorization check disabled")


class HttpPullAuthorizer:
    """POSTs the pull request to the ARM emulator's AcrPull check (contract in the module docstring)."""

    def __init__(self, url: str, *, verify: str | bool = True) -> None:
        self.url = url
        self._client = httpx.AsyncClient(timeout=10.0, verify=verify)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __call__(self, request: PullRequest) -> Decision:
        body = {
            "cluster": request.cluster,
            "image": request.image,
            "registry": request.registry,
            "repository": request.repository,
            "reference": request.reference,
            "action": "pull",
            "kubeletIdentity": request.kubelet_identity,
        }
        try:
            response = await self._client.post(self.url, json=body)
            data = response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError) as exc:
            raise PullError("Unreachable", f"failed to authorize: token exchange failed: {exc}") from exc
        if not isinstance(data, dict) or not isinstance(data.get("allowed"), bool):
            raise PullError("Unreachable", f"failed to authorize: token exchange failed: HTTP {response.status_code}")
        return Decision(data["allowed"], str(data.get("reason", "")))


def _verify(config: EmulatorConfig) -> str | bool:
    return config.ca_bundle or True


def default_image_checker(config: EmulatorConfig) -> ImageChecker:
    return RegistryImageChecker(
        config.registry_map,
        config.registry_credentials,
        allow_unmapped=config.allow_unmapped_images,
        verify=_verify(config),
    )


def default_authorizer(config: EmulatorConfig) -> PullAuthorizer:
    if not config.authorizer_url:
        return AllowAll()
    return HttpPullAuthorizer(config.authorizer_url, verify=_verify(config))
