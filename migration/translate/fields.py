"""Reading ECS JSON field by field, so that no field goes unaccounted for.

A `Node` is a typed view of one JSON object at a path (`taskDefinition.containerDefinitions[1]`).
Every key the translation reads, reports or deliberately ignores is marked as accounted for;
when the translation is done, `Ledger.leftovers()` names every non-empty key nobody touched,
so an ECS field this translator does not know still reaches the report instead of vanishing.
Type errors are collected (one line per problem, naming the field path), never raised one at
a time: the user sees everything that is wrong with the input at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from migration.translate.model import ReportItem, Severity


def is_empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _type_name(value: Any) -> str:
    return {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
    }.get(type(value), type(value).__name__)


class Ledger:
    """The problems found, the report items written, and every node handed out (for leftovers)."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.items: list[ReportItem] = []
        self.nodes: list[Node] = []

    def problem(self, path: str, message: str) -> None:
        line = f"{path}: {message}"
        if line not in self.problems:
            self.problems.append(line)

    def report(self, path: str, severity: Severity, ecs: str, outcome: str) -> None:
        item = ReportItem(field=path, severity=severity, ecs=ecs, outcome=outcome)
        if item not in self.items:
            self.items.append(item)

    def node(self, data: dict[str, Any], path: str) -> Node:
        node = Node(data, path, self)
        self.nodes.append(node)
        return node

    def leftovers(self) -> Iterator[tuple[str, Any]]:
        for node in self.nodes:
            for key, value in node.data.items():
                if key not in node.used and not is_empty(value):
                    yield node.path_of(key), value


class Node:
    def __init__(self, data: dict[str, Any], path: str, ledger: Ledger) -> None:
        self.data = data
        self.path = path
        self.ledger = ledger
        self.used: set[str] = set()

    def path_of(self, key: str | int) -> str:
        if isinstance(key, int):
            return f"{self.path}[{key}]"
        return f"{self.path}.{key}" if self.path else key

    def problem(self, key: str, message: str) -> None:
        self.ledger.problem(self.path_of(key), message)

    def has(self, key: str) -> bool:
        return not is_empty(self.data.get(key))

    def raw(self, key: str) -> Any:
        self.used.add(key)
        return self.data.get(key)

    def ignore(self, *keys: str) -> None:
        """Read-only or informational fields: accounted for, nothing to translate."""
        self.used.update(keys)

    def report(self, key: str, severity: Severity, ecs: str, outcome: str) -> bool:
        """A report item for `key` when it holds something; True when it did."""
        self.used.add(key)
        if is_empty(self.data.get(key)):
            return False
        self.ledger.report(self.path_of(key), severity, ecs, outcome)
        return True

    def report_together(self, keys: tuple[str, ...], severity: Severity, ecs: str, outcome: str) -> list[str]:
        """One report item for those of `keys` that hold something (path `node.{a,b}`); the keys present."""
        self.used.update(keys)
        present = [k for k in keys if self.has(k)]
        if present:
            shown = present[0] if len(present) == 1 else "{" + ",".join(present) + "}"
            self.ledger.report(self.path_of(shown), severity, ecs, outcome)
        return present

    # --- typed getters: a wrong type is a problem, and the getter answers None --------------

    def _get(self, key: str, required: bool) -> Any:
        self.used.add(key)
        value = self.data.get(key)
        if value is None and required:
            self.problem(key, "required, but missing")
        return value

    def text(self, key: str, *, required: bool = False, allowed: tuple[str, ...] = ()) -> str | None:
        value = self._get(key, required)
        if value is None:
            return None
        if not isinstance(value, str):
            self.problem(key, f"must be a string, got {_type_name(value)}")
            return None
        if allowed and value not in allowed:
            self.problem(key, f"{value!r} is not allowed; allowed: {', '.join(allowed)}")
            return None
        if required and not value:
            self.problem(key, "required, but empty")
            return None
        return value

    def whole(
        self, key: str, *, required: bool = False, minimum: int | None = None, maximum: int | None = None
    ) -> int | None:
        value = self._get(key, required)
        if value is None:
            return None
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(key, f"must be a whole number, got {_type_name(value)} {value!r}")
            return None
        if minimum is not None and value < minimum:
            self.problem(key, f"{value} is below the minimum {minimum}")
            return None
        if maximum is not None and value > maximum:
            self.problem(key, f"{value} is above the maximum {maximum}")
            return None
        return value

    def flag(self, key: str) -> bool | None:
        value = self._get(key, False)
        if value is None:
            return None
        if not isinstance(value, bool):
            self.problem(key, f"must be true or false, got {_type_name(value)} {value!r}")
            return None
        return value

    def obj(self, key: str, *, required: bool = False) -> Node | None:
        value = self._get(key, required)
        if value is None:
            return None
        if not isinstance(value, dict):
            self.problem(key, f"must be an object, got {_type_name(value)}")
            return None
        return self.ledger.node(value, self.path_of(key))

    def objs(self, key: str, *, required: bool = False) -> list[Node]:
        """A list of objects, each a Node at `key[i]`; bad entries are problems and skipped."""
        value = self._get(key, required)
        if value is None:
            return []
        if not isinstance(value, list):
            self.problem(key, f"must be a list, got {_type_name(value)}")
            return []
        out = []
        for index, entry in enumerate(value):
            path = f"{self.path_of(key)}[{index}]"
            if not isinstance(entry, dict):
                self.ledger.problem(path, f"must be an object, got {_type_name(entry)}")
                continue
            out.append(self.ledger.node(entry, path))
        return out

    def texts(self, key: str) -> list[str] | None:
        value = self._get(key, False)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.problem(key, "must be a list of strings")
            return None
        return list(value)
