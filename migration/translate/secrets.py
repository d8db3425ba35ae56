"""ECS `secrets` -> Key Vault secrets, a SecretProviderClass and a synced Kubernetes Secret.

An ECS secret is an environment variable whose value ECS reads at task start from
Secrets Manager (`arn:...:secret:NAME-AbCdEf`, optionally `:json-key:version-stage:version-id`)
or SSM Parameter Store (a parameter ARN or name). On AKS the Secrets Store CSI driver
(Azure provider, workload identity) reads Key Vault secrets when the pod mounts its
volume, and syncs them into a Kubernetes Secret the container reads with
`env.valueFrom.secretKeyRef` - the same environment variables, no code change.

Key Vault secret names come from `options.secret_names` (keyed by the exact `valueFrom`,
the secret's ARN, its name with or without the random suffix, or the parameter name), else
from the AWS name (`mmrv/staging/db` -> `mmrv-staging-db`). A JSON-key reference becomes its
own Key Vault secret `<name>-<json key>` (`json_key_secrets: split`), or reads the whole JSON
document (`whole`: the variable then holds JSON, which the report says).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from migration.translate.model import SecretCopy
from migration.translate.names import key_vault_name

CSI_DRIVER = "secrets-store.csi.k8s.io"
SPC_API_VERSION = "secrets-store.csi.x-k8s.io/v1"
MOUNT_PATH = "/mnt/secrets-store"
VOLUME_NAME = "secrets-store"
PLACEHOLDER_VAULT = "<key-vault-name>"
PLACEHOLDER_TENANT = "<tenant-id>"
PLACEHOLDER_CLIENT = "<workload-identity-client-id>"

_SUFFIX = re.compile(r"-[A-Za-z0-9]{6}$")


@dataclass(frozen=True)
class SecretRef:
    """Where one ECS `secrets[].valueFrom` points (no value, ever)."""

    value_from: str
    service: Literal["secretsmanager", "ssm"]
    source: str  # Secrets Manager: the secret's ARN; SSM: the parameter ARN or name as written
    name: str  # the secret's name without the 6-character suffix; the parameter's name
    full_name: str  # the secret's name as in the ARN (with the suffix)
    json_key: str | None = None
    version_stage: str | None = None
    version_id: str | None = None

    def lookup_keys(self) -> list[str]:
        keys = [self.value_from, self.source, self.full_name, self.name]
        if self.service == "ssm":
            keys += [self.name.lstrip("/"), "/" + self.name.lstrip("/")]
        return list(dict.fromkeys(k for k in keys if k))


def parse_value_from(value: str) -> SecretRef | str:
    """The reference, or a message saying why it is not one."""
    if not value.startswith("arn:"):
        if not re.fullmatch(r"[\w./-]{1,2048}", value):
            return f"{value!r} is neither an ARN nor an SSM parameter name"
        return SecretRef(value_from=value, service="ssm", source=value, name=value, full_name=value)
    parts = value.split(":")
    if len(parts) < 6:
        return f"{value!r} is not a complete ARN"
    service = parts[2]
    if service == "ssm":
        resource = ":".join(parts[5:])
        if not resource.startswith("parameter/") or len(resource) <= len("parameter/"):
            return f"{value!r} is not an SSM parameter ARN (…:parameter/NAME)"
        name = resource.removeprefix("parameter")
        name = name if name.count("/") > 1 else name.lstrip("/")
        return SecretRef(value_from=value, service="ssm", source=value, name=name, full_name=name)
    if service != "secretsmanager":
        return f"{value!r} is not a Secrets Manager or SSM Parameter Store ARN"
    if len(parts) < 7 or parts[5] != "secret" or not parts[6]:
        return f"{value!r} is not a Secrets Manager secret ARN (…:secret:NAME-AbCdEf)"
    if len(parts) > 10:
        return f"{value!r} has too many ':' parts (ARN:json-key:version-stage:version-id at most)"
    extra = [*parts[7:], "", "", ""][:3]
    if extra[1] and extra[2]:
        return f"{value!r} names both a version stage and a version id; ECS accepts one"
    full = parts[6]
    return SecretRef(
        value_from=value,
        service="secretsmanager",
        source=":".join(parts[:7]),
        name=_SUFFIX.sub("", full),
        full_name=full,
        json_key=extra[0] or None,
        version_stage=extra[1] or None,
        version_id=extra[2] or None,
    )


@dataclass
class SecretUse:
    ref: SecretRef
    key_vault_secret: str
    derived: bool  # the name came from the AWS name, not from options.secret_names
    env: list[str] = field(default_factory=list)


class SecretRegistry:
    """Every Key Vault secret the workload reads, each once, with who reads it."""

    def __init__(self, names: dict[str, str], mode: Literal["split", "whole"]) -> None:
        self.names = names
        self.mode = mode
        self.uses: dict[str, SecretUse] = {}  # Key Vault name -> use

    def key_vault_name(self, ref: SecretRef) -> tuple[str, bool]:
        if ref.value_from in self.names:  # an exact valueFrom (a JSON key included) names its own secret
            return self.names[ref.value_from], False
        mapped = next((self.names[k] for k in ref.lookup_keys() if k in self.names), None)
        base = mapped or key_vault_name(ref.name)
        if ref.json_key and self.mode == "split":
            return key_vault_name(f"{base}-{ref.json_key}"), mapped is None
        return base, mapped is None

    def identity(self, ref: SecretRef) -> tuple[Any, ...]:
        key = ref.json_key if self.mode == "split" else None
        return (ref.service, ref.source if ref.service == "secretsmanager" else ref.name, key, ref.version_stage,
                ref.version_id)  # fmt: skip

    def add(self, ref: SecretRef, reader: str) -> tuple[str, str | None]:
        """Register a use; answers (Key Vault name, a conflict message or None)."""
        name, derived = self.key_vault_name(ref)
        use = self.uses.get(name)
        if use is None:
            self.uses[name] = SecretUse(ref, name, derived, [reader])
            return name, None
        if self.identity(use.ref) != self.identity(ref):
            return name, (
                f"{ref.value_from!r} and {use.ref.value_from!r} would both become Key Vault secret {name!r}: "
                "give one of them another name in secret_names"
            )
        use.env.append(reader)
        return name, None

    def copies(self) -> list[SecretCopy]:
        return [
            SecretCopy(
                key_vault_secret=use.key_vault_secret,
                source_service=use.ref.service,
                source=use.ref.source,
                json_key=use.ref.json_key if self.mode == "split" else None,
                version_stage=use.ref.version_stage,
                version_id=use.ref.version_id,
                env=use.env,
            )
            for use in sorted(self.uses.values(), key=lambda u: u.key_vault_secret)
        ]


def objects_parameter(names: list[str]) -> str:
    """The Azure provider's `objects` parameter: a YAML string `array:` of YAML strings, one per object."""
    lines = ["array:"]
    for name in names:
        lines += ["  - |", f"    objectName: {json.dumps(name)}", "    objectType: secret"]
    return "\n".join(lines) + "\n"


def secret_provider_class(
    name: str,
    namespace: str,
    labels: dict[str, str],
    secret_name: str,
    object_names: list[str],
    vault: str,
    tenant: str,
    client_id: str,
) -> dict[str, Any]:
    """A SecretProviderClass for the Azure provider with workload identity, syncing `secret_name`."""
    return {
        "apiVersion": SPC_API_VERSION,
        "kind": "SecretProviderClass",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "spec": {
            "provider": "azure",
            "parameters": {
                "usePodIdentity": "false",
                "clientID": client_id,
                "keyvaultName": vault,
                "tenantId": tenant,
                "objects": objects_parameter(object_names),
            },
            "secretObjects": [
                {
                    "secretName": secret_name,
                    "type": "Opaque",
                    "labels": dict(labels),
                    "data": [{"objectName": n, "key": n} for n in object_names],
                }
            ],
        },
    }
