"""CPU and memory: ECS units (1024 CPU units = 1 vCPU, memory in MiB) to Kubernetes quantities.

Task level (`cpu: "512"`, `memory: "1024"`; also "0.5 vCPU", "1 GB" as `register-task-definition`
accepts them) is the Fargate task size, a hard cap for all containers together. Container
level `cpu` is a share of it, `memory` a hard limit, `memoryReservation` a soft one.
Kubernetes 1.30 has no pod-level resources, so the task size is spread over the containers:

* requests: the container's own `cpu` / `memoryReservation` (else `memory`), else an even
  split of what the task size leaves after the containers that say so;
* limits: memory = the container's `memory`, else the task memory (what ECS lets it use);
  cpu = the task cpu (ECS lets a container burst up to the task size). A single-container
  task thus gets requests = limits = the task size (Guaranteed, like a Fargate task).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

# Fargate task sizes: cpu units -> the memory sizes (MiB) allowed with it
FARGATE_SIZES: dict[int, tuple[int, ...]] = {
    256: (512, 1024, 2048),
    512: (1024, 2048, 3072, 4096),
    1024: tuple(range(2048, 8192 + 1, 1024)),
    2048: tuple(range(4096, 16384 + 1, 1024)),
    4096: tuple(range(8192, 30720 + 1, 1024)),
    8192: tuple(range(16384, 61440 + 1, 4096)),
    16384: tuple(range(32768, 122880 + 1, 8192)),
}
MIN_CONTAINER_MEMORY = 6  # MiB: ECS refuses less

_VCPU = re.compile(r"(\d+(?:\.\d+)?)\s*vcpu", re.IGNORECASE)
_GB = re.compile(r"(\d+(?:\.\d+)?)\s*gb", re.IGNORECASE)


def _units(value: object, larger: re.Pattern[str]) -> int | None:
    """An integer as is ("512" or 512), or `larger` units ("0.5 vCPU", "1 GB") times 1024; None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return int(text)
        match = larger.fullmatch(text)
        if match:
            return round(float(match.group(1)) * 1024)
    return None


def parse_task_cpu(value: object) -> int | None:
    """CPU units from "512", 512 or "0.5 vCPU"; None when it is neither."""
    return _units(value, _VCPU)


def parse_task_memory(value: object) -> int | None:
    """MiB from "2048", 2048 or "2 GB"; None when it is neither."""
    return _units(value, _GB)


def fargate_problem(cpu: int, memory: int) -> tuple[str, str] | None:
    """(field, message) when cpu/memory is not a Fargate task size, else None."""
    if cpu not in FARGATE_SIZES:
        sizes = ", ".join(f"{c} ({c / 1024:g} vCPU)" for c in FARGATE_SIZES)
        return "cpu", f"{cpu} CPU units is not a Fargate task size; allowed: {sizes}"
    allowed = FARGATE_SIZES[cpu]
    if memory not in allowed:
        shown = (
            ", ".join(str(m) for m in allowed)
            if len(allowed) <= 8
            else f"{allowed[0]} to {allowed[-1]} in steps of {allowed[1] - allowed[0]}"
        )
        return "memory", f"{memory} MiB does not go with cpu {cpu} on Fargate; allowed with cpu {cpu}: {shown} (MiB)"
    return None


def cpu_quantity(units: float) -> str:
    """CPU units (1024 = 1 vCPU) as millicores: 256 -> 250m, 1024 -> 1000m."""
    return f"{max(1, math.ceil(units * 1000 / 1024 - 1e-9))}m"


def memory_quantity(mib: float) -> str:
    return f"{max(1, math.ceil(mib - 1e-9))}Mi"


@dataclass(frozen=True)
class ContainerSize:
    cpu: int | None  # CPU units
    memory: int | None  # hard limit, MiB
    reservation: int | None  # soft limit, MiB


def container_resources(
    sizes: list[ContainerSize], task_cpu: int | None, task_memory: int | None
) -> list[dict[str, dict[str, str]]]:
    """The `resources` of each container (same order), per the module's rules."""
    explicit_cpu = sum(s.cpu or 0 for s in sizes)
    without_cpu = sum(1 for s in sizes if not s.cpu)
    reserved = sum(s.reservation or s.memory or 0 for s in sizes)
    without_memory = sum(1 for s in sizes if not (s.reservation or s.memory))
    out = []
    for size in sizes:
        requests: dict[str, str] = {}
        limits: dict[str, str] = {}
        cpu: float | None = size.cpu or None
        if cpu is None and task_cpu and without_cpu:
            cpu = max(task_cpu - explicit_cpu, 0) / without_cpu or None
        if cpu:
            requests["cpu"] = cpu_quantity(cpu)
        if task_cpu:
            limits["cpu"] = cpu_quantity(task_cpu)
        limit = size.memory or task_memory
        request: float | None = size.reservation or size.memory or None
        if request is None and task_memory and without_memory:
            request = max(task_memory - reserved, 0) / without_memory or None
        if request is not None and limit is not None:
            request = min(request, limit)
        if request:
            requests["memory"] = memory_quantity(request)
        if limit:
            limits["memory"] = memory_quantity(limit)
        resources = {}
        if requests:
            resources["requests"] = requests
        if limits:
            resources["limits"] = limits
        out.append(resources)
    return out
