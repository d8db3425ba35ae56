"""Command-line helpers the sandbox's servers share."""

from __future__ import annotations


def key_value_pairs(values: list[str], option: str) -> dict[str, str]:
    """`["a=1", "b=x=y"]` -> `{"a": "1", "b": "x=y"}`; exits naming `option` on a malformed item."""
    result = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key or not rest:
            raise SystemExit(f"{option} expects KEY=VALUE, got {value!r}")
        result[key] = rest
    return result
