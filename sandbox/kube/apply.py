"""Server-side apply and managedFields.

Field ownership is a set of paths per field manager, in the API server's FieldsV1 notation
(`f:<field>`, `k:{"name":"web"}` for list-map items, `v:<json>` for set items). Apply
follows structured-merge-diff's rules:

* the applier's set is every leaf and list item in its configuration;
* a field another manager owns is a conflict when the applied value differs from the live
  one (409 with `FieldManagerConflict` causes); `force=true` takes those fields over;
* the configuration is merged into the live object (list-maps by key, sets by value,
  atomic lists and maps replaced);
* a field the applier owned before and no longer applies is removed unless another
  manager still owns it.

Every other write (create, update, patch, controllers' status writes) is an `Update`
operation: the writer takes over the fields whose values it changed.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

from sandbox.kube import schema
from sandbox.kube.errors import ApiError, Cause

Path = tuple[str, ...]
_MISSING = object()
_METADATA_FIELDS = ("labels", "annotations", "finalizers", "ownerReferences")


@dataclass
class ManagerEntry:
    manager: str
    operation: str  # "Apply" or "Update"
    api_version: str
    time: str | None
    subresource: str | None
    fields: set[Path] = field(default_factory=set)

    def same_owner(self, manager: str, operation: str, subresource: str | None) -> bool:
        return self.manager == manager and self.operation == operation and self.subresource == subresource

    def printed(self) -> str:
        """How conflict messages name a manager (apiserver fieldmanager printManager)."""
        if self.operation == "Update":
            return f"{json.dumps(self.manager)} using {self.api_version}"
        return json.dumps(self.manager)

    def to_json(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
        }
        if self.time:
            entry["time"] = self.time
        entry["fieldsType"] = "FieldsV1"
        entry["fieldsV1"] = to_fields_v1(self.fields)
        if self.subresource:
            entry["subresource"] = self.subresource
        return entry


# --- FieldsV1 <-> path sets ------------------------------------------------------------------


def to_fields_v1(paths: set[Path]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    members: list[dict[str, Any]] = []
    for path in sorted(paths):
        node = tree
        for token in path:
            node = node.setdefault(token, {})
        members.append(node)
    for node in members:
        if node:
            node["."] = {}
    return _sorted_tree(tree)


def _sorted_tree(node: dict[str, Any]) -> dict[str, Any]:
    return {k: _sorted_tree(node[k]) for k in sorted(node)}


def from_fields_v1(tree: dict[str, Any], prefix: Path = ()) -> set[Path]:
    paths: set[Path] = set()
    for token, child in tree.items():
        if token == ".":
            paths.add(prefix)
            continue
        path = (*prefix, token)
        if not child:
            paths.add(path)
        else:
            paths |= from_fields_v1(child, path)
    return paths


def read_managers(obj: dict[str, Any] | None) -> list[ManagerEntry]:
    entries = []
    for raw in ((obj or {}).get("metadata") or {}).get("managedFields") or []:
        if not isinstance(raw, dict) or not raw.get("manager"):
            continue
        entries.append(
            ManagerEntry(
                manager=raw["manager"],
                operation=raw.get("operation", "Update"),
                api_version=raw.get("apiVersion", ""),
                time=raw.get("time"),
                subresource=raw.get("subresource") or None,
                fields=from_fields_v1(raw.get("fieldsV1") or {}),
            )
        )
    return entries


def write_managers(obj: dict[str, Any], entries: list[ManagerEntry]) -> None:
    kept = [e.to_json() for e in entries if e.fields]
    if kept:
        obj["metadata"]["managedFields"] = kept
    else:
        obj["metadata"].pop("managedFields", None)


# --- field sets of objects -------------------------------------------------------------------


def _key_token(item: dict[str, Any], keys: tuple[str, ...]) -> str:
    values = {k: item.get(k, schema.KEY_DEFAULTS.get(k)) for k in keys}
    values = {k: v for k, v in values.items() if v is not None}
    return "k:" + json.dumps(values, separators=(",", ":"), sort_keys=True)


@dataclass(frozen=True)
class Shape:
    """What the walk needs to know about the object's type."""

    kind: str
    custom: bool


