"""The emulator process: its clusters, the state file, and the pluggable outside checks.

Clusters named at start exist from the first request; with `any_cluster` a cluster also
comes into being on first use, so clusters the ARM emulator creates later are served
without telling this process (`PUT /_sandbox/clusters/<name>` does it explicitly).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import Any

from starlette.requests import Request

from sandbox.kube.config import EmulatorConfig
from sandbox.kube.images import ImageChecker, PullAuthorizer, default_authorizer, default_image_checker
from sandbox.kube.runtime import ClusterRuntime
from sandbox.kube.secrets_store import SecretReader, default_secret_reader
from sandbox.kube.store import ClusterStore, StateFile

log = logging.getLogger(__name__)

CLUSTER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
FLUSH_INTERVAL = 0.5  # real seconds: how stale the state file may be after controller writes


class Emulator:
    def __init__(
        self,
        config: EmulatorConfig,
        *,
        image_checker: ImageChecker | None = None,
        authorizer: PullAuthorizer | None = None,
        secret_reader: SecretReader | None = None,
    ) -> None:
        self.config = config
        self.image_checker = image_checker or default_image_checker(config)
        self.authorizer = authorizer or default_authorizer(config)
        self.secret_reader = secret_reader or default_secret_reader(config)
        self.state = StateFile(config.state_file)
        self._runtimes: dict[str, ClusterRuntime] = {}
        self._loaded = self.state.load()
        self._started = False
        self._flusher: asyncio.Task[None] | None = None

    # --- clusters ------------------------------------------------------------------------------

    def runtimes(self) -> list[ClusterRuntime]:
        return list(self._runtimes.values())

    def _make(self, name: str, settings: dict[str, Any] | None = None) -> ClusterRuntime:
        store = ClusterStore(name, on_change=self._mark_dirty)
        if name in self._loaded:
            store.load_json(self._loaded.pop(name))
        if settings:
            store.config.setdefault("settings", {}).update(settings)
        runtime = ClusterRuntime(self, store)
        self._runtimes[name] = runtime
        if self._started:
            runtime.start()
        return runtime

    def cluster(self, name: str) -> ClusterRuntime | None:
        runtime = self._runtimes.get(name)
        if runtime is None and self.config.any_cluster and CLUSTER_NAME.match(name):
            log.info("serving new cluster %s on first use", name)
            runtime = self._make(name)
        return runtime

    def default_cluster(self) -> ClusterRuntime | None:
        if self.config.default_cluster:
            return self.cluster(self.config.default_cluster)
        if len(self._runtimes) == 1:
            return next(iter(self._runtimes.values()))
        return None

    async def ensure_cluster(self, name: str, settings: dict[str, Any]) -> ClusterRuntime:
        runtime = self._runtimes.get(name)
        if runtime is None:
            if not CLUSTER_NAME.match(name):
                raise ValueError(f"invalid cluster name {name!r}")
            return self._make(name, settings)
        if settings:
            runtime.store.config.setdefault("settings", {}).update(settings)
        return runtime

    async def drop_cluster(self, name: str) -> bool:
        runtime = self._runtimes.pop(name, None)
        if runtime is None:
            return False
        await runtime.stop()
        return True

    def server_address(self, request: Request) -> str:
        if self.config.public_url:
            host = self.config.public_url.split("://", 1)[-1].split("/", 1)[0]
            return host
        return request.headers.get("host", "127.0.0.1")

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        for name in list(self.config.clusters) + list(self._loaded):
            if name not in self._runtimes:
                self._make(name)
        self._started = True
        for runtime in self._runtimes.values():
            runtime.start()
        self.save()
        self._flusher = asyncio.create_task(self._flush_loop(), name="kube-state-flush")

    async def stop(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        for runtime in self._runtimes.values():
            await runtime.stop()
        self.save()
        for checker in (self.image_checker, self.authorizer, self.secret_reader):
            close = getattr(checker, "aclose", None)
            if close is not None:
                await close()

    # --- persistence ---------------------------------------------------------------------------

    def _mark_dirty(self) -> None:
        self.state.dirty = True

    def save(self) -> None:
        stores = {name: r.store for name, r in self._runtimes.items()}
        self.state.save(stores)

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            if self.state.dirty:
                try:
                    self.save()
                except OSError:
                    log.exception("writing the state file failed")
