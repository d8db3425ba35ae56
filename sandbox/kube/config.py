"""The emulator's settings: where clusters are served, how fast time runs, whom to ask about images and secrets."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class EmulatorConfig:
    state_file: Path | None = None
    public_url: str | None = None  # how clients reach us (the fault proxy); discovery reports its host
    clusters: tuple[str, ...] = ("default",)  # created at start, served under /clusters/<name>
    default_cluster: str | None = None  # also served at the root (/api, /apis); None: the only cluster, if one
    any_cluster: bool = False  # serve any /clusters/<name> on first use (clusters made later by ARM)
    time_scale: float = 1.0  # real seconds per emulated second
    tick: float = 0.05  # real seconds between controller passes (at most)

    # images: registry host -> base URL ("http://127.0.0.1:5001"); credentials per host
    registry_map: dict[str, str] = field(default_factory=dict)
    registry_credentials: dict[str, tuple[str, str]] = field(default_factory=dict)
    allow_unmapped_images: bool = False  # pretend images on registries not in the map exist
    # AcrPull: POST here to ask whether a cluster's kubelet identity may pull; None: always allowed
    authorizer_url: str | None = None
    # Key Vault: URL of a vault, "{vault}" replaced by parameters.keyvaultName
    keyvault_url_template: str | None = None
    ca_bundle: str | None = None  # trust for outgoing HTTPS (registry, authorizer, Key Vault)
    tenant_id: str = "00000000-0000-0000-0000-000000000000"

    # bearer tokens: required claim; an audience to insist on (None: any)
    token_audience: str | None = None
