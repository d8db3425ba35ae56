"""Transfer progress inside one process: the flow's tasks publish, the CLI's progress bar listens.

A Prefect task cannot take a callback as a parameter (parameters are serialized), so the
image transfer publishes here as well as to its Prefect progress artifact; `mmrv-migrate
run images` subscribes a rich progress bar for the duration of the run. Pure: no I/O.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

Listener = Callable[[str, int, int], None]  # (what, bytes done, bytes total)

_lock = threading.Lock()
_listeners: list[Listener] = []


def subscribe(listener: Listener) -> Callable[[], None]:
    """Start receiving progress; returns the function that stops it."""
    with _lock:
        _listeners.append(listener)

    def unsubscribe() -> None:
        with _lock:
            if listener in _listeners:
                _listeners.remove(listener)

    return unsubscribe


def publish(what: str, done: int, total: int) -> None:
    with _lock:
        listeners = list(_listeners)
    for listener in listeners:
        listener(what, done, total)


class Meter:
    """Counts bytes from many threads and publishes at most every `interval` seconds (and at the end)."""

    def __init__(
        self, what: str, total: int, *, interval: float = 0.5, sink: Callable[[int, int], None] | None = None
    ) -> None:
        import time

        self.what = what
        self.total = total
        self.done = 0
        self._interval = interval
        self._sink = sink
        self._clock = time.monotonic
        self._last = 0.0
        self._lock = threading.Lock()

    def add(self, count: int) -> None:
        with self._lock:
            self.done += count
            now = self._clock()
            due = now - self._last >= self._interval
            if due:
                self._last = now
            done = self.done
        if due:
            self._emit(done)

    def finish(self) -> None:
        self._emit(self.done)

    def _emit(self, done: int) -> None:
        publish(self.what, done, self.total)
        if self._sink is not None:
            self._sink(done, self.total)