def _scope_roots(obj: dict[str, Any], scope: str) -> list[tuple[str, Any]]:
    if scope == "status":
        return [("status", obj["status"])] if isinstance(obj.get("status"), dict) else []
    roots: list[tuple[str, Any]] = []
    for key, value in obj.items():
        if key in ("apiVersion", "kind", "status") or value is None:
            continue
        if key == "metadata":
            meta = {k: value[k] for k in _METADATA_FIELDS if isinstance(value, dict) and value.get(k) is not None}
            if meta:
                roots.append(("metadata", meta))
            continue
        roots.append((key, value))
    return roots


def field_set(obj: dict[str, Any] | None, shape: Shape, *, scope: str = "main", nodes: bool = False) -> set[Path]:
    """Paths an object sets. `nodes` also lists the maps and lists themselves (Update's bookkeeping)."""
    out: set[Path] = set()
    if not obj:
        return out
    for key, value in _scope_roots(obj, scope):
        _walk(value, (f"f:{key}",), (key,), out, shape, nodes, top=True)
    return out


def _walk(value: Any, tokens: Path, names: tuple[str, ...], out: set[Path], shape: Shape, nodes: bool, top=False):
    if isinstance(value, dict):
        if not value or schema.map_is_atomic(names, custom=shape.custom):
            out.add(tokens)
            return
        if nodes and not top:
            out.add(tokens)
        for key, child in value.items():
            if child is not None:
                _walk(child, (*tokens, f"f:{key}"), (*names, key), out, shape, nodes)
        return
    if isinstance(value, list):
        lk = schema.list_kind(names, custom=shape.custom, kind=shape.kind)
        keyed = lk.kind == "map" and all(schema.item_key(i, lk.keys) is not None for i in value)
        if keyed and value:
            if nodes:
                out.add(tokens)
            for item in value:
                item_tokens = (*tokens, _key_token(item, lk.keys))
                out.add(item_tokens)
                for key, child in item.items():
                    if child is not None:
                        _walk(child, (*item_tokens, f"f:{key}"), (*names, key), out, shape, nodes)
            return
        if lk.kind == "set" and value:
            if nodes:
                out.add(tokens)
            for item in value:
                out.add((*tokens, "v:" + json.dumps(item, separators=(",", ":"))))
            return
    out.add(tokens)


def value_at(obj: Any, path: Path) -> Any:
    current = obj
    for token in path:
        kind, _, rest = token.partition(":")
        if kind == "f":
            if not isinstance(current, dict) or rest not in current:
                return _MISSING
            current = current[rest]
        elif kind == "k":
            wanted = json.loads(rest)
            if not isinstance(current, list):
                return _MISSING
            current = next(
                (
                    item
                    for item in current
                    if isinstance(item, dict)
                    and all(item.get(k, schema.KEY_DEFAULTS.get(k)) == v for k, v in wanted.items())
                ),
                _MISSING,
            )
            if current is _MISSING:
                return _MISSING
        elif kind == "v":
            wanted = json.loads(rest)
            if not isinstance(current, list) or wanted not in current:
                return _MISSING
            current = wanted
        elif kind == "i":
            if not isinstance(current, list) or int(rest) >= len(current):
                return _MISSING
            current = current[int(rest)]
    return current


def path_string(path: Path) -> str:
    """A path as conflict messages print it: `.spec.template.spec.containers[name="web"].image`."""
    parts = []
    for token in path:
        kind, _, rest = token.partition(":")
        if kind == "f":
            parts.append("." + rest)
        elif kind == "k":
            keys = json.loads(rest)
            parts.append("[" + ",".join(f"{k}={json.dumps(v)}" for k, v in keys.items()) + "]")
        elif kind == "v":
            parts.append(f"[={rest}]")
        else:
            parts.append(f"[{rest}]")
    return "".join(parts)


