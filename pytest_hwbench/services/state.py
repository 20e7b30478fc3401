"""Shared on-disk state of the services stage: who owns what, and which ports are taken.

Why on disk: services must outlive nothing. A run killed with SIGKILL cannot clean up, so every process it
starts is recorded in ``<state_dir>/procs/*.json`` (pid + start time + owner), and the next run's
:func:`~pytest_hwbench.services.reaper.reap_leftovers` stops what a dead owner left behind. Ports are
reserved in ``<state_dir>/ports.json`` under a file lock so that xdist workers (or parallel runs sharing a
state dir) never hand the same port to two services.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from filelock import FileLock

from pytest_hwbench.atomic import write_json_atomic


def default_state_dir() -> Path:
    """``$HWBENCH_STATE_DIR`` or ``${HWBENCH_CACHE:-~/.cache/hwbench}/state``: stable across runs, so a
    later run can find what an earlier, killed run left."""
    env = os.environ.get("HWBENCH_STATE_DIR")
    if env:
        return Path(env)
    cache = os.environ.get("HWBENCH_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "hwbench")
    return Path(cache) / "state"


def process_start_time(pid: int) -> float | None:
    """A process's start time, or None when it does not exist; (pid, start time) identifies a process even
    after its pid is reused."""
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


@dataclass(frozen=True)
class Owner:
    """The process that started services; when it is gone, what it started is a leftover."""

    pid: int
    start: float
    host: str

    @classmethod
    def current(cls) -> Owner:
        pid = os.getpid()
        return cls(pid=pid, start=process_start_time(pid) or 0.0, host=socket.gethostname())

    def alive(self) -> bool:
        if self.host != socket.gethostname():
            return True  # not ours to judge: another machine sharing the engine or state dir
        start = process_start_time(self.pid)
        return start is not None and abs(start - self.start) < 1.0

    def label(self) -> str:
        return f"{self.host}:{self.pid}:{self.start:.2f}"

    @classmethod
    def from_label(cls, text: str) -> Owner | None:
        try:
            host, pid, start = text.rsplit(":", 2)
            return cls(pid=int(pid), start=float(start), host=host)
        except ValueError:
            return None


def procs_dir(state_dir: Path) -> Path:
    return Path(state_dir) / "procs"


def write_pid_record(state_dir: Path, record: dict[str, Any]) -> Path:
    """Record a started process (atomically); the file name is unique per (run, service, pid)."""
    path = procs_dir(state_dir) / f"{record['run_id']}-{record['name']}-{record['pid']}.json"
    write_json_atomic(path, record)
    return path


def read_pid_records(state_dir: Path) -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for path in sorted(procs_dir(state_dir).glob("*.json")):
        try:
            out.append((path, json.loads(path.read_text())))
        except (OSError, ValueError):
            continue
    return out


class PortRegistry:
    """Free ports handed out under a file lock: bind to port 0 (the kernel picks a free one), skip ports
    another live owner holds in the registry, record it, then close the socket and hand the number over.

    The window between closing the probe socket and the service binding is the only race left; the
    kernel does not hand a just-used ephemeral port out again soon, and the process backend retries with a
    new port when a service still reports "address in use".
    """

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / "ports.json"
        self.lock = FileLock(str(Path(state_dir) / "ports.lock"), timeout=30)
        Path(state_dir).mkdir(parents=True, exist_ok=True)

    def _load(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        live = {}
        for port, entry in data.items():
            owner = Owner(pid=entry.get("pid", 0), start=entry.get("start", 0.0), host=entry.get("host", ""))
            if owner.alive() and time.time() - entry.get("t", 0) < 7 * 86400:
                live[port] = entry
        return live

    def reserve(self, purpose: str, host: str = "127.0.0.1") -> int:
        owner = Owner.current()
        with self.lock:
            entries = self._load()
            for _ in range(100):
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                    sock.bind((host, 0))
                    port = sock.getsockname()[1]
                if str(port) not in entries:
                    entries[str(port)] = {"pid": owner.pid, "start": owner.start, "host": owner.host,
                                          "purpose": purpose, "t": time.time()}
                    write_json_atomic(self.path, entries)
                    return port
        raise RuntimeError("no free port found after 100 tries")  # pragma: no cover

    def release(self, *ports: int) -> None:
        if not ports:
            return
        with self.lock:
            entries = self._load()
            for port in ports:
                entries.pop(str(port), None)
            write_json_atomic(self.path, entries)


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when ``host:port`` can be bound right now (preflight for a fixed ``port`` setting)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR as servers set it: connections in TIME_WAIT do not make the port "taken".
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        with contextlib.suppress(OSError):
            sock.bind((host, port))
            sock.listen(1)
            return True
    return False
