"""Kubernetes and Key Vault naming rules, and turning ECS names into names they accept.

ECS container names allow upper case and '_' (`api_Worker`), Kubernetes wants DNS-1123
labels (`api-worker`); port names are IANA service names (15 characters, a letter
somewhere); Key Vault secret names are letters, digits and '-' only. Each sanitiser is
deterministic, and `unique` keeps two ECS names from landing on the same Kubernetes one.
"""

from __future__ import annotations

import re

DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
IANA_SVC_NAME = re.compile(r"(?=.*[a-z])[a-z0-9]([a-z0-9]|-(?!-)){0,13}[a-z0-9]|[a-z]")
ENV_VAR_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")
KEY_VAULT_SECRET = re.compile(r"[0-9A-Za-z-]{1,127}")
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?")
QUALIFIED_NAME = re.compile(
    r"(([a-z0-9]([-a-z0-9]*[a-z0-9])?)(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
)


def dns_label(raw: str, max_length: int = 63, fallback: str = "x") -> str:
    """A DNS-1123 label from any string: lower case, each run of other characters becomes one '-'."""
    name = re.sub(r"[^a-z0-9-]+", "-", raw.lower())
    name = name[:max_length].strip("-")
    return name or fallback


def port_name(raw: str) -> str | None:
    """An IANA service name (what a container port's `name` must be), or None when nothing usable is left."""
    name = re.sub(r"-{2,}", "-", dns_label(raw, max_length=63, fallback=""))[:15].strip("-")
    return name if name and IANA_SVC_NAME.fullmatch(name) else None


def key_vault_name(raw: str) -> str:
    """A Key Vault secret name: each run of characters other than letters, digits and '-' becomes one '-'."""
    name = re.sub(r"[^0-9A-Za-z-]+", "-", raw).strip("-")[:127].strip("-")
    return name or "secret"


def unique(name: str, taken: set[str], max_length: int = 63) -> str:
    """`name`, or `name-2`, `name-3` ... (shortened to fit) when already taken; records the result."""
    candidate, number = name, 1
    while candidate in taken:
        number += 1
        suffix = f"-{number}"
        candidate = name[: max_length - len(suffix)].rstrip("-") + suffix
    taken.add(candidate)
    return candidate
