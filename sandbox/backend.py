"""What a sandbox backend is: how to start it, how to tell it is up, what it adds to the profile.

`sandbox.services` declares the backends with these; `sandbox.manager` starts them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from migration.errors import InputError
from migration.spec import Spec

DEFAULT_KUBE_TIME_SCALE = 0.1  # real seconds per emulated second in the Kubernetes emulator


@dataclass(frozen=True)
class Context:
    """What a backend needs to know to start."""

    name: str
    state_dir: Path
    spec: Spec
    port: int  # the backend's own plain-HTTP port on 127.0.0.1
    public_port: int = 0  # its TLS front on the fault proxy
    # every backend's public URL (https://127.0.0.1:PORT) and direct URL, by name: backends
    # that point at each other (ARM hands out kubeconfigs for the Kubernetes emulator) know
    # where the others will be before any of them starts
    public_urls: Mapping[str, str] = field(default_factory=dict)
    direct_urls: Mapping[str, str] = field(default_factory=dict)
    ca_bundle: Path | None = None
    python: str = sys.executable  # the venv's interpreter: servers run with the tool's packages
    kube_time_scale: float = DEFAULT_KUBE_TIME_SCALE

    @property
    def public_url(self) -> str:
        return f"https://127.0.0.1:{self.public_port}"

    @property
    def home(self) -> Path:
        """A directory of the backend's own under the state dir (config, data)."""
        path = self.state_dir / self.name
        path.mkdir(parents=True, exist_ok=True)
        return path


@dataclass(frozen=True)
class Backend:
    name: str
    # writes whatever config the backend needs and returns its command line
    command: Callable[[Context], list[str]]
    # GET this on the backend's own port; any HTTP response means it is up
    health_path: str = "/"
    env: Callable[[Context], Mapping[str, str]] = lambda ctx: {}
    # profile.env entries; "{url}" is the public https://127.0.0.1:PORT, "{host}" its host:port
    profile: Mapping[str, str] = field(default_factory=dict)
    # an optional backend written elsewhere: skipped with a warning while this module is missing
    requires_module: str | None = None
    # faults this route may inject (None: all kinds)
    fault_kinds: tuple[str, ...] | None = None
    # profile.env entries computed from the context (e.g. a minted sandbox token)
    profile_values: Callable[[Context], Mapping[str, str]] = lambda ctx: {}
    # paths of this backend's public front served by another backend: prefix -> backend name
    # (an ACR front sends /oauth2/ to the ARM emulator, ACR's token service)
    path_routes: Mapping[str, str] = field(default_factory=dict)
    # a family: when set, the manager starts `instances(spec)` in this entry's place (one
    # registry per ACR the spec names); `command` is then never called
    instances: Callable[[Spec], Sequence[Backend]] | None = None


def expand(backends: Sequence[Backend], spec: Spec) -> list[Backend]:
    """The backends to start for `spec`: families replaced by their instances, names unique."""
    out: list[Backend] = []
    for backend in backends:
        out.extend(backend.instances(spec) if backend.instances is not None else [backend])
    names = [b.name for b in out]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise InputError(f"two sandbox backends would be named {', '.join(clash)}: rename the ACR in the spec")
    return out