def _is_item(path: Path) -> bool:
    return bool(path) and path[-1][:2] in ("k:", "v:")


# --- merging and removing ----------------------------------------------------------------------


def _drop_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def _merge_into(live: dict[str, Any], applied: dict[str, Any], names: tuple[str, ...], shape: Shape) -> None:
    for key, value in applied.items():
        sub = (*names, key)
        current = live.get(key)
        if isinstance(value, dict) and isinstance(current, dict) and not schema.map_is_atomic(sub, custom=shape.custom):
            _merge_into(current, value, sub, shape)
        elif isinstance(value, list) and isinstance(current, list):
            lk = schema.list_kind(sub, custom=shape.custom, kind=shape.kind)
            if lk.kind == "map" and all(schema.item_key(i, lk.keys) is not None for i in value):
                for item in value:
                    wanted = schema.item_key(item, lk.keys)
                    index = next((i for i, cur in enumerate(current) if schema.item_key(cur, lk.keys) == wanted), None)
                    if index is None:
                        current.append(copy.deepcopy(item))
                    else:
                        _merge_into(current[index], item, sub, shape)
            elif lk.kind == "set":
                current.extend(copy.deepcopy(v) for v in value if v not in current)
            else:
                live[key] = copy.deepcopy(value)
        else:
            live[key] = copy.deepcopy(value)


def merge_applied(live: dict[str, Any], applied: dict[str, Any], shape: Shape, scope: str) -> dict[str, Any]:
    merged = copy.deepcopy(live)
    for key, value in _scope_roots(applied, scope):
        if key == "metadata":
            _merge_into(merged.setdefault("metadata", {}), value, ("metadata",), shape)
        else:
            _merge_into(merged, {key: value}, (), shape)
    return merged


def _remove_at(obj: dict[str, Any], path: Path) -> None:
    parent = value_at(obj, path[:-1])
    kind, _, rest = path[-1].partition(":")
    if kind == "f" and isinstance(parent, dict):
        parent.pop(rest, None)
    elif kind in ("k", "v") and isinstance(parent, list):
        target = value_at(obj, path)
        if target is not _MISSING:
            parent[:] = [item for item in parent if item is not target and not (kind == "v" and item == target)]
    # prune containers the removal left empty (an empty `labels: {}` nobody set)
    for depth in range(len(path) - 1, 1, -1):
        container = value_at(obj, path[:depth])
        if container in ({}, []) and path[depth - 1].startswith("f:"):
            _remove_at(obj, path[:depth])
            break


def _is_key_field(path: Path) -> bool:
    """A list-map item's key field: removed only with the item itself."""
    if len(path) < 2 or not path[-2].startswith("k:"):
        return False
    return path[-1][2:] in json.loads(path[-2][2:])


# --- the operations ----------------------------------------------------------------------------


def conflict_error(conflicts: list[tuple[ManagerEntry, Path]]) -> ApiError:
    causes = [Cause("FieldManagerConflict", f"conflict with {e.printed()}", path_string(p)) for e, p in conflicts]
    if len(conflicts) == 1:
        entry, path = conflicts[0]
        message = f"Apply failed with 1 conflict: conflict with {entry.printed()}: {path_string(path)}"
    else:
        by_manager: dict[str, list[str]] = {}
        for entry, path in conflicts:
            by_manager.setdefault(entry.printed(), []).append(path_string(path))
        blocks = [f"conflicts with {m}:" + "".join(f"\n- {p}" for p in ps) for m, ps in sorted(by_manager.items())]
        message = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(blocks)
    return ApiError(409, "Conflict", message, {"causes": [c.to_json() for c in causes]})


