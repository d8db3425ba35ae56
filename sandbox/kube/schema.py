"""What the API server's schemas say about lists and maps, for the fields our manifests use.

Strategic merge patch and server-side apply both need to know, for a list at a given
path, whether it merges item by item (and on which keys), merges as a set of scalars,
or is replaced whole (atomic); and for a map, whether it is one atomic value. This is the
subset of the built-in OpenAPI extensions (`x-kubernetes-patch-merge-key`,
`x-kubernetes-list-map-keys`, `x-kubernetes-map-type`) that MMRV's objects touch. Custom
resources have no strategic merge at all and their lists are atomic unless their schema
says otherwise, as in the real API server.
"""

from __future__ import annotations

from dataclasses import dataclass

_CONTAINER_LISTS = frozenset({"containers", "initContainers", "ephemeralContainers"})

# field name -> keys, for lists that merge by key wherever they appear
_KEYED: dict[str, tuple[str, ...]] = {
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "env": ("name",),
    "volumes": ("name",),
    "volumeMounts": ("mountPath",),
    "volumeDevices": ("devicePath",),
    "imagePullSecrets": ("name",),
    "hostAliases": ("ip",),
    "conditions": ("type",),
    "ownerReferences": ("uid",),
    "topologySpreadConstraints": ("topologyKey", "whenUnsatisfiable"),
    "resourceClaims": ("name",),
    "schedulingGates": ("name",),
    "containerStatuses": ("name",),
    "initContainerStatuses": ("name",),
}

# lists of scalars that merge as sets
_SETS = frozenset({"finalizers"})

# maps/structs that are one value: owned and replaced whole
_ATOMIC_MAPS = frozenset(
    {
        "selector",  # LabelSelector (structType=atomic) and Service.spec.selector (mapType=atomic)
        "podSelector",
        "namespaceSelector",
        "nodeSelector",
        "secretKeyRef",
        "configMapKeyRef",
        "fieldRef",
        "resourceFieldRef",
        "localObjectReference",
    }
)

# defaults for list-map keys, so an item applied without `protocol` matches the stored `TCP` one
KEY_DEFAULTS: dict[str, object] = {"protocol": "TCP"}


@dataclass(frozen=True)
class ListKind:
    kind: str  # "map", "set" or "atomic"
    keys: tuple[str, ...] = ()

    @property
    def patch_merge_key(self) -> str | None:
        """Strategic merge patch's single merge key (the first of the list-map keys)."""
        return self.keys[0] if self.kind == "map" else None


ATOMIC = ListKind("atomic")


def list_kind(path: tuple[str, ...], *, custom: bool, kind: str) -> ListKind:
    """How the list at `path` (field names from the object root, list items skipped) merges."""
    if not path:
        return ATOMIC
    name = path[-1]
    if path[0] == "metadata":
        if name in _SETS:
            return ListKind("set")
        if name == "ownerReferences":
            return ListKind("map", ("uid",))
        return ATOMIC
    if custom:
        return ATOMIC
    if name == "ports":
        if len(path) >= 2 and path[-2] in _CONTAINER_LISTS:
            return ListKind("map", ("containerPort", "protocol"))
        if kind == "Service" and path == ("spec", "ports"):
            return ListKind("map", ("port", "protocol"))
        return ATOMIC
    if name in _KEYED:
        return ListKind("map", _KEYED[name])
    if name in _SETS:
        return ListKind("set")
    return ATOMIC


def map_is_atomic(path: tuple[str, ...], *, custom: bool) -> bool:
    if not path or path[0] == "metadata":
        return False
    if custom:
        return False
    return path[-1] in _ATOMIC_MAPS


def item_key(item: object, keys: tuple[str, ...]) -> tuple[object, ...] | None:
    """The identity of a list-map item (key defaults applied), or None if it has no key at all."""
    if not isinstance(item, dict):
        return None
    values = tuple(item.get(k, KEY_DEFAULTS.get(k)) for k in keys)
    if all(v is None for v in values):
        return None
    return values
