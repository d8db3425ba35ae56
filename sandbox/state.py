"""The sandbox's state file (`<state>/sandbox.json`) and the lock that serialises `up`/`down`.

The state file is written after every process start, not only at the end, so that an `up`
killed halfway still leaves a record of what it started: the next `up` or `down` stops
exactly those processes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from migration.errors import InputError
from sandbox.process import ProcessRecord

log = logging.getLogger(__name__)

STATE_FILE = "sandbox.json"
LOCK_FILE = ".lock"
STATE_VERSION = 1
LOCK_TIMEOUT = 120.0  # an `up` takes seconds; waiting longer means something is stuck

STARTING = "starting"  # an `up` is (or was, if it died) starting processes
READY = "ready"  # healthy, seeded, profile written


@dataclass(frozen=True)
class ServiceRecord:
    name: str
    process: ProcessRecord
    log: str
    ports: tuple[int, ...]  # every port this process listens on
    public_url: str  # how status reaches it (through the proxy)
    backend_port: int | None = None  # None for the proxy itself
    public_port: int | None = None
    direct_url: str | None = None  # plain http on loopback, bypassing the proxy
    health_path: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            **self.process.to_json(),
            "log": self.log,
            "ports": list(self.ports),
            "public_url": self.public_url,
            "backend_port": self.backend_port,
            "public_port": self.public_port,
            "direct_url": self.direct_url,
            "health_path": self.health_path,
        }

    @classmethod
    def from_json(cls, name: str, data: dict[str, Any]) -> ServiceRecord:
        return cls(
            name=name,
            process=ProcessRecord.from_json(data),
            log=data["log"],
            ports=tuple(data["ports"]),
            public_url=data["public_url"],
            backend_port=data.get("backend_port"),
            public_port=data.get("public_port"),
            direct_url=data.get("direct_url"),
            health_path=data.get("health_path"),
        )


@dataclass
class SandboxState:
    phase: str
    started_at: str
    fault_rate: float
    seed: int
    ca_bundle: str
    services: dict[str, ServiceRecord] = field(default_factory=dict)

    def to_json(self) -> str:
        data = {
            "version": STATE_VERSION,
            "phase": self.phase,
            "started_at": self.started_at,
            "fault_rate": self.fault_rate,
            "seed": self.seed,
            "ca_bundle": self.ca_bundle,
            "services": {name: svc.to_json() for name, svc in self.services.items()},
        }
        return json.dumps(data, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> SandboxState:
        data = json.loads(text)
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"state file version {data.get('version')!r}, expected {STATE_VERSION}")
        services = {name: ServiceRecord.from_json(name, svc) for name, svc in data["services"].items()}
        return cls(
            phase=data["phase"],
            started_at=data["started_at"],
            fault_rate=data["fault_rate"],
            seed=data["seed"],
            ca_bundle=data["ca_bundle"],
            services=services,
        )


def write_atomic(path: Path, text: str) -> None:
    """Readers (status, a concurrent CLI) see the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_state(state_dir: Path, state: SandboxState) -> None:
    write_atomic(state_dir / STATE_FILE, state.to_json())


def read_state(state_dir: Path) -> SandboxState | None:
    """The recorded state; None when there is none. An unreadable file is set aside (warned)."""
    path = state_dir / STATE_FILE
    try:
        return SandboxState.from_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError, AssertionError) as exc:
        aside = path.with_name(STATE_FILE + ".unreadable")
        os.replace(path, aside)
        log.warning("sandbox state %s is unreadable (%s): moved to %s", path, exc, aside)
        return None


def remove_state(state_dir: Path) -> None:
    (state_dir / STATE_FILE).unlink(missing_ok=True)


class SandboxBusy(InputError):
    def __init__(self, state_dir: Path, waited: float) -> None:
        super().__init__(
            f"another sandbox command has held {state_dir / LOCK_FILE} for {waited:.0f} s; "
            "wait for it to finish, or find it with `fuser` on that file"
        )


@contextlib.contextmanager
def locked(state_dir: Path, timeout: float | None = None) -> Iterator[None]:
    """Exclusive lock on the state dir; two `up`s (or an `up` and a `down`) never interleave.

    flock is released by the kernel when the holder dies, so a crashed `up` never leaves
    the directory locked.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    with (state_dir / LOCK_FILE).open("a") as handle:
        waited = LOCK_TIMEOUT if timeout is None else timeout
        deadline = time.monotonic() + waited
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise SandboxBusy(state_dir, waited) from None
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
