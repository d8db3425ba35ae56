"""Objects of one cluster, the resource-version counter, watch fan-out, and the state file.

Everything runs on one asyncio loop, so the store needs no locks: a handler or a
controller reads, computes and writes without an `await` in between. The resource
version is one counter per cluster, like etcd's revision: every write gets the next
value, lists report the current one, and a watch can resume from any version still in
the recent-history window (older ones get 410 Expired, as from a compacted etcd).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import copy
import json
import logging
import os
import tempfile
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

Key = tuple[str, str, str, str]  # (group, plural, namespace or "", name)
HISTORY = 2000  # watch events kept for resuming (a compacted etcd answers 410 beyond)
STATE_VERSION = 1


@dataclass
class WatchEvent:
    rv: int
    type: str  # ADDED, MODIFIED, DELETED
    group: str
    plural: str
    namespace: str
    obj: dict[str, Any]


@dataclass
class Subscription:
    group: str
    plural: str
    namespace: str | None
    queue: asyncio.Queue[WatchEvent] = field(default_factory=lambda: asyncio.Queue(maxsize=10000))


class ClusterStore:
    def __init__(self, name: str, on_change: Callable[[], None] | None = None) -> None:
        self.name = name
        self.objects: dict[Key, dict[str, Any]] = {}
        self.rv = 0
        self.history: deque[WatchEvent] = deque(maxlen=HISTORY)
        self.subscriptions: list[Subscription] = []
        self.config: dict[str, Any] = {}  # per-cluster settings and allocations (ports, identities)
        self._on_change = on_change or (lambda: None)

    # --- reads -------------------------------------------------------------------------------

    def get(self, group: str, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((group, plural, namespace or "", name))

    def list(self, group: str, plural: str, namespace: str | None = None) -> builtins.list[dict[str, Any]]:
        found = [
            obj
            for (g, p, ns, _), obj in self.objects.items()
            if g == group and p == plural and (namespace is None or ns == namespace)
        ]
        return sorted(found, key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))

    def in_namespace(self, namespace: str) -> Iterator[tuple[Key, dict[str, Any]]]:
        for key, obj in list(self.objects.items()):
            if key[2] == namespace:
                yield key, obj

    # --- writes ------------------------------------------------------------------------------

    def next_rv(self) -> str:
        self.rv += 1
        return str(self.rv)

    def put(self, group: str, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Store an object (new or changed): stamps the next resourceVersion and tells watchers."""
        meta = obj["metadata"]
        key = (group, plural, meta.get("namespace", ""), meta["name"])
        event_type = "MODIFIED" if key in self.objects else "ADDED"
        meta["resourceVersion"] = self.next_rv()
        self.objects[key] = obj
        self._publish(event_type, key, obj)
        return obj

    def delete(self, group: str, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        key = (group, plural, namespace or "", name)
        obj = self.objects.pop(key, None)
        if obj is not None:
            # the DELETED event carries the object at a new resource version, as etcd's delete revision
            obj = copy.deepcopy(obj)
            obj["metadata"]["resourceVersion"] = self.next_rv()
            self._publish("DELETED", key, obj)
        return obj

    def _publish(self, event_type: str, key: Key, obj: dict[str, Any]) -> None:
        event = WatchEvent(self.rv, event_type, key[0], key[1], key[2], copy.deepcopy(obj))
        self.history.append(event)
        for sub in self.subscriptions:
            if sub.group == key[0] and sub.plural == key[1] and (sub.namespace in (None, key[2])):
                with contextlib.suppress(asyncio.QueueFull):  # a stalled watcher loses events, then times out
                    sub.queue.put_nowait(event)
        self._on_change()

    # --- watch -------------------------------------------------------------------------------

    def subscribe(self, group: str, plural: str, namespace: str | None) -> Subscription:
        sub = Subscription(group, plural, namespace)
        self.subscriptions.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with contextlib.suppress(ValueError):
            self.subscriptions.remove(sub)

    def events_since(self, rv: int, group: str, plural: str, namespace: str | None) -> builtins.list[WatchEvent] | None:
        """Events after `rv` for a resource, or None when `rv` is older than the history kept."""
        if rv < self.rv and (not self.history or rv < self.history[0].rv - 1):
            return None
        return [
            e
            for e in self.history
            if e.rv > rv and e.group == group and e.plural == plural and namespace in (None, e.namespace)
        ]

    # --- persistence -------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "resourceVersion": self.rv,
            "config": self.config,
            "objects": [{"group": k[0], "plural": k[1], "object": obj} for k, obj in self.objects.items()],
        }

    def load_json(self, data: dict[str, Any]) -> None:
        self.rv = int(data.get("resourceVersion", 0))
        self.config = dict(data.get("config") or {})
        for entry in data.get("objects", []):
            obj = entry["object"]
            meta = obj["metadata"]
            self.objects[(entry["group"], entry["plural"], meta.get("namespace", ""), meta["name"])] = obj


class StateFile:
    """The emulator's state on disk: written whole, atomically (temp file + rename)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.dirty = False

    def load(self) -> dict[str, Any]:
        if self.path is None or not self.path.is_file():
            return {}
        data = json.loads(self.path.read_text(encoding="utf-8"))
        if data.get("version") != STATE_VERSION:
            log.warning("ignoring %s: state version %s, expected %s", self.path, data.get("version"), STATE_VERSION)
            return {}
        return dict(data.get("clusters") or {})

    def save(self, clusters: dict[str, ClusterStore]) -> None:
        self.dirty = False
        if self.path is None:
            return
        payload = {"version": STATE_VERSION, "clusters": {name: c.to_json() for name, c in clusters.items()}}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".kube-state-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(payload, handle, separators=(",", ":"))
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
