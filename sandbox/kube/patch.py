"""The three PATCH formats: JSON merge patch (RFC 7386), strategic merge patch, JSON patch (RFC 6902).

Strategic merge follows the API server's rules for the lists `schema` knows: list-map items
merge by their merge key (containers and env by `name`, container ports by
`containerPort`, service ports by `port`, volumes by `name`, volumeMounts by `mountPath`),
set lists union, other lists are replaced. The directives clients send are honoured:
`$patch: replace|delete|merge`, `$retainKeys`, `$deleteFromPrimitiveList/<field>`, and
`$setElementOrder/<field>` (which orders the merged list, as kubectl's patches expect).
"""

from __future__ import annotations

import copy
from typing import Any

from sandbox.kube import schema
from sandbox.kube.errors import ApiError, bad_request

# --- JSON merge patch ---------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# --- strategic merge patch ----------------------------------------------------------------------


def _strip_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_directives(v) for k, v in value.items() if not k.startswith("$") and v is not None}
    if isinstance(value, list):
        return [_strip_directives(v) for v in value if not (isinstance(v, dict) and v.get("$patch") == "delete")]
    return value


class _Delete:
    """Marker: the patched value is to be removed."""


_DELETE = _Delete()


def strategic_merge_patch(original: dict[str, Any], patch: dict[str, Any], *, kind: str) -> dict[str, Any]:
    if not isinstance(patch, dict):
        raise bad_request("strategic merge patch must be a JSON object")
    result = _merge_map(original, patch, (), kind)
    return {} if isinstance(result, _Delete) else result


def _merge_map(original: Any, patch: dict[str, Any], path: tuple[str, ...], kind: str) -> Any:
    directive = patch.get("$patch")
    if directive == "delete":
        return _DELETE
    if directive == "replace":
        return _strip_directives(patch)
    result = copy.deepcopy(original) if isinstance(original, dict) else {}
    orders: dict[str, list[Any]] = {}
    for key, value in patch.items():
        if key.startswith("$setElementOrder/"):
            orders[key.split("/", 1)[1]] = value if isinstance(value, list) else []
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            doomed = value if isinstance(value, list) else []
            if isinstance(result.get(field), list):
                result[field] = [v for v in result[field] if v not in doomed]
            continue
        if key.startswith("$"):
            continue
        sub = (*path, key)
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            merged = _merge_map(result.get(key), value, sub, kind)
            if isinstance(merged, _Delete):
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list):
            result[key] = _merge_list(result.get(key), value, sub, kind)
        else:
            result[key] = value
    retain = patch.get("$retainKeys")
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    for field, order in orders.items():
        if isinstance(result.get(field), list):
            result[field] = _apply_order(
                result[field], order, schema.list_kind((*path, field), custom=False, kind=kind)
            )
    return result


def _merge_list(original: Any, patch: list[Any], path: tuple[str, ...], kind: str) -> list[Any]:
    lk = schema.list_kind(path, custom=False, kind=kind)
    if not isinstance(original, list):
        original = []
    if lk.kind == "set":
        merged = list(original)
        merged.extend(v for v in patch if v not in merged)
        return merged
    merge_key = lk.patch_merge_key
    if merge_key is None or not all(isinstance(item, dict) for item in patch):
        return _strip_directives(patch)
    if any(item.get("$patch") == "replace" for item in patch):
        return [_strip_directives(i) for i in patch if i.get("$patch") != "replace"]
    result = copy.deepcopy(original)
    for item in patch:
        key = item.get(merge_key)
        if key is None:
            raise bad_request(f"map: {item} does not contain declared merge key: {merge_key}")
        index = next((i for i, cur in enumerate(result) if isinstance(cur, dict) and cur.get(merge_key) == key), None)
        if item.get("$patch") == "delete":
            if index is not None:
                result.pop(index)
            continue
        if index is None:
            result.append(_strip_directives(item))
        else:
            merged = _merge_map(result[index], item, path, kind)
            if isinstance(merged, _Delete):
                result.pop(index)
            else:
                result[index] = merged
    return result


