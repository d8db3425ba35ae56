"""Secrets (issue 5): the back end's AWS secrets copied into Key Vault, planned and verified by hash.

The translation names what to copy (`SecretCopy`: the Key Vault secret, the Secrets Manager
secret or SSM parameter, the JSON key). The secrets phase reads each source value inside the
task that writes it, fingerprints it (sha256), compares with what Key Vault holds, writes only
what differs and reads it back. A value never leaves that task: not in a log line, an
exception, a plan, a report, a Prefect parameter or result. `SecretValue` hides it from
`repr`/`str` and refuses to be pickled (so Prefect can never persist one); fingerprints stay in
the task too: the plan and the report carry names only.

    plan_secrets(environment, copies, observed) -> Plan   create / update / noop / blocked
    extract_json_key(value, key, source=...)           ECS's `:json-key:` on a secret string
    fingerprint(value)                                 "sha256:<hex>"

Pure: no SDK, no Prefect, no network.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NoReturn

from pydantic import BaseModel, ConfigDict, Field

from migration.errors import PermanentError
from migration.plan import Action, Plan
from migration.translate.model import SecretCopy
from migration.translate.secrets import parse_value_from

PHASE = "secrets"
RESOURCE_TYPE = "Microsoft.KeyVault/vaults/secrets"
MANAGED_BY = "managed-by"
MANAGER = "mmrv-migrate"
SOURCE_TAG = "source"
SPEC_TAG = "mmrv-migrate/spec"
MAX_TAG_VALUE = 256
MAX_VALUE_BYTES = 25 * 1024  # Key Vault's limit for a secret value

# a run: created / updated / unchanged; a dry run: would-create / would-update / unchanged / blocked
SecretStatus = Literal["created", "updated", "unchanged", "would-create", "would-update", "blocked"]


class SecretContentError(PermanentError):
    """A source value cannot become the Key Vault secret (not JSON, no such key, too large ...).

    The message names the secret and the key, never the value.
    """

    def __init__(self, message: str) -> None:
        super().__init__("secrets", message)


class SecretValue:
    """A secret value in memory. Shows as `SecretValue(***)`; cannot be pickled, so it is never persisted."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The value itself: for the one call that writes it (and for hashing)."""
        return self._value

    def __repr__(self) -> str:
        return "SecretValue(***)"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("a secret value is never pickled or persisted")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretValue) and fingerprint(self) == fingerprint(other)

    def __hash__(self) -> int:
        return hash(fingerprint(self))


def fingerprint(value: SecretValue | str) -> str:
    """sha256 of the value's UTF-8 bytes, as "sha256:<hex>": how values are compared, never shown."""
    text = value.reveal() if isinstance(value, SecretValue) else value
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


_NOT_JSON = object()


def extract_json_key(value: SecretValue, key: str, *, source: str) -> SecretValue:
    """The value under `key` of the JSON object `value`, as ECS injects it for `ARN:key::`.

    A string stays as it is; a number, boolean, object or list becomes its compact JSON. Errors
    name `source` and `key` and say what is wrong, never what the value is.
    """
    try:
        document = json.loads(value.reveal())
    except ValueError:
        # nothing of the decoder's error, not even as context: it holds the text it choked on
        document = _NOT_JSON
    if document is _NOT_JSON:
        raise SecretContentError(
            f"{source}: the reference asks for the JSON key {key!r}, but the secret is not a JSON document"
        )
    if not isinstance(document, dict):
        raise SecretContentError(
            f"{source}: the reference asks for the JSON key {key!r}, but the secret's JSON is "
            f"{_json_kind(document)}, not an object"
        )
    if key not in document:
        raise SecretContentError(
            f"{source}: the secret's JSON has no key {key!r} (it has {len(document)} key(s): "
            f"{', '.join(repr(k) for k in sorted(document)[:20])})"
        )
    item = document[key]
    if item is None:
        raise SecretContentError(f"{source}: the secret's JSON key {key!r} is null")
    return SecretValue(item if isinstance(item, str) else json.dumps(item, separators=(",", ":")))


def _json_kind(document: Any) -> str:
    if isinstance(document, list):
        return "a list"
    if isinstance(document, bool):
        return "a boolean"
    if isinstance(document, int | float):
        return "a number"
    if isinstance(document, str):
        return "a string"
    return "null"


