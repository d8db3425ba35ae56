"""What the Azure emulator is told at start (command line) and what may change while it runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sandbox.azure.tokens import OPERATOR_OID, SANDBOX_TENANT_ID

# What `az aks get-versions` would list: "1.30" means the newest 1.30 patch here.
DEFAULT_KUBERNETES_VERSIONS = ("1.29.15", "1.30.12", "1.30.14", "1.31.8")
DEFAULT_KUBERNETES_MINOR = "1.30"


@dataclass
class LroSettings:
    """How long-running operations behave. Mutable at run time through `PUT /_sandbox/lro`.

    An operation succeeds at its `polls`-th status poll or `seconds` after it started,
    whichever comes first: a poller that keeps polling finishes fast, and an operation
    nobody polls (the client crashed) still completes, as in Azure.
    """

    polls: int = 2
    seconds: float = 2.0
    # Seconds a poller should wait between polls. Whole seconds go out as `Retry-After` (what ARM
    # sends); anything below one second as `retry-after-ms`, because the management SDKs parse
    # Retry-After as an int (a fraction fails the LRO) and azure-core takes 0 to mean "no hint",
    # falling back to the client's polling_interval of 30 s.
    retry_after: float = 1.0
    # resource type (e.g. "Microsoft.ContainerService/managedClusters", case-insensitive)
    # -> how many of its next operations end Failed; "*" matches every type
    fail_next: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {
            "polls": self.polls,
            "seconds": self.seconds,
            "retry_after": self.retry_after,
            "fail_next": dict(self.fail_next),
        }

    def retry_headers(self) -> dict[str, str]:
        if self.retry_after >= 1:
            return {"Retry-After": str(round(self.retry_after))}
        return {"retry-after-ms": str(max(1, round(self.retry_after * 1000)))}


@dataclass
class EmulatorConfig:
    state_file: Path | None = None
    # the base URL clients use (the TLS proxy); None: derived from each request's Host
    public_url: str | None = None
    # where kubeconfigs point; "{cluster}", "{resource_group}", "{subscription}" are substituted
    kubernetes_url: str | None = None
    # PEM bundle embedded as certificate-authority-data in kubeconfigs
    kubernetes_ca_file: Path | None = None
    # known subscriptions; empty: any GUID is accepted (a warning is logged at start)
    subscriptions: tuple[str, ...] = ()
    tenant_id: str = SANDBOX_TENANT_ID
    # principals allowed every ARM action (the deploying identity)
    operator_oids: tuple[str, ...] = (OPERATOR_OID,)
    # further principals that exist in the directory (role assignments may name them)
    known_principals: tuple[str, ...] = ()
    # loginServer of registries; "{name}" is the lower-cased registry name
    registry_host: str = "{name}.azurecr.io"
    # registries the sandbox serves: lower-cased name -> loginServer (the proxy front, host:port)
    # and -> the Distribution registry's own URL (plain http on loopback), for imports
    registry_hosts: dict[str, str] = field(default_factory=dict)
    registry_backends: dict[str, str] = field(default_factory=dict)
    # importImage sources reached elsewhere than https://<host>: lower-cased host -> base URL (the ECR
    # registry's front -> its own URL, so imports see no injected faults)
    source_registries: dict[str, str] = field(default_factory=dict)
    # the RS256 key (and its certificate, sent as x5c) that signs ACR tokens; None: no ACR data plane
    acr_signing_key: Path | None = None
    acr_signing_cert: Path | None = None
    # trust for outgoing HTTPS (import sources behind the sandbox's TLS proxy)
    ca_bundle: Path | None = None
    # the operators act as Owner of every subscription on the ACR data plane (Owner's `*`
    # includes registries/push/write, as in Azure's LegacyRegistryPermissions mode); Key Vault
    # data actions still need a role assignment, as Owner has none in Azure
    operators_own_subscriptions: bool = True
    kubernetes_versions: tuple[str, ...] = DEFAULT_KUBERNETES_VERSIONS
    lro: LroSettings = field(default_factory=LroSettings)

    def login_server(self, registry_name: str) -> str:
        name = registry_name.lower()
        return self.registry_hosts.get(name) or self.registry_host.replace("{name}", name)

    def subscription_known(self, subscription_id: str) -> bool:
        if not self.subscriptions:
            return True
        return subscription_id.lower() in {s.lower() for s in self.subscriptions}
