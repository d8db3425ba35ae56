"""Health checks -> probes.

A container `healthCheck` (`["CMD", "curl", ...]` or `["CMD-SHELL", "curl ... || exit 1"]`)
becomes an exec probe: `CMD` runs its arguments directly, `CMD-SHELL` runs the string with
`/bin/sh -c`, as Docker does. interval -> periodSeconds, timeout -> timeoutSeconds,
retries -> failureThreshold. startPeriod (failures do not count while the container starts)
becomes a startupProbe with the same command that allows startPeriod plus the retries before
it gives up; liveness starts once it passed.

The ALB target group's health check is what decided whether a task got traffic: it becomes
the HTTP (or TCP) readiness probe of the container behind the load balancer, with the target
group's interval, timeout and thresholds. Without it, the container health check is the
readiness probe too.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from migration.translate.model import TargetGroupHealthCheck

# ECS limits (RegisterTaskDefinition): seconds, except retries
INTERVAL = (5, 300, 30)
TIMEOUT = (2, 60, 5)
RETRIES = (1, 10, 3)
START_PERIOD = (0, 300, 0)
STARTUP_PERIOD_MAX = 10  # seconds between startup probe attempts


@dataclass(frozen=True)
class HealthCheck:
    kind: str  # CMD or CMD-SHELL, as the task definition said
    command: list[str]  # the exec command
    interval: int
    timeout: int
    retries: int
    start_period: int

    def exec_probe(self, failure_threshold: int | None = None, period: int | None = None) -> dict[str, Any]:
        return {
            "exec": {"command": list(self.command)},
            "periodSeconds": period or self.interval,
            "timeoutSeconds": self.timeout,
            "failureThreshold": failure_threshold or self.retries,
        }

    def startup_probe(self) -> dict[str, Any] | None:
        if not self.start_period:
            return None
        period = min(self.interval, STARTUP_PERIOD_MAX)
        return self.exec_probe(math.ceil(self.start_period / period) + self.retries, period)


def exec_command(command: list[str]) -> list[str] | str:
    """The probe's exec command, or a message saying why `command` is not a Docker health check."""
    if not command:
        return 'is empty; write ["CMD", ...] or ["CMD-SHELL", "..."]'
    kind, rest = command[0], command[1:]
    if kind == "CMD-SHELL":
        if not rest or not " ".join(rest).strip():
            return "CMD-SHELL needs the shell command after it"
        return ["/bin/sh", "-c", " ".join(rest)]
    if kind == "CMD":
        if not rest:
            return "CMD needs the command and its arguments after it"
        return rest
    return f'must start with "CMD" or "CMD-SHELL" (or be ["NONE"]), got {kind!r}'


def matcher_codes(matcher: str) -> tuple[int, int] | None:
    """The (lowest, highest) HTTP code a target group matcher accepts, None when it is not HTTP codes."""
    codes: list[int] = []
    for part in matcher.split(","):
        match = re.fullmatch(r"\s*(\d{3})(?:-(\d{3}))?\s*", part)
        if not match:
            return None
        codes += [int(match.group(1)), int(match.group(2) or match.group(1))]
    return (min(codes), max(codes)) if codes else None


def readiness_from_target_group(check: TargetGroupHealthCheck, traffic_port: int) -> dict[str, Any]:
    port = check.port or traffic_port
    probe: dict[str, Any]
    if check.protocol == "TCP":
        probe = {"tcpSocket": {"port": port}}
    else:
        probe = {"httpGet": {"path": check.path, "port": port, "scheme": check.protocol}}
    probe.update(
        periodSeconds=check.interval_seconds,
        timeoutSeconds=check.timeout_seconds,
        successThreshold=check.healthy_threshold,
        failureThreshold=check.unhealthy_threshold,
    )
    return probe
