"""The API verbs on one cluster: create, get, list, watch, replace, patch (four kinds), delete.

Each verb takes an already-routed request (resource type, namespace, name, subresource)
and returns the JSON body (or raises `ApiError`). Semantics follow the API server:
stale `resourceVersion` on update -> 409; a write that changes nothing keeps the
resourceVersion; status is a subresource (the main endpoint ignores it and vice versa);
`dryRun=All` validates without storing; DELETE answers a `Status` (pods and namespaces
answer the object, as they are deleted gracefully).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import logging
import secrets
import string
from collections.abc import AsyncIterator, Mapping
from typing import Any

import yaml

from sandbox.kube import apply as ssa
from sandbox.kube import defaults, errors, patch, validation
from sandbox.kube.clock import rfc3339
from sandbox.kube.cluster import Cluster, shape
from sandbox.kube.errors import ApiError, bad_request
from sandbox.kube.resources import ResourceType
from sandbox.kube.selectors import (
    fields_match,
    labels_match,
    parse_field_selector,
    parse_label_selector,
    selector_string,
)
from sandbox.kube.store import ClusterStore, WatchEvent

log = logging.getLogger(__name__)

APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
_NAME_SUFFIX = string.ascii_lowercase + string.digits
_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # apimachinery's rand.String alphabet


def truthy(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1", "yes")


def generated_name(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_GENERATE_ALPHABET) for _ in range(5))


class Params:
    """Query parameters (first value of each)."""

    def __init__(self, query: Mapping[str, str]) -> None:
        self.query = query

    def get(self, name: str) -> str | None:
        return self.query.get(name)

    @property
    def dry_run(self) -> bool:
        return self.query.get("dryRun") == "All"


def drop_nulls(value: Any) -> Any:
    """What decoding into the API's Go types does to JSON nulls: they are no value at all.

    Go clients send `creationTimestamp: null` inside templates; kept, it would make a pod
    template differ from the same template without it (and break rollback by template).
    """
    if isinstance(value, dict):
        return {k: drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [drop_nulls(v) for v in value]
    return value


def parse_body(raw: bytes, content_type: str = "application/json") -> Any:
    if not raw:
        return None
    try:
        if "yaml" in content_type:
            return yaml.safe_load(raw.decode())
        return json.loads(raw)
    except (ValueError, yaml.YAMLError) as exc:
        kind = "yaml" if "yaml" in content_type else "json"
        raise bad_request(f"error decoding {kind}: {exc}") from exc


class ClusterApi:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    @property
    def store(self) -> ClusterStore:
        return self.cluster.store

    # --- helpers ---------------------------------------------------------------------------------

    def _existing(self, rt: ResourceType, namespace: str, name: str) -> dict[str, Any]:
        obj = self.cluster.get(rt, namespace, name)
        if obj is None:
            raise errors.not_found(rt, name)
        return obj

    @staticmethod
    def view(rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        """An object as served under `rt`'s version (CRDs may serve one object under several)."""
        out = copy.deepcopy(obj)
        out["apiVersion"], out["kind"] = rt.api_version, rt.kind
        return out

    def _check_identity(self, rt: ResourceType, body: Any, namespace: str, name: str | None) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise bad_request("the request body must be an object")
        api_version, kind = body.get("apiVersion"), body.get("kind")
        if kind and kind != rt.kind:
            raise bad_request(f"the kind of the object ({kind}) does not match the kind on the URL ({rt.kind})")
        if api_version and api_version.rpartition("/")[0] != rt.group:
            raise bad_request(
                f"the API version in the data ({api_version}) does not match the expected API version "
                f"({rt.api_version})"
            )
        meta = body.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        if rt.namespaced:
            if meta.get("namespace") and meta["namespace"] != namespace:
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if name is not None and meta.get("name") and meta["name"] != name:
            raise bad_request(f"the name of the object ({meta['name']}) does not match the name on the URL ({name})")
        if name is not None:
            meta["name"] = name
        return body

    @staticmethod
    def _manager(params: Params, user_agent: str, default: str | None = None) -> str:
        manager = params.get("fieldManager")
        if manager:
            return manager
        if default:
            return default
        # the API server names an unnamed writer after its user agent's product token
        return (user_agent or "unknown").split("/", 1)[0] or "unknown"

    # --- create ----------------------------------------------------------------------------------

    def create(self, rt: ResourceType, namespace: str, body: Any, params: Params, user_agent: str) -> dict[str, Any]:
        obj = self._check_identity(rt, drop_nulls(body), namespace, None)
        meta = obj["metadata"]
        if not meta.get("name"):
            if meta.get("generateName"):
                meta["name"] = generated_name(meta["generateName"])
            else:
                raise errors.invalid(
                    rt, "", [errors.required_value("metadata.name", "name or generateName is required")]
                )
        validation.check_name(rt, meta["name"])
        if rt.namespaced:
            self.cluster.check_namespace(rt, namespace, meta["name"])
        if self.cluster.get(rt, namespace, meta["name"]) is not None:
            raise errors.already_exists(rt, meta["name"])
        if rt.has_status and rt.kind != "Namespace":
            obj.pop("status", None)  # status is the controllers' (the API server resets it on create)
        obj = self.cluster.stamp_new(rt, obj, manager=self._manager(params, user_agent))
        validation.validate(rt, obj)
        if params.dry_run:
            return self.view(rt, obj)
        return self.view(rt, self.cluster.create(rt, obj, manager=None))

    # --- read ------------------------------------------------------------------------------------

    def get(self, rt: ResourceType, namespace: str, name: str, subresource: str | None = None) -> dict[str, Any]:
        obj = self._existing(rt, namespace, name)
        if subresource == "scale":
            return self._scale_view(rt, obj)
        return self.view(rt, obj)

    def _selected(self, rt: ResourceType, namespace: str | None, params: Params) -> list[dict[str, Any]]:
        labels = parse_label_selector(params.get("labelSelector"))
        fields = parse_field_selector(params.get("fieldSelector"), rt.plural)
        return [
            o
            for o in self.cluster.list(rt, namespace)
            if labels_match(labels, o["metadata"].get("labels")) and fields_match(fields, o)
        ]

    def list(self, rt: ResourceType, namespace: str | None, params: Params) -> dict[str, Any]:
        items = self._selected(rt, namespace, params)
        meta: dict[str, Any] = {"resourceVersion": str(self.store.rv)}
        start = 0
        token = params.get("continue")
        if token:
            try:
                start = int(json.loads(base64.urlsafe_b64decode(token.encode()))["start"])
            except (ValueError, KeyError, TypeError) as exc:
                raise bad_request("continue key is not valid") from exc
        limit = int(params.get("limit") or 0)
        if limit > 0 and start + limit < len(items):
            meta["continue"] = base64.urlsafe_b64encode(json.dumps({"start": start + limit}).encode()).decode()
            meta["remainingItemCount"] = len(items) - start - limit
            items = items[start : start + limit]
        else:
            items = items[start:]
        rendered = []
        for item in items:
            out = self.view(rt, item)
            if not rt.custom:
                # built-in lists carry kind/apiVersion once, on the list
                out.pop("kind", None)
                out.pop("apiVersion", None)
            rendered.append(out)
        return {"kind": f"{rt.kind}List", "apiVersion": rt.api_version, "metadata": meta, "items": rendered}

    async def watch(self, rt: ResourceType, namespace: str | None, params: Params) -> AsyncIterator[bytes]:
        labels = parse_label_selector(params.get("labelSelector"))
        fields = parse_field_selector(params.get("fieldSelector"), rt.plural)
        timeout = float(params.get("timeoutSeconds") or 1800)
        since = params.get("resourceVersion")
        subscription = self.store.subscribe(rt.group, rt.plural, namespace if rt.namespaced else None)

        def line(event_type: str, obj: dict[str, Any]) -> bytes:
            return json.dumps({"type": event_type, "object": obj}, separators=(",", ":")).encode() + b"\n"

        def wanted(obj: dict[str, Any]) -> bool:
            return labels_match(labels, obj["metadata"].get("labels")) and fields_match(fields, obj)

        async def stream() -> AsyncIterator[bytes]:
            try:
                if not since or since == "0":
                    for obj in self._selected(rt, namespace, params):
                        yield line("ADDED", self.view(rt, obj))
                else:
                    backlog = self.store.events_since(int(since), rt.group, rt.plural, namespace)
                    if backlog is None:
                        gone = errors.expired(f"too old resource version: {since} ({self.store.rv})")
                        yield line("ERROR", gone.status())
                        return
                    for event in backlog:
                        if wanted(event.obj):
                            yield line(event.type, self.view(rt, event.obj))
                deadline = asyncio.get_running_loop().time() + timeout
                while True:
                    remaining = deadline - asyncio.get_running_loop().time()
                    if remaining <= 0:
                        return
                    try:
                        change: WatchEvent = await asyncio.wait_for(subscription.queue.get(), remaining)
                    except TimeoutError:
                        return
                    if wanted(change.obj):
                        yield line(change.type, self.view(rt, change.obj))
            finally:
                self.store.unsubscribe(subscription)

        return stream()

    # --- update ----------------------------------------------------------------------------------

    def _commit(
        self,
        rt: ResourceType,
        old: dict[str, Any],
        new: dict[str, Any],
        params: Params,
        *,
        manager: str | None,
        subresource: str | None,
    ) -> dict[str, Any]:
        """Shared tail of replace and patch: preconditions, subresource rules, defaults, checks, store."""
        wanted_rv = (new.get("metadata") or {}).get("resourceVersion")
        if wanted_rv and wanted_rv != old["metadata"]["resourceVersion"]:
            raise errors.conflict(rt, old["metadata"]["name"])
        if subresource == "status":
            status = new.get("status")
            new = copy.deepcopy(old)
            if status is None:
                new.pop("status", None)
            else:
                new["status"] = status
        elif rt.has_status and rt.kind != "Namespace":
            new["status"] = copy.deepcopy(old.get("status"))
            if new["status"] is None:
                new.pop("status")
        if rt.kind == "Namespace" and subresource != "status":
            new["status"] = copy.deepcopy(old.get("status"))
        defaults.apply_defaults(rt.kind, new, old)
        new = self.cluster.finish_update(rt, old, new, manager=manager, subresource=subresource)
        validation.validate(rt, new, old)
        if params.dry_run:
            return self.view(rt, new)
        return self.view(rt, self.cluster.store_update(rt, old, new))

    def replace(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        body: Any,
        params: Params,
        user_agent: str,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        old = self._existing(rt, namespace, name)
        if subresource == "scale":
            return self._update_scale(rt, old, body, params, user_agent)
        new = self._check_identity(rt, drop_nulls(body), namespace, name)
        manager = self._manager(params, user_agent)
        return self._commit(rt, old, new, params, manager=manager, subresource=subresource)

    def patch(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        raw: bytes,
        content_type: str,
        params: Params,
        user_agent: str,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        media = content_type.split(";", 1)[0].strip().lower()
        accepted = [JSON_PATCH, MERGE, APPLY] if rt.custom else [JSON_PATCH, MERGE, STRATEGIC, APPLY]
        if media not in accepted:
            raise errors.unsupported_media_type(accepted)
        if media == APPLY:
            return self.apply(rt, namespace, name, raw, params, subresource)
        body = parse_body(raw, media)
        old = self._existing(rt, namespace, name)
        if subresource == "scale":
            scale = self._scale_view(rt, old)
            return self._update_scale(rt, old, self._patched(scale, body, media, "Scale"), params, user_agent)
        patched = self._patched(self.view(rt, old), body, media, rt.kind)
        patched = self._check_identity(rt, drop_nulls(patched), namespace, name)
        manager = self._manager(params, user_agent)
        return self._commit(rt, old, patched, params, manager=manager, subresource=subresource)

    @staticmethod
    def _patched(current: dict[str, Any], body: Any, media: str, kind: str) -> dict[str, Any]:
        if media == JSON_PATCH:
            return patch.json_patch(current, body)
        if not isinstance(body, dict):
            raise bad_request("the patch must be a JSON object")
        if media == MERGE:
            return patch.merge_patch(current, body)
        return patch.strategic_merge_patch(current, body, kind=kind)

    def apply(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        raw: bytes,
        params: Params,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        manager = params.get("fieldManager")
        if not manager:
            cause = errors.required_value("fieldManager", "is required for apply patch")
            raise ApiError(
                422,
                "Invalid",
                f'PatchOptions.meta.k8s.io "" is invalid: {cause.text()}',
                {"group": "meta.k8s.io", "kind": "PatchOptions", "causes": [cause.to_json()]},
            )
        config = parse_body(raw, APPLY)
        if not isinstance(config, dict):
            raise bad_request("the apply configuration must be an object")
        if not config.get("apiVersion") or not config.get("kind"):
            missing = "apiVersion" if not config.get("apiVersion") else "kind"
            raise bad_request(
                f"error decoding YAML: Object '{'Kind' if missing == 'kind' else 'apiVersion'}' is missing"
            )
        config = self._check_identity(rt, config, namespace, name)
        validation.check_name(rt, name)
        force = truthy(params.get("force"))
        old = self.cluster.get(rt, namespace, name)
        if old is None:
            if subresource:
                raise errors.not_found(rt, name)
            if rt.namespaced:
                self.cluster.check_namespace(rt, namespace, name)
            merged = ssa.apply(
                None, config, manager=manager, force=force, shape=shape(rt), api_version=rt.api_version,
                now=rfc3339(), subresource=None,
            )  # fmt: skip
            merged["metadata"]["name"] = name
            if rt.namespaced:
                merged["metadata"]["namespace"] = namespace
            merged.pop("status", None)
            managers = merged["metadata"].get("managedFields")
            obj = self.cluster.stamp_new(rt, merged, manager=None)
            if managers:
                obj["metadata"]["managedFields"] = managers
            validation.validate(rt, obj)
            if params.dry_run:
                return self.view(rt, obj)
            return self.view(rt, self.cluster.create(rt, obj, manager=None))
        wanted_rv = config["metadata"].get("resourceVersion")
        if wanted_rv and wanted_rv != old["metadata"]["resourceVersion"]:
            raise errors.conflict(rt, name)
        merged = ssa.apply(
            old, config, manager=manager, force=force, shape=shape(rt), api_version=rt.api_version,
            now=rfc3339(), subresource=subresource,
        )  # fmt: skip
        merged["metadata"].pop("resourceVersion", None)
        # managers were settled by the apply itself; a change of ownership alone is still a write
        return self._commit(rt, old, merged, params, manager=None, subresource=subresource)

    # --- scale subresource -----------------------------------------------------------------------

    def _scale_view(self, rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                         if k in meta},
            "spec": {"replicas": spec.get("replicas", 0)},
            "status": {"replicas": status.get("replicas", 0), "selector": selector_string(spec.get("selector"))},
        }  # fmt: skip

    def _update_scale(
        self, rt: ResourceType, old: dict[str, Any], scale: Any, params: Params, user_agent: str
    ) -> dict[str, Any]:
        if not isinstance(scale, dict):
            raise bad_request("the request body must be a Scale object")
        wanted_rv = (scale.get("metadata") or {}).get("resourceVersion")
        if wanted_rv and wanted_rv != old["metadata"]["resourceVersion"]:
            raise errors.conflict(rt, old["metadata"]["name"])
        replicas = (scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise errors.invalid(rt, old["metadata"]["name"],
                                 [errors.invalid_value("spec.replicas", replicas, "must be greater than or equal to 0")])  # fmt: skip  # noqa: E501
        new = copy.deepcopy(old)
        new.setdefault("spec", {})["replicas"] = replicas
        new["metadata"].pop("resourceVersion", None)
        self._commit(rt, old, new, params, manager=self._manager(params, user_agent), subresource="scale")
        return self._scale_view(rt, self._existing(rt, old["metadata"].get("namespace", ""), old["metadata"]["name"]))

    # --- delete ----------------------------------------------------------------------------------

    def delete(
        self, rt: ResourceType, namespace: str, name: str, body: Any, params: Params
    ) -> tuple[int, dict[str, Any]]:
        obj = self._existing(rt, namespace, name)
        options = body if isinstance(body, dict) else {}
        preconditions = options.get("preconditions") or {}
        meta = obj["metadata"]
        if preconditions.get("uid") and preconditions["uid"] != meta["uid"]:
            what = (
                f"Precondition failed: UID in precondition: {preconditions['uid']}, UID in object meta: {meta['uid']}"
            )
            raise errors.precondition_failed(rt, name, what)
        if preconditions.get("resourceVersion") and preconditions["resourceVersion"] != meta["resourceVersion"]:
            what = (
                f"Precondition failed: ResourceVersion in precondition: {preconditions['resourceVersion']}, "
                f"ResourceVersion in object meta: {meta['resourceVersion']}"
            )
            raise errors.precondition_failed(rt, name, what)
        if params.dry_run:
            return 200, self.view(rt, obj)
        if rt.kind == "Namespace":
            return 200, self.view(rt, self.terminate_namespace(obj))
        policy = params.get("propagationPolicy") or options.get("propagationPolicy")
        if policy == "Orphan" or truthy(params.get("orphanDependents")) or options.get("orphanDependents"):
            self.orphan_dependents(meta["uid"])
        removed = self.cluster.remove(rt, obj)
        if rt.kind == "Pod" and removed is not None:
            gone = self.view(rt, removed)
            gone["metadata"]["deletionTimestamp"] = rfc3339()
            gone["metadata"]["deletionGracePeriodSeconds"] = 0
            return 200, gone
        details: dict[str, Any] = {"name": name}
        if rt.group:
            details["group"] = rt.group
        details.update(kind=rt.plural, uid=meta["uid"])
        return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}

    def delete_collection(self, rt: ResourceType, namespace: str | None, params: Params) -> dict[str, Any]:
        doomed = self._selected(rt, namespace, params)
        if not params.dry_run:
            for obj in doomed:
                if rt.kind == "Namespace":
                    self.terminate_namespace(obj)
                else:
                    self.cluster.remove(rt, obj)
        return {
            "kind": f"{rt.kind}List",
            "apiVersion": rt.api_version,
            "metadata": {"resourceVersion": str(self.store.rv)},
            "items": [self.view(rt, o) for o in doomed],
        }

    def terminate_namespace(self, ns: dict[str, Any]) -> dict[str, Any]:
        """Mark a namespace Terminating; the namespace controller empties and removes it."""
        if ns["metadata"].get("deletionTimestamp"):
            return ns
        updated = copy.deepcopy(ns)
        updated["metadata"]["deletionTimestamp"] = rfc3339()
        updated["metadata"]["deletionGracePeriodSeconds"] = 0
        updated.setdefault("status", {})["phase"] = "Terminating"
        return self.store.put("", "namespaces", updated)

    def orphan_dependents(self, owner_uid: str) -> None:
        for (group, plural, _, _), obj in list(self.store.objects.items()):
            refs = obj["metadata"].get("ownerReferences") or []
            if any(r.get("uid") == owner_uid for r in refs):
                rt = self.cluster.type_of(group, plural)
                new = copy.deepcopy(obj)
                kept = [r for r in refs if r.get("uid") != owner_uid]
                if kept:
                    new["metadata"]["ownerReferences"] = kept
                else:
                    new["metadata"].pop("ownerReferences")
                self.cluster.update(rt, obj, new, manager="kube-controller-manager")
