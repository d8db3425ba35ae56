"""core/v1 Events as kubelet and the controllers record them (`kubectl describe` shows these).

Repeats of the same (object, reason, message) bump `count` and `lastTimestamp` on one
Event instead of adding another, like client-go's event correlator. Each namespace keeps
the newest `MAX_PER_NAMESPACE` events (the API server expires them after an hour).
"""

from __future__ import annotations

import copy
import secrets
from typing import Any

from sandbox.kube.clock import rfc3339
from sandbox.kube.cluster import NODE_NAME, Cluster

MAX_PER_NAMESPACE = 300
NORMAL, WARNING = "Normal", "Warning"


class EventRecorder:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self._names: dict[tuple[str, str, str], str] = {}  # (uid, reason, message) -> event name

    def emit(
        self,
        obj: dict[str, Any],
        event_type: str,
        reason: str,
        message: str,
        *,
        component: str,
        field_path: str | None = None,
    ) -> None:
        rt = self.cluster.type_of("", "events")
        meta = obj["metadata"]
        namespace = meta.get("namespace") or "default"
        key = (meta.get("uid", ""), reason, message)
        now = rfc3339()
        name = self._names.get(key)
        existing = self.cluster.store.get("", "events", namespace, name) if name else None
        if existing is not None:
            updated = copy.deepcopy(existing)
            updated["count"] = int(existing.get("count", 1)) + 1
            updated["lastTimestamp"] = now
            self.cluster.update(rt, existing, updated, manager=component)
            return
        involved: dict[str, Any] = {
            "kind": obj.get("kind"),
            "namespace": meta.get("namespace"),
            "name": meta["name"],
            "uid": meta.get("uid"),
            "apiVersion": obj.get("apiVersion"),
            "resourceVersion": meta.get("resourceVersion"),
        }
        if field_path:
            involved["fieldPath"] = field_path
        name = f"{meta['name']}.{secrets.token_hex(8)}"
        source: dict[str, str] = {"component": component}
        if component == "kubelet":
            source["host"] = NODE_NAME
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": {k: v for k, v in involved.items() if v is not None},
            "reason": reason,
            "message": message,
            "source": source,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "type": event_type,
            "eventTime": None,
            "reportingComponent": component,
            "reportingInstance": NODE_NAME if component == "kubelet" else "",
        }
        self.cluster.create(rt, event, manager=component)
        self._names[key] = name
        self._prune(namespace)

    def _prune(self, namespace: str) -> None:
        events = self.cluster.store.list("", "events", namespace)
        if len(events) <= MAX_PER_NAMESPACE:
            return
        rt = self.cluster.type_of("", "events")
        events.sort(key=lambda e: (e.get("lastTimestamp") or "", e["metadata"].get("resourceVersion", "")))
        for event in events[: len(events) - MAX_PER_NAMESPACE]:
            self.cluster.remove(rt, event)