def check_value(value: SecretValue, *, key_vault_secret: str, source: str) -> None:
    """Key Vault's limits: a non-empty value of at most 25 KiB."""
    size = len(value.reveal().encode("utf-8"))
    if size == 0:
        raise SecretContentError(f"{source}: the value for Key Vault secret {key_vault_secret!r} is empty")
    if size > MAX_VALUE_BYTES:
        raise SecretContentError(
            f"{source}: the value for Key Vault secret {key_vault_secret!r} is {size} bytes; "
            f"Key Vault takes at most {MAX_VALUE_BYTES}"
        )


# --- names -----------------------------------------------------------------------------------


def source_name(copy: SecretCopy) -> str:
    """The AWS name of the source: `mmrv/staging/db` (Secrets Manager, without the random suffix) or the parameter."""
    ref = parse_value_from(copy.source)
    return ref.name if not isinstance(ref, str) else copy.source


def source_label(copy: SecretCopy) -> str:
    """The source for people and the `source` tag: `mmrv/staging/db:password` for a JSON key."""
    label = source_name(copy) + (f":{copy.json_key}" if copy.json_key else "")
    if copy.version_stage:
        label += f" ({copy.version_stage})"
    elif copy.version_id:
        label += f" (version {copy.version_id})"
    return label


def vault_tags(copy: SecretCopy, spec_name: str | None = None) -> dict[str, str]:
    """The tags the tool writes on a Key Vault secret: ownership and where the value came from."""
    tags = {MANAGED_BY: MANAGER, SOURCE_TAG: f"{copy.source_service}:{source_label(copy)}"[:MAX_TAG_VALUE]}
    if spec_name:
        tags[SPEC_TAG] = spec_name
    return tags


def is_managed(tags: Mapping[str, str] | None) -> bool:
    return (tags or {}).get(MANAGED_BY) == MANAGER


# --- observed state and the plan ---------------------------------------------------------------


@dataclass(frozen=True)
class VaultSecret:
    """What Key Vault holds under a name: the current value's fingerprint, its tags and version."""

    fingerprint: str = field(repr=False)
    tags: dict[str, str] = field(default_factory=dict)
    version: str | None = None
    enabled: bool = True


@dataclass(frozen=True)
class ObservedSecret:
    """One copy's two sides, as fingerprints: the source value's and the vault's (None: no such secret)."""

    source: str = field(repr=False)
    vault: VaultSecret | None = None


def plan_secrets(
    environment: str, copies: Sequence[SecretCopy], observed: Mapping[str, ObservedSecret], *, vault: str = ""
) -> Plan:
    """One action per Key Vault secret: create (absent), update (the value differs), noop (same value),
    blocked (differs, but the secret is not the tool's). `observed` is keyed by Key Vault secret name;
    a copy missing from it is planned as a create. Actions carry names and the source only."""
    actions: list[Action] = []
    seen: dict[str, SecretCopy] = {}
    for copy in sorted(copies, key=lambda c: c.key_vault_secret.lower()):
        key = copy.key_vault_secret.lower()  # Key Vault names are case-insensitive
        if key in seen:
            other = seen[key]
            if _identity(other) != _identity(copy):
                raise SecretContentError(
                    f"Key Vault secret {copy.key_vault_secret!r} would hold both {source_label(other)} and "
                    f"{source_label(copy)}: give one of them another name in the spec's secrets.names"
                )
            continue
        seen[key] = copy
        state = observed.get(copy.key_vault_secret)
        have = state.vault if state else None
        label = source_label(copy)
        if have is None:
            kind, reason = "create", f"not in Key Vault; copy from {copy.source_service} {label}"
        elif state is not None and have.fingerprint == state.source:
            kind, reason = "noop", f"same value as {label} (compared by hash)"
        elif not is_managed(have.tags):
            kind, reason = (
                "blocked",
                f"holds another value than {label} and is not managed by {MANAGER} (no '{MANAGED_BY}' tag): "
                "the tool will not overwrite it; rename the copy in the spec's secrets.names or tag the secret",
            )
        else:
            kind, reason = "update", f"value differs from {label} (compared by hash); a new version is written"
        actions.append(
            Action(
                kind=kind,  # type: ignore[arg-type]
                resource=f"{vault}/secrets/{copy.key_vault_secret}" if vault else copy.key_vault_secret,
                resource_type=RESOURCE_TYPE,
                reason=reason,
                desired=_desired(copy),
            )
        )
    return Plan(phase=PHASE, environment=environment, actions=tuple(actions))