def apply(
    live: dict[str, Any] | None,
    applied: dict[str, Any],
    *,
    manager: str,
    force: bool,
    shape: Shape,
    api_version: str,
    now: str,
    subresource: str | None = None,
) -> dict[str, Any]:
    """The object after applying `applied` as `manager` (managedFields included), or a 409."""
    scope = "status" if subresource == "status" else "main"
    config = _drop_nulls(applied)
    new_set = field_set(config, shape, scope=scope)
    base = copy.deepcopy(live) if live else {"metadata": {}}
    entries = read_managers(base)
    mine = next((e for e in entries if e.same_owner(manager, "Apply", subresource)), None)
    others = [e for e in entries if e is not mine]

    conflicts = [
        (entry, path)
        for entry in others
        for path in sorted(new_set & entry.fields)
        if not _is_item(path) and value_at(base, path) != value_at(config, path)
    ]
    if conflicts and not force:
        raise conflict_error(conflicts)
    for entry, path in conflicts:
        entry.fields.discard(path)

    merged = merge_applied(base, config, shape, scope)
    still_owned = set().union(*(e.fields for e in others)) if others else set()
    previous = mine.fields if mine else set()
    removable = {
        p for p in previous - new_set if not _is_key_field(p) and not any(o[: len(p)] == p for o in still_owned)
    }
    for path in sorted(removable, key=len, reverse=True):
        if not any(path[:n] in removable for n in range(1, len(path))):
            _remove_at(merged, path)

    if mine is None:
        mine = ManagerEntry(manager, "Apply", api_version, now, subresource)
        entries.append(mine)
    if mine.fields != new_set or _without_managers(merged) != _without_managers(base):
        mine.time = now
    mine.fields = new_set
    mine.api_version = api_version
    write_managers(merged, entries)
    return merged


def _without_managers(obj: dict[str, Any]) -> dict[str, Any]:
    stripped = copy.deepcopy(obj)
    stripped.get("metadata", {}).pop("managedFields", None)
    return stripped


def record_update(
    old: dict[str, Any] | None,
    new: dict[str, Any],
    *,
    manager: str,
    shape: Shape,
    api_version: str,
    now: str,
    subresource: str | None = None,
) -> None:
    """Give `manager` the fields this write changed (in place on `new`), taking them from the others."""
    scope = "status" if subresource == "status" else "main"
    old_set = field_set(old, shape, scope=scope, nodes=True)
    new_set = field_set(new, shape, scope=scope, nodes=True)

    def changed(path: Path) -> bool:
        if path not in old_set:
            return True
        value = value_at(new, path)
        container = isinstance(value, dict | list) and value and not _leafy_container(path, new, shape)
        return not container and value_at(old, path) != value

    changed_paths = {p for p in new_set if changed(p)}
    removed = old_set - new_set
    entries = read_managers(old)
    if not changed_paths and not removed:
        write_managers(new, entries)
        return
    mine = next((e for e in entries if e.same_owner(manager, "Update", subresource)), None)
    for entry in entries:
        if entry is not mine:
            entry.fields -= changed_paths | removed
    if mine is None:
        mine = ManagerEntry(manager, "Update", api_version, now, subresource)
        entries.append(mine)
    mine.fields = (mine.fields - removed) | changed_paths
    mine.time = now
    mine.api_version = api_version
    write_managers(new, entries)


def _leafy_container(path: Path, obj: dict[str, Any], shape: Shape) -> bool:
    """Atomic maps and lists are leaves: a change inside them changes the field itself."""
    names = tuple(t[2:] for t in path if t.startswith("f:"))
    value = value_at(obj, path)
    if isinstance(value, dict):
        return schema.map_is_atomic(names, custom=shape.custom)
    if isinstance(value, list):
        lk = schema.list_kind(names, custom=shape.custom, kind=shape.kind)
        return lk.kind == "atomic"
    return False
