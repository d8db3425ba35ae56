"""Everything that runs for one cluster: its API, controllers, kubelet, apps and load balancers.

One asyncio task per cluster drives the controllers, the kubelet and the network every
`tick`; they read the store and write through `Cluster`, so the HTTP handlers and the loop
share one consistent view without locks (one event loop, no awaits mid-update).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from sandbox.kube.api import ClusterApi
from sandbox.kube.clock import Clock
from sandbox.kube.cluster import Cluster
from sandbox.kube.controller import Controllers
from sandbox.kube.events import EventRecorder
from sandbox.kube.kubelet import Kubelet
from sandbox.kube.network import Network
from sandbox.kube.store import ClusterStore
from sandbox.kube.workloads import Workloads

if TYPE_CHECKING:
    from sandbox.kube.emulator import Emulator

log = logging.getLogger(__name__)


class ClusterRuntime:
    def __init__(self, emulator: Emulator, store: ClusterStore) -> None:
        self.emulator = emulator
        self.store = store
        self.cluster = Cluster(store.name, store)
        self.api = ClusterApi(self.cluster)
        self.clock = Clock(emulator.config.time_scale)
        self.tenant_id = emulator.config.tenant_id
        self.events = EventRecorder(self.cluster)
        self.workloads = Workloads()
        self.kubelet = Kubelet(self)
        self.controllers = Controllers(self)
        self.network = Network(self)
        self._task: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return self.cluster.name

    def start(self) -> None:
        self.cluster.bootstrap()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name=f"cluster {self.name}")

    async def _loop(self) -> None:
        tick = self.emulator.config.tick
        while True:
            try:
                self.controllers.reconcile()
                await self.kubelet.step()
                await self.network.sync()
            except Exception:
                log.exception("cluster %s: reconcile pass failed", self.name)
            await asyncio.sleep(tick)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.kubelet.stop()
        await self.network.stop()
        await self.workloads.stop()

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "settings": self.store.config.get("settings") or {}, **self.network.describe()}
