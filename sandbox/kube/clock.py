"""Time in the emulator: wall-clock timestamps for objects, and a scale for every delay.

`time_scale` is how many real seconds one emulated second lasts. Every duration the
emulator simulates (image pulls, container starts, probe periods, back-offs,
`progressDeadlineSeconds`) is emulated time, so a test can run a 600 s deadline in 6 s
with `time_scale=0.01` without changing a manifest.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime


class Clock:
    def __init__(self, time_scale: float = 1.0) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self.time_scale = time_scale

    @staticmethod
    def now() -> float:
        """Real wall-clock seconds (what timestamps record)."""
        return time.time()

    def real(self, emulated_seconds: float) -> float:
        """Real seconds that an emulated duration lasts."""
        return emulated_seconds * self.time_scale

    def emulated_since(self, real_start: float) -> float:
        """Emulated seconds elapsed since a real instant."""
        return (time.time() - real_start) / self.time_scale


def rfc3339(ts: float | None = None) -> str:
    """A metav1.Time: RFC 3339 in UTC with second precision, as the API server writes it."""
    moment = datetime.fromtimestamp(time.time() if ts is None else ts, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_micro(ts: float | None = None) -> str:
    """A metav1.MicroTime (events' eventTime, leases)."""
    moment = datetime.fromtimestamp(time.time() if ts is None else ts, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_rfc3339(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