def _apply_order(items: list[Any], order: list[Any], lk: schema.ListKind) -> list[Any]:
    """Order merged items as `$setElementOrder` says; items it does not name keep their place at the end."""
    key = lk.patch_merge_key

    def identity(value: Any) -> Any:
        return value.get(key) if key and isinstance(value, dict) else value

    wanted = [identity(o) for o in order]
    ranked = sorted(
        range(len(items)),
        key=lambda i: wanted.index(identity(items[i])) if identity(items[i]) in wanted else len(wanted) + i,
    )
    return [items[i] for i in ranked]


# --- JSON patch ---------------------------------------------------------------------------------


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise _patch_error(f'invalid JSON pointer "{path}"')
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _patch_error(message: str) -> ApiError:
    return ApiError(422, "Invalid", message)


def _container(doc: Any, tokens: list[str], op: str, path: str) -> tuple[Any, str]:
    current = doc
    for token in tokens[:-1]:
        if isinstance(current, dict) and token in current:
            current = current[token]
        elif isinstance(current, list) and token.isdigit() and int(token) < len(current):
            current = current[int(token)]
        else:
            raise _patch_error(f"{op} operation does not apply: doc is missing path: {path}: missing value")
    return current, tokens[-1]


def _get(doc: Any, path: str, op: str) -> Any:
    current = doc
    for token in _pointer(path):
        if isinstance(current, dict) and token in current:
            current = current[token]
        elif isinstance(current, list) and token.isdigit() and int(token) < len(current):
            current = current[int(token)]
        else:
            raise _patch_error(f"{op} operation does not apply: doc is missing path: {path}: missing value")
    return current


def _add(doc: Any, path: str, value: Any, op: str = "add") -> Any:
    tokens = _pointer(path)
    if not tokens:
        return copy.deepcopy(value)
    parent, last = _container(doc, tokens, op, path)
    if isinstance(parent, dict):
        parent[last] = copy.deepcopy(value)
    elif isinstance(parent, list):
        if last == "-":
            parent.append(copy.deepcopy(value))
        elif last.isdigit() and int(last) <= len(parent):
            parent.insert(int(last), copy.deepcopy(value))
        else:
            raise _patch_error(f"{op} operation does not apply: doc is missing path: {path}: missing value")
    else:
        raise _patch_error(f"{op} operation does not apply: doc is missing path: {path}: missing value")
    return doc


def _remove(doc: Any, path: str, op: str = "remove") -> Any:
    tokens = _pointer(path)
    parent, last = _container(doc, tokens, op, path) if tokens else (None, "")
    if isinstance(parent, dict) and last in parent:
        return parent.pop(last)
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return parent.pop(int(last))
    raise _patch_error(f"{op} operation does not apply: doc is missing path: {path}: missing value")


def json_patch(doc: dict[str, Any], operations: Any) -> dict[str, Any]:
    if not isinstance(operations, list):
        raise bad_request("json patch must be a JSON array of operations")
    result: Any = copy.deepcopy(doc)
    for operation in operations:
        if not isinstance(operation, dict) or "op" not in operation or "path" not in operation:
            raise bad_request(f"invalid JSON patch operation: {operation}")
        op, path = operation["op"], operation["path"]
        if op == "add":
            result = _add(result, path, operation.get("value"))
        elif op == "remove":
            _remove(result, path)
        elif op == "replace":
            _remove(result, path, "replace")
            result = _add(result, path, operation.get("value"), "replace")
        elif op == "move":
            value = _remove(result, operation.get("from", ""), "move")
            result = _add(result, path, value, "move")
        elif op == "copy":
            result = _add(result, path, _get(result, operation.get("from", ""), "copy"), "copy")
        elif op == "test":
            if _get(result, path, "test") != operation.get("value"):
                raise _patch_error(f"testing value {path} failed: test failed")
        else:
            raise bad_request(f"Unexpected kind: {op}")
    if not isinstance(result, dict):
        raise bad_request("json patch result is not an object")
    return result
