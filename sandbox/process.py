"""Detached server processes: start them, recognise them later, stop exactly them.

A sandbox outlives the CLI that started it, so every process runs in its own session and
is identified afterwards by what was recorded at start: pid, kernel start time and command
line. A pid whose start time or command line differs has been reused by something else and
is never signalled.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# Ports below the kernel's ephemeral range (32768+ here), so an outgoing connection made
# between choosing a port and the server binding it cannot steal it.
PORT_RANGE = (20000, 32000)

# Popen objects of the children this Python process started: kept so they are reaped
# (no zombies, no ResourceWarning) when the same process also stops them, as tests do.
_children: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class ProcessRecord:
    """What identifies a started process later; stored in the state file."""

    pid: int
    start_time: int  # field 22 of /proc/<pid>/stat, in clock ticks since boot
    argv: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        return {"pid": self.pid, "start_time": self.start_time, "argv": list(self.argv)}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> ProcessRecord:
        argv = data["argv"]
        assert isinstance(argv, list)
        return cls(pid=int(str(data["pid"])), start_time=int(str(data["start_time"])), argv=tuple(map(str, argv)))


def free_ports(count: int) -> list[int]:
    """`count` distinct loopback ports that are free right now (held open together while choosing)."""
    rng = random.SystemRandom()
    held: list[socket.socket] = []
    try:
        while len(held) < count:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.bind(("127.0.0.1", rng.randrange(*PORT_RANGE)))
            except OSError:
                sock.close()
                continue
            held.append(sock)
        return [s.getsockname()[1] for s in held]
    finally:
        for sock in held:
            sock.close()


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time) of a pid, or None when there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # the command name (field 2) may contain spaces and parentheses: split after the last ')'
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])


def _cmdline(pid: int) -> tuple[str, ...] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return tuple(part.decode(errors="replace") for part in raw.split(b"\0")[:-1])


def is_running(record: ProcessRecord) -> bool:
    """True while the recorded process (not merely its pid) is alive; a zombie counts as gone."""
    stat = _proc_stat(record.pid)
    if stat is None or stat[0] in ("Z", "X"):
        return False
    return stat[1] == record.start_time and _cmdline(record.pid) == record.argv


def spawn(argv: Sequence[str], *, log_path: Path, env: Mapping[str, str], cwd: Path) -> ProcessRecord:
    """Start argv detached (own session, stdin closed, stdout+stderr appended to log_path)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log_file:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=dict(env),
            start_new_session=True,  # survives the CLI, and its group is ours alone to signal
            close_fds=True,
        )
    _children[proc.pid] = proc
    return _identify(proc.pid, tuple(argv))


def _identify(pid: int, argv: tuple[str, ...], timeout: float = 2.0) -> ProcessRecord:
    """Record a just-started process as /proc shows it. Its cmdline reads empty for a moment
    after exec, so wait until the kernel shows one; use what it shows, since that is what
    `is_running` will compare against later."""
    deadline = time.monotonic() + timeout
    while True:
        stat, cmdline = _proc_stat(pid), _cmdline(pid)
        if stat is None or stat[0] in ("Z", "X"):  # exited already: a record that never matches
            return ProcessRecord(pid, -1, argv)
        if cmdline:
            return ProcessRecord(pid, stat[1], cmdline)
        if time.monotonic() > deadline:
            return ProcessRecord(pid, stat[1], argv)
        time.sleep(0.005)


def exit_code(record: ProcessRecord) -> int | None:
    """The exit code when this process started the child and it has exited, else None."""
    proc = _children.get(record.pid)
    return proc.poll() if proc is not None else None


def _reap(pid: int) -> None:
    proc = _children.pop(pid, None)
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=0.5)


def _signal_group(record: ProcessRecord, sig: signal.Signals) -> None:
    """Signal the process's own group (it leads it: start_new_session), else just the pid."""
    try:
        if os.getpgid(record.pid) == record.pid:
            os.killpg(record.pid, sig)
        else:
            os.kill(record.pid, sig)
    except ProcessLookupError:
        pass


def stop(record: ProcessRecord, *, timeout: float = 5.0) -> bool:
    """SIGTERM, then SIGKILL after `timeout`. False when the process was not running (or not ours)."""
    return bool(stop_all([record], timeout=timeout))


def stop_all(records: Sequence[ProcessRecord], *, timeout: float = 5.0) -> list[ProcessRecord]:
    """Stop several processes at once (signalled in the given order, waited for together).

    Returns those that were running; a record whose process is gone or whose pid now
    belongs to another program is left alone.
    """
    running = [r for r in records if is_running(r)]
    for record in records:
        if record not in running:
            _reap(record.pid)
    pending = running
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for record in pending:
            _signal_group(record, sig)
        pending = _wait_gone(pending, timeout)
        if not pending:
            break
        log.warning("pid(s) %s outlived %s by %.0f s", [r.pid for r in pending], sig.name, timeout)
    for record in running:
        _reap(record.pid)
    return running


def _wait_gone(records: list[ProcessRecord], timeout: float) -> list[ProcessRecord]:
    """Those of `records` still running at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        records = [r for r in records if is_running(r)]
        if not records or time.monotonic() > deadline:
            return records
        time.sleep(0.02)


def listening_ports(ports: Iterable[int]) -> set[int]:
    """Those of `ports` with a TCP listener on this machine (any address), from /proc/net."""
    wanted = set(ports)
    found: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and fields[3] == "0A":  # TCP_LISTEN
                port = int(fields[1].rsplit(":", 1)[1], 16)
                if port in wanted:
                    found.add(port)
    return found


def wait_ports_closed(ports: Iterable[int], timeout: float = 5.0) -> set[int]:
    """Wait until none of `ports` has a listener; return those that still do at the deadline."""
    deadline = time.monotonic() + timeout
    remaining = listening_ports(ports)
    while remaining and time.monotonic() < deadline:
        time.sleep(0.05)
        remaining = listening_ports(remaining)
    return remaining


def port_accepts(port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on 127.0.0.1:port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError as exc:
        if exc.errno not in (errno.ECONNREFUSED, errno.ETIMEDOUT, None):
            log.debug("connect to port %d: %s", port, exc)
        return False


def tail(path: Path, lines: int = 5) -> str:
    """The last lines of a log file, for error messages (our servers log no secrets)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 8192))
            text = handle.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
