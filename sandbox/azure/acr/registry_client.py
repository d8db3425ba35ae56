"""Just enough of a Distribution API client for importImage: requests with the registry auth dance.

An `Endpoint` is a registry as the importer reaches it: a base URL and how to authenticate.
Either the emulator mints the token itself (`mint`: the sandbox's own ACRs, whose tokens it
signs) or it answers the registry's challenge with the caller's `basic` credentials: a
`Basic` challenge gets them directly (the sandbox's ECR registry), a `Bearer realm=...`
challenge gets them sent to the realm for a token (Docker's token protocol). Transient
failures (connection errors, 429, 5xx) are retried a few times, as ACR's importer does;
credentials never appear in an error message or a log line.
"""

from __future__ import annotations

import base64
import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

log = logging.getLogger("sandbox.azure.acr")

ATTEMPTS = 4
BACKOFF_SECONDS = 0.2
TRANSIENT = frozenset({408, 429, 500, 502, 503, 504})
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


def basic_header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


class Unreachable(Exception):
    """The registry did not answer (after retries)."""


@dataclass
class Endpoint:
    base_url: str  # http://127.0.0.1:P (a registry's own port) or https://host
    host: str  # as the caller named it, for messages
    basic: tuple[str, str] | None = field(default=None, repr=False)
    mint: Callable[[Sequence[str]], str] | None = field(default=None, repr=False)
    verify: str | bool = True


class Session:
    """One endpoint, one httpx client; bearer tokens cached per scope for the session's life."""

    def __init__(self, endpoint: Endpoint, timeout: float = 60.0) -> None:
        self.endpoint = endpoint
        self._client = httpx.Client(timeout=timeout, verify=endpoint.verify, trust_env=False)
        self._tokens: dict[str, str] = {}  # scope -> bearer token from the registry's realm
        self._basic_up_front = False  # the registry asked for basic auth once: send it with every request

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *args: object) -> None:
        self.close()

    def url(self, path: str) -> str:
        return self.endpoint.base_url.rstrip("/") + path

    def request(self, method: str, path_or_url: str, scope: str, **kwargs: Any) -> httpx.Response:
        """Send (retrying transient failures); the response is read in full."""
        with self.stream(method, path_or_url, scope, **kwargs) as response:
            response.read()
            return response

    @contextmanager
    def stream(self, method: str, path_or_url: str, scope: str, **kwargs: Any) -> Iterator[httpx.Response]:
        """Send and yield the response unread (a blob body streams through). Retries only before a body
        has been sent, so a request `content` that is an iterator is never replayed."""
        url = path_or_url if "://" in path_or_url else self.url(path_or_url)
        replayable = not isinstance(kwargs.get("content"), Iterator)
        for attempt in range(1, ATTEMPTS + 1):
            response = self._send(method, url, scope, kwargs, last=attempt == ATTEMPTS or not replayable)
            if response is None:
                time.sleep(BACKOFF_SECONDS * attempt)
                continue
            try:
                yield response
            finally:
                response.close()
            return

    def _send(self, method: str, url: str, scope: str, kwargs: dict[str, Any], *, last: bool) -> httpx.Response | None:
        """One attempt; None when it failed transiently and may be retried."""
        try:
            response = self._client.send(self._build(method, url, scope, kwargs), stream=True)
            replayable = not isinstance(kwargs.get("content"), Iterator)
            if response.status_code == 401 and replayable and self._answer_challenge(response, scope):
                response.close()
                response = self._client.send(self._build(method, url, scope, kwargs), stream=True)
        except httpx.TransportError as exc:
            if last:
                raise Unreachable(f"{self.endpoint.host}: {type(exc).__name__}: {exc}") from None
            return None
        if response.status_code in TRANSIENT and not last:
            response.close()
            return None
        return response

    def _build(self, method: str, url: str, scope: str, kwargs: dict[str, Any]) -> httpx.Request:
        headers = dict(kwargs.get("headers") or {})
        if self.endpoint.mint is not None:
            headers["Authorization"] = f"Bearer {self.endpoint.mint([scope])}"
        elif scope in self._tokens:
            headers["Authorization"] = f"Bearer {self._tokens[scope]}"
        elif self._basic_up_front and self.endpoint.basic is not None:
            headers["Authorization"] = basic_header(*self.endpoint.basic)
        return self._client.build_request(
            method, url, headers=headers, content=kwargs.get("content"), params=kwargs.get("params")
        )

    def _answer_challenge(self, response: httpx.Response, scope: str) -> bool:
        """React to a 401's WWW-Authenticate; True when a retry with new credentials makes sense."""
        if self.endpoint.mint is not None or self.endpoint.basic is None:
            return False
        challenge = response.headers.get("www-authenticate", "")
        scheme = challenge.split(" ", 1)[0].lower()
        if scheme == "basic" and not self._basic_up_front:
            self._basic_up_front = True
            return True
        if scheme == "bearer" and scope not in self._tokens:
            params = dict(_CHALLENGE_PARAM.findall(challenge))
            token = self._fetch_token(params.get("realm", ""), params.get("service", ""), scope)
            if token:
                self._tokens[scope] = token
                return True
        return False

    def _fetch_token(self, realm: str, service: str, scope: str) -> str | None:
        if not realm:
            return None
        user, password = self.endpoint.basic or ("", "")
        try:
            answer = self._client.get(
                realm, params={"service": service, "scope": scope}, auth=httpx.BasicAuth(user, password)
            )
        except httpx.TransportError as exc:
            raise Unreachable(f"token service of {self.endpoint.host}: {type(exc).__name__}") from None
        if answer.status_code != 200:
            return None
        body = answer.json()
        return str(body.get("token") or body.get("access_token") or "") or None