def _identity(copy: SecretCopy) -> tuple[Any, ...]:
    return (copy.source_service, copy.source, copy.json_key, copy.version_stage, copy.version_id)


def _desired(copy: SecretCopy) -> dict[str, Any]:
    """Names and the source only: never a value, never a fingerprint."""
    return {
        "key_vault_secret": copy.key_vault_secret,
        "source_service": copy.source_service,
        "source": copy.source,
        "json_key": copy.json_key,
        "version_stage": copy.version_stage,
        "version_id": copy.version_id,
    }


def secret_of(action: Action) -> str:
    """The Key Vault secret name an action of `plan_secrets` is about."""
    return str(action.desired["key_vault_secret"])


# --- the report --------------------------------------------------------------------------------


class SecretResult(BaseModel):
    """One Key Vault secret after the phase. Names only: no value, no hash."""

    model_config = ConfigDict(frozen=True)

    name: str  # the Key Vault secret
    source: str  # the AWS name: mmrv/staging/db
    source_service: Literal["secretsmanager", "ssm"] = "secretsmanager"
    json_key: str | None = None
    status: SecretStatus
    verified: bool  # Key Vault's value has the source value's hash (read back after a write)


class SecretsReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    environment: str
    vault: str
    dry_run: bool = False
    secrets: list[SecretResult] = Field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for result in self.secrets:
            out[result.status] = out.get(result.status, 0) + 1
        return out

    @property
    def all_verified(self) -> bool:
        return all(r.verified for r in self.secrets)

    def summary(self) -> str:
        counts = self.counts()
        parts = [f"{n} {status.replace('-', ' ')}" for status, n in sorted(counts.items())] or ["no secrets"]
        verified = sum(1 for r in self.secrets if r.verified)
        tail = "" if self.dry_run else f", {verified}/{len(self.secrets)} verified"
        return f"secrets [{self.environment}]{' (dry run)' if self.dry_run else ''}: {', '.join(parts)}{tail}"

    def render_markdown(self) -> str:
        lines = [f"# Secrets: {self.environment}", "", f"Key Vault `{self.vault}`", "", self.summary(), ""]
        if not self.secrets:
            return "\n".join([*lines, "The back end reads no secret.", ""])
        lines += ["| Key Vault secret | source | status | verified |", "|---|---|---|---|"]
        for r in self.secrets:
            source = f"{r.source_service}: `{r.source}`" + (f" key `{r.json_key}`" if r.json_key else "")
            mark = "yes" if r.verified else ("-" if self.dry_run else "**no**")
            lines.append(f"| `{r.name}` | {source} | {r.status} | {mark} |")
        return "\n".join(lines) + "\n"


def result_for(copy: SecretCopy, status: SecretStatus, verified: bool) -> SecretResult:
    return SecretResult(
        name=copy.key_vault_secret,
        source=source_name(copy),
        source_service=copy.source_service,
        json_key=copy.json_key,
        status=status,
        verified=verified,
    )


def dry_run_report(environment: str, vault: str, copies: Sequence[SecretCopy], plan: Plan) -> SecretsReport:
    """What a run would do, from the plan: `would-create`, `would-update`, `unchanged` (verified by hash),
    `blocked` (differs, not the tool's: a run would refuse)."""
    by_name = {c.key_vault_secret: c for c in copies}
    status_of: dict[str, SecretStatus] = {
        "create": "would-create",
        "update": "would-update",
        "noop": "unchanged",
        "blocked": "blocked",
    }
    results = [
        result_for(by_name[secret_of(a)], status_of[a.kind], a.kind == "noop")
        for a in plan.actions
        if a.kind in status_of
    ]
    return SecretsReport(environment=environment, vault=vault, dry_run=True, secrets=results)
